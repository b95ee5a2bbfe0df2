"""Where the job's tables go: Parquet directories, or Delta tables committed atomically.

:class:`ParquetTables` writes each table with Spark (``output.mode`` overwrite/append).
:class:`DeltaTables` writes data files with Spark into the table directory and commits
them from the driver through delta-rs (see :mod:`pipelines.delta_io`): one commit per
table per run, replacing the rows of the notes the run processed (by ``note_id``) and
leaving every other row as it was.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from . import delta_io

KEY = "note_id"


@dataclass
class ParquetTables:
    spark: SparkSession
    root: str
    mode: str = "overwrite"
    incremental: bool = False
    versions: dict[str, int] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def run_already_committed(self, run_id: str) -> bool:
        return False

    def read(self, name: str) -> DataFrame | None:
        return None

    def publish(self, name: str, rows: DataFrame, replace_keys: DataFrame | None, *, run_id: str,
                pipeline_version: str) -> None:
        rows.write.mode(self.mode).parquet(self.path(name))

    def append_run(self, row: DataFrame, *, run_id: str, pipeline_version: str, succeeded: bool) -> None:
        row.coalesce(1).write.mode("append").parquet(self.path("runs"))


@dataclass
class DeltaTables:
    """Delta output. ``incremental``: replace only the processed notes' rows; otherwise
    (``--full-refresh``) replace every row. Each table is read at one version per run and
    committed against that version."""

    spark: SparkSession
    root: str
    incremental: bool = True
    versions: dict[str, int] = field(default_factory=dict)
    _tables: dict[str, object] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _table(self, name: str):
        if name not in self._tables:
            path = self.path(name)
            self._tables[name] = delta_io.open_table(path) if delta_io.is_delta_table(path) else None
        return self._tables[name]

    def run_already_committed(self, run_id: str) -> bool:
        runs = self._table("runs")
        return runs is not None and delta_io.already_committed(runs, run_id)

    def read(self, name: str) -> DataFrame | None:
        """The table at the version this run read, or None if it does not exist yet."""
        table = self._table(name)
        if table is None:
            return None
        return read_delta_files(self.spark, self.path(name), table)

    def publish(self, name: str, rows: DataFrame, replace_keys: DataFrame | None, *, run_id: str,
                pipeline_version: str) -> None:
        table = self._table(name)
        path = self.path(name)
        if table is not None and delta_io.already_committed(table, run_id):
            self.versions[name] = table.version()  # a retried run: this table already has it
            return
        removed: list[delta_io.DataFile] = []
        new_rows = rows
        if table is not None:
            files = delta_io.current_files(table)
            if not self.incremental or replace_keys is None:
                removed = files
            else:
                keys = replace_keys.select(F.col(KEY).alias("_replace_key"))
                removed = self._files_with_keys(path, files, keys)
                if removed:
                    kept = (read_files(self.spark, path, removed)
                            .join(keys, on=F.col(KEY).eqNullSafe(F.col("_replace_key")), how="left_anti"))
                    new_rows = kept.unionByName(rows)
        folder = f"run-{run_id}-{uuid.uuid4().hex[:8]}"
        new_rows.write.mode("errorifexists").parquet(f"{path}/{folder}")
        added = delta_io.list_written_files(path, folder)
        schema = to_arrow_schema(rows.schema)
        delta_io.commit(path, table=table, schema=schema, added=added, removed=removed, run_id=run_id,
                        pipeline_version=pipeline_version,
                        operation="full_refresh" if not self.incremental else "incremental")
        self._tables.pop(name, None)
        self.versions[name] = delta_io.open_table(path).version()

    def append_run(self, row: DataFrame, *, run_id: str, pipeline_version: str, succeeded: bool) -> None:
        from deltalake import write_deltalake
        from deltalake.transaction import CommitProperties, Transaction

        # Only a succeeded run is recorded as an app transaction: a failed run may be retried.
        txns = [Transaction(delta_io.APP_ID_PREFIX + run_id, 1)] if succeeded else None
        write_deltalake(self.path("runs"), pa.Table.from_pandas(row.toPandas(), schema=to_arrow_schema(row.schema),
                                                                 preserve_index=False),
                        mode="append",
                        commit_properties=CommitProperties(
                            custom_metadata={"clinlake.run_id": run_id, "clinlake.pipeline_version": pipeline_version},
                            app_transactions=txns))
        self._tables.pop("runs", None)

    def _files_with_keys(self, path: str, files: list[delta_io.DataFile], keys: DataFrame) -> list[delta_io.DataFile]:
        """The table's files that hold a row of any of ``keys`` (they are rewritten without them)."""
        if not files:
            return []
        located = (read_files(self.spark, path, files).select(KEY, F.col("_metadata.file_path").alias("file"))
                   .join(keys, on=F.col(KEY).eqNullSafe(F.col("_replace_key")), how="left_semi")
                   .select("file").distinct().collect())
        root = Path(_local(path)).resolve()
        hit = {str(Path(_local(r["file"])).resolve().relative_to(root)) for r in located}
        return [f for f in files if f.path in hit]


def read_files(spark: SparkSession, table_path: str, files: list[delta_io.DataFile]) -> DataFrame:
    return spark.read.parquet(*[delta_io.absolute_uri(table_path, f.path) for f in files])


def read_delta_files(spark: SparkSession, table_path: str, table) -> DataFrame:
    files = delta_io.current_files(table)
    if files:
        return read_files(spark, table_path, files)
    return spark.createDataFrame([], from_arrow_schema(pa.schema(table.schema().to_arrow())))


def read_delta(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """A Delta table as a DataFrame: delta-spark when the session has it, else delta-rs's file list."""
    if has_delta_spark(spark):
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)
    return read_delta_files(spark, path, delta_io.open_table(path, version))


def has_delta_spark(spark: SparkSession) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("io.delta.sql.DeltaSparkSessionExtension")  # type: ignore[union-attr]
        return True
    except Exception:
        return False


def _local(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else uri

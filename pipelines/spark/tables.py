"""Where the job's tables go: Parquet directories, or Delta tables committed atomically.

:class:`ParquetTables` writes each table with Spark (``output.mode`` overwrite/append).
:class:`DeltaTables` writes data files with Spark into the table directory and commits
them from the driver through delta-rs (see :mod:`pipelines.spark.delta_io`): one commit per
table per run, replacing the rows of the notes the run processed (by ``note_id``) and
leaving every other row as it was.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from clinlake.pipelines.spark import delta_io

KEY = "note_id"


@dataclass
class _TableRoot:
    spark: SparkSession
    root: str

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"


@dataclass
class ParquetTables(_TableRoot):
    mode: str = "overwrite"
    partition_by: dict[str, list[str]] = field(default_factory=dict)
    incremental: bool = False
    versions: dict[str, int] = field(default_factory=dict)

    def run_already_committed(self, run_id: str) -> bool:
        return False

    def read(self, name: str) -> DataFrame | None:
        return None

    def publish(self, name: str, rows: DataFrame, replace_keys: DataFrame | None, *, run_id: str,
                pipeline_version: str) -> None:
        rows.write.mode(self.mode).partitionBy(*self.partition_by.get(name, [])).parquet(self.path(name))

    def append_run(self, row: DataFrame, *, run_id: str, pipeline_version: str, succeeded: bool) -> None:
        row.coalesce(1).write.mode("append").parquet(self.path("runs"))


@dataclass
class DeltaTables(_TableRoot):
    """Delta output. ``incremental``: replace only the processed notes' rows; otherwise
    (``--full-refresh``) replace every row. Each table is read at one version per run and
    committed against that version."""

    incremental: bool = True
    partition_by: dict[str, list[str]] = field(default_factory=dict)  # used when a table is created
    versions: dict[str, int] = field(default_factory=dict)
    _tables: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every table's version is read now, when the run starts, and each commit is made against it:
        # a run that another run overtook fails on its first commit (ConcurrentRunError) and commits
        # nothing. Opened lazily at publish, a table would be committed against whatever version it had
        # then, so the overtaken run could commit entities and only then fail on note_status.
        for name in ("entities", "note_status", "quarantine"):
            self._table(name)

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
        partitions = self._partitioning(name, table)
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
                    kept = (read_files(self.spark, path, removed, _partition_types(rows, partitions))
                            .join(keys, on=F.col(KEY).eqNullSafe(F.col("_replace_key")), how="left_anti"))
                    new_rows = kept.unionByName(rows)
        folder = f"run-{run_id}-{uuid.uuid4().hex[:8]}"
        new_rows.write.mode("errorifexists").partitionBy(*partitions).parquet(f"{path}/{folder}")
        added = delta_io.list_written_files(path, folder)
        schema = to_arrow_schema(rows.schema)
        delta_io.commit(path, table=table, schema=schema, added=added, removed=removed, run_id=run_id,
                        pipeline_version=pipeline_version, partition_by=partitions,
                        operation="full_refresh" if not self.incremental else "incremental")
        self._tables.pop(name, None)
        self.versions[name] = delta_io.open_table(path).version()

    def _partitioning(self, name: str, table) -> list[str]:
        configured = list(self.partition_by.get(name, []))
        if table is None:
            return configured
        existing = delta_io.partition_columns(table)
        if configured and configured != existing:
            # Delta cannot re-partition in place; silently ignoring the setting would surprise.
            raise ValueError(f"the {name} table at {self.path(name)} is partitioned by {existing or 'nothing'}, "
                             f"but output.partition_by asks for {configured}; write to a new output path "
                             "to change the partitioning")
        return existing

    def append_run(self, row: DataFrame, *, run_id: str, pipeline_version: str, succeeded: bool) -> None:
        from deltalake import write_deltalake
        from deltalake.transaction import CommitProperties, Transaction

        # Only a succeeded run is recorded as an app transaction: a failed run may be retried.
        txns = [Transaction(delta_io.app_id(run_id), delta_io.TXN_VERSION)] if succeeded else None
        fields = delta_io.commit_metadata(run_id=run_id, pipeline_version=pipeline_version, operation="record_run",
                                          run_status="succeeded" if succeeded else "failed")
        write_deltalake(self.path("runs"), pa.Table.from_pandas(row.toPandas(), schema=to_arrow_schema(row.schema),
                                                                 preserve_index=False),
                        mode="append",
                        commit_properties=CommitProperties(custom_metadata=delta_io.custom_metadata(fields),
                                                           app_transactions=txns))
        self._tables.pop("runs", None)
        self.versions["runs"] = delta_io.open_table(self.path("runs")).version()

    def _files_with_keys(self, path: str, files: list[delta_io.DataFile], keys: DataFrame) -> list[delta_io.DataFile]:
        """The table's files that hold a row of any of ``keys`` (they are rewritten without them)."""
        if not files:
            return []
        located = (self.spark.read.parquet(*[delta_io.absolute_uri(path, f.path) for f in files])
                   .select(KEY, F.col("_metadata.file_path").alias("file"))
                   .join(keys, on=F.col(KEY).eqNullSafe(F.col("_replace_key")), how="left_semi")
                   .select("file").distinct().collect())
        by_uri = {spark_file_uri(self.spark, path, f.path): f for f in files}
        return [by_uri[r["file"]] for r in located]


def spark_file_uri(spark: SparkSession, table_path: str, relative: str) -> str:
    """The URI Spark reports in ``_metadata.file_path`` for a table file (Hadoop's encoding)."""
    absolute = delta_io.absolute_uri(table_path, relative)
    if "://" not in absolute and not absolute.startswith("file:"):
        absolute = "file:" + str(Path(absolute).resolve())
    return spark._jvm.org.apache.hadoop.fs.Path(absolute).toUri().toString()  # type: ignore[union-attr]


def read_files(spark: SparkSession, table_path: str, files: list[delta_io.DataFile],
               partition_types: dict | None = None) -> DataFrame:
    """Rows of the given table files. Partition columns are not stored in Delta data files:
    they are attached from each file's partition values (cast to the table's types)."""
    df = spark.read.parquet(*[delta_io.absolute_uri(table_path, f.path) for f in files])
    if not partition_types:
        return df
    columns = list(partition_types)
    mapping = spark.createDataFrame(
        [(spark_file_uri(spark, table_path, f.path), *[f.partition_values.get(c) for c in columns]) for f in files],
        "_file string, " + ", ".join(f"`{c}` string" for c in columns))
    df = df.withColumn("_file", F.col("_metadata.file_path")).join(F.broadcast(mapping), "_file").drop("_file")
    return df.select(*[c for c in df.columns if c not in columns],
                     *[F.col(c).cast(t).alias(c) for c, t in partition_types.items()])


def read_delta_files(spark: SparkSession, table_path: str, table) -> DataFrame:
    files = delta_io.current_files(table)
    schema = from_arrow_schema(pa.schema(table.schema().to_arrow()))
    if not files:
        return spark.createDataFrame([], schema)
    partitions = delta_io.partition_columns(table)
    df = read_files(spark, table_path, files, {c: schema[c].dataType for c in partitions})
    return df.select(*schema.fieldNames())  # the table's column order, partition columns included


def _partition_types(rows: DataFrame, partitions: list[str]) -> dict:
    return {c: rows.schema[c].dataType for c in partitions}


def read_delta(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """A Delta table as a DataFrame: delta-spark when the session has it, else delta-rs's file list."""
    if has_delta_spark(spark):
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)
    return read_delta_files(spark, path, delta_io.open_table(path, version))


def read_table(spark: SparkSession, path: str) -> DataFrame:
    """A clinlake output table as a DataFrame: Delta (:func:`read_delta`) when ``<path>/_delta_log``
    exists or, on an object store, when delta-rs says it is a Delta table; else Parquet."""
    return read_delta(spark, path) if is_delta_path(path) else spark.read.parquet(path)


def is_delta_path(path: str) -> bool:
    """A local folder with a ``_delta_log``; on an object store, what delta-rs says (False when it
    cannot tell, e.g. without storage credentials: the Parquet reader then names the problem)."""
    if "://" not in path or path.startswith("file://"):
        return (Path(path.removeprefix("file://")) / "_delta_log").is_dir()
    try:
        return bool(delta_io.is_delta_table(path))
    except Exception:
        return False


def has_delta_spark(spark: SparkSession) -> bool:
    """delta-spark's classes are on the session's class path. Looked up through the thread's context
    class loader: jars added with ``spark.jars`` / ``--jars`` / ``--packages`` are only there, not in
    the system class loader that a plain ``Class.forName`` uses."""
    try:
        jvm = spark._jvm  # type: ignore[union-attr]
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName("io.delta.sql.DeltaSparkSessionExtension", False, loader)
        return True
    except Exception:
        return False



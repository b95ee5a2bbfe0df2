"""Delta output through delta-spark: Spark's own Delta writer (Databricks, or a session with delta-spark).

:class:`DeltaSparkTables` has the interface of :class:`~pipelines.spark.tables.DeltaTables` (the
delta-rs writer) and records the same things, so a table created by either writer is continued
by the other:

- **One atomic commit per table per run.** The processed notes' rows are replaced with one
  ``MERGE`` whose source is the new rows (``_clinlake_action = 'insert'``) plus one row per
  processed note id (``'delete'``): ``WHEN MATCHED THEN DELETE`` removes every stored row of those
  ids (``<=>``: rows with a null id too), ``WHEN NOT MATCHED AND insert THEN INSERT`` adds the new
  rows (insert rows never match). Delete and insert land in the same commit. A ``replaceWhere``
  overwrite would need the key set spelled out as a literal ``note_id IN (...)`` predicate (it
  accepts no subquery), unbounded for large runs; ``whenNotMatchedBySource`` alone cannot delete the
  rows of ids that are also re-inserted. ``--full-refresh`` uses the same statement with
  ``WHEN NOT MATCHED BY SOURCE THEN DELETE`` (every stored row goes, the new rows come), so both
  modes share one commit path. A table that does not exist yet is created with one write.
- **Idempotent.** Each commit carries Delta's idempotent-write pair, appId ``clinlake:<run_id>`` and
  version 1 (writer options ``txnAppId``/``txnVersion``; for ``MERGE`` the session settings
  ``spark.databricks.delta.write.txnAppId``/``txnVersion``): Delta itself skips a write whose app
  transaction the table already has, and it is the same app transaction the delta-rs writer
  records. One appId per run, not one appId ``clinlake`` with a version derived from the run id:
  Delta skips every write whose version is not above the last one, and run ids (user-chosen,
  ``nightly-1``) have no order, so a derived version could silently skip a new run's rows.
  ``userMetadata`` (JSON: ``clinlake.run_id``, ``clinlake.pipeline_version``,
  ``clinlake.operation``, on ``runs`` also ``clinlake.run_status``) is what both writers put in the
  commit info; :meth:`DeltaSparkTables.run_already_committed` reads it back from the ``runs`` table's
  history.
- **Optimistic concurrency.** Each table's version is noted when the run starts; just
  before its commit the table must still be at that version, else :class:`ConcurrentRunError`. A
  commit landing while the ``MERGE`` runs is caught by Delta's own conflict detection
  (``DeltaConcurrentModificationException`` and subclasses), mapped to the same error. (Between the
  version check and the start of the ``MERGE`` lie milliseconds; a commit in that instant is merged
  over, per note, never duplicated.)
- **Names.** Tables are folders (``delta.`<path>```) or catalog tables (``output.catalog`` /
  ``output.schema`` / ``output.tables``), created with ``saveAsTable``.

SQL (``MERGE INTO``, ``DESCRIBE HISTORY``) rather than the ``delta.tables`` Python API: it needs no
extra Python package and reads the same on Databricks and open-source delta-spark. The ``MERGE``'s
idempotence and ``userMetadata`` are session settings, set for the one statement and restored after
it; another thread running Delta writes in the same SparkSession at that moment would pick them up.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clinlake.pipelines.spark import delta_io
from clinlake.pipelines.spark.delta_io import ConcurrentRunError
from clinlake.pipelines.spark.tables import has_delta_spark

KEY = "note_id"
ACTION, REPLACE_KEY = "_clinlake_action", "_clinlake_key"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
#: Table properties of tables this writer creates: no deletion vectors, so delta-rs, DuckDB and
#: Polars keep reading them (Databricks may enable them by default).
CREATE_OPTIONS = {"delta.enableDeletionVectors": "false"}
#: Delta's optimistic-concurrency failures (io.delta.exceptions.*, error classes DELTA_CONCURRENT_* etc.).
CONCURRENT_MARKERS = ("DeltaConcurrentModificationException", "ConcurrentAppendException",
                      "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
                      "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
                      "ProtocolChangedException", "DELTA_CONCURRENT_", "DELTA_METADATA_CHANGED",
                      "DELTA_PROTOCOL_CHANGED")
EXISTS_MARKERS = ("DELTA_PATH_EXISTS", "TABLE_OR_VIEW_ALREADY_EXISTS", "TABLE_ALREADY_EXISTS")
MISSING_MARKERS = ("DELTA_MISSING_DELTA_TABLE", "DELTA_TABLE_NOT_FOUND", "TABLE_OR_VIEW_NOT_FOUND",
                   "PATH_NOT_FOUND", "is not a Delta table", "doesn't exist")


class DeltaSessionError(ValueError):
    """The output needs a Spark session with Delta (table names, or ``output.delta_writer: delta-spark``)."""


def session_has_delta(spark: SparkSession) -> bool:
    """Databricks, or a session configured with delta-spark's extension or catalog (and its jar)."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    catalog = spark.conf.get("spark.sql.catalog.spark_catalog", "") or ""
    return (DELTA_EXTENSION in extensions or catalog == DELTA_CATALOG) and has_delta_spark(spark)


def use_delta_spark(spark: SparkSession, *, writer: str, named: bool) -> bool:
    """Which writer commits Delta output: ``writer`` auto picks delta-spark when the session has Delta.
    Names (``named``) and ``writer: delta-spark`` without Delta in the session raise DeltaSessionError."""
    if writer == "delta-rs":
        return False
    if session_has_delta(spark):
        return True
    if named or writer == "delta-spark":
        what = ("output table names (output.catalog / output.schema / output.tables)" if named
                else "output.delta_writer: delta-spark")
        raise DeltaSessionError(
            f"{what} need a Spark session with Delta (Databricks, or delta-spark: "
            f"spark.sql.extensions={DELTA_EXTENSION}, spark.sql.catalog.spark_catalog={DELTA_CATALOG} and "
            "the io.delta:delta-spark jar); this session has none. Without it, Delta tables are written as "
            "folders under output.path (delta-rs).")
    return False


def quote_name(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


@dataclass
class DeltaSparkTables:
    """Delta output committed by Spark. ``names``: catalog table per table (else folders under ``root``).
    ``incremental``: replace only the processed notes' rows; otherwise replace every row."""

    spark: SparkSession
    root: str
    names: dict[str, str] = field(default_factory=dict)
    incremental: bool = True
    partition_by: dict[str, list[str]] = field(default_factory=dict)  # used when a table is created
    versions: dict[str, int] = field(default_factory=dict)
    _seen: dict[str, int | None] = field(default_factory=dict)  # version when the run first looked

    def __post_init__(self) -> None:
        # The versions every commit of the run is checked against are read when the run starts, as the
        # delta-rs writer does: a run overtaken while it annotated fails on its first commit.
        for name in ("entities", "note_status", "quarantine"):
            self._version_seen(name)

    def path(self, name: str) -> str:
        return self.names.get(name) or f"{self.root.rstrip('/')}/{name}"

    def ident(self, name: str) -> str:
        """The table in SQL: a quoted catalog name, or delta.`<path>`."""
        if name in self.names:
            return quote_name(self.names[name])
        return "delta.`" + self.path(name).replace("`", "``") + "`"

    def _version_seen(self, name: str) -> int | None:
        if name not in self._seen:
            self._seen[name] = current_version(self.spark, self.ident(name), name=self.names.get(name))
        return self._seen[name]

    def run_already_committed(self, run_id: str) -> bool:
        """The ``runs`` table's history holds a succeeded record of ``run_id`` (either writer's)."""
        if self._version_seen("runs") is None:
            return False
        history = (self.spark.sql(f"DESCRIBE HISTORY {self.ident('runs')}")
                   .where(F.col("userMetadata").contains(json.dumps(run_id))).select("userMetadata").collect())
        for row in history:
            fields = _json_object(row["userMetadata"])
            if fields.get("clinlake.run_id") == run_id and fields.get("clinlake.run_status") == "succeeded":
                return True
        return False

    def read(self, name: str) -> DataFrame | None:
        """The table at the version this run first saw, or None if it does not exist yet."""
        version = self._version_seen(name)
        if version is None:
            return None
        return self.spark.sql(f"SELECT * FROM {self.ident(name)} VERSION AS OF {version}")

    def publish(self, name: str, rows: DataFrame, replace_keys: DataFrame | None, *, run_id: str,
                pipeline_version: str) -> None:
        expected = self._version_seen(name)
        operation = "incremental" if self.incremental else "full_refresh"
        metadata = delta_io.user_metadata(delta_io.commit_metadata(run_id=run_id, pipeline_version=pipeline_version,
                                                                   operation=operation))
        if expected is None:
            create_table(self.spark, rows, path=None if name in self.names else self.path(name),
                         name=self.names.get(name), partition_by=self.partition_by.get(name, []), run_id=run_id,
                         user_metadata=metadata)
        else:
            self._check_partitioning(name)
            keys = replace_keys if self.incremental and replace_keys is not None else None
            merge_rows(self.spark, self.ident(name), rows, keys, expected_version=expected, run_id=run_id,
                       user_metadata=metadata)
        self._record_version(name)

    def append_run(self, row: DataFrame, *, run_id: str, pipeline_version: str, succeeded: bool) -> None:
        fields = delta_io.commit_metadata(run_id=run_id, pipeline_version=pipeline_version, operation="record_run",
                                          run_status="succeeded" if succeeded else "failed")
        options = {"userMetadata": delta_io.user_metadata(fields)}
        if succeeded:  # only a succeeded run is an app transaction: a failed run may be retried
            options.update(txnAppId=delta_io.app_id(run_id), txnVersion=str(delta_io.TXN_VERSION))
        writer = row.coalesce(1).write.format("delta").mode("append").options(**options)
        if self._version_seen("runs") is None:
            writer = writer.options(**CREATE_OPTIONS)
        if "runs" in self.names:
            writer.saveAsTable(self.names["runs"])
        else:
            writer.save(self.path("runs"))
        self._record_version("runs")

    def _record_version(self, name: str) -> None:
        version = current_version(self.spark, self.ident(name), name=self.names.get(name))
        if version is not None:
            self.versions[name] = version

    def _check_partitioning(self, name: str) -> None:
        configured = list(self.partition_by.get(name, []))
        existing = list(self.spark.sql(f"DESCRIBE DETAIL {self.ident(name)}").first()["partitionColumns"])
        if configured and configured != existing:
            raise ValueError(f"the {name} table at {self.path(name)} is partitioned by {existing or 'nothing'}, "
                             f"but output.partition_by asks for {configured}; write to a new table to change the "
                             "partitioning")


def current_version(spark: SparkSession, ident: str, *, name: str | None = None) -> int | None:
    """The table's latest version, or None when there is no Delta table there (yet)."""
    if name is not None and not spark.catalog.tableExists(name):
        return None
    try:
        row = spark.sql(f"DESCRIBE HISTORY {ident} LIMIT 1").first()
    except Exception as exc:
        if name is None and any(m in str(exc) for m in MISSING_MARKERS):
            return None
        raise
    return None if row is None else int(row["version"])


def create_table(spark: SparkSession, rows: DataFrame, *, path: str | None, name: str | None,
                 partition_by: list[str], run_id: str, user_metadata: str) -> None:
    """The table's first commit: ``rows``, written once (a table that appeared meanwhile: a rival run)."""
    writer = (rows.write.format("delta").mode("errorifexists").partitionBy(*partition_by)
              .options(**CREATE_OPTIONS, txnAppId=delta_io.app_id(run_id), txnVersion=str(delta_io.TXN_VERSION),
                       userMetadata=user_metadata))
    try:
        writer.saveAsTable(name) if name is not None else writer.save(path)
    except Exception as exc:
        if any(m in str(exc) for m in EXISTS_MARKERS):
            raise ConcurrentRunError(f"{name or path} was created by another run while run {run_id} was running; "
                                     "nothing was committed to it by this run") from None
        raise


def merge_rows(spark: SparkSession, ident: str, rows: DataFrame, replace_keys: DataFrame | None, *,
               expected_version: int, run_id: str, user_metadata: str) -> None:
    """One commit: delete the stored rows of ``replace_keys`` (every stored row when it is None),
    insert ``rows``; only if the table is still at ``expected_version``."""
    current = current_version(spark, ident)
    if current != expected_version:
        raise _conflict(ident, run_id, f"the table moved from version {expected_version} to {current}")
    view = f"_clinlake_merge_{uuid.uuid4().hex[:12]}"
    merge_source(rows, replace_keys).createOrReplaceTempView(view)
    columns = ", ".join(f"`{c}`" for c in rows.columns)
    values = ", ".join(f"s.`{c}`" for c in rows.columns)
    statement = (f"MERGE INTO {ident} t USING {view} s ON s.{ACTION} = 'delete' AND t.`{KEY}` <=> s.{REPLACE_KEY} "
                 f"WHEN MATCHED THEN DELETE "
                 f"WHEN NOT MATCHED AND s.{ACTION} = 'insert' THEN INSERT ({columns}) VALUES ({values})"
                 + (" WHEN NOT MATCHED BY SOURCE THEN DELETE" if replace_keys is None else ""))
    confs = {TXN_APP_ID_CONF: delta_io.app_id(run_id), TXN_VERSION_CONF: str(delta_io.TXN_VERSION),
             USER_METADATA_CONF: user_metadata}
    try:
        with session_confs(spark, confs):
            spark.sql(statement)
    except Exception as exc:
        if is_concurrent_modification(exc):
            raise _conflict(ident, run_id, type(exc).__name__) from None
        raise
    finally:
        spark.catalog.dropTempView(view)


def merge_source(rows: DataFrame, replace_keys: DataFrame | None) -> DataFrame:
    """The new rows (action insert) and, for an incremental run, one delete row per replaced note id."""
    inserts = rows.select("*", F.lit("insert").alias(ACTION), F.lit(None).cast("string").alias(REPLACE_KEY))
    if replace_keys is None:
        return inserts
    deletes = replace_keys.select(F.lit("delete").alias(ACTION), F.col(KEY).cast("string").alias(REPLACE_KEY))
    return inserts.unionByName(deletes, allowMissingColumns=True)


@contextmanager
def session_confs(spark: SparkSession, confs: dict[str, str]) -> Iterator[None]:
    """Set Spark SQL settings for one statement, then restore what was there."""
    previous = {key: spark.conf.get(key, None) for key in confs}
    for key, value in confs.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def is_concurrent_modification(exc: BaseException) -> bool:
    """Delta's optimistic-concurrency failure, by class or error class (in the message or the Java cause)."""
    texts = [type(exc).__name__, str(exc)]
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            texts.append(str(java.getClass().getName()))
        except Exception:  # pragma: no cover - a detached JVM object
            pass
    return any(marker in text for text in texts for marker in CONCURRENT_MARKERS)


def _conflict(ident: str, run_id: str, why: str) -> ConcurrentRunError:
    return ConcurrentRunError(f"another run committed to {ident} while run {run_id} was running ({why}); run {run_id} "
                              "committed nothing to it (re-run to annotate against the new version)")


def _json_object(text: str | None) -> dict:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

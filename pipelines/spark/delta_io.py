"""Delta Lake tables through delta-rs (the ``deltalake`` package), committed from the driver.

Spark executors write ordinary Parquet files into a run-specific folder inside the table
directory; nothing there is visible to readers until the driver commits one Delta
transaction that adds them (and removes the files they replace). So a run either lands
completely or not at all, per table.

Concurrency is optimistic: the commit is made against the table version the run read
(``max_commit_retries=0``), so when another writer committed in between, the commit fails
with :class:`ConcurrentRunError` and the table keeps the other writer's version intact.
Every commit records ``clinlake.run_id`` and ``clinlake.pipeline_version`` in its commit
info and an app transaction ``clinlake:<run_id>``, so a retried run is recognised. The same
fields go into the commit info's ``userMetadata`` (JSON, :func:`commit_metadata`), which is what
delta-spark writes and ``DESCRIBE HISTORY`` shows: both writers (this one and
:mod:`pipelines.spark.delta_spark`) record the same things, so either continues the other's tables.

The tables keep protocol (reader 1, writer 2): readable by Spark/delta-spark, delta-rs,
DuckDB, Polars and Databricks.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

APP_ID_PREFIX = "clinlake:"
TXN_VERSION = 1  # the app transaction of a run: appId clinlake:<run_id>, version 1


def app_id(run_id: str) -> str:
    return APP_ID_PREFIX + run_id


def commit_metadata(*, run_id: str, pipeline_version: str, operation: str,
                    run_status: str | None = None) -> dict[str, str]:
    """The clinlake fields of a commit's info (``operation``: incremental, full_refresh or
    record_run; ``run_status`` on the runs table's commits: succeeded or failed)."""
    fields = {"clinlake.run_id": run_id, "clinlake.pipeline_version": pipeline_version,
              "clinlake.operation": operation}
    if run_status is not None:
        fields["clinlake.run_status"] = run_status
    return fields


def user_metadata(fields: dict[str, str]) -> str:
    """``commitInfo.userMetadata``: the fields as JSON, as both writers record them."""
    return json.dumps(fields, sort_keys=True)


def custom_metadata(fields: dict[str, str]) -> dict[str, str]:
    """delta-rs commit info: the fields at the top level (as before) and as ``userMetadata``."""
    return {**fields, "userMetadata": user_metadata(fields)}


class ConcurrentRunError(RuntimeError):
    """Another run committed to the table after this run read it; nothing was committed."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """A Parquet file inside the table directory (``path`` relative to the table root)."""

    path: str
    size: int
    num_records: int
    partition_values: dict[str, str | None] = field(default_factory=dict)


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def partition_string(value: object) -> str | None:
    """A partition value as the Delta log stores it (strings; dates ISO, timestamps with a space)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def partition_values_from_path(relative: str) -> dict[str, str | None]:
    """``col=value`` folders that Spark's ``partitionBy`` wrote (Hive-escaped) → Delta partition values."""
    values: dict[str, str | None] = {}
    for segment in relative.split("/")[:-1]:
        name, sep, raw = segment.partition("=")
        if sep:
            values[unquote(name)] = None if raw == HIVE_NULL else unquote(raw)
    return values


def is_delta_table(path: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(path)


def open_table(path: str, version: int | None = None):
    from deltalake import DeltaTable

    return DeltaTable(path, version=version) if version is not None else DeltaTable(path)


def current_files(table) -> list[DataFile]:
    actions = pa.table(table.get_add_actions(flatten=False))
    wanted = [c for c in ("path", "size_bytes", "num_records", "partition") if c in actions.column_names]
    return [DataFile(path=a["path"], size=a["size_bytes"], num_records=a.get("num_records") or 0,
                     partition_values={k: partition_string(v) for k, v in (a.get("partition") or {}).items()})
            for a in actions.select(wanted).to_pylist()]


def partition_columns(table) -> list[str]:
    return list(table.metadata().partition_columns) if table is not None else []


def absolute_uri(table_path: str, relative: str) -> str:
    return f"{table_path.rstrip('/')}/{relative}"


def already_committed(table, run_id: str) -> bool:
    return table.transaction_version(app_id(run_id)) is not None


def list_written_files(table_path: str, folder: str) -> list[DataFile]:
    """The Parquet files Spark wrote under ``<table>/<folder>``, with sizes and row counts."""
    fs, root = pafs.FileSystem.from_uri(_uri(table_path))
    selector = pafs.FileSelector(f"{root.rstrip('/')}/{folder}", recursive=True, allow_not_found=True)
    files = []
    for info in fs.get_file_info(selector):
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith((".", "_")):
            continue
        relative = info.path[len(root.rstrip("/")) + 1:]
        rows = pq.read_metadata(info.path, filesystem=fs).num_rows
        files.append(DataFile(path=relative, size=info.size, num_records=rows,
                              partition_values=partition_values_from_path(relative)))
    return sorted(files, key=lambda f: f.path)


def commit(table_path: str, *, table, schema: pa.Schema, added: list[DataFile], removed: list[DataFile],
           run_id: str, pipeline_version: str, operation: str, partition_by: list[str] | None = None) -> None:
    """One Delta transaction: remove ``removed``, add ``added``; create the table if ``table`` is None."""
    from deltalake import Schema as DeltaSchema
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import (AddAction, CommitProperties, RemoveAction, Transaction,
                                       create_table_with_add_actions)

    now_ms = int(time.time() * 1000)
    adds = [AddAction(path=f.path, size=f.size, partition_values=f.partition_values, modification_time=now_ms,
                      data_change=True,
                      stats=json.dumps({"numRecords": f.num_records})) for f in added]
    properties = CommitProperties(
        custom_metadata=custom_metadata(commit_metadata(run_id=run_id, pipeline_version=pipeline_version,
                                                        operation=operation)),
        app_transactions=[Transaction(app_id(run_id), TXN_VERSION, now_ms)],
        max_commit_retries=0,
    )
    try:
        if table is None:
            create_table_with_add_actions(table_path, DeltaSchema.from_arrow(schema), adds, mode="error",
                                          partition_by=partition_by or None, commit_properties=properties)
            return
        removes = [RemoveAction(path=f.path, data_change=True, deletion_timestamp=now_ms, size=f.size,
                                partition_values=f.partition_values) for f in removed]
        table.create_write_transaction(removes + adds, "append", DeltaSchema.from_arrow(schema),
                                       partition_by=partition_by or None, commit_properties=properties)
    except CommitFailedError as exc:
        raise ConcurrentRunError(
            f"another run committed to {table_path} while run {run_id} was running; run {run_id} committed "
            f"nothing to it (re-run to annotate against the new version): {exc}") from None
    except Exception as exc:
        if table is None and "exist" in str(exc).lower():
            raise ConcurrentRunError(f"{table_path} was created by another run while run {run_id} was running; "
                                     "nothing was committed by this run") from None
        raise


def _uri(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())

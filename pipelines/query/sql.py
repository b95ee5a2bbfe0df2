"""Read-only SQL over a lake's tables, offline: DuckDB over the tables' current Delta versions.

DuckDB's own ``delta_scan`` needs its ``delta`` extension, which DuckDB downloads on first use:
on an air-gapped machine the README's query would fail. Here delta-rs reads each table's Delta
log and hands DuckDB an Arrow dataset of exactly the files of the current (or a chosen) version,
so files that a later commit removed, or that an unfinished run left behind, are never read, and
no extension is loaded. The connection is locked down: extension auto-install and auto-load are
off, and DuckDB's own file system access is disabled once the tables are registered, so a query
can neither reach the network nor read or write files; it only reads the registered tables.

Parquet output (``output.format: parquet``) is registered the same way, as an Arrow dataset of
the table folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import duckdb
import pyarrow.dataset as pads
from deltalake import DeltaTable

from clinlake.schemas.tables import TABLE_NAMES

#: DuckDB settings that keep a query offline (no extension is downloaded or loaded on demand).
OFFLINE_SETTINGS: Mapping[str, object] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class LakeError(ValueError):
    """The lake folder holds none of the requested tables, or a table cannot be opened."""


@dataclass(frozen=True)
class RegisteredTable:
    name: str
    path: Path
    format: str  # "delta" | "parquet"
    version: int | None  # the Delta version read (None for Parquet)


def _dataset(path: Path, version: int | None) -> tuple[pads.Dataset, str, int | None]:
    if (path / "_delta_log").is_dir():
        table = DeltaTable(str(path), version=version) if version is not None else DeltaTable(str(path))
        return table.to_pyarrow_dataset(), "delta", table.version()
    if version is not None:
        raise LakeError(f"{path.name}: a version was asked for, but {path} is not a Delta table")
    return pads.dataset(str(path), format="parquet", partitioning="hive"), "parquet", None


def open_lake(root: str | Path, *, tables: Sequence[str] = TABLE_NAMES,
              versions: Mapping[str, int] | None = None) -> tuple[duckdb.DuckDBPyConnection, list[RegisteredTable]]:
    """A DuckDB connection with each of ``tables`` found under ``root`` registered as a view of
    the same name (``versions``: Delta time travel per table), and what was registered."""
    root = Path(root)
    versions = dict(versions or {})
    unknown = sorted(set(versions) - set(tables))
    if unknown:
        raise LakeError(f"--version for a table that is not queried: {', '.join(unknown)}")
    connection = duckdb.connect(config=dict(OFFLINE_SETTINGS))
    registered: list[RegisteredTable] = []
    for name in tables:
        path = root / name
        if not path.is_dir():
            continue
        try:
            dataset, fmt, version = _dataset(path, versions.get(name))
        except LakeError:
            raise
        except Exception as exc:  # delta-rs / Arrow errors name the path, never data
            raise LakeError(f"cannot open table {name} at {path}: {type(exc).__name__}: {exc}") from None
        connection.register(name, dataset)
        registered.append(RegisteredTable(name, path, fmt, version))
    if not registered:
        raise LakeError(f"no clinlake table ({', '.join(tables)}) under {root}")
    connection.execute("SET enable_external_access = false")  # read the registered tables only
    return connection, registered


def query(root: str | Path, sql: str, *, versions: Mapping[str, int] | None = None) -> duckdb.DuckDBPyRelation:
    """The result of one read-only ``sql`` statement over the lake's tables."""
    connection, _ = open_lake(root, versions=versions)
    return connection.sql(sql)

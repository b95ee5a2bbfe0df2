"""clinlake sql: read-only SQL over a lake's tables, offline (DuckDB over the current Delta versions).

    clinlake sql "SELECT label, count(*) AS n FROM entities GROUP BY label"
    clinlake sql --lake /data/lake --format csv "SELECT * FROM runs" > runs.csv
    clinlake sql --version entities=3 "SELECT count(*) FROM entities"      # time travel

Tables are views named ``entities``, ``note_status``, ``quarantine`` and ``runs``. No DuckDB
extension is downloaded or loaded, and the query cannot read or write files
(see :mod:`clinlake.pipelines.query.sql`).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

EXIT_OK, EXIT_USAGE = 0, 2


def build_parser(prog: str = "clinlake sql") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run one read-only SQL query (DuckDB dialect) over the tables under --lake: entities, "
                    "note_status, quarantine and runs, each at its current Delta version (or --version). "
                    "Works offline: no DuckDB extension is downloaded or loaded, and the query can neither "
                    "read nor write files. Note text is in the tables (chunk, quarantined_text): what you "
                    "select is printed.")
    parser.add_argument("sql", help="the query, e.g. \"SELECT label, count(*) AS n FROM entities GROUP BY label\"")
    parser.add_argument("--lake", default="lake", metavar="PATH",
                        help="root directory of the tables, as given to 'clinlake annotate --output' (default: lake)")
    parser.add_argument("--version", action="append", default=[], metavar="TABLE=N",
                        help="read this Delta version of a table (time travel); repeatable")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="table (boxed, for reading), csv (with a header) or json (one object per line)")
    parser.add_argument("--max-rows", type=int, default=40, metavar="N",
                        help="rows shown in --format table (default 40); csv and json print every row")
    return parser


def _versions(pairs: Sequence[str]) -> dict[str, int]:
    versions = {}
    for pair in pairs:
        table, sep, number = pair.partition("=")
        if not sep or not number.isdigit():
            raise ValueError(f"--version takes TABLE=N (a non-negative integer), got {pair!r}")
        versions[table] = int(number)
    return versions


def main(argv: Sequence[str] | None = None, prog: str = "clinlake sql") -> int:
    args = build_parser(prog).parse_args(argv)
    import duckdb

    from clinlake.pipelines.query.sql import LakeError, open_lake

    try:
        connection, _ = open_lake(args.lake, versions=_versions(args.version))
        result = connection.sql(args.sql)
        if result is None:  # a statement without a result (e.g. SET)
            return EXIT_OK
        if args.format == "table":
            result.show(max_rows=args.max_rows)
        elif args.format == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(result.to_arrow_table(), sys.stdout.buffer)
        else:
            for row in result.to_arrow_table().to_pylist():
                print(json.dumps(row, default=str, ensure_ascii=False))
    except (LakeError, ValueError, duckdb.Error) as exc:
        print(f"{prog}: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(prog="jobs/sql.py"))

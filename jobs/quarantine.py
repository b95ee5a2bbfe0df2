"""clinlake quarantine: inspect quarantined notes and export them for fixing and re-running.

    clinlake quarantine --output lake                       # counts by reason + the first 20 rows
    clinlake quarantine --output lake --reason null_text --limit 100
    clinlake quarantine --output lake --export fix_me.parquet   # or .csv: note_id, text, reason, detail
    clinlake annotate --config job.yaml --input fix_me.parquet --input-format parquet \\
        --id-column note_id --text-column text --output lake   # after fixing the text
                                                               # (+ --mode append for Parquet output)

Lists note_id, reason, detail and text length; never prints note text (PHI) unless
``--show-text`` is given. Reads ``<output>/quarantine`` as Parquet, or as a Delta table when
``<output>/quarantine/_delta_log`` exists (:func:`clinlake.pipelines.spark.tables.read_table`).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXPORT_COLUMNS = ("note_id", "text", "reason", "detail")
TEXT_PREVIEW_CHARS = 500


def build_parser(prog: str = "clinlake quarantine") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="List the notes a run quarantined (note_id, reason, detail; counts by reason) and export "
                    "their original text so they can be fixed and fed back with 'clinlake annotate --input'. "
                    "Note text is never printed unless --show-text is given.")
    parser.add_argument("--output", metavar="PATH", default="lake",
                        help="root directory of the tables, as given to 'clinlake annotate --output' (default: lake)")
    parser.add_argument("--reason", metavar="R", action="append",
                        help="only this reason code (repeatable), e.g. null_text, control_characters")
    parser.add_argument("--run-id", metavar="ID", help="only rows written by this run")
    parser.add_argument("--limit", metavar="N", type=_non_negative, default=20,
                        help="rows to list (default 20; 0 lists none, counts only)")
    parser.add_argument("--export", metavar="PATH",
                        help="write the selected rows' note_id, original text, reason and detail to a .parquet or "
                             ".csv file (all selected rows, not only --limit)")
    parser.add_argument("--export-format", choices=("parquet", "csv"),
                        help="format of --export (default: from the file extension, else parquet)")
    parser.add_argument("--show-text", action="store_true",
                        help=f"also print each listed note's text (first {TEXT_PREVIEW_CHARS} characters; PHI!)")
    parser.add_argument("--master", metavar="URL", help="spark.master for a new local session (default local[*])")
    return parser


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def _table_exists(path: str) -> bool:
    if "://" in path and not path.startswith("file://"):
        return True  # let Spark say so
    return Path(path.removeprefix("file://")).exists()


def main(argv: Sequence[str] | None = None, prog: str = "clinlake quarantine") -> int:
    args = build_parser(prog).parse_args(argv)
    path = f"{args.output.rstrip('/')}/quarantine"
    if not _table_exists(path):
        print(f"clinlake: no quarantine table at {path} (run 'clinlake annotate --output {args.output}' first)",
              file=sys.stderr)
        return EXIT_USAGE
    from pyspark.sql import functions as F

    from clinlake.pipelines.config import SparkConfig
    from clinlake.pipelines.spark.session import JavaNotFoundError, get_spark
    from clinlake.pipelines.spark.tables import is_delta_path, read_table

    try:
        spark = get_spark(SparkConfig(master=args.master or "local[*]", app_name="clinlake-quarantine"))
    except JavaNotFoundError as exc:
        print(f"clinlake: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        table = read_table(spark, path)
    except Exception as exc:  # the message names the path, never data
        print(f"clinlake: cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
              file=sys.stderr)
        return EXIT_FAILED
    if args.reason:
        table = table.where(F.col("reason").isin(args.reason))
    if args.run_id:
        table = table.where(F.col("run_id") == args.run_id)
    by_reason = sorted(((r["reason"], r["n"]) for r in table.groupBy("reason").agg(F.count(F.lit(1)).alias("n"))
                        .collect()), key=lambda kv: (-kv[1], str(kv[0])))
    total = sum(n for _, n in by_reason)
    runs = [r["run_id"] for r in table.select("run_id").distinct().limit(4).collect()]
    scope = ", ".join(f"{k} {', '.join(v)}" for k, v in (("reason", args.reason or []),
                                                          ("run", [args.run_id] if args.run_id else [])) if v)
    print(f"clinlake quarantine: {total} quarantined note(s) in {path}" + (f" ({scope})" if scope else "")
          + (f"; run(s) {', '.join(runs[:3])}{' …' if len(runs) > 3 else ''}" if runs else ""))
    if by_reason:
        print("  by reason:")
        for reason, n in by_reason:
            print(f"    {str(reason):<24}{n:>8}")
    if total and args.limit:
        _print_rows(table, args.limit, args.show_text, total)
    if args.export:
        fmt = args.export_format or ("csv" if args.export.lower().endswith(".csv") else "parquet")
        written, no_text = export_rows(table, Path(args.export), fmt)
        print(f"exported {written} row(s) to {args.export} ({fmt}: {', '.join(EXPORT_COLUMNS)} and any "
              "pass-through columns)" + (f"; {no_text} row(s) have no text (null or non-string input)"
                                          if no_text else ""))
        mode = "" if is_delta_path(path) else " --mode append"
        print("fix the text, then re-run them with the original job config:\n"
              f"  clinlake annotate --config <your job config> --input {args.export} --input-format {fmt} "
              f"--id-column note_id --text-column text --output {args.output}{mode}")
    return EXIT_OK


def _print_rows(table, limit: int, show_text: bool, total: int) -> None:
    from pyspark.sql import functions as F

    columns = ["note_id", "reason", "text_length", "detail"] + (["quarantined_text"] if show_text else [])
    rows = table.orderBy(F.col("reason").asc_nulls_first(), F.col("note_id").asc_nulls_first()) \
        .select(*columns).limit(limit).collect()
    id_width = min(36, max([7] + [len(str(r["note_id"])) for r in rows]))
    print(f"  {'note_id':<{id_width}}  {'reason':<22}  {'chars':>9}  detail")
    for r in rows:
        note_id = "null" if r["note_id"] is None else str(r["note_id"])
        chars = "" if r["text_length"] is None else f"{r['text_length']:,}"
        print(f"  {note_id:<{id_width}}  {str(r['reason']):<22}  {chars:>9}  {r['detail'] or ''}")
        if show_text:
            text = r["quarantined_text"]
            preview = "null" if text is None else repr(text[:TEXT_PREVIEW_CHARS]) + (
                " …" if len(text) > TEXT_PREVIEW_CHARS else "")
            print(f"  {'':<{id_width}}  text: {preview}")
    if total > len(rows):
        print(f"  (showing {len(rows)} of {total}; --limit N for more)")


def export_rows(table, path: Path, fmt: str = "parquet") -> tuple[int, int]:
    """Write note_id, text (the original quarantined text), reason, detail and the run's
    pass-through columns (e.g. patient_id) to one file, ready for ``clinlake annotate --input``
    with the original job config plus ``--id-column note_id --text-column text``.

    Streams rows from Spark (``toLocalIterator``), so a large quarantine does not need the
    driver's memory at once. Returns (rows written, rows without text).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    from clinlake.schemas.tables import quarantine_table

    declared = {c.name for c in quarantine_table()}
    passthrough = [c for c in table.columns if c not in declared and c not in EXPORT_COLUMNS]
    selected = table.select(F.col("note_id").cast("string").alias("note_id"),
                            F.col("quarantined_text").alias("text"), "reason", "detail", *passthrough)
    columns = selected.columns
    rows = selected.orderBy(F.col("note_id").asc_nulls_first()).toLocalIterator()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = no_text = 0
    if fmt == "csv":
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(columns)
            for r in rows:
                writer.writerow(["" if r[c] is None else r[c] for c in columns])
                written += 1
                no_text += r["text"] is None
        return written, no_text
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = to_arrow_schema(selected.schema)
    with pq.ParquetWriter(path, schema) as writer:
        batch: list = []
        for r in rows:
            batch.append(r.asDict())
            written += 1
            no_text += r["text"] is None
            if len(batch) >= 10_000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return written, no_text


if __name__ == "__main__":
    sys.exit(main(prog="jobs/quarantine.py"))

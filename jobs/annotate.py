"""clinlake annotate: notes in a table → entity tables out.

Runnable as ``clinlake annotate [options]`` or ``spark-submit jobs/annotate.py [options]``
(with clinlake installed on the driver and executors). Thin on purpose: parse args → load
config → run → report.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFLICT, EXIT_GATE = 0, 1, 2, 3, 4


def build_parser(prog: str = "clinlake annotate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Annotate clinical notes with entities, sections and assertion status, and write the "
                    "entities, note_status, quarantine and runs tables. With no options it annotates the "
                    "bundled sample notes (MTSamples) with local Spark and writes Delta tables under ./lake. "
                    "Exit codes: 0 succeeded (or already committed), 1 run failed, 2 configuration/input error, "
                    "3 another run committed to the output meanwhile (nothing committed; re-run), "
                    "4 the quality gate failed (nothing published; see the run report).",
    )
    parser.add_argument("--config", metavar="YAML",
                        help="job config file (default: the packaged conf/local.yaml)")
    parser.add_argument("--input", metavar="PATH", help="override input.path: notes table or files")
    parser.add_argument("--input-format", choices=("delta", "parquet", "csv", "json"), help="override input.format")
    parser.add_argument("--input-version", type=int, metavar="N",
                        help="Delta input only: read this table version (time travel)")
    parser.add_argument("--id-column", metavar="NAME", help="override input.id_column")
    parser.add_argument("--text-column", metavar="NAME", help="override input.text_column")
    parser.add_argument("--output", metavar="PATH", help="override output.path: root directory of the tables")
    parser.add_argument("--output-format", choices=("delta", "parquet"), help="override output.format")
    parser.add_argument("--mode", choices=("overwrite", "append"), help="override output.mode (Parquet output)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="Delta output: re-annotate every input note and replace all rows, instead of only "
                             "new or changed notes (incremental, the default)")
    parser.add_argument("--master", metavar="URL",
                        help="override spark.master for a new local session (ignored under spark-submit)")
    parser.add_argument("--gate", choices=("enforce", "warn", "off"),
                        help="override quality.mode: enforce (a failed gate stops the publish), warn, off")
    parser.add_argument("--run-id", metavar="ID", help="run id to record (default: UTC timestamp + random suffix)")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON instead of a table")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on stderr while the engine runs (notes done / total, notes/s, "
                             "quarantined so far, ETA; never note text); the summary is still printed")
    parser.add_argument("--log-level", choices=("ERROR", "WARN", "INFO", "DEBUG"),
                        help="override spark.log_level: Spark's own log output (conf/local.yaml sets ERROR)")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    mapping = {
        "input.path": args.input, "input.format": args.input_format, "input.version": args.input_version,
        "input.id_column": args.id_column, "input.text_column": args.text_column, "output.path": args.output,
        "output.format": args.output_format, "output.mode": args.mode,
        "spark.master": args.master, "quality.mode": args.gate, "spark.log_level": args.log_level,
    }
    return {key: value for key, value in mapping.items() if value is not None}


def _log_progress(*, quiet: bool) -> None:
    """Progress lines (logger ``clinlake.progress``) to stderr, one per finished batch of work."""
    logger = logging.getLogger("clinlake.progress")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)  # today's stderr: one handler per run, not one per call
    handler.setFormatter(logging.Formatter("%(asctime)s clinlake annotate %(message)s", datefmt="%H:%M:%S"))
    logger.handlers = [handler]
    logger.propagate = False


def main(argv: Sequence[str] | None = None, prog: str = "clinlake annotate") -> int:
    args = build_parser(prog).parse_args(argv)
    from clinlake.pipelines.config import ConfigError, load_config
    from clinlake.pipelines.report.summary import format_summary
    from clinlake.pipelines.spark.delta_io import ConcurrentRunError
    from clinlake.pipelines.spark.job import InputError, QualityGateError, run_annotate
    from clinlake.pipelines.spark.session import JavaNotFoundError, ShadowedPackageError, get_spark

    _log_progress(quiet=args.quiet)
    try:
        config = load_config(args.config, overrides_from_args(args))
    except (ConfigError, ValueError) as exc:
        print(f"clinlake: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        spark = get_spark(config.spark)
    except JavaNotFoundError as exc:
        print(f"clinlake: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = run_annotate(spark, config, run_id=args.run_id, full_refresh=args.full_refresh)
    except (InputError, ConfigError, ValueError, ShadowedPackageError) as exc:
        print(f"clinlake: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QualityGateError as exc:
        print(f"clinlake: the quality gate stopped the publish; the published tables are unchanged.\n{exc}",
              file=sys.stderr)
        return EXIT_GATE
    except ConcurrentRunError as exc:
        print(f"clinlake: conflict: {exc}", file=sys.stderr)
        return EXIT_CONFLICT
    except Exception as exc:  # recorded in the runs table; report without note text
        print(f"clinlake: run failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
              file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(asdict(summary), indent=2) if args.json else format_summary(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(prog="jobs/annotate.py"))

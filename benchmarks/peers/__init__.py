"""Peer systems measured beside clinlake by ``python -m benchmarks.run``.

Each peer module sets up its own environment once (a virtualenv or a Spark with the peer's
jars, under ``build/peers/``), trains the peer where the benchmark needs it, and measures it
on the workload file the run hands it (JSON lines: ``{"note_id": ..., "text": ...}``).
"""

import argparse
import json
from pathlib import Path
from typing import Callable


def print_result(result: dict, format_table: Callable[[dict], str], out: Path | None) -> None:
    """A peer CLI's output: its table, its JSON, and the JSON in ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(format_table(result))
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


def peer_parser(description: str, *, work: Path, quick_help: str) -> argparse.ArgumentParser:
    """The options every one-thread peer CLI takes: --notes, --work, --quick, --repeat, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--notes", type=Path, required=True, help="workload: JSON lines {note_id, text}")
    parser.add_argument("--work", type=Path, default=work)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    return parser

"""Peer systems measured beside clinlake by ``python -m benchmarks.run``.

Each peer module sets up its own environment once (a virtualenv or a Spark with the peer's
jars, under ``build/peers/``), trains the peer where the benchmark needs it, and measures it
on the workload file the run hands it (JSON lines: ``{"note_id": ..., "text": ...}``).
"""

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

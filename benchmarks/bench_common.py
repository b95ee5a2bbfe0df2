"""Small helpers shared by the benchmark scripts: the score table and the results file."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Mapping, Sequence


def score_table(results: Mapping[str, Mapping], columns: Sequence[tuple[str, str]], *, rate_key: str,
                cell: int = 14, first: str = "engine") -> str:
    """One row per system: floats to 3 decimals, the ``rate_key`` column (a speed) as a whole number."""
    width = max([len(first), *map(len, results)]) + 2
    header = f"{first:<{width}}" + "".join(f"{title:>{cell}}" for _, title in columns)
    lines = [header, "-" * len(header)]
    for name, scores in results.items():
        cells = []
        for key, _ in columns:
            value = scores.get(key)
            cells.append(f"{value:>{cell}.0f}" if key == rate_key and value else
                         f"{value:>{cell}.3f}" if isinstance(value, float) else f"{'-':>{cell}}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def write_results(path: Path, payload: Mapping) -> None:
    """``payload`` plus the machine and the time, as indented JSON; prints where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        **payload,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")

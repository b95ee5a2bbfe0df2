"""The benchmark workloads, made from the bundled sample notes (MTSamples, 318 non-empty notes).

* ``typical``: the sample notes replicated ``scale`` times with unique ids, in order;
* ``long``: one note per size (1k, 10k, 100k, 1M characters), each the sample notes
  concatenated (separated by a blank line) and cut at the last whitespace before the size.

Files are JSON lines, ``{"note_id": ..., "text": ...}``, so peers in other environments read
them without pyarrow. Token counts everywhere are whitespace-separated words (``str.split``),
the one unit every system can be given.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from clinlake.pipelines.resources import sample_texts

LONG_SIZES = (1_000, 10_000, 100_000, 1_000_000)


def typical_notes(scale: int, texts: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The sample notes ``scale`` times over, ids ``n<copy>-<index>`` unique across copies."""
    texts = list(texts if texts is not None else sample_texts())
    return [{"note_id": f"n{copy}-{i}", "text": t} for copy in range(scale) for i, t in enumerate(texts)]


def long_note(size: int, texts: Sequence[str] | None = None) -> str:
    """A note of at most ``size`` characters made of whole sample notes (the last one cut at a space)."""
    texts = list(texts if texts is not None else sample_texts())
    parts, total, i = [], 0, 0
    while total < size:
        text = texts[i % len(texts)]
        parts.append(text)
        total += len(text) + 2
        i += 1
    joined = "\n\n".join(parts)[:size]
    cut = joined.rfind(" ") if len(joined) == size else -1
    return joined[:cut] if cut > 0 else joined


def long_notes(sizes: Iterable[int] = LONG_SIZES) -> list[dict[str, str]]:
    texts = sample_texts()
    return [{"note_id": f"long-{size}", "text": long_note(size, texts)} for size in sizes]


def words(text: str) -> int:
    """Whitespace-separated words: the token unit of every speed figure."""
    return len(text.split())


def write_jsonl(path: Path, notes: Iterable[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for note in notes:
            handle.write(json.dumps(note, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

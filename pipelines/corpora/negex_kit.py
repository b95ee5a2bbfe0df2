"""The NegEx/ConText clinical test kit (Chapman et al.): TSV rows of a target phrase in a sentence.

Columns ``id, note, phrase, sentence, negation (Affirmed|Negated), temporality
(Recent|Historical|Not particular), experiencer (Patient|Other)``; ``phrase`` appears in
``sentence`` case-insensitively, with whitespace that may differ (:func:`locate_phrase`).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path


def read_kit(path: str | Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def locate_phrase(phrase: str, sentence: str) -> tuple[int, int] | None:
    """Span of ``phrase`` in ``sentence``, ignoring case and runs of whitespace."""
    words = phrase.split()
    if not words:
        return None
    match = re.search(r"\s+".join(map(re.escape, words)), sentence, flags=re.IGNORECASE)
    return (match.start(), match.end()) if match else None

"""Build the shipped PROBLEM / TEST / TREATMENT lexicons from annotated training text.

The default dictionary stage needs vocabularies we may ship. We derive them from the
training splits of two CC BY 4.0 corpora in ../shared (MACCROBAT case reports, Chia trial
criteria), keeping a term only when the annotators labelled it with the same class in at
least ``min_precision`` of the places it occurs in the training text (so words like
"patient" or "left" never become entities) and at least ``min_count`` times.

    clinlake train lexicons --shared ../shared --out conf/lexicons

Type mapping (i2b2-2010 concept classes):

    PROBLEM    MACCROBAT Sign_symptom, Disease_disorder; Chia Condition
    TEST       MACCROBAT Diagnostic_procedure; Chia Measurement
    TREATMENT  MACCROBAT Medication, Therapeutic_procedure; Chia Drug

Left out: MACCROBAT Lab_value (values such as "elevated", "12 mg/dL", not test names) and
Chia Procedure (mixes diagnostic and therapeutic procedures).
"""
from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from clinlake.pipelines.corpora.brat import read_ann, read_text_exact
from clinlake.pipelines.resources import shared_data
from clinlake.pipelines.engine.pieces import WORD_PIECE

TYPE_MAP: dict[str, dict[str, str]] = {
    "MACCROBAT": {"Sign_symptom": "PROBLEM", "Disease_disorder": "PROBLEM", "Diagnostic_procedure": "TEST",
                  "Medication": "TREATMENT", "Therapeutic_procedure": "TREATMENT"},
    "Chia": {"Condition": "PROBLEM", "Measurement": "TEST", "Drug": "TREATMENT"},
}
MAX_TERM_TOKENS = 6


def tokens(text: str) -> tuple[str, ...]:
    return tuple(t.casefold() for t in WORD_PIECE.findall(text))


def brat_entities(ann_path: Path) -> Iterator[tuple[str, int, int]]:
    """(type, start, end) of the contiguous text-bound annotations of one BRAT file."""
    for entity in read_ann(ann_path).entities:
        if not entity.discontinuous:  # discontinuous spans are not dictionary terms
            yield entity.type, entity.start, entity.end


def corpus_docs(data: Path) -> Iterator[tuple[str, str, Path]]:
    """(corpus, text, .ann path) of the train documents under the shared data folder ``data``."""
    for corpus in TYPE_MAP:
        for txt in sorted((data / "clinical" / corpus / "train").glob("*.txt")):
            yield corpus, read_text_exact(txt), txt.with_suffix(".ann")


@dataclass
class _Doc:
    keys: tuple[str, ...]            # casefolded tokens
    labels: list[set[str]]           # per token: the classes of the annotated spans covering it


def _doc(corpus: str, text: str, ann: Path) -> tuple[_Doc, list[tuple[str, tuple[str, ...]]]]:
    matches = list(WORD_PIECE.finditer(text))
    starts = [m.start() for m in matches]
    labels: list[set[str]] = [set() for _ in matches]
    terms = []
    for kind, start, end in brat_entities(ann):
        label = TYPE_MAP[corpus].get(kind)
        if not label:
            continue
        first, last = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        for i in range(first, last):
            labels[i].add(label)
        terms.append((label, tuple(m.group().casefold() for m in matches[first:last])))
    return _Doc(tuple(m.group().casefold() for m in matches), labels), terms


def build(data: Path | None = None, *, min_count: int = 2, min_precision: float = 0.5) -> dict[str, list[str]]:
    """Terms whose occurrences in the training text lie inside a span of their class at least
    ``min_precision`` of the time (and at least ``min_count`` times). Occurrences inside a
    longer annotated span count as labelled, so "diabetes" inside "type 2 diabetes" does.
    ``data``: the shared data folder (default :func:`~clinlake.pipelines.resources.shared_data`)."""
    docs: list[_Doc] = []
    candidates: dict[tuple[str, ...], Counter] = defaultdict(Counter)
    for corpus, text, ann in corpus_docs(shared_data() if data is None else data):
        doc, terms = _doc(corpus, text, ann)
        docs.append(doc)
        for label, key in terms:
            if 0 < len(key) <= MAX_TERM_TOKENS and _is_term(key):
                candidates[key][label] += 1
    total, inside = _count_occurrences(docs, candidates)
    lexicons: dict[str, list[str]] = defaultdict(list)
    for key, labels in candidates.items():
        label = labels.most_common(1)[0][0]
        covered = inside[(key, label)]
        if covered >= min_count and covered / total[key] >= min_precision:
            lexicons[label].append(_surface(key))
    return {label: sorted(set(terms)) for label, terms in sorted(lexicons.items())}


def _is_term(key: tuple[str, ...]) -> bool:
    # At least one word of 3+ letters, or an all-letter abbreviation like "ct", "mri", "hiv".
    return any(len(t) >= 3 and t.isalpha() for t in key) or (len(key) == 1 and key[0].isalpha() and len(key[0]) >= 2)


def _count_occurrences(docs: Iterable[_Doc], keys: Iterable[tuple[str, ...]]) -> tuple[Counter, Counter]:
    """Occurrences of each key, and of each (key, label) with every token inside a span of label."""
    wanted = set(keys)
    lengths = sorted({len(k) for k in wanted})
    total: Counter = Counter()
    inside: Counter = Counter()
    for doc in docs:
        for n in lengths:
            for i in range(len(doc.keys) - n + 1):
                window = doc.keys[i:i + n]
                if window in wanted:
                    total[window] += 1
                    for label in set.intersection(*doc.labels[i:i + n]):
                        inside[(window, label)] += 1
    return total, inside


def _surface(key: tuple[str, ...]) -> str:
    # Tokens joined by single spaces; matching is token-based, so spacing does not matter.
    return " ".join(key)


def write(lexicons: dict[str, list[str]], out: Path) -> dict[str, Path]:
    """One ``<label>.txt`` per label under ``out``; returns the files written, by label."""
    out.mkdir(parents=True, exist_ok=True)
    header = ("# Derived by clinlake.pipelines.training.lexicons from the training splits of MACCROBAT\n"
              "# (Caufield et al. 2019, CC BY 4.0) and Chia (Kury et al. 2020, CC BY 4.0).\n"
              "# One term per line; matched case- and whitespace-insensitively on tokens.\n")
    written = {}
    for label, terms in lexicons.items():
        written[label] = out / f"{label.lower()}.txt"
        written[label].write_text(header + "\n".join(terms) + "\n", encoding="utf-8")
    return written

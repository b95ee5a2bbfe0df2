"""A model's gazetteer: entity strings its training annotators tagged almost every time they occur.

Learned with the model (:mod:`pipelines.training.ner.gazetteer`) and shipped beside it as
``gazetteer.tsv``: one term per line, ``pieces<TAB>LABEL<TAB>PRECISION[<TAB>upper]`` where *pieces* are the
model's pieces joined by single spaces, *precision* the share of the term's occurrences in the
training text that annotators tagged with that label, and ``upper`` marks a term written in upper case
wherever it occurred in training (an abbreviation such as "PAD", which must not match the word "pad").
Matching adds an entity wherever a term occurs (case-insensitive, ``str.casefold``, on the model's
pieces, except that an ``upper`` term matches only in upper case) and no entity overlaps it, longest match
first, left to right; it never removes or relabels what the tagger found. A match's confidence is
the term's precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

FILE = "gazetteer.tsv"
Span = tuple[int, int, str]


class GazetteerError(ValueError):
    """A gazetteer file is missing or malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Term:
    label: str
    precision: float
    upper_only: bool = False  # every training occurrence was upper case ("PAD"): match only upper case


def is_upper(tokens: Sequence[str]) -> bool:
    """No lower-case letter, at least one letter ("PAD", "HIV-1")."""
    joined = "".join(tokens)
    return joined.upper() == joined and any(c.isalpha() for c in joined)


def key(tokens: Sequence[str]) -> tuple[str, ...]:
    return tuple(map(str.casefold, tokens))


def read_gazetteer(path: Path) -> dict[tuple[str, ...], Term]:
    """The terms of a ``gazetteer.tsv`` (see the module doc)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GazetteerError(f"no gazetteer file {path}: learn one with `clinlake train card NAME --cv REPORT` "
                             "or turn the stage's gazetteer off") from None
    terms: dict[tuple[str, ...], Term] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        try:
            pieces, label, precision, *flags = parts
            if flags not in ([], ["upper"]):
                raise ValueError
            terms[key(pieces.split(" "))] = Term(label, float(precision), upper_only=flags == ["upper"])
        except ValueError:
            raise GazetteerError(f"{path}:{number}: expected pieces<TAB>LABEL<TAB>PRECISION[<TAB>upper]") from None
    return terms


class Gazetteer:
    """Terms indexed for matching: each term's first piece maps to the term lengths starting with it,
    longest first, so a sentence costs one dict lookup per piece plus one per candidate length."""

    def __init__(self, terms: Mapping[tuple[str, ...], Term]) -> None:
        self.terms = dict(terms)
        lengths: dict[str, set[int]] = {}
        for k in self.terms:
            lengths.setdefault(k[0], set()).add(len(k))
        self.lengths = {first: tuple(sorted(ns, reverse=True)) for first, ns in lengths.items()}

    def __len__(self) -> int:
        return len(self.terms)

    def matches(self, tokens: Sequence[str], spans: Sequence[Span]) -> list[tuple[Span, Term]]:
        """(span, term) of each match in one sentence that overlaps none of ``spans`` nor an earlier match."""
        taken = list(spans)
        found: list[tuple[Span, Term]] = []
        folded, lengths = key(tokens), self.lengths
        resume = 0  # the end of the last match: matches do not overlap
        # only pieces some term starts with are tried (most pieces start none)
        for position in [i for i, piece in enumerate(folded) if piece in lengths]:
            if position < resume:
                continue
            for n in lengths[folded[position]]:
                term = self.terms.get(folded[position:position + n]) if position + n <= len(folded) else None
                if term is not None and term.upper_only and not is_upper(tokens[position:position + n]):
                    term = None
                if term is not None and not any(s[0] < position + n and position < s[1] for s in taken):
                    span = (position, position + n, term.label)
                    taken.append(span)
                    found.append((span, term))
                    resume = position + n
                    break
        return found

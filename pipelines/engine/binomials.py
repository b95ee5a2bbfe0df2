"""Abbreviated binomials within a document: "Escherichia coli" … "E. coli" … "E coli".

Full-text articles and abstracts name a species in full once ("Escherichia coli") and then by its
abbreviated binomial ("E. coli"). A sentence-level tagger that tags one form may miss the other,
which has no parenthesised definition for :mod:`pipelines.engine.short_forms` to follow. Here a
tagged binomial settles both forms for the rest of the document:

* **binomial**: a tagged entity whose tokens are a genus and an epithet: ``Genus species`` (genus
  capitalised, at least 3 letters; epithet lower-case, at least 3 letters), or the abbreviated
  ``G . species`` / ``G. species`` / ``G species`` (one capital letter). A longer entity starting
  with a binomial counts by its first two words ("Escherichia coli K-12");
* **key**: (the genus's initial, the epithet); the label is the entity's;
* **occurrences**: every full form with a genus of that initial and that epithet, and every
  abbreviated form, in a sentence where the binomial is tagged or up to ``reach`` sentences after
  one (None: to the end of the document);
* **outcome**: an untagged occurrence is tagged; one inside or overlapping a longer entity is left
  alone; nothing is removed. A key the tagger tagged with two labels settles nothing, so unlike
  abbreviation propagation nothing is ever relabelled.

Case-sensitive, plain Python over token strings and token spans, like
:mod:`pipelines.engine.short_forms`, and applied after it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from clinlake.pipelines.engine.placement import place

Span = tuple[int, int, str]  # first token, last token + 1, label
Key = tuple[str, str]  # genus initial, epithet
MIN_LETTERS = 3


def _is_genus(word: str) -> bool:
    return len(word) >= MIN_LETTERS and word.isalpha() and word[0].isupper() and word[1:].islower()


def _is_epithet(word: str) -> bool:
    return len(word) >= MIN_LETTERS and word.isalpha() and word.islower()


def _is_initial(word: str) -> bool:
    return len(word) == 1 and word.isupper() or len(word) == 2 and word[0].isupper() and word[1] == "."


def binomial_at(tokens: Sequence[str], start: int) -> tuple[Key, int] | None:
    """(key, token count) of a binomial starting at ``tokens[start]``, or None."""
    first = tokens[start]
    if _is_genus(first) and start + 1 < len(tokens) and _is_epithet(tokens[start + 1]):
        return (first[0], tokens[start + 1]), 2
    if not _is_initial(first):
        return None
    at = start + 1
    if len(first) == 1 and at < len(tokens) and tokens[at] == ".":
        at += 1
    if at < len(tokens) and _is_epithet(tokens[at]):
        return (first[0], tokens[at]), at + 1 - start
    return None


@dataclass(frozen=True)
class Settled:
    """A binomial the tagger tagged: where, with which label, and its first entity."""
    tagged_in: tuple[int, ...]  # sentences it is tagged in, in order
    label: str
    origin: tuple[int, Span]  # (sentence, entity) of its first tagged mention


def tagged_binomials(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[Span]]) -> dict[Key, Settled]:
    """Every binomial the tagger tagged, by key; a key tagged with two labels is left out (the
    document does not settle it)."""
    found: dict[Key, Settled] = {}
    conflicting: set[Key] = set()
    for index, (tokens, entities) in enumerate(zip(sentences, spans)):
        for start, end, label in entities:
            hit = binomial_at(tokens[:end], start)
            if hit is None:
                continue
            key = hit[0]
            if key not in found:
                found[key] = Settled((index,), label, (index, (start, end, label)))
            elif found[key].label != label:
                conflicting.add(key)
            elif found[key].tagged_in[-1] != index:
                found[key] = replace(found[key], tagged_in=found[key].tagged_in + (index,))
    return {key: value for key, value in found.items() if key not in conflicting}


def _reached(index: int, tagged_in: Sequence[int], reach: int | None) -> bool:
    """Whether sentence ``index`` is a tagged one or within ``reach`` sentences after one."""
    before = [t for t in tagged_in if t <= index]
    return bool(before) and (reach is None or index - before[-1] <= reach)


def propagate_binomials(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[Span]], *,
                        reach: int | None = None) -> list[dict[Span, tuple[int, Span] | None]]:
    """The document's spans after binomial propagation: per sentence, each span mapped to None
    (one of ``spans``) or to the (sentence, entity) of the tagged binomial that added or relabelled it."""
    result: list[dict[Span, tuple[int, Span] | None]] = [dict.fromkeys(s) for s in spans]
    settled = tagged_binomials(sentences, spans)
    if not settled:
        return result
    for index, tokens in enumerate(sentences):
        for position in range(len(tokens)):
            hit = binomial_at(tokens, position)
            if hit is None or hit[0] not in settled:
                continue
            (key, n), binomial = hit, settled[hit[0]]
            if _reached(index, binomial.tagged_in, reach):
                place(result[index], position, position + n, binomial.label, binomial.origin)
    return [dict(sorted(s.items())) for s in result]

"""A gazetteer learned from an NER training split: the entity strings its annotators tag almost every time.

A tagger can miss a string its training data tagged dozens of times when the context is new. The
gazetteer here holds each entity string of the training examples whose annotators gave it one label in
at least ``min_precision`` of the places it occurs (tagged or not) and at least ``min_count`` times, so
strings that are entities only sometimes ("patient", "cell") never enter it. Matching it over a
document adds an entity wherever a gazetteer string occurs and no entity overlaps it (longest match
first, left to right); it never removes or relabels what the tagger found.

Strings are compared case-insensitively (``str.casefold``), as the pipeline's dictionary stage
(:mod:`pipelines.engine.dictionary`) compares its terms, so what cross-validation measures here is what
a lexicon built from the same strings would do in that stage.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from clinlake.pipelines.engine.ner.crf import iob_spans
from clinlake.pipelines.training.ner.corpus import Example

Gazetteer = dict[tuple[str, ...], str]  # casefolded tokens -> label
MAX_TOKENS = 6


def _key(tokens: Sequence[str]) -> tuple[str, ...]:
    return tuple(t.casefold() for t in tokens)


def _count_occurrences(sentences: Sequence[Sequence[str]], keys: set[tuple[str, ...]]) -> Counter:
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for key in keys:
        by_first.setdefault(key[0], []).append(key)
    counts: Counter = Counter()
    for tokens in sentences:
        folded = _key(tokens)
        for position, token in enumerate(folded):
            for key in by_first.get(token, ()):
                if folded[position:position + len(key)] == key:
                    counts[key] += 1
    return counts


def learn_gazetteer(examples: Sequence[Example], *, min_precision: float = 0.9, min_count: int = 2,
                    min_chars: int = 3) -> Gazetteer:
    """The gazetteer of ``examples`` (pieces and IOB2 tags), see the module doc."""
    tagged: Counter = Counter()
    for tokens, tags in examples:
        for start, end, label in iob_spans(tags):
            if end - start <= MAX_TOKENS:
                tagged[(_key(tokens[start:end]), label)] += 1
    keys = {key for key, _ in tagged}
    keys = {k for k in keys if len("".join(k)) >= min_chars and any(c.isalpha() for c in "".join(k))}
    seen = _count_occurrences([tokens for tokens, _ in examples], keys)
    best: dict[tuple[str, ...], tuple[int, str]] = {}
    for (key, label), count in tagged.items():
        if key in keys and count > best.get(key, (0, ""))[0]:
            best[key] = (count, label)
    return {key: label for key, (count, label) in sorted(best.items())
            if count >= min_count and count >= min_precision * seen[key]}


def with_gazetteer(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[tuple[int, int, str]]],
                   gazetteer: Mapping[tuple[str, ...], str]) -> list[list[tuple[int, int, str]]]:
    """Each sentence's spans plus the gazetteer's matches that overlap none of them."""
    longest = max((len(k) for k in gazetteer), default=0)
    out = []
    for tokens, found in zip(sentences, spans, strict=True):
        current = dict.fromkeys(found)
        folded, position = _key(tokens), 0
        while position < len(tokens):
            for n in range(min(longest, len(tokens) - position), 0, -1):
                label = gazetteer.get(folded[position:position + n])
                if label is not None and not any(s[0] < position + n and position < s[1] for s in current):
                    current[(position, position + n, label)] = None
                    position += n - 1
                    break
            position += 1
        out.append(sorted(current))
    return out

"""Learning a model's gazetteer from its training examples (served by :mod:`pipelines.engine.gazetteer`).

A tagger can miss a string its training data tagged dozens of times when the context is new. The
gazetteer holds each entity string of the training examples whose annotators gave it one label in at
least ``min_precision`` of the places it occurs (tagged or not) and at least ``min_count`` times, so
strings that are entities only sometimes ("patient", "cell") never enter it. Strings are compared
case-insensitively on the model's pieces, as the engine matches them.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from clinlake.pipelines.engine.gazetteer import Gazetteer, Term, is_upper, key
from clinlake.pipelines.engine.ner.crf import iob_spans
from clinlake.pipelines.training.ner.corpus import Example

Terms = dict[tuple[str, ...], Term]
MAX_TOKENS = 6
MIN_PRECISION, MIN_COUNT, MIN_CHARS = 0.9, 2, 3


def _count_occurrences(sentences: Sequence[Sequence[str]], keys: set[tuple[str, ...]]) -> tuple[Counter, set]:
    """How often each key occurs (case-insensitively), and the keys seen in some form not all upper case."""
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for k in keys:
        by_first.setdefault(k[0], []).append(k)
    counts: Counter = Counter()
    not_upper: set[tuple[str, ...]] = set()
    for tokens in sentences:
        folded = key(tokens)
        for position, token in enumerate(folded):
            for k in by_first.get(token, ()):
                if folded[position:position + len(k)] == k:
                    counts[k] += 1
                    if not is_upper(tokens[position:position + len(k)]):
                        not_upper.add(k)
    return counts, not_upper


def learn_gazetteer(examples: Sequence[Example], *, min_precision: float = MIN_PRECISION,
                    min_count: int = MIN_COUNT, min_chars: int = MIN_CHARS) -> Terms:
    """The gazetteer of ``examples`` (pieces and IOB2 tags), see the module doc."""
    tagged: Counter = Counter()
    for tokens, tags in examples:
        for start, end, label in iob_spans(tags):
            if end - start <= MAX_TOKENS:
                tagged[(key(tokens[start:end]), label)] += 1
    keys = {k for k, _ in tagged if len("".join(k)) >= min_chars and any(c.isalpha() for c in "".join(k))}
    seen, not_upper = _count_occurrences([tokens for tokens, _ in examples], keys)
    best: dict[tuple[str, ...], tuple[int, str]] = {}
    for (k, label), count in sorted(tagged.items()):
        if k in keys and count > best.get(k, (0, ""))[0]:
            best[k] = (count, label)
    return {k: Term(label, round(count / seen[k], 4), upper_only=k not in not_upper)
            for k, (count, label) in sorted(best.items()) if count >= min_count and count >= min_precision * seen[k]}


def with_gazetteer(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[tuple[int, int, str]]],
                   gazetteer: Mapping[tuple[str, ...], Term]) -> list[list[tuple[int, int, str]]]:
    """Each sentence's spans plus the gazetteer's matches that overlap none of them."""
    index = Gazetteer(gazetteer)
    return [sorted([*found, *(span for span, _ in index.matches(tokens, found))])
            for tokens, found in zip(sentences, spans, strict=True)]


def write_gazetteer(path: Path, gazetteer: Mapping[tuple[str, ...], Term], *, source: str) -> None:
    """``gazetteer.tsv`` (format: :mod:`pipelines.engine.gazetteer`), headed by what it was learned from."""
    lines = [f"# learned from {source}: entity strings tagged with one label in at least {MIN_PRECISION:.0%} of "
             f"their occurrences and at least {MIN_COUNT} times (pipelines/training/ner/gazetteer.py)",
             "# pieces<TAB>label<TAB>share of occurrences tagged[<TAB>upper: upper case in every occurrence]"]
    lines += [f"{' '.join(k)}\t{t.label}\t{t.precision}" + ("\tupper" if t.upper_only else "")
              for k, t in gazetteer.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

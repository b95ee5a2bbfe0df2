"""Document-level post-processing variants of one tagger's output, scored on the same predictions.

Cross-validation (:mod:`pipelines.training.ner.cv`) trains one network per fold and scores every
variant here on that fold's held-out predictions, so two variants differ only in their
post-processing and their paired difference carries no training noise. A variant maps the
tagger's tags (and confidences) of consecutive sentences to new tags:

* ``network``: the tagger alone, sentence by sentence;
* ``abbreviations``: abbreviation propagation (:mod:`pipelines.engine.short_forms`) reaching
  ``abbreviation_reach`` sentences, what the shipped NER stage does;
* ``abbreviations+binomials``: then abbreviated binomials (:mod:`pipelines.engine.binomials`)
  over the same reach;
* ``abbreviations+consistency``: then the label consistency vote
  (:mod:`pipelines.engine.consistency`) over :data:`CONSISTENCY_REACH` neighbouring sentences;
* ``abbreviations+gazetteer``: then the matches of a gazetteer learned from the tagger's own
  training examples (:mod:`pipelines.training.ner.gazetteer`) where no entity overlaps them
  (scored only when a gazetteer is given);
* ``abbreviations+consistency+gazetteer``: both, in the NER stage's order (the vote, then the gazetteer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH, iob_tags, post_processed, score_tags, spans
from clinlake.pipelines.training.ner.gazetteer import with_gazetteer

CONSISTENCY_REACH = 10  # sentences either side a vote reaches in a CoNLL file (the devel figures' N)
DEFAULT = "abbreviations"  # the shipped stage's post-processing


@dataclass(frozen=True)
class Tagged:
    """A tagger's output on consecutive sentences of one corpus."""
    tokens: Sequence[Sequence[str]]
    tags: Sequence[Sequence[str]]
    confidence: Sequence[Sequence[float]]  # posterior of each chosen tag, O included
    abbreviation_reach: int | None = ABBREVIATION_REACH
    gazetteer: Mapping[tuple[str, ...], str] | None = None  # learned from the tagger's training examples


def _network(tagged: Tagged) -> list[list[str]]:
    return [list(tags) for tags in tagged.tags]


def _post_processed(**steps) -> Callable[[Tagged], list[list[str]]]:
    def variant(tagged: Tagged) -> list[list[str]]:
        return post_processed(tagged.tokens, tagged.tags, tagged.confidence,
                              abbreviation_reach=tagged.abbreviation_reach, **steps)
    return variant


def _then_gazetteer(before: Callable[[Tagged], list[list[str]]]) -> Callable[[Tagged], list[list[str]]]:
    def variant(tagged: Tagged) -> list[list[str]]:
        tags = before(tagged)
        added = with_gazetteer(tagged.tokens, [spans(t) for t in tags], tagged.gazetteer or {})
        return [iob_tags(len(t), found) for t, found in zip(tagged.tokens, added)]
    return variant


VARIANTS: dict[str, Callable[[Tagged], list[list[str]]]] = {
    "network": _network,
    "abbreviations": _post_processed(),
    "abbreviations+binomials": _post_processed(binomials=True),
    "abbreviations+consistency": _post_processed(consistency_reach=CONSISTENCY_REACH),
    "abbreviations+gazetteer": _then_gazetteer(_post_processed()),
    # the stage's order when both are on: the vote, then the gazetteer where nothing overlaps
    "abbreviations+consistency+gazetteer": _then_gazetteer(_post_processed(consistency_reach=CONSISTENCY_REACH)),
}
NEEDS_GAZETTEER = {"abbreviations+gazetteer", "abbreviations+consistency+gazetteer"}


class UnknownVariantError(KeyError):
    """A variant name that :data:`VARIANTS` does not hold."""


def score_variants(tagged: Tagged, gold: Sequence[Sequence[str]], names: Sequence[str] | None = None) -> dict[str, dict]:
    """Strict overall precision, recall and F1 of each variant (by default all of :data:`VARIANTS`
    that ``tagged`` has what they need for)."""
    chosen = [n for n in VARIANTS if tagged.gazetteer is not None or n not in NEEDS_GAZETTEER] \
        if names is None else list(names)
    unknown = [n for n in chosen if n not in VARIANTS]
    if unknown:
        raise UnknownVariantError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    out = {}
    for name in chosen:
        overall = score_tags(gold, VARIANTS[name](tagged))["overall"]
        out[name] = {key: overall[key] for key in ("f1", "precision", "recall")}
    return out

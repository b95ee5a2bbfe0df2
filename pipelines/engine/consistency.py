"""Document-level label consistency for NER output: one string, one reading per document.

A sentence-level tagger sees each sentence alone: it may tag "Crohn disease" in one sentence and miss
it three sentences later, or call a string a Chemical here and a Disease there. Within one document a
string almost always means the same thing each time (Krishnan & Manning 2006 measured it for news;
biomedical abstracts repeat their entities more), so each string the tagger tagged somewhere is settled
by a vote over all its occurrences in the document:

* **candidates**: the token sequences of the tagger's entities (the tagger's own, and those that
  abbreviation propagation added, :mod:`pipelines.engine.short_forms`), at least ``min_chars``
  characters with a letter among them;
* **occurrences**: exact, case-sensitive token matches of a candidate within ``reach`` sentences
  of one of its entities (None: the whole document). An occurrence is *tagged* when an entity
  covers exactly its tokens, *untagged* when no entity overlaps it, and *inside* otherwise (part of
  a longer entity, or overlapping one): inside occurrences neither vote nor change;
* **vote**: a tagged occurrence votes for its label with the tagger's confidence in it times
  ``entity_weight``, an untagged one for "outside" with the tagger's mean confidence in O over its
  tokens. With the default weight 1 a string tagged once and left untagged twice, all with about the
  same confidence, stays untagged; a larger weight lets the tagger's positive evidence count for more
  than its silence, since a tagger misses a rare name far more often than it invents one (a model's
  ``document_level`` record in model.json sets it, chosen by cross-validation like the steps);
* **outcome**: a label that wins (strictly more weight than every other choice) tags the
  untagged occurrences and relabels the others; "outside" winning removes the tagged
  occurrences only with ``remove=True``; a tie changes nothing. Entities the vote adds or relabels
  take the mean confidence of the winning label's votes.

Plain Python over token strings and token spans, like :mod:`pipelines.engine.short_forms`: used by
the NER stage (a note is the document) and by ``clinlake evaluate ner`` (CoNLL files mark no
document boundaries, so the vote reaches a declared number of neighbouring sentences).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

Span = tuple[int, int, str]  # first token, last token + 1, label
Scored = dict[Span, tuple[float, str]]  # span -> (confidence, provenance) of one sentence
OUTSIDE = "O"
VOTED = "+consistency"  # provenance of an entity the vote added or relabelled
TIE = 1e-9


class MissingConfidenceError(ValueError):
    """A vote met a NaN confidence: the tagger was not asked for every token's confidence
    (``NerModel.tag(..., every_confidence=True)``), so an untagged occurrence has no weight."""


@dataclass
class _Ballot:
    weights: dict[str, float] = field(default_factory=dict)
    votes: dict[str, int] = field(default_factory=dict)

    def add(self, choice: str, weight: float) -> None:
        if weight != weight:  # NaN: the vote would be decided by how NaN happens to sort
            raise MissingConfidenceError("a label consistency vote needs every token's confidence, got NaN")
        self.weights[choice] = self.weights.get(choice, 0.0) + weight
        self.votes[choice] = self.votes.get(choice, 0) + 1

    def winner(self, entity_weight: float = 1.0) -> str | None:
        """The choice with strictly the most weight, a label's weight times ``entity_weight``
        (None on a tie)."""
        scaled = {c: w if c == OUTSIDE else w * entity_weight for c, w in self.weights.items()}
        ranked = sorted(scaled.items(), key=lambda item: -item[1])
        if len(ranked) > 1 and ranked[0][1] - ranked[1][1] <= TIE:
            return None
        return ranked[0][0]

    def mean(self, choice: str) -> float:
        return self.weights[choice] / self.votes[choice]


def _is_candidate(tokens: Sequence[str], min_chars: int) -> bool:
    joined = "".join(tokens)
    return len(joined) >= min_chars and any(c.isalpha() for c in joined)


def _candidates(sentences: Sequence[Sequence[str]], scored: Sequence[Mapping[Span, object]],
                min_chars: int) -> set[tuple[str, ...]]:
    found = {tuple(sentences[i][a:b]) for i, s in enumerate(scored) for a, b, _ in s}
    return {c for c in found if _is_candidate(c, min_chars)}


def occurrences(sentences: Sequence[Sequence[str]], candidates: set[tuple[str, ...]]) -> dict[tuple[str, ...], list[tuple[int, int]]]:
    """(sentence, first token) of every exact occurrence of each candidate, in document order."""
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for candidate in candidates:
        by_first.setdefault(candidate[0], []).append(candidate)
    found: dict[tuple[str, ...], list[tuple[int, int]]] = {c: [] for c in candidates}
    for index, tokens in enumerate(sentences):
        # only tokens some candidate starts with (most start none)
        for position in [p for p, token in enumerate(tokens) if token in by_first]:
            for candidate in by_first[tokens[position]]:
                if tuple(tokens[position:position + len(candidate)]) == candidate:
                    found[candidate].append((index, position))
    return found


def consistent_labels(sentences: Sequence[Sequence[str]], scored: Sequence[Mapping[Span, tuple[float, str]]],
                      token_confidence: Sequence[Sequence[float]], *, reach: int | None = None,
                      remove: bool = False, min_chars: int = 3, entity_weight: float = 1.0) -> list[Scored]:
    """The document's entities after the vote, per sentence: span -> (confidence, provenance).

    ``scored`` holds each sentence's entities with (confidence, provenance); ``token_confidence``
    the tagger's confidence in the tag it chose for each token (for an untagged token: in O);
    ``entity_weight`` scales a tagged occurrence's vote (the confidence an added entity gets is
    the unscaled mean)."""
    if not entity_weight > 0:  # also rejects NaN
        raise ValueError(f"entity_weight must be a positive number, got {entity_weight!r}")
    result = [dict(s) for s in scored]
    for candidate, places in sorted(occurrences(sentences, _candidates(sentences, scored, min_chars)).items()):
        n = len(candidate)
        states = []  # (sentence, start, exact span or None when untagged); inside occurrences left out
        for index, start in places:
            overlapping = [s for s in scored[index] if s[0] < start + n and start < s[1]]
            if not overlapping:
                states.append((index, start, None))
            elif len(overlapping) == 1 and overlapping[0][:2] == (start, start + n):
                states.append((index, start, overlapping[0]))
        anchors = [index for index, _, span in states if span is not None]
        for group in _groups(states, anchors, reach):
            _settle(group, scored, token_confidence, result, n, remove, entity_weight)
    return [dict(sorted(s.items())) for s in result]


def _groups(states: list, anchors: list[int], reach: int | None) -> list[list]:
    """The occurrences that vote together: all of them (reach None), or, per tagged occurrence,
    chains of occurrences no more than ``reach`` sentences from a tagged one (so a vote never
    spans further than the declared window from the tagger's own evidence)."""
    if reach is None:
        return [states] if anchors else []
    near = [s for s in states if any(abs(s[0] - a) <= reach for a in anchors)]
    groups: list[list] = []
    for state in near:  # document order: split where two neighbours are further apart than reach
        if groups and state[0] - groups[-1][-1][0] <= reach:
            groups[-1].append(state)
        else:
            groups.append([state])
    return [g for g in groups if any(span is not None for _, _, span in g)]


def _settle(group: list, scored: Sequence[Mapping[Span, tuple[float, str]]], token_confidence: Sequence[Sequence[float]],
            result: list[Scored], n: int, remove: bool, entity_weight: float) -> None:
    ballot = _Ballot()
    for index, start, span in group:
        if span is None:
            weights = token_confidence[index][start:start + n]
            ballot.add(OUTSIDE, sum(weights) / len(weights))
        else:
            ballot.add(span[2], scored[index][span][0])
    winner = ballot.winner(entity_weight)
    if winner is None or (winner == OUTSIDE and not remove):
        return
    for index, start, span in group:
        if winner == OUTSIDE:
            if span is not None:
                result[index].pop(span, None)
        elif span is None or span[2] != winner:
            if span is not None:
                result[index].pop(span, None)
            result[index][(start, start + n, winner)] = (round(ballot.mean(winner), 4), VOTED)

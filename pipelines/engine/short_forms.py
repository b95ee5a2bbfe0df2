"""Document-level abbreviation consistency for NER output (Schwartz & Hearst 2003 definitions).

A sentence-level tagger sees "posterior cruciate ligament (PCL)" and tags the long form, but
three sentences later it meets "PCL" alone and has nothing to go on. Biomedical and clinical
documents define their abbreviations once, at first use, so the definition settles what the
short form means for the rest of the document:

* **definition**: ``long form ( SF )`` where SF is 2–10 characters (at most 3 tokens, first
  character alphanumeric, at least one letter) and the long form is found by the Schwartz &
  Hearst algorithm: SF's characters occur in order in the words before the parenthesis, its
  first character at the start of a word;
* **propagation**: when the tagger's entity ends right before the parenthesis and covers the
  whole long form, or is exactly SF inside the parentheses, SF takes that entity's label
  wherever it occurs in its sentence and the rest of the document: an untagged occurrence is
  tagged, one tagged alone with another label is relabelled, one inside a longer entity is left
  alone.
  A definition whose long form the tagger did not tag (or tagged only in part) changes nothing:
  propagation adds and relabels, it never removes what the tagger found. (Also dropping SF
  entities after an untagged long form added 0.04-0.14 devel F1 on the biomedical corpora but
  deleted correct clinical entities, e.g. a TURP after an untagged "transurethral resection of
  the prostate (TURP)".)

Occurrences are exact, case-sensitive token matches. A definition reaches its own sentence
and the ``reach`` sentences after it (None: to the end of the document). Plain Python
over token strings and token spans, used by the NER pipeline stage (a note is the document)
and by ``clinlake evaluate ner`` (CoNLL files keep a document's sentences together in order
but mark no boundaries, so a definition reaches a fixed number of following sentences).
On the four biomedical devel sets this raised strict F1 by 0.4–1.1 points (models/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from clinlake.pipelines.engine.binomials import propagate_binomials
from clinlake.pipelines.engine.placement import place

Span = tuple[int, int, str]  # first token, last token + 1, label
Scored = dict[Span, tuple[float, str]]  # span -> (confidence, provenance) of one sentence
PROPAGATED = "+abbreviation"  # provenance of an entity propagation added or relabelled
BINOMIAL = "+binomial"  # provenance of an entity an abbreviated binomial added or relabelled

MIN_CHARS, MAX_CHARS, MAX_TOKENS = 2, 10, 3


@dataclass(frozen=True)
class Definition:
    sentence: int
    short_form: tuple[str, ...]
    label: str
    origin: Span  # the tagger's entity the label came from


def long_form_length(short_form: str, words: Sequence[str]) -> int | None:
    """How many of ``words`` (counted back from the last) the long form of ``short_form`` spans,
    or None when SF's characters cannot be matched in order (Schwartz & Hearst 2003)."""
    short, text = short_form.lower(), " ".join(words).lower()
    s, t = len(short) - 1, len(text) - 1
    while s >= 0:
        char = short[s]
        if not char.isalnum():
            s -= 1
            continue
        # The first SF character must begin a word of the long form; the others may be anywhere.
        while t >= 0 and (text[t] != char or (s == 0 and t > 0 and text[t - 1].isalnum())):
            t -= 1
        if t < 0:
            return None
        s, t = s - 1, t - 1
    return len(text[t + 1:].split())


def _is_short_form(tokens: Sequence[str]) -> bool:
    joined = "".join(tokens)
    return (0 < len(tokens) <= MAX_TOKENS and MIN_CHARS <= len(joined) <= MAX_CHARS and joined[0].isalnum()
            and any(c.isalpha() for c in joined))


def definitions(tokens: Sequence[str]) -> list[tuple[int, int, int]]:
    """(long form start, SF start, SF end) of each ``long form ( SF )`` in a token sequence."""
    found = []
    for open_at, token in enumerate(tokens):
        if token != "(":
            continue
        close_at = next((k for k in range(open_at + 2, min(open_at + 2 + MAX_TOKENS, len(tokens)))
                         if tokens[k] == ")"), None)
        if close_at is None or not _is_short_form(tokens[open_at + 1:close_at]):
            continue
        short = "".join(tokens[open_at + 1:close_at])
        limit = min(len(short) + 5, 2 * len(short))  # longest long form considered, in words
        length = long_form_length(short, tokens[max(0, open_at - limit):open_at])
        if length:
            found.append((open_at - length, open_at + 1, close_at))
    return found


def document_definitions(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[Span]]) -> list[Definition]:
    """The document's definitions whose long form (or short form) the tagger's spans tag whole."""
    found = []
    for index, (tokens, entities) in enumerate(zip(sentences, spans)):
        for long_start, short_start, short_end in definitions(tokens):
            open_at = short_start - 1
            whole = [e for e in entities if e[1] == open_at and e[0] <= long_start]
            inside = [e for e in entities if e[0] == short_start and e[1] == short_end]
            if whole or inside:
                origin = (whole or inside)[0]
                found.append(Definition(index, tuple(tokens[short_start:short_end]), origin[2], origin))
    return found


def propagate(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[Span]], *,
              reach: int | None = None) -> list[dict[Span, tuple[int, Span] | None]]:
    """The document's spans after abbreviation propagation: per sentence, each span mapped to
    None (the tagger's own) or to (sentence, entity) whose label it took from a definition."""
    result: list[dict[Span, tuple[int, Span] | None]] = [dict.fromkeys(s) for s in spans]
    found = document_definitions(sentences, spans)
    # Where each short form's first token occurs, in document order: one pass over the document
    # instead of one per definition (a long note may define many abbreviations).
    firsts = {d.short_form[0] for d in found}
    where: dict[str, list[tuple[int, int]]] = {}
    for index, tokens in enumerate(sentences):
        for position, token in enumerate(tokens):
            if token in firsts:
                where.setdefault(token, []).append((index, position))
    for definition in found:
        last = len(sentences) if reach is None else min(len(sentences), definition.sentence + reach + 1)
        n = len(definition.short_form)
        for index, start in where[definition.short_form[0]]:
            if not definition.sentence <= index < last:
                continue
            if tuple(sentences[index][start:start + n]) == definition.short_form:
                place(result[index], start, start + n, definition.label, (definition.sentence, definition.origin))
    return [dict(sorted(s.items())) for s in result]


SEQUENTIAL_BELOW = 8  # numpy's pairwise summation adds fewer values than this one by one, from 0.0


def mean(values: Sequence[float]) -> float:
    """``float(np.mean(values))``, bit for bit: an entity's span is short, and below
    :data:`SEQUENTIAL_BELOW` values numpy sums them in order from 0.0, as ``sum`` does (numpy's
    ``pairwise_sum`` in ``loops_utils.h.src``), without building an array (the array cost 4x the sum)."""
    n = len(values)
    if 0 < n < SEQUENTIAL_BELOW:
        return sum(values) / n
    return float(np.mean(values))


def scored_spans(sentences: Sequence[Sequence[str]], spans: Sequence[Sequence[Span]],
                 confidences: Sequence[Sequence[float]], *, propagate_abbreviations: bool = True,
                 reach: int | None = None, binomial_short_forms: bool = False) -> list[Scored]:
    """Each sentence's entities as span -> (confidence, provenance), after abbreviation
    propagation when asked, then abbreviated binomials (:mod:`pipelines.engine.binomials`) when
    asked: a tagger's own entity has the mean confidence of its tokens and provenance "", a
    propagated one the confidence of the entity it came from and :data:`PROPAGATED` or
    :data:`BINOMIAL` (the NER stage and ``clinlake evaluate`` both read entities this way)."""
    found = propagate(sentences, spans, reach=reach) if propagate_abbreviations else [dict.fromkeys(s) for s in spans]

    def confidence(index: int, span: Span) -> float:
        return round(mean(confidences[index][span[0]:span[1]]), 4)

    scored = [{span: (confidence(*(origin or (index, span))), "" if origin is None else PROPAGATED)
               for span, origin in sentence_spans.items()} for index, sentence_spans in enumerate(found)]
    if not binomial_short_forms:
        return scored
    moved = propagate_binomials(sentences, [list(s) for s in scored], reach=reach)
    return [{span: scored[index][span] if origin is None else (scored[origin[0]][origin[1]][0], BINOMIAL)
             for span, origin in sentence_spans.items()} for index, sentence_spans in enumerate(moved)]

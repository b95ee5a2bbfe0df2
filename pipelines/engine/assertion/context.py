"""ConText-style rule-based assertion (Harkema, Chapman et al. 2009; cf. medspaCy).

The lexicon lives in ``conf/context_rules.yaml`` (read and validated by :mod:`.rules`, compiled
once by :mod:`.lexicon` into a token trie (literals) plus a few regexes (inflection patterns)); this
module decides for
each target span in a sentence which i2b2 assertion label applies and whether the
mention is historical.

Decision procedure for one sentence (see ``ContextAssertion.assess``):

1. **Matching.** The sentence's tokens are re-split into word/punctuation pieces
   (``\\w+|[^\\w\\s]``), so matching works whatever tokenizer built the Sentence and is
   whitespace-insensitive. A rule's ``literal`` matches a run of pieces, case-insensitively;
   a rule with a ``pattern`` matches by regex over the lowercased sentence text instead,
   and only where the match starts and ends on piece boundaries (no partial words).
2. **Selection.** PSEUDO matches win over every trigger they overlap (that is their
   purpose: "no increase" must hide "no"), except for a target the PSEUDO match itself
   overlaps: for the target "increase in pain", "no increase" is a plain negation.
   Among the rest the longest match wins (in pieces; then the earlier start; then the
   rule's position in the file).
3. **Scope.** A trigger's scope runs FORWARD to the end of the sentence, BACKWARD to its
   start, or both (BIDIRECTIONAL), and stops at whichever comes first:

   * ``max_scope`` word pieces - punctuation is free, so comma lists don't eat the
     budget; a rule's own ``max_scope`` overrides the engine default;
   * a TERMINATE trigger ("but", "however", "which", "secondary to", ...); a TERMINATE
     rule may list the categories it ``terminates`` (e.g. "recent" ends only HISTORICAL
     scopes), otherwise it ends every scope;
   * a ``;`` - clinical shorthand for a clause boundary. ``:`` does *not* end a scope:
     in notes it mostly follows a heading or lead-in ("Negative for: ...");
   * for NEGATED_EXISTENCE and POSSIBLE_EXISTENCE, a trigger of the other of the two:
     they are exclusive readings of one clause, so "no effusion, likely atelectasis"
     negates only the effusion. FAMILY, HISTORICAL, HYPOTHETICAL and CONDITIONAL are
     qualifiers that combine with the others and cut nothing, so "no history of X" is
     negated *and* historical.
4. **Modification.** A trigger modifies a target when the target overlaps its scope and
   does not overlap the trigger itself. A rule with ``direction: TARGET`` is the
   exception: it has no scope and modifies exactly the targets that overlap it (a
   qualifier carried by the finding's own words, e.g. social-history habits such as
   "tobacco use", historical by the NegEx kit's convention).
5. **Label.** Categories map to labels (FAMILY -> associated_with_someone_else, ...), and
   the first label in ``LABEL_PRECEDENCE`` with a modifying trigger wins:
   associated_with_someone_else > hypothetical > conditional > absent > possible > present.
   So "no family history of X" is associated_with_someone_else (the statement is about
   relatives), and "return if X" stays hypothetical even with a negation in scope.
   ``is_historical`` is independent: any HISTORICAL trigger in scope sets it.
6. **Section defaults.** ``section_defaults`` maps a section name to a label or to
   ``"historical"``. A default acts as a virtual trigger of that kind covering the whole
   sentence, used only when no real trigger of that kind modifies the target, and it
   takes part in the precedence like any trigger ("No diabetes." in a family-history
   section is still associated_with_someone_else).
7. **Confidence** describes the ``assertion`` label only: the deciding trigger's rule
   ``confidence`` (``DEFAULT_RULE_CONFIDENCE`` unless the YAML sets a lower one for a weak
   cue), ``SECTION_DEFAULT_CONFIDENCE`` for a section default, ``PRESENT_PRIOR`` when
   nothing fired. Within the winning category the highest-confidence trigger decides,
   ties going to the trigger nearest the target; the cue fields describe it. When the
   label is the default ``present`` but a HISTORICAL trigger fired, the cue fields
   describe that trigger (it is what the stage found) while confidence stays the prior.
   Section defaults leave the cue fields empty.

Note text is PHI: errors raised here carry offsets and rule indices, never text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from clinlake.pipelines.engine.assertion.lexicon import CompiledLexicon, Match
from clinlake.pipelines.engine.assertion.rules import (
    CATEGORY_LABEL, CUT_BY, HISTORICAL, HISTORICAL_DEFAULT, LABEL_CATEGORY, LABEL_PRECEDENCE,
    PRESENT_PRIOR, PSEUDO, SECTION_DEFAULT_CONFIDENCE, SECTION_DEFAULT_VALUES, TARGET_DIRECTION, TERMINATE,
    ContextRule, is_positive_int, load_rules, reject_duplicates,
)
from clinlake.pipelines.engine.pieces import WORD_PIECE
from clinlake.pipelines.engine.types import AssertionResult, Sentence

_WORD = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class _Pieces:
    """Word/punctuation pieces of one sentence; offsets are into the original note."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    norms: tuple[str, ...]  # lowercased
    is_word: tuple[bool, ...]  # counts towards max_scope (punctuation does not)
    semicolons: frozenset[int]  # indices of ';' pieces, which end every scope


@dataclass(frozen=True, slots=True)
class _Trigger:
    rule: ContextRule
    first: int  # piece index
    end: int  # piece index, exclusive
    start_char: int
    end_char: int


@dataclass(frozen=True, slots=True)
class _Scoped:
    trigger: _Trigger
    start_char: int  # scope span in note offsets (cue included)
    end_char: int


class Cue(NamedTuple):
    """One trigger the rules chose in a sentence, as seen from one target: its span (note offsets),
    its category, and whether it modifies that target (the target lies in its scope). The assertion
    model can read a target's cues as an input (:func:`~clinlake.pipelines.engine.assertion.model.encode_targets`)."""

    start: int
    end: int
    category: str
    modifies: bool


# --- engine -----------------------------------------------------------------------------


class ContextAssertion:
    """Assign an i2b2 assertion label and a historical flag to target spans."""

    def __init__(
        self,
        rules: Sequence[ContextRule],
        *,
        section_defaults: Mapping[str, str] | None = None,
        max_scope: int = 12,
    ) -> None:
        if not is_positive_int(max_scope):
            raise ValueError("max_scope must be a positive integer")
        if not rules:
            raise ValueError("at least one context rule is required")
        reject_duplicates(rules)
        self.max_scope = max_scope
        self.section_defaults = _check_section_defaults(section_defaults or {})
        self._lexicon = CompiledLexicon(rules)

    @classmethod
    def from_file(
        cls,
        rules_path: str | Path,
        section_defaults: Mapping[str, str] | None = None,
        max_scope: int = 12,
    ) -> "ContextAssertion":
        return cls(load_rules(rules_path), section_defaults=section_defaults, max_scope=max_scope)

    @property
    def rules(self) -> tuple[ContextRule, ...]:
        return self._lexicon.rules

    def assess(
        self,
        text: str,
        sentence: Sentence,
        targets: Sequence[tuple[int, int]],
        section: str | None = None,
    ) -> list[AssertionResult]:
        """One ``AssertionResult`` per target span (note offsets, end exclusive), in order."""
        return self._assess(text, sentence, targets, section, None)

    def assess_with_cues(
        self,
        text: str,
        sentence: Sentence,
        targets: Sequence[tuple[int, int]],
        section: str | None = None,
    ) -> tuple[list[AssertionResult], list[tuple[Cue, ...]]]:
        """:meth:`assess`, and for each target the triggers of its sentence as :class:`Cue` s, in text
        order (the same analysis: a pseudo-trigger inside a target is ignored for that target).
        Section defaults are not cues: they have no span."""
        cues: list[tuple[Cue, ...]] = []
        return self._assess(text, sentence, targets, section, cues), cues

    def _assess(self, text: str, sentence: Sentence, targets: Sequence[tuple[int, int]], section: str | None,
                cues: list[tuple[Cue, ...]] | None) -> list[AssertionResult]:
        for start, end in targets:
            if not sentence.start <= start < end <= sentence.end:
                raise ValueError(
                    f"target span [{start}, {end}) is empty or outside sentence {sentence.index} "
                    f"[{sentence.start}, {sentence.end})"
                )
        if not targets:
            return []
        pieces = _split_pieces(text, sentence)
        candidates = self._candidates(text, sentence, pieces)
        pseudo = [c for c in candidates if self._lexicon.rules[c[2]].category == PSEUDO]
        default = self.section_defaults.get(section) if section is not None else None
        analyses: dict[frozenset[Match], list[_Scoped]] = {}
        results = []
        for target in targets:
            # A pseudo-trigger inside the target is part of what is being asserted:
            # for the target "increase in pain", "no increase" is a plain negation.
            ignored = frozenset(c for c in pseudo if _span_overlaps(pieces, c, target))
            if ignored not in analyses:
                analyses[ignored] = self._analyse(candidates, ignored, pieces)
            results.append(self._decide(text, target, analyses[ignored], default))
            if cues is not None:
                cues.append(tuple(Cue(item.trigger.start_char, item.trigger.end_char, item.trigger.rule.category,
                                      _modifies(item, target)) for item in analyses[ignored]))
        return results

    def assess_many(self, text: str, groups: Sequence[tuple[Sentence, Sequence[tuple[int, int]], str | None]], *,
                    labels: Sequence[Sequence[str | None]] | None = None) -> list[list[AssertionResult]]:
        """:meth:`assess` of each (sentence, targets, section) group of one note (the targets' NER
        ``labels`` are not read)."""
        return [self.assess(text, sentence, targets, section) for sentence, targets, section in groups]

    def assess_many_with_cues(self, text: str, groups: Sequence[tuple[Sentence, Sequence[tuple[int, int]], str | None]]
                              ) -> tuple[list[list[AssertionResult]], list[list[tuple[Cue, ...]]]]:
        """:meth:`assess_with_cues` of each (sentence, targets, section) group of one note."""
        pairs = [self.assess_with_cues(text, sentence, targets, section) for sentence, targets, section in groups]
        return [results for results, _ in pairs], [cues for _, cues in pairs]

    # -- matching ---------------------------------------------------------------------

    def _candidates(self, text: str, sentence: Sentence, pieces: _Pieces) -> list[Match]:
        """Every rule match as (first piece, end piece, rule index), overlaps included."""
        candidates = list(self._lexicon.literal_matches(pieces.norms))
        candidates.extend(self._pattern_matches(text, sentence, pieces))
        return candidates

    def _analyse(
        self,
        candidates: Sequence[Match],
        ignored: frozenset[Match],
        pieces: _Pieces,
    ) -> list[_Scoped]:
        """Select triggers among ``candidates`` (minus ``ignored``) and compute their scopes."""
        rules = self._lexicon.rules
        chosen = _select([c for c in candidates if c not in ignored], rules)
        triggers = [
            _Trigger(rules[index], first, end, pieces.starts[first], pieces.ends[end - 1])
            for first, end, index in chosen
        ]
        return [self._scope(trigger, triggers, pieces) for trigger in triggers if _has_scope(trigger)]

    def _pattern_matches(self, text: str, sentence: Sentence, pieces: _Pieces) -> list[Match]:
        lexicon = self._lexicon
        if not lexicon.patterns or not pieces.norms:
            return []
        lowered = _lower_same_length(text[sentence.start : sentence.end])
        if lexicon.any_pattern is not None and lexicon.any_pattern.search(lowered) is None:
            return []
        # Map pattern matches (sentence-relative chars) to piece indices; only matches
        # that start and end exactly on piece boundaries count.
        first_at = {start - sentence.start: i for i, start in enumerate(pieces.starts)}
        end_at = {end - sentence.start: i + 1 for i, end in enumerate(pieces.ends)}
        found = []
        for regex, index in lexicon.patterns:
            for match in regex.finditer(lowered):
                first, end = first_at.get(match.start()), end_at.get(match.end())
                if first is not None and end is not None and first < end:
                    found.append((first, end, index))
        return found

    # -- scope ------------------------------------------------------------------------

    def _scope(self, trigger: _Trigger, triggers: Sequence[_Trigger], pieces: _Pieces) -> _Scoped:
        blocked = _blocked_pieces(trigger, triggers, pieces)
        limit = trigger.rule.max_scope or self.max_scope
        direction = trigger.rule.direction
        lo, hi = trigger.first, trigger.end
        if direction in ("FORWARD", "BIDIRECTIONAL"):
            hi = _walk(range(trigger.end, len(pieces.norms)), blocked, pieces, limit)
        if direction in ("BACKWARD", "BIDIRECTIONAL"):
            lo = _walk(range(trigger.first - 1, -1, -1), blocked, pieces, limit)
        # The span includes the cue itself; harmless, since a cue never modifies a
        # target it overlaps.
        return _Scoped(trigger, pieces.starts[lo], pieces.ends[hi - 1])

    # -- decision ---------------------------------------------------------------------

    def _decide(
        self,
        text: str,
        target: tuple[int, int],
        scoped: Sequence[_Scoped],
        section_default: str | None,
    ) -> AssertionResult:
        modifiers = [item.trigger for item in scoped if _modifies(item, target)]
        historical = [t for t in modifiers if t.rule.category == HISTORICAL]
        by_label: dict[str, list[_Trigger]] = {}
        for trigger in modifiers:
            label = CATEGORY_LABEL.get(trigger.rule.category)
            if label is not None:
                by_label.setdefault(label, []).append(trigger)
        is_historical = bool(historical) or section_default == HISTORICAL_DEFAULT
        section_label = section_default if section_default in LABEL_CATEGORY else None
        for label in LABEL_PRECEDENCE[:-1]:
            if label in by_label:
                cue = _deciding(by_label[label], target)
                return _result(text, label, is_historical, cue.rule.confidence, cue)
            if label == section_label:
                return AssertionResult(label, is_historical, SECTION_DEFAULT_CONFIDENCE)
        cue = _deciding(historical, target) if historical else None
        return _result(text, "present", is_historical, PRESENT_PRIOR, cue)


# --- helpers ----------------------------------------------------------------------------


def _check_section_defaults(defaults: Mapping[str, str]) -> dict[str, str]:
    for name, value in defaults.items():
        if value not in SECTION_DEFAULT_VALUES:
            raise ValueError(
                f"section_defaults[{name!r}] has unknown value {value!r} "
                f"(allowed: {', '.join(sorted(SECTION_DEFAULT_VALUES))})"
            )
    return dict(defaults)


def _split_pieces(text: str, sentence: Sentence) -> _Pieces:
    """Word/punctuation pieces of the sentence's tokens (or its raw text if it has none)."""
    # Offsets are the ground truth, so read each token back from the note rather than
    # trusting Token.text (a tokenizer may normalise it).
    spans = [(token.start, token.end) for token in sentence.tokens] or [(sentence.start, sentence.end)]
    starts, ends, norms, is_word = [], [], [], []
    for span_start, span_end in spans:
        piece = text[span_start:span_end]
        # one \w+ run (most tokens) or one other character ("," "."): the regex would find just this piece
        if piece.isalnum() or (len(piece) == 1 and not piece.isspace()):
            starts.append(span_start)
            ends.append(span_end)
            norms.append(piece.lower())
            is_word.append(piece.isalnum() or _WORD.match(piece) is not None)
            continue
        for match in WORD_PIECE.finditer(text, span_start, span_end):
            piece = match.group()
            starts.append(match.start())
            ends.append(match.end())
            norms.append(piece.lower())
            is_word.append(_WORD.match(piece) is not None)
    semicolons = frozenset(i for i, norm in enumerate(norms) if norm == ";")
    return _Pieces(tuple(starts), tuple(ends), tuple(norms), tuple(is_word), semicolons)


def _lower_same_length(text: str) -> str:
    """Lowercase without changing length (a few characters, e.g. 'İ', grow when lowered)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def _select(candidates: Sequence[Match], rules: Sequence[ContextRule]) -> list[Match]:
    """PSEUDO matches first, then longest non-overlapping matches; returned in text order."""
    pseudo = [c for c in candidates if rules[c[2]].category == PSEUDO]
    others = [c for c in candidates if rules[c[2]].category != PSEUDO]
    others.sort(key=lambda c: (c[0] - c[1], c[0], c[2]))  # longest, then leftmost, then file order
    taken = [False] * (max((c[1] for c in candidates), default=0))
    chosen = []
    for first, end, index in pseudo:
        for pos in range(first, end):
            taken[pos] = True
    for first, end, index in others:
        if not any(taken[first:end]):
            for pos in range(first, end):
                taken[pos] = True
            chosen.append((first, end, index))
    return sorted(chosen)


def _span_overlaps(pieces: _Pieces, candidate: Match, target: tuple[int, int]) -> bool:
    first, end, _ = candidate
    return pieces.starts[first] < target[1] and pieces.ends[end - 1] > target[0]


def _has_scope(trigger: _Trigger) -> bool:
    return trigger.rule.category not in (PSEUDO, TERMINATE)


def _blocked_pieces(trigger: _Trigger, triggers: Sequence[_Trigger], pieces: _Pieces) -> set[int]:
    """Pieces a scope walk must not enter: ';', applicable terminators, cutting cues."""
    category = trigger.rule.category
    cutting = CUT_BY.get(category, frozenset())
    blocked = set(pieces.semicolons)
    for other in triggers:
        rule = other.rule
        if rule.category == TERMINATE:
            ends_it = rule.terminates is None or category in rule.terminates
        else:
            ends_it = rule.category in cutting
        if ends_it:
            blocked.update(range(other.first, other.end))
    return blocked


def _walk(positions: range, blocked: set[int], pieces: _Pieces, limit: int) -> int:
    """Return the scope boundary reached walking ``positions`` (exclusive end going
    forward, inclusive start going backward)."""
    words = 0
    boundary = positions.start - positions.step  # nothing taken yet
    for pos in positions:
        if pos in blocked:
            break
        if pieces.is_word[pos]:
            words += 1
            if words > limit:
                break
        boundary = pos
    # Forward walks report an exclusive end, backward walks the first included piece.
    return boundary + 1 if positions.step > 0 else boundary


def _modifies(item: _Scoped, target: tuple[int, int]) -> bool:
    start, end = target
    trigger = item.trigger
    if start < trigger.end_char and end > trigger.start_char:
        # a cue never modifies a span it is part of, unless that is its whole purpose
        return trigger.rule.direction == TARGET_DIRECTION
    if trigger.rule.direction == TARGET_DIRECTION:
        return False
    return start < item.end_char and end > item.start_char


def _distance(trigger: _Trigger, target: tuple[int, int]) -> int:
    start, end = target
    return max(trigger.start_char - end, start - trigger.end_char, 0)


def _deciding(triggers: Sequence[_Trigger], target: tuple[int, int]) -> _Trigger:
    return min(triggers, key=lambda t: (-t.rule.confidence, _distance(t, target), t.start_char))


def _result(
    text: str, label: str, is_historical: bool, confidence: float, cue: _Trigger | None
) -> AssertionResult:
    if cue is None:
        return AssertionResult(label, is_historical, float(confidence))
    return AssertionResult(
        assertion=label,
        is_historical=is_historical,
        confidence=float(confidence),
        cue=text[cue.start_char : cue.end_char],
        cue_start=cue.start_char,
        cue_end=cue.end_char,
        cue_category=cue.rule.category,
    )

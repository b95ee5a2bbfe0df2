"""Plain data types shared by every engine stage, and the two stage interfaces.

Offsets inside the engine are Python slice offsets into the *original* note text:
``start`` is 0-based and ``end`` is exclusive, so ``text[start:end]`` is the span.
The output tables use Spark NLP's convention instead (``begin`` 0-based, ``end``
inclusive); the conversion happens once, in :mod:`clinlake.pipelines.spark.batch`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, Sequence


class Token(NamedTuple):
    """One token: ``text`` is ``note[start:end]``. A named tuple, not a frozen dataclass: the
    splitter makes one per word of every note, and a tuple is made in 40 % of the time; it is as
    immutable, and unpacks as the ``(start, end, text)`` the NER featuriser reads."""

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Sentence:
    index: int
    start: int
    end: int
    tokens: tuple[Token, ...]


@dataclass(frozen=True, slots=True)
class Section:
    """A note section: its canonical name and the character span it covers.

    ``start``/``end`` cover the heading and the body up to the next heading.
    ``heading_end`` is where the heading (including its colon) stops.
    """

    name: str
    start: int
    end: int
    heading_end: int


@dataclass(frozen=True, slots=True)
class AssertionResult:
    """What the assertion stage concludes about one entity.

    ``assertion`` is one of the six i2b2 / Spark NLP labels: present, absent,
    possible, conditional, hypothetical, associated_with_someone_else.
    ``cue_*`` describe the trigger that decided it (None when no trigger fired).
    """

    assertion: str
    is_historical: bool
    confidence: float
    cue: str | None = None
    cue_start: int | None = None
    cue_end: int | None = None
    cue_category: str | None = None


@dataclass(slots=True)
class Entity:
    start: int
    end: int
    text: str
    label: str
    confidence: float
    source: str
    sentence_index: int = -1
    section: str | None = None
    assertion: AssertionResult | None = field(default=None)


ASSERTION_LABELS: tuple[str, ...] = (
    "present",
    "absent",
    "possible",
    "conditional",
    "hypothetical",
    "associated_with_someone_else",
)


class NerStage(Protocol):
    """A named entity stage: a trained tagger (:mod:`.ner.stage`) or a dictionary
    (:mod:`.dictionary`). ``name`` carries its version and lands in ``ner_model``."""

    name: str

    def find(self, text: str, sentences: Sequence[Sentence]) -> list[Entity]: ...


class AssertionEngine(Protocol):
    """An assertion engine: the ConText rules, the model or the hybrid (:mod:`.assertion`).
    ``targets`` are (start, end) note offsets inside ``sentence``; one result per target.
    An engine may also offer ``assess_many(text, [(sentence, targets, section), ...], labels=None)``,
    the same for every group of a note at once, which the pipeline then uses to batch model calls;
    ``labels``, where the caller knows them, are the targets' NER labels, one sequence per group."""

    def assess(
        self, text: str, sentence: Sentence, targets: Sequence[tuple[int, int]], section: str | None = None
    ) -> list[AssertionResult]: ...

"""Plain data types shared by every engine stage.

Offsets inside the engine are Python slice offsets into the *original* note text:
``start`` is 0-based and ``end`` is exclusive, so ``text[start:end]`` is the span.
The output tables use Spark NLP's convention instead (``begin`` 0-based, ``end``
inclusive); the conversion happens once, in :mod:`pipelines.batch`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Token:
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

"""Which assertion labels an entity of each NER label may take (``pipeline.assertion.allowed_by_label``).

The assertion stage reads the words around an entity, not what the entity is. For a test, the cues
that make a problem absent ("negative for", "were negative", "no ... on PCR testing") state its
*result*: the test was done. i2b2 2010 defines assertions for problems only; MACCROBAT, which
annotates tests (``Diagnostic_procedure``) and their values (``Lab_value``) apart, marks a test
absent only when it was not done: on its train split the default hybrid called 224 test triggers
absent and 5 of them were, against 560 of 654 for the other triggers. So the default job lets a
``TEST`` entity take every label but ``absent``; any result outside an entity's allowed labels is
replaced by ``present``, its historical flag kept and its cue dropped (the cue decided a label the
entity cannot take). Labels not listed take every assertion label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from clinlake.pipelines.engine.assertion.rules import PRESENT_PRIOR
from clinlake.pipelines.engine.types import ASSERTION_LABELS, AssertionResult

FALLBACK = "present"


class AllowedLabelsError(ValueError):
    """``allowed_by_label`` names an unknown assertion label or leaves out ``present``."""


@dataclass(frozen=True)
class AllowedByLabel:
    """Per NER label, the assertion labels its entities may take."""

    allowed: Mapping[str, frozenset[str]]

    @classmethod
    def from_config(cls, allowed: Mapping[str, Sequence[str]] | None) -> "AllowedByLabel":
        checked: dict[str, frozenset[str]] = {}
        for label, names in (allowed or {}).items():
            unknown = sorted(set(names) - set(ASSERTION_LABELS))
            if unknown:
                raise AllowedLabelsError(f"allowed_by_label[{label!r}] has unknown assertion labels {unknown} "
                                         f"(allowed: {', '.join(ASSERTION_LABELS)})")
            if FALLBACK not in names:
                raise AllowedLabelsError(f"allowed_by_label[{label!r}] must include {FALLBACK!r}: it replaces "
                                         "every result the label may not take")
            checked[str(label)] = frozenset(names)
        return cls(checked)

    def __bool__(self) -> bool:
        return bool(self.allowed)

    def allows(self, label: str | None, assertion: str) -> bool:
        """Whether an entity of NER ``label`` (None: unlabelled) may take ``assertion``."""
        allowed = self.allowed.get(label) if label is not None else None
        return allowed is None or assertion in allowed

    def apply(self, label: str | None, result: AssertionResult) -> AssertionResult:
        """``result``, or ``present`` (historical flag kept, no cue) when ``label`` may not take it."""
        if self.allows(label, result.assertion):
            return result
        return AssertionResult(FALLBACK, result.is_historical, PRESENT_PRIOR)

    def apply_all(self, labels: Sequence[str | None], results: Sequence[AssertionResult]) -> list[AssertionResult]:
        return [self.apply(label, result) for label, result in zip(labels, results, strict=True)]

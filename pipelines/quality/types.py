"""Plain data the quality gate passes around: a parsed suite and the failures it reports.

A :class:`Suite` is what :func:`clinlake.pipelines.quality.suites.load_suite` makes of a
suite YAML; :mod:`~clinlake.pipelines.quality.gx` runs its expectations and
:mod:`~clinlake.pipelines.quality.checks` its checks, and both report a :class:`Failure`
per unmet expectation or check. These types import nothing else of the gate, so every
other quality module can use them without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: Great Expectations' severity levels; only ``critical`` failures fail the gate.
SEVERITIES = ("critical", "warning", "info")


class GateInputError(ValueError):
    """The gate was not given a table, or the input notes, that a suite needs."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One GX expectation of a suite: its snake-case type and keyword arguments."""

    type: str
    kwargs: dict[str, Any]
    index: int  # position in the suite's ``expectations`` list
    severity: str = "critical"


@dataclass(frozen=True)
class CheckSpec:
    """One clinlake check of a suite: its name and parameters."""

    name: str
    params: dict[str, Any]
    index: int  # position in the suite's ``checks`` list
    severity: str = "critical"


@dataclass(frozen=True)
class Suite:
    """A validated suite: the table it validates, its expectations and checks, its value sets."""

    name: str
    table: str
    expectations: tuple[ExpectationSpec, ...]
    checks: tuple[CheckSpec, ...] = ()
    sets: dict[str, list] = field(default_factory=dict)
    source: str = "<suite>"
    description: str = ""


@dataclass(frozen=True)
class Failure:
    """One failed expectation or check. Never carries note text: counts, names and ids only."""

    table: str
    expectation: str  # GX expectation type or clinlake check name
    observed: Any  # a number, a short string, or a small mapping/list of counts or names
    expected: str
    detail: str = ""  # e.g. example note/entity ids
    column: str | None = None
    severity: str = "critical"
    source: str = "clinlake"  # clinlake | great_expectations

    def describe(self) -> str:
        what = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{what}: {self.expectation}: observed {_fmt(self.observed)}; expected {self.expected}"
        return text + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "expectation": self.expectation, "column": self.column,
                "observed": self.observed, "expected": self.expected, "detail": self.detail,
                "severity": self.severity, "source": self.source}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)

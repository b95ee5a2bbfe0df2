"""The quality gate between writing a run's tables and publishing them (write-audit-publish).

:func:`validate_tables` runs the suites (:mod:`~clinlake.pipelines.quality.suites`): their
Great Expectations expectations (:mod:`~clinlake.pipelines.quality.gx`, one checkpoint per
table, Data Docs when a context directory is given) and their clinlake checks
(:mod:`~clinlake.pipelines.quality.checks`), and returns a :class:`GateResult`. It only
reports: whether a failed gate stops the publish is the caller's decision
(``mode: enforce | warn | off``, see :meth:`GateResult.blocks`).

Failure descriptions carry counts, column names and note/entity ids only, never note text
(notes are PHI): GX runs with ``partial_unexpected_count: 0`` so neither the results nor
the Data Docs list offending values, and observed values of text columns are withheld.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pyspark import StorageLevel
from pyspark.sql import functions as F

from clinlake.pipelines.quality.checks import CheckContext, run_check
from clinlake.pipelines.quality.gx import run_expectations
from clinlake.pipelines.quality.types import Failure, GateInputError, Suite

GATE_MODES = ("enforce", "warn", "off")


@dataclass
class GateResult:
    """What the gate found. ``passed`` is False when any critical expectation or check failed."""

    passed: bool
    failures: list[Failure]
    evaluated: int  # expectations + checks evaluated
    data_docs: Path | None = None  # Data Docs index.html (file context only)
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per GX suite / clinlake check

    @property
    def critical(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "critical"]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity != "critical"]

    def blocks(self, mode: str) -> bool:
        """Whether the publish must stop: only in ``enforce`` mode, and only if the gate failed."""
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode must be one of {', '.join(GATE_MODES)}; got {mode!r}")
        return mode == "enforce" and not self.passed

    def summary(self, max_failures: int = 12) -> str:
        """A one-screen explanation (no note text)."""
        verdict = "passed" if self.passed else "FAILED"
        head = (f"quality gate {verdict}: {len(self.critical)} critical and {len(self.warnings)} other "
                f"failure(s) in {self.evaluated} expectations and checks ({self.duration_s:.1f} s)")
        lines = [head]
        ordered = self.critical + self.warnings
        for f in ordered[:max_failures]:
            lines.append(f"  [{f.severity}] {f.describe()}")
        if len(ordered) > max_failures:
            lines.append(f"  … {len(ordered) - max_failures} more")
        if self.data_docs:
            lines.append(f"Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "evaluated": self.evaluated, "duration_s": self.duration_s,
                "data_docs": str(self.data_docs) if self.data_docs else None,
                "failures": [f.to_dict() for f in self.failures]}


def validate_tables(spark, tables: Mapping[str, Any], notes, suites: Iterable[Suite], *,
                    context_root: Path | None = None, run_id: str | None = None,
                    id_column: str = "note_id", text_column: str = "text") -> GateResult:
    """Validate ``tables`` (name → DataFrame, e.g. entities, note_status) with ``suites``.

    ``notes`` is the input notes DataFrame (``id_column`` cast to string, ``text_column``
    string or binary), used by the checks that compare against the input; it may be None
    when no suite uses them. With ``context_root`` a file-backed GX context lives there
    (``<context_root>/gx``) and Data Docs are built; without it an ephemeral context is used
    and no Data Docs are written. ``run_id`` names the GX validation run.
    The function only reports; the caller decides what a failure means (:meth:`GateResult.blocks`).
    Raises :class:`~clinlake.pipelines.quality.types.GateInputError` when a suite's table (or
    the notes a check needs) was not passed.
    """
    clock = time.monotonic()
    suites = list(suites.values()) if isinstance(suites, Mapping) else list(suites)
    for suite in suites:
        if suite.table not in tables:
            raise GateInputError(f"suite {suite.name!r} validates table {suite.table!r}, which was not passed "
                                 f"(tables: {', '.join(tables) or 'none'})")
    cached = []

    def persist(df):
        if df is not None and not df.is_cached:
            df = df.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(df)
        return df

    try:
        frames = {name: persist(df) for name, df in tables.items()}
        if notes is not None:
            notes = persist(notes.select(F.col(id_column).cast("string").alias("note_id"),
                                         F.col(text_column).cast("string").alias("text")))
        failures: list[Failure] = []
        timings: dict[str, float] = {}
        evaluated = 0
        gx_suites = [s for s in suites if s.expectations]
        docs = None
        if gx_suites:
            gx_failures, n, docs = run_expectations(gx_suites, frames, context_root=context_root, run_id=run_id,
                                                    timings=timings)
            failures += gx_failures
            evaluated += n
        ctx = CheckContext(spark=spark, tables=frames, notes=notes, persist=persist)
        for suite in suites:
            for spec in suite.checks:
                started = time.monotonic()
                evaluated += 1
                failures += run_check(ctx, spec, suite.table)
                timings[f"{suite.table}:{spec.name}"] = round(time.monotonic() - started, 3)
    finally:
        for df in cached:
            df.unpersist()
    passed = not any(f.severity == "critical" for f in failures)
    return GateResult(passed=passed, failures=failures, evaluated=evaluated, data_docs=docs,
                      duration_s=round(time.monotonic() - clock, 3), timings=timings)

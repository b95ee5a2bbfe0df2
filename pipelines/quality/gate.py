"""Quality gate: Great Expectations 1.x suites as data, plus clinlake checks in Spark SQL.

A suite is a YAML file (``conf/expectations/<table>.yaml``) with two lists:

``expectations``
    Great Expectations expectations, by their snake-case type and keyword arguments::

        - {expectation: expect_column_values_to_not_be_null, column: note_id}
        - {expectation: expect_column_values_to_be_in_set, column: label, value_set: $labels}

    Any expectation GX registers can be named (users add their own); the keyword arguments
    are validated by GX itself when the suite is loaded. ``$name`` refers to a list under the
    suite's ``sets:`` mapping (labels, assertion values, reasons), which the caller may
    override from the job configuration (``load_suite(path, sets={"labels": [...]})``).

``checks``
    clinlake-specific checks that GX cannot express on one table, computed with Spark SQL
    (see :data:`CHECKS`): the substring invariant against the note text, every input row
    accounted for in ``note_status``, entity counts consistent across tables, the declared
    schema, and distribution checks with configurable bounds that catch a broken model
    (entities per note, share of notes without entities, share of each assertion value,
    share of quarantined notes)::

        - {check: entities_per_note, mean_min: 1.0, max: 5000}
        - {check: assertion_share, min_entities: 50, shares: {absent: {max: 0.6}}}

Every entry may carry ``severity: critical | warning | info`` (GX's own levels, default
critical); only critical failures fail the gate.

:func:`validate_tables` runs the suites (GX with a Spark data source, one checkpoint per
table, Data Docs when a context directory is given) and the checks, and returns a
:class:`GateResult`. It only reports: whether a failed gate stops the publish is the
caller's decision (``mode: enforce | warn | off``, see :meth:`GateResult.blocks`).

Failure descriptions carry counts, column names and note/entity ids only, never note text
(notes are PHI): GX runs with ``partial_unexpected_count: 0`` so neither the results nor
the Data Docs list offending values, and observed values of text columns are withheld.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from clinlake.pipelines.config import PipelineConfig
from clinlake.pipelines.engine.ner.metadata import ModelMeta
from clinlake.pipelines.resources import Resolver, package_resource


GATE_MODES = ("enforce", "warn", "off")
SEVERITIES = ("critical", "warning", "info")
#: Columns whose values are (or quote) note text: their values never appear in failures.
PHI_COLUMNS = frozenset({"chunk", "text", "quarantined_text", "assertion_cue", "note_text", "body"})
#: Kwargs never shown in the "expected" description of a GX expectation.
_HIDDEN_KWARGS = {"batch_id", "result_format", "catch_exceptions", "meta", "notes", "description",
                  "rendered_content", "id", "severity", "windows", "condition_parser"}
SUITE_KEYS = ("suite", "table", "description", "sets", "expectations", "checks")
GX_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
N_EXAMPLES = 5


class SuiteError(ValueError):
    """A suite YAML is invalid; the message names the file, the entry and the key."""


# --------------------------------------------------------------------------- suites


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
    name: str
    table: str
    expectations: tuple[ExpectationSpec, ...]
    checks: tuple[CheckSpec, ...] = ()
    sets: dict[str, list] = field(default_factory=dict)
    source: str = "<suite>"
    description: str = ""


def load_suite(path: str | Path, *, sets: Mapping[str, Sequence[Any]] | None = None) -> Suite:
    """Read and validate a suite YAML.

    ``sets`` overrides (or adds) the suite's named value sets, e.g. the labels the job's
    configured NER stages can produce. Raises :class:`SuiteError` naming the file and the
    entry (``expectations[3]``) for unknown keys, unknown expectation or check names,
    invalid arguments and undefined ``$set`` references.
    """
    from clinlake.pipelines.config import read_yaml

    path = Path(path)
    return parse_suite(read_yaml(path, what="suite file", error=SuiteError), source=str(path), sets=sets)


def parse_suite(raw: Any, *, source: str = "<suite>", sets: Mapping[str, Sequence[Any]] | None = None) -> Suite:
    """Validate an already-parsed suite mapping (see :func:`load_suite`)."""
    def fail(msg: str) -> SuiteError:
        return SuiteError(f"{source}: {msg}")

    if not isinstance(raw, Mapping):
        raise fail(f"the top level must be a mapping, got {type(raw).__name__}")
    _reject_unknown(raw, SUITE_KEYS, "", fail)
    table = raw.get("table")
    if not isinstance(table, str) or not table:
        raise fail("missing required key 'table' (the table the suite validates, e.g. entities)")
    name = raw.get("suite", f"clinlake_{table}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise fail(f"'suite' must be a name of letters, digits, '_', '.', '-'; got {name!r}")
    value_sets = raw.get("sets") or {}
    if not isinstance(value_sets, Mapping):
        raise fail(f"'sets' must be a mapping of name -> list; got {type(value_sets).__name__}")
    value_sets = {str(k): v for k, v in value_sets.items()}
    for key, values in (sets or {}).items():
        value_sets[str(key)] = list(values)
    for key, values in value_sets.items():
        if not isinstance(values, list):
            raise fail(f"sets.{key} must be a list; got {type(values).__name__}")
    expectations = tuple(_parse_expectation(entry, i, value_sets, fail)
                         for i, entry in enumerate(_as_list(raw.get("expectations"), "expectations", fail)))
    checks = tuple(_parse_check(entry, i, table, fail)
                   for i, entry in enumerate(_as_list(raw.get("checks"), "checks", fail)))
    description = raw.get("description") or ""
    return Suite(name=name, table=table, expectations=expectations, checks=checks, sets=value_sets,
                 source=source, description=str(description))


def default_suites(*, sets: Mapping[str, Sequence[Any]] | None = None) -> list[Suite]:
    """The shipped suites: ``conf/expectations/entities.yaml`` and ``note_status.yaml``."""
    root = package_resource("conf/expectations")
    return [load_suite(root / f"{table}.yaml", sets=sets) for table in ("entities", "note_status")]


def configured_labels(conf: PipelineConfig, resolver: Resolver) -> list[str] | None:
    """The entity labels a pipeline can produce, for ``sets={"labels": ...}``: a stage's
    ``labels`` filter, else a model's own labels (model.json) after its label_map. None when
    a lexicon takes its labels from a label column, in which case the suite's own ``labels``
    set applies."""
    labels: set[str] = set()
    for lexicon in conf.dictionary:
        if lexicon.label is None:
            return None
        labels.add(lexicon.label)
    for model in conf.ner:
        if model.labels:
            labels.update(model.labels)  # the kept labels, after label_map
            continue
        meta = ModelMeta.load(resolver.model_dir(model.model))
        labels.update(model.label_map.get(label, label) for label in meta.raw["labels"])
    return sorted(labels)


def _as_list(value: Any, key: str, fail) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"'{key}' must be a list; got {type(value).__name__}")
    return value


def _reject_unknown(raw: Mapping, known: Iterable[str], where: str, fail) -> None:
    known = list(known)
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(known)})"
            raise fail(f"{where}unknown key '{key}'{hint}")


def _severity(entry: Mapping, where: str, fail) -> str:
    severity = entry.get("severity", "critical")
    if severity not in SEVERITIES:
        raise fail(f"{where}'severity' must be one of {', '.join(SEVERITIES)}; got {severity!r}")
    return severity


def _resolve_sets(value: Any, value_sets: Mapping[str, list], where: str, fail) -> Any:
    if isinstance(value, str) and value.startswith("$") and len(value) > 1:
        name = value[1:]
        if name not in value_sets:
            raise fail(f"{where}refers to an undefined set '{value}' "
                       f"(defined: {', '.join('$' + k for k in value_sets) or 'none'})")
        return list(value_sets[name])
    if isinstance(value, list):
        return [_resolve_sets(v, value_sets, where, fail) for v in value]
    if isinstance(value, Mapping):
        return {k: _resolve_sets(v, value_sets, where, fail) for k, v in value.items()}
    return value


def _gx():
    # GX phones home unless told not to; clinlake runs air-gapped.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def expectation_class(name: str):
    """The GX expectation class for a snake-case type, or ``None``."""
    _gx()
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(name)
    except Exception:
        return None


def _known_expectations() -> list[str]:
    _gx()
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    return sorted(list_registered_expectation_implementations())


def _parse_expectation(entry: Any, index: int, value_sets: Mapping[str, list], fail) -> ExpectationSpec:
    where = f"expectations[{index}]: "
    if not isinstance(entry, Mapping):
        raise fail(f"{where}must be a mapping with an 'expectation' key; got {type(entry).__name__}")
    kind = entry.get("expectation")
    if not isinstance(kind, str) or not kind:
        raise fail(f"{where}missing required key 'expectation' (a GX expectation type, "
                   "e.g. expect_column_values_to_not_be_null)")
    cls = expectation_class(kind)
    if cls is None:
        close = difflib.get_close_matches(kind, _known_expectations(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise fail(f"{where}unknown expectation '{kind}'{hint}")
    kwargs = {k: v for k, v in entry.items() if k not in ("expectation", "severity")}
    kwargs = _resolve_sets(kwargs, value_sets, where, fail)
    severity = _severity(entry, where, fail)
    allowed = [f for f in getattr(cls, "__fields__", {}) if f not in ("batch_id", "rendered_content", "windows")]
    _reject_unknown(kwargs, allowed, f"{where}{kind}: ", fail)
    try:
        cls(**kwargs)
    except Exception as exc:  # pydantic ValidationError: list the fields, not GX's internals
        raise fail(f"{where}{kind}: invalid arguments: {_pydantic_errors(exc)}") from None
    return ExpectationSpec(type=kind, kwargs=dict(kwargs), index=index, severity=severity)


def _pydantic_errors(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    seen: dict[str, str] = {}
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") or "arguments"
        seen.setdefault(loc, err.get("msg", "invalid"))
    return "; ".join(f"{loc}: {msg}" for loc, msg in seen.items())


def _parse_check(entry: Any, index: int, table: str, fail) -> CheckSpec:
    where = f"checks[{index}]: "
    if not isinstance(entry, Mapping):
        raise fail(f"{where}must be a mapping with a 'check' key; got {type(entry).__name__}")
    name = entry.get("check")
    if not isinstance(name, str) or not name:
        raise fail(f"{where}missing required key 'check' (one of {', '.join(sorted(CHECKS))})")
    if name not in CHECKS:
        close = difflib.get_close_matches(name, sorted(CHECKS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known checks: {', '.join(sorted(CHECKS))})"
        raise fail(f"{where}unknown check '{name}'{hint}")
    check = CHECKS[name]
    if check.table is not None and check.table != table:
        raise fail(f"{where}check '{name}' validates table '{check.table}'; "
                   f"move it to the suite with table: {check.table}")
    params = {k: v for k, v in entry.items() if k not in ("check", "severity")}
    _reject_unknown(params, list(check.params), f"{where}{name}: ", fail)
    for key, kind in check.params.items():
        if key in params:
            params[key] = _check_param(params[key], kind, f"{where}{name}.{key}", fail)
    return CheckSpec(name=name, params=params, index=index, severity=_severity(entry, where, fail))


def _check_param(value: Any, kind: str, where: str, fail) -> Any:
    if kind in ("number", "share", "count"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise fail(f"{where} must be a number; got {value!r}")
        if kind == "share" and not 0 <= value <= 1:
            raise fail(f"{where} must be a share in [0, 1]; got {value!r}")
        if kind == "count" and (value < 0 or int(value) != value):
            raise fail(f"{where} must be a non-negative integer; got {value!r}")
        return value
    if kind == "bounds":  # {value: {min: share, max: share}}
        if not isinstance(value, Mapping) or not value:
            raise fail(f"{where} must be a mapping of value -> {{min, max}}; got {value!r}")
        out = {}
        for key, bounds in value.items():
            if not isinstance(bounds, Mapping) or not bounds:
                raise fail(f"{where}.{key} must be a mapping with 'min' and/or 'max'; got {bounds!r}")
            _reject_unknown(bounds, ["min", "max"], f"{where}.{key}: ", fail)
            out["none" if key is None else str(key)] = {
                b: _check_param(v, "share", f"{where}.{key}.{b}", fail) for b, v in bounds.items()}
        return out
    raise AssertionError(kind)  # pragma: no cover


# --------------------------------------------------------------------------- results


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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


# --------------------------------------------------------------------------- validation


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
    """
    import time

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    clock = time.monotonic()
    suites = list(suites.values()) if isinstance(suites, Mapping) else list(suites)
    for suite in suites:
        if suite.table not in tables:
            raise ValueError(f"suite {suite.name!r} validates table {suite.table!r}, which was not passed "
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
            gx_failures, n, docs = _run_gx(gx_suites, frames, context_root=context_root, run_id=run_id,
                                           timings=timings)
            failures += gx_failures
            evaluated += n
        ctx = CheckContext(spark=spark, tables=frames, notes=notes, persist=persist)
        for suite in suites:
            for spec in suite.checks:
                started = time.monotonic()
                evaluated += 1
                failures += _run_check(ctx, suite, spec)
                timings[f"{suite.table}:{spec.name}"] = round(time.monotonic() - started, 3)
    finally:
        for df in cached:
            df.unpersist()
    passed = not any(f.severity == "critical" for f in failures)
    return GateResult(passed=passed, failures=failures, evaluated=evaluated, data_docs=docs,
                      duration_s=round(time.monotonic() - clock, 3), timings=timings)


def _run_gx(suites: list[Suite], frames: Mapping[str, Any], *, context_root: Path | None,
            run_id: str | None, timings: dict[str, float]) -> tuple[list[Failure], int, Path | None]:
    import time

    started = time.monotonic()
    gx = _gx()
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    if context_root is not None:
        Path(context_root).mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(context_root))
    else:
        context = gx.get_context(mode="ephemeral")
    _quiet_progress_bars(context)
    source = context.data_sources.add_or_update_spark(name="clinlake")
    failures: list[Failure] = []
    evaluated = 0
    timings["great_expectations:context"] = round(time.monotonic() - started, 3)
    for suite in suites:
        started = time.monotonic()
        asset = source.add_dataframe_asset(name=suite.table)
        batch = asset.add_batch_definition_whole_dataframe(name=f"{suite.table}_whole")
        gx_suite = gx.ExpectationSuite(name=suite.name)
        for spec in suite.expectations:
            gx_suite.add_expectation(expectation_class(spec.type)(**spec.kwargs, severity=spec.severity))
        gx_suite = context.suites.add_or_update(gx_suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{suite.name}_validation", data=batch, suite=gx_suite))
        actions = [UpdateDataDocsAction(name="update_data_docs")] if context_root is not None else []
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{suite.name}_checkpoint", validation_definitions=[definition], actions=actions,
            result_format=GX_RESULT_FORMAT))
        run = checkpoint.run(batch_parameters={"dataframe": frames[suite.table]},
                             run_id=RunIdentifier(run_name=run_id) if run_id else None)
        for validation in run.run_results.values():
            for result in validation.results:
                evaluated += 1
                if not result.success:
                    failures.append(_gx_failure(suite.table, result))
        timings[f"{suite.table}:great_expectations"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    docs = None
    if context_root is not None:
        for site in context.get_docs_sites_urls():
            url = site.get("site_url") or ""
            if url.startswith("file://"):
                docs = Path(url[len("file://"):])
        if docs is None or not docs.exists():
            for url in context.build_data_docs().values():
                if url.startswith("file://"):
                    docs = Path(url[len("file://"):])
        timings["great_expectations:data_docs"] = round(time.monotonic() - started, 3)
    return failures, evaluated, docs


def _quiet_progress_bars(context) -> None:
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # pragma: no cover - cosmetic only
        pass


def _gx_failure(table: str, result) -> Failure:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    if column is None and "column_A" in kwargs:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    if column is None and "column_list" in kwargs:
        column = ",".join(map(str, kwargs["column_list"]))
    res = result.result or {}
    phi = bool(PHI_COLUMNS & set(str(column or "").split(",")))
    error = _gx_exception(result.exception_info)
    if error:
        observed: Any = f"error: {error}"
    elif "unexpected_count" in res and res.get("unexpected_count") is not None:
        observed = {"unexpected": res["unexpected_count"]}
        if res.get("element_count") is not None:
            observed["of"] = res["element_count"]
        if res.get("unexpected_percent") is not None:
            observed["percent"] = round(float(res["unexpected_percent"]), 3)
    elif "observed_value" in res:
        observed = "<withheld: values of a text column>" if phi else _safe(res["observed_value"])
    else:
        observed = "not met"
    expected = ", ".join(_describe_kwarg(k, v) for k, v in kwargs.items()
                         if k not in _HIDDEN_KWARGS and k not in ("column", "column_A", "column_B")
                         and v is not None) or "—"
    return Failure(table=table, expectation=config.type, observed=observed, expected=expected, column=column,
                   severity=str(getattr(config, "severity", None) and getattr(config.severity, "value",
                                                                              config.severity) or "critical"),
                   source="great_expectations")


def _gx_exception(info: Any) -> str | None:
    """The first exception message in a GX result's exception_info (flat or per metric)."""
    if not isinstance(info, Mapping):
        return None
    candidates = [info] + [v for v in info.values() if isinstance(v, Mapping)]
    for item in candidates:
        if item.get("raised_exception"):
            message = str(item.get("exception_message") or "exception").splitlines()
            return message[0][:200] if message else "exception"
    return None


def _describe_kwarg(key: str, value: Any) -> str:
    if key == "row_condition":
        if isinstance(value, Mapping) and value.get("type") == "comparison":
            column = value.get("column", {})
            name = column.get("name") if isinstance(column, Mapping) else column
            return f"where {name} {value.get('operator')} {_short(value.get('parameter'))}"
        return f"where {_short(value)}"
    return f"{key}={_short(value)}"


def _safe(value: Any) -> Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return _short(value)


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- clinlake checks


@dataclass
class CheckContext:
    spark: Any
    tables: Mapping[str, Any]
    notes: Any  # DataFrame(note_id string, text string) or None
    persist: Callable[[Any], Any] = lambda df: df
    memo: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str, check: str):
        if name not in self.tables:
            raise ValueError(f"check {check!r} needs table {name!r}; pass it in tables")
        return self.tables[name]

    def input_notes(self, check: str):
        if self.notes is None:
            raise ValueError(f"check {check!r} needs the input notes; pass notes")
        return self.notes


@dataclass(frozen=True)
class CheckDef:
    fn: Callable[[CheckContext, "CheckSpec", str], list[Failure]]
    table: str | None  # the suite table it belongs to (None: any)
    params: dict[str, str]  # name -> number | share | count | bounds
    doc: str


CHECKS: dict[str, CheckDef] = {}


def register_check(name: str, *, table: str | None, params: Mapping[str, str] | None = None, doc: str = ""):
    """Register a clinlake check (a function ``(ctx, spec, table) -> list[Failure]``)."""
    def wrap(fn):
        CHECKS[name] = CheckDef(fn=fn, table=table, params={"min_notes": "count", **(params or {})},
                                doc=doc or (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return wrap


def _run_check(ctx: CheckContext, suite: Suite, spec: CheckSpec) -> list[Failure]:
    failures = CHECKS[spec.name].fn(ctx, spec, suite.table) or []
    return [Failure(table=f.table, expectation=f.expectation, observed=f.observed, expected=f.expected,
                    detail=f.detail, column=f.column, severity=spec.severity, source="clinlake")
            for f in failures]


def _examples(df, columns: Sequence[str], n: int = N_EXAMPLES) -> str:
    rows = df.select(*columns).limit(n).collect()
    return ", ".join("/".join("null" if v is None else str(v) for v in row) for row in rows)


@register_check("declared_schema", table=None,
                doc="Column names and types as declared in schemas/tables.py (pass-through columns may follow).")
def _declared_schema(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from clinlake.schemas.spark import spark_schema
    from clinlake.schemas.tables import entity_table, note_status_table, quarantine_table, RUN_COLUMNS

    df = ctx.table(table, spec.name)
    declared = {"entities": lambda: entity_table(),
                "note_status": lambda: note_status_table(sparknlp="ner_chunk" in df.columns),
                "quarantine": quarantine_table, "runs": lambda: RUN_COLUMNS}
    if table not in declared:
        return [Failure(table, spec.name, "no declared schema", f"one of {', '.join(declared)}")]
    expected = [(f.name, f.dataType.simpleString()) for f in spark_schema(declared[table]())]
    actual = [(f.name, f.dataType.simpleString()) for f in df.schema]
    problems = []
    actual_types = dict(actual)
    for i, (name, type_) in enumerate(expected):
        if name not in actual_types:
            problems.append(f"{name} missing")
        elif actual_types[name] != type_:
            problems.append(f"{name} is {actual_types[name][:60]}, declared {type_[:60]}")
        elif i < len(actual) and actual[i][0] != name:
            problems.append(f"{name} out of order")
    if not problems:
        return []
    return [Failure(table, spec.name, "; ".join(problems[:8]) + (" …" if len(problems) > 8 else ""),
                    "the declared columns and types, in order")]


@register_check("substring_matches_text", table="entities",
                doc="chunk equals the note text at begin..end (0-based, end inclusive) for every entity.")
def _substring_matches_text(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    entities = ctx.table("entities", spec.name).select("note_id", "entity_id", "chunk", "begin", "end")
    notes = ctx.input_notes(spec.name).where(F.col("note_id").isNotNull() & F.col("text").isNotNull()) \
        .dropDuplicates(["note_id"]).withColumnRenamed("text", "_note_text")
    joined = entities.join(notes, "note_id", "left")
    missing = F.col("_note_text").isNull()
    mismatch = (~missing) & (
        F.col("chunk").isNull() | F.col("begin").isNull() | F.col("end").isNull() | (F.col("begin") < 0)
        | (F.col("end") < F.col("begin")) | (F.col("end") >= F.char_length("_note_text"))
        | (F.expr("substring(_note_text, begin + 1, `end` - begin + 1)") != F.col("chunk")))
    joined = joined.withColumn("_missing", missing).withColumn("_mismatch", mismatch)
    row = joined.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("_missing").cast("long")).alias("missing"),
                     F.sum(F.col("_mismatch").cast("long")).alias("mismatch")).first()
    failures = []
    if row["mismatch"]:
        failures.append(Failure(
            table, spec.name, {"mismatched": row["mismatch"], "of": row["n"]},
            "0 entities whose chunk differs from substring(text, begin+1, end-begin+1)",
            detail="e.g. note_id/entity_id " + _examples(joined.where("_mismatch"), ["note_id", "entity_id"])))
    if row["missing"]:
        failures.append(Failure(
            table, spec.name, {"entities_without_input_note": row["missing"], "of": row["n"]},
            "every entity's note_id among the input notes (with text)",
            detail="e.g. note_id " + _examples(joined.where("_missing").select("note_id").distinct(), ["note_id"])))
    return failures


@register_check("notes_present_once", table="note_status",
                doc="Every input row is accounted for in note_status exactly once, and no id is annotated twice.")
def _notes_present_once(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    notes = ctx.input_notes(spec.name)
    status = ctx.table("note_status", spec.name)
    inp = notes.groupBy("note_id").agg(F.count(F.lit(1)).alias("n_in")).withColumnRenamed("note_id", "_in_id")
    out = status.groupBy("note_id").agg(F.count(F.lit(1)).alias("n_out"),
                                        F.sum((F.col("status") == "annotated").cast("long")).alias("n_ann"))
    joined = inp.join(out, inp["_in_id"].eqNullSafe(out["note_id"]), "full") \
        .select(F.coalesce("_in_id", "note_id").alias("id"), F.coalesce("n_in", F.lit(0)).alias("n_in"),
                F.coalesce("n_out", F.lit(0)).alias("n_out"), F.coalesce("n_ann", F.lit(0)).alias("n_ann"))
    kinds = {
        "missing": (F.col("n_in") > 0) & (F.col("n_out") == 0),
        "not_in_input": (F.col("n_in") == 0) & (F.col("n_out") > 0),
        "count_mismatch": (F.col("n_in") > 0) & (F.col("n_out") > 0) & (F.col("n_in") != F.col("n_out")),
        "annotated_more_than_once": F.col("n_ann") > 1,
    }
    row = joined.agg(*[F.sum(cond.cast("long")).alias(k) for k, cond in kinds.items()],
                     F.sum("n_in").alias("rows_in"), F.sum("n_out").alias("rows_out")).first()
    bad = {k: row[k] for k in kinds if row[k]}
    if not bad and row["rows_in"] == row["rows_out"]:
        return []
    examples = _examples(joined.where(" OR ".join(f"({c})" for c in (
        "n_in > 0 AND n_out = 0", "n_in = 0 AND n_out > 0", "n_in != n_out", "n_ann > 1"))), ["id"])
    observed = {**bad, "input_rows": row["rows_in"] or 0, "note_status_rows": row["rows_out"] or 0}
    return [Failure(table, spec.name, observed,
                    "each input row once in note_status (an id occurring k times in the input occurs k times), "
                    "no id annotated twice", detail=f"e.g. note_id {examples}")]


def _annotated_counts(ctx: CheckContext, check: str):
    """(note_id, entity_count, n) per annotated note, n = its rows in the entities table (cached)."""
    from pyspark.sql import functions as F

    if "annotated_counts" in ctx.memo:
        return ctx.memo["annotated_counts"]
    status = ctx.table("note_status", check)
    entities = ctx.table("entities", check)
    annotated = status.where(F.col("status") == "annotated").select("note_id", "entity_count")
    counts = entities.groupBy("note_id").agg(F.count(F.lit(1)).alias("n"))
    per_note = annotated.join(counts, "note_id", "left").withColumn("n", F.coalesce("n", F.lit(0)))
    ctx.memo["annotated_counts"] = per_note = ctx.persist(per_note)
    return per_note


@register_check("entity_counts_consistent", table="note_status",
                doc="note_status.entity_count equals the note's rows in entities; entities only for annotated notes.")
def _entity_counts_consistent(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    per_note = _annotated_counts(ctx, spec.name)
    wrong = per_note.where(F.col("n") != F.col("entity_count"))
    n_wrong = wrong.count()
    annotated = ctx.table("note_status", spec.name).where(F.col("status") == "annotated").select("note_id")
    orphans = ctx.table("entities", spec.name).select("note_id").distinct().join(annotated, "note_id", "left_anti")
    n_orphans = orphans.count()
    failures = []
    if n_wrong:
        failures.append(Failure(table, spec.name, {"notes_with_wrong_entity_count": n_wrong},
                                "entity_count = number of rows in entities, for every annotated note",
                                detail=f"e.g. note_id {_examples(wrong, ['note_id'])}", column="entity_count"))
    if n_orphans:
        failures.append(Failure(table, spec.name, {"entity_note_ids_not_annotated": n_orphans},
                                "entities only for notes annotated in note_status",
                                detail=f"e.g. note_id {_examples(orphans, ['note_id'])}"))
    return failures


def _bounds_failures(table: str, check: str, metric: str, value: float, low: float | None, high: float | None,
                     **extra) -> list[Failure]:
    if (low is not None and value < low) or (high is not None and value > high):
        if low is None:
            expected = f"{metric} <= {high:g}"
        elif high is None:
            expected = f"{metric} >= {low:g}"
        else:
            expected = f"{metric} in [{low:g}, {high:g}]"
        return [Failure(table, check, {metric: round(value, 4), **extra}, expected)]
    return []


@register_check("entities_per_note", table="entities",
                params={"mean_min": "number", "mean_max": "number", "max": "number"},
                doc="Mean and maximum number of entities per annotated note within bounds.")
def _entities_per_note(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    row = _annotated_counts(ctx, spec.name).agg(F.count(F.lit(1)).alias("notes"), F.avg("n").alias("mean"),
                                                F.max("n").alias("max")).first()
    notes = row["notes"]
    if notes < max(1, spec.params.get("min_notes", 1)):
        return []
    p = spec.params
    return (_bounds_failures(table, spec.name, "mean", float(row["mean"]), p.get("mean_min"), p.get("mean_max"),
                             annotated_notes=notes)
            + _bounds_failures(table, spec.name, "max", float(row["max"]), None, p.get("max"), annotated_notes=notes))


@register_check("share_notes_without_entities", table="note_status", params={"min": "share", "max": "share"},
                doc="Share of annotated notes with no entity within bounds.")
def _share_without(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    row = _annotated_counts(ctx, spec.name).agg(
        F.count(F.lit(1)).alias("notes"), F.sum((F.col("n") == 0).cast("long")).alias("empty")).first()
    notes = row["notes"]
    if notes < max(1, spec.params.get("min_notes", 1)):
        return []
    share = (row["empty"] or 0) / notes
    return _bounds_failures(table, spec.name, "share", share, spec.params.get("min"), spec.params.get("max"),
                            notes_without_entities=row["empty"] or 0, annotated_notes=notes)


@register_check("share_quarantined", table="note_status", params={"max": "share"},
                doc="Share of input rows quarantined at most max (a broken input feed).")
def _share_quarantined(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    row = ctx.table("note_status", spec.name).agg(
        F.count(F.lit(1)).alias("rows"), F.sum((F.col("status") == "quarantined").cast("long")).alias("q")).first()
    rows = row["rows"]
    if rows < max(1, spec.params.get("min_notes", 1)):
        return []
    return _bounds_failures(table, spec.name, "share", (row["q"] or 0) / rows, None, spec.params.get("max"),
                            quarantined=row["q"] or 0, rows=rows)


@register_check("assertion_share", table="entities", params={"shares": "bounds", "min_entities": "count"},
                doc="Share of entities with each assertion value within per-value bounds ('none' = null).")
def _assertion_share(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    from pyspark.sql import functions as F

    entities = ctx.table("entities", spec.name)
    counts = {r["a"]: r["n"] for r in entities.groupBy(F.coalesce("assertion", F.lit("none")).alias("a"))
              .agg(F.count(F.lit(1)).alias("n")).collect()}
    total = sum(counts.values())
    if total == 0 or total < spec.params.get("min_entities", 1):
        return []
    failures = []
    for value, bounds in spec.params.get("shares", {}).items():
        share = counts.get(value, 0) / total
        for f in _bounds_failures(table, spec.name, "share", share, bounds.get("min"), bounds.get("max"),
                                  entities=counts.get(value, 0), of=total):
            failures.append(Failure(f.table, f.expectation, f.observed, f.expected.replace("share", f"share of {value}", 1),
                                    column="assertion"))
    return failures

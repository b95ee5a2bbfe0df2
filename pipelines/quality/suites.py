"""Quality suites: YAML files of Great Expectations expectations and clinlake checks.

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
    (see :data:`clinlake.pipelines.quality.checks.CHECKS`), with configurable bounds::

        - {check: entities_per_note, mean_min: 1.0, max: 5000}
        - {check: assertion_share, min_entities: 50, shares: {absent: {max: 0.6}}}

Every entry may carry ``severity: critical | warning | info`` (GX's own levels, default
critical); only critical failures fail the gate. Loading validates everything and raises
:class:`SuiteError` naming the file, the entry and the key.
"""
from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from clinlake.pipelines.config import PipelineConfig, read_yaml, reject_unknown_keys
from clinlake.pipelines.engine.ner.metadata import ModelMeta
from clinlake.pipelines.quality.checks import CHECKS
from clinlake.pipelines.quality.gx import expectation_class, known_expectations
from clinlake.pipelines.quality.types import SEVERITIES, CheckSpec, ExpectationSpec, Suite
from clinlake.pipelines.resources import Resolver, package_resource

SUITE_KEYS = ("suite", "table", "description", "sets", "expectations", "checks")


class SuiteError(ValueError):
    """A suite YAML is invalid; the message names the file, the entry and the key."""


def load_suite(path: str | Path, *, sets: Mapping[str, Sequence[Any]] | None = None) -> Suite:
    """Read and validate a suite YAML.

    ``sets`` overrides (or adds) the suite's named value sets, e.g. the labels the job's
    configured NER stages can produce. Raises :class:`SuiteError` naming the file and the
    entry (``expectations[3]``) for unknown keys, unknown expectation or check names,
    invalid arguments and undefined ``$set`` references.
    """
    path = Path(path)
    return parse_suite(read_yaml(path, what="suite file", error=SuiteError), source=str(path), sets=sets)


def parse_suite(raw: Any, *, source: str = "<suite>", sets: Mapping[str, Sequence[Any]] | None = None) -> Suite:
    """Validate an already-parsed suite mapping (see :func:`load_suite`)."""
    def fail(msg: str) -> SuiteError:
        return SuiteError(f"{source}: {msg}")

    if not isinstance(raw, Mapping):
        raise fail(f"the top level must be a mapping, got {type(raw).__name__}")
    reject_unknown_keys(raw, SUITE_KEYS, error=fail)
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
        close = difflib.get_close_matches(kind, known_expectations(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise fail(f"{where}unknown expectation '{kind}'{hint}")
    kwargs = {k: v for k, v in entry.items() if k not in ("expectation", "severity")}
    kwargs = _resolve_sets(kwargs, value_sets, where, fail)
    severity = _severity(entry, where, fail)
    allowed = [f for f in getattr(cls, "__fields__", {}) if f not in ("batch_id", "rendered_content", "windows")]
    reject_unknown_keys(kwargs, allowed, where=f"{where}{kind}: ", error=fail)
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
    reject_unknown_keys(params, list(check.params), where=f"{where}{name}: ", error=fail)
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
            reject_unknown_keys(bounds, ["min", "max"], where=f"{where}.{key}: ", error=fail)
            out["none" if key is None else str(key)] = {
                b: _check_param(v, "share", f"{where}.{key}.{b}", fail) for b, v in bounds.items()}
        return out
    raise AssertionError(kind)  # pragma: no cover

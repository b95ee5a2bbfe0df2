"""Great Expectations 1.x glue: the expectation registry, running suites, reading results.

:func:`run_expectations` validates each suite's table with one checkpoint on a Spark data
source (a file-backed context with Data Docs when given a directory, else an ephemeral one)
and turns every unmet expectation into a :class:`~clinlake.pipelines.quality.types.Failure`.

PHI: GX runs with ``partial_unexpected_count: 0``, so neither the results nor the Data Docs
list offending values, and observed values of text columns (:data:`PHI_COLUMNS`) are withheld.

Data Docs are rewritten after each build to load vendored CSS/JS instead of CDN files
(:mod:`~clinlake.pipelines.quality.offline_docs`), so they render air-gapped.

great_expectations is imported on first use only (:func:`_gx`), never at module level: the
engine and ``clinlake annotate --gate off`` must not load it.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from clinlake.pipelines.quality.types import Failure, Suite

LOG = logging.getLogger("clinlake.quality")

#: Columns whose values are (or quote) note text: their values never appear in failures.
PHI_COLUMNS = frozenset({"chunk", "text", "quarantined_text", "assertion_cue", "note_text", "body"})
#: Kwargs never shown in the "expected" description of a GX expectation.
_HIDDEN_KWARGS = {"batch_id", "result_format", "catch_exceptions", "meta", "notes", "description",
                  "rendered_content", "id", "severity", "windows", "condition_parser"}
GX_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}


def _gx():
    # GX phones home unless told not to; clinlake runs air-gapped.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx  # lazy: only a running gate or a suite being loaded needs GX

    return gx


def expectation_class(name: str):
    """The GX expectation class for a snake-case type, or ``None``."""
    _gx()
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(name)
    except Exception:
        return None


def known_expectations() -> list[str]:
    """Every expectation type GX has registered (its own and any the user added), sorted."""
    _gx()
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    return sorted(list_registered_expectation_implementations())


def run_expectations(suites: Sequence[Suite], frames: Mapping[str, Any], *, context_root: Path | None,
                     run_id: str | None, timings: dict[str, float]) -> tuple[list[Failure], int, Path | None]:
    """Run the suites' expectations on ``frames`` (table name → DataFrame).

    Returns (failures, expectations evaluated, the Data Docs index.html or None) and records
    seconds per phase in ``timings`` (``great_expectations:context``,
    ``<table>:great_expectations``, ``great_expectations:data_docs``).
    """
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
        if docs is not None and docs.exists():
            _make_docs_offline(docs.parent)
        timings["great_expectations:data_docs"] = round(time.monotonic() - started, 3)
    return failures, evaluated, docs


def _make_docs_offline(site: Path) -> None:
    """Point the Data Docs pages at vendored copies of the CDN files GX links (air-gapped use)."""
    from clinlake.pipelines.quality.offline_docs import OfflineDocsError, make_site_offline

    try:
        report = make_site_offline(site)
    except OfflineDocsError as err:  # a broken install must not turn a gate verdict into a crash
        LOG.warning("Data Docs left as GX wrote them (they need a network to render): %s", err)
        return
    if report.unresolved:
        # Not fatal: the gate's verdict stands; the pages only render unstyled without a network.
        # (URLs of GX's templates only, never data.)
        LOG.warning("Data Docs still load %d off-site file(s) with no vendored copy: %s",
                    len(report.unresolved), ", ".join(sorted(report.unresolved)))


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

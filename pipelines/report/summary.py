"""Human-readable run summary printed at the end of a run."""
from __future__ import annotations

from typing import Mapping


def _top(counts: Mapping[str, int], n: int = 8) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v}" for k, v in items[:n])
    return shown + (f", … ({len(items) - n} more)" if len(items) > n else "")


def format_summary(summary) -> str:
    if summary.status == "already_committed":
        return (f"clinlake annotate: run {summary.run_id} was already committed; nothing to do "
                f"(tables under {summary.tables['runs'].rsplit('/', 1)[0]})")
    lines = [
        f"clinlake annotate: run {summary.run_id} {summary.status} in {summary.duration_s:.1f} s "
        f"(pipeline {summary.pipeline_version})",
        f"  notes read        {summary.notes_read:>8}",
        f"  unchanged         {summary.notes_unchanged:>8}   (incremental: same text and pipeline version)",
        f"  annotated         {summary.notes_annotated:>8}",
        f"  quarantined       {summary.notes_quarantined:>8}"
        + (f"   ({_top(summary.quarantine_reasons)})" if summary.quarantine_reasons else ""),
        f"  entities          {summary.entities:>8}" + (f"   ({_top(summary.labels)})" if summary.labels else ""),
    ]
    if summary.assertions:
        lines.append(f"  assertions                  {_top(summary.assertions)}")
    if summary.gate_status:
        lines.append(f"  quality gate      {summary.gate_status}")
    versions = summary.table_versions
    lines.append("tables" + (" (Delta; version after this run)" if versions else "") + ":")
    lines += [f"  {name:<12} {path}" + (f"   v{versions[name]}" if name in versions else "")
              for name, path in summary.tables.items()]
    if summary.report_path:
        lines.append(f"run report: {summary.report_path}")
    if summary.data_docs:
        lines.append(f"Data Docs:  {summary.data_docs}")
    return "\n".join(lines)

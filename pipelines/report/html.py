"""The clinlake run report: one static, self-contained HTML file per run.

No server, no JavaScript, no external CSS, fonts or CDN: inline CSS and inline SVG bar
charts, so the file opens anywhere (also air-gapped) and can be attached to a ticket.

It shows the run's counts and timings, per-label and per-assertion bar charts, the
entities-per-note histogram, the quality gate's failing expectations (if any), and a few
sample notes with their entities highlighted by label (colour) and assertion (style).

The sample notes are note text, i.e. PHI: the report must live where the tables live, with
the same access rules (``n_samples=0`` leaves them out). Note text goes into the HTML only,
escaped, and never into logs or exceptions.
"""
from __future__ import annotations

import html
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

#: Entities-per-note histogram bins: (label, low, high inclusive; None = open).
HISTOGRAM_BINS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2–4", 2, 4), ("5–9", 5, 9), ("10–19", 10, 19), ("20–49", 20, 49),
    ("50–99", 50, 99), ("100–199", 100, 199), ("200+", 200, None),
)
#: Colour-blind-safe palette (Okabe–Ito); the shipped labels keep fixed colours.
LABEL_COLORS = {"PROBLEM": "#D55E00", "TEST": "#0072B2", "TREATMENT": "#009E73"}
PALETTE = ("#CC79A7", "#E69F00", "#56B4E9", "#8C6D31", "#7F3C8D", "#999999", "#F0A30A", "#3969AC")
ASSERTION_COLORS = {
    "present": "#4C9A2A", "absent": "#C0392B", "possible": "#E69F00", "conditional": "#8E44AD",
    "hypothetical": "#2E86C1", "associated_with_someone_else": "#7F8C8D", "none": "#BBBBBB",
}
#: How each assertion value is drawn on a highlighted entity (CSS class → legend text).
ASSERTION_STYLES = {
    "present": "solid underline",
    "absent": "struck through, outlined, no fill",
    "possible": "dashed border",
    "hypothetical": "dotted border",
    "conditional": "double underline",
    "associated_with_someone_else": "italic, wavy underline",
}
SAMPLE_MAX_CHARS = 3000


# --------------------------------------------------------------------------- data from Spark


def collect_report_data(spark, tables: Mapping[str, Any], notes, n_samples: int = 3, *,
                        id_column: str = "note_id", text_column: str = "text") -> dict[str, Any]:
    """Compute the report's inputs from the job's DataFrames.

    Returns ``{"label_counts", "assertion_counts", "entities_per_note_histogram", "samples",
    "source_counts"}`` (entities per ``ner_model``, the NER stage, e.g. ``clinical_core@<version>``),
    ready for ``write_run_report(path, summary, gate=..., **data)``. Samples are the
    ``n_samples`` annotated notes with the most distinct labels (then the most distinct
    assertion values, then the shortest text), with their text and entities.
    """
    from pyspark.sql import functions as F

    entities = tables["entities"]
    status = tables.get("note_status")
    source = F.col("ner_model") if "ner_model" in entities.columns else F.lit("unknown")
    groups = entities.groupBy("label", F.coalesce("assertion", F.lit("none")).alias("a"), source.alias("s")) \
        .agg(F.count(F.lit(1)).alias("n")).collect()  # one job for the three charts
    labels: dict[str, int] = {}
    assertions: dict[str, int] = {}
    sources: dict[str, int] = {}
    for r in groups:
        labels[str(r["label"])] = labels.get(str(r["label"]), 0) + r["n"]
        assertions[r["a"]] = assertions.get(r["a"], 0) + r["n"]
        sources[str(r["s"])] = sources.get(str(r["s"]), 0) + r["n"]
    label_counts = _ordered_counts(labels)
    assertion_counts = _ordered_counts(assertions)
    per_note = entities.groupBy("note_id").agg(F.count(F.lit(1)).alias("n"))
    if status is not None:
        annotated = status.where(F.col("status") == "annotated").select("note_id").distinct()
        per_note = annotated.join(per_note, "note_id", "left").select(
            "note_id", F.coalesce("n", F.lit(0)).alias("n"))
    bucket = F.lit(None).cast("string")
    for label, low, high in reversed(HISTOGRAM_BINS):
        cond = (F.col("n") >= low) if high is None else F.col("n").between(low, high)
        bucket = F.when(cond, F.lit(label)).otherwise(bucket)
    got = {r["b"]: r["c"] for r in per_note.groupBy(bucket.alias("b")).agg(F.count(F.lit(1)).alias("c")).collect()}
    histogram = [(label, int(got.get(label, 0))) for label, _, _ in HISTOGRAM_BINS]
    samples = _samples(entities, status, notes, n_samples, id_column, text_column) if n_samples > 0 else []
    return {"label_counts": label_counts, "assertion_counts": assertion_counts,
            "entities_per_note_histogram": histogram, "samples": samples, "source_counts": _ordered_counts(sources)}


def _ordered_counts(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def _samples(entities, status, notes, n: int, id_column: str, text_column: str) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    if notes is None:
        return []
    ranked = entities.groupBy("note_id").agg(
        F.countDistinct("label").alias("labels"),
        F.countDistinct(F.coalesce("assertion", F.lit("none"))).alias("assertions"),
        F.count(F.lit(1)).alias("entities"))
    if status is not None:
        lengths = status.where(F.col("status") == "annotated").select("note_id", "text_length")
        ranked = ranked.join(lengths, "note_id", "inner")
    else:
        ranked = ranked.withColumn("text_length", F.lit(0))
    picked = [r["note_id"] for r in ranked.orderBy(F.desc("labels"), F.desc("assertions"), F.asc("text_length"),
                                                      F.asc("note_id")).limit(n).collect()]
    if not picked:
        return []
    texts = {r["note_id"]: r["text"] for r in notes.select(
        F.col(id_column).cast("string").alias("note_id"), F.col(text_column).cast("string").alias("text"))
        .where(F.col("note_id").isin(picked)).dropDuplicates(["note_id"]).collect()}
    rows = (entities.where(F.col("note_id").isin(picked))
            .select("note_id", "begin", "end", "label", "assertion", "is_historical", "section").collect())
    by_note: dict[str, list[dict[str, Any]]] = {i: [] for i in picked}
    for r in rows:
        by_note[r["note_id"]].append({"begin": r["begin"], "end": r["end"], "label": r["label"],
                                      "assertion": r["assertion"], "is_historical": r["is_historical"],
                                      "section": r["section"]})
    return [{"note_id": i, "text": texts[i], "entities": sorted(by_note[i], key=lambda e: (e["begin"], e["end"]))}
            for i in picked if texts.get(i) is not None]


# --------------------------------------------------------------------------- HTML


def write_run_report(path: Path, summary: Mapping[str, Any] | Any, *, label_counts: Mapping[str, int],
                     assertion_counts: Mapping[str, int],
                     entities_per_note_histogram: Sequence[tuple[str, int]] | Mapping[str, int],
                     gate: Any | None, samples: Sequence[Mapping[str, Any]],
                     source_counts: Mapping[str, int] | None = None) -> Path:
    """Write the report to ``path`` (an .html file; parent directories are created) and return it.

    ``summary``: the run summary (a mapping or the job's ``RunSummary`` dataclass): run_id,
    status, pipeline_version, notes_read, notes_annotated, notes_quarantined, entities,
    duration_s, quarantine_reasons, tables and optionally ``timings`` (phase → seconds).
    ``gate``: a :class:`clinlake.pipelines.quality.gate.GateResult`, or None when the gate did not run.
    ``samples``: ``[{"note_id", "text", "entities": [{begin, end, label, assertion, is_historical}]}]``.
    ``source_counts``: entities per NER stage (model name@version or lexicon), charted when given.
    """
    if is_dataclass(summary) and not isinstance(summary, type):
        summary = asdict(summary)
    summary = dict(summary)
    histogram = list(entities_per_note_histogram.items()) if isinstance(entities_per_note_histogram, Mapping) \
        else [tuple(x) for x in entities_per_note_histogram]
    colors = label_colors(list(label_counts) + [e["label"] for s in samples for e in s.get("entities", ())])
    page = _page(summary, dict(label_counts), dict(assertion_counts), histogram, gate, list(samples), colors,
                 dict(source_counts or {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    colors: dict[str, str] = {}
    extra = iter(PALETTE * 4)
    for label in labels:
        if label not in colors:
            colors[label] = LABEL_COLORS.get(label) or next(extra, "#999999")
    return colors


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return _e(value)


def hbar_svg(items: Sequence[tuple[str, float]], *, colors: Mapping[str, str] | None = None,
             default_color: str = "#4C72B0", unit: str = "", title: str = "", width: int = 520) -> str:
    """A horizontal bar chart as inline SVG (one bar per item, value printed after the bar)."""
    if not items:
        return '<p class="muted">none</p>'
    row, label_w, value_w = 24, 200, 80
    bar_max = width - label_w - value_w
    top = max((v for _, v in items), default=0) or 1
    height = row * len(items) + 8
    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">', f"<title>{_e(title)}</title>"]
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = max(1.0, bar_max * value / top) if value else 0
        color = (colors or {}).get(label, default_color)
        text = _e(label if len(str(label)) <= 28 else str(label)[:27] + "…")
        shown = f"{_num(value)}{unit}"
        parts.append(
            f'<g class="bar"><title>{_e(label)}: {shown}</title>'
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="lbl">{text}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" rx="3" fill="{_e(color)}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" class="val">{shown}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(bins: Sequence[tuple[str, int]], *, title: str = "", width: int = 520, height: int = 220,
                  color: str = "#4C72B0") -> str:
    """A vertical-bar histogram as inline SVG (count above each bar, bin label below)."""
    if not bins:
        return '<p class="muted">none</p>'
    left, bottom, top_pad = 10, 34, 22
    plot_h = height - bottom - top_pad
    slot = (width - 2 * left) / len(bins)
    peak = max((c for _, c in bins), default=0) or 1
    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">', f"<title>{_e(title)}</title>",
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - left}" y2="{height - bottom}" class="axis"/>']
    for i, (label, count) in enumerate(bins):
        h = plot_h * count / peak
        x = left + i * slot + slot * 0.12
        w = slot * 0.76
        y = height - bottom - h
        parts.append(
            f'<g class="bar"><title>{_e(label)} entities: {count:,} notes</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2" fill="{color}"/>'
            f'<text x="{x + w / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" class="val">{count:,}</text>'
            f'<text x="{x + w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" class="lbl">{_e(label)}</text></g>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 4}" text-anchor="middle" class="axis-title">'
                 "entities per annotated note</text></svg>")
    return "".join(parts)


def highlight_note(text: str, entities: Sequence[Mapping[str, Any]], colors: Mapping[str, str], *,
                   max_chars: int = SAMPLE_MAX_CHARS) -> tuple[str, bool]:
    """The note as escaped HTML with one ``<mark>`` per entity; overlapping spans are skipped.

    Returns (html, truncated). ``end`` is inclusive (Spark NLP convention).
    """
    shown = text[:max_chars]
    out, pos = [], 0
    for ent in sorted(entities, key=lambda e: (e["begin"], e["end"])):
        begin, end = int(ent["begin"]), int(ent["end"]) + 1
        if begin < pos or end > len(shown) or begin >= end:
            continue
        label = str(ent.get("label"))
        assertion = ent.get("assertion") or "none"
        classes = ["ent", f"a-{assertion}" if assertion in ASSERTION_STYLES else "a-none"]
        if ent.get("is_historical"):
            classes.append("hist")
        tip = f"{label} · {assertion}" + (" · historical" if ent.get("is_historical") else "") \
            + (f" · {ent['section']}" if ent.get("section") else "")
        out.append(_e(shown[pos:begin]))
        out.append(f'<mark class="{" ".join(classes)}" style="--c:{_e(colors.get(label, "#999999"))}" '
                   f'title="{_e(tip)}">{_e(shown[begin:end])}</mark>')
        pos = end
    out.append(_e(shown[pos:]))
    return "".join(out), len(text) > max_chars


CSS = """
:root{--fg:#1d2430;--muted:#667085;--line:#e4e7ec;--bg:#f7f8fa;--ok:#2e7d32;--bad:#c62828;--warn:#b26a00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:16px;margin:0 0 10px}
.muted{color:var(--muted)}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:16px;margin-bottom:18px}
.badge{display:inline-block;padding:3px 10px;border-radius:999px;font-weight:600;font-size:12.5px;color:#fff;margin-left:6px}
.b-ok{background:var(--ok)}.b-bad{background:var(--bad)}.b-warn{background:var(--warn)}.b-none{background:#98a2b3}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:18px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:650;margin-top:2px}
.card .s{color:var(--muted);font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:14px;margin-bottom:14px;align-items:start}
.grid section.panel{margin-bottom:0}
svg.chart{max-width:100%;height:auto}
section.panel{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:14px;overflow-x:auto}
svg.chart text{font-size:12px;fill:#344054}
svg.chart text.val{fill:#475467}
svg.chart .axis{stroke:#98a2b3;stroke-width:1}
svg.chart text.axis-title{fill:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td.detail{overflow-wrap:anywhere}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
tr.sev-critical td:first-child{border-left:3px solid var(--bad)}
tr.sev-warning td:first-child,tr.sev-info td:first-child{border-left:3px solid var(--warn)}
.legend{display:flex;flex-wrap:wrap;gap:8px 18px;margin:4px 0 12px;align-items:center}
.legend .sw{display:inline-block;width:12px;height:12px;border-radius:3px;vertical-align:-1px;margin-right:5px}
.note{border:1px solid var(--line);border-radius:8px;margin-top:12px}
.note .meta{padding:7px 12px;background:#f2f4f7;border-bottom:1px solid var(--line);border-radius:8px 8px 0 0;font-size:12.5px}
.note .text{padding:10px 12px;white-space:pre-wrap;word-wrap:break-word;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;line-height:1.75;max-height:420px;overflow:auto}
mark.ent{color:inherit;background:color-mix(in srgb,var(--c) 18%,white);border-radius:3px;padding:0 1px;border-bottom:2px solid var(--c)}
mark.a-present{border-bottom:2px solid var(--c)}
mark.a-absent{background:transparent;text-decoration:line-through;text-decoration-color:var(--c);text-decoration-thickness:2px;outline:1.5px solid var(--c);outline-offset:-1px;border-bottom:0}
mark.a-possible{border:1.5px dashed var(--c);background:color-mix(in srgb,var(--c) 10%,white)}
mark.a-hypothetical{border:1.5px dotted var(--c);background:color-mix(in srgb,var(--c) 10%,white)}
mark.a-conditional{border-bottom:4px double var(--c)}
mark.a-associated_with_someone_else{font-style:italic;text-decoration:underline wavy var(--c);text-underline-offset:3px;border-bottom:0}
mark.hist::after{content:"h";font-size:.68em;vertical-align:super;color:#475467;margin-left:1px;font-weight:700}
.legend mark.ent{--c:#667085}
footer{color:var(--muted);font-size:12px;margin-top:18px}
"""


def _status_badge(status: Any) -> str:
    cls = {"succeeded": "b-ok", "failed": "b-bad"}.get(str(status), "b-none")
    return f'<span class="badge {cls}">run {_e(status or "unknown")}</span>'


def _gate_badge(gate: Any) -> str:
    if gate is None:
        return '<span class="badge b-none">quality gate not run</span>'
    if gate.passed and not gate.failures:
        return '<span class="badge b-ok">quality gate passed</span>'
    if gate.passed:
        return f'<span class="badge b-warn">quality gate passed with {len(gate.failures)} warning(s)</span>'
    return f'<span class="badge b-bad">quality gate failed ({len(gate.critical)})</span>'


def _card(key: str, value: Any, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{_e(key)}</div><div class="v">{_num(value)}</div>'
            + (f'<div class="s">{sub}</div>' if sub else "") + "</div>")


def _fmt_observed(value: Any) -> str:
    """``{"mismatched": 3, "of": 40, "percent": 7.5}`` → ``mismatched 3 of 40 (7.5%)``."""
    if not isinstance(value, Mapping):
        return str(_num(value))
    items = [(k, v) for k, v in value.items() if k not in ("of", "percent")]
    parts = [f"{k.replace('_', ' ')} {_num(v)}" for k, v in items]
    if "of" in value and parts:
        parts[0] += f" of {_num(value['of'])}"
    if value.get("percent") is not None and parts:
        parts[0] += f" ({value['percent']:.3g}%)"
    return "; ".join(parts)


def _gate_section(gate: Any) -> str:
    if gate is None:
        return ('<section class="panel"><h2>Quality gate</h2><p class="muted">The quality gate did not run '
                "for this run.</p></section>")
    docs = ""
    if gate.data_docs:
        uri = Path(gate.data_docs).resolve().as_uri()
        docs = f' · <a href="{_e(uri)}">Great Expectations Data Docs</a>'
    head = (f'<p class="muted">{gate.evaluated} expectations and checks evaluated in {gate.duration_s:.1f} s'
            f"{docs}</p>")
    if not gate.failures:
        return f'<section class="panel"><h2>Quality gate</h2>{head}<p>All expectations met.</p></section>'
    rows = "".join(
        f'<tr class="sev-{_e(f.severity)}"><td>{_e(f.severity)}</td><td>{_e(f.table)}</td><td>{_e(f.column or "")}</td>'
        f'<td class="mono">{_e(f.expectation).replace("_", "_<wbr>")}</td><td>{_e(_fmt_observed(f.observed))}</td><td>{_e(f.expected)}</td>'
        f'<td class="mono detail">{_e(f.detail)}</td></tr>'
        for f in sorted(gate.failures, key=lambda f: (f.severity != "critical", f.table, f.expectation)))
    return (f'<section class="panel"><h2>Quality gate: failing expectations</h2>{head}<table><thead><tr>'
            "<th>severity</th><th>table</th><th>column</th><th>expectation</th><th>observed</th><th>expected</th>"
            f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _legend(colors: Mapping[str, str]) -> str:
    labels = "".join(f'<span><span class="sw" style="background:{_e(c)}"></span>{_e(l)}</span>'
                     for l, c in colors.items())
    styles = "".join(f'<span><mark class="ent a-{a}">{_e(a)}</mark> <span class="muted">{_e(d)}</span></span>'
                     for a, d in ASSERTION_STYLES.items())
    hist = '<span><mark class="ent a-present hist">historical</mark> <span class="muted">superscript h</span></span>'
    return (f'<div class="legend"><strong>Labels</strong>{labels}</div>'
            f'<div class="legend"><strong>Assertion</strong>{styles}{hist}</div>')


def _samples_section(samples: Sequence[Mapping[str, Any]], colors: Mapping[str, str]) -> str:
    if not samples:
        return ""
    notes = []
    for sample in samples:
        body, truncated = highlight_note(str(sample.get("text") or ""), sample.get("entities", ()), colors)
        ents = sample.get("entities", ())
        labels = sorted({str(e["label"]) for e in ents})
        meta = (f'note <strong class="mono">{_e(sample.get("note_id"))}</strong> · {len(ents)} entities · '
                f'labels: {_e(", ".join(labels))}'
                + (f" · showing the first {SAMPLE_MAX_CHARS:,} of {len(str(sample.get('text') or '')):,} characters"
                   if truncated else ""))
        notes.append(f'<div class="note"><div class="meta">{meta}</div><div class="text">{body}</div></div>')
    return ('<section class="panel"><h2>Sample notes</h2><p class="muted">The annotated notes with the most '
            "distinct labels. Hover an entity for its label, assertion and section. This section contains note "
            "text: share the report like the tables themselves.</p>"
            f'{_legend(colors)}{"".join(notes)}</section>')


def _page(summary: dict, label_counts: dict, assertion_counts: dict, histogram: list, gate: Any,
          samples: list, colors: dict, source_counts: dict) -> str:
    run_id = summary.get("run_id", "")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    read = summary.get("notes_read")
    annotated = summary.get("notes_annotated")
    quarantined = summary.get("notes_quarantined")
    entities = summary.get("entities", sum(label_counts.values()))
    per_note = f"{entities / annotated:.1f} per annotated note" if annotated else ""
    share_q = f"{quarantined / read:.1%} of notes read" if read and quarantined is not None else ""
    cards = "".join([
        _card("notes read", read), _card("annotated", annotated),
        _card("quarantined", quarantined, _e(share_q)), _card("entities", entities, _e(per_note)),
        _card("duration", f"{float(summary.get('duration_s') or 0):.1f} s"),
    ])
    timings = dict(summary.get("timings") or {})
    if gate is not None and "quality gate" not in timings:
        timings["quality gate"] = gate.duration_s
    reasons = summary.get("quarantine_reasons") or {}
    charts = [
        ("Entities by label", hbar_svg(list(label_counts.items()), colors=colors, title="entities by label")),
        ("Entities by assertion", hbar_svg(list(assertion_counts.items()), colors=ASSERTION_COLORS,
                                           title="entities by assertion")),
        ("Entities per note", histogram_svg(histogram, title="entities per annotated note")),
    ]
    if source_counts:
        charts.append(("Entities by NER stage", hbar_svg(list(source_counts.items()), default_color="#3E7CB1",
                                                         title="entities by NER stage (model@version)")))
    if timings:
        charts.append(("Timings", hbar_svg([(k, float(v)) for k, v in timings.items()], unit=" s",
                                           default_color="#667085", title="timings in seconds")))
    if reasons:
        charts.append(("Quarantined notes by reason",
                       hbar_svg(sorted(reasons.items(), key=lambda kv: -kv[1]), default_color="#B54708",
                                title="quarantined notes by reason")))
    panels = "".join(f'<section class="panel"><h2>{_e(t)}</h2>{svg}</section>' for t, svg in charts)
    tables = summary.get("tables") or {}
    table_rows = "".join(f'<tr><td>{_e(k)}</td><td class="mono">{_e(v)}</td></tr>' for k, v in tables.items())
    tables_html = (f'<section class="panel"><h2>Tables</h2><table><tbody>{table_rows}</tbody></table></section>'
                   if table_rows else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clinlake run {_e(run_id)}</title>
<style>{CSS}</style></head>
<body><main>
<header><div><h1>clinlake run report</h1>
<div class="muted">run <span class="mono">{_e(run_id)}</span> · pipeline <span class="mono">{_e(summary.get("pipeline_version", ""))}</span></div></div>
<div>{_status_badge(summary.get("status"))}{_gate_badge(gate)}</div></header>
<div class="cards">{cards}</div>
{_gate_section(gate)}
<div class="grid">{panels}</div>
{_samples_section(samples, colors)}
{tables_html}
<footer>Generated {generated} by clinlake. Static file: no scripts, no external resources.</footer>
</main></body></html>
"""

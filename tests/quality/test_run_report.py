"""The static HTML run report: charts, legend, highlighted samples, escaping; data collected from Spark."""
from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clinlake.pipelines.quality.gate import GateResult
from clinlake.pipelines.quality.types import Failure
from clinlake.pipelines.report.html import (
    HISTOGRAM_BINS, collect_report_data, highlight_note, label_colors, write_run_report,
)

REPO = Path(__file__).resolve().parents[2]
TEXT = "HPI: Denies fever. Possible pneumonia <b>& co</b>. Mother had breast cancer. Start metformin."
EVIL_ID = 'n1"><script>alert(1)</script>'


def entity(note_id, chunk, label, assertion, historical=False, eid=None):
    begin = TEXT.index(chunk)
    return {"note_id": note_id, "entity_id": eid or f"{begin:032x}", "chunk": chunk, "begin": begin,
            "end": begin + len(chunk) - 1, "label": label, "assertion": assertion, "is_historical": historical,
            "section": "history_of_present_illness"}


ENTITIES = [entity("n1", "fever", "PROBLEM", "absent"), entity("n1", "pneumonia", "PROBLEM", "possible"),
            entity("n1", "breast cancer", "PROBLEM", "associated_with_someone_else", historical=True),
            entity("n1", "metformin", "TREATMENT", "present"), entity("n2", "fever", "PROBLEM", None)]
SUMMARY = {"run_id": "run-<1>", "pipeline_version": "0.1.0+abc", "status": "succeeded", "notes_read": 4,
           "notes_annotated": 3, "notes_quarantined": 1, "entities": 5, "duration_s": 12.5,
           "quarantine_reasons": {"null_text": 1}, "timings": {"annotate": 9.5},
           "tables": {"entities": "lake/entities"}}


class _Parser(HTMLParser):
    """Collects tags (fails on nothing: used to count elements and prove the markup parses)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def write(tmp_path, gate=None, samples=None, source_counts=None, **overrides) -> str:
    path = write_run_report(
        tmp_path / "report" / "run_report.html", {**SUMMARY, **overrides},
        label_counts={"PROBLEM": 4, "TREATMENT": 1}, assertion_counts={"present": 1, "absent": 1, "possible": 1},
        entities_per_note_histogram=[("0", 1), ("1", 1), ("2–4", 1)], gate=gate,
        samples=samples if samples is not None else [{"note_id": EVIL_ID, "text": TEXT,
                                                      "entities": [e for e in ENTITIES if e["note_id"] == "n1"]}],
        source_counts=source_counts)
    assert path.exists()
    return path.read_text(encoding="utf-8")


def test_report_charts_entities_by_ner_stage(tmp_path):
    page = write(tmp_path, source_counts={"clinical_core@abc": 4, "problem": 1})
    assert "Entities by NER stage" in page and "clinical_core@abc: 4" in page and "problem: 1" in page
    assert "Entities by NER stage" not in write(tmp_path)  # no counts given: no chart


def test_report_has_charts_legend_highlights_and_is_self_contained(tmp_path):
    page = write(tmp_path)
    parser = _Parser()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert tags.count("svg") == 5  # labels, assertions, histogram, timings, quarantine reasons
    assert page.count('<rect ') >= 2 + 3 + 3 + 1 + 1
    assert "Entities by label" in page and "Entities by assertion" in page and "Entities per note" in page
    marks = [a for t, a in parser.tags if t == "mark" and "a-" in a.get("class", "") and "style" in a]
    assert len(marks) == 4  # one per entity of the sample note
    classes = " ".join(a["class"] for a in marks)
    assert "a-absent" in classes and "a-possible" in classes and "a-associated_with_someone_else" in classes
    assert "hist" in classes
    assert 'class="legend"' in page and "struck through" in page and "dashed border" in page
    assert ">fever</mark>" in page and ">metformin</mark>" in page
    assert f"--c:{label_colors(['PROBLEM'])['PROBLEM']}" in page
    # self-contained: no scripts, no external resources
    assert "<script" not in page.replace("&lt;script", "")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page


def test_report_escapes_note_text_and_ids(tmp_path):
    page = write(tmp_path)
    assert "<b>& co</b>" not in page and "&lt;b&gt;&amp; co&lt;/b&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert "n1&quot;&gt;&lt;script&gt;" in page
    assert "run-&lt;1&gt;" in page


def test_report_lists_failing_expectations(tmp_path):
    gate = GateResult(passed=False, evaluated=12, duration_s=3.0, data_docs=tmp_path / "docs" / "index.html",
                      failures=[Failure("entities", "substring_matches_text", {"mismatched": 3, "of": 40},
                                        "0 entities whose chunk differs", detail="e.g. note_id/entity_id n1/ab"),
                                Failure("entities", "expect_column_values_to_be_between", {"unexpected": 1},
                                        "min_value=0, max_value=1", column="ner_confidence", severity="warning")])
    page = write(tmp_path, gate=gate)
    assert "quality gate failed (1)" in page
    assert "mismatched 3 of 40" in page and "substring_<wbr>matches_<wbr>text" in page
    assert "sev-warning" in page and "ner_confidence" in page
    assert (tmp_path / "docs" / "index.html").resolve().as_uri() in page
    passed = write(tmp_path, gate=GateResult(passed=True, failures=[], evaluated=3))
    assert "quality gate passed" in passed and "All expectations met" in passed
    assert "quality gate not run" in write(tmp_path, gate=None, samples=[])


def test_highlight_skips_overlaps_and_truncates():
    ents = [{"begin": 0, "end": 2, "label": "A", "assertion": "present"},
            {"begin": 1, "end": 3, "label": "B", "assertion": "present"},  # overlaps the first: skipped
            {"begin": 50, "end": 60, "label": "A", "assertion": "absent"}]  # beyond the cut: skipped
    html, truncated = highlight_note("abcdef <x>", ents, {"A": "#000"}, max_chars=8)
    assert truncated and html.count("<mark") == 1 and html.startswith('<mark class="ent a-present"')
    assert html.endswith("def &lt;")


def test_collect_report_data_from_dataframes(spark):
    status_rows = [("n1", "annotated", len(TEXT)), ("n2", "annotated", len(TEXT)), ("n3", "annotated", 5),
                   ("q1", "quarantined", None)]
    status = spark.createDataFrame(status_rows, "note_id string, status string, text_length long")
    entities = spark.createDataFrame(
        [tuple(e[c] for c in ("note_id", "entity_id", "chunk", "begin", "end", "label", "assertion",
                              "is_historical", "section")) + ("clinical_core@1" if e["label"] == "PROBLEM" else "drugs",)
         for e in ENTITIES],
        "note_id string, entity_id string, chunk string, begin int, `end` int, label string, assertion string, "
        "is_historical boolean, section string, ner_model string")
    notes = spark.createDataFrame([("n1", TEXT), ("n2", TEXT), ("n3", "Fine."), ("q1", None)], "id string, body string")
    data = collect_report_data(spark, {"entities": entities, "note_status": status}, notes, n_samples=2,
                               id_column="id", text_column="body")
    assert data["label_counts"] == {"PROBLEM": 4, "TREATMENT": 1}
    assert data["source_counts"] == {"clinical_core@1": 4, "drugs": 1}
    assert data["assertion_counts"] == {"absent": 1, "associated_with_someone_else": 1, "none": 1, "possible": 1,
                                        "present": 1}
    histogram = dict(data["entities_per_note_histogram"])
    assert list(histogram) == [b[0] for b in HISTOGRAM_BINS]
    assert (histogram["0"], histogram["1"], histogram["2–4"]) == (1, 1, 1)
    assert [s["note_id"] for s in data["samples"]] == ["n1", "n2"]  # most distinct labels first
    assert data["samples"][0]["text"] == TEXT and len(data["samples"][0]["entities"]) == 4


def _render_script():
    spec = importlib.util.spec_from_file_location("render_report", REPO / "benchmarks" / "render_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_renders_in_headless_chromium(tmp_path):
    render = _render_script()
    if render.find_chromium() is None:
        pytest.skip("no chromium (apt-get install -y chromium)")
    html = render.demo_report(tmp_path)
    png = render.render_png(html, tmp_path / "report.png", width=1000, height=1200)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

"""Write-audit-publish: the quality gate inside the annotate job."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from clinlake.jobs.annotate import main as annotate_main
from clinlake.pipelines.spark import job as spark_job
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.spark.job import QualityGateError, run_annotate


@pytest.fixture(scope="module")
def notes_path(tmp_path_factory, sample_notes):
    # 40 real notes: enough for the distribution checks (they skip runs under 20 notes).
    notes = [n for n in sample_notes if n["transcription"].strip()][:40]
    path = tmp_path_factory.mktemp("gate") / "notes.parquet"
    pq.write_table(pa.table({"id": [n[""] for n in notes], "body": [n["transcription"] for n in notes]}), path)
    return str(path)


def conf(notes_path, lake, **quality):
    return parse_config({"input": {"path": notes_path, "id_column": "id", "text_column": "body"},
                         "output": {"path": str(lake)},
                         "quality": {"data_docs": False, **quality}})


def break_entities(transform):
    """Wrap derive_tables so the entities look like a broken model stage produced them."""
    real = spark_job.derive_tables

    def broken(*args, **kwargs):
        tables = real(*args, **kwargs)
        tables["entities"] = transform(tables["entities"])
        return tables

    return broken


def test_clean_run_publishes_and_writes_report(spark, notes_path, tmp_path):
    lake = tmp_path / "lake"
    summary = run_annotate(spark, conf(notes_path, lake), run_id="clean")
    assert summary.status == "succeeded" and summary.gate_status == "passed", summary.gate_summary
    assert DeltaTable(str(lake / "entities")).version() == 0
    report = (lake / "_reports" / "clean" / "run_report.html").read_text()
    assert "<svg" in report and summary.report_path.endswith("run_report.html")
    assert "Entities by NER stage" in report and "clinical_core@" in report  # what the default model found


@pytest.mark.parametrize("name, transform, failing", [
    ("shifted", lambda df: df.withColumn("begin", F.col("begin") + 1).withColumn("end", F.col("end") + 1),
     "substring_matches_text"),
    ("dropped", lambda df: df.limit(0), "entities_per_note"),
])
def test_broken_model_stage_is_stopped_and_tables_unchanged(spark, notes_path, tmp_path, monkeypatch,
                                                            name, transform, failing):
    lake = tmp_path / "lake"
    first = run_annotate(spark, conf(notes_path, lake), run_id="good")
    before = DeltaTable(str(lake / "entities")).version()
    monkeypatch.setattr(spark_job, "derive_tables", break_entities(transform))
    with pytest.raises(QualityGateError) as err:
        run_annotate(spark, conf(notes_path, lake), run_id=name, full_refresh=True)
    assert failing in str(err.value) and "run report:" in str(err.value)
    assert DeltaTable(str(lake / "entities")).version() == before
    assert len(pa.table(DeltaTable(str(lake / "entities")).to_pyarrow_dataset().to_table())) == first.entities
    run = [r for r in pa.table(DeltaTable(str(lake / "runs")).to_pyarrow_dataset().to_table()).to_pylist()
           if r["run_id"] == name][0]
    assert (run["status"], run["gate_status"]) == ("failed", "failed")
    assert failing in {f["expectation"] for f in json.loads(run["gate_failures"])}
    assert "QualityGateError" in run["error"]


def test_warn_mode_publishes_despite_failures(spark, notes_path, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setattr(spark_job, "derive_tables",
                        break_entities(lambda df: df.withColumn("begin", F.col("begin") + 1)))
    summary = run_annotate(spark, conf(notes_path, lake, mode="warn", report=False), run_id="warned")
    assert (summary.status, summary.gate_status) == ("succeeded", "failed")
    assert DeltaTable(str(lake / "entities")).version() == 0


def test_user_added_expectation_takes_effect_and_cli_exit_code(spark, notes_path, tmp_path, capsys):
    suite = tmp_path / "mine.yaml"
    # Every chunk at most 3 characters long: real entities break it, so the gate must fail.
    suite.write_text("table: entities\nexpectations:\n"
                     "  - {expectation: expect_column_value_lengths_to_be_between, column: chunk, max_value: 3}\n")
    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({
        "input": {"path": notes_path, "format": "parquet", "id_column": "id", "text_column": "body"},
        "output": {"path": str(tmp_path / "lake")},
        "quality": {"data_docs": False, "report": False, "suites": [str(suite)]}}))
    assert annotate_main(["--config", str(config)]) == 4
    err = capsys.readouterr().err
    assert "quality gate stopped the publish" in err and "expect_column_value_lengths_to_be_between" in err
    assert not (tmp_path / "lake" / "entities").exists()
    assert annotate_main(["--config", str(config), "--gate", "off"]) == 0

"""Delta output: atomic, idempotent, incremental runs that never duplicate or lose a note.

Every table is checked twice: read back with delta-rs (``deltalake``) and with Spark.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F

from clinlake.pipelines.spark import delta_io
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.spark.delta_io import ConcurrentRunError
from clinlake.pipelines.spark.job import run_annotate
from clinlake.pipelines.spark.tables import read_delta

NOTES = {
    f"n{i}": text for i, text in enumerate([
        "HISTORY OF PRESENT ILLNESS: The patient denies fever. She has diabetes.",
        "FAMILY HISTORY: Mother had breast cancer.",
        "ASSESSMENT: Possible pneumonia. No evidence of pulmonary embolism.",
        "PLAN: Start metformin. Return if chest pain develops.",
        "Patient reports headache and nausea since Monday.",
        "PAST MEDICAL HISTORY: Asthma and hypertension.",
    ])
}


FAST = {"mode": "off", "report": False}


def write_notes(path, notes: dict[str, str | None]) -> str:
    pq.write_table(pa.table({"id": list(notes), "body": list(notes.values())}), path)
    return str(path)


def config(input_path, lake, **pipeline):
    return parse_config({
        "input": {"path": input_path, "format": "parquet", "id_column": "id", "text_column": "body"},
        "output": {"path": str(lake), "format": "delta"},
        "quality": FAST,  # the gate has its own tests (test_gate.py); these are about Delta
        **({"pipeline": pipeline} if pipeline else {}),
    })


def delta_rows(path) -> list[dict]:
    return pa.table(DeltaTable(str(path)).to_pyarrow_dataset().to_table()).to_pylist()


def assert_unique_entity_ids(spark, lake):
    entities = read_delta(spark, str(lake / "entities"))
    assert entities.select("note_id", "entity_id").distinct().count() == entities.count()
    assert len({(r["note_id"], r["entity_id"]) for r in delta_rows(lake / "entities")}) == len(delta_rows(lake / "entities"))


@pytest.fixture()
def lake(tmp_path):
    return tmp_path / "lake"


def test_incremental_runs_full_refresh_and_time_travel(spark, tmp_path, lake):
    notes_path = write_notes(tmp_path / "v1.parquet", NOTES)
    first = run_annotate(spark, config(notes_path, lake), run_id="r1")
    assert (first.notes_read, first.notes_annotated, first.notes_unchanged) == (6, 6, 0)
    entity_rows = delta_rows(lake / "entities")
    assert len(entity_rows) == first.entities > 0
    assert read_delta(spark, str(lake / "entities")).count() == first.entities
    assert {r["note_id"] for r in delta_rows(lake / "note_status")} == set(NOTES)
    v_first = DeltaTable(str(lake / "entities")).version()
    history = DeltaTable(str(lake / "entities")).history(1)[0]
    assert history["clinlake.run_id"] == "r1" and history["clinlake.pipeline_version"] == first.pipeline_version

    # Same input again: nothing re-annotated, zero rows added, a new version with the same rows.
    second = run_annotate(spark, config(notes_path, lake), run_id="r2")
    assert (second.notes_unchanged, second.notes_annotated, second.entities) == (6, 0, 0)
    assert DeltaTable(str(lake / "entities")).version() == v_first + 1
    assert sorted(r["entity_id"] for r in delta_rows(lake / "entities")) == sorted(r["entity_id"] for r in entity_rows)
    assert {r["run_id"] for r in delta_rows(lake / "entities")} == {"r1"}

    # Edit three notes: exactly those are re-annotated and their rows replaced.
    edited = dict(NOTES, n0="The patient denies chest pain. She has asthma.", n3="No fever.",
                  n5="SOCIAL HISTORY: Smokes. Hypertension noted.")
    third = run_annotate(spark, config(write_notes(tmp_path / "v2.parquet", edited), lake), run_id="r3")
    assert (third.notes_unchanged, third.notes_annotated) == (3, 3)
    rows = delta_rows(lake / "entities")
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run_id"], set()).add(r["note_id"])
    assert by_run["r3"] == {"n0", "n3", "n5"} and not by_run["r1"] & {"n0", "n3", "n5"}
    for r in rows:  # every stored chunk matches the note text it now belongs to
        assert edited[r["note_id"]][r["begin"]:r["end"] + 1] == r["chunk"]
    status = {r["note_id"]: r for r in delta_rows(lake / "note_status")}
    assert len(status) == 6 and status["n0"]["run_id"] == "r3" and status["n1"]["run_id"] == "r1"
    assert_unique_entity_ids(spark, lake)
    v_before_refresh = DeltaTable(str(lake / "entities")).version()
    rows_before_refresh = len(rows)

    # A pipeline change (new version) + full refresh rewrites everything; old versions stay readable.
    bumped = config(write_notes(tmp_path / "v2b.parquet", edited), lake, assertion={"max_scope": 8})
    fourth = run_annotate(spark, bumped, run_id="r4", full_refresh=True)
    assert fourth.pipeline_version != first.pipeline_version
    assert (fourth.notes_annotated, fourth.notes_unchanged) == (6, 0)
    assert {r["run_id"] for r in delta_rows(lake / "entities")} == {"r4"}
    assert {r["pipeline_version"] for r in delta_rows(lake / "note_status")} == {fourth.pipeline_version}
    old = DeltaTable(str(lake / "entities"), version=v_before_refresh).to_pyarrow_dataset().to_table()
    assert old.num_rows == rows_before_refresh
    assert read_delta(spark, str(lake / "entities"), version=v_first).count() == first.entities
    assert_unique_entity_ids(spark, lake)

    runs = read_delta(spark, str(lake / "runs")).orderBy("started_at").collect()
    assert [(r["run_id"], r["status"], r["write_mode"]) for r in runs] == [
        ("r1", "succeeded", "incremental"), ("r2", "succeeded", "incremental"),
        ("r3", "succeeded", "incremental"), ("r4", "succeeded", "full_refresh")]
    assert [r["notes_unchanged"] for r in runs] == [0, 6, 3, 0]


def test_retried_run_id_is_a_no_op(spark, tmp_path, lake):
    notes_path = write_notes(tmp_path / "n.parquet", NOTES)
    run_annotate(spark, config(notes_path, lake), run_id="nightly-1")
    versions = {t: DeltaTable(str(lake / t)).version() for t in ("entities", "note_status", "runs")}
    again = run_annotate(spark, config(notes_path, lake), run_id="nightly-1")
    assert again.status == "already_committed"
    assert {t: DeltaTable(str(lake / t)).version() for t in versions} == versions


def test_failure_between_write_and_commit_leaves_tables_unchanged(spark, tmp_path, lake, monkeypatch):
    notes_path = write_notes(tmp_path / "n.parquet", NOTES)
    run_annotate(spark, config(notes_path, lake), run_id="ok")
    before = {t: (DeltaTable(str(lake / t)).version(), len(delta_rows(lake / t))) for t in ("entities", "note_status")}

    def crash(*args, **kwargs):
        raise OSError("simulated crash in the commit step")

    monkeypatch.setattr(delta_io, "commit", crash)
    edited = dict(NOTES, n1="Father had a stroke.", n9="New note: cough.")
    with pytest.raises(OSError, match="simulated crash"):
        run_annotate(spark, config(write_notes(tmp_path / "e.parquet", edited), lake), run_id="crashed")
    monkeypatch.undo()
    after = {t: (DeltaTable(str(lake / t)).version(), len(delta_rows(lake / t))) for t in ("entities", "note_status")}
    assert after == before
    # The data files were written inside the table folder, but no reader sees them.
    assert any(p.name.startswith("run-crashed") for p in (lake / "entities").iterdir())
    assert "n9" not in {r["note_id"] for r in delta_rows(lake / "note_status")}
    assert read_delta(spark, str(lake / "entities")).where(F.col("run_id") == "crashed").count() == 0
    failed = [r for r in delta_rows(lake / "runs") if r["run_id"] == "crashed"]
    assert failed and failed[0]["status"] == "failed" and "OSError" in failed[0]["error"]
    # The failed run id is not marked committed: a retry does the work.
    retry = run_annotate(spark, config(write_notes(tmp_path / "e.parquet", edited), lake), run_id="crashed")
    assert retry.status == "succeeded" and retry.notes_annotated == 2


def test_concurrent_runs_one_wins_the_other_fails_cleanly(spark, tmp_path, lake, monkeypatch):
    notes_path = write_notes(tmp_path / "n.parquet", NOTES)
    run_annotate(spark, config(notes_path, lake), run_id="base")
    real_commit = delta_io.commit
    other = write_notes(tmp_path / "o.parquet", dict(NOTES, n2="No cough."))
    mine = write_notes(tmp_path / "m.parquet", dict(NOTES, n2="Severe cough."))
    raced = []

    def commit_after_rival(*args, **kwargs):
        if not raced:  # the rival run commits everything while this run is about to commit
            raced.append(True)
            monkeypatch.setattr(delta_io, "commit", real_commit)
            run_annotate(spark, config(other, lake), run_id="rival")
            monkeypatch.setattr(delta_io, "commit", commit_after_rival)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(delta_io, "commit", commit_after_rival)
    with pytest.raises(ConcurrentRunError, match="another run committed"):
        run_annotate(spark, config(mine, lake), run_id="loser")
    monkeypatch.undo()
    status = {r["note_id"]: r for r in delta_rows(lake / "note_status")}
    assert status["n2"]["run_id"] == "rival"
    assert {r["run_id"] for r in delta_rows(lake / "entities") if r["note_id"] == "n2"} == {"rival"}
    assert "loser" not in {r["run_id"] for r in delta_rows(lake / "entities")}
    assert_unique_entity_ids(spark, lake)


def test_a_run_overtaken_before_its_commits_commits_nothing(spark, tmp_path, lake, monkeypatch):
    """The race as it happens on a cluster: the rival run commits everything while this run is still
    annotating, before this run has opened any table for its commit. This run must fail on its first
    commit (tables pinned at the versions read when it started), not commit entities and then fail."""
    from clinlake.pipelines.spark import job

    run_annotate(spark, config(write_notes(tmp_path / "n.parquet", NOTES), lake), run_id="base")
    rival = config(write_notes(tmp_path / "o.parquet", dict(NOTES, n2="No cough.")), lake)
    real_derive = job.derive_tables

    def rival_commits_first(*args, **kwargs):
        monkeypatch.setattr(job, "derive_tables", real_derive)
        assert run_annotate(spark, rival, run_id="rival").status == "succeeded"
        return real_derive(*args, **kwargs)

    monkeypatch.setattr(job, "derive_tables", rival_commits_first)
    with pytest.raises(ConcurrentRunError, match="committed nothing"):
        run_annotate(spark, config(write_notes(tmp_path / "m.parquet", dict(NOTES, n2="Severe cough.")), lake),
                     run_id="loser")
    for table in ("entities", "note_status", "quarantine"):
        assert DeltaTable(str(lake / table)).version() == 1, table  # base, rival: nothing of the loser
        assert "loser" not in {r["run_id"] for r in delta_rows(lake / table)}, table
    assert {r["run_id"] for r in delta_rows(lake / "entities") if r["note_id"] == "n2"} == {"rival"}
    assert_unique_entity_ids(spark, lake)


def test_delta_input_with_version_and_quarantine_replacement(spark, tmp_path, lake):
    source = str(tmp_path / "notes_delta")
    write_deltalake(source, pa.table({"id": ["a", "b"], "body": ["No fever.", ""]}))
    write_deltalake(source, pa.table({"id": ["a", "b"], "body": ["No fever.", "Cough."]}), mode="overwrite")
    conf = parse_config({"input": {"path": source, "format": "delta", "id_column": "id", "text_column": "body",
                                   "version": 0}, "output": {"path": str(lake)}, "quality": FAST})
    first = run_annotate(spark, conf, run_id="v0")
    assert (first.notes_annotated, first.quarantine_reasons) == (1, {"empty_text": 1})
    assert [r["note_id"] for r in delta_rows(lake / "quarantine")] == ["b"]
    latest = parse_config({"input": {"path": source, "format": "delta", "id_column": "id", "text_column": "body"},
                           "output": {"path": str(lake)}, "quality": FAST})
    second = run_annotate(spark, latest, run_id="v1")
    assert (second.notes_unchanged, second.notes_annotated, second.notes_quarantined) == (1, 1, 0)
    assert delta_rows(lake / "quarantine") == []  # fixed note leaves quarantine in the same run
    assert {r["note_id"]: r["status"] for r in delta_rows(lake / "note_status")} == {"a": "annotated", "b": "annotated"}


def test_entities_partitioned_by_a_passthrough_column(spark, tmp_path, lake):
    import datetime as dt

    def notes_file(name, texts):
        path = tmp_path / name
        pq.write_table(pa.table({"id": list(texts), "body": list(texts.values()),
                                 "note_date": [dt.date(2026, 1, 1 + i % 2) for i in range(len(texts))]}), path)
        return str(path)

    def conf(path):
        return parse_config({
            "input": {"path": path, "id_column": "id", "text_column": "body", "passthrough": ["note_date"]},
            "output": {"path": str(lake), "partition_by": ["note_date"]}, "quality": FAST})

    run_annotate(spark, conf(notes_file("a.parquet", NOTES)), run_id="p1")
    table = DeltaTable(str(lake / "entities"))
    assert list(table.metadata().partition_columns) == ["note_date"]
    edited = dict(NOTES, n1="FAMILY HISTORY: Father had diabetes.")
    second = run_annotate(spark, conf(notes_file("b.parquet", edited)), run_id="p2")
    assert second.notes_annotated == 1
    rows = delta_rows(lake / "entities")
    assert {r["note_date"] for r in rows} == {dt.date(2026, 1, 1), dt.date(2026, 1, 2)}
    assert {r["run_id"] for r in rows if r["note_id"] == "n1"} == {"p2"}
    spark_rows = read_delta(spark, str(lake / "entities"))
    assert spark_rows.schema["note_date"].dataType.simpleString() == "date"
    assert spark_rows.count() == len(rows)
    assert sorted((r["note_id"], r["entity_id"], r["note_date"]) for r in spark_rows.collect()) == sorted(
        (r["note_id"], r["entity_id"], r["note_date"]) for r in rows)
    assert_unique_entity_ids(spark, lake)
    bad = parse_config({"input": {"path": notes_file("c.parquet", NOTES), "id_column": "id", "text_column": "body"},
                        "output": {"path": str(lake), "partition_by": ["not_a_column"]}, "quality": FAST})
    with pytest.raises(ValueError, match="not columns of the entities table"):
        run_annotate(spark, bad)

"""The annotate job in Spark, end to end, against the pure-Python engine."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from clinlake.jobs.annotate import main as annotate_main
from clinlake.pipelines.spark.batch import entity_record
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.spark.job import engine_task_count, run_annotate
from clinlake.pipelines.spark.tables import read_delta
from clinlake.schemas.spark import spark_schema
from clinlake.schemas.tables import entity_table, note_status_table, quarantine_table

GOOD_NOTES = {
    "n1": "CHIEF COMPLAINT: Chest pain.\nHISTORY OF PRESENT ILLNESS: The patient denies fever. "
          "She has diabetes and hypertension.",
    "n2": "FAMILY HISTORY: Mother had breast cancer. Father with coronary artery disease.\n"
          "PLAN: Start metformin 500 mg p.o. b.i.d. Return if chest pain develops.",
    "n3": "ASSESSMENT: Possible pneumonia. No evidence of pulmonary embolism. Blood pressure 120/80.",
    "n4": "Nothing clinical here at all.",
    "dup_same": "PAST MEDICAL HISTORY: Asthma.",
}
BAD_ROWS = [  # (note_id, text, expected reason)
    (None, "Headache.", "null_id"),
    ("null_text", None, "null_text"),
    ("empty", "", "empty_text"),
    ("blank", "   \n ", "empty_text"),
    ("ctrl", "Cough\x00and fever.", "control_characters"),
    ("huge", "pain " * 1_000_001, "text_too_long"),  # 5 MB
    ("dup_diff", "Migraine.", "duplicate_id_conflict"),
    ("dup_diff", "Seizure.", "duplicate_id_conflict"),
    ("dup_same", GOOD_NOTES["dup_same"], "duplicate_id"),
]


def job_config(tmp_path, input_path, fmt="parquet", gate=False):
    return parse_config({
        "input": {"path": str(input_path), "format": fmt, "id_column": "id", "text_column": "body",
                  "passthrough": ["patient_id", "note_date"]},
        "output": {"path": str(tmp_path / "lake"), "format": "parquet"},
        "quality": {"mode": "enforce", "data_docs": False} if gate else {"mode": "off", "report": False},
    })


@pytest.fixture(scope="module")
def notes_table(tmp_path_factory):
    rows = [(k, v) for k, v in GOOD_NOTES.items()] + [(i, t) for i, t, _ in BAD_ROWS]
    path = tmp_path_factory.mktemp("in") / "notes.parquet"
    pq.write_table(pa.table({
        "id": [r[0] for r in rows],
        "body": [r[1] for r in rows],
        "patient_id": list(range(len(rows))),
        "note_date": [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(len(rows))],
        "ignored": ["x"] * len(rows),
    }), path)
    return path, rows


@pytest.fixture(scope="module")
def job_run(spark, notes_table, tmp_path_factory):
    path, rows = notes_table
    out = tmp_path_factory.mktemp("out")
    config = job_config(out, path, gate=True)  # the clean run passes the default quality gate
    summary = run_annotate(spark, config, run_id="test-run")
    assert summary.gate_status == "passed", summary.gate_summary
    return config, summary, rows


def read(spark, config, table):
    return spark.read.parquet(f"{config.output.path}/{table}")


def test_every_note_accounted_for(spark, job_run):
    config, summary, rows = job_run
    assert summary.status == "succeeded"
    assert summary.notes_read == len(rows) == summary.notes_annotated + summary.notes_quarantined
    status = read(spark, config, "note_status")
    assert status.count() == len(rows)
    assert summary.notes_annotated == len(GOOD_NOTES)  # one copy of dup_same annotated
    expected = {(i, reason) for i, _, reason in BAD_ROWS}
    got = {(r["note_id"], r["reason"]) for r in status.where("status = 'quarantined'").collect()}
    assert got == expected
    assert summary.quarantine_reasons["duplicate_id_conflict"] == 2
    quarantine = read(spark, config, "quarantine")
    assert quarantine.count() == len(BAD_ROWS)
    assert quarantine.where("note_id = 'ctrl'").first()["quarantined_text"] == "Cough\x00and fever."


def test_output_schemas_are_the_declared_ones(spark, job_run):
    config, _, _ = job_run
    passthrough = tuple(read(spark, config, "entities").schema[c] for c in ("patient_id", "note_date"))
    declared = {"entities": spark_schema(entity_table(), passthrough),
                "note_status": spark_schema(note_status_table(sparknlp=True), passthrough),
                "quarantine": spark_schema(quarantine_table(), passthrough)}
    for table, schema in declared.items():
        actual = read(spark, config, table).schema
        # Parquet files make nested fields nullable on read; names and types must match exactly.
        assert ([(f.name, f.dataType.simpleString()) for f in actual]
                == [(f.name, f.dataType.simpleString()) for f in schema]), table
    assert [f.dataType.simpleString() for f in passthrough] == ["bigint", "date"]


def test_entities_equal_pure_python_engine(spark, job_run, pipeline):
    config, summary, _ = job_run
    assert summary.pipeline_version == pipeline.version
    expected_rows = []
    for note_id, text in GOOD_NOTES.items():
        sha = __import__("hashlib").sha256(text.encode()).hexdigest()
        for entity in pipeline.annotate(text):
            expected_rows.append({"note_id": note_id, **entity_record(entity, pipeline.version, sha)})
    actual = read(spark, config, "entities").drop("pipeline_version", "run_id", "patient_id", "note_date")
    expected = spark.createDataFrame(expected_rows, schema=actual.schema)
    assert len(expected_rows) >= 10
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_substring_invariant_and_unique_ids_in_spark(spark, job_run, notes_table):
    config, _, _ = job_run
    path, _ = notes_table
    notes = spark.read.parquet(str(path)).select(F.col("id").alias("note_id"), "body").dropDuplicates(["note_id"])
    entities = read(spark, config, "entities")
    joined = entities.join(notes, "note_id")
    assert joined.count() == entities.count() > 0
    broken = joined.where(F.expr("substring(body, begin + 1, `end` - begin + 1) != chunk"))
    assert broken.count() == 0
    assert entities.select("note_id", "entity_id").distinct().count() == entities.count()
    assert entities.where("run_id != 'test-run'").count() == 0


def test_runs_table_records_the_run(spark, job_run):
    config, summary, rows = job_run
    run = read(spark, config, "runs").where("run_id = 'test-run'").collect()
    assert len(run) == 1
    assert (run[0]["status"], run[0]["notes_read"], run[0]["entities"]) == ("succeeded", len(rows), summary.entities)
    assert run[0]["notes_annotated"] + run[0]["notes_quarantined"] == run[0]["notes_read"]
    assert not (tmp := __import__("pathlib").Path(config.output.path) / "_staging").exists() or not any(tmp.iterdir())


def test_sparknlp_annotation_column_matches_entities(spark, job_run):
    from sparknlp.annotation import Annotation

    config, _, _ = job_run
    status = read(spark, config, "note_status")
    # Same fields and types as Spark NLP's Annotation (Parquet relaxes nullability on read).
    assert status.schema["ner_chunk"].dataType.elementType.simpleString() == Annotation.dataType().simpleString()
    row = status.where("note_id = 'n3'").first()
    entities = read(spark, config, "entities").where("note_id = 'n3'").orderBy("begin").collect()
    assert [(a.begin, a.end, a.result, a.metadata["entity"]) for a in row["ner_chunk"]] == [
        (e["begin"], e["end"], e["chunk"], e["label"]) for e in entities]
    assert [a.metadata["entity_id"] for a in row["assertion_annotations"]] == [e["entity_id"] for e in entities]


def test_non_string_text_column_is_quarantined(spark, tmp_path):
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "body": [1, 2], "patient_id": [1, 2],
                             "note_date": [dt.date(2026, 1, 1)] * 2}), path)
    summary = run_annotate(spark, job_config(tmp_path, path))
    assert (summary.notes_read, summary.notes_quarantined) == (2, 2)
    assert summary.quarantine_reasons == {"text_not_string": 2}


def test_json_input_with_object_text_and_invalid_utf8_parquet(spark, tmp_path):
    path = tmp_path / "notes.json"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "body": "No fever.", "patient_id": 1, "note_date": "2026-01-01"},
        {"id": "b", "body": {"nested": "object"}, "patient_id": 2, "note_date": "2026-01-02"},
    ]))
    summary = run_annotate(spark, job_config(tmp_path / "j", path, fmt="json"))
    # Spark infers one type per column: a struct in any row makes the whole column non-text.
    assert summary.notes_read == 2 and summary.notes_annotated + summary.notes_quarantined == 2

    data = b"Chest pain.\xff\xfe"
    offsets = pa.py_buffer(pa.array([0, 11, len(data)], pa.int32()).buffers()[1])
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(data)])
    ppath = tmp_path / "bad_utf8.parquet"
    pq.write_table(pa.table({"id": ["ok", "bad"], "body": bad, "patient_id": [1, 2],
                             "note_date": [dt.date(2026, 1, 1)] * 2}), ppath)
    summary = run_annotate(spark, job_config(tmp_path / "p", ppath))
    assert (summary.notes_annotated, summary.quarantine_reasons) == (1, {"invalid_utf8": 1})


def test_cli_runs_bundled_sample_and_prints_summary(spark, tmp_path, capsys, sample_notes):
    code = annotate_main(["--output", str(tmp_path / "lake"), "--run-id", "sample-run"])
    out, err = capsys.readouterr()
    assert code == 0
    n = len(sample_notes)
    assert f"clinlake annotate progress: {n}/{n} notes (100 %), " in err  # the last progress line
    assert f"notes read        {len(sample_notes):>8}" in out
    assert "annotated" in out and "quarantined" in out and str(tmp_path / "lake" / "entities") in out
    status = read_delta(spark, str(tmp_path / "lake" / "note_status"))  # the default output is Delta
    assert status.count() == len(sample_notes)
    entities = read_delta(spark, str(tmp_path / "lake" / "entities"))
    assert set(r["label"] for r in entities.select("label").distinct().collect()) == {"PROBLEM", "TEST", "TREATMENT"}
    assert entities.select("medical_specialty").where("medical_specialty is null").count() == 0


def test_cli_config_error_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {path: x.csv, text_colum: body}\n")
    assert annotate_main(["--config", str(bad)]) == 2
    assert "unknown key 'input.text_colum' (did you mean 'input.text_column'?)" in capsys.readouterr().err


def test_missing_input_column_is_a_clear_error(spark, tmp_path, capsys, notes_table):
    path, _ = notes_table
    code = annotate_main(["--input", str(path), "--input-format", "parquet", "--id-column", "id",
                          "--text-column", "text_that_is_not_there", "--output", str(tmp_path / "l")])
    assert code == 2
    assert "has no column(s) ['text_that_is_not_there'" in capsys.readouterr().err


@pytest.mark.parametrize(("notes", "cores", "per_task", "tasks"), [
    (20_352, 2, 500, 42),  # 41 tasks of ~496 notes would leave one core idle for the last one
    (20_352, 1, 500, 41),
    (20_000, 2, 500, 40),  # already a multiple of the cores
    (30, 2, 500, 4),       # a small table: two tasks per core
    (0, 3, 500, 6),
    (1_001, 8, 100, 16),   # 11 tasks by size, two per core win
    (2_001, 8, 100, 24),   # 21 by size, rounded up to three waves of 8
    (5, 1, 0, 5),          # a non-positive size counts as one note per task
])
def test_engine_task_count_is_a_multiple_of_the_cores(notes, cores, per_task, tasks):
    assert engine_task_count(notes, cores, per_task) == tasks

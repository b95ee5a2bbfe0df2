"""clinlake quarantine: list quarantined notes without their text, export them for a re-run."""
from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pyspark.sql import types as T

from clinlake.jobs.quarantine import main
from clinlake.pipelines.spark.tables import read_table
from clinlake.pipelines.config import InputConfig
from clinlake.pipelines.spark.job import read_notes
from clinlake.schemas.spark import spark_schema
from clinlake.schemas.tables import quarantine_table

SECRET = "Patient SECRETNAME, cough,\n\"quoted\" and fever."
ROWS = [  # note_id, reason, detail, text
    ("ctrl", "control_characters", "NUL at character 5", "Cough\x00and fever."),
    ("q2", "duplicate_id_conflict", "2 rows with different texts share this note id", SECRET),
    ("q3", "null_text", "the text is null", None),
    (None, "null_id", "the id is null", "Headache."),
]


SCHEMA = spark_schema(quarantine_table(), extra=(T.StructField("patient_id", T.LongType()),))  # + a pass-through


def quarantine_rows():
    return [(i, reason, detail, None if text is None else "0" * 64, None if text is None else len(text), text,
             "0.1.0+test", "run-1", 100 + n) for n, (i, reason, detail, text) in enumerate(ROWS)]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("qlake")
    df = spark.createDataFrame(quarantine_rows(), SCHEMA)
    df.coalesce(1).write.parquet(str(root / "quarantine"))
    return root


def test_lists_counts_and_rows_without_text(lake, capsys):
    assert main(["--output", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "4 quarantined note(s)" in out and "run(s) run-1" in out
    for reason in ("control_characters", "duplicate_id_conflict", "null_text", "null_id"):
        assert reason in out
    assert "NUL at character 5" in out and "ctrl" in out
    assert "SECRETNAME" not in out and "Headache" not in out and "Cough" not in out


def test_reason_filter_limit_and_show_text(lake, capsys):
    assert main(["--output", str(lake), "--reason", "duplicate_id_conflict", "--reason", "null_text",
                 "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 quarantined note(s)" in out and "control_characters" not in out
    assert "(showing 1 of 2" in out
    assert main(["--output", str(lake), "--reason", "duplicate_id_conflict", "--show-text"]) == 0
    assert "SECRETNAME" in capsys.readouterr().out


@pytest.mark.parametrize("suffix, fmt", [(".parquet", "parquet"), (".csv", "csv")])
def test_export_round_trips_into_annotate_input(spark, lake, tmp_path, capsys, suffix, fmt):
    path = tmp_path / f"fix_me{suffix}"
    assert main(["--output", str(lake), "--export", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"exported 4 row(s) to {path}" in out and "1 row(s) have no text" in out
    assert f"--input {path} --input-format {fmt} --id-column note_id --text-column text" in out
    assert out.rstrip().endswith("--mode append")  # Parquet output: append the fixed notes
    assert "SECRETNAME" not in out
    notes = read_notes(spark, InputConfig(path=str(path), format=fmt, id_column="note_id", text_column="text"))
    got = {r["note_id"]: r["text"] for r in notes.collect()}
    assert got["q2"] == SECRET and got["ctrl"] == "Cough\x00and fever."
    assert set(got) == {"ctrl", "q2", "q3", None}
    columns = ["note_id", "text", "reason", "detail", "patient_id"]  # pass-through columns travel along
    if fmt == "parquet":
        exported = pq.read_table(path)
        assert exported.column_names == columns and exported.schema.field("patient_id").type == pa.int64()
    else:
        with open(path, encoding="utf-8", newline="") as handle:
            assert next(csv.reader(handle)) == columns


def test_missing_table_is_a_usage_error(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "nowhere")]) == 2
    assert "no quarantine table" in capsys.readouterr().err


def test_read_table_reads_delta(spark, tmp_path, capsys):
    deltalake = pytest.importorskip("deltalake")
    path = tmp_path / "quarantine"
    table = pa.Table.from_pylist([dict(zip(SCHEMA.names, row)) for row in quarantine_rows()[:2]])
    deltalake.write_deltalake(str(path), table)
    deltalake.write_deltalake(str(path), table.slice(0, 1), mode="overwrite")  # current version: 1 row
    df = read_table(spark, str(path))
    assert [r["note_id"] for r in df.collect()] == ["ctrl"]
    assert main(["--output", str(tmp_path), "--export", str(tmp_path / "fix.parquet")]) == 0
    out = capsys.readouterr().out
    assert "1 quarantined note(s)" in out and "exported 1 row(s)" in out
    assert "--mode append" not in out  # Delta output replaces the re-run notes' rows by note_id

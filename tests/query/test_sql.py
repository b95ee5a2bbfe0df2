"""clinlake sql and the README's offline queries, on a real job output, with the network cut."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from clinlake.jobs.sql import main as sql_main
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.query.sql import LakeError, open_lake, query
from clinlake.pipelines.spark.job import run_annotate

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
README_QUERY = ("SELECT section, chunk, count(*) AS n FROM entities WHERE label = 'PROBLEM' AND assertion = 'absent' "
                "GROUP BY ALL ORDER BY n DESC, section, chunk LIMIT 20")


@pytest.fixture(scope="module")
def lake(spark, sample_notes, tmp_path_factory):
    """The annotate job's Delta output for 12 sample notes (one of them empty: quarantined)."""
    notes = [n for n in sample_notes if n["transcription"].strip()][:11] + [{"": "empty", "transcription": ""}]
    source = tmp_path_factory.mktemp("notes") / "notes.parquet"
    pq.write_table(pa.table({"note_id": [f"n{i}" for i in range(len(notes))],
                             "text": [n["transcription"] for n in notes],
                             "medical_specialty": [n.get("medical_specialty") for n in notes]}), source)
    out = tmp_path_factory.mktemp("lake")
    config = parse_config({"input": {"path": str(source), "format": "parquet", "passthrough": ["medical_specialty"]},
                           "output": {"path": str(out), "format": "delta"},
                           "quality": {"mode": "off", "report": False}})
    summary = run_annotate(spark, config, run_id="sql-test")
    assert (summary.notes_annotated, summary.notes_quarantined) == (11, 1)
    return out


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _delta_rows(lake, table: str) -> list[dict]:
    return DeltaTable(str(lake / table)).to_pyarrow_table().to_pylist()


def test_readme_duckdb_query_runs_offline_and_matches_delta_rs(lake, offline):
    rows = query(lake, README_QUERY).fetchall()
    expected = Counter((r["section"], r["chunk"]) for r in _delta_rows(lake, "entities")
                       if r["label"] == "PROBLEM" and r["assertion"] == "absent")
    top = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0][0] is None, kv[0][0] or "", kv[0][1]))[:20]  # NULLS LAST
    assert rows == [(s, c, n) for (s, c), n in top]
    assert rows, "the sample notes hold negated problems"


def test_every_table_is_registered_at_its_current_version(lake, offline):
    connection, registered = open_lake(lake)
    assert [(t.name, t.format, t.version) for t in registered] == [
        ("entities", "delta", 0), ("note_status", "delta", 0), ("quarantine", "delta", 0), ("runs", "delta", 0)]
    for table in ("entities", "note_status", "quarantine", "runs"):
        [(count,)] = connection.sql(f"SELECT count(*) FROM {table}").fetchall()
        assert count == len(_delta_rows(lake, table)), table
    statuses = dict(connection.sql("SELECT status, count(*) FROM note_status GROUP BY status").fetchall())
    assert statuses == {"annotated": 11, "quarantined": 1}
    settings = dict(connection.sql("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                   "('autoinstall_known_extensions', 'autoload_known_extensions', "
                                   "'enable_external_access')").fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
                        "enable_external_access": "false"}


def test_the_query_cannot_read_files_or_load_extensions(lake, offline):
    connection, _ = open_lake(lake)
    with pytest.raises(Exception, match="delta extension"):
        connection.sql(f"SELECT * FROM delta_scan('{lake / 'entities'}')").fetchall()
    with pytest.raises(Exception, match="disabled"):
        connection.sql(f"SELECT * FROM read_parquet('{lake / 'entities'}/**/*.parquet')").fetchall()
    with pytest.raises(Exception, match="disabled"):
        connection.sql(f"COPY (SELECT 1) TO '{lake / 'out.csv'}'")
    assert not (lake / "out.csv").exists()


def test_polars_and_pandas_read_the_same_rows(lake, offline):
    polars = pytest.importorskip("polars")
    ids = sorted(r["entity_id"] for r in _delta_rows(lake, "entities"))
    assert sorted(polars.read_delta(str(lake / "entities"))["entity_id"].to_list()) == ids
    assert sorted(DeltaTable(str(lake / "entities")).to_pandas()["entity_id"]) == ids
    assert len(ids) == len(set(ids))


def test_command_formats(lake, capsys, offline):
    assert sql_main(["--lake", str(lake), "--format", "json", "SELECT run_id, status, notes_read FROM runs"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"run_id": "sql-test", "status": "succeeded", "notes_read": 12}]
    assert sql_main(["--lake", str(lake), "--format", "csv", "SELECT label, count(*) AS n FROM entities "
                     "GROUP BY label ORDER BY label"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = Counter(r["label"] for r in _delta_rows(lake, "entities"))
    assert lines == ['"label","n"'] + [f'"{label}",{n}' for label, n in sorted(labels.items())]
    assert sql_main(["--lake", str(lake), "SELECT count(*) AS n FROM quarantine"]) == 0
    assert re.search(r"│\s+1 │", capsys.readouterr().out)


def test_command_errors_are_clear(lake, tmp_path, capsys):
    assert sql_main(["--lake", str(tmp_path), "SELECT 1"]) == 2
    assert "no clinlake table" in capsys.readouterr().err
    assert sql_main(["--lake", str(lake), "SELECT * FROM nonexistent"]) == 2
    assert "nonexistent" in capsys.readouterr().err
    assert sql_main(["--lake", str(lake), "--version", "entities=x", "SELECT 1"]) == 2
    assert "TABLE=N" in capsys.readouterr().err


def test_time_travel_reads_an_older_version(tmp_path):
    path = tmp_path / "entities"
    write_deltalake(str(path), pa.table({"entity_id": ["a", "b"]}))
    write_deltalake(str(path), pa.table({"entity_id": ["c"]}), mode="overwrite")
    assert query(tmp_path, "SELECT entity_id FROM entities").fetchall() == [("c",)]
    old = query(tmp_path, "SELECT entity_id FROM entities ORDER BY 1", versions={"entities": 0}).fetchall()
    assert old == [("a",), ("b",)]
    with pytest.raises(LakeError, match="not queried"):
        open_lake(tmp_path, tables=("entities",), versions={"runs": 1})


def readme_queries() -> list[str]:
    """Every query the README gives for clinlake sql: the quick start's and the "Tables" block's."""
    quick = re.search(r'clinlake sql "(.+?)"', README, flags=re.S).group(1)
    block = re.search(r"```sql\n-- clinlake sql.*?\n```", README, flags=re.S).group(0)
    statements = [st for st in "\n".join(line for line in block.splitlines()[1:-1]
                                        if not line.startswith("--")).split(";") if st.strip()]
    return [" ".join(quick.split())] + [" ".join(st.split()) for st in statements]


def test_the_readme_queries_run_on_a_job_output_offline(lake, offline):
    queries = readme_queries()
    assert len(queries) == 3
    first = query(lake, queries[0]).fetchall()
    counts = Counter((r["section"], r["chunk"]) for r in _delta_rows(lake, "entities")
                     if r["label"] == "PROBLEM" and r["assertion"] == "absent")
    assert first and all(counts[(section, chunk)] == n for section, chunk, n in first)
    assert [n for *_, n in first] == sorted(counts.values(), reverse=True)[:20]
    per_note = query(lake, queries[1]).fetchall()
    present = Counter(r["note_id"] for r in _delta_rows(lake, "entities")
                      if r["label"] == "PROBLEM" and r["assertion"] == "present")
    assert per_note and all(present[note_id] == problems for note_id, _specialty, problems in per_note)
    runs = query(lake, queries[2]).fetchall()
    assert [(r[0], r[1], r[3]) for r in runs] == [("sql-test", "succeeded", 12)]


DELTA_SPARK_QUERY = """
import json, sys
from pyspark.sql import SparkSession
jars, sql = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master("local[1]").config("spark.jars", jars).config("spark.ui.enabled", "false")
         .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
         .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog").getOrCreate())
print(json.dumps([list(row) for row in spark.sql(sql).collect()]))
"""


def test_the_readme_spark_sql_query_runs_through_delta_spark(lake):
    """The README's Spark SQL line, through the real delta-spark jar (Spark's own Delta reader, as on
    Databricks), on the table delta-rs committed: same counts as delta-rs reads."""
    statement = re.search(r"-- Spark SQL on a cluster with delta-spark.*?\n(SELECT .*?);", README, flags=re.S).group(1)
    statement = statement.replace("delta.`/lake/entities`", f"delta.`{lake / 'entities'}`")
    jars = subprocess.run(["bash", str(REPO / "infra" / "jars" / "resolve.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()
    run = subprocess.run([sys.executable, "-c", DELTA_SPARK_QUERY, ",".join(str(p) for p in Path(jars).glob("*.jar")),
                          statement], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    expected = Counter((r["label"], r["assertion"]) for r in _delta_rows(lake, "entities"))
    assert sorted(map(tuple, rows)) == sorted((label, assertion, n) for (label, assertion), n in expected.items())
    assert [n for *_, n in rows] == sorted(expected.values(), reverse=True)


def test_the_readme_pyspark_example_runs_on_a_job_output(lake, spark, capsys):
    """The README's "PySpark without delta-spark" block, run as written on a job's output."""
    block = re.search(r"```python\n(# PySpark without delta-spark.*?)```", README, flags=re.S).group(1)
    exec(block.replace('"lake/', f'"{lake}/'), {"spark": spark})
    shown = capsys.readouterr().out
    assert re.search(r"\|\s*section\s*\|\s*chunk\s*\|\s*n\s*\|", shown)
    absent = Counter((r["section"], r["chunk"]) for r in _delta_rows(lake, "entities") if r["assertion"] == "absent")
    first = [line for line in shown.splitlines() if line.startswith("|")][1]  # the row under the header
    assert first.rstrip("|").split("|")[-1].strip() == str(max(absent.values()))  # ordered by n, largest first
    assert spark.table("entities").count() == len(_delta_rows(lake, "entities"))

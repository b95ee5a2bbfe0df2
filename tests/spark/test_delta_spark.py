"""Delta output through delta-spark (the Databricks path), against the delta-rs path.

The scenarios run in one subprocess whose SparkSession has the real delta-spark jars
(tests/spark/delta_spark_driver.py; the shared test session has no Delta and one JVM holds one
set of jars); the tests assert on the JSON it prints. What needs no Delta session (writer
choice, names refused without Delta, conflict recognition) runs in the shared session.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clinlake.jobs.annotate import EXIT_CONFLICT, EXIT_USAGE, main as annotate_main
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.spark.delta_spark import DeltaSessionError, is_concurrent_modification, session_has_delta
from clinlake.pipelines.spark.job import output_tables
from clinlake.pipelines.spark.tables import DeltaTables

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("delta_spark_driver.py")
SCENARIOS = ("both_paths", "incremental", "concurrent_and_failed", "conflict_during_merge", "names")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    jars = subprocess.run(["bash", str(REPO / "infra" / "jars" / "resolve.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()
    work = tmp_path_factory.mktemp("delta_spark")
    run = subprocess.run([sys.executable, str(DRIVER), ",".join(str(p) for p in sorted(Path(jars).glob("*.jar"))),
                          str(work), *SCENARIOS], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    found = {}
    for line in run.stdout.splitlines():
        if line.startswith("TIMING "):  # shown with pytest -s
            print(line)
        if line.startswith("RESULT "):
            record = json.loads(line.removeprefix("RESULT "))
            found[record["scenario"]] = record["result"]
    return found


def scenario(results: dict, name: str) -> dict:
    result = results[name]
    assert "error" not in result, result.get("error")
    return result


# --- in the shared session (no Delta) ---------------------------------------------------------

def test_without_delta_in_the_session_delta_rs_writes_and_names_are_refused(spark, tmp_path):
    base = {"input": {"path": "x"}, "output": {"path": str(tmp_path / "lake")}}
    assert not session_has_delta(spark)
    assert isinstance(output_tables(spark, parse_config(base), full_refresh=False), DeltaTables)
    named = parse_config({**base, "output": {"path": str(tmp_path / "lake"), "catalog": "main", "schema": "clin"}})
    with pytest.raises(DeltaSessionError, match=r"output table names .* need a Spark session with Delta"):
        output_tables(spark, named, full_refresh=False)
    forced = parse_config({**base, "output": {"path": str(tmp_path / "lake"), "delta_writer": "delta-spark"}})
    with pytest.raises(DeltaSessionError, match="output.delta_writer: delta-spark need a Spark session with Delta"):
        output_tables(spark, forced, full_refresh=False)


def test_the_cli_refuses_table_names_without_delta_with_exit_2(spark, tmp_path, capsys):
    config = tmp_path / "job.yaml"
    config.write_text("input: {path: notes.parquet}\noutput: {schema: clinical}\n"
                      "quality: {mode: 'off', report: false}\n")
    assert annotate_main(["--config", str(config), "--quiet"]) == EXIT_USAGE
    assert "need a Spark session with Delta" in capsys.readouterr().err


class _JavaClass:
    def __init__(self, name: str):
        self.name = name

    def getName(self) -> str:  # noqa: N802 - py4j's spelling
        return self.name


class _JavaException:
    def __init__(self, name: str):
        self.name = name

    def getClass(self) -> _JavaClass:  # noqa: N802
        return _JavaClass(self.name)


def test_deltas_concurrent_modification_failures_are_recognised():
    conflict = RuntimeError("An error occurred while calling o123.sql.")
    conflict.java_exception = _JavaException("io.delta.exceptions.ConcurrentAppendException")
    assert is_concurrent_modification(conflict)
    assert is_concurrent_modification(RuntimeError("[DELTA_CONCURRENT_DELETE_READ] files were deleted"))
    assert is_concurrent_modification(RuntimeError("[DELTA_METADATA_CHANGED] MetadataChangedException"))
    assert not is_concurrent_modification(RuntimeError("[DELTA_MISSING_DELTA_TABLE] not a Delta table"))


# --- in a session with delta-spark --------------------------------------------------------------

def test_the_writer_follows_the_session(results):
    writers = scenario(results, "both_paths")["writers"]
    assert writers == {"auto": "DeltaSparkTables", "delta-spark": "DeltaSparkTables", "delta-rs": "DeltaTables"}


def test_the_same_notes_through_both_writers_give_equal_tables(results):
    both = scenario(results, "both_paths")
    assert both["first"]["delta-rs"] == both["first"]["delta-spark"]
    first = both["first"]["delta-spark"]
    assert (first["notes_read"], first["notes_annotated"], first["notes_quarantined"]) == (8, 6, 2)
    by_rs, by_spark = both["first_tables"]["made_by_delta_rs"], both["first_tables"]["made_by_delta_spark"]
    assert by_rs == by_spark  # every row, run_id aside, order aside
    assert len(by_spark["entities"]) == first["entities"] > 0
    assert sorted((r[:2] for r in by_spark["quarantine"]), key=json.dumps) == [["n6", "empty_text"], [None, "null_id"]]


def test_each_writer_continues_the_others_table_and_every_reader_agrees(results):
    both = scenario(results, "both_paths")
    second = both["second"]
    spark_on_rs, rs_on_spark = second["delta-spark on made_by_delta_rs"], second["delta-rs on made_by_delta_spark"]
    assert spark_on_rs == rs_on_spark
    # n0, n3 edited, n6 no longer empty, n9 new; the null-id row is quarantined again; n1 n2 n4 n5 unchanged.
    counts = (spark_on_rs["notes_unchanged"], spark_on_rs["notes_annotated"], spark_on_rs["notes_quarantined"])
    assert counts == (4, 4, 1)
    assert spark_on_rs["table_versions"] == {"entities": 1, "note_status": 1, "quarantine": 1, "runs": 1}
    readers = both["readers"]
    for lake in ("made_by_delta_rs", "made_by_delta_spark"):
        for table, by_reader in readers[lake].items():
            assert set(by_reader) == {"spark", "delta-rs", "duckdb", "polars"}
            assert all(rows == by_reader["spark"] for rows in by_reader.values()), (lake, table)
    for table in ("entities", "note_status", "quarantine"):
        assert readers["made_by_delta_rs"][table]["spark"] == readers["made_by_delta_spark"][table]["spark"], table
    status = {row[0]: row[3] for row in readers["made_by_delta_spark"]["note_status"]["spark"]}
    assert status == {"n0": "r2", "n1": "r1", "n2": "r1", "n3": "r2", "n4": "r1", "n5": "r1", "n6": "r2", "n9": "r2",
                      None: "r2"}
    assert readers["made_by_delta_spark"]["quarantine"]["spark"] == [[None, "null_id", "r2"]]
    entity_runs = {(row[0], row[5]) for row in readers["made_by_delta_rs"]["entities"]["spark"]}
    assert entity_runs == {("n0", "r2"), ("n1", "r1"), ("n2", "r1"), ("n3", "r2"), ("n4", "r1"), ("n5", "r1"),
                           ("n6", "r2"), ("n9", "r2")}
    for lake in ("made_by_delta_rs", "made_by_delta_spark"):
        assert both["runs"][lake] == [["r1", "succeeded", "incremental"], ["r2", "succeeded", "incremental"]]


def test_both_writers_record_the_same_commit_info(results):
    history = scenario(results, "both_paths")["history"]
    clinlake_keys = ("clinlake.run_id", "clinlake.operation", "clinlake.run_status")
    for lake in ("made_by_delta_rs", "made_by_delta_spark"):
        for table, commits in history[lake].items():
            recorded = [[c["version"], *[c.get(k) for k in clinlake_keys]] for c in commits]
            status = "succeeded" if table == "runs" else None
            operation = "record_run" if table == "runs" else "incremental"
            assert recorded == [[0, "r1", operation, status], [1, "r2", operation, status]], (lake, table)
            assert len({c["clinlake.pipeline_version"] for c in commits}) == 1
    # One lake was written by delta-rs then delta-spark, the other the other way round.
    assert [c["operation"] for c in history["made_by_delta_rs"]["entities"]] == ["CREATE TABLE", "MERGE"]
    assert [c["operation"] for c in history["made_by_delta_spark"]["entities"]] == ["WRITE", "WRITE"]


def test_a_rerun_adds_no_version_whichever_writer_committed_it(results):
    both = scenario(results, "both_paths")
    assert set(both["reruns"].values()) == {"already_committed"}
    # Including a publish of run r2 straight through DeltaSparkTables: Delta's txnAppId check skips it.
    assert both["versions_after_reruns"] == both["versions_before_reruns"]


def test_incremental_replacement_full_refresh_and_time_travel(results):
    out = scenario(results, "incremental")
    first, second, third, fourth = out["first"], out["second"], out["third"], out["fourth"]
    # Six notes and an empty one (quarantined; a quarantined note is processed again by every run).
    assert (first["notes_read"], first["notes_annotated"], first["notes_quarantined"]) == (7, 6, 1)
    assert len(out["entities_first"]) == first["entities"] > 0
    # Same input again: nothing re-annotated, the rows unchanged (still run r1).
    assert (second["notes_unchanged"], second["notes_annotated"], second["entities"]) == (6, 0, 0)
    assert out["entities_second"] == out["entities_first"]
    # Three notes edited: exactly those re-annotated, their old rows gone, chunks match the new texts.
    assert (third["notes_unchanged"], third["notes_annotated"]) == (3, 3)
    by_run: dict[str, set] = {}
    for note_id, run_id, begin, end, chunk in out["entities_third"]:
        by_run.setdefault(run_id, set()).add(note_id)
        assert out["edited"][note_id][begin:end + 1] == chunk
    assert by_run["r3"] == {"n0", "n3", "n5"} and not by_run["r1"] & {"n0", "n3", "n5"}
    assert out["status_third"] == {"n0": "r3", "n1": "r1", "n2": "r1", "n3": "r3", "n4": "r1", "n5": "r3", "n6": "r3"}
    # Pipeline change + --full-refresh: every row replaced; older versions stay readable.
    assert fourth["pipeline_version"] != first["pipeline_version"]
    assert (fourth["notes_annotated"], fourth["notes_unchanged"]) == (6, 0)
    for table in ("entities", "note_status"):
        assert out["after_refresh"][table] == [["r4", fourth["pipeline_version"]]]
    assert out["rows_at_v_before_refresh"] == len(out["entities_third"])
    assert out["rows_at_v_first"] == first["entities"]
    assert out["entity_ids_unique"]
    assert out["runs"] == [["r1", "succeeded", "incremental", 0], ["r2", "succeeded", "incremental", 6],
                           ["r3", "succeeded", "incremental", 3], ["r4", "succeeded", "full_refresh", 0]]


def test_a_concurrent_run_exits_3_and_the_winner_stays(results):
    out = scenario(results, "concurrent_and_failed")
    assert out["exit_code"] == EXIT_CONFLICT
    assert out["n2_status_run"] == "rival" and out["n2_entity_runs"] == ["rival"]
    assert "loser" not in out["entity_runs"] and out["entity_ids_unique"]
    assert ["loser", "failed"] in out["runs_after_race"] and ["rival", "succeeded"] in out["runs_after_race"]


def test_a_failed_commit_leaves_every_table_unchanged_and_a_retry_does_the_work(results):
    out = scenario(results, "concurrent_and_failed")
    assert out["crash_raised"] == "simulated crash in the commit step"
    assert out["tables_unchanged"] and not out["n9_visible"] and out["crashed_rows_by_spark"] == 0
    assert out["failed_runs"] == [["failed", True]]
    # n1 edited, n9 new, and n2, whose stored row is the rival's text.
    assert out["retry"]["status"] == "succeeded" and out["retry"]["notes_annotated"] == 3


def test_a_commit_landing_during_the_merge_fails_it_through_deltas_conflict_detection(results):
    out = scenario(results, "conflict_during_merge")
    assert out["rival_committed"] and out["raised"].startswith("another run committed to delta.`")
    assert out["rows"] == [["a", 1], ["b", 2], ["rival", 9]]  # the rival's commit, nothing of the MERGE
    assert (out["version_before"], out["version_after"]) == (0, 1)


def test_input_and_output_by_catalog_table_name(results):
    out = scenario(results, "names")
    assert out["tables"] == ["clinlake_runs", "entities", "note_status", "notes", "quarantine"]
    first, second = out["first"], out["second"]
    # input.version 0: the seven original notes (n6 empty: quarantined).
    assert (first["notes_read"], first["notes_annotated"], first["notes_quarantined"]) == (7, 6, 1)
    assert out["entities_by_name"] == first["entities"] > 0
    # The latest version: n0, n3 edited, n6 filled, n9 new.
    assert (second["notes_read"], second["notes_unchanged"], second["notes_annotated"]) == (8, 4, 4)
    assert out["rerun"] == "already_committed"
    assert out["status_runs"] == {"n0": "t2", "n1": "t1", "n2": "t1", "n3": "t2", "n4": "t1", "n5": "t1", "n6": "t2",
                                  "n9": "t2"}
    assert out["runs"] == [["t1", "succeeded", "spark_catalog.clin.notes", "table"],
                           ["t2", "succeeded", "spark_catalog.clin.notes", "table"]]
    assert out["versions"] == {"entities": 2, "note_status": 2, "quarantine": 2, "clinlake_runs": 2}
    assert out["protocol"] == [1, 2]  # readable by delta-rs, DuckDB and Polars too
    assert out["properties"].get("delta.enableDeletionVectors") == "false"
    assert out["staging_left"] == []

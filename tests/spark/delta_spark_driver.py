"""Scenarios for tests/spark/test_delta_spark.py, run in a JVM of their own whose SparkSession has
the real delta-spark jars (the tests' shared session has no Delta, and one JVM holds one set of jars).

    python delta_spark_driver.py JARS WORKDIR SCENARIO [SCENARIO ...]

Prints one line ``RESULT <json>`` per scenario: what the tests assert on (or ``{"error": ...}``).
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

NOTES = {
    "n0": "HISTORY OF PRESENT ILLNESS: The patient denies fever. She has diabetes.",
    "n1": "FAMILY HISTORY: Mother had breast cancer.",
    "n2": "ASSESSMENT: Possible pneumonia. No evidence of pulmonary embolism.",
    "n3": "PLAN: Start metformin. Return if chest pain develops.",
    "n4": "Patient reports headache and nausea since Monday.",
    "n5": "PAST MEDICAL HISTORY: Asthma and hypertension.",
    "n6": "",  # quarantined (empty text)
}
EDITED = dict(NOTES, n0="The patient denies chest pain. She has asthma.", n3="No fever.", n6="Cough and wheezing.",
              n9="New note: shortness of breath.")
TABLES = ("entities", "note_status", "quarantine")
FAST = {"mode": "off", "report": False}


def write_notes(path: Path, notes: dict, *, null_id_text: str | None = "Cough.") -> str:
    ids, texts = list(notes), list(notes.values())
    if null_id_text is not None:  # a row without an id: quarantined, kept in note_status with a null id
        ids, texts = ids + [None], texts + [null_id_text]
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "body": texts}), path)
    return str(path)


def raw_config(notes: str, lake: Path, *, writer: str = "auto", **pipeline) -> dict:
    return {"input": {"path": notes, "format": "parquet", "id_column": "id", "text_column": "body"},
            "output": {"path": str(lake), "format": "delta", "delta_writer": writer}, "quality": FAST,
            **({"pipeline": pipeline} if pipeline else {})}


def config(notes: str, lake: Path, **kwargs):
    from clinlake.pipelines.config import parse_config

    return parse_config(raw_config(notes, lake, **kwargs))


def rs_rows(path) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def rs_versions(lake: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    return {t: DeltaTable(str(lake / t)).version() for t in (*TABLES, "runs")}


PROJECTIONS = {  # what the readers are compared on (every column that identifies the row's content)
    "entities": ("note_id", "entity_id", "chunk", "label", "assertion", "run_id", "pipeline_version"),
    "note_status": ("note_id", "status", "text_sha256", "run_id", "pipeline_version"),
    "quarantine": ("note_id", "reason", "run_id"),
}


def project(rows, table: str, *, drop_run: bool = False) -> list[list]:
    columns = [c for c in PROJECTIONS[table] if not (drop_run and c == "run_id")]
    return sorted(([r[c] for c in columns] for r in rows), key=json.dumps)


def all_readers(spark, lake: Path) -> dict[str, dict[str, list]]:
    """Each table as Spark (delta-spark), delta-rs, DuckDB (clinlake sql) and Polars read it."""
    import polars as pl

    from clinlake.pipelines.query.sql import query

    out: dict[str, dict[str, list]] = {}
    for table in TABLES:
        cols = PROJECTIONS[table]
        duck = query(lake, f"SELECT {', '.join(cols)} FROM {table}")
        out[table] = {
            "spark": project([r.asDict() for r in spark.read.format("delta").load(str(lake / table)).collect()], table),
            "delta-rs": project(rs_rows(lake / table), table),
            "duckdb": project([dict(zip(cols, r)) for r in duck.fetchall()], table),
            "polars": project(pl.read_delta(str(lake / table)).to_dicts(), table),
        }
    return out


def history(spark, lake: Path, table: str) -> list[dict]:
    rows = spark.sql(f"DESCRIBE HISTORY delta.`{lake / table}`").orderBy("version").collect()
    return [{"version": r["version"], "operation": r["operation"], **json.loads(r["userMetadata"] or "{}")}
            for r in rows]


def summary(s) -> dict:
    return {k: getattr(s, k) for k in ("status", "pipeline_version", "notes_read", "notes_annotated",
                                       "notes_quarantined", "notes_unchanged", "entities", "table_versions")}


# --- scenarios ---------------------------------------------------------------------------------

def scenario_both_paths(spark, work: Path) -> dict:
    """The same notes through both writers; then each lake continued by the other writer."""
    from clinlake.pipelines.spark.delta_spark import DeltaSparkTables
    from clinlake.pipelines.spark.job import output_tables, run_annotate

    v1, v2 = write_notes(work / "v1.parquet", NOTES), write_notes(work / "v2.parquet", EDITED)
    rs_lake, sp_lake = work / "made_by_delta_rs", work / "made_by_delta_spark"
    result: dict = {"writers": {
        w: type(output_tables(spark, config(v1, rs_lake, writer=w), full_refresh=False)).__name__
        for w in ("auto", "delta-spark", "delta-rs")}}
    result["first"] = {"delta-rs": summary(run_annotate(spark, config(v1, rs_lake, writer="delta-rs"), run_id="r1")),
                       "delta-spark": summary(run_annotate(spark, config(v1, sp_lake, writer="delta-spark"),
                                                           run_id="r1"))}
    result["first_tables"] = {lake.name: {t: project(rs_rows(lake / t), t, drop_run=True) for t in TABLES}
                              for lake in (rs_lake, sp_lake)}
    # Each lake continued by the other writer: edited n0, n3; n6 no longer empty; n9 new.
    result["second"] = {
        "delta-spark on made_by_delta_rs": summary(run_annotate(spark, config(v2, rs_lake, writer="delta-spark"),
                                                                run_id="r2")),
        "delta-rs on made_by_delta_spark": summary(run_annotate(spark, config(v2, sp_lake, writer="delta-rs"),
                                                                run_id="r2")),
    }
    result["readers"] = {lake.name: all_readers(spark, lake) for lake in (rs_lake, sp_lake)}
    result["runs"] = {lake.name: sorted([r["run_id"], r["status"], r["write_mode"]] for r in rs_rows(lake / "runs"))
                      for lake in (rs_lake, sp_lake)}
    result["history"] = {lake.name: {t: history(spark, lake, t) for t in (*TABLES, "runs")}
                         for lake in (rs_lake, sp_lake)}
    # Reruns of r2 (and r1) add no version, whichever writer committed the run and whichever reruns it.
    before = {lake.name: rs_versions(lake) for lake in (rs_lake, sp_lake)}
    reruns = {
        "delta-spark reruns r2 of delta-spark": run_annotate(spark, config(v2, rs_lake, writer="delta-spark"),
                                                             run_id="r2"),
        "delta-spark reruns r2 of delta-rs": run_annotate(spark, config(v2, sp_lake, writer="delta-spark"),
                                                          run_id="r2"),
        "delta-rs reruns r1 of delta-spark": run_annotate(spark, config(v1, sp_lake, writer="delta-rs"), run_id="r1"),
    }
    result["reruns"] = {k: s.status for k, s in reruns.items()}
    # Below run_already_committed: Delta's own idempotent-write check skips a commit of run r2 again.
    tables = DeltaSparkTables(spark, str(rs_lake))
    tables.publish("entities", spark.read.format("delta").load(str(rs_lake / "entities")).limit(1), None,
                   run_id="r2", pipeline_version="x")
    result["versions_before_reruns"] = before
    result["versions_after_reruns"] = {lake.name: rs_versions(lake) for lake in (rs_lake, sp_lake)}
    return result


def scenario_incremental(spark, work: Path) -> dict:
    """tests/spark/test_delta.py::test_incremental_runs_full_refresh_and_time_travel, delta-spark path."""
    from clinlake.pipelines.spark.job import run_annotate

    lake = work / "lake"
    v1 = write_notes(work / "v1.parquet", NOTES, null_id_text=None)
    out: dict = {"first": summary(run_annotate(spark, config(v1, lake, writer="delta-spark"), run_id="r1"))}
    out["v_first"] = rs_versions(lake)["entities"]
    out["entities_first"] = project(rs_rows(lake / "entities"), "entities")
    out["second"] = summary(run_annotate(spark, config(v1, lake, writer="delta-spark"), run_id="r2"))
    out["entities_second"] = project(rs_rows(lake / "entities"), "entities")
    edited = dict(NOTES, n0="The patient denies chest pain. She has asthma.", n3="No fever.",
                  n5="SOCIAL HISTORY: Smokes. Hypertension noted.")
    v2 = write_notes(work / "v2.parquet", edited, null_id_text=None)
    out["third"] = summary(run_annotate(spark, config(v2, lake, writer="delta-spark"), run_id="r3"))
    rows = rs_rows(lake / "entities")
    out["entities_third"] = [[r["note_id"], r["run_id"], r["begin"], r["end"], r["chunk"]] for r in rows]
    out["edited"] = edited
    out["status_third"] = {r["note_id"]: r["run_id"] for r in rs_rows(lake / "note_status")}
    out["v_before_refresh"] = rs_versions(lake)["entities"]
    bumped = config(v2, lake, writer="delta-spark", assertion={"max_scope": 8})
    out["fourth"] = summary(run_annotate(spark, bumped, run_id="r4", full_refresh=True))
    out["after_refresh"] = {t: sorted({(r["run_id"], r["pipeline_version"]) for r in rs_rows(lake / t)})
                            for t in ("entities", "note_status")}
    out["pipeline_versions"] = sorted({r["pipeline_version"] for r in rs_rows(lake / "runs")})
    old = spark.sql(f"SELECT count(*) AS n FROM delta.`{lake / 'entities'}` VERSION AS OF {out['v_before_refresh']}")
    out["rows_at_v_before_refresh"] = old.first()["n"]
    out["rows_at_v_first"] = spark.read.format("delta").option("versionAsOf", out["v_first"]).load(
        str(lake / "entities")).count()
    ids = spark.read.format("delta").load(str(lake / "entities")).select("note_id", "entity_id")
    out["entity_ids_unique"] = ids.distinct().count() == ids.count()
    out["runs"] = [[r["run_id"], r["status"], r["write_mode"], r["notes_unchanged"]]
                   for r in spark.read.format("delta").load(str(lake / "runs")).orderBy("started_at").collect()]
    return out


def scenario_concurrent_and_failed(spark, work: Path) -> dict:
    """test_delta.py's concurrent-run and failed-commit tests, delta-spark path (the CLI for exit 3)."""
    from clinlake.jobs import annotate as cli
    from clinlake.pipelines.spark import delta_spark
    from clinlake.pipelines.spark.job import run_annotate

    lake = work / "lake"
    base = write_notes(work / "n.parquet", NOTES)
    run_annotate(spark, config(base, lake, writer="delta-spark"), run_id="base")
    other = write_notes(work / "o.parquet", dict(NOTES, n2="No cough."))
    mine = work / "mine.yaml"
    mine.write_text(yaml.safe_dump(raw_config(write_notes(work / "m.parquet", dict(NOTES, n2="Severe cough.")), lake,
                                              writer="delta-spark")))
    real_merge = delta_spark.merge_rows
    raced: list[bool] = []

    def merge_after_rival(*args, **kwargs):
        if not raced:  # a rival run commits everything while this run is about to commit
            raced.append(True)
            delta_spark.merge_rows = real_merge
            run_annotate(spark, config(other, lake, writer="delta-spark"), run_id="rival")
            delta_spark.merge_rows = merge_after_rival
        return real_merge(*args, **kwargs)

    delta_spark.merge_rows = merge_after_rival
    try:
        exit_code = cli.main(["--config", str(mine), "--run-id", "loser", "--quiet"])
    finally:
        delta_spark.merge_rows = real_merge
    out: dict = {"exit_code": exit_code}
    out["n2_status_run"] = {r["note_id"]: r["run_id"] for r in rs_rows(lake / "note_status")}.get("n2")
    out["n2_entity_runs"] = sorted({r["run_id"] for r in rs_rows(lake / "entities") if r["note_id"] == "n2"})
    out["entity_runs"] = sorted({r["run_id"] for r in rs_rows(lake / "entities")})
    ids = [(r["note_id"], r["entity_id"]) for r in rs_rows(lake / "entities")]
    out["entity_ids_unique"] = len(ids) == len(set(ids))
    out["runs_after_race"] = sorted([r["run_id"], r["status"]] for r in rs_rows(lake / "runs"))

    # A crash in the commit step: no table changes, the failed run is recorded, a retry does the work.
    before = {t: (rs_versions(lake)[t], len(rs_rows(lake / t))) for t in TABLES}

    def crash(*args, **kwargs):
        raise OSError("simulated crash in the commit step")

    edited = write_notes(work / "e.parquet", dict(NOTES, n1="Father had a stroke.", n9="New note: cough."))
    delta_spark.merge_rows = crash
    try:
        run_annotate(spark, config(edited, lake, writer="delta-spark"), run_id="crashed")
        out["crash_raised"] = None
    except OSError as exc:
        out["crash_raised"] = str(exc)
    finally:
        delta_spark.merge_rows = real_merge
    out["tables_unchanged"] = before == {t: (rs_versions(lake)[t], len(rs_rows(lake / t))) for t in TABLES}
    out["n9_visible"] = "n9" in {r["note_id"] for r in rs_rows(lake / "note_status")}
    out["crashed_rows_by_spark"] = spark.read.format("delta").load(str(lake / "entities")).where(
        "run_id = 'crashed'").count()
    out["failed_runs"] = [[r["status"], "OSError" in (r["error"] or "")] for r in rs_rows(lake / "runs")
                          if r["run_id"] == "crashed"]
    retry = run_annotate(spark, config(edited, lake, writer="delta-spark"), run_id="crashed")
    out["retry"] = summary(retry)
    return out


def scenario_names(spark, work: Path) -> dict:
    """Input and output by catalog table name (spark_catalog.clin.*), incremental, rerun, time travel."""
    from clinlake.pipelines.config import parse_config
    from clinlake.pipelines.spark.job import run_annotate

    spark.sql("CREATE SCHEMA IF NOT EXISTS clin")
    notes = spark.createDataFrame([(k, v) for k, v in NOTES.items()], "id string, body string")
    notes.write.format("delta").saveAsTable("spark_catalog.clin.notes")
    spark.createDataFrame([(k, v) for k, v in EDITED.items()], "id string, body string").write.format(
        "delta").mode("overwrite").saveAsTable("spark_catalog.clin.notes")  # version 1: edited notes

    def conf(version=None):
        return parse_config({
            "input": {"table": "spark_catalog.clin.notes", "id_column": "id", "text_column": "body",
                      **({"version": version} if version is not None else {})},
            "output": {"path": str(work / "staging"), "catalog": "spark_catalog", "schema": "clin",
                       "tables": {"runs": "clin.clinlake_runs"}},
            "quality": FAST})

    out: dict = {"first": summary(run_annotate(spark, conf(version=0), run_id="t1"))}
    out["tables"] = sorted(t.name for t in spark.catalog.listTables("clin"))
    out["entities_by_name"] = spark.table("spark_catalog.clin.entities").count()
    out["second"] = summary(run_annotate(spark, conf(), run_id="t2"))
    out["rerun"] = run_annotate(spark, conf(), run_id="t2").status
    out["status_runs"] = {r["note_id"]: r["run_id"] for r in spark.table("spark_catalog.clin.note_status").collect()}
    out["runs"] = sorted([r["run_id"], r["status"], r["input_path"], r["input_format"]]
                         for r in spark.table("clin.clinlake_runs").collect())
    out["versions"] = {t: spark.sql(f"DESCRIBE HISTORY spark_catalog.clin.{t}").count()
                       for t in ("entities", "note_status", "quarantine", "clinlake_runs")}
    detail = spark.sql("DESCRIBE DETAIL spark_catalog.clin.entities").first()
    out["protocol"] = [detail["minReaderVersion"], detail["minWriterVersion"]]
    out["properties"] = dict(detail["properties"])
    out["staging_left"] = sorted(p.name for p in (work / "staging").glob("*")) if (work / "staging").exists() else []
    return out


def scenario_conflict_during_merge(spark, work: Path) -> dict:
    """A commit landing while the MERGE runs (after its snapshot): Delta's own conflict detection fails
    the MERGE, and it surfaces as ConcurrentRunError. The rival commit is made by delta-rs from inside
    the MERGE's source (a Python UDF, once), so it lands mid-statement, deterministically."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from clinlake.pipelines.spark import delta_spark
    from clinlake.pipelines.spark.delta_io import ConcurrentRunError

    table = work / "table"
    spark.createDataFrame([("a", 1), ("b", 2)], "note_id string, x int").write.format("delta").save(str(table))
    marker = work / "rival-committed"

    def rival_commits_once(note_id):
        import os

        import pyarrow as pa
        from deltalake import write_deltalake

        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return True
        write_deltalake(str(table), pa.table({"note_id": ["rival"], "x": pa.array([9], pa.int32())}), mode="append")
        return True

    rival = F.udf(rival_commits_once, T.BooleanType())
    rows = spark.createDataFrame([("a", 10)], "note_id string, x int").where(rival("note_id"))
    ident = f"delta.`{table}`"
    out: dict = {"version_before": delta_spark.current_version(spark, ident)}
    try:
        delta_spark.merge_rows(spark, ident, rows, rows.select("note_id"), expected_version=out["version_before"],
                               run_id="mid", user_metadata="{}")
        out["raised"] = None
    except ConcurrentRunError as exc:
        out["raised"] = str(exc)
    out["rival_committed"] = marker.exists()
    out["rows"] = sorted([r["note_id"], r["x"]] for r in spark.read.format("delta").load(str(table)).collect())
    out["version_after"] = delta_spark.current_version(spark, ident)
    return out


SCENARIOS = {"both_paths": scenario_both_paths, "incremental": scenario_incremental,
             "concurrent_and_failed": scenario_concurrent_and_failed, "names": scenario_names,
             "conflict_during_merge": scenario_conflict_during_merge}


def session(jars: str, work: Path):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("clinlake-delta-spark-tests")
             .config("spark.jars", jars)
             .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
             .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
             .config("spark.sql.warehouse.dir", str(work / "warehouse"))
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "1")
             # Test speed on 2 cores: tiny tables need no parallel log replay or MERGE source copy.
             .config("spark.databricks.delta.snapshotPartitions", "1")
             .config("spark.databricks.delta.merge.materializeSource", "none")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    return spark


def main(argv: list[str]) -> int:
    jars, work, names = argv[0], Path(argv[1]), argv[2:]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = time.monotonic()
    spark = session(jars, work)
    print(f"TIMING session {time.monotonic() - started:.1f}s", flush=True)
    for name in names:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        clock = time.monotonic()
        try:
            result = SCENARIOS[name](spark, folder)
        except Exception:
            result = {"error": traceback.format_exc()[-4000:]}
        print(f"TIMING {name} {time.monotonic() - clock:.1f}s", flush=True)
        print("RESULT " + json.dumps({"scenario": name, "result": result}, default=str), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

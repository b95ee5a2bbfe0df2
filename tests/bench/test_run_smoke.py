"""``python -m benchmarks.run --smoke``: every engine section and a local[1] Spark job on 12 notes.

No timing is asserted (speed is the benchmarks' business): the figures' presence, their units
and the counts that must agree across paths are."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_run(tmp_path):
    out = tmp_path / "run.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["profile"] == "smoke"
    engine = results["engine"]
    assert (engine["notes"], engine["failed_notes"]) == (12, 0)
    assert engine["words"] > 1000 and engine["entities"] > 50
    assert set(engine["stage_seconds"]) == {"text", "ner", "assertion"}
    assert engine["ner_models"] == ["clinical_core@" + engine["ner_models"][0].split("@")[1]]
    assert {m: results["ner"][m]["batch_invariant"] for m in ("ncbi_disease", "clinical_core")} == {
        "ncbi_disease": True, "clinical_core": True}
    assert results["ner"]["clinical_core"]["words"] == engine["words"]
    assert [row["chars"] // 1000 for row in results["long"]] == [0, 9]  # cut at a space below 1k and 10k
    assert all(row["seconds_per_1k_chars"] > 0 and row["runs"] >= 1 for row in results["long"])
    memory = results["memory"]
    assert memory["typical_notes"]["notes"] == 12 and memory["long_note"]["notes"] == 1
    assert all(0 < m["rss_mb_after_build"] <= m["peak_rss_mb"] < 4096 for m in memory.values())
    spark = results["spark"]["local[1]"]
    assert spark.get("error") is None, spark
    # the Spark job and the engine annotate the same notes into the same number of entities
    assert (spark["notes"], spark["entities"], spark["status"]) == (12, engine["entities"], "succeeded")
    assert results["ratios"]["spark_overhead_local1_over_engine"] > 0
    # the engine is measured again after the Spark modes, on the same notes, to the same entities
    assert (results["engine_after_spark"]["notes"], results["engine_after_spark"]["entities"]) == (12, engine["entities"])
    assert results["ratios"]["engine_drift_after_spark_over_before"] > 0
    assert [row["path"] for row in results["cost"]] == ["engine, 1 core", "Spark local[1]"]
    table = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "### Engine, one process, one thread" in table and "| local[1] | 12 |" in table
    assert "spaCy: not run" in table  # peers are not part of the smoke run

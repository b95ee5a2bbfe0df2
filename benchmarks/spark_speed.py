"""The Spark job's figures for ``python -m benchmarks.run``: the annotate job on one workload,
in ``local[N]`` and on the standalone cluster (``infra/standalone``) with N one-core workers.

For each mode, in a fresh SparkSession (started and stopped here):

1. ``start_s`` — the session's start;
2. ``first_job_s`` — a whole job (``run_annotate``) on 2 notes in the fresh session: Python
   workers start and build the pipeline (Spark then reuses them for every later job);
3. ``fixed_s`` — the same 2-note job again: what every run pays whatever its size (planning,
   the staging pass, four Delta commits, the run record, the checks that no note was lost);
4. ``seconds`` — the job on the workload, from reading the notes to the last Delta commit,
   with the quality gate off (its cost is the gate's, reported by the job itself).

Ratios are made by benchmarks/run.py from these and the engine's one-core time. Each mode
writes its own lake under the work folder (deleted after the run).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
STANDALONE = REPO / "infra" / "standalone"


def write_notes(path: Path, notes: Sequence[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"note_id": [n["note_id"] for n in notes], "text": [n["text"] for n in notes]}), path)
    return path


def _job_config(notes: Path, lake: Path):
    from clinlake.pipelines.config import parse_config

    return parse_config({"input": {"path": str(notes), "format": "parquet"}, "output": {"path": str(lake)},
                         "quality": {"mode": "off", "data_docs": False, "report": False}})


def _session(master: str, cores: int):
    from clinlake.pipelines.config import SparkConfig
    from clinlake.pipelines.spark.session import get_spark

    conf = {"spark.ui.enabled": "false"}
    if master.startswith("spark://"):
        conf.update({"spark.executor.cores": "1", "spark.cores.max": str(cores), "spark.executor.memory": "1g",
                     "spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable})
    return get_spark(SparkConfig(master=master, shuffle_partitions=2 * cores, conf=conf))


def time_mode(name: str, master: str, cores: int, notes: Path, warmup: Path, work: Path) -> dict:
    """One mode's start, fixed and workload seconds (see the module docstring)."""
    from clinlake.pipelines.spark.job import run_annotate

    name = "".join(ch if ch.isalnum() else "-" for ch in name)  # "local[1]": brackets are globs to Spark
    started = time.perf_counter()
    spark = _session(master, cores)
    start_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        run_annotate(spark, _job_config(warmup, work / f"{name}-warmup"), progress_interval=3600)
        first_job_s = time.perf_counter() - started
        started = time.perf_counter()
        run_annotate(spark, _job_config(warmup, work / f"{name}-warmup2"), progress_interval=3600)
        fixed_s = time.perf_counter() - started
        started = time.perf_counter()
        summary = run_annotate(spark, _job_config(notes, work / f"{name}-lake"), progress_interval=3600)
        seconds = time.perf_counter() - started
    finally:
        spark.stop()
        for lake in ("warmup", "warmup2", "lake"):
            shutil.rmtree(work / f"{name}-{lake}", ignore_errors=True)
    return {"master": master, "cores": cores, "start_s": round(start_s, 2), "first_job_s": round(first_job_s, 2),
            "fixed_s": round(fixed_s, 2),
            "seconds": round(seconds, 2), "notes": summary.notes_read, "entities": summary.entities,
            "status": summary.status, "notes_per_s": round(summary.notes_read / seconds, 1),
            "notes_per_s_per_core": round(summary.notes_read / seconds / cores, 1)}


class StandaloneCluster:
    """infra/standalone's cluster with ``workers`` one-core workers, for one ``with`` block."""

    def __init__(self, workers: int, state: Path) -> None:
        self.workers, self.state = workers, state

    def __enter__(self) -> str:
        env = {**os.environ, "PYTHON": sys.executable, "WORKERS": str(self.workers), "WORKER_MEMORY": "3g"}
        out = subprocess.run(["bash", str(STANDALONE / "start.sh"), str(self.state)], capture_output=True, text=True,
                             timeout=180, env=env, check=True).stdout
        settings = dict(line.split("=", 1) for line in out.split() if "=" in line)
        return settings["MASTER_URL"]

    def __exit__(self, *exc) -> None:
        subprocess.run(["bash", str(STANDALONE / "stop.sh"), str(self.state)], capture_output=True, timeout=120)


def spark_runs(notes: Sequence[dict[str, str]], modes: Sequence[str], work: Path) -> dict[str, dict]:
    """``modes``: ``local[N]`` or ``standalone-N`` (N one-core workers). Returns mode -> figures;
    a mode that fails is reported with its error instead of ending the benchmark."""
    data = write_notes(work / "notes.parquet", notes)
    warmup = write_notes(work / "warmup.parquet", list(notes[:2]))
    results: dict[str, dict] = {}
    for mode in modes:
        try:
            if mode.startswith("standalone-"):
                workers = int(mode.split("-", 1)[1])
                with StandaloneCluster(workers, work / f"cluster-{workers}") as master:
                    results[mode] = time_mode(mode, master, workers, data, warmup, work)
                results[mode]["workers"] = workers
            else:
                cores = int(mode[len("local["):-1])
                results[mode] = time_mode(mode, mode, cores, data, warmup, work)
        except Exception as exc:  # a benchmark row, not a crash: say what failed
            results[mode] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return results

"""The annotate job on a real standalone cluster (two workers, one executor each, in their own JVMs
with their own Python workers), submitted with spark-submit and the packed environment, and the
faults a scheduled job meets there: a lost worker, a driver killed before or during the commit,
two runs committing to the same tables.

Every test checks that nothing is lost or duplicated: each input note is annotated or quarantined
once, entity ids are unique, and the tables equal a clean local-mode run over the same notes.
"""
from __future__ import annotations

import shutil
import time

from deltalake import DeltaTable

from standalone import FILES, Cluster, assert_nothing_lost_or_duplicated, job_yaml, table_rows, versions

PROGRESS_BEFORE_THE_END = r"progress: (?!(\d[\d,]*)/\1 )"  # some notes done, not all


def test_cluster_run_equals_local_mode_and_uses_both_executors(submit, cluster, cluster_notes, local_reference,
                                                               sample_notes, tmp_path):
    lake = tmp_path / "lake"
    run = submit(job_yaml(tmp_path / "job.yaml", cluster_notes, lake, gate=True), "--run-id", "cluster-1")
    code, out = run.finish()
    assert code == 0, run.tail()
    assert "quality gate      passed" in out
    executors = run.tasks_by_executor()
    assert "driver" not in executors and len(executors) == 2, executors  # both workers' executors ran tasks
    assert sum(executors.values()) >= FILES
    assert_nothing_lost_or_duplicated(lake, local_reference, len(sample_notes))


def test_a_lost_worker_is_survived(submit, cluster, cluster_notes, local_reference, sample_notes, tmp_path):
    lake = tmp_path / "lake"
    run = submit(job_yaml(tmp_path / "job.yaml", cluster_notes, lake), "--run-id", "lost-worker")
    run.wait_for_line(PROGRESS_BEFORE_THE_END)  # tasks have finished, others are running
    killed = cluster.kill_worker("worker-2")  # its executor JVM and Python workers go with it
    assert len(killed) >= 2, killed  # the worker and at least its executor
    code, out = run.finish()
    try:
        assert code == 0, run.tail()
        executors = run.tasks_by_executor()
        assert len(executors) == 2, executors
        assert_nothing_lost_or_duplicated(lake, local_reference, len(sample_notes))
    finally:
        cluster.start()  # the next tests get two workers again


def test_driver_killed_before_and_during_the_commit(submit, cluster, cluster_notes, local_reference, sample_notes,
                                                     tmp_path):
    lake = tmp_path / "lake"
    config = job_yaml(tmp_path / "job.yaml", cluster_notes, lake)
    first = submit(config, "--run-id", "first")
    assert first.finish()[0] == 0, first.tail()
    before = versions(lake)
    assert before == {"entities": 0, "note_status": 0, "quarantine": 0, "runs": 0}

    # Killed while the engine runs: nothing of the run is visible in any table.
    killed = submit(config, "--full-refresh", "--run-id", "killed-before-commit")
    killed.wait_for_line(PROGRESS_BEFORE_THE_END)
    killed.kill()
    assert versions(lake) == before
    assert_nothing_lost_or_duplicated(lake, local_reference, len(sample_notes))

    # Killed as soon as the first table's commit lands: each table is at its old or its new version,
    # and each version holds every note once (a full refresh replaces all rows in one commit).
    killed = submit(config, "--full-refresh", "--run-id", "killed-in-commit")
    first_commit = lake / "entities" / "_delta_log" / f"{1:020d}.json"
    deadline = time.monotonic() + 600
    while not first_commit.exists() and killed.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first_commit.exists(), killed.tail()
    killed.kill()
    after = versions(lake)
    assert after["entities"] == 1 and all(after[name] in (0, 1) for name in ("note_status", "quarantine"))
    assert after["runs"] == 0  # the run never recorded itself: it did not finish
    assert_nothing_lost_or_duplicated(lake, local_reference, len(sample_notes))

    # The rerun with the same inputs converges to the same end state and records itself.
    rerun = submit(config, "--run-id", "rerun")
    assert rerun.finish()[0] == 0, rerun.tail()
    assert_nothing_lost_or_duplicated(lake, local_reference, len(sample_notes))
    runs = DeltaTable(str(lake / "runs")).to_pyarrow_table().to_pylist()
    assert sorted((r["started_at"], r["run_id"], r["status"]) for r in runs)[0][1:] == ("first", "succeeded")
    assert sorted((r["run_id"], r["status"]) for r in runs) == [("first", "succeeded"), ("rerun", "succeeded")]


def test_two_runs_on_the_same_tables_one_commits_the_other_exits_3(submit, cluster, cluster_notes, local_reference,
                                                                   sample_notes, tmp_path):
    lake = tmp_path / "lake"
    config = job_yaml(tmp_path / "job.yaml", cluster_notes, lake)
    first = submit(config, "--run-id", "base")
    assert first.finish()[0] == 0, first.tail()
    entities_before = table_rows(lake)["entities"]
    one_core = {"spark.cores.max": "1"}  # each run gets one executor, so both run at once
    runs = [submit(config, "--full-refresh", "--run-id", f"racer-{i}", conf=one_core) for i in (1, 2)]
    codes = sorted(run.finish()[0] for run in runs)
    assert codes == [0, 3], [run.tail(30) for run in runs]
    loser = next(run for run in runs if run.process.returncode == 3)
    assert "another run committed" in "".join(loser.output)
    # the winner's one commit per table, nothing of the loser's
    assert versions(lake) == {"entities": 1, "note_status": 1, "quarantine": 1, "runs": 2}
    recorded = {r["run_id"]: r["status"] for r in DeltaTable(str(lake / "runs")).to_pyarrow_table().to_pylist()}
    assert sorted(recorded.values()) == ["failed", "succeeded", "succeeded"]
    assert_nothing_lost_or_duplicated(lake, local_reference, len(sample_notes))
    assert table_rows(lake)["entities"] == entities_before


def test_no_process_of_the_cluster_outlives_stop(cluster, tmp_path):
    """A second cluster, started and stopped: every daemon and child is gone, by pid."""
    other = Cluster(tmp_path / "other")
    other.start()
    pids = other.pids()
    assert set(pids) == {"master", "worker-1", "worker-2"} and len(other.processes()) >= 3
    assert other.stop() == []
    shutil.rmtree(tmp_path / "other")

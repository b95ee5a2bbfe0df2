"""A real Spark standalone cluster for the tests: one master and two 1-core workers started by
infra/standalone/start.sh (the pyspark install's own Master/Worker classes on 127.0.0.1), and jobs
submitted to it the way users do (infra/spark-submit/submit.sh: client mode, the environment
packed with venv-pack from a virtualenv holding only the built wheel, shipped with --archives).

Everything started is stopped by pid at the end of the session, also when a test fails, and the
teardown fails if any process of the cluster is left.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from standalone import FILES, PACK, REPO, SUBMIT, Cluster, Submission, job_yaml, source_hash, table_rows


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:  # the hook sees every test of the session: mark only this folder's
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def packed_env() -> Path:
    """infra/spark-submit/pack_env.sh's output (the wheel's environment and its archive), built again
    only when the package's sources changed (build/cluster-env/source.sha256)."""
    out = REPO / "build" / "cluster-env"
    stamp = out / "source.sha256"
    key = source_hash()
    if not (stamp.exists() and stamp.read_text() == key and (out / "clinlake-env.tar.gz").exists()):
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(["bash", str(PACK), "", str(out)], check=True, capture_output=True, text=True, timeout=1200)
        stamp.write_text(key)
    return out


# Disk the cluster tests need at once: each executor unpacks the ~1 GB environment, each driver too,
# and the race test runs two applications side by side. Files of finished runs are deleted after each test.
DISK_NEEDED_GB = 8


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("standalone")
    free_gb = shutil.disk_usage(state).free / 2**30
    assert free_gb >= DISK_NEEDED_GB, (f"the cluster tests need {DISK_NEEDED_GB} GB free under {state}, "
                                       f"{free_gb:.1f} GB are: executors could not unpack the environment")
    cluster = Cluster(state)
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.stop()
        cluster.remove_application_files()
        assert not left, f"processes of the cluster left running: {left}"


@pytest.fixture
def submit(packed_env, cluster, tmp_path):
    """submit(config, *args, conf={...}) -> Submission: the annotate job on the cluster."""
    started: list[Submission] = []
    driver_scratch = tmp_path / "driver-scratch"
    driver_scratch.mkdir()

    def run(config: Path, *args: str, conf: dict[str, str] | None = None) -> Submission:
        events = tmp_path / f"events-{len(started)}"
        events.mkdir()
        scratch = driver_scratch / str(len(started))  # deleted as soon as this run has ended
        scratch.mkdir()
        # the driver's copies of the environment go there too, deleted with the test's files (a killed
        # driver deletes nothing)
        # and executors' copies of the archive (java.io.tmpdir) go under the cluster's scratch space
        options = {"spark.local.dir": str(scratch),
                   "spark.executor.extraJavaOptions": f"-Djava.io.tmpdir={cluster.state / 'local'}",
                   "spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
                   "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false",
                   "spark.ui.enabled": "false", **(conf or {})}
        env = {**os.environ, "MASTER": cluster.master_url, "ENV_DIR": str(packed_env / "clinlake-env"),
               "ENV_ARCHIVE": str(packed_env / "clinlake-env.tar.gz"),
               "SPARK_SUBMIT_OPTS_EXTRA": " ".join(f"--conf {k}={v}" for k, v in options.items()),
               # spark-submit copies the archive to java.io.tmpdir, and a killed driver leaves that copy
               "SPARK_SUBMIT_OPTS": f"-Djava.io.tmpdir={scratch}"}
        env.pop("PYSPARK_PYTHON", None)  # the tests' own interpreter; submit.sh sets the archive's
        process = subprocess.Popen(["bash", str(SUBMIT), "--config", str(config), *args], env=env, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        started.append(Submission(process, events, cluster, scratch))
        return started[-1]

    yield run
    for submission in started:  # a test that failed half-way leaves no driver behind
        if submission.process.poll() is None:
            submission.kill()
    shutil.rmtree(driver_scratch, ignore_errors=True)
    cluster.remove_application_files()


@pytest.fixture(scope="session")
def cluster_notes(sample_notes, tmp_path_factory) -> Path:
    """The 322 bundled sample notes (4 of them empty) in 8 Parquet files."""
    folder = tmp_path_factory.mktemp("cluster_notes")
    for part in range(FILES):
        rows = [(f"n{i}", note["transcription"]) for i, note in enumerate(sample_notes) if i % FILES == part]
        pq.write_table(pa.table({"note_id": [r[0] for r in rows], "text": [r[1] for r in rows]}),
                       folder / f"part-{part}.parquet")
    return folder


@pytest.fixture(scope="session")
def local_reference(spark, cluster_notes, tmp_path_factory) -> dict[str, list[dict]]:
    """The same notes through the job in local mode: the tables every cluster run must equal."""
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.spark.job import run_annotate

    lake = tmp_path_factory.mktemp("local_lake")
    config = load_config(job_yaml(lake.parent / "local.yaml", cluster_notes, lake))
    summary = run_annotate(spark, config, run_id="local-reference")
    assert summary.status == "succeeded"
    return table_rows(lake)



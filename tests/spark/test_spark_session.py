import pytest

from clinlake.pipelines.spark import session as spark_session
from clinlake.pipelines.spark.session import JavaNotFoundError, check_java


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java anywhere
    with pytest.raises(JavaNotFoundError, match=r"needs Java 17 or newer.*openjdk-17-jre-headless"):
        check_java()


def test_old_java_is_refused(monkeypatch, tmp_path):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_392"\' >&2\n')
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert spark_session.java_major_version() == 8
    with pytest.raises(JavaNotFoundError, match="found Java 8"):
        check_java()


def test_installed_java_is_accepted():
    assert spark_session.java_major_version() >= 17


def test_job_started_beside_a_clinlake_folder_imports_the_installed_package(tmp_path):
    """Spark's Python workers run ``python -m`` in the working directory: a ``clinlake/`` folder there
    (the parent of a clone named clinlake) must not shadow the installed package."""
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "clinlake").mkdir()
    (tmp_path / "clinlake" / "README.md").write_text("a clone of the project would be here\n")
    pq.write_table(pa.table({"note_id": ["a", "b", "c"],
                             "text": ["Denies chest pain.", "History of diabetes mellitus.", "Start aspirin."]}),
                   tmp_path / "notes.parquet")
    (tmp_path / "job.yaml").write_text("input: {path: notes.parquet, format: parquet, id_column: note_id, "
                                       "text_column: text}\noutput: {path: lake, format: parquet}\n"
                                       "quality: {mode: 'off', report: false}\n")
    cli = Path(sys.executable).parent / "clinlake"
    run = subprocess.run([str(cli), "annotate", "--config", "job.yaml", "--quiet"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "annotated                3" in run.stdout


def test_the_config_master_holds_outside_spark_submit(tmp_path):
    """Outside spark-submit the config's master is the session's (PySpark's own gateway carries
    spark.master=local[*] as a default, which must not win); under spark-submit its --master wins
    (the cluster tests submit to spark://...)."""
    import os
    import subprocess
    import sys

    script = ("from clinlake.pipelines.config import SparkConfig\n"
              "from clinlake.pipelines.spark.session import get_spark\n"
              "spark = get_spark(SparkConfig(master='local[1]', conf={'spark.ui.enabled': 'false'}))\n"
              "print(spark.sparkContext.master, spark.sparkContext.defaultParallelism)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_GATEWAY_PORT"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == ["local[1]", "1"]

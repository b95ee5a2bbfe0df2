"""Creating the SparkSession, with a clear error when Java is missing."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from clinlake.pipelines.config import SparkConfig

MIN_JAVA = 17


class JavaNotFoundError(RuntimeError):
    """Spark needs a Java runtime; the message says how to get one."""


class ShadowedPackageError(RuntimeError):
    """A ``clinlake/`` folder in the working directory would shadow the installed package in the
    Python workers (Python 3.10, which has no PYTHONSAFEPATH)."""


def java_major_version() -> int:
    """The major version of the Java that Spark will start (JAVA_HOME first, then PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise JavaNotFoundError(
            f"clinlake runs on Apache Spark, which needs Java {MIN_JAVA} or newer, and no 'java' was found "
            "(JAVA_HOME is unset and 'java' is not on PATH). Install a JDK/JRE, e.g. "
            "'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu) or 'brew install openjdk@17' (macOS), "
            "then set JAVA_HOME or put java on PATH."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise JavaNotFoundError(f"could not read the version of {java} (output of 'java -version' not understood)")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8" → 8


def check_java() -> None:
    major = java_major_version()
    if major < MIN_JAVA:
        raise JavaNotFoundError(
            f"clinlake needs Java {MIN_JAVA} or newer for Spark 4.1; found Java {major}. "
            "Install OpenJDK 17 and point JAVA_HOME at it."
        )


def get_spark(conf: SparkConfig):
    """The active SparkSession, or a new one built from ``conf`` (local mode by default).

    On Databricks a session already exists and is reused as is. Under spark-submit the session is
    built here, but every option spark-submit was given (``--master``, ``--conf``) wins over the
    config's ``spark`` section. The session time zone (UTC), the shuffle partitions and the Arrow
    batch size are always the job's: its output and its memory per batch depend on them.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        check_java()
        # Local mode: Python workers must run this interpreter (the venv with clinlake).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        settings = {"spark.master": conf.master, "spark.app.name": conf.app_name,
                    "spark.ui.showConsoleProgress": "false", **conf.conf}
        submitted = _spark_submit_conf()
        builder = (
            SparkSession.builder
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
        )
        for key, value in settings.items():
            if submitted is None or not submitted.contains(key):
                builder = builder.config(key, value)
        active = builder.getOrCreate()
        active.sparkContext.setLogLevel(conf.log_level)
    active.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(conf.arrow_batch_rows))
    return active


def _spark_submit_conf():
    """spark-submit's options when spark-submit started this Python process, else None.

    Under spark-submit no session exists yet, but its options (``--master``, ``--conf``) are in the
    JVM's system properties, which ``SparkConf()`` reads once the gateway is up: they must win over
    the config's spark section (a builder's ``.master()`` would put a cluster job back into local
    mode). spark-submit hands its gateway to Python in PYSPARK_GATEWAY_PORT; without it, PySpark
    launches a gateway of its own, whose system properties hold only defaults (spark.master is
    local[*] there), so the config decides.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    from pyspark import SparkConf, SparkContext  # lazy, like get_spark's: importing this module needs no pyspark

    SparkContext._ensure_initialized()
    return SparkConf()


def isolate_worker_imports(spark) -> None:
    """Python workers import the installed clinlake, wherever the job was started from.

    Spark starts its Python workers with ``python -m``, which puts the working directory first on
    ``sys.path``: a ``clinlake/`` folder there (the parent of a clone named ``clinlake``, say) would
    shadow the installed package (an editable install loses even to a folder without ``__init__.py``)
    and every task would die with "cannot import name '__version__' from 'clinlake'". PYTHONSAFEPATH
    (Python 3.11+) keeps the working directory off the workers' ``sys.path``; they need nothing from it
    (Spark puts --py-files and archives on PYTHONPATH). It travels with each Python function, so it
    also holds in a session that spark-submit or Databricks created.
    """
    if sys.version_info >= (3, 11):
        spark.sparkContext.environment["PYTHONSAFEPATH"] = "1"
        return
    folder = Path.cwd() / "clinlake"
    if folder.is_dir():
        raise ShadowedPackageError(
            f"the working directory holds a folder named 'clinlake' ({folder}), which Spark's Python workers "
            "would import instead of the installed package (Python 3.10 cannot keep it off their path): "
            "start the job from another directory, or use Python 3.11+")

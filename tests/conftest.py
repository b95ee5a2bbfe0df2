"""Shared fixtures: one local SparkSession for the whole test session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: runs on the standalone cluster (slow; .ci/run runs it; "
                                       "-m 'not cluster' to leave it out while iterating)")


@pytest.fixture(scope="session")
def spark():
    from clinlake.pipelines.config import SparkConfig
    from clinlake.pipelines.spark.session import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, arrow_batch_rows=16,
                                     conf={"spark.ui.enabled": "false",
                                           "spark.sql.warehouse.dir": str(REPO / ".pytest_cache" / "warehouse")}))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def default_config():
    from clinlake.pipelines.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def pipeline(default_config):
    from clinlake.pipelines.engine.pipeline import Pipeline

    return Pipeline.from_config(default_config)


@pytest.fixture(scope="session")
def sample_notes() -> list[dict[str, str]]:
    import csv

    csv.field_size_limit(1 << 30)
    from clinlake.pipelines.resources import package_resource

    with open(package_resource("samples/mtsamples_sample.csv"), encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))

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
    from clinlake.pipelines.resources import sample_note_rows

    return sample_note_rows()


@pytest.fixture(scope="session")
def fp32_model_dir(tmp_path_factory):
    """A function giving a copy of a shipped NER model (by name) whose model.onnx is the plain fp32
    graph of its int8 weights (``plain_fp32_graph``: the shipped graph before its LSTM went int8)."""
    import json

    pytest.importorskip("onnx")
    from clinlake.pipelines.resources import package_resource
    from clinlake.pipelines.training.ner.lstm_int8 import plain_fp32_graph

    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            shipped = Path(package_resource(f"models/{name}"))
            target = tmp_path_factory.mktemp("fp32") / name
            target.mkdir()
            plain_fp32_graph(shipped / "model.onnx", target / "model.onnx")
            meta = json.loads((shipped / "model.json").read_text(encoding="utf-8"))
            meta["embeddings"] = str((shipped / meta["embeddings"]).resolve())
            meta["quantization"] = {"tried": "none", "kept": False}
            (target / "model.json").write_text(json.dumps(meta), encoding="utf-8")
            made[name] = target
        return made[name]

    return make

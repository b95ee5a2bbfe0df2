"""Model sessions take their thread count from the task (Spark: spark.task.cpus via OMP_NUM_THREADS)."""
from __future__ import annotations

from clinlake.pipelines.engine.assertion.model import MODEL_DIR_DEFAULT, AssertionModel
from clinlake.pipelines.engine.ner.model import NerModel
from clinlake.pipelines.engine.onnx_session import task_threads
from clinlake.pipelines.resources import package_resource


def test_task_threads_follow_omp_num_threads(monkeypatch):
    for value, expected in (("2", 2), ("1", 1), ("0", 1), ("many", 1)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert task_threads() == expected
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert task_threads() == 1


def test_both_model_kinds_open_with_the_tasks_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    ner = NerModel(package_resource("models/ncbi_disease"))
    assertion = AssertionModel(MODEL_DIR_DEFAULT)
    assert ner.session.get_session_options().intra_op_num_threads == 2
    assert assertion._session.get_session_options().intra_op_num_threads == 2
    assert AssertionModel(MODEL_DIR_DEFAULT, threads=1)._session.get_session_options().intra_op_num_threads == 1

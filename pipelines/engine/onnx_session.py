"""One way to open an ONNX model for serving: onnxruntime on the CPU, threads from the task.

Spark sets ``OMP_NUM_THREADS`` to ``spark.task.cpus`` in its Python workers, so a task given
two cores runs each model call on two threads; outside Spark the default is one thread (the
engine's figures are per core). onnxruntime is imported only when a model is opened.
"""
from __future__ import annotations

import os
from pathlib import Path


def task_threads() -> int:
    """Threads per model call: ``OMP_NUM_THREADS`` (Spark: ``spark.task.cpus``), default 1."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def open_session(path: Path, *, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``path`` on the CPU, ``threads`` intra-op threads
    (default :func:`task_threads`), one inter-op thread, warnings and errors only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or task_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

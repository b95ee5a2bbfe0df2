"""The engine's pipeline inside a Spark Python worker, and the per-task costs pyspark's worker adds.

Spark reuses a Python worker for task after task, and around every task pyspark's worker does
two things that cost in proportion to what the process holds, not to the task's notes:

* before the task, ``importlib.invalidate_caches()`` (after putting the task's ``--py-files`` on
  the path). On Python 3.10 and 3.11 that makes every ``zipimporter`` re-read its archive's whole
  directory at once, and pyspark's workers import pyspark and py4j from ``pyspark.zip`` and the
  py4j zip, with one importer per package imported from them: about 0.1 s of CPU per task here.
  CPython made the re-read lazy in 3.12 (python/cpython#103200, reported by a Spark developer);
  :func:`reread_zips_only_when_changed` gives 3.10/3.11 workers the same cost: an archive is
  re-read when its size or modification time changed, so new or rewritten ``--py-files`` are still
  seen;
* after the task, ``gc.collect()``: a full collection over every object of the process (the
  pipeline, pyarrow, pyspark, onnxruntime's bindings). :func:`worker_pipeline` freezes the objects
  alive once the pipeline is built (``gc.freeze``), so the collection walks only what tasks made.

On the sample notes in ``local[1]`` with tasks of 100 notes, the two took 8% of the worker's CPU
(``py-spy`` on the worker; ``benchmarks/spark_speed.py`` reports the job's overhead over the engine).
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import zipimport

from clinlake.pipelines.engine.pipeline import Pipeline, cached_pipeline
from clinlake.pipelines.config import PipelineConfig
from clinlake.pipelines.resources import Resolver

_LOCK = threading.Lock()
_PREPARED = False


def worker_pipeline(conf: PipelineConfig, resolver: Resolver) -> Pipeline:
    """:func:`cached_pipeline` in a Python worker; the first call also prepares the worker for the
    tasks that follow (:func:`prepare_worker`)."""
    pipeline = cached_pipeline(conf, resolver)
    prepare_worker()
    return pipeline


def prepare_worker() -> None:
    """Once per process, after the pipeline is built: zip archives re-read only when changed, and
    the objects alive now (the pipeline, the imported modules) left out of later garbage collections."""
    global _PREPARED
    with _LOCK:
        if _PREPARED:
            return
        reread_zips_only_when_changed()
        gc.collect()  # what is garbage now is not frozen with the rest
        gc.freeze()
        _PREPARED = True


def _signature(archive: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(archive)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def reread_zips_only_when_changed() -> bool:
    """On Python < 3.12, make ``zipimporter.invalidate_caches`` re-read an archive's directory only
    when the archive's size or modification time differ from the last read by that importer (a
    missing archive is handed to the original, which forgets it). Returns whether it patched
    (False on 3.12+, or when already patched)."""
    original = zipimport.zipimporter.invalidate_caches
    if sys.version_info >= (3, 12) or getattr(original, "rereads_only_when_changed", False):
        return False

    def invalidate_caches(self: zipimport.zipimporter) -> None:
        signature = _signature(self.archive)
        if signature is not None and getattr(self, "_read_signature", None) == signature:
            return
        original(self)
        self._read_signature = signature

    invalidate_caches.rereads_only_when_changed = True  # type: ignore[attr-defined]
    invalidate_caches.__doc__ = original.__doc__
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]
    return True

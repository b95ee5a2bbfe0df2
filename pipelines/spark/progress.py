"""Progress of a long run, on the driver: one log line whenever annotated batches have finished.

Executors count what they finish in two Spark accumulators (notes through the engine, of which
quarantined); a daemon thread on the driver reads them every ``interval`` seconds and logs a line
when the count moved: notes done / total, notes/s, quarantined so far, ETA. Accumulator updates
reach the driver when a task ends, so a line follows each finished partition. Counts of a task
that Spark re-runs (a lost executor) are added twice: the lines are progress, not accounting
(the run's summary and the ``runs`` table count from the staged results). Never note text.

Spark job descriptions (:func:`describe`) name each step of the run after the pipeline stage, so
the Spark UI reads as the pipeline does.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from clinlake.schemas.tables import STATUS_QUARANTINED

LOG = logging.getLogger("clinlake.progress")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    quarantined: int
    elapsed_s: float

    @property
    def notes_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.notes_per_s
        return max(0, self.total - self.done) / rate if rate > 0 else None


def format_progress(progress: Progress) -> str:
    share = 100 * progress.done / progress.total if progress.total else 100.0
    eta = "–" if progress.eta_s is None else _duration(progress.eta_s)
    return (f"progress: {progress.done:,}/{progress.total:,} notes ({share:.0f} %), "
            f"{progress.notes_per_s:,.1f} notes/s, {progress.quarantined:,} quarantined, ETA {eta}")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class BatchCounter:
    """The executors' side: counts every result batch the engine yields (picklable: it travels in
    the ``mapInArrow`` closure; the accumulators inside it are merged on the driver)."""

    def __init__(self, spark: SparkSession) -> None:
        self.notes = spark.sparkContext.accumulator(0)
        self.quarantined = spark.sparkContext.accumulator(0)

    def count(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.notes.add(batch.num_rows)
        self.quarantined.add(pc.sum(pc.equal(batch.column("status"), STATUS_QUARANTINED)).as_py() or 0)
        return batch


@contextmanager
def reporting(counter: BatchCounter, total: int, *, interval: float = 2.0) -> Iterator[None]:
    """Log progress lines while the block runs (nothing when logging of ``clinlake.progress`` is off)."""
    if not LOG.isEnabledFor(logging.INFO):
        yield
        return
    stop = threading.Event()
    started = time.monotonic()
    last = [0]

    def report() -> None:
        done = counter.notes.value
        if done != last[0]:
            last[0] = done
            LOG.info(format_progress(Progress(done, total, counter.quarantined.value, time.monotonic() - started)))

    def poll() -> None:
        while not stop.wait(interval):
            report()

    thread = threading.Thread(target=poll, name="clinlake-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        report()  # the last finished batches


def describe(spark: SparkSession, step: str, run_id: str) -> None:
    """Name the Spark jobs that follow after a step of the run (shown in the Spark UI)."""
    context = spark.sparkContext
    context.setJobGroup(f"clinlake-{run_id}", f"clinlake annotate {run_id}", interruptOnCancel=False)
    context.setJobDescription(f"clinlake {step}")


def clear_description(spark: SparkSession) -> None:
    """Jobs started after the run (by the caller, in the same thread) are no longer the run's."""
    context = spark.sparkContext
    for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
        context.setLocalProperty(key, None)

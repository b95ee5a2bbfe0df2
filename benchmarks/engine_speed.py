"""The engine's own figures for ``python -m benchmarks.run``: one process, one thread.

* :func:`engine_throughput` — the default pipeline over the workload notes, in groups the
  size of a Spark task's Arrow batch, through :meth:`Pipeline.annotate_many` (the Spark path's
  code): notes/s, words/s and seconds per stage (``text``, ``ner``, ``assertion``);
* :func:`ner_stage_speed` — one NER stage alone (sentences given, ``find_many``), words/s;
* :func:`long_note_costs` — seconds per 1k characters for notes of 1k … 1M characters;
* :func:`peak_rss` — peak RSS of a fresh Python worker process (pipeline built, then the
  annotation of a given workload), measured in a subprocess so nothing else counts.

Words are whitespace-separated words of the note text (:func:`benchmarks.corpus.words`), the
unit every system's speed is given in. Only counts and timings are returned, never text.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread, before onnxruntime starts

from benchmarks.corpus import long_note, read_jsonl, sample_texts, words  # noqa: E402

GROUP_NOTES = 64  # notes per annotate_many call: a Spark Arrow batch (SparkConfig.arrow_batch_rows)


def default_pipeline():
    """The default job config's pipeline (``conf/local.yaml``: clinical_core NER + hybrid assertion)."""
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.pipeline import Pipeline

    return Pipeline.from_config(load_config())


def engine_throughput(texts: Sequence[str], *, group: int = GROUP_NOTES) -> dict:
    """The default pipeline over ``texts`` (after one warm-up group), one thread."""
    started = time.perf_counter()
    pipeline = default_pipeline()
    build_s = time.perf_counter() - started
    pipeline.annotate_many(list(texts[:20]))  # warm-up: sessions, memo tables
    stages: dict[str, float] = {}
    entities = failed = 0
    started = time.perf_counter()
    for lo in range(0, len(texts), group):
        for result in pipeline.annotate_many(list(texts[lo:lo + group]), stage_seconds=stages):
            if isinstance(result, Exception):
                failed += 1
            else:
                entities += len(result)
    seconds = time.perf_counter() - started
    n_words = sum(map(words, texts))
    return {"notes": len(texts), "words": n_words, "chars": sum(map(len, texts)), "entities": entities,
            "failed_notes": failed, "pipeline_build_s": round(build_s, 3), "seconds": round(seconds, 3),
            "notes_per_s": round(len(texts) / seconds, 1), "words_per_s": round(n_words / seconds),
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
            "stage_share": {k: round(v / seconds, 3) for k, v in stages.items()},
            "pipeline_version": pipeline.version,
            "ner_models": pipeline.ner_stage_names,
            "assertion": type(pipeline.assertion).__name__}


def ner_stage_speed(model: str, texts: Sequence[str], *, group: int = GROUP_NOTES, repeat: int = 1) -> dict:
    """One shipped NER model's stage alone over ``texts``: sentences are split first (untimed),
    then the stage's ``find_many`` per group of notes is timed (fastest of ``repeat``)."""
    from clinlake.pipelines.engine.ner.stage import load_ner_stage
    from clinlake.pipelines.resources import package_resource

    pipeline = default_pipeline()
    stage = load_ner_stage(package_resource(f"models/{model}"))
    notes = [(t, pipeline.splitter.split(t)) for t in texts]
    stage.find_many(notes[:20])  # warm-up
    best, entities = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        entities = sum(len(found) for lo in range(0, len(notes), group)
                       for found in stage.find_many(notes[lo:lo + group]))
        best = min(best, time.perf_counter() - started)
    n_words = sum(map(words, texts))
    return {"model": stage.name, "batch_invariant": stage.model.batch_invariant, "notes": len(texts),
            "words": n_words, "entities": entities, "seconds": round(best, 3), "words_per_s": round(n_words / best)}


def long_note_costs(sizes: Sequence[int], *, min_seconds: float = 1.0) -> list[dict]:
    """Seconds per 1k characters of the default pipeline on one note of each size; small notes
    are annotated again until ``min_seconds`` have passed, so their figure is not one timer tick."""
    pipeline = default_pipeline()
    texts = sample_texts()
    pipeline.annotate(texts[0])  # warm-up
    rows = []
    for size in sizes:
        text = long_note(size, texts)
        runs, started = 0, time.perf_counter()
        while True:
            entities = len(pipeline.annotate(text))
            runs += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        per_note = elapsed / runs
        rows.append({"chars": len(text), "words": words(text), "entities": entities, "runs": runs,
                     "seconds_per_note": round(per_note, 4), "seconds_per_1k_chars": round(per_note / len(text) * 1000, 5)})
    return rows


def peak_rss(notes_jsonl: Path | None = None, *, long_chars: int | None = None) -> dict:
    """Peak RSS (MB) of a fresh worker process: after building the pipeline, and after annotating
    either the notes of ``notes_jsonl`` (one annotate_many per GROUP_NOTES) or one note of
    ``long_chars`` characters."""
    args = [sys.executable, "-m", "benchmarks.engine_speed", "--rss-worker"]
    args += ["--notes", str(notes_jsonl)] if notes_jsonl else ["--long-chars", str(long_chars)]
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_worker(notes_jsonl: Path | None, long_chars: int | None) -> dict:
    pipeline = default_pipeline()
    built = _rss_mb()
    texts = [n["text"] for n in read_jsonl(notes_jsonl)] if notes_jsonl else [long_note(long_chars)]
    for lo in range(0, len(texts), GROUP_NOTES):
        pipeline.annotate_many(texts[lo:lo + GROUP_NOTES])
    return {"notes": len(texts), "chars": sum(map(len, texts)), "rss_mb_after_build": built,
            "peak_rss_mb": _rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="internal: the peak-RSS worker of benchmarks.run")
    parser.add_argument("--rss-worker", action="store_true", required=True)
    parser.add_argument("--notes", type=Path)
    parser.add_argument("--long-chars", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(_rss_worker(args.notes, args.long_chars)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

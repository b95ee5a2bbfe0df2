"""Throughput of the annotate path: the engine alone (per stage) and the Spark job per core.

    python benchmarks/annotate_throughput.py [--scale 4] [--cores 1 2] [--out benchmarks/results/annotate_throughput.json]

The bundled MTSamples notes are repeated ``--scale`` times (ids made unique) to get a
workload. Measurements run one after the other in this process, so compare ratios from
one run rather than absolute numbers across runs on a noisy machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clinlake.pipelines.config import load_config, parse_config
from clinlake.pipelines.resources import package_resource
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.engine.sections import section_at


def sample_texts() -> list[str]:
    csv.field_size_limit(1 << 30)
    with open(package_resource("samples/mtsamples_sample.csv"), encoding="utf-8", newline="") as handle:
        return [row["transcription"] for row in csv.DictReader(handle) if row["transcription"].strip()]


def time_stages(pipeline: Pipeline, texts: list[str]) -> dict[str, float]:
    """Seconds spent per engine stage over all texts (one core, this process)."""
    totals = dict.fromkeys(("split", "sections", "ner", "assertion"), 0.0)
    tokens = 0
    for text in texts:
        t0 = time.perf_counter()
        sentences = pipeline.splitter.split(text)
        t1 = time.perf_counter()
        sections = pipeline.sections.detect(text)
        t2 = time.perf_counter()
        entities = [e for stage in pipeline.ner_stages for e in stage.find(text, sentences)]
        for e in entities:
            e.section = section_at(sections, e.start)
        t3 = time.perf_counter()
        if pipeline.assertion is not None:
            pipeline.assess(text, sentences, sections, [(e.sentence_index, e.start, e.end) for e in entities])
        t4 = time.perf_counter()
        totals["split"] += t1 - t0
        totals["sections"] += t2 - t1
        totals["ner"] += t3 - t2
        totals["assertion"] += t4 - t3
        tokens += sum(len(s.tokens) for s in sentences)
    totals["tokens"] = tokens
    return totals


def spark_run(texts: list[str], cores: int, workdir: Path, gate: str) -> dict[str, float]:
    from clinlake.pipelines.config import SparkConfig
    from clinlake.pipelines.spark.job import run_annotate
    from clinlake.pipelines.spark.session import get_spark

    notes = workdir / "notes.parquet"
    if not notes.exists():
        pq.write_table(pa.table({"note_id": [f"n{i}" for i in range(len(texts))], "text": texts}), notes)
    spark = get_spark(SparkConfig(master=f"local[{cores}]", shuffle_partitions=cores * 2,
                                  conf={"spark.ui.enabled": "false"}))
    config = parse_config({"input": {"path": str(notes), "format": "parquet"},
                           "output": {"path": str(workdir / f"lake{cores}")},
                           "quality": {"mode": gate, "data_docs": False, "report": gate != "off"}})
    start = time.perf_counter()
    summary = run_annotate(spark, config)
    seconds = time.perf_counter() - start
    spark.stop()
    return {"seconds": seconds, "notes": summary.notes_read, "entities": summary.entities}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=4, help="repeat the 318 non-empty sample notes this many times")
    parser.add_argument("--cores", type=int, nargs="*", default=[1, 2], help="local[N] Spark runs to time")
    parser.add_argument("--gate", choices=("off", "enforce"), default="off",
                        help="run the quality gate and report inside the timed Spark runs (default: off, so "
                             "the numbers are the annotate pass and the Delta commits)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/annotate_throughput.json"))
    args = parser.parse_args(argv)

    texts = sample_texts() * args.scale
    chars = sum(map(len, texts))
    started = time.perf_counter()
    pipeline = Pipeline.from_config(load_config())
    build_s = time.perf_counter() - started
    stages = time_stages(pipeline, texts)
    engine_s = sum(v for k, v in stages.items() if k != "tokens")
    results = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "workload": {"notes": len(texts), "chars": chars, "tokens": int(stages["tokens"])},
        "engine_one_core": {
            "pipeline_build_s": round(build_s, 3),
            "seconds": round(engine_s, 3),
            "notes_per_s": round(len(texts) / engine_s, 1),
            "tokens_per_s": round(stages["tokens"] / engine_s),
            "stage_share": {k: round(v / engine_s, 3) for k, v in stages.items() if k != "tokens"},
        },
        "spark": {},
        "peak_rss_mb_driver_process": None,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for cores in args.cores:
            run = spark_run(texts, cores, Path(tmp), args.gate)
            results["spark"][f"local[{cores}]"] = {
                "seconds": round(run["seconds"], 2),
                "notes_per_s": round(run["notes"] / run["seconds"], 1),
                "notes_per_s_per_core": round(run["notes"] / run["seconds"] / cores, 1),
                "entities": run["entities"],
            }
    results["peak_rss_mb_driver_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    print(f"workload: {len(texts)} notes, {chars:,} chars, {int(stages['tokens']):,} tokens")
    print(f"{'path':<22}{'seconds':>10}{'notes/s':>10}{'notes/s/core':>14}{'tokens/s':>12}")
    eng = results["engine_one_core"]
    print(f"{'engine, 1 core':<22}{eng['seconds']:>10.2f}{eng['notes_per_s']:>10.1f}{eng['notes_per_s']:>14.1f}"
          f"{eng['tokens_per_s']:>12,}")
    for name, run in results["spark"].items():
        tokens_per_s = stages["tokens"] / run["seconds"]
        print(f"{'spark ' + name:<22}{run['seconds']:>10.2f}{run['notes_per_s']:>10.1f}"
              f"{run['notes_per_s_per_core']:>14.1f}{tokens_per_s:>12,.0f}")
    print("engine stage share: " + ", ".join(f"{k} {v:.0%}" for k, v in eng["stage_share"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

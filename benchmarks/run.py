"""clinlake's benchmark suite: every figure measured in one run, side by side with its peers.

    python -m benchmarks.run [--quick] [--out benchmarks/results/run.json] [--skip spark,cluster,spacy,...]

Workloads (benchmarks/corpus.py): the 318 non-empty bundled sample notes (MTSamples),
replicated with unique ids, and long notes of 1k, 10k, 100k and 1M characters.

Sections, in the order they run (each one thread per core, one after the other):

``engine``    the default pipeline (clinical_core NER + hybrid assertion) in this process, one
              thread: notes/s, words/s, seconds per stage (benchmarks/engine_speed.py);
``ner``       NER stages alone: clinlake ``ncbi_disease`` and ``clinical_core``, words/s on the
              peers' notes (the 318 sample notes, as the spaCy peer gets them);
``long``      seconds per 1k characters on notes of 1k … 1M characters;
``memory``    peak RSS of a fresh worker process: typical notes, and the 1M-character note;
``spark``     the annotate job in ``local[1]`` and ``local[2]`` (benchmarks/spark_speed.py);
``cluster``   the same on the standalone cluster with 1 and then 2 one-core workers;
``spacy``     spaCy 3.7 NER, efficiency config, trained with spaCy's CLI on NCBI-disease train
              (benchmarks/peers/spacy_ner.py): devel F1 and words/s beside ``ncbi_disease``;
``medspacy``  medspaCy 1.3.1 ConText on the same entities as clinlake's rules, model and hybrid
              (benchmarks/peers/medspacy_context.py): entities/s and kit devel F1;
``nerdl``     Spark NLP NerDL trained in Spark on NCBI-disease train with clinlake's word vectors
              (benchmarks/peers/nerdl.py): devel F1 and words/s per core beside ``ncbi_disease``
              in the same Spark session.

``--quick`` (under 15 minutes once the peers' environments exist): fewer notes
(636 for the engine, 1,272 for Spark), spaCy trained with at most 2,000 steps, NerDL with
fewer epochs, one timed pass each. The full run: 20,352 notes (64 copies) for the engine and
every Spark mode, spaCy with its default training, three passes. Peers are set up on first
use (virtualenvs and jars under ``build/peers/``) and their trained models are cached there.

Printed: markdown tables (also written next to the JSON as ``.md``). Written: one JSON with
every figure, the machine and the date. Ratios are only ever made between figures of the same
run: on a shared machine, absolute speeds vary by tens of percent from run to run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.corpus import LONG_SIZES, typical_notes, write_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("engine", "ner", "long", "memory", "spark", "cluster", "spacy", "medspacy", "nerdl")
NOTE_COUNTS = (1_000_000, 100_000_000)  # the cost table's workloads


def _profile(quick: bool, smoke: bool) -> dict:
    if smoke:  # the test suite's tiny run: every code path, seconds of work
        return {"engine_scale": 0, "engine_notes": 12, "spark_scale": 0, "spark_notes": 12,
                "long_sizes": (1_000, 10_000), "repeat": 1, "spark_modes": ("local[1]",), "cluster_modes": ()}
    if quick:
        return {"engine_scale": 2, "spark_scale": 4, "long_sizes": LONG_SIZES, "repeat": 1,
                "spark_modes": ("local[1]", "local[2]"), "cluster_modes": ("standalone-1", "standalone-2")}
    return {"engine_scale": 64, "spark_scale": 64, "long_sizes": LONG_SIZES, "repeat": 3,
            "spark_modes": ("local[1]", "local[2]"), "cluster_modes": ("standalone-1", "standalone-2")}


def _notes(scale: int, count: int | None = None) -> list[dict[str, str]]:
    notes = typical_notes(max(scale, 1))
    return notes[:count] if count else notes


def _section(results: dict, name: str, skip: set[str], measure: Callable[[], object]) -> None:
    """Run one section into ``results[name]``; a failure is recorded, not raised."""
    if name in skip:
        results[name] = {"skipped": "--skip"}
        return
    print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        results[name] = measure()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # one section's failure must not lose the others' figures (Rust panics too)
        traceback.print_exc(file=sys.stderr)
        results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    print(f"[benchmarks] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def measure_all(*, quick: bool, smoke: bool = False, skip: set[str] = frozenset(), work: Path) -> dict:
    from benchmarks import engine_speed, spark_speed

    profile = _profile(quick, smoke)
    engine_notes = _notes(profile["engine_scale"], profile.get("engine_notes"))
    spark_notes = _notes(profile["spark_scale"], profile.get("spark_notes"))
    typical = write_jsonl(work / "typical.jsonl", _notes(1, profile.get("engine_notes")))
    texts = [n["text"] for n in engine_notes]
    results: dict = {"profile": "smoke" if smoke else "quick" if quick else "full",
                     "workload": {"engine_notes": len(engine_notes), "spark_notes": len(spark_notes),
                                  "peer_notes": profile.get("engine_notes") or 318}}
    _section(results, "engine", skip, lambda: engine_speed.engine_throughput(texts))
    peer_texts = [n["text"] for n in _notes(1, profile.get("engine_notes"))]  # the notes the peers get
    _section(results, "ner", skip, lambda: {m: engine_speed.ner_stage_speed(m, peer_texts, repeat=profile["repeat"])
                                            for m in ("ncbi_disease", "clinical_core")})
    _section(results, "long", skip, lambda: engine_speed.long_note_costs(profile["long_sizes"]))
    _section(results, "memory", skip, lambda: {
        "typical_notes": engine_speed.peak_rss(typical),
        "long_note": engine_speed.peak_rss(long_chars=max(profile["long_sizes"]))})
    _section(results, "spark", skip, lambda: spark_speed.spark_runs(spark_notes, profile["spark_modes"], work))
    if "spark" not in skip and "engine" not in skip:
        # The engine again, right after the local Spark modes: this VM's speed drifts over minutes, and the
        # Spark overhead ratios divide by the mean of the two engine runs so a drift does not land on them.
        _section(results, "engine_after_spark", skip, lambda: engine_speed.engine_throughput(texts))
    if profile["cluster_modes"]:
        _section(results, "cluster", skip,
                 lambda: spark_speed.spark_runs(spark_notes, profile["cluster_modes"], work))
    if not smoke:
        from benchmarks.peers import medspacy_context, spacy_ner

        _section(results, "spacy", skip, lambda: spacy_ner.measure(typical, work=work / "spacy", quick=quick,
                                                                   repeat=profile["repeat"]))
        _section(results, "medspacy", skip, lambda: medspacy_context.measure(
            typical, work=work / "medspacy", quick=quick, repeat=profile["repeat"]))
        _section(results, "nerdl", skip, lambda: _nerdl(typical, work / "nerdl", quick))
    results["ratios"] = ratios(results)
    results["cost"] = cost_table(results)
    return results


def _nerdl(notes: Path, work: Path, quick: bool) -> dict:
    try:
        from benchmarks.peers import nerdl
    except ImportError as exc:
        return {"error": f"benchmarks/peers/nerdl.py is not importable: {exc}"}
    return nerdl.measure(notes, work=work, quick=quick)


def _get(results: dict, *path: str):
    value = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ratio(a, b, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def ratios(results: dict) -> dict:
    """The issue's ratios, each from figures of this run (None where a figure is missing)."""
    engine_s = _get(results, "engine", "seconds")
    engine_notes = _get(results, "engine", "notes")
    spark = results.get("spark", {}) if isinstance(results.get("spark"), dict) else {}
    cluster = results.get("cluster", {}) if isinstance(results.get("cluster"), dict) else {}

    def per_note(mode: dict | None, *, marginal: bool = False) -> float | None:
        if not mode or "seconds" not in mode or not mode.get("notes"):
            return None
        return (mode["seconds"] - (mode["fixed_s"] if marginal else 0)) / mode["notes"]

    engine_per_note = engine_s / engine_notes if engine_s and engine_notes else None
    after_s = _get(results, "engine_after_spark", "seconds")
    # Spark ratios: the engine's time per note measured before and after the Spark modes, averaged.
    spark_engine_per_note = ((engine_s + after_s) / 2 / engine_notes if engine_per_note and after_s
                             else engine_per_note)
    spacy_wps = _get(results, "spacy", "speed", "words_per_s")
    medspacy = _get(results, "medspacy", "entities_per_s") or {}
    return {
        "spark_overhead_local1_over_engine": _ratio(per_note(spark.get("local[1]")), spark_engine_per_note),
        "spark_overhead_local1_over_engine_fixed_cost_apart": _ratio(
            per_note(spark.get("local[1]"), marginal=True), spark_engine_per_note),
        "engine_drift_after_spark_over_before": _ratio(after_s, engine_s, 3),
        "scaling_local2_over_local1": _ratio(per_note(spark.get("local[1]")), per_note(spark.get("local[2]"))),
        "scaling_cluster2_over_cluster1": _ratio(per_note(cluster.get("standalone-1")),
                                                 per_note(cluster.get("standalone-2"))),
        "pipeline_words_per_s_over_spacy_ner": _ratio(_get(results, "engine", "words_per_s"), spacy_wps),
        "ncbi_ner_stage_over_spacy_ner": _ratio(_get(results, "ner", "ncbi_disease", "words_per_s"), spacy_wps),
        "hybrid_assertion_over_medspacy": _ratio(medspacy.get("clinlake_hybrid"), medspacy.get("medspacy")),
        "rules_assertion_over_medspacy": _ratio(medspacy.get("clinlake_rules"), medspacy.get("medspacy")),
        "ncbi_ner_stage_over_nerdl_same_spark": _get(results, "nerdl", "speed", "ratio"),
        "long_note_cost_per_char_largest_over_1k": _long_growth(results.get("long")),
    }


def _cpu_model() -> str | None:
    """The CPU's model name (Linux), for the results' machine line."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _long_growth(rows) -> float | None:
    if not isinstance(rows, list) or len(rows) < 2:
        return None
    return _ratio(rows[-1]["seconds_per_1k_chars"], rows[0]["seconds_per_1k_chars"])


def cost_table(results: dict) -> list[dict]:
    """Core-hours for NOTE_COUNTS notes of the sample's mean size, from the per-core rates measured."""
    rates = {"engine, 1 core": _get(results, "engine", "notes_per_s")}
    for group in ("spark", "cluster"):
        for mode, run in (results.get(group) or {}).items():
            if isinstance(run, dict) and run.get("notes_per_s_per_core"):
                rates[f"Spark {mode}"] = run["notes_per_s_per_core"]
    rows = []
    for name, per_core in rates.items():
        if per_core:
            rows.append({"path": name, "notes_per_s_per_core": per_core,
                         **{f"core_hours_{n:,}_notes": round(n / per_core / 3600, 1) for n in NOTE_COUNTS}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Sections: " + ", ".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="smaller workloads, quick peer training (< 15 min)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run of the engine and local[1] sections "
                        "(what the test suite runs; figures mean nothing)")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/run[-quick].json)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) in --skip: {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    out = args.out or REPO / "benchmarks" / "results" / ("run.json" if profile == "full" else f"run-{profile}.json")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clinlake-bench-") as tmp:
        work = args.work or Path(tmp)
        results = measure_all(quick=args.quick, smoke=args.smoke, skip=skip, work=work)
    from benchmarks.report import markdown

    results["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "platform": platform.platform(), "processor": platform.processor() or None,
                          "cpu_model": _cpu_model()}
    results["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["command"] = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = markdown(results)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

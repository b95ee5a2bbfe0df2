"""medspaCy's ConText beside clinlake's assertion engines, on the same entities of the same notes.

    python -m benchmarks.peers.medspacy_context --notes NOTES.jsonl [--quick] [--repeat 3]

clinlake's default pipeline (``Pipeline.from_config(load_config())`` with its assertion stage
off) finds the entities, sentences and sections of every workload note once; then, on exactly
those entities:

* clinlake: a pipeline per engine (``rules`` = ConText rules, ``model``, ``hybrid``), built as
  ``pipelines/evaluation/assertion_brat.py`` builds its (the default config's ``pipeline``
  section, no NER stages, the engine replaced), times
  :meth:`~clinlake.pipelines.engine.pipeline.Pipeline.assess` over each note's
  (sentence, start, end) targets;
* medspaCy (``medspacy.load()``: its tokenizer and ConText with its default rules, in the peers'
  venv, :mod:`benchmarks.peers.venv`): one ``Doc`` per note, tokenized by medspaCy, sentence
  starts set from clinlake's sentences (the first token at or after each sentence start),
  ``doc.ents`` from the entities' character spans (``char_span(alignment_mode="expand")``,
  label ``PROBLEM``; an entity whose expanded span overlaps an earlier one is dropped and
  counted); only the ConText component is timed (``context(doc)``), the docs being rebuilt
  untimed before every pass (ConText accumulates modifiers on a doc it has seen).

Entities per second: entities of the workload over the fastest of ``repeat`` passes, one
thread, after a warm-up note, loading excluded. Both systems' outputs are mapped to the NegEx
kit's three attributes (as benchmarks/assertion_peers.py maps them) and their counts and the
per-entity agreement with medspaCy are reported. Beside the speeds: the kit devel scores of
every system, computed by benchmarks/assertion_peers.py's own functions. Only counts, scores
and timings are printed, never note text.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from benchmarks.clinical_peers import ONE_THREAD
from benchmarks.peers import peer_parser, print_result
from benchmarks.report import table
from benchmarks.peers.venv import PEERS_BUILD, ensure_venv

ENGINES = ("rules", "model", "hybrid")
ATTRIBUTES = ("negation", "temporality", "experiencer")

# Runs inside the peers' venv. argv: notes JSON (text, sentences, entities), repeat.
_RUNNER = r'''
import bisect, json, sys, time
from loguru import logger
logger.remove()  # PyRuSH logs its sentence decisions, with tokens, at DEBUG: no text out
import medspacy

notes = json.load(open(sys.argv[1], encoding="utf-8"))
repeat = int(sys.argv[2])
nlp = medspacy.load()
context = nlp.get_pipe("medspacy_context")

def build(note):
    """The note's Doc with clinlake's sentences and entities; kept[i]: entity i's position in doc.ents or None."""
    doc = nlp.make_doc(note["text"])
    starts = [t.idx for t in doc]
    for token in doc:
        token.is_sent_start = token.i == 0
    for start, _ in note["sentences"]:
        i = bisect.bisect_left(starts, start)
        if i < len(doc):
            doc[i].is_sent_start = True
    ents, kept, last_end = [], [], -1
    for start, end in note["entities"]:
        span = doc.char_span(start, end, label="PROBLEM", alignment_mode="expand")
        if span is None or span.start < last_end:
            kept.append(None)
            continue
        kept.append(len(ents))
        ents.append(span)
        last_end = span.end
    doc.ents = ents
    return doc, kept

def labels(e):
    temporality = "Not particular" if e._.is_hypothetical else "Historical" if e._.is_historical else "Recent"
    return {"negation": "Negated" if e._.is_negated else "Affirmed", "temporality": temporality,
            "experiencer": "Other" if e._.is_family else "Patient", "uncertain": bool(e._.is_uncertain)}

warm = next((n for n in notes if n["entities"]), None)
if warm is not None:
    context(build(warm)[0])  # warm-up
seconds, docs = float("inf"), []
for _ in range(repeat):
    docs = [build(note) for note in notes]  # untimed: ConText would add modifiers to a doc seen before
    elapsed = 0.0
    for doc, _ in docs:
        started = time.perf_counter()
        context(doc)
        elapsed += time.perf_counter() - started
    seconds = min(seconds, elapsed)
out = [[None if k is None else labels(doc.ents[k]) for k in kept] for doc, kept in docs]
print(json.dumps({"seconds": seconds, "labels": out, "version": medspacy.__version__}))
'''


def find_entities(notes: list[dict]) -> list[dict]:
    """Sentences, sections and entity targets of every note, by clinlake's default pipeline."""
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.pipeline import Pipeline
    from clinlake.pipelines.resources import Resolver

    job = load_config()
    finder = Pipeline.build(replace(job.pipeline, assertion=replace(job.pipeline.assertion, engine="none")),
                            Resolver(job.base_dir))
    found = []
    for note in notes:
        text = note["text"]
        entities = finder.annotate(text)
        found.append({"text": text, "sentences": finder.splitter.split(text), "sections": finder.sections.detect(text),
                      "targets": [(e.sentence_index, e.start, e.end) for e in entities]})
    return found


def engine_pipeline(engine: str):
    """The default config's pipeline with no NER stages and ``engine`` as its assertion engine."""
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.pipeline import Pipeline
    from clinlake.pipelines.resources import Resolver

    job = load_config()
    conf = replace(job.pipeline, ner=[], dictionary=[], assertion=replace(job.pipeline.assertion, engine=engine))
    return Pipeline.build(conf, Resolver(job.base_dir))


def time_clinlake(engine: str, found: list[dict], repeat: int) -> tuple[float, list[dict]]:
    """Fastest of ``repeat`` passes of ``Pipeline.assess`` over every note's targets; kit labels per entity."""
    from clinlake.pipelines.evaluation.assertion_kit import to_kit_labels

    pipeline = engine_pipeline(engine)
    warm = next((f for f in found if f["targets"]), None)
    if warm is not None:
        pipeline.assess(warm["text"], warm["sentences"], warm["sections"], warm["targets"])
    seconds, results = float("inf"), []
    for _ in range(repeat):
        results = []
        started = time.perf_counter()
        for f in found:
            if f["targets"]:
                results += pipeline.assess(f["text"], f["sentences"], f["sections"], f["targets"])
        seconds = min(seconds, time.perf_counter() - started)
    return seconds, [to_kit_labels(r) for r in results]


def time_medspacy(python: Path, found: list[dict], work: Path, repeat: int) -> tuple[float, list, str]:
    path = work / "medspacy_notes.json"  # note text: written for the peer's process, removed after
    path.write_text(json.dumps([{"text": f["text"], "sentences": [(s.start, s.end) for s in f["sentences"]],
                                 "entities": [(s, e) for _, s, e in f["targets"]]} for f in found]), encoding="utf-8")
    try:
        done = subprocess.run([str(python), "-c", _RUNNER, str(path), str(repeat)], check=True, capture_output=True,
                              text=True, env={**os.environ, **ONE_THREAD})
    finally:
        path.unlink(missing_ok=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["seconds"], [labels for note in out["labels"] for labels in note], out["version"]


def label_counts(labels: list[dict | None]) -> dict:
    placed = [x for x in labels if x is not None]
    counts = {a: dict(Counter(x[a] for x in placed)) for a in ATTRIBUTES}
    if placed and "uncertain" in placed[0]:
        counts["uncertain"] = sum(x["uncertain"] for x in placed)
    return counts


def agreement(ours: list[dict], theirs: list[dict | None]) -> dict:
    """Share of the entities medspaCy placed on which both give the same kit label, per attribute."""
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=True) if b is not None]
    return {a: round(sum(x[a] == y[a] for x, y in pairs) / len(pairs), 4) if pairs else None for a in ATTRIBUTES}


def kit_devel(python: Path, repeat: int) -> dict:
    """Every system on the NegEx kit devel split, with benchmarks/assertion_peers.py's functions."""
    from benchmarks.assertion_peers import DEFAULT_DATA, run_medspacy, run_ours, summary
    from clinlake.pipelines.corpora.negex_kit import read_kit
    from clinlake.pipelines.evaluation.assertion_kit import score_labels

    rows = read_kit(DEFAULT_DATA)
    labels_by_id, seconds, _ = run_medspacy(python, DEFAULT_DATA, repeat)
    results = {"medspacy": summary(score_labels(rows, [labels_by_id.get(row["id"]) for row in rows]), seconds)}
    for engine in ENGINES:
        labels, seconds = run_ours(engine, rows, repeat)
        results[f"clinlake_{engine}"] = summary(score_labels(rows, labels), seconds)
    return {"data": DEFAULT_DATA.name, "rows": len(rows), **results}


def measure(notes_jsonl: Path, *, work: Path, quick: bool = False, repeat: int = 3) -> dict:
    """medspaCy ConText and clinlake's three assertion engines on the entities clinlake's default
    pipeline finds in ``notes_jsonl``: entities per second, label counts, agreement, kit devel scores.
    ``quick``: one timed pass."""
    os.environ.update(ONE_THREAD)  # before onnxruntime makes its sessions
    from benchmarks.corpus import read_jsonl

    if quick:
        repeat = 1
    python, install = ensure_venv()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    notes = read_jsonl(Path(notes_jsonl))
    started = time.perf_counter()
    found = find_entities(notes)
    find_seconds = time.perf_counter() - started
    n = sum(len(f["targets"]) for f in found)
    seconds, labels = {}, {}
    seconds["medspacy"], labels["medspacy"], version = time_medspacy(python, found, work, repeat)
    for engine in ENGINES:
        seconds[f"clinlake_{engine}"], labels[f"clinlake_{engine}"] = time_clinlake(engine, found, repeat)
    placed = sum(x is not None for x in labels["medspacy"])
    return {
        "peer": f"medspaCy {version} ConText (default rules)",
        "versions": {**install["versions"], "python": install["python"]},
        "install_seconds": install["install_seconds"],
        "notes": len(notes), "entities": n, "medspacy_entities_placed": placed,
        "entities_found_by": "clinlake default pipeline (pipeline.ner + dictionary, heading filter), "
                             f"{find_seconds:.1f} s untimed",
        "entities_per_s": {k: round(n / s) if s else None for k, s in seconds.items()},
        "seconds": {k: round(s, 4) for k, s in seconds.items()},
        "repeat": repeat, "threads": 1,
        "labels": {k: label_counts(v) for k, v in labels.items()},
        "agreement_with_medspacy": {k: agreement(v, labels["medspacy"]) for k, v in labels.items() if k != "medspacy"},
        "kit_devel": kit_devel(python, repeat),
    }


SYSTEMS = ("medspacy", "clinlake_rules", "clinlake_model", "clinlake_hybrid")


def format_table(result: dict) -> str:
    kit = result["kit_devel"]
    rows = []
    for system in SYSTEMS:
        k = kit[system]
        name = result["peer"] if system == "medspacy" else system.replace("_", " ")
        rows.append((name, f"{result['entities_per_s'][system]:,}", f"{k['negation_accuracy']:.3f}",
                     f"{k['negated_f1']:.3f}", f"{k['historical_f1']:.3f}", f"{k['not_particular_f1']:.3f}",
                     f"{k['other_f1']:.3f}", f"{k['sentences_per_second']:,.0f}"))
    header = ("system", "entities/s", "kit neg acc", "Negated F1", "Historical F1", "Not-part. F1", "Other F1",
              "kit sent/s")
    return (table(header, rows) + f"\n\n{result['entities']:,} entities in {result['notes']} notes "
            f"(medspaCy placed {result['medspacy_entities_placed']:,}); fastest of {result['repeat']}, 1 thread; "
            f"kit: {kit['data']}, {kit['rows']} rows")


def main(argv=None) -> int:
    parser = peer_parser(__doc__.split("\n\n")[0], work=PEERS_BUILD / "work" / "medspacy_context",
                         quick_help="one timed pass")
    args = parser.parse_args(argv)
    result = measure(args.notes, work=args.work, quick=args.quick, repeat=args.repeat)
    print_result(result, format_table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

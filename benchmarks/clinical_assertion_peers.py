"""Assertion on clinical documents: medspaCy's ConText vs clinlake's rules, model and hybrid on MACCROBAT.

    .venv/bin/python benchmarks/clinical_assertion_peers.py [--data DIR] [--peers-venv DIR] [--no-peers]

Gold (``pipelines/evaluation/assertion_brat.py``): every event trigger entity of a finding-like type
(Sign_symptom, Disease_disorder, Diagnostic_procedure, Therapeutic_procedure, Medication,
Clinical_event) in MACCROBAT ``devel`` (default); ``POLARITY NEG`` → absent, ``UNCERTAIN`` →
possible, no polarity or ``POS`` → present; ``MAYBE_NEG`` / ``MAYBE_POS`` are excluded from
scoring (counted in the output). A discontinuous trigger counts with its full extent.

Every system sees the same documents (the exact ``.txt``, CRLF kept) and the same gold spans, and
does its own sentence splitting: clinlake its TextSplitter + SectionDetector with engine ``assess``
per sentence (as the pipeline runs); medspaCy its default pipeline's PyRuSH sentence splitter,
then ConText with its default rules. For medspaCy, each gold span becomes
``doc.char_span(start, end, alignment_mode="expand")`` in a span group that ConText reads
(``input_span_type="group"``): unlike ``doc.ents``, a span group may hold overlapping entities,
so no gold entity has to be dropped. Scores are over the entities *every* system assessed (ours
cannot assess a trigger that crosses one of our sentence ends; medspaCy one whose span does not
align to tokens); the number left out is printed.

Label mapping. Ours: absent → absent, possible → possible, anything else → present. medspaCy's
flags are independent; ``is_negated`` → absent, else ``is_uncertain`` → possible, else present
(row "medspaCy ... ConText"). Its default rules put some hedges ("risk of", "should", "if") under
HYPOTHETICAL, so a second row also maps ``is_hypothetical`` → possible; whichever of the two has the
higher possible F1 is the one to quote (the fairest reading for medspaCy). Absent is the same in both.

Entity labels. Each trigger's type maps to a clinlake label (``conf/label_maps/
maccrobat_clinical_core.yaml``: ``Diagnostic_procedure`` → ``TEST``, …), and clinlake's rows apply the
default job's ``pipeline.assertion.allowed_by_label`` as the pipeline does (a ``TEST`` is never absent:
a test "negative for X" was done). That rule is a plain post-filter any user of medspaCy could add, so
each medspaCy row is also given with it ("+ allowed_by_label"), the like-for-like comparison.

Speed: gold entities per second over the whole per-document work (our splitting, sections and
assertion; medspaCy's tokenizing, sentence splitting, span building and ConText), single process,
fastest of ``--repeat`` passes; model loading excluded. Writes
``benchmarks/results/clinical_assertion_peers.json``. Only scores and counts are printed, never
text; ``--errors`` adds error counts by category and the deciding cue word of our rules (short cue
words only).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from assertion_peers import ensure_peers_venv, peer_parser  # noqa: E402
from bench_common import score_table, write_results  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "clinical" / "MACCROBAT" / "devel"
RESULTS = REPO / "benchmarks" / "results" / "clinical_assertion_peers.json"

# Runs inside the medspaCy venv: argv[1] a JSON list of {"txt": path, "items": [[key, start, end], ...]},
# argv[2] the number of timed passes. Prints one JSON object: flags by item key (None: span not aligned).
_MEDSPACY_RUNNER = r'''
import json, sys, time
from loguru import logger
logger.remove()  # PyRuSH logs every sentence decision, with its tokens, at DEBUG on stderr: no text out, no slowdown
import medspacy

docs = json.load(open(sys.argv[1], encoding="utf-8"))
for d in docs:
    with open(d["txt"], encoding="utf-8", newline="") as f:
        d["text"] = f.read()
from medspacy.context import ConText

nlp = medspacy.load()
splitter = nlp.get_pipe("medspacy_pyrush")
context = ConText(nlp, name="gold_context", input_span_type="group", span_group_name="gold")  # default rules
FLAGS = ("is_negated", "is_uncertain", "is_hypothetical", "is_historical", "is_family")

def run(d):
    doc = splitter(nlp.make_doc(d["text"]))  # tokenizer + PyRuSH sentences
    spans, keys, out = [], [], {}
    for key, start, end in d["items"]:
        span = doc.char_span(start, end, label="GOLD", alignment_mode="expand")
        if span is None:
            out[key] = None
        else:
            spans.append(span)
            keys.append(key)
    doc.spans["gold"] = spans
    doc = context(doc)
    for key, span in zip(keys, doc.spans["gold"]):
        out[key] = {flag: bool(getattr(span._, flag)) for flag in FLAGS}
    return out

run(docs[0])  # warm-up
seconds = float("inf")
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    flags = {}
    for d in docs:
        flags.update(run(d))
    seconds = min(seconds, time.perf_counter() - started)
print(json.dumps({"flags": flags, "seconds": seconds, "version": medspacy.__version__}))
'''

MEDSPACY_MAPPINGS = {
    "ConText": ("is_uncertain",),
    "ConText, hypothetical→possible": ("is_uncertain", "is_hypothetical"),
}


def medspacy_label(flags: dict | None, possible_flags: tuple[str, ...]) -> str | None:
    """is_negated → absent, else any of ``possible_flags`` → possible, else present (None: not run)."""
    if flags is None:
        return None
    if flags["is_negated"]:
        return "absent"
    return "possible" if any(flags[f] for f in possible_flags) else "present"


def run_medspacy(python: Path, data: Path, split, repeat: int) -> tuple[dict, float, str]:
    docs = [{"txt": str(data / f"{d.name}.txt"),
             "items": [[i.key, i.start, i.end] for i in d.items]} for d in split.docs]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump(docs, handle)
    try:
        done = subprocess.run([str(python), "-c", _MEDSPACY_RUNNER, handle.name, str(repeat)],
                              capture_output=True, text=True)
    finally:
        os.unlink(handle.name)
    if done.returncode:  # the last lines of a traceback: file names and exception, no note text
        raise RuntimeError(f"medspaCy runner failed (exit {done.returncode}); run it by hand to see why")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["flags"], out["seconds"], out["version"]


def run_ours(name: str, split, repeat: int, label_map: dict[str, str], config=None) -> tuple[dict, float, object]:
    from clinlake.pipelines.evaluation.assertion_brat import DocumentAssessor, predict_split

    assessor = DocumentAssessor.from_config(name, config, label_map=label_map)
    if split.docs:
        assessor.predict(split.docs[0])  # warm-up
    best, labels = float("inf"), {}
    for _ in range(repeat):
        labels, seconds = predict_split(assessor, split)
        best = min(best, seconds)
    return labels, best, assessor


def summary(scores, n_entities: int, seconds: float) -> dict:
    absent, possible = scores.per_label["absent"], scores.per_label["possible"]
    return {
        "scored": scores.scored, "accuracy": round(scores.accuracy, 4),
        "absent_precision": round(absent.precision, 4), "absent_recall": round(absent.recall, 4),
        "absent_f1": round(absent.f1, 4), "possible_precision": round(possible.precision, 4),
        "possible_recall": round(possible.recall, 4), "possible_f1": round(possible.f1, 4),
        "per_label": {k: v.to_dict() for k, v in scores.per_label.items()}, "confusion": scores.confusion,
        "entities_per_second": round(n_entities / seconds, 1) if seconds else None,
    }


COLUMNS = [("absent_precision", "abs P"), ("absent_recall", "abs R"), ("absent_f1", "abs F1"),
           ("possible_precision", "pos P"), ("possible_recall", "pos R"), ("possible_f1", "pos F1"),
           ("accuracy", "acc"), ("entities_per_second", "ent/s")]


def format_table(results: dict[str, dict]) -> str:
    return score_table(results, COLUMNS, rate_key="entities_per_second", cell=8)


def with_allowed_labels(predicted: dict, items, label_map: dict[str, str]) -> dict:
    """Three-way predictions after the default job's ``allowed_by_label`` (a label a trigger's
    clinlake label may not take becomes present), for a peer that has no such setting."""
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.assertion.by_label import AllowedByLabel, FALLBACK

    allowed = AllowedByLabel.from_config(load_config().pipeline.assertion.allowed_by_label)
    types = {i.key: i.type for i in items}
    return {key: label if label is None or allowed.allows(label_map.get(types[key]), label) else FALLBACK
            for key, label in predicted.items()}


def error_counts(split, labels: dict, assessor) -> dict:
    """Our rules' mistakes by (gold, predicted) and by deciding cue word: counts only, no text."""
    from clinlake.pipelines.evaluation.assertion_brat import sentence_of, three_way

    pipeline = assessor.pipeline
    by_pair: Counter = Counter()
    fp_cues: Counter = Counter()
    fn_types: Counter = Counter()
    for doc in split.docs:
        sentences = pipeline.splitter.split(doc.text)
        sections = pipeline.sections.detect(doc.text)
        for item in doc.items:
            label = labels.get(item.key)
            if label is None or three_way(label) == item.label:
                continue
            by_pair[f"{item.label}->{three_way(label)}"] += 1
            index = sentence_of(sentences, item.start, item.end)
            result = pipeline.assess(doc.text, sentences, sections, [(index, item.start, item.end)],
                                     labels=[(assessor.label_map or {}).get(item.type)])[0]
            if three_way(label) != "present":
                fp_cues[f"{three_way(label)}: {(result.cue or '-').lower()}"] += 1
            else:
                fn_types[f"{item.label} missed ({label}); {item.type}"] += 1
    return {"by_gold_predicted": dict(by_pair.most_common()), "false_cues": dict(fp_cues.most_common()),
            "missed": dict(fn_types.most_common())}


def main(argv=None) -> int:
    parser = peer_parser(__doc__.split("\n\n")[0], DEFAULT_DATA, RESULTS)
    parser.add_argument("--errors", action="store_true", help="print our rules' error counts (cue words only)")
    args = parser.parse_args(argv)

    from clinlake.pipelines.corpora.label_maps import load_label_map
    from clinlake.pipelines.evaluation.assertion_brat import DEFAULT_LABEL_MAP, read_split, score_pairs, three_way

    split = read_split(args.data)
    label_map = load_label_map(DEFAULT_LABEL_MAP)
    items = split.items
    predictions: dict[str, dict] = {}
    speeds: dict[str, float] = {}
    meta: dict[str, str] = {}
    assessors, raw = {}, {}
    if not args.no_peers:
        flags, seconds, version = run_medspacy(ensure_peers_venv(args.peers_venv), args.data, split,
                                             args.repeat)
        meta["medspacy"] = version
        for suffix, possible_flags in MEDSPACY_MAPPINGS.items():
            name = f"medspaCy {version} {suffix}"
            predictions[name] = {k: medspacy_label(flags.get(k), possible_flags) for k in (i.key for i in items)}
            speeds[name] = seconds
            predictions[f"{name} + allowed_by_label"] = with_allowed_labels(predictions[name], items, label_map)
            speeds[f"{name} + allowed_by_label"] = seconds
    for engine in args.engines.split(","):
        labels, seconds, assessors[engine] = run_ours(engine, split, args.repeat, label_map)
        raw[engine] = labels
        predictions[f"clinlake {engine}"] = {k: (three_way(v) if v else None) for k, v in labels.items()}
        speeds[f"clinlake {engine}"] = seconds
    common = [i for i in items if all(p.get(i.key) is not None for p in predictions.values())]
    results = {name: summary(score_pairs([(i.label, p[i.key]) for i in common]), len(items), speeds[name])
               for name, p in predictions.items()}
    gold = Counter(i.label for i in common)
    maybe = dict(split.excluded_maybe)
    print(f"{args.data}: {len(split.docs)} documents, {len(items)} gold trigger entities "
          f"(absent {gold['absent']}, possible {gold['possible']}, present {gold['present']} scored); "
          f"MAYBE_* excluded: {sum(maybe.values())} {maybe}; left out (not assessed by every system): "
          f"{len(items) - len(common)}")
    print(format_table(results))
    report = {
        "data": str(args.data.relative_to(REPO.parent)) if args.data.is_relative_to(REPO.parent) else str(args.data),
        "documents": len(split.docs), "gold_entities": len(items), "scored": len(common),
        "gold_scored": dict(gold), "excluded_maybe": maybe, "polarity": dict(split.polarity),
        "maybe_rule": "MAYBE_NEG / MAYBE_POS events are excluded from scoring",
        "label_mapping": {"gold": "NEG->absent, UNCERTAIN->possible, none/POS->present",
                          "clinlake": "absent->absent, possible->possible, other labels->present; trigger "
                                      "labels from conf/label_maps/maccrobat_clinical_core.yaml, allowed_by_label "
                                      "of conf/local.yaml applied (also to the medspaCy rows '+ allowed_by_label')",
                          "medspacy": "is_negated->absent, else is_uncertain (row 2: or is_hypothetical)->possible, "
                                      "else present"},
        "results": results, "versions": meta, "repeat": args.repeat,
    }
    if args.errors and "rules" in assessors:
        report["rules_errors"] = error_counts(split, raw["rules"], assessors["rules"])
        print(json.dumps(report["rules_errors"], indent=2))
    write_results(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

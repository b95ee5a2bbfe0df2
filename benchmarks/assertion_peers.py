"""Assertion status side by side: medspaCy's ConText vs clinlake's rules, model and hybrid.

    .venv/bin/python benchmarks/assertion_peers.py [--data KIT.tsv] [--peers-venv DIR] [--no-peers]

Every engine sees the same NegEx-kit rows (default: the devel split), the target phrase
located the same way (``locate_phrase``: case- and whitespace-insensitive), and is scored
with the same code (``pipelines/evaluation/assertion_kit.py``). Prints one table (per-attribute
accuracy, Negated / Historical / Not-particular F1, sentences per second) and writes
``benchmarks/results/assertion_peers.json``.

medspaCy runs in its own virtual environment so it never touches the project's: the
script creates ``--peers-venv`` (default ``~/.cache/clinlake/medspacy-venv``) with
``python3 -m venv DIR && DIR/bin/pip install medspacy==1.3.1`` when it is missing. It uses
medspaCy's default pipeline (``medspacy.load()``: PyRuSH sentences, target matcher,
ConText with its default rules). The target phrase is set as the only entity
(``doc.ents``, label ``PROBLEM``) after sentence splitting, then ConText runs. Its flags
map to the kit's vocabulary like ours: ``is_negated`` → Negated; ``is_family`` → Other;
``is_hypothetical`` → Not particular, else ``is_historical`` → Historical, else Recent
(``is_uncertain`` has no kit column). medspaCy's flags are independent, so a negated
hypothetical mention scores as both.

Speed: rows per second over the whole per-row work (building the doc or locating the
phrase and tokenizing, then assertion), single process, after a warm-up row, fastest of
``--repeat`` passes (the machine may be shared); model loading is excluded. Only scores and counts are printed, never text.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_common import score_table, write_results  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "assertion" / "negex_kit_devel.tsv"
DEFAULT_VENV = Path(os.environ.get("CLINLAKE_PEERS_VENV", Path.home() / ".cache" / "clinlake" / "medspacy-venv"))
MEDSPACY_VERSION = "1.3.1"
RESULTS = REPO / "benchmarks" / "results" / "assertion_peers.json"

# Runs inside the medspaCy venv: reads the kit, prints one JSON object (labels by row id).
_MEDSPACY_RUNNER = r'''
import csv, json, re, sys, time
from loguru import logger
logger.remove()  # PyRuSH logs every sentence decision, with its tokens, at DEBUG on stderr: no text out
import medspacy
from spacy.tokens import Span

def locate(phrase, sentence):
    words = phrase.split()
    if not words:
        return None
    m = re.search(r"\s+".join(map(re.escape, words)), sentence, flags=re.IGNORECASE)
    return (m.start(), m.end()) if m else None

with open(sys.argv[1], encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
nlp = medspacy.load()
splitter = nlp.get_pipe("medspacy_pyrush")
context = nlp.get_pipe("medspacy_context")

def run(row):
    text = row["sentence"]
    span = locate(row["phrase"], text)
    if span is None:
        return None
    doc = splitter(nlp.make_doc(text))
    ent = doc.char_span(span[0], span[1], label="PROBLEM", alignment_mode="expand")
    if ent is None:
        return None
    doc.ents = [ent]
    doc = context(doc)
    e = doc.ents[0]
    if e._.is_hypothetical:
        temporality = "Not particular"
    elif e._.is_historical:
        temporality = "Historical"
    else:
        temporality = "Recent"
    return {"negation": "Negated" if e._.is_negated else "Affirmed", "temporality": temporality,
            "experiencer": "Other" if e._.is_family else "Patient"}

run(rows[0])  # warm-up
seconds = float("inf")
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    labels = {row["id"]: run(row) for row in rows}
    seconds = min(seconds, time.perf_counter() - started)
print(json.dumps({"labels": labels, "seconds": seconds, "version": medspacy.__version__}))
'''


def ensure_peers_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with medspacy=={MEDSPACY_VERSION} (one time)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"medspacy=={MEDSPACY_VERSION}"], check=True)
    return python


def run_medspacy(python: Path, data: Path, repeat: int) -> tuple[dict, float, str]:
    done = subprocess.run([str(python), "-c", _MEDSPACY_RUNNER, str(data), str(repeat)], check=True,
                          capture_output=True, text=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["labels"], out["seconds"], out["version"]


def run_ours(name: str, rows, repeat: int):
    from clinlake.pipelines.evaluation.assertion_kit import build_engine, to_kit_labels, whole_sentence
    from clinlake.pipelines.corpora.negex_kit import locate_phrase

    engine = build_engine(name)

    def one(row):
        text = row["sentence"]
        span = locate_phrase(row["phrase"], text)
        if span is None:
            return None
        return to_kit_labels(engine.assess(text, whole_sentence(text), [span])[0])

    one(rows[0])  # warm-up
    seconds = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        labels = [one(row) for row in rows]
        seconds = min(seconds, time.perf_counter() - started)
    return labels, seconds


def summary(evaluation, seconds: float) -> dict:
    return {
        "rows": evaluation.rows,
        "negation_accuracy": round(evaluation.accuracy["negation"], 4),
        "temporality_accuracy": round(evaluation.accuracy["temporality"], 4),
        "experiencer_accuracy": round(evaluation.accuracy["experiencer"], 4),
        "negated_f1": round(evaluation.f1("negation", "Negated"), 4),
        "historical_f1": round(evaluation.f1("temporality", "Historical"), 4),
        "not_particular_f1": round(evaluation.f1("temporality", "Not particular"), 4),
        "other_f1": round(evaluation.f1("experiencer", "Other"), 4),
        "sentences_per_second": round(evaluation.rows / seconds, 1) if seconds else None,
    }


COLUMNS = [("negation_accuracy", "neg acc"), ("temporality_accuracy", "temp acc"), ("experiencer_accuracy", "exp acc"),
           ("negated_f1", "Negated F1"), ("historical_f1", "Historical F1"), ("not_particular_f1", "Not-part. F1"),
           ("sentences_per_second", "sent/s")]


def format_table(results: dict[str, dict]) -> str:
    return score_table(results, COLUMNS, rate_key="sentences_per_second")


def peer_parser(description: str, data: Path, out: Path) -> argparse.ArgumentParser:
    """The options of the assertion benchmarks (this one and clinical_assertion_peers.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-peers", action="store_true", help="skip medspaCy")
    parser.add_argument("--engines", default="rules,model,hybrid")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per engine; the fastest counts")
    return parser


def main(argv=None) -> int:
    args = peer_parser(__doc__.split("\n\n")[0], DEFAULT_DATA, RESULTS).parse_args(argv)

    from clinlake.pipelines.corpora.negex_kit import read_kit
    from clinlake.pipelines.evaluation.assertion_kit import score_labels

    rows = read_kit(args.data)
    results: dict[str, dict] = {}
    meta: dict[str, str] = {}
    if not args.no_peers:
        labels_by_id, seconds, version = run_medspacy(ensure_peers_venv(args.peers_venv), args.data,
                                                    args.repeat)
        labels = [labels_by_id.get(row["id"]) for row in rows]
        results[f"medspaCy {version} ConText"] = summary(score_labels(rows, labels), seconds)
        meta["medspacy"] = version
    for name in args.engines.split(","):
        labels, seconds = run_ours(name, rows, args.repeat)
        results[f"clinlake {name}"] = summary(score_labels(rows, labels), seconds)
    print(f"{args.data.name}: {len(rows)} rows")
    print(format_table(results))
    write_results(args.out, {"data": args.data.name, "rows": len(rows), "results": results, "versions": meta,
                             "repeat": args.repeat})
    return 0


if __name__ == "__main__":
    sys.exit(main())

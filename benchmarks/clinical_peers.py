"""Clinical NER side by side: clinlake's clinical models vs a spaCy NER pipeline trained on the same documents.

    .venv/bin/python benchmarks/clinical_peers.py [--models clinical_core maccrobat] [--peers-venv DIR]
                                                  [--spacy-max-steps N] [--repeat 3]

For each shipped clinical model (``models/<name>/model.json`` with ``kind: brat``) the script
builds, from the same label maps and the same BRAT train documents, a spaCy training set
(``pipelines.corpora.clinical``: mapped, contiguous, non-overlapping gold entities — exactly what
our model was trained on — set on spaCy's own tokens with ``char_span(alignment_mode="expand")``)
and the devel documents of each corpus as the spaCy dev set (both systems select on devel).
A shipped model refit on train+devel has seen devel, so its train-only selection model
(``build/ner/<name>.selection/``, kept by ``clinlake train clinical --refit``) is the one scored,
trained on the same train documents as spaCy.

spaCy: the config of ``spacy init config --lang en --pipeline ner --optimize efficiency``
(spaCy's CPU recipe: hash-embedding CNN tok2vec + transition-based NER), trained with
``spacy train`` unchanged (spaCy's defaults: at most 20000 steps, early stop after 1600 steps
without a better devel score; ``--spacy-max-steps`` lowers the cap for a quick run); the best
model on devel is kept (``model-best``); spaCy's training log is kept in ``--work``. It runs in its own virtual environment (spaCy 3.7, the one medspaCy
1.3.1 installs; see benchmarks/assertion_peers.py), never touching the project's.

Scoring: both systems' entities are scored by the same code (``pipelines.evaluation.brat``) against
every mapped gold entity of the devel ``.ann`` files, strict and lenient micro F1 (discontinuous
gold spans included, scored as documented there). clinlake runs the full engine (its sentence
splitter, tokenizer, the model, chunk merge, heading filter); spaCy runs ``nlp.pipe`` on the
raw text.

Speed: whitespace-separated words per second (the same unit for both systems; each counts
tokens differently) over all devel documents, one thread (``OMP_NUM_THREADS=1`` etc.), after a
warm-up document, fastest of ``--repeat`` passes, model loading excluded; clinlake without the
assertion stage (spaCy has none). Prints one table, writes ``benchmarks/results/clinical_peers.json``.
Only scores and counts are printed, never text.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from assertion_peers import DEFAULT_VENV, ensure_peers_venv  # noqa: E402
from bench_common import write_results  # noqa: E402
from clinlake.pipelines.engine.ner.metadata import read_meta  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "clinical_peers.json"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Runs inside the peers venv. argv: mode ("prepare" | "predict"), then paths.
_SPACY_RUNNER = r'''
import json, sys, time
import spacy
from spacy.tokens import DocBin
from spacy.util import filter_spans

mode = sys.argv[1]
if mode == "prepare":
    data = json.load(open(sys.argv[2], encoding="utf-8"))
    nlp = spacy.blank("en")
    for split, out in (("train", sys.argv[3]), ("dev", sys.argv[4])):
        bin_ = DocBin()
        for doc_data in data[split]:
            doc = nlp.make_doc(doc_data["text"])
            spans = [doc.char_span(s, e, label=l, alignment_mode="expand") for s, e, l in doc_data["entities"]]
            doc.ents = filter_spans([s for s in spans if s is not None])
            bin_.add(doc)
        bin_.to_disk(out)
    print(json.dumps({"spacy": spacy.__version__}))
else:
    nlp = spacy.load(sys.argv[2])
    docs = json.load(open(sys.argv[3], encoding="utf-8"))
    repeat = int(sys.argv[4])
    texts = [d["text"] for d in docs]
    list(nlp.pipe(texts[:1]))  # warm-up
    seconds, predicted = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts, batch_size=16)]
        seconds = min(seconds, time.perf_counter() - started)
        predicted = out
    print(json.dumps({"predicted": predicted, "seconds": seconds}))
'''


def model_meta(name: str) -> dict:
    meta = read_meta(REPO / "models" / name)
    if meta.get("kind") != "brat":
        raise SystemExit(f"{name} is not a clinical (BRAT-trained) model")
    return meta


def scored_model_dir(name: str, meta: dict) -> Path:
    """The model whose devel scores are held out: the shipped one, or, when it was refit on
    train+devel (it has seen devel), its train-only selection model kept by training."""
    from clinlake.pipelines.training.ner.artifacts import selection_model_dir

    shipped = REPO / "models" / name
    if not meta["training"].get("selection"):
        return shipped
    selection = selection_model_dir(shipped)
    if not (selection / "model.onnx").exists():
        raise SystemExit(f"{name} was refit on train+devel, so its devel scores mean nothing; its train-only "
                         f"selection model ({selection}) is missing: retrain with --refit to rebuild it")
    return selection


def documents(corpus: str, split: str, label_map: dict) -> list[dict]:
    """Text and the training view of the gold (as our trainer sees it) of every document."""
    from clinlake.pipelines.corpora.brat import read_text_exact
    from clinlake.pipelines.corpora.clinical import Stats, mapped_spans, non_overlapping
    from clinlake.pipelines.training.clinical import corpus_dir

    docs = []
    for txt in sorted(corpus_dir(corpus, split).glob("*.txt")):
        stats = Stats()
        spans = non_overlapping(mapped_spans(txt.with_suffix(".ann"), label_map, stats), stats)
        docs.append({"name": txt.stem, "text": read_text_exact(txt), "entities": [list(s) for s in spans]})
    return docs


def score(corpus: str, label_map: dict, docs: list[dict], predicted: list[list]) -> dict:
    from clinlake.pipelines.evaluation.brat import Counts, PredEntity, gold_entities
    from clinlake.pipelines.training.clinical import corpus_dir

    counts = Counts()
    targets = set(label_map.values())
    for doc, entities in zip(docs, predicted):
        gold, _ = gold_entities(corpus_dir(corpus, "devel") / f"{doc['name']}.ann", label_map)
        counts.add(gold, [PredEntity(label, start, end) for start, end, label in entities if label in targets])
    return counts.report()


def run_ours(model_dir: Path, docs: list[dict], repeat: int) -> tuple[list[list], float]:
    os.environ.update(ONE_THREAD)
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.pipeline import Pipeline

    config = load_config(overrides={"pipeline.ner": [{"model": str(model_dir)}], "pipeline.dictionary": [],
                                    "pipeline.assertion.engine": "none"})
    pipeline = Pipeline.from_config(config)
    pipeline.annotate(docs[0]["text"])  # warm-up (sessions are already loaded)
    seconds, predicted = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        predicted = [[(e.start, e.end, e.label) for e in pipeline.annotate(d["text"])] for d in docs]
        seconds = min(seconds, time.perf_counter() - started)
    return predicted, seconds


def train_spacy(python: Path, name: str, train_docs: list[dict], dev_docs: list[dict], work: Path,
                max_steps: int | None) -> tuple[Path, float, str]:
    env = {**os.environ, **ONE_THREAD}
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data.json"
    data.write_text(json.dumps({"train": train_docs, "dev": dev_docs}), encoding="utf-8")
    done = subprocess.run([str(python), "-c", _SPACY_RUNNER, "prepare", str(data), str(work / "train.spacy"),
                           str(work / "dev.spacy")], check=True, capture_output=True, text=True, env=env)
    version = json.loads(done.stdout.strip().splitlines()[-1])["spacy"]
    config = work / "config.cfg"
    subprocess.run([str(python), "-m", "spacy", "init", "config", str(config), "--lang", "en", "--pipeline", "ner",
                    "--optimize", "efficiency", "--force"], check=True, capture_output=True, env=env)
    started = time.time()
    print(f"training spaCy NER for {name} ...", file=sys.stderr)
    steps = ["--training.max_steps", str(max_steps)] if max_steps else []
    with open(work / "spacy_train.log", "w", encoding="utf-8") as log:
        subprocess.run([str(python), "-m", "spacy", "train", str(config), "--output", str(work / "out"),
                        "--paths.train", str(work / "train.spacy"), "--paths.dev", str(work / "dev.spacy"),
                        "--training.seed", "13", *steps], check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return work / "out" / "model-best", time.time() - started, version


def predict_spacy(python: Path, model: Path, docs: list[dict], work: Path, repeat: int) -> tuple[list[list], float]:
    path = work / "predict.json"
    path.write_text(json.dumps([{"text": d["text"]} for d in docs]), encoding="utf-8")
    done = subprocess.run([str(python), "-c", _SPACY_RUNNER, "predict", str(model), str(path), str(repeat)],
                          check=True, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["predicted"], out["seconds"]


def words(docs: list[dict]) -> int:
    return sum(len(d["text"].split()) for d in docs)


def compare(name: str, python: Path, max_steps: int | None, repeat: int, work: Path, reuse: bool = False) -> dict:
    from clinlake.pipelines.corpora.label_maps import load_label_map

    meta = model_meta(name)
    ours_dir = scored_model_dir(name, meta)
    ours_meta = read_meta(ours_dir)
    maps = {corpus: load_label_map(REPO / path) for corpus, path in meta["label_maps"].items()}
    train_docs = [d for corpus, m in maps.items() for d in documents(corpus, "train", m)]
    dev = {corpus: documents(corpus, "devel", m) for corpus, m in maps.items()}
    best = work / name / "out" / "model-best"
    if reuse and best.is_dir():  # a model trained by an earlier run of this script in the same --work
        model_dir = best
        train_seconds, version = json.loads((work / name / "trained.json").read_text(encoding="utf-8"))
    else:
        model_dir, train_seconds, version = train_spacy(python, name, train_docs, [d for v in dev.values() for d in v],
                                                        work / name, max_steps)
        (work / name / "trained.json").write_text(json.dumps([train_seconds, version]), encoding="utf-8")
    result = {"model": f"{ours_meta['name']}@{ours_meta['version']}",
              "scored": "train-only selection model (the shipped model is refit on train+devel)"
              if meta["training"].get("selection") else "shipped model", "spacy": version, "spacy_train_seconds": round(train_seconds),
              "spacy_max_steps": max_steps or "spaCy default (20000, patience 1600)", "train_documents": len(train_docs), "corpora": {}}
    for corpus, docs in dev.items():
        ours, our_seconds = run_ours(ours_dir, docs, repeat)
        theirs, their_seconds = predict_spacy(python, model_dir, docs, work / name, repeat)
        n_words = words(docs)
        result["corpora"][corpus] = {
            "documents": len(docs), "words": n_words,
            "clinlake": {**_summary(score(corpus, maps[corpus], docs, ours)), "words_per_s": round(n_words / our_seconds)},
            "spacy": {**_summary(score(corpus, maps[corpus], docs, theirs)), "words_per_s": round(n_words / their_seconds)},
        }
    return result


def _summary(report: dict) -> dict:
    return {"strict_f1": round(report["strict"]["micro"]["f1"], 4), "lenient_f1": round(report["lenient"]["micro"]["f1"], 4),
            "strict_p": round(report["strict"]["micro"]["precision"], 4),
            "strict_r": round(report["strict"]["micro"]["recall"], 4)}


def format_table(results: dict) -> str:
    header = (f"{'model':<15}{'devel':<11}{'system':<10}{'strict P':>9}{'strict R':>9}{'strict F1':>10}"
              f"{'lenient F1':>11}{'words/s':>9}")
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        for corpus, row in result["corpora"].items():
            for system in ("clinlake", "spacy"):
                r = row[system]
                lines.append(f"{name:<15}{corpus:<11}{system:<10}{100 * r['strict_p']:>9.2f}{100 * r['strict_r']:>9.2f}"
                             f"{100 * r['strict_f1']:>10.2f}{100 * r['lenient_f1']:>11.2f}{r['words_per_s']:>9,}")
            gap = 100 * (row["clinlake"]["strict_f1"] - row["spacy"]["strict_f1"])
            lines.append(f"{'':<15}{'':<11}{'gap':<10}{'':>18}{gap:>+10.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["clinical_core", "maccrobat"])
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--spacy-max-steps", type=int, help="cap spaCy's training steps (default: spaCy's own, 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per system; the fastest counts")
    parser.add_argument("--work", type=Path, help="where spaCy's data and models go (default: a temporary directory)")
    parser.add_argument("--reuse-spacy", action="store_true", help="use the spaCy models already trained in --work "
                        "(re-measure without retraining)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    python = ensure_peers_venv(args.peers_venv)
    with tempfile.TemporaryDirectory(prefix="clinical_peers_") as tmp:
        work = args.work or Path(tmp)
        results = {name: compare(name, python, args.spacy_max_steps, args.repeat, work, args.reuse_spacy)
                   for name in args.models}
    print(format_table(results))
    write_results(args.out, {"results": results, "repeat": args.repeat,
                             "speed_unit": "whitespace-separated words per second, 1 thread"})
    return 0


if __name__ == "__main__":
    sys.exit(main())

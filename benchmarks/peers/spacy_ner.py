"""spaCy NER trained with spaCy's CLI on NCBI-disease, beside clinlake's ``ncbi_disease``.

    python -m benchmarks.peers.spacy_ner --notes NOTES.jsonl [--quick] [--max-steps N] [--repeat 3]

Training (the recipe of ``benchmarks/clinical_peers.py``, on a CoNLL corpus instead of BRAT):
the config of ``spacy init config --lang en --pipeline ner --optimize efficiency`` (spaCy's CPU
recipe: hash-embedding CNN tok2vec + transition-based NER) unchanged, trained by ``spacy train``
with spaCy's defaults (at most 20000 steps, early stop after 1600 steps without a better devel
score, model-best kept) on ``NCBI-disease/train.tsv``, ``devel.tsv`` as the dev set; ``--quick``
caps the steps (``max_steps`` :data:`QUICK_MAX_STEPS`). The ``.spacy`` files are made from the
corpus tokens (``Doc(words=..., spaces=...)``, gold IOB2 entities after the same IOB repair as
clinlake's scorer). The trained model, spaCy's training log and the training time are cached in
``build/peers/spacy-ncbi/<max_steps>/``: a re-run with the same cap skips training.

Devel F1: strict entity F1 on ``devel.tsv`` by clinlake's scorer
(:func:`clinlake.pipelines.evaluation.ner.score_tags`), spaCy tagging the gold tokens (a ``Doc``
of the corpus words through the trained pipeline), beside ``clinlake evaluate ner --model
ncbi_disease`` token mode (with its abbreviation propagation, and the model alone). Both systems
chose their best checkpoint on devel.

Speed: whitespace-separated words per second over the workload's raw note texts, ``nlp.pipe``
(batch 16, as clinical_peers.py), one thread, after a warm-up note, fastest of ``repeat`` passes,
model loading excluded. spaCy runs in the peers' own venv (:mod:`benchmarks.peers.venv`). Only
counts, scores and timings are printed, never note text.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.clinical_peers import ONE_THREAD
from benchmarks.peers import peer_parser, print_result
from benchmarks.report import table
from benchmarks.peers.venv import PEERS_BUILD, ensure_venv

NCBI = Path(os.environ.get("CLINLAKE_NCBI_DIR", "/work/shared/data/ner/NCBI-disease"))
TRAINED = PEERS_BUILD / "spacy-ncbi"
QUICK_MAX_STEPS = 2000
CLINLAKE_MODEL = "ncbi_disease"

# Runs inside the peers' venv. argv: mode ("prepare" | "devel" | "speed"), then paths.
_RUNNER = r'''
import json, sys, time
import spacy
from spacy.tokens import Doc, DocBin

mode = sys.argv[1]
if mode == "prepare":  # data.json (tokens, repaired IOB2 tags per sentence) -> train.spacy, dev.spacy
    data = json.load(open(sys.argv[2], encoding="utf-8"))
    vocab = spacy.blank("en").vocab
    for split, out in (("train", sys.argv[3]), ("dev", sys.argv[4])):
        bin_ = DocBin()
        for words, tags in data[split]:
            bin_.add(Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False], ents=tags))
        bin_.to_disk(out)
    print(json.dumps({"spacy": spacy.__version__}))
elif mode == "devel":  # the model's IOB2 tags of the gold tokens of each sentence
    nlp = spacy.load(sys.argv[2])
    sentences = json.load(open(sys.argv[3], encoding="utf-8"))
    docs = (Doc(nlp.vocab, words=w, spaces=[True] * (len(w) - 1) + [False]) for w in sentences)
    tags = [[t.ent_iob_ + "-" + t.ent_type_ if t.ent_iob_ in ("B", "I") else "O" for t in doc]
            for doc in nlp.pipe(docs, batch_size=64)]
    print(json.dumps({"tags": tags}))
else:  # speed on raw note texts (JSON lines), fastest of repeat passes
    nlp = spacy.load(sys.argv[2])
    with open(sys.argv[3], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    repeat = int(sys.argv[4])
    list(nlp.pipe(texts[:1]))  # warm-up
    seconds, entities = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        entities = sum(len(doc.ents) for doc in nlp.pipe(texts, batch_size=16))
        seconds = min(seconds, time.perf_counter() - started)
    print(json.dumps({"seconds": seconds, "entities": entities, "spacy": spacy.__version__}))
'''


def _run(python: Path, *args: str) -> dict:
    done = subprocess.run([str(python), "-c", _RUNNER, *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD})
    return json.loads(done.stdout.strip().splitlines()[-1])


def _repaired(path: Path) -> list[list[list[str]]]:
    """(tokens, IOB2 tags) of every sentence, tags repaired as clinlake's scorer reads them
    (``O I-X`` starts an entity), so spaCy gets valid IOB and the same gold entities."""
    from clinlake.pipelines.corpora.conll import read_conll
    from clinlake.pipelines.evaluation.ner import iob_tags, spans

    return [[tokens, iob_tags(len(tokens), spans(tags))] for tokens, tags in read_conll(path)]


def training_log_steps(log: Path) -> dict:
    """Steps and best devel score from spaCy's training table (rows ``E  #  LOSS TOK2VEC  LOSS NER
    ENTS_F  ENTS_P  ENTS_R  SCORE``, one per evaluation): the last row's step count is how far
    training ran; the best row is the highest SCORE (printed to 2 decimals), ties broken by ENTS_F."""
    rows = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0].isdigit() and fields[1].isdigit():
            try:
                rows.append((int(fields[0]), int(fields[1]), float(fields[-1]), float(fields[-4])))
            except ValueError:
                continue
    if not rows:
        return {"steps": None, "epochs": None, "best_step": None, "best_dev_score": None, "best_dev_ents_f": None}
    best = max(rows, key=lambda r: (r[2], r[3]))
    return {"steps": rows[-1][1], "epochs": rows[-1][0], "best_step": best[1], "best_dev_score": best[2],
            "best_dev_ents_f": best[3]}


def train(python: Path, max_steps: int | None, *, root: Path = TRAINED, corpus: Path = NCBI) -> dict:
    """spaCy's efficiency NER trained on ``corpus``/train.tsv (dev: devel.tsv); cached by
    ``max_steps`` under ``root``. Returns the training record (model path, steps, seconds)."""
    work = root / (f"max_steps_{max_steps}" if max_steps else "default")
    record_path = work / "trained.json"
    if record_path.exists() and (work / "out" / "model-best").is_dir():  # trained before: steps re-read from its log
        record = json.loads(record_path.read_text(encoding="utf-8"))
        return {**record, **training_log_steps(Path(record["log"]))}
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ONE_THREAD}
    data = work / "data.json"
    data.write_text(json.dumps({"train": _repaired(corpus / "train.tsv"), "dev": _repaired(corpus / "devel.tsv")}),
                    encoding="utf-8")
    version = _run(python, "prepare", str(data), str(work / "train.spacy"), str(work / "dev.spacy"))["spacy"]
    data.unlink()
    config = work / "config.cfg"
    subprocess.run([str(python), "-m", "spacy", "init", "config", str(config), "--lang", "en", "--pipeline", "ner",
                    "--optimize", "efficiency", "--force"], check=True, capture_output=True, env=env)
    steps = ["--training.max_steps", str(max_steps)] if max_steps else []
    print(f"training spaCy NER on {corpus.name} train (max_steps {max_steps or 'spaCy default'}) ...", file=sys.stderr)
    started = time.time()
    log = work / "spacy_train.log"
    with open(log, "w", encoding="utf-8") as handle:
        subprocess.run([str(python), "-m", "spacy", "train", str(config), "--output", str(work / "out"),
                        "--paths.train", str(work / "train.spacy"), "--paths.dev", str(work / "dev.spacy"), *steps],
                       check=True, stdout=handle, stderr=subprocess.STDOUT, env=env)
    record = {"model": str(work / "out" / "model-best"), "spacy": version, "max_steps": max_steps,
              "seconds": round(time.time() - started, 1), **training_log_steps(log), "log": str(log),
              "config": "spacy init config --lang en --pipeline ner --optimize efficiency (unchanged)"
                        + (f"; --training.max_steps {max_steps}" if max_steps else "; spaCy's training defaults"),
              "threads": 1, "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def spacy_devel_f1(python: Path, model: Path, work: Path, corpus: Path = NCBI) -> dict:
    """Strict entity scores (clinlake's scorer) of the spaCy model tagging the devel tokens."""
    from clinlake.pipelines.corpora.conll import read_conll
    from clinlake.pipelines.evaluation.ner import score_tags

    sentences = read_conll(corpus / "devel.tsv")
    path = work / "devel_tokens.json"
    path.write_text(json.dumps([tokens for tokens, _ in sentences]), encoding="utf-8")
    predicted = _run(python, "devel", str(model), str(path))["tags"]
    return score_tags([tags for _, tags in sentences], predicted)["overall"]


def clinlake_devel_f1(corpus: Path = NCBI, model: str = CLINLAKE_MODEL) -> dict:
    """``clinlake evaluate ner --model ncbi_disease --conll devel.tsv --json`` token mode."""
    cli = Path(sys.executable).with_name("clinlake")
    done = subprocess.run([str(cli), "evaluate", "ner", "--model", model, "--conll", str(corpus / "devel.tsv"),
                           "--no-raw-text", "--json"], check=True, capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD})
    report = json.loads(done.stdout)
    alone = report.get("model_alone", {}).get("tokens", {}).get("overall")
    return {"tokens": report["tokens"]["overall"], "model_alone": alone,
            "abbreviation_reach": report.get("abbreviation_reach")}


def speed(python: Path, model: Path, notes_jsonl: Path, repeat: int) -> dict:
    from benchmarks.corpus import read_jsonl, words

    notes = read_jsonl(notes_jsonl)
    n_words = sum(words(n["text"]) for n in notes)
    out = _run(python, "speed", str(model), str(notes_jsonl), str(repeat))
    return {"notes": len(notes), "words": n_words, "seconds": round(out["seconds"], 3),
            "words_per_s": round(n_words / out["seconds"]), "entities": out["entities"], "repeat": repeat,
            "batch_size": 16, "threads": 1}


def measure(notes_jsonl: Path, *, work: Path, quick: bool = False, repeat: int = 3,
            max_steps: int | None = None) -> dict:
    """Train (or reuse) the spaCy peer, score it on NCBI-disease devel beside clinlake's
    ``ncbi_disease`` and time it on ``notes_jsonl``. ``quick``: ``max_steps`` capped at
    :data:`QUICK_MAX_STEPS` (unless given) and one timed pass."""
    python, install = ensure_venv()
    if quick:
        max_steps, repeat = max_steps or QUICK_MAX_STEPS, 1
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    trained = train(python, max_steps)
    model = Path(trained["model"])
    spacy_scores = spacy_devel_f1(python, model, work)
    ours = clinlake_devel_f1()
    return {
        "peer": f"spaCy {trained['spacy']} NER (efficiency config) trained on NCBI-disease train",
        "versions": {**install["versions"], "python": install["python"]},
        "install_seconds": install["install_seconds"],
        "training": {k: trained[k] for k in ("max_steps", "steps", "epochs", "best_step", "best_dev_score",
                                             "best_dev_ents_f", "seconds", "config", "log", "threads")},
        "devel_f1": {"spacy": spacy_scores["f1"], "clinlake_ncbi_disease": ours["tokens"]["f1"],
                     "clinlake_ncbi_disease_model_alone": ours["model_alone"]["f1"] if ours["model_alone"] else None},
        "devel": {"spacy": spacy_scores, "clinlake_ncbi_disease": ours,
                  "scoring": "strict entity P/R/F1 (clinlake.pipelines.evaluation.ner.score_tags) on devel.tsv gold "
                             "tokens; clinlake token mode with abbreviation propagation (model_alone: without)"},
        "speed": speed(python, model, Path(notes_jsonl), repeat),
    }


def format_table(result: dict) -> str:
    d, s, t = result["devel"], result["speed"], result["training"]
    rows = [(result["peer"], f"{100 * d['spacy']['precision']:.2f}", f"{100 * d['spacy']['recall']:.2f}",
             f"{100 * d['spacy']['f1']:.2f}", f"{s['words_per_s']:,}"),
            ("clinlake ncbi_disease (token mode)", f"{100 * d['clinlake_ncbi_disease']['tokens']['precision']:.2f}",
             f"{100 * d['clinlake_ncbi_disease']['tokens']['recall']:.2f}",
             f"{100 * d['clinlake_ncbi_disease']['tokens']['f1']:.2f}", "")]
    alone = d["clinlake_ncbi_disease"]["model_alone"]
    if alone:
        rows.append(("clinlake ncbi_disease, model alone", f"{100 * alone['precision']:.2f}",
                     f"{100 * alone['recall']:.2f}", f"{100 * alone['f1']:.2f}", ""))
    header = ("system", "devel P", "devel R", "devel F1", "words/s")
    return (table(header, rows)
            + f"\n\nspaCy training: {t['steps']} steps ({t['epochs']} epochs, best at step {t['best_step']}), "
            f"{t['seconds']:.0f} s, 1 thread; speed: {s['words']:,} words in {s['notes']} notes, "
            f"fastest of {s['repeat']} in {s['seconds']:.2f} s")


def main(argv=None) -> int:
    parser = peer_parser(__doc__.split("\n\n")[0], work=PEERS_BUILD / "work" / "spacy_ner",
                         quick_help=f"max_steps {QUICK_MAX_STEPS}, one timed pass")
    parser.add_argument("--max-steps", type=int, help="cap spaCy's training steps (default: spaCy's own)")
    args = parser.parse_args(argv)
    result = measure(args.notes, work=args.work, quick=args.quick, repeat=args.repeat, max_steps=args.max_steps)
    print_result(result, format_table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training of the clinical NER taggers on document-level BRAT corpora: ``clinlake train clinical``.

Same network, trainer, ONNX export and serving as the biomedical models
(:mod:`pipelines.training.ner`); the data differ: raw ``.txt`` documents go through clinlake's
own sentence splitter and tokenizer (:mod:`pipelines.corpora.clinical`), gold types are mapped
by label maps (data files under ``conf/label_maps/``), and the model is scored the way the
entity table reports entities — character offsets on raw text, strict and lenient, with
``clinlake evaluate brat`` (:mod:`pipelines.evaluation.brat`) on each corpus's devel split.

Epoch selection: the mean over the corpora of the strict entity F1 on their devel
sentences. The test splits are not in ../shared and were never used.

    clinlake train clinical --name clinical_core \\
        --brat MACCROBAT=conf/label_maps/maccrobat_clinical_core.yaml \\
        --brat Chia=conf/label_maps/chia_clinical_core.yaml --max-minutes 40
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

from clinlake.pipelines.corpora.clinical import BRAT_CORPORA, Stats, load_brat_split
from clinlake.pipelines.evaluation.brat import evaluate as evaluate_brat
from clinlake.pipelines.corpora.label_maps import load_label_map
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.training.ner.loop import (MODELS, REPO, SHARED, _size_mb, add_training_arguments, artifacts_dir, devel_estimate, network_options, quantize_dynamic_copy, restore_full_precision, tokens_per_second, train_and_ship, training_flags, write_meta_and_card)

log = logging.getLogger("clinlake.train_clinical")
ABBREVIATIONS = REPO / "conf" / "abbreviations.yaml"

LICENCES = {
    "MACCROBAT": "CC BY 4.0 (Caufield et al. 2019, MACCROBAT2018, figshare 10.6084/m9.figshare.9764942)",
    "Chia": "CC BY 4.0 (Kury et al. 2020, Chia: a large annotated corpus of clinical trial eligibility criteria)",
    "PHEE": "MIT (Sun et al. 2022, PHEE: a dataset for pharmacovigilance event extraction from text; "
            "sentences of drug-safety case reports, one document each)",
}


def corpus_dir(corpus: str, split: str) -> Path:
    """The BRAT directory of a corpus split (PHEE: converted under build/brat/PHEE/ on first use)."""
    if corpus == "PHEE":
        from clinlake.pipelines.corpora.phee import ensure_brat

        return ensure_brat(SHARED / BRAT_CORPORA[corpus], REPO / "build" / "brat" / "PHEE", split)
    return SHARED / BRAT_CORPORA[corpus] / split


def load_data(label_maps: dict[str, dict[str, str]], splitter: TextSplitter):
    """(train examples of all corpora, devel examples per corpus, stats per corpus and split)."""
    train_set, dev_sets, stats = [], {}, {}
    for corpus, label_map in label_maps.items():
        for split in ("train", "devel"):
            split_stats = Stats()
            examples = load_brat_split(corpus_dir(corpus, split), label_map, splitter, split_stats)
            stats[f"{corpus}/{split}"] = split_stats.as_dict()
            if split == "train":
                train_set += examples
            else:
                dev_sets[corpus] = examples
    return train_set, dev_sets, stats


def train(name: str, label_map_paths: dict[str, Path], *, max_minutes: float, epochs: int, out_dir: Path,
          lr: float = 2e-3, threads: int = 1, patience: int = 5, network: dict | None = None,
          refit: bool = False) -> dict:
    """Train on the corpora's train documents, keep the epoch with the best mean strict devel
    F1, export, score on the devel documents and write the card. ``refit``: as
    :func:`pipelines.training.ner.train` — the train-only model is finished under
    build/ner/<name>.selection/ (its devel scores are the card's held-out estimate), then a
    fresh network trains on train+devel documents for the selected number of epochs and ships."""
    splitter = TextSplitter.from_file(ABBREVIATIONS)
    label_maps = {corpus: load_label_map(path) for corpus, path in label_map_paths.items()}
    train_set, dev_sets, stats = load_data(label_maps, splitter)
    log.info("training sentences %d; data %s", len(train_set), json.dumps(stats))
    options = dict(max_minutes=max_minutes, lr=lr, threads=threads, patience=patience, network=network)
    extra = {"kind": "brat", "label_maps": {c: _repo_relative(p) for c, p in label_map_paths.items()}}
    sample = [ex for dev in dev_sets.values() for ex in dev[:32]]
    return train_and_ship(train_set, dev_sets, name=name, corpus="+".join(label_maps), out_dir=out_dir, epochs=epochs,
                          options=options, refit=refit, finish_model=finish, sample=sample, extra=extra,
                          info_extra={"data": stats})


def _repo_relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# ----------------------------------------------------------------------------- evaluation, card

def evaluate_documents(model_dir: Path, meta: dict) -> dict:
    """``clinlake evaluate brat`` of this model as the only NER stage (no dictionary) on each
    corpus's devel, with abbreviation propagation (the default) and, under ``model_alone``, without."""
    from clinlake.pipelines.engine.ner.model import evict_model
    from clinlake.pipelines.evaluation.brat import brat_pipeline

    evict_model(model_dir)  # the file may have changed (int8)
    reports: dict = {}
    for propagate in (False, True):
        pipeline = brat_pipeline(str(model_dir.resolve()), propagate_abbreviations=propagate)
        for corpus, map_path in meta["label_maps"].items():
            label_map = load_label_map(REPO / map_path)
            out = artifacts_dir(model_dir) / "predictions" / corpus
            report = evaluate_brat(corpus_dir(corpus, "devel"), out, label_map=label_map, pipeline=pipeline)
            if propagate:
                reports[corpus] = {**{k: report[k] for k in ("documents", "gold_discontinuous", "strict", "lenient")},
                                   "model_alone": reports[corpus]}
            else:
                reports[corpus] = {k: {"micro": report[k]["micro"]} for k in ("strict", "lenient")}
    return reports


def _mean_strict(reports: dict) -> float:
    return sum(r["strict"]["micro"]["f1"] for r in reports.values()) / len(reports)


def finish(model_dir: Path, *, quantize: bool = True, tolerance: float = 0.002) -> dict:
    """Document-level devel scores, int8 when the mean strict F1 holds, speed, card."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from clinlake.pipelines.engine.ner.model import NerModel

    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    fp32 = artifacts_dir(model_dir) / "model.fp32.onnx"
    kept = restore_full_precision(model_dir, meta)
    reports = evaluate_documents(model_dir, meta)
    quant = kept or {"tried": "none", "kept": False}
    if quantize and not kept:
        fp32.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "model.onnx", fp32)
        quantize_dynamic_copy(fp32, model_dir / "model.onnx")
        int8_reports = evaluate_documents(model_dir, meta)
        before, after = _mean_strict(reports), _mean_strict(int8_reports)
        quant = {"tried": "int8 dynamic", "dev_f1_fp32": round(before, 4), "dev_f1_int8": round(after, 4),
                 "kept": after >= before - tolerance}
        if quant["kept"]:
            reports = int8_reports
        else:
            shutil.copyfile(fp32, model_dir / "model.onnx")
    splitter = TextSplitter.from_file(ABBREVIATIONS)
    sample = [words for corpus in meta["label_maps"]
              for words, _ in load_brat_split(corpus_dir(corpus, "devel"), {}, splitter)[:300]]
    meta["dev"] = reports
    meta["quantization"] = quant
    meta["speed_pieces_per_s_1_thread"] = round(tokens_per_second(NerModel(model_dir), sample))
    return write_meta_and_card(model_dir, meta, model_card)


def _rows(result: dict) -> list[str]:
    rows = [("**micro**", result["micro"]), *sorted(result["per_type"].items())]
    return [f"| {name} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {100 * r['f1']:.2f} | {r['gold']} |"
            for name, r in rows]


def _type_map_rows(meta: dict) -> list[str]:
    rows = []
    for corpus, path in meta["label_maps"].items():
        mapping = load_label_map(REPO / path)
        for label in sorted(set(mapping.values())):
            sources = sorted(k for k, v in mapping.items() if v == label)
            rows.append(f"| {label} | {corpus} | {', '.join(sources)} |")
    return rows


def _devel_location(corpus: str) -> str:
    return "build/brat/PHEE/devel" if corpus == "PHEE" else f"../shared/data/{BRAT_CORPORA[corpus]}/devel"


def _leading_comments(path: Path) -> list[str]:
    """The comment block at the top of a label map, as a Markdown code block."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return ["```text", *lines, "```", ""] if lines else []


def _own_strict(dev: dict) -> str:
    return ", ".join(f"{corpus} {100 * report['strict']['micro']['f1']:.2f}" for corpus, report in dev.items())


def _data_lines(name: str, corpora: Sequence[str], training: dict, own_dev: dict) -> list[str]:
    """Model-card lines on the training documents (and, for a refit, the devel ones)."""
    selection = training.get("selection")
    lines = []
    for c in corpora:
        train, devel = training["data"][c + "/train"], training["data"][c + "/devel"]
        lines.append(f"- {c}: **train** split (`../shared/data/{BRAT_CORPORA[c]}/{'train.json' if c == 'PHEE' else 'train/'}`), "
                     f"{train['documents']} documents, {train['sentences']} sentences of clinlake's splitter"
                     + (f"; refit: also the **devel** split, {devel['documents']} documents, {devel['sentences']} "
                        "sentences" if selection else "")
                     + f". Licence: {LICENCES[c]}.")
    if selection:
        lines.append(
            f"- Refit on train+devel: the shipped network trained on both splits ({training['train_sentences']} "
            f"sentences) for {training['best_epoch']} epochs, the epoch count that a train-only run (same seed and "
            f"settings, {selection['train_sentences']} sentences) selected on **devel** (mean over the corpora of strict "
            "entity F1 on devel sentences). The devel scores below are that train-only model's, the held-out "
            f"estimate (training keeps it under `build/ner/{name}.selection/`); the shipped model has seen devel (its own "
            f"devel strict F1, {_own_strict(own_dev)}, estimates nothing). The test splits were never used.")
    else:
        lines.append("- Epochs selected on **devel** (mean over the corpora of strict entity F1 on devel sentences). "
                     "Not refit on train+devel. The test splits were never used.")
    return lines


def model_card(model_dir: Path, meta: dict) -> str:
    training, quant = meta["training"], meta["quantization"]
    selection = training.get("selection")
    network = training.get("network") or {}
    corpora = list(meta["label_maps"])
    precision = "int8 (dynamic quantisation)" if quant.get("kept") else "fp32"
    brat_flags = " ".join(f"--brat {c}={p}" for c, p in meta["label_maps"].items())
    lines = [
        f"# {meta['name']} — clinical NER on raw text (BiLSTM-CNN-Char-CRF, ONNX)",
        "",
        f"Version `{meta['version']}` · labels: {', '.join(meta['labels'])}",
        "",
        "## Data and licence",
        *_data_lines(meta["name"], corpora, training, meta["dev"]),
        "- Word vectors: the shared fastText vectors of `models/embeddings/` (see the biomedical model cards).",
        "",
        "## Type map",
        "Gold types → labels (label-map files named below; types not listed are not trained on and not scored):",
        "",
        "| label | corpus | gold types |",
        "|---|---|---|",
        *_type_map_rows(meta),
        "",
        "Label maps: " + ", ".join(f"`{p}`" for p in meta["label_maps"].values()) + ". What they leave out and why "
        "(from the files):",
        "",
        *[line for path in meta["label_maps"].values() for line in _leading_comments(REPO / path)],
        "",
        "## How documents become training data",
        "Each `.txt` is split by clinlake's own sentence splitter and tokenizer, exactly as at run time, and tokens "
        "are cut into model pieces; mapped gold entities become IOB2 tags. Left out of training (not of scoring): "
        "discontinuous entities, entities overlapping a longer kept one (outer mention wins), and entities our "
        "splitter cuts across two sentences:",
        "",
        "| split | documents | sentences | entities kept | discontinuous | overlapping | cross-sentence | widened to pieces |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {k} | {v['documents']} | {v['sentences']} | {sum(v['entities'].values())} | "
          f"{v['left_out'].get('discontinuous', 0)} | {v['left_out'].get('overlapping', 0)} | "
          f"{v['left_out'].get('cross_sentence', 0)} | {v['widened']} |" for k, v in training["data"].items()],
        "",
        "## Architecture",
        "As the biomedical models: frozen shared fastText vectors + character CNN "
        f"({network.get('char_filters', 50)} filters) + casing → dropout {network.get('dropout', 0.5)} → BiLSTM "
        f"2×{network.get('hidden', 150)} → CRF with IOB2 constraints. Weights: {precision} ({quant.get('tried')} tried: mean devel strict F1 fp32 "
        f"{100 * quant.get('dev_f1_fp32', 0):.2f}, int8 {100 * quant.get('dev_f1_int8', 0):.2f}"
        + ("; devel is in the refit's training data, so this checks only that int8 keeps its outputs)." if selection
           else ")."),
        "",
        "## Devel scores on raw documents (`clinlake evaluate brat`, character offsets)",
        "Strict = exact start, end and type; lenient = overlap and type (see `pipelines/evaluation/brat.py`). "
        "The model runs alone (no dictionary stage) through the full engine, with document-level abbreviation "
        "propagation as by default (`pipelines/engine/short_forms.py`: \"long form (SF)\" with the long form tagged makes "
        "SF an entity of its label from the definition to the end of the document)."
        + (" Scores of the train-only selection model (the shipped refit has seen devel)." if selection else ""),
    ]
    for corpus, report in devel_estimate(meta).items():
        lines += [
            "",
            f"### {corpus} devel ({report['documents']} documents)",
            "",
            f"Strict micro F1 **{100 * report['strict']['micro']['f1']:.2f}**, lenient micro F1 "
            f"**{100 * report['lenient']['micro']['f1']:.2f}**"
            + (f" (without abbreviation propagation: strict {100 * report['model_alone']['strict']['micro']['f1']:.2f}, "
               f"lenient {100 * report['model_alone']['lenient']['micro']['f1']:.2f})." if "model_alone" in report
               else "."),
            "",
            "| strict | P | R | F1 | gold |",
            "|---|---|---|---|---|",
            *_rows(report["strict"]),
            "",
            "| lenient | P | R | F1 | gold |",
            "|---|---|---|---|---|",
            *_rows(report["lenient"]),
        ]
    lines += [
        "",
        f"Best epoch {(selection or training)['best_epoch']} of {len((selection or training)['history'])} (patience "
        f"{training.get('patience', 5)} or the {training['max_minutes']:g}-minute cap, one CPU thread on a shared 2-core "
        "machine). " + ("Selection run history" if selection else "History") + " (epoch: loss / mean devel F1): "
        + ", ".join(f"{h['epoch']}: {h['loss']:.2f} / {100 * h['dev_f1']:.2f}" for h in (selection or training)["history"])
        + ("" if not selection else ". Refit history (epoch: loss on train+devel): "
           + ", ".join(f"{h['epoch']}: {h['loss']:.2f}" for h in training["history"])),
        "",
        "## Size and speed",
        f"- `model.onnx` {_size_mb(model_dir / 'model.onnx'):.1f} MB; shared embeddings counted once for all models.",
        f"- {meta['speed_pieces_per_s_1_thread']:,} tokens/s on one core (onnxruntime, 1 thread, end to end; "
        "shared machine, so a lower bound). Side by side with spaCy: `benchmarks/clinical_peers.py`.",
        "",
        "## Retrain",
        "```bash",
        f"clinlake train clinical --name {meta['name']} {brat_flags} --max-minutes {training['max_minutes']:g}"
        f"{training_flags(training)}",
        "```",
        f"(`pip install -e '.[train]'`; seed {training['seed']}.) Score: "
        + " and ".join(f"`clinlake evaluate brat --model {meta['name']} --data {_devel_location(c)} "
                       f"--predictions OUT --label-map {p}`" for c, p in meta["label_maps"].items())
        + (" (PHEE as BRAT: `python -m clinlake.pipelines.corpora.phee --out build/brat/PHEE`)." if "PHEE" in meta["label_maps"]
           else "."),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def _brat_pair(value: str) -> tuple[str, Path]:
    corpus, sep, path = value.partition("=")
    if not sep or corpus not in BRAT_CORPORA or not path:
        raise argparse.ArgumentTypeError(f"expected CORPUS=LABEL_MAP with CORPUS one of {', '.join(BRAT_CORPORA)}")
    return corpus, Path(path)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a clinical BiLSTM-CNN-Char-CRF NER model on "
                                     "document-level BRAT corpora (raw text through clinlake's tokenizer; early "
                                     "stopping on devel), export it to ONNX and write its card.")
    parser.add_argument("--name", required=True, help="model name (directory under models/)")
    parser.add_argument("--brat", type=_brat_pair, action="append", required=True, metavar="CORPUS=LABEL_MAP",
                        help="a corpus (MACCROBAT, Chia or PHEE) and the YAML map of its gold types to labels; repeatable")
    add_training_arguments(parser, max_minutes=30.0)
    return parser


def main(argv: Sequence[str], prog: str = "clinlake train clinical") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = build_parser(prog).parse_args(argv)
    info = train(args.name, dict(args.brat), max_minutes=args.max_minutes, epochs=args.epochs,
                 out_dir=args.out or MODELS / args.name, lr=args.lr, threads=args.threads, patience=args.patience,
                 network=network_options(args), refit=args.refit)
    print(json.dumps({k: v for k, v in info.items() if k not in ("history", "data")}))
    return 0

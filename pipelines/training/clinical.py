"""Training of the clinical NER taggers on document-level BRAT corpora: ``clinlake train clinical``.

Same network, trainer, ONNX export and serving as the biomedical models
(:mod:`clinlake.pipelines.training.ner`); the data differ: raw ``.txt`` documents go through
clinlake's own sentence splitter and tokenizer (:mod:`clinlake.pipelines.corpora.clinical`), gold
types are mapped by label maps (data files under ``conf/label_maps/``), and the model is scored
the way the entity table reports entities — character offsets on raw text, strict and lenient,
with ``clinlake evaluate brat`` (:mod:`clinlake.pipelines.evaluation.brat`) on each corpus's
devel split. Its card: :func:`clinlake.pipelines.training.clinical_card.clinical_model_card`.

Epoch selection: the mean over the corpora of the strict entity F1 on their devel
sentences. The test splits are not in ../shared and were never used.

    clinlake train clinical --name clinical_core \\
        --brat MACCROBAT=conf/label_maps/maccrobat_clinical_core.yaml \\
        --brat Chia=conf/label_maps/chia_clinical_core.yaml --max-minutes 40
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from pathlib import Path

from clinlake.pipelines.corpora.clinical import BRAT_CORPORA, Example, Stats, load_brat_split
from clinlake.pipelines.corpora.label_maps import load_label_map
from clinlake.pipelines.corpora.phee import ensure_brat
from clinlake.pipelines.engine.ner.metadata import read_meta
from clinlake.pipelines.engine.ner.model import NerModel, evict_model
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.evaluation.brat import brat_pipeline
from clinlake.pipelines.evaluation.brat import evaluate as evaluate_brat
from clinlake.pipelines.resources import build_dir, package_resource, shared_data, source_root
from clinlake.pipelines.training.clinical_card import clinical_model_card
from clinlake.pipelines.training.ner.artifacts import artifacts_dir
from clinlake.pipelines.training.ner.export import (quantize_copy, restore_full_precision, tokens_per_second,
                                                    write_meta_and_card)
from clinlake.pipelines.training.ner.loop import train_and_ship

log = logging.getLogger("clinlake.train_clinical")


def default_abbreviations() -> Path:
    """The sentence splitter's abbreviations, as at run time: ``conf/abbreviations.yaml``."""
    return package_resource("conf/abbreviations.yaml")


def corpus_dir(corpus: str, split: str, *, shared: Path | None = None, build: Path | None = None) -> Path:
    """The BRAT directory of a corpus split (PHEE: converted under build/brat/PHEE/ on first use).
    ``shared``, ``build``: the shared data folder and the build folder (defaults from
    :mod:`clinlake.pipelines.resources`)."""
    shared = shared_data() if shared is None else shared
    if corpus == "PHEE":
        return ensure_brat(shared / BRAT_CORPORA[corpus], (build_dir() if build is None else build) / "brat" / "PHEE",
                           split)
    return shared / BRAT_CORPORA[corpus] / split


def load_data(label_maps: dict[str, dict[str, str]], splitter: TextSplitter, *, shared: Path | None = None):
    """(train examples of all corpora, devel examples per corpus, stats per corpus and split)."""
    train_set, dev_sets, stats = [], {}, {}
    for corpus, label_map in label_maps.items():
        for split in ("train", "devel"):
            split_stats = Stats()
            examples = load_brat_split(corpus_dir(corpus, split, shared=shared), label_map, splitter, split_stats)
            stats[f"{corpus}/{split}"] = split_stats.as_dict()
            if split == "train":
                train_set += examples
            else:
                dev_sets[corpus] = examples
    return train_set, dev_sets, stats


def train(name: str, label_map_paths: dict[str, Path], *, max_minutes: float, epochs: int, out_dir: Path,
          lr: float = 2e-3, threads: int = 1, patience: int = 5, network: dict | None = None,
          refit: bool = False, shared: Path | None = None, root: Path | None = None) -> dict:
    """Train on the corpora's train documents, keep the epoch with the best mean strict devel
    F1, export, score on the devel documents and write the card. ``refit``: as
    :func:`clinlake.pipelines.training.ner.loop.train` — the train-only model is finished under
    build/ner/<name>.selection/ (its devel scores are the card's held-out estimate), then a
    fresh network trains on train+devel documents for the selected number of epochs and ships.
    ``shared``: the shared data folder; ``root``: what model.json's label-map paths are made
    relative to (default the checkout)."""
    root = source_root() if root is None else root
    splitter = TextSplitter.from_file(default_abbreviations())
    label_maps = {corpus: load_label_map(path) for corpus, path in label_map_paths.items()}
    train_set, dev_sets, stats = load_data(label_maps, splitter, shared=shared)
    log.info("training sentences %d; data %s", len(train_set), json.dumps(stats))
    options = dict(max_minutes=max_minutes, lr=lr, threads=threads, patience=patience, network=network)
    extra = {"kind": "brat", "label_maps": {c: relative_to_root(p, root) for c, p in label_map_paths.items()}}
    sample = [ex for dev in dev_sets.values() for ex in dev[:32]]
    return train_and_ship(train_set, dev_sets, name=name, corpus="+".join(label_maps), out_dir=out_dir, epochs=epochs,
                          options=options, refit=refit, finish_model=functools.partial(finish, shared=shared, root=root),
                          sample=sample, extra=extra, info_extra={"data": stats})


def relative_to_root(path: Path, root: Path) -> str:
    """A label map's path as model.json keeps it: relative to ``root`` when under it."""
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def reexport_sample(meta: dict, *, shared: Path | None = None) -> list[Example]:
    """The devel sentences a clinical model's re-export is checked on (32 per corpus)."""
    splitter = TextSplitter.from_file(default_abbreviations())
    return [ex for corpus in meta["label_maps"]
            for ex in load_brat_split(corpus_dir(corpus, "devel", shared=shared), {}, splitter)[:32]]


# ----------------------------------------------------------------------------- evaluation

def evaluate_documents(model_dir: Path, meta: dict, *, shared: Path | None = None, root: Path | None = None) -> dict:
    """``clinlake evaluate brat`` of this model as the only NER stage (no dictionary) on each
    corpus's devel, with abbreviation propagation (the default) and, under ``model_alone``, without."""
    root = source_root() if root is None else root
    evict_model(model_dir)  # the file may have changed (int8)
    reports: dict = {}
    for propagate in (False, True):
        pipeline = brat_pipeline(str(model_dir.resolve()), propagate_abbreviations=propagate)
        for corpus, map_path in meta["label_maps"].items():
            label_map = load_label_map(root / map_path)
            out = artifacts_dir(model_dir) / "predictions" / corpus
            report = evaluate_brat(corpus_dir(corpus, "devel", shared=shared), out, label_map=label_map,
                                   pipeline=pipeline)
            if propagate:
                reports[corpus] = {**{k: report[k] for k in ("documents", "gold_discontinuous", "strict", "lenient")},
                                   "model_alone": reports[corpus]}
            else:
                reports[corpus] = {k: {"micro": report[k]["micro"]} for k in ("strict", "lenient")}
    return reports


def mean_strict(reports: dict) -> float:
    """Mean over the corpora of the strict micro F1 (what epochs and int8 are decided on)."""
    return sum(r["strict"]["micro"]["f1"] for r in reports.values()) / len(reports)


def finish(model_dir: Path, *, quantize: bool = True, tolerance: float = 0.002, shared: Path | None = None,
           root: Path | None = None, restore: bool = True) -> dict:
    """Document-level devel scores, int8 when the mean strict F1 holds, speed, card (``restore``:
    as in :func:`~clinlake.pipelines.training.ner.export.finish`)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    meta = read_meta(model_dir)
    fp32 = artifacts_dir(model_dir) / "model.fp32.onnx"
    kept = restore_full_precision(model_dir, meta) if restore else None
    reports = evaluate_documents(model_dir, meta, shared=shared, root=root)
    quant = kept or {"tried": "none", "kept": False}
    if quantize and not kept:
        fp32.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "model.onnx", fp32)
        record = quantize_copy(model_dir, fp32, model_dir / "model.onnx")
        int8_reports = evaluate_documents(model_dir, meta, shared=shared, root=root)
        before, after = mean_strict(reports), mean_strict(int8_reports)
        quant = {**record, "dev_f1_fp32": round(before, 4), "dev_f1_int8": round(after, 4),
                 "kept": after >= before - tolerance}
        if quant["kept"]:
            reports = int8_reports
        else:
            shutil.copyfile(fp32, model_dir / "model.onnx")
    splitter = TextSplitter.from_file(default_abbreviations())
    sample = [words for corpus in meta["label_maps"]
              for words, _ in load_brat_split(corpus_dir(corpus, "devel", shared=shared), {}, splitter)[:300]]
    meta["dev"] = reports
    meta["quantization"] = quant
    meta["speed_pieces_per_s_1_thread"] = round(tokens_per_second(NerModel(model_dir), sample))
    return write_meta_and_card(model_dir, meta, functools.partial(clinical_model_card, root=root))

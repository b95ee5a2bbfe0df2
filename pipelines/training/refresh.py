"""``clinlake train card``: score, quantise and re-card trained models again, either kind
(biomedical CoNLL models and clinical BRAT models), and rewrite ``models/README.md``."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from clinlake.pipelines.engine.gazetteer import FILE as GAZETTEER_FILE
from clinlake.pipelines.engine.ner.metadata import CONSISTENCY_WEIGHT, read_meta, write_meta
from clinlake.pipelines.evaluation.ner_variants import CONLL_REACH
from clinlake.pipelines.resources import models_dir
from clinlake.pipelines.training import clinical
from clinlake.pipelines.training.cards import models_readme, ner_model_card
from clinlake.pipelines.training.clinical_card import clinical_model_card
from clinlake.pipelines.training.ner import export
from clinlake.pipelines.training.ner.artifacts import artifacts_dir
from clinlake.pipelines.training.cv_card import document_level_choice, model_record, scored_reach
from clinlake.pipelines.training.ner.cv import cv_examples
from clinlake.pipelines.training.ner.lstm_int8 import plain_fp32_graph
from clinlake.pipelines.training.ner.gazetteer import learn_gazetteer, read_lexicons, write_gazetteer


def refresh_model(name: str, *, quantize: bool = True, card_only: bool = False, reexport: bool = False,
                  models: Path | None = None) -> dict:
    """One model under ``models`` (default the shipped ``models/``): with ``card_only`` only
    MODEL_CARD.md and model.json's version from model.json (no evaluation); else, after an
    optional re-export from the PyTorch weights kept under build/ner/<name>/, its devel scores
    (and, for a refit, its train-only selection model's), int8 when F1 holds (``quantize``),
    speed and card. Returns the model's final model.json."""
    model_dir = (models_dir() if models is None else models) / name
    meta = read_meta(model_dir)
    is_clinical = _is_clinical(meta)
    finish = clinical.finish if is_clinical else export.finish
    if card_only:  # model.json is rewritten too: its version follows any edit of its record
        return _write_card(model_dir, meta)
    if reexport:
        export.reexport(model_dir, clinical.reexport_sample(meta) if is_clinical else None)
    if meta["training"].get("selection"):
        export.rescore_selection(model_dir, quantize=quantize, finish=finish)
    return finish(model_dir, quantize=quantize)


def record_cv(name: str, report: dict, *, measured: str, models: Path | None = None,
              shared: Path | None = None) -> dict:
    """Keep a CV report of a model's recipe (``clinlake evaluate cv --out``) in its model.json, with
    the document-level steps its NER stage runs by default where the report scored them
    (:func:`~clinlake.pipelines.training.cv_card.document_level_choice`), then rewrite its card (no
    evaluation). Returns the final model.json."""
    model_dir = (models_dir() if models is None else models) / name
    meta = read_meta(model_dir)
    if report.get("corpus") != meta.get("corpus"):
        raise ValueError(f"{name}: the CV report is of {report.get('corpus')!r}, the model of {meta.get('corpus')!r}")
    meta["cv"] = model_record(report, measured=measured)
    if meta["cv"].get("variants"):
        choice = document_level_choice(meta["cv"])
        meta["document_level"] = {**{step: c["on"] for step, c in choice.items()},
                                  "chosen_by": f"{meta['cv']['k']}-fold CV, {measured}"}
        if choice["label_consistency"]["on"] and CONSISTENCY_WEIGHT in meta["cv"]:  # the vote as CV scored it
            meta["document_level"][CONSISTENCY_WEIGHT] = meta["cv"][CONSISTENCY_WEIGHT]
        reach = scored_reach(meta["cv"])
        if not reach.is_default():  # the windows the CV scored with stand in for this corpus's documents
            meta["document_level"][CONLL_REACH] = reach.record()
        ship_gazetteer(model_dir, meta, on=meta["document_level"]["gazetteer"], shared=shared)
    return _write_card(model_dir, meta)


def ship_gazetteer(model_dir: Path, meta: dict, *, on: bool, shared: Path | None = None) -> None:
    """Write the model's ``gazetteer.tsv`` (learned from the train+devel its CV used, plus the names of
    its ``gazetteer_lexicons``) and record it in ``meta``, or remove both when its stage
    does not use one."""
    path = model_dir / GAZETTEER_FILE
    if not on:
        path.unlink(missing_ok=True)
        meta.pop("gazetteer", None)
        return
    corpus, examples = cv_examples(None, model_dir=model_dir, shared=shared)
    lexicons = read_lexicons(meta)
    terms = learn_gazetteer(examples, lexicons=lexicons)
    write_gazetteer(path, terms, source=f"{corpus} train+devel ({len(examples):,} sentences)", lexicons=lexicons)
    meta["gazetteer"] = {"file": GAZETTEER_FILE, "terms": len(terms), "learned_from": f"{corpus} train+devel",
                         **({"lexicons": [lexicon.source for lexicon in lexicons]} if lexicons else {}),
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def dequantize_model(name: str, *, models: Path | None = None, artifacts: Path | None = None) -> dict:
    """Rewrite an int8 model as the fp32 graph of its int8-rounded weights
    (:mod:`clinlake.pipelines.training.ner.dequantize`: batch-invariant, so the pipeline tags
    many notes' sentences together; a bounded int8 graph, :func:`quantize_model`'s, becomes the plain
    fp32 graph it was made from), then score it on devel, time it and re-card it. The int8
    graph is kept under build/ner/<name>/model.int8.onnx. Returns the final model.json."""
    model_dir = (models_dir() if models is None else models) / name
    meta = read_meta(model_dir)
    quant = dict(meta.get("quantization") or {})
    if not quant.get("kept"):
        raise ValueError(f"{name}: model.onnx is not int8 (quantization.kept is false): nothing to dequantise")
    kept_int8 = artifacts_dir(model_dir, artifacts=artifacts) / "model.int8.onnx"
    kept_int8.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "model.onnx", kept_int8)
    rewritten = plain_fp32_graph(kept_int8, model_dir / "model.onnx")
    meta["quantization"] = {"tried": "none", "kept": False}
    write_meta(model_dir, meta)
    final = _finish_as_is(model_dir, meta, quantize=False, artifacts=artifacts)
    final["quantization"] = {**quant, "kept": False, "served": "fp32 graph of the int8 weights",
                             "rewritten": rewritten}
    return _write_card(model_dir, final)


def quantize_model(name: str, *, models: Path | None = None, tolerance: float = 0.002,
                   artifacts: Path | None = None) -> dict:
    """Serve an fp32 model's LSTM in batch-invariant int8 (:mod:`clinlake.pipelines.training.ner.lstm_int8`)
    when devel F1 holds (within ``tolerance``), from model.onnx as it is (never the full-precision
    export kept under build/: a dequantised model's graph is the int8-rounded one its card scored);
    then score, time and re-card it. The fp32 graph is kept under ``artifacts`` (default build/ner/<name>/,
    the clinical models' always there). Returns the final model.json."""
    model_dir = (models_dir() if models is None else models) / name
    meta = read_meta(model_dir)
    before = dict(meta.get("quantization") or {})
    if before.get("kept"):
        raise ValueError(f"{name}: model.onnx is already int8 ({before.get('tried')}); quantise its fp32 graph "
                         "(clinlake train card --dequantize first)")
    final = _finish_as_is(model_dir, meta, quantize=True, tolerance=tolerance, artifacts=artifacts)
    if before.get("served"):  # what the fp32 graph was: keep it on record
        final["quantization"]["from"] = before["served"]
    return _write_card(model_dir, final)


def _is_clinical(meta: dict) -> bool:
    """A clinical (BRAT) model: document-level evaluation and its own card."""
    return meta.get("kind") == "brat"


def _write_card(model_dir: Path, meta: dict) -> dict:
    return export.write_meta_and_card(model_dir, meta, clinical_model_card if _is_clinical(meta) else ner_model_card)


def _finish_as_is(model_dir: Path, meta: dict, *, quantize: bool, tolerance: float = 0.002,
                  artifacts: Path | None = None) -> dict:
    """The finish() of the model's kind on model.onnx as it is. restore=False: finish() would otherwise
    put the full-precision export kept under build/ back as model.onnx (the original network, not its
    int8-rounded weights; for a model trained elsewhere and copied in, another network's)."""
    if _is_clinical(meta):
        return clinical.finish(model_dir, quantize=quantize, tolerance=tolerance, restore=False)
    return export.finish(model_dir, quantize=quantize, tolerance=tolerance, restore=False, artifacts=artifacts)


def write_models_readme(models: Path | None = None) -> Path:
    """(Re)write ``models/README.md`` from the models' model.json files; returns its path."""
    models = models_dir() if models is None else models
    path = models / "README.md"
    path.write_text(models_readme(models), encoding="utf-8")
    return path


def install_model(source: Path, name: str, *, models: Path | None = None) -> Path:
    """Copy a NER model trained elsewhere (``train distill --out DIR``, ``train ner --out DIR``) into
    ``models/<name>``: its files replace those of the same name there (others, e.g. a gazetteer, are
    kept), and model.json's ``embeddings`` path, written relative to ``source``, is made relative to the
    new folder, so the installed model loads the same word vectors. Returns the installed folder."""
    models = models_dir() if models is None else models
    meta = read_meta(source)
    embeddings = (source / meta["embeddings"]).resolve()
    if not embeddings.is_dir():
        raise FileNotFoundError(f"{source}: its word vectors ({meta['embeddings']}) are not where model.json says")
    target = models / name
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.name != "model.json":
            shutil.copyfile(path, target / path.name)
    meta["embeddings"] = os.path.relpath(embeddings, target.resolve())
    meta["name"] = name
    write_meta(target, meta)
    write_models_readme(models)
    return target

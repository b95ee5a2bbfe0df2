"""A trained NER network as a shipped model directory: ONNX export (checked against PyTorch),
devel scores, int8 quantisation when F1 holds, speed, ``model.json`` and ``MODEL_CARD.md``
(:func:`finish`, re-runnable: ``clinlake train card``).

``model.json`` is read and written through :mod:`clinlake.pipelines.engine.ner.metadata`.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnxruntime as ort

from clinlake.pipelines.engine.ner.features import (
    MAX_CHARS, Embeddings, WordFeatures, encode_batch, encode_serving_batch,
)
from clinlake.pipelines.engine.ner.gazetteer_channels import FILE as CHANNELS_FILE, load_channels
from clinlake.pipelines.engine.ner.metadata import read_meta, write_meta
from clinlake.pipelines.engine.ner.model import NerModel, model_version
from clinlake.pipelines.evaluation.ner import evaluate_model
from clinlake.pipelines.training.cards import ner_model_card
from clinlake.pipelines.training.ner.artifacts import artifacts_dir, selection_model_dir
from clinlake.pipelines.training.ner.corpus import Example, load_split, split_path
from clinlake.pipelines.training.ner.embeddings import default_embeddings_dir
from clinlake.pipelines.training.ner.gazetteer_features import write_channel_terms
from clinlake.pipelines.training.ner.network import build_crf, build_network, serving_onnx, torch_module

log = logging.getLogger("clinlake.train_ner")


def export(net, crf, *, name: str, corpus: str, tags: list[str], chars: dict[str, int], out_dir: Path,
           info: dict, sample: Sequence[Example], embeddings: Embeddings, embeddings_dir: Path | None = None,
           extra: dict | None = None, artifacts: Path | None = None) -> None:
    """Write model.onnx (the serving graph) + model.json; check onnxruntime reproduces PyTorch.

    model.json names ``embeddings_dir`` (where ``embeddings`` were loaded from; default the
    shipped ``models/embeddings/``) relative to out_dir. ``artifacts``: the training artefacts'
    root (default ``build/ner/``)."""
    # onnx is imported here, not at module level: only exporting a trained model needs it.
    import onnx

    embeddings_dir = default_embeddings_dir() if embeddings_dir is None else embeddings_dir
    net.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    # A full-precision copy kept by an earlier finish() belongs to an earlier model: drop it,
    # or finish() would restore it over this export.
    (artifacts_dir(out_dir, artifacts=artifacts) / "model.fp32.onnx").unlink(missing_ok=True)
    sentences = [words for words, _ in sample]
    onnx.save(serving_onnx(net), str(out_dir / "model.onnx"))
    if net.gazetteer is not None:  # the network reads gazetteer channels: its term list ships beside it
        extra = {**(extra or {}), "gazetteer_features": write_channel_terms(out_dir, net.gazetteer, source=corpus)}
    else:
        (out_dir / CHANNELS_FILE).unlink(missing_ok=True)
    start, end, trans = (s.detach().double().numpy() for s in crf.scores())
    meta = {
        "name": name, "corpus": corpus, "architecture": "BiLSTM-CNN-Char-CRF", "tags": tags,
        "labels": sorted({t[2:] for t in tags if t != "O"}),
        "chars": chars, "embeddings": os.path.relpath(embeddings_dir.resolve(), out_dir.resolve()), "max_chars": MAX_CHARS,
        "crf": {"start": start.round(5).tolist(), "end": end.round(5).tolist(), "transitions": trans.round(5).tolist()},
        "training": info,
        **(extra or {}),
    }
    write_meta(out_dir, meta)
    check_onnx(net, out_dir / "model.onnx", sentences, embeddings, chars)
    check_onnx(net, out_dir / "model.onnx", sentences[:3], embeddings, chars)  # another batch shape
    meta["version"] = model_version(out_dir)
    write_meta(out_dir, meta)


def check_onnx(net, onnx_path: Path, sentences: Sequence[Sequence[str]], embeddings: Embeddings,
               chars: dict[str, int], atol: float = 1e-3) -> float:
    """Largest |ONNX - PyTorch| emission difference on a batch of sentences (ONNX fed the
    serving inputs, PyTorch the training-graph inputs); raises when above atol."""
    torch = torch_module()
    features = WordFeatures(embeddings, chars)
    training, serving = encode_batch(sentences, features), encode_serving_batch(sentences, features)
    if net.gazetteer is not None:
        training, serving = net.gazetteer.with_words(training, sentences), net.gazetteer.with_words(serving, sentences)
    inputs = {k: torch.from_numpy(v) for k, v in training.items()}
    with torch.no_grad():
        expected = net.eval()(**inputs).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["emissions"], serving)
    diff = max(float(np.abs(got[b, : len(s)] - expected[b, : len(s)]).max()) for b, s in enumerate(sentences))
    if diff > atol:
        raise RuntimeError(f"ONNX and PyTorch emissions differ by {diff:.2e} > {atol}")
    log.info("ONNX matches PyTorch (max abs diff %.2e)", diff)
    return diff


def load_torch(model_dir: Path, *, artifacts: Path | None = None):
    """(net, crf) rebuilt from a training run's torch_state.pt (kept under :func:`~.artifacts.artifacts_dir`)."""
    torch = torch_module()
    state = torch.load(artifacts_dir(model_dir, artifacts=artifacts) / "torch_state.pt", map_location="cpu")
    meta = read_meta(model_dir)
    network = {"word_dim": state.get("word_dim", 100), **state.get("network", {})}
    net = build_network(state["n_chars"], state["n_tags"], **network)
    crf = build_crf(meta["tags"])
    net.load_state_dict(state["net"])
    crf.load_state_dict(state["crf"])
    net.gazetteer = load_channels(model_dir, meta)
    return net.eval(), crf.eval()


# ----------------------------------------------------------------------------- finishing

def quantize_dynamic_copy(full: Path, small: Path) -> None:
    """Write the int8 dynamic quantisation of ``full`` to ``small``. LSTM and the output
    projection only: int8 Conv (ConvInteger) is slower than fp32 Conv in onnxruntime on CPU
    for these small char convolutions."""
    # onnxruntime.quantization imports onnx: imported here, as onnx is only needed when finishing a trained model.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(full), str(small), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM", "MatMul", "Gemm"])


def quantize_copy(model_dir: Path, full: Path, small: Path) -> dict:
    """Write the batch-invariant int8 version of ``full`` (a tagger graph of ``model_dir``'s model) to
    ``small`` (:mod:`clinlake.pipelines.training.ner.lstm_int8`); returns its quantization record."""
    from clinlake.pipelines.training.ner.lstm_int8 import quantize_bounded

    vectors = Embeddings.load((model_dir / read_meta(model_dir)["embeddings"]).resolve()).vectors
    return quantize_bounded(full, small, word_vectors=vectors)


def quantize_if_it_holds(model_dir: Path, dev_f1: float, tolerance: float, *, shared: Path | None = None,
                         artifacts: Path | None = None) -> dict:
    """Replace model.onnx by its batch-invariant int8 version (:func:`quantize_copy`) when strict
    devel F1 drops by at most ``tolerance`` (absolute); returns what was tried and decided."""
    model_artifacts = artifacts_dir(model_dir, artifacts=artifacts)
    full, small = model_dir / "model.onnx", model_artifacts / "model.int8.onnx"
    small.parent.mkdir(parents=True, exist_ok=True)
    record = quantize_copy(model_dir, full, small)
    candidate = model_dir / "_int8"
    candidate.mkdir(exist_ok=True)
    (candidate / "model.onnx").write_bytes(small.read_bytes())
    if (model_dir / CHANNELS_FILE).is_file():  # the network's gazetteer channels' term list goes with it
        shutil.copyfile(model_dir / CHANNELS_FILE, candidate / CHANNELS_FILE)
    meta = read_meta(model_dir)
    meta["embeddings"] = os.path.relpath((model_dir / meta["embeddings"]).resolve(), candidate.resolve())
    meta["quantization"] = {**record, "kept": True}  # so the candidate is tagged as it would be served
    write_meta(candidate, meta)
    f1 = evaluate_model(NerModel(candidate), split_path(meta["corpus"], "devel", shared=shared), raw_text=False,
                        abbreviation_reach=None)["tokens"]["overall"]["f1"]
    shutil.rmtree(candidate)
    keep = f1 >= dev_f1 - tolerance
    if keep:
        (model_artifacts / "model.fp32.onnx").write_bytes(full.read_bytes())
        small.replace(full)
    else:
        small.unlink()
    return {**record, "dev_f1_fp32": dev_f1, "dev_f1_int8": f1, "kept": keep}


def tokens_per_second(model, sequences: Sequence[Sequence[str]], seconds: float = 10.0) -> float:
    """End-to-end tagging speed (features + ONNX + Viterbi + marginals) in pieces per second."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for seq, _ in zip(sequences, model.tag(sequences)):
            done += len(seq)
    return done / (time.perf_counter() - started)


def finish(model_dir: Path, *, quantize: bool = True, tolerance: float = 0.002, shared: Path | None = None,
           artifacts: Path | None = None, restore: bool = True) -> dict:
    """Evaluate on devel (tokens and raw text), optionally quantise, time on one core,
    write MODEL_CARD.md and the final version. Re-runnable: ``clinlake train card``.
    ``shared``: the shared data folder (default :func:`~clinlake.pipelines.resources.shared_data`).
    ``restore=False`` scores model.onnx as it is, never the full-precision export kept under build/
    (a dequantised graph must stay what it is)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # one core, as reported on the card
    meta = read_meta(model_dir)
    devel = split_path(meta["corpus"], "devel", shared=shared)
    kept = restore_full_precision(model_dir, meta, artifacts=artifacts) if restore else None
    report = evaluate_model(NerModel(model_dir), devel)
    quant = kept or {"tried": "none", "kept": False}
    if quantize and not kept:  # decided on the model's own (sentence by sentence) F1
        quant = quantize_if_it_holds(model_dir, report["model_alone"]["tokens"]["overall"]["f1"], tolerance,
                                     shared=shared, artifacts=artifacts)
        if quant["kept"]:
            report = evaluate_model(NerModel(model_dir), devel)
    sample = [words for words, _ in load_split(meta["corpus"], "devel", shared=shared)[:500]]
    speed = tokens_per_second(NerModel(model_dir), sample)
    meta["dev"] = {key: report[key] for key in ("tokens", "raw_text", "abbreviation_reach", "model_alone")}
    meta["quantization"] = quant
    meta["speed_pieces_per_s_1_thread"] = round(speed)
    return write_meta_and_card(model_dir, meta, ner_model_card)


def restore_full_precision(model_dir: Path, meta: dict, *, artifacts: Path | None = None) -> dict | None:
    """Before (re-)quantising: put the full-precision export kept by an earlier run back as
    model.onnx. When it is not there (build/ is not shipped) but model.onnx is already int8,
    return the model's quantisation record instead: the caller then scores the model as it
    is rather than quantising an int8 model a second time."""
    fp32 = artifacts_dir(model_dir, artifacts=artifacts) / "model.fp32.onnx"
    if fp32.exists():
        shutil.copyfile(fp32, model_dir / "model.onnx")
        return None
    if meta.get("quantization", {}).get("kept"):
        log.warning("%s: no full-precision copy under %s; scoring the int8 model as it is", model_dir.name, fp32.parent)
        return dict(meta["quantization"])
    return None


def write_meta_and_card(model_dir: Path, meta: dict, card: Callable[[Path, dict], str]) -> dict:
    """model.json with the version of its final content, then MODEL_CARD.md (``card``)."""
    meta.pop("version", None)
    write_meta(model_dir, meta)
    meta["version"] = model_version(model_dir)
    write_meta(model_dir, meta)
    (model_dir / "MODEL_CARD.md").write_text(card(model_dir, meta), encoding="utf-8")
    return meta


def reexport(model_dir: Path, sample: Sequence[Example] | None = None, *, shared: Path | None = None,
             artifacts: Path | None = None) -> None:
    """Export a trained model again from its PyTorch weights (build/ner/<name>/torch_state.pt)
    with the current exporter, keeping its tags, characters and training record. ``sample``:
    the sentences the export is checked on (default the first 64 devel sentences of its corpus;
    a clinical model's come from :func:`clinlake.pipelines.training.clinical.reexport_sample`)."""
    meta = read_meta(model_dir)
    net, crf = load_torch(model_dir, artifacts=artifacts)
    embeddings_dir = (model_dir / meta["embeddings"]).resolve()
    embeddings = Embeddings.load(embeddings_dir)
    if sample is None:
        sample = load_split(meta["corpus"], "devel", shared=shared)[:64]
    export(net, crf, name=meta["name"], corpus=meta["corpus"], tags=meta["tags"], chars=meta["chars"],
           out_dir=model_dir, info=meta["training"], sample=sample, embeddings=embeddings,
           embeddings_dir=embeddings_dir, extra={k: meta[k] for k in ("kind", "label_maps") if k in meta},
           artifacts=artifacts)


def rescore_selection(model_dir: Path, *, quantize: bool = True, finish: Callable[..., dict] = finish,
                      artifacts: Path | None = None) -> None:
    """Evaluate a refit model's train-only selection model again (kept under
    build/ner/<name>.selection/ by training) with ``finish`` (this module's, or the clinical
    trainer's) and store its devel scores in model.json."""
    selection_dir = selection_model_dir(model_dir, artifacts=artifacts)
    if not (selection_dir / "model.onnx").exists():
        raise FileNotFoundError(f"{selection_dir} is missing: the devel scores of a refit model come from its "
                                "train-only selection model; retrain with --refit to rebuild it")
    selected = finish(selection_dir, quantize=quantize)
    meta = read_meta(model_dir)
    meta["training"]["selection"].update(dev=selected["dev"], quantization=selected["quantization"])
    write_meta(model_dir, meta)

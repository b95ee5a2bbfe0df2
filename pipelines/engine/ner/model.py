"""Serving of one trained NER tagger (BiLSTM-CNN-Char + CRF) with onnxruntime.

Runtime only: numpy + onnxruntime, never torch (training lives in :mod:`clinlake.pipelines.training.ner`).

A model directory (``models/<name>/``) holds

* ``model.onnx`` — the network: shared word vectors + character CNN + casing → BiLSTM →
  per-tag emission scores ``[batch, tokens, tags]``;
* ``model.json`` — tags, character map, CRF transitions (start/end/pairwise, IOB constraints
  already folded in), the name of the shared embedding directory and the version
  (read through :class:`~clinlake.pipelines.engine.ner.metadata.ModelMeta`).

Confidence of an entity = the mean, over its pieces, of the CRF marginal probability
(forward-backward) of the tag Viterbi chose for that piece. In [0, 1].
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from clinlake.pipelines.engine.batching import padded_runs
from clinlake.pipelines.engine.ner.crf import CrfDecoder
from clinlake.pipelines.engine.ner.features import Embeddings, WordFeatures, encode_serving_batch
from clinlake.pipelines.engine.ner.gazetteer_channels import load_channels
from clinlake.pipelines.engine.ner.metadata import ModelMeta, read_meta
from clinlake.pipelines.engine.onnx_session import open_session

WINDOW = 256  # longest piece sequence tagged in one go; longer sentences are windowed
OVERLAP = 32  # pieces of context on each side of a window that are tagged but not kept
BATCH_PIECES = 4096  # padded pieces per CRF decoding batch
NETWORK_PIECES = 1024  # padded pieces per onnxruntime call
# What one more onnxruntime call costs, in pieces of LSTM work (~130 us against ~8 us a piece on one
# core): sentences of unequal length go in separate calls when padding them to one length costs more.
# Without it a lone short note (one call for all its sentences) padded most of its pieces.
NETWORK_CALL_PIECES = 16


def windows(length: int, size: int = WINDOW, overlap: int = OVERLAP) -> list[tuple[int, int, int, int]]:
    """(lo, hi, keep_lo, keep_hi) windows covering [0, length): the model tags [lo, hi) and
    the caller keeps tags [keep_lo, keep_hi); kept ranges tile [0, length) exactly and each
    kept token has ``overlap`` tokens of context on both sides when the sentence has them."""
    if length <= size:
        return [(0, length, 0, length)]
    if size <= 2 * overlap:
        raise ValueError("window size must exceed twice the overlap")
    result = []
    keep_lo = 0
    while keep_lo < length:
        lo = max(0, keep_lo - overlap)
        hi = min(length, lo + size)
        keep_hi = hi if hi == length else hi - overlap
        result.append((lo, hi, keep_lo, keep_hi))
        keep_lo = keep_hi
    return result


# ----------------------------------------------------------------------------- the model

_SESSIONS: dict[str, "NerModel"] = {}
_LOCK = threading.Lock()


class NerModel:
    """One ONNX tagger: tags piece sequences. Built once per process per directory (:func:`load_model`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        meta = ModelMeta.load(directory)
        self.meta = meta.raw
        self.name = f"{meta.name}@{meta.version}"
        self.tags: list[str] = meta.tags
        self.char_map: dict[str, int] = meta.chars
        crf = meta.crf
        self.start = np.asarray(crf["start"], dtype=np.float64)
        self.end = np.asarray(crf["end"], dtype=np.float64)
        self.trans = np.asarray(crf["transitions"], dtype=np.float64)
        self.decoder = CrfDecoder(self.start, self.end, self.trans, dtype=np.float32)
        self.outside = self.tags.index("O") if "O" in self.tags else -1
        # int8 dynamic quantisation scales activations per call, so a sentence's tags depend on its
        # batch-mates, unless the activation ranges are fixed (pipelines/training/ner/lstm_int8.py);
        # an fp32 graph is batch-invariant (pipelines/training/ner/dequantize.py)
        quantization = meta.raw.get("quantization", {})
        self.batch_invariant = not quantization.get("kept", False) or quantization.get("batch_invariant", False)
        self.embeddings = _embeddings(meta.embeddings_dir)
        self.features = WordFeatures(self.embeddings, self.char_map)
        self.channels = load_channels(directory, meta.raw)  # gazetteer channels, for a model trained with them
        self.session = open_session(directory / "model.onnx")
        expected = {i.name: i.shape for i in self.session.get_inputs()}["words"][2]
        width = self.channels.width if self.channels else 0
        if isinstance(expected, int) and expected != self.embeddings.vectors.shape[1] + width:
            raise ValueError(f"model {meta.name} was trained on {expected - width}-d word vectors but "
                             f"{meta.embeddings_dir} holds {self.embeddings.vectors.shape[1]}-d ones: "
                             "retrain it (clinlake train) against these vectors")

    network_pieces = NETWORK_PIECES  # padded pieces per network call

    def batch_emissions(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """Padded emission scores [batch, longest, tags] (float32, as the network gives them) of
        piece sequences, sorted by length or not. The network runs on consecutive slices of about
        ``network_pieces`` padded pieces: the LSTM is faster per token on such batches than on the
        larger ones the CRF decoder prefers."""
        longest = max((len(s) for s in sequences), default=0)
        scores = np.zeros((len(sequences), max(1, longest), len(self.tags)), dtype=np.float32)
        for lo, hi in padded_runs([len(s) for s in sequences], max_pieces=self.network_pieces,
                                  call_cost=NETWORK_CALL_PIECES):
            part = self.network_emissions(sequences[lo:hi])
            scores[lo:hi, : part.shape[1]] = part
        return scores

    def network_emissions(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """One network call: padded emission scores [batch, longest, tags] (onnxruntime)."""
        feeds = encode_serving_batch(sequences, self.features)
        if self.channels is not None:
            feeds = self.channels.with_words(feeds, sequences)
        (scores,) = self.session.run(["emissions"], feeds)
        return scores

    def emissions(self, sequences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Emission scores [len, tags] per piece sequence (each at most WINDOW long)."""
        scores = self.batch_emissions(sequences)
        return [scores[b, : len(s)] for b, s in enumerate(sequences)]

    def tag(self, sequences: Sequence[Sequence[str]], *, every_confidence: bool = False) -> list[tuple[list[str], list[float]]]:
        """(tags, probability of each chosen tag) per piece sequence of any length.

        Long sequences are cut into overlapping windows; all windows of all sequences are
        sorted by length and run in batches of about BATCH_PIECES padded pieces. The CRF is
        decoded in float32, the network's precision. Only entities carry a confidence, so the
        posteriors (forward-backward) are computed only for windows where Viterbi found an
        entity: a window tagged all O gets NaN probabilities, unless ``every_confidence`` asks
        for every token's (the label consistency vote weighs untagged occurrences by it)."""
        jobs = [(i, w) for i, seq in enumerate(sequences) if seq for w in windows(len(seq))]
        jobs.sort(key=lambda job: job[1][1] - job[1][0])
        paths = [np.zeros(len(seq), dtype=np.int64) for seq in sequences]
        probs = [np.full(len(seq), np.nan, dtype=np.float32) for seq in sequences]
        for batch in _batches(jobs):
            chunks = [sequences[i][lo:hi] for i, (lo, hi, _, _) in batch]
            scores = self.batch_emissions(chunks)
            lengths = np.array([len(c) for c in chunks])
            best = self.decoder.paths(scores, lengths)
            chosen = np.full(best.shape, np.nan, dtype=np.float32)
            found = np.arange(len(chunks)) if every_confidence else \
                np.flatnonzero(((best != self.outside) & (np.arange(best.shape[1]) < lengths[:, None])).any(axis=1))
            if len(found):
                chosen[found] = self.decoder.confidences(scores[found], lengths[found], best[found])
            for b, (i, (lo, _hi, keep_lo, keep_hi)) in enumerate(batch):
                paths[i][keep_lo:keep_hi] = best[b, keep_lo - lo:keep_hi - lo]
                probs[i][keep_lo:keep_hi] = chosen[b, keep_lo - lo:keep_hi - lo]
        name_of = self.tags.__getitem__
        return [(list(map(name_of, path.tolist())), prob.tolist()) for path, prob in zip(paths, probs)]


def _batches(jobs: list) -> Iterable[list]:
    """Consecutive jobs (sorted by length) grouped so padded size stays under BATCH_PIECES."""
    for lo, hi in padded_runs([job[1][1] - job[1][0] for job in jobs], max_pieces=BATCH_PIECES):
        yield jobs[lo:hi]


_EMBEDDINGS: dict[Path, Embeddings] = {}


def _embeddings(directory: Path) -> Embeddings:
    if directory not in _EMBEDDINGS:
        _EMBEDDINGS[directory] = Embeddings.load(directory)
    return _EMBEDDINGS[directory]


def load_model(model_dir: Path) -> NerModel:
    """The process-wide NerModel of a directory (one onnxruntime session per model per process)."""
    key = str(Path(model_dir).resolve())
    with _LOCK:
        model = _SESSIONS.get(key)
        if model is None:
            model = _SESSIONS[key] = NerModel(Path(key))
    return model


def evict_model(model_dir: Path) -> None:
    """Forget the process-wide NerModel of a directory, so the next :func:`load_model` reads its
    files again (training rewrites a model's files, e.g. when it quantises them)."""
    with _LOCK:
        _SESSIONS.pop(str(Path(model_dir).resolve()), None)


def model_version(model_dir: Path) -> str:
    """sha256 (first 12 hex digits) of model.onnx plus model.json without its version field (and the
    gazetteer channels' term list of a model that has one: it changes the network's input)."""
    meta = read_meta(model_dir)
    meta.pop("version", None)
    digest = hashlib.sha256((model_dir / "model.onnx").read_bytes())
    digest.update(json.dumps(meta, sort_keys=True).encode())
    if meta.get("gazetteer_features"):
        digest.update((model_dir / meta["gazetteer_features"]["file"]).read_bytes())
    return digest.hexdigest()[:12]

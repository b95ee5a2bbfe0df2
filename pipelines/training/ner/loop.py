"""Training of the biomedical NER taggers: ``clinlake train ner`` (needs the ``train`` extra).

Model (Kocaman & Talby 2020 style BiLSTM-CNN-Char, with a CRF):
    frozen shared fastText word vectors (200-d, trained here with gensim on the shared
    biomedical + health corpora and the NER train text; subword-composed vectors for every
    word of the NER corpora)
    + character CNN (25-d chars, 50 filters of width 3, max-pooled)
    + casing embedding (8-d)
    → dropout → 1-layer BiLSTM (2 × 150) → dropout → linear emissions → linear-chain CRF
    with IOB2 constraints (O → I-X and X → I-Y forbidden), Viterbi decoding.

Adam, gradient clipping, batches of sentences of similar length, early stopping on strict
devel F1 with a wall-clock cap, fixed seeds. Export: ONNX (opset 17, dynamic batch and
length) of the serving graph, built node by node from the trained weights — the char CNN
run once per distinct word of a batch, one bidirectional LSTM over ``sequence_lens`` — and
checked against PyTorch before the model directory is written; then
devel evaluation, int8 dynamic quantisation of the LSTM/linear weights when devel F1
holds, timing, MODEL_CARD.md (:func:`finish`).

Featurisation (pieces, word keys, casing, characters) is imported from
:mod:`pipelines.engine.ner.model`, the runtime, so training and serving cannot drift apart.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH, score_spans
from clinlake.pipelines.corpora.conll import read_conll
from clinlake.pipelines.engine.ner.features import (CASES, MAX_CHARS, PAD, UNK, Embeddings, WordFeatures, encode_batch, encode_serving_batch, model_pieces, word_key)
from clinlake.pipelines.engine.ner.crf import iob_spans, viterbi_batch
from clinlake.pipelines.engine.ner.model import model_version

log = logging.getLogger("clinlake.train_ner")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MODELS = REPO / "models"
EMBEDDINGS = MODELS / "embeddings"
# Training artefacts that are not shipped (PyTorch weights, the fp32 ONNX of a quantised model).
ARTIFACTS = REPO / "build" / "ner"
CORPORA = ("NCBI-disease", "BC5CDR", "AnatEM", "BioNLP13CG", "LINNAEUS")
EMBED_TEXTS = ("corpus/biomedical_sentences.txt", "corpus/health_text.txt")
SEED = 13
NEG = -10000.0  # score of a forbidden IOB transition (finite: keeps ONNX/NumPy maths NaN-free)

Example = tuple[list[str], list[str]]  # pieces, IOB2 tags


def artifacts_dir(model_dir: Path) -> Path:
    """Where a model directory's training artefacts go (PyTorch weights, the fp32 export of an
    int8 model; not shipped): build/ner/<name> for a shipped model (models/<name>) and for a
    folder already under build/ner (a refit's selection model keeps its own);
    build/ner/<name>-<hash of the parent folder> for any other output folder, so two runs whose
    output folders merely share a name never share (or overwrite) artefacts."""
    resolved = Path(model_dir).resolve()
    if resolved.parent in (MODELS.resolve(), ARTIFACTS.resolve()):
        return ARTIFACTS / resolved.name
    return ARTIFACTS / f"{resolved.name}-{hashlib.sha1(str(resolved.parent).encode()).hexdigest()[:8]}"


def selection_model_dir(model_dir: Path) -> Path:
    """Where ``--refit`` keeps the train-only selection model of ``model_dir``."""
    artifacts = artifacts_dir(model_dir)
    return artifacts.with_name(artifacts.name + ".selection")


# ----------------------------------------------------------------------------- data

def to_pieces(tokens: Sequence[str], tags: Sequence[str]) -> Example:
    """Corpus tokens split like the runtime splits pipeline tokens; tags follow the pieces
    (a B- token's later pieces become I-)."""
    words: list[str] = []
    labels: list[str] = []
    for token, tag in zip(tokens, tags):
        pieces = [p[2] for p in model_pieces([(0, len(token), token)])] or [token]
        words += pieces
        inside = "I-" + tag[2:] if tag != "O" else "O"
        labels += [tag] + [inside] * (len(pieces) - 1)
    return words, labels


def load_split(corpus: str, split: str) -> list[Example]:
    return [to_pieces(t, g) for t, g in read_conll(SHARED / "ner" / corpus / f"{split}.tsv")]


# ----------------------------------------------------------------------------- embeddings

def devel_sentences() -> frozenset[str]:
    """The five corpora's devel sentences as biomedical_sentences.txt writes them (tokens joined by spaces)."""
    return frozenset(" ".join(tokens) for corpus in CORPORA
                     for tokens, _ in read_conll(SHARED / "ner" / corpus / "devel.tsv"))


def _embedding_sentences(skip: frozenset[str] = frozenset()) -> Iterator[list[str]]:
    """The shared text corpora (less the lines in ``skip``), then the words of the five NER *train*
    splits (labels unused: the vectors see the corpora's own vocabulary in context). Devel splits
    are not added, but biomedical_sentences.txt already holds nearly all their sentences,
    unlabelled (only test sentences were removed upstream): the README says what that is worth
    on devel F1, measured with ``skip=devel_sentences()``."""
    for name in EMBED_TEXTS:
        with open(SHARED / name, encoding="utf-8") as handle:
            for line in handle:
                if skip and line.strip() in skip:
                    continue
                words = [word_key(p[2]) for p in model_pieces([(0, len(line), line)])]
                if words:
                    yield words
    for corpus in CORPORA:
        for words, _ in load_split(corpus, "train"):
            yield [word_key(w) for w in words]


class _Corpus:
    """Re-iterable sentence stream for gensim (it makes several passes)."""

    def __init__(self, skip: frozenset[str] = frozenset()) -> None:
        self.skip = skip

    def __iter__(self) -> Iterator[list[str]]:
        return _embedding_sentences(self.skip)


def build_embeddings(out: Path = EMBEDDINGS, *, epochs: int = 15, dim: int = 200, max_words: int = 100_000,
                     workers: int = 1, without_devel: bool = False) -> None:
    """Train fastText (skip-gram, char 3-6-grams) and save ONE fp16 matrix for all models.

    200-d and 15 epochs (the first release used 100-d, 5 epochs, without the NER train text):
    on ~8M tokens the vectors improve with more passes; with them every biomedical model's
    devel F1 rose (by 1 to 10 points, see models/README.md), the clinical ones' barely moved.

    Vocabulary: every word key of the five NER corpora (train + devel; no labels used), then
    the most frequent corpus words, up to ``max_words``. Words the fastText model never saw
    get their subword-composed vector now, so the runtime needs no n-gram table.

    ``without_devel``: leave the NER devel sentences out of the shared text (to measure what
    they are worth on devel F1; the vocabulary is the same).

    ``workers``: fastText threads. One (the default) is reproducible run to run; with two,
    thread scheduling orders the updates, so each run gives other vectors (about twice as fast,
    but a retrain on the same data moved NCBI-disease's devel F1 by 0.8)."""
    from gensim.models import FastText

    ner_words: Counter[str] = Counter()
    for corpus in CORPORA:
        for split in ("train", "devel"):
            for words, _ in load_split(corpus, split):
                ner_words.update(word_key(w) for w in words)
    started = time.time()
    model = FastText(vector_size=dim, window=5, min_count=3, sg=1, negative=5, min_n=3, max_n=6,
                     bucket=500_000, workers=workers, seed=SEED)
    corpus = _Corpus(devel_sentences() if without_devel else frozenset())
    model.build_vocab(corpus_iterable=corpus)
    log.info("fastText vocabulary %d words; training %d epochs", len(model.wv.key_to_index), epochs)
    model.train(corpus_iterable=corpus, total_examples=model.corpus_count, epochs=epochs)
    log.info("fastText trained in %.0f s", time.time() - started)
    vocab = ["<pad>", "<unk>"] + sorted(ner_words, key=lambda w: (-ner_words[w], w))
    seen = set(vocab)
    for word in model.wv.index_to_key:  # most frequent first
        if len(vocab) >= max_words:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    vectors = np.zeros((len(vocab), dim), dtype=np.float32)
    for i, word in enumerate(vocab[2:], start=2):
        vectors[i] = model.wv[word]
    vectors[UNK] = vectors[2:].mean(axis=0)
    scale = np.abs(vectors).max()
    if not math.isfinite(scale) or scale > 60000:
        raise ValueError("embedding values do not fit in fp16")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", vectors.astype(np.float16))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    log.info("saved %d x %d vectors to %s", len(vocab), dim, out)


# ----------------------------------------------------------------------------- the network

def _torch():
    import torch

    return torch


def build_network(n_chars: int, n_tags: int, *, word_dim: int = 100, char_dim: int = 25, char_filters: int = 50,
                  case_dim: int = 8, hidden: int = 150, dropout: float = 0.5):
    """The BiLSTM-CNN-Char emission network (a torch.nn.Module)."""
    torch = _torch()
    nn = torch.nn

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.word_dim = hidden, word_dim
            self.char_embed = nn.Embedding(n_chars, char_dim, padding_idx=PAD)
            self.char_cnn = nn.Conv1d(char_dim, char_filters, kernel_size=3, padding=1)
            self.case_embed = nn.Embedding(len(CASES), case_dim, padding_idx=PAD)
            self.drop = nn.Dropout(dropout)
            size = word_dim + char_filters + case_dim
            # Two one-way LSTMs instead of bidirectional=True: the backward one reads each
            # sentence reversed *within its length*, so padding never reaches real tokens
            # and a sentence is tagged the same in any batch (also in ONNX, without packing).
            self.fwd = nn.LSTM(size, hidden, batch_first=True)
            self.bwd = nn.LSTM(size, hidden, batch_first=True)
            self.out = nn.Linear(2 * hidden, n_tags)

        def forward(self, words, chars, cases, lengths):
            """Training graph: chars [batch, steps, width] per token."""
            batch, steps, width = chars.shape
            c = self.char_features(chars.reshape(batch * steps, width)).reshape(batch, steps, -1)
            return self.encode(words, c, cases, lengths)

        def char_features(self, chars):
            """[words, width] char ids → [words, filters] max-pooled CNN features."""
            c = self.char_embed(chars).transpose(1, 2)
            # Padding characters score -inf-ish before the max so they never win the pool.
            c = self.char_cnn(c).masked_fill((chars == PAD).unsqueeze(1), -1e4)
            return c.max(dim=2).values.clamp(min=-1.0)  # empty (pad) tokens → -1

        def encode(self, words, c, cases, lengths):
            """Word vectors + char features + casing → BiLSTM → emissions."""
            batch, steps = cases.shape
            x = self.drop(torch.cat([words, c, self.case_embed(cases)], dim=2))
            positions = torch.arange(steps, device=words.device).unsqueeze(0)
            valid = positions < lengths.unsqueeze(1)
            reverse = torch.where(valid, lengths.unsqueeze(1) - 1 - positions, positions)
            index = reverse.unsqueeze(2).expand(-1, -1, x.shape[2])
            h0 = x.new_zeros((1, batch, self.hidden))
            forward, _ = self.fwd(x, (h0, h0))
            backward, _ = self.bwd(torch.gather(x, 1, index), (h0, h0))
            backward = torch.gather(backward, 1, reverse.unsqueeze(2).expand(-1, -1, self.hidden))
            return self.out(self.drop(torch.cat([forward, backward], dim=2)))

    return Tagger()


def serving_onnx(net):
    """The serving graph as an ONNX model, built from the trained weights.

    Same maths as the training graph (``net.forward``), laid out for onnxruntime:
    the char CNN runs once per distinct word of a batch (``word_chars``, ``char_index``:
    see ner_model.encode_serving_batch), and the two one-way LSTMs become ONE bidirectional
    ONNX LSTM given ``sequence_lens``, which reads each sentence backwards within its own
    length. The torch exporter instead traced the per-sentence reversal as gathers and
    masks around two LSTMs (about a quarter of the network's time in onnxruntime)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def weight(tensor) -> np.ndarray:
        return tensor.detach().float().numpy()

    hidden = net.hidden
    gates = np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in (0, 3, 1, 2)])  # torch ifgo → onnx iofc
    lstms = (net.fwd, net.bwd)
    # Char embedding then a width-3 convolution is linear in the one-hot characters, so it folds
    # into one [chars, filters] table per kernel offset: conv(p) = Σ_k table_k[char(p + k - 1)],
    # the bias inside the centre table. Three lookups replace the Conv. The pad character's
    # embedding row is zero, so its side tables are zero (the convolution's zero padding); its
    # centre row is -1e4, so a padding position never wins the max pool (training masks it
    # to -1e4) and an all-padding row pools to the same -1 floor.
    kernels = weight(net.char_cnn.weight)  # [filters, char_dim, 3]
    tables = [weight(net.char_embed.weight) @ kernels[:, :, k].T for k in range(3)]
    tables[1] = tables[1] + weight(net.char_cnn.bias)
    tables[1][PAD] = -1e4
    initializers = {
        **{f"char_table_{k}": table for k, table in enumerate(tables)},
        "case_table": weight(net.case_embed.weight),
        "lstm_w": np.stack([weight(m.weight_ih_l0)[gates] for m in lstms]),
        "lstm_r": np.stack([weight(m.weight_hh_l0)[gates] for m in lstms]),
        "lstm_b": np.stack([np.concatenate([weight(m.bias_ih_l0)[gates], weight(m.bias_hh_l0)[gates]])
                            for m in lstms]),
        "out_w": np.ascontiguousarray(weight(net.out.weight).T),
        "out_b": weight(net.out.bias),
        "floor": np.array(-1.0, dtype=np.float32),
        "flat_shape": np.array([0, 0, -1], dtype=np.int64),
        "pad_both_sides": np.array([0, 1, 0, 1], dtype=np.int64),
        "axis_1": np.array([1], dtype=np.int64),
        **{f"offset_{k}": np.array([k], dtype=np.int64) for k in range(3)},
        "stop_0": np.array([-2], dtype=np.int64),
        "stop_1": np.array([-1], dtype=np.int64),
        "stop_2": np.array([np.iinfo(np.int64).max], dtype=np.int64),
    }
    node = helper.make_node
    nodes = [
        node("Pad", ["word_chars", "pad_both_sides"], ["padded_chars"]),  # [distinct, width + 2], pad id 0
        *[node("Slice", ["padded_chars", f"offset_{k}", f"stop_{k}", "axis_1"], [f"chars_{k}"]) for k in range(3)],
        *[node("Gather", [f"char_table_{k}", f"chars_{k}"], [f"term_{k}"]) for k in range(3)],  # [distinct, width, filters]
        node("Sum", ["term_0", "term_1", "term_2"], ["conv"]),
        node("ReduceMax", ["conv"], ["pooled"], axes=[1], keepdims=0),
        node("Max", ["pooled", "floor"], ["word_char_features"]),  # empty (pad) word → -1, as in training
        node("Gather", ["word_char_features", "char_index"], ["char_features"]),  # [batch, steps, filters]
        node("Gather", ["case_table", "cases"], ["case_vectors"]),
        node("Concat", ["words", "char_features", "case_vectors"], ["features"], axis=2),
        node("Transpose", ["features"], ["steps_first"], perm=[1, 0, 2]),
        node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32),
        node("LSTM", ["steps_first", "lstm_w", "lstm_r", "lstm_b", "sequence_lens"], ["lstm_out"],
             direction="bidirectional", hidden_size=hidden),  # [steps, 2, batch, hidden]
        node("Transpose", ["lstm_out"], ["batch_first"], perm=[2, 0, 1, 3]),
        node("Reshape", ["batch_first", "flat_shape"], ["states"]),  # [batch, steps, forward ++ backward]
        node("MatMul", ["states", "out_w"], ["projected"]),
        node("Add", ["projected", "out_b"], ["emissions"]),
    ]
    inputs = [
        helper.make_tensor_value_info("words", TensorProto.FLOAT, ["batch", "steps", int(net.word_dim)]),
        helper.make_tensor_value_info("word_chars", TensorProto.INT64, ["distinct", "width"]),
        helper.make_tensor_value_info("char_index", TensorProto.INT64, ["batch", "steps"]),
        helper.make_tensor_value_info("cases", TensorProto.INT64, ["batch", "steps"]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
    ]
    outputs = [helper.make_tensor_value_info("emissions", TensorProto.FLOAT,
                                             ["batch", "steps", int(net.out.out_features)])]
    graph = helper.make_graph(nodes, "clinlake_ner", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="clinlake")
    model.ir_version = 8  # readable by onnxruntime releases older than the onnx package used to build it
    onnx.checker.check_model(model, full_check=True)
    return model


def iob_mask(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Constraint scores (0 allowed, NEG forbidden) for start→tag and tag→tag under IOB2."""
    def inside(tag: str) -> str | None:
        return tag[2:] if tag.startswith("I-") else None

    def entity(tag: str) -> str | None:
        return tag[2:] if tag[:2] in ("B-", "I-") else None

    start = np.array([NEG if inside(t) else 0.0 for t in tags])
    trans = np.array([[NEG if inside(b) and entity(a) != inside(b) else 0.0 for b in tags] for a in tags])
    return start, trans


def build_crf(tags: Sequence[str]):
    torch = _torch()
    nn = torch.nn
    start_mask, trans_mask = (torch.tensor(m, dtype=torch.float32) for m in iob_mask(tags))

    class CRF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            k = len(tags)
            self.start = nn.Parameter(torch.zeros(k))
            self.end = nn.Parameter(torch.zeros(k))
            self.trans = nn.Parameter(torch.zeros(k, k))
            self.register_buffer("start_mask", start_mask)
            self.register_buffer("trans_mask", trans_mask)

        def scores(self):
            """Start, end and transition scores with the IOB constraints folded in."""
            return self.start + self.start_mask, self.end, self.trans + self.trans_mask

        def nll(self, emissions, gold, mask):
            """Mean negative log-likelihood of gold paths: log Z (forward algorithm) - path score."""
            start, end, trans = self.scores()
            batch, steps, _ = emissions.shape
            rows = torch.arange(batch)
            maskf = mask.float()
            path = start[gold[:, 0]] + emissions[rows, 0, gold[:, 0]]
            alpha = start + emissions[:, 0]
            for t in range(1, steps):
                step = trans[gold[:, t - 1], gold[:, t]] + emissions[rows, t, gold[:, t]]
                path = path + step * maskf[:, t]
                nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
                alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
            last = gold[rows, mask.sum(1) - 1]
            path = path + end[last]
            log_z = torch.logsumexp(alpha + end, dim=1)
            return (log_z - path).mean()

    return CRF()


# ----------------------------------------------------------------------------- training

def char_vocabulary(examples: Sequence[Example], min_count: int = 2) -> dict[str, int]:
    counts = Counter(ch for words, _ in examples for w in words for ch in w[:MAX_CHARS])
    chars = sorted(ch for ch, n in counts.items() if n >= min_count)
    return {ch: i for i, ch in enumerate(chars, start=2)}  # 0 pad, 1 unknown


def batches(examples: Sequence[Example], max_pieces: int, rng: random.Random | None) -> list[list[int]]:
    """Indices of examples grouped by similar length, at most ~max_pieces padded pieces each;
    shuffled (lengths jittered, batch order random) when rng is given."""
    def key(i: int) -> float:
        return len(examples[i][0]) + (rng.random() * 2 if rng else 0)

    order = sorted(range(len(examples)), key=key)
    groups: list[list[int]] = []
    group: list[int] = []
    for i in order:
        if group and len(examples[i][0]) * (len(group) + 1) > max_pieces:
            groups.append(group)
            group = []
        group.append(i)
    if group:
        groups.append(group)
    if rng:
        rng.shuffle(groups)
    return groups


# (id(char map), id(embeddings)) → (char map, the WordFeatures memo over it and the embeddings)
_FEATURES: dict[tuple[int, int], WordFeatures] = {}


def word_features(embeddings: Embeddings, chars: dict[str, int]) -> WordFeatures:
    """One feature memo per (embeddings, char map) for the whole training run."""
    # The memo holds the char map and the embeddings, so their ids cannot be reused while it lives.
    key = (id(chars), id(embeddings))
    if key not in _FEATURES:
        _FEATURES[key] = WordFeatures(embeddings, chars)
    return _FEATURES[key]


def tensors(examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int], tag_ids: dict[str, int]):
    torch = _torch()
    feeds = encode_batch([w for w, _ in examples], word_features(embeddings, chars))
    inputs = {k: torch.from_numpy(v) for k, v in feeds.items()}
    gold = torch.zeros(inputs["cases"].shape, dtype=torch.long)
    for b, (_, tags) in enumerate(examples):
        gold[b, : len(tags)] = torch.tensor([tag_ids[t] for t in tags])
    return inputs, gold


def predict(net, crf, examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int],
            tags: Sequence[str]) -> list[list[str]]:
    """Viterbi tags (the runtime's NumPy decoder) for each example, with dropout off."""
    torch = _torch()
    net.eval()
    start, end, trans = (s.detach().double().numpy() for s in crf.scores())
    out: list[list[str]] = [[] for _ in examples]
    tag_ids = {t: i for i, t in enumerate(tags)}
    with torch.no_grad():
        for group in batches(examples, 8192, None):
            inputs, _ = tensors([examples[i] for i in group], embeddings, chars, tag_ids)
            scores = net(**inputs).double().numpy()
            paths = viterbi_batch(scores, inputs["lengths"].tolist(), start, end, trans)
            for i, path in zip(group, paths):
                out[i] = [tags[k] for k in path]
    return out


def strict_f1(examples: Sequence[Example], predicted: Sequence[Sequence[str]]) -> float:
    gold = [iob_spans(t) for _, t in examples]
    pred = [iob_spans(p) for p in predicted]
    return score_spans(gold, pred)["overall"]["f1"]


def fit(train_set: Sequence[Example], dev_sets: dict[str, Sequence[Example]], *, max_minutes: float, epochs: int,
        lr: float = 2e-3, batch_pieces: int = 1000, patience: int = 5, threads: int = 1, network: dict | None = None,
        embeddings_dir: Path = EMBEDDINGS):
    """Train a fresh network on ``train_set``; keep the epoch with the best mean (over the
    ``dev_sets``) strict devel F1. With no ``dev_sets`` (a refit on train+devel) run exactly
    ``epochs`` epochs and keep the last. ``network``: keyword arguments of :func:`build_network`
    (hidden, char_filters, dropout, ...). Returns (net, crf, tags, chars, embeddings, record)."""
    torch = _torch()
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    np.random.seed(SEED)
    if not (embeddings_dir / "vocab.txt").exists():
        build_embeddings(embeddings_dir)
    embeddings = Embeddings.load(embeddings_dir)
    tags = ["O"] + sorted({t for _, ts in train_set for t in ts} - {"O"}, key=lambda t: (t[2:], t[:2]))
    chars = char_vocabulary(train_set)
    network = dict(network or {})
    word_dim = int(embeddings.vectors.shape[1])
    net, crf = build_network(len(chars) + 2, len(tags), word_dim=word_dim, **network), build_crf(tags)
    optimizer = torch.optim.Adam(list(net.parameters()) + list(crf.parameters()), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0 / (1.0 + 0.05 * e))
    deadline = time.time() + max_minutes * 60
    best: dict = {"f1": -1.0, "epoch": 0, "state": None}
    history = []
    tag_ids = {t: i for i, t in enumerate(tags)}
    for epoch in range(1, epochs + 1):
        started = time.time()
        loss = run_epoch(net, crf, optimizer, batches(train_set, batch_pieces, rng), train_set, embeddings, chars,
                         tag_ids, deadline)
        scheduler.step()
        per_set = {name: strict_f1(dev, predict(net, crf, dev, embeddings, chars, tags))
                   for name, dev in dev_sets.items()}
        f1 = float(np.mean(list(per_set.values()))) if per_set else None
        history.append({"epoch": epoch, "loss": round(loss, 4), "dev_f1": None if f1 is None else round(f1, 4),
                        **({f"dev_f1_{k}": round(v, 4) for k, v in per_set.items()} if len(per_set) > 1 else {}),
                        "seconds": round(time.time() - started, 1)})
        log.info("epoch %d loss %.3f dev F1 %s (%.0f s)", epoch, loss, "-" if f1 is None else f"{f1:.4f}",
                 time.time() - started)
        if f1 is None:  # refit: nothing to select on, the last epoch is kept
            best = {"f1": None, "epoch": epoch, "state": None}
        elif f1 > best["f1"]:
            best = {"f1": f1, "epoch": epoch, "state": _copy_state(net, crf)}
        if (f1 is not None and epoch - best["epoch"] >= patience) or time.time() > deadline:
            break
    if best["state"] is not None:
        net.load_state_dict(best["state"][0])
        crf.load_state_dict(best["state"][1])
    record = {"best_epoch": best["epoch"], "dev_f1": None if best["f1"] is None else round(best["f1"], 4),
              "history": history, "max_minutes": max_minutes, "lr": lr, "batch_pieces": batch_pieces, "seed": SEED,
              "train_sentences": len(train_set), "refit_on_devel": not dev_sets, "network": network,
              "max_epochs": epochs, "patience": patience, "word_dim": word_dim}
    return net, crf, tags, chars, embeddings, record


def save_torch_state(model_dir: Path, net, crf, chars: dict[str, int], tags: Sequence[str], network: dict) -> None:
    """PyTorch weights under :func:`artifacts_dir` for benchmarks and re-export (not shipped),
    where :func:`load_torch` and :func:`finish` (the fp32 copy) look too."""
    torch = _torch()
    artifacts = artifacts_dir(model_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    torch.save({"net": net.state_dict(), "crf": crf.state_dict(), "n_chars": len(chars) + 2,
                "n_tags": len(tags), "network": network, "word_dim": int(net.word_dim)}, artifacts / "torch_state.pt")


def train(corpus: str, name: str, *, max_minutes: float, epochs: int, out_dir: Path, lr: float = 2e-3,
          batch_pieces: int = 1000, patience: int = 5, threads: int = 1, network: dict | None = None,
          embeddings_dir: Path = EMBEDDINGS, refit: bool = False) -> dict:
    """Train on ``corpus`` train, keep the epoch with the best strict devel F1, export,
    evaluate and write the model card. Returns the training record.

    ``refit``: the train-only model is exported, evaluated on devel and kept under
    :func:`selection_model_dir` (build/ner/<name>.selection/ for models/<name>; its devel
    scores are the held-out estimate the card reports);
    then a fresh network with the same seed and settings trains on train+devel for the
    selected number of epochs, and that one ships."""
    train_set, dev_set = load_split(corpus, "train"), load_split(corpus, "devel")
    options = dict(max_minutes=max_minutes, lr=lr, batch_pieces=batch_pieces, patience=patience, threads=threads,
                   network=network, embeddings_dir=embeddings_dir)
    return train_and_ship(train_set, {corpus: dev_set}, name=name, corpus=corpus, out_dir=out_dir, epochs=epochs,
                          options=options, refit=refit, finish_model=finish, sample=dev_set[:64])


def train_and_ship(train_set: Sequence[Example], dev_sets: dict[str, Sequence[Example]], *, name: str, corpus: str,
                   out_dir: Path, epochs: int, options: dict, refit: bool, finish_model: Callable[[Path], dict],
                   sample: Sequence[Example], extra: dict | None = None, info_extra: dict | None = None) -> dict:
    """What both trainers do once their data are loaded: :func:`fit` (epochs selected on
    ``dev_sets``), with ``refit`` the selection model exported and finished under
    :func:`selection_model_dir` and a fresh network fitted on train+devel for the selected
    epoch count; then export to ``out_dir``, PyTorch weights, ``finish_model`` (scores, int8,
    card) and models/README.md. ``info_extra`` joins the training record in model.json."""
    embeddings_dir = options.get("embeddings_dir", EMBEDDINGS)
    net, crf, tags, chars, embeddings, record = fit(train_set, dev_sets, epochs=epochs, **options)
    info = {"corpus": corpus, **record, **(info_extra or {})}
    if refit:
        selection_dir = selection_model_dir(out_dir)
        export(net, crf, name=name, corpus=corpus, tags=tags, chars=chars, out_dir=selection_dir, info=info,
               sample=sample, embeddings=embeddings, embeddings_dir=embeddings_dir, extra=extra)
        selected = finish_model(selection_dir)
        refit_set = list(train_set) + [ex for dev in dev_sets.values() for ex in dev]
        net, crf, tags, chars, embeddings, refit_record = fit(refit_set, {}, epochs=record["best_epoch"], **options)
        info = {"corpus": corpus, **refit_record, "max_epochs": epochs, **(info_extra or {}),
                "selection": selection_record(record, selected)}
    export(net, crf, name=name, corpus=corpus, tags=tags, chars=chars, out_dir=out_dir, info=info,
           sample=sample, embeddings=embeddings, embeddings_dir=embeddings_dir, extra=extra)
    save_torch_state(out_dir, net, crf, chars, tags, record["network"])
    finish_model(out_dir)
    if out_dir.parent == MODELS:
        (MODELS / "README.md").write_text(models_readme(), encoding="utf-8")
    return info


def selection_record(record: dict, selected: dict) -> dict:
    """What a refit model's model.json keeps of its train-only selection run (``record``: its
    training record; ``selected``: its finished model.json, with devel scores and quantisation)."""
    return {**{key: record[key] for key in ("best_epoch", "dev_f1", "history", "train_sentences")},
            "dev": selected["dev"], "quantization": selected["quantization"]}


def run_epoch(net, crf, optimizer, groups: list[list[int]], train_set: Sequence[Example], embeddings: Embeddings,
              chars: dict[str, int], tag_ids: dict[str, int], deadline: float) -> float:
    """One pass over the training batches (stops early at the deadline); mean CRF loss."""
    torch = _torch()
    net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total, steps = 0.0, 0
    for group in groups:
        inputs, gold = tensors([train_set[i] for i in group], embeddings, chars, tag_ids)
        mask = torch.arange(gold.shape[1]).unsqueeze(0) < inputs["lengths"].unsqueeze(1)
        loss = crf.nll(net(**inputs), gold, mask)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
        if time.time() > deadline:
            break
    return total / max(steps, 1)


def _copy_state(net, crf) -> tuple[dict, dict]:
    return ({k: v.clone() for k, v in net.state_dict().items()}, {k: v.clone() for k, v in crf.state_dict().items()})


# ----------------------------------------------------------------------------- export

def export(net, crf, *, name: str, corpus: str, tags: list[str], chars: dict[str, int], out_dir: Path,
           info: dict, sample: Sequence[Example], embeddings: Embeddings, embeddings_dir: Path = EMBEDDINGS,
           extra: dict | None = None) -> None:
    """Write model.onnx (the serving graph) + model.json; check onnxruntime reproduces PyTorch.

    model.json names ``embeddings_dir`` (where ``embeddings`` were loaded from) relative to out_dir."""
    import onnx

    net.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    # A full-precision copy kept by an earlier finish() belongs to an earlier model: drop it,
    # or finish() would restore it over this export.
    (artifacts_dir(out_dir) / "model.fp32.onnx").unlink(missing_ok=True)
    sentences = [words for words, _ in sample]
    onnx.save(serving_onnx(net), str(out_dir / "model.onnx"))
    start, end, trans = (s.detach().double().numpy() for s in crf.scores())
    meta = {
        "name": name, "corpus": corpus, "architecture": "BiLSTM-CNN-Char-CRF", "tags": tags,
        "labels": sorted({t[2:] for t in tags if t != "O"}),
        "chars": chars, "embeddings": os.path.relpath(embeddings_dir.resolve(), out_dir.resolve()), "max_chars": MAX_CHARS,
        "crf": {"start": start.round(5).tolist(), "end": end.round(5).tolist(), "transitions": trans.round(5).tolist()},
        "training": info,
        **(extra or {}),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    check_onnx(net, out_dir / "model.onnx", sentences, embeddings, chars)
    check_onnx(net, out_dir / "model.onnx", sentences[:3], embeddings, chars)  # another batch shape
    meta["version"] = model_version(out_dir)
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def check_onnx(net, onnx_path: Path, sentences: Sequence[Sequence[str]], embeddings: Embeddings,
               chars: dict[str, int], atol: float = 1e-3) -> float:
    """Largest |ONNX - PyTorch| emission difference on a batch of sentences (ONNX fed the
    serving inputs, PyTorch the training-graph inputs); raises when above atol."""
    import onnxruntime as ort

    torch = _torch()
    features = WordFeatures(embeddings, chars)
    inputs = {k: torch.from_numpy(v) for k, v in encode_batch(sentences, features).items()}
    with torch.no_grad():
        expected = net.eval()(**inputs).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["emissions"], encode_serving_batch(sentences, features))
    diff = max(float(np.abs(got[b, : len(s)] - expected[b, : len(s)]).max()) for b, s in enumerate(sentences))
    if diff > atol:
        raise RuntimeError(f"ONNX and PyTorch emissions differ by {diff:.2e} > {atol}")
    log.info("ONNX matches PyTorch (max abs diff %.2e)", diff)
    return diff


def load_torch(model_dir: Path):
    """(net, crf) rebuilt from a training run's torch_state.pt (kept under :func:`artifacts_dir`)."""
    torch = _torch()
    state = torch.load(artifacts_dir(model_dir) / "torch_state.pt", map_location="cpu")
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    network = {"word_dim": state.get("word_dim", 100), **state.get("network", {})}
    net = build_network(state["n_chars"], state["n_tags"], **network)
    crf = build_crf(meta["tags"])
    net.load_state_dict(state["net"])
    crf.load_state_dict(state["crf"])
    return net.eval(), crf.eval()


# ----------------------------------------------------------------------------- command line

def default_name(corpus: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", corpus.lower()).strip("_")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a BiLSTM-CNN-Char-CRF NER model on a "
                                     "shared corpus (train split; early stopping on devel) and export it to ONNX.")
    parser.add_argument("--corpus", required=True, choices=CORPORA)
    parser.add_argument("--name", help="model name (default: from the corpus, e.g. ncbi_disease)")
    parser.add_argument("--embeddings", type=Path, default=EMBEDDINGS, help="word vectors to train on (default: "
                        "the shipped models/embeddings; others, e.g. from `clinlake train embeddings --without-devel "
                        "--out DIR`, are for experiments with --out outside models/)")
    add_training_arguments(parser, max_minutes=12.0)
    return parser


def add_training_arguments(parser: argparse.ArgumentParser, *, max_minutes: float) -> None:
    """Options shared by ``clinlake train ner`` and ``clinlake train clinical``."""
    parser.add_argument("--out", type=Path, help="model directory (default: models/<name>); training artefacts "
                        "that are not shipped go under build/ner/<its name>/ (<its name>-<hash of its parent folder> "
                        "outside models/)")
    parser.add_argument("--max-minutes", type=float, default=max_minutes, help="wall-clock cap on training")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better devel F1")
    parser.add_argument("--lr", type=float, default=2e-3)
    # One thread by default: on a shared CPU, two OpenMP threads that wait on each other at
    # every barrier ran LSTM training ~15x slower than one (measured on this project's machine).
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--hidden", type=int, default=150, help="LSTM units per direction")
    parser.add_argument("--char-filters", type=int, default=50, help="character CNN filters")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--refit", action="store_true", help="after selecting the epoch count on devel, train "
                        "again on train+devel for that many epochs and ship that model (the card reports the "
                        "train-only model's devel scores; the train-only model stays under build/ner/<name>.selection/)")


NETWORK_OPTIONS = ("hidden", "char_filters", "dropout")


def network_options(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in NETWORK_OPTIONS}


def main(argv: Sequence[str], prog: str = "clinlake train ner") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = build_parser(prog).parse_args(argv)
    name = args.name or default_name(args.corpus)
    info = train(args.corpus, name, max_minutes=args.max_minutes, epochs=args.epochs, patience=args.patience,
                 out_dir=args.out or MODELS / name, lr=args.lr, threads=args.threads, network=network_options(args),
                 refit=args.refit, embeddings_dir=args.embeddings)
    print(json.dumps({k: v for k, v in info.items() if k != "history"}))
    return 0


def embeddings_main(argv: Sequence[str], prog: str = "clinlake train embeddings") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog=prog, description="Train the shared fastText word vectors "
                                     "(models/embeddings/) on the shared corpora and the NER train text. Every "
                                     "model reads them: retrain all models afterwards (a model refuses vectors "
                                     "of another size).")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dim", type=int, default=200, help="vector size")
    parser.add_argument("--max-words", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=EMBEDDINGS, help="output directory (default: models/embeddings)")
    parser.add_argument("--workers", type=int, default=1, help="fastText threads (default 1: the same vectors on "
                        "every run; more are faster but not reproducible)")
    parser.add_argument("--without-devel", action="store_true", help="leave the five NER corpora's devel sentences "
                        "out of the shared text (which holds nearly all of them), to measure what they are worth on "
                        "devel F1; the vocabulary stays the same")
    args = parser.parse_args(argv)
    build_embeddings(args.out, epochs=args.epochs, dim=args.dim, max_words=args.max_words, workers=args.workers,
                     without_devel=args.without_devel)
    return 0


# ----------------------------------------------------------------------------- finishing

PUBLISHED_F1 = {"NCBI-disease": 89.13, "BC5CDR": 89.73, "AnatEM": 89.13, "BioNLP13CG": 85.58, "LINNAEUS": 86.26}
LICENCES = {  # of the training data, as redistributed by MTL-Bioinformatics-2016 (Crichton et al. 2017)
    "NCBI-disease": "NCBI disease corpus (Doğan et al. 2014), released by NCBI as a public resource, free to use",
    "BC5CDR": "BioCreative V CDR corpus (Li et al. 2016), freely available for research use",
    "AnatEM": "AnatEM (Pyysalo & Ananiadou 2014), CC BY-SA 3.0",
    "BioNLP13CG": "BioNLP Shared Task 2013 Cancer Genetics (Pyysalo et al. 2015), CC BY-SA 3.0",
    "LINNAEUS": "LINNAEUS (Gerner et al. 2010), CC BY 3.0",
}


def quantize_dynamic_copy(full: Path, small: Path) -> None:
    """Write the int8 dynamic quantisation of ``full`` to ``small``. LSTM and the output
    projection only: int8 Conv (ConvInteger) is slower than fp32 Conv in onnxruntime on CPU
    for these small char convolutions."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(full), str(small), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM", "MatMul", "Gemm"])


def quantize_if_it_holds(model_dir: Path, dev_f1: float, tolerance: float) -> dict:
    """Replace model.onnx by its int8 dynamic quantisation when strict devel F1 drops by at
    most ``tolerance`` (absolute); returns what was tried and decided."""
    from clinlake.pipelines.evaluation.ner import evaluate_model
    from clinlake.pipelines.engine.ner.model import NerModel

    full, small = model_dir / "model.onnx", artifacts_dir(model_dir) / "model.int8.onnx"
    small.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic_copy(full, small)
    candidate = model_dir / "_int8"
    candidate.mkdir(exist_ok=True)
    (candidate / "model.onnx").write_bytes(small.read_bytes())
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    meta["embeddings"] = "../" + meta["embeddings"]  # one level deeper
    (candidate / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    corpus = meta["corpus"]
    f1 = evaluate_model(NerModel(candidate), SHARED / "ner" / corpus / "devel.tsv", raw_text=False,
                        abbreviation_reach=None)["tokens"]["overall"]["f1"]
    for path in (candidate / "model.onnx", candidate / "model.json"):
        path.unlink()
    candidate.rmdir()
    keep = f1 >= dev_f1 - tolerance
    if keep:
        (artifacts_dir(model_dir) / "model.fp32.onnx").write_bytes(full.read_bytes())
        small.replace(full)
    else:
        small.unlink()
    return {"tried": "int8 dynamic", "dev_f1_fp32": dev_f1, "dev_f1_int8": f1, "kept": keep}


def tokens_per_second(model, sequences: Sequence[Sequence[str]], seconds: float = 10.0) -> float:
    """End-to-end tagging speed (features + ONNX + Viterbi + marginals) in pieces per second."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for seq, _ in zip(sequences, model.tag(sequences)):
            done += len(seq)
    return done / (time.perf_counter() - started)


def finish(model_dir: Path, *, quantize: bool = True, tolerance: float = 0.002) -> dict:
    """Evaluate on devel (tokens and raw text), optionally quantise, time on one core,
    write MODEL_CARD.md and the final version. Re-runnable: ``clinlake train card``."""
    os.environ["OMP_NUM_THREADS"] = "1"  # one core, as reported on the card
    from clinlake.pipelines.evaluation.ner import evaluate_model
    from clinlake.pipelines.engine.ner.model import NerModel

    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    devel = SHARED / "ner" / meta["corpus"] / "devel.tsv"
    kept = restore_full_precision(model_dir, meta)
    report = evaluate_model(NerModel(model_dir), devel)
    quant = kept or {"tried": "none", "kept": False}
    if quantize and not kept:  # decided on the model's own (sentence by sentence) F1
        quant = quantize_if_it_holds(model_dir, report["model_alone"]["tokens"]["overall"]["f1"], tolerance)
        if quant["kept"]:
            report = evaluate_model(NerModel(model_dir), devel)
    sample = [words for words, _ in load_split(meta["corpus"], "devel")[:500]]
    speed = tokens_per_second(NerModel(model_dir), sample)
    meta["dev"] = {key: report[key] for key in ("tokens", "raw_text", "abbreviation_reach", "model_alone")}
    meta["quantization"] = quant
    meta["speed_pieces_per_s_1_thread"] = round(speed)
    return write_meta_and_card(model_dir, meta, model_card)


def restore_full_precision(model_dir: Path, meta: dict) -> dict | None:
    """Before (re-)quantising: put the full-precision export kept by an earlier run back as
    model.onnx. When it is not there (build/ is not shipped) but model.onnx is already int8,
    return the model's quantisation record instead: the caller then scores the model as it
    is rather than quantising an int8 model a second time."""
    fp32 = artifacts_dir(model_dir) / "model.fp32.onnx"
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
    (model_dir / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    meta["version"] = model_version(model_dir)
    (model_dir / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (model_dir / "MODEL_CARD.md").write_text(card(model_dir, meta), encoding="utf-8")
    return meta


def _vector_size(embeddings_dir: Path) -> int:
    return int(np.load(embeddings_dir / "vectors.npy", mmap_mode="r").shape[1])


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def _score_rows(result: dict) -> list[str]:
    rows = [("**overall**", result["overall"]), *result["per_type"].items()]
    return [f"| {name} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {100 * r['f1']:.2f} | "
            f"{r['gold']} |" for name, r in rows]


TRAINING_FLAGS = (("max_epochs", "--epochs", 40), ("patience", "--patience", 5))  # record key, flag, default


def training_flags(training: dict) -> str:
    """The command-line flags that repeat a training record's options, defaults left out (the
    word vector size is not one: it comes from the shared embeddings)."""
    network = training.get("network") or {}
    flags = "".join(f" --{key.replace('_', '-')} {value}" for key, value in network.items() if key in NETWORK_OPTIONS)
    flags += "".join(f" {flag} {training[key]}" for key, flag, default in TRAINING_FLAGS
                     if training.get(key, default) != default)
    return flags + (" --refit" if training.get("refit_on_devel") else "")


def devel_estimate(meta: dict) -> dict:
    """The held-out devel scores of a model: its own, or, when the shipped model was refit on
    train+devel (its own devel scores saw the data), those of the train-only selection run."""
    selection = meta["training"].get("selection")
    return selection["dev"] if selection else meta["dev"]


def model_card(model_dir: Path, meta: dict) -> str:
    corpus, training, dev = meta["corpus"], meta["training"], devel_estimate(meta)
    selection = training.get("selection")
    network = training.get("network") or {}
    f1 = 100 * dev["tokens"]["overall"]["f1"]
    target = PUBLISHED_F1[corpus]
    verdict = ("at or above" if f1 >= target else f"**{target - f1:.2f} points below**")
    quant = meta["quantization"]
    precision = "int8 (dynamic quantisation)" if quant.get("kept") else "fp32"
    embeddings = (model_dir / meta["embeddings"]).resolve()
    lines = [
        f"# {meta['name']} — {corpus} NER (BiLSTM-CNN-Char-CRF, ONNX)",
        "",
        f"Version `{meta['version']}` · labels: {', '.join(meta['labels'])}",
        "",
        "## Data and licence",
        *(_refit_lines(corpus, training, meta["dev"]) if selection else [
            f"- Trained on the **train** split of {corpus} (`../shared/data/ner/{corpus}/train.tsv`, "
            f"{training['train_sentences']} sentences); epochs selected by strict entity F1 on **devel**. "
            "Not refit on train+devel (whether a refit pays for a corpus was checked on devel halves: the README's "
            "\"When a refit pays\"). The test split was never used."]),
        f"- Licence of the training corpus: {LICENCES[corpus]}. Redistributed by the MTL-Bioinformatics-2016 "
        "collection (Crichton et al. 2017) under the original licence; check it before commercial use.",
        f"- Word vectors (shared by all models, `models/embeddings/`): fastText skip-gram, {_vector_size(embeddings)}-d, "
        "15 epochs, trained here (`clinlake train embeddings`) on `../shared/data/corpus/biomedical_sentences.txt`, "
        "`health_text.txt` (test sentences removed upstream) and the words of the five NER train splits "
        "(no labels). `biomedical_sentences.txt` also holds nearly all devel sentences of the five corpora, "
        "unlabelled, so the vectors have seen devel text but no test text, and devel F1 leans optimistic (the "
        "README's \"Devel text in the word vectors\"). Every devel word is in the shipped vocabulary, with a "
        "vector composed from its character n-grams where fastText never saw it.",
        "",
        "## Architecture",
        f"Frozen shared fastText vectors (fp16) + character CNN (25-d, {network.get('char_filters', 50)} filters, "
        f"width 3) + casing embedding (8-d) → dropout {network.get('dropout', 0.5)} → BiLSTM "
        f"2×{network.get('hidden', 150)} → linear → linear-chain CRF with IOB2 constraints, NumPy Viterbi. "
        "Tokens are the pipeline tokenizer's tokens split into corpus-style pieces (letter/digit runs, single "
        "other characters). Entity confidence = mean CRF marginal probability of the chosen tags.",
        f"Weights: {precision} ({quant.get('tried')} tried: devel F1 fp32 "
        f"{100 * quant.get('dev_f1_fp32', 0):.2f}, int8 {100 * quant.get('dev_f1_int8', 0):.2f}"
        + ("; devel is in the refit's training data, so this checks only that int8 keeps its outputs)."
           if selection else ").")
        + (" Dynamic quantisation scales activations per onnxruntime batch, so a sentence's scores shift slightly "
           "with the sentences batched with it (on the five devel sets, network batches of 512 to 4,096 pieces "
           "moved F1 by at most 0.16)." if quant.get("kept") else ""),
        "",
        "## Devel scores (strict, entity level, conlleval semantics)",
        f"Overall F1 **{f1:.2f}** vs the published Spark NLP *test* F1 {target:.2f}: {verdict}. "
        f"Best epoch {(selection or training)['best_epoch']} of {len((selection or training)['history'])} "
        f"(early stopping with patience {training.get('patience', 5)} "
        f"or the {training['max_minutes']:g}-minute wall-clock cap, one CPU thread on a shared machine)."
        + (" These are the train-only selection model's scores (held out); the shipped refit has seen devel."
           if selection else ""),
        *([] if f1 >= target else [
            "",
            f"Why below: the word vectors are frozen {_vector_size(embeddings)}-d fastText vectors trained on ~8M "
            "tokens of shared text "
            "(the paper used embeddings trained on far larger biomedical corpora), training had minutes of one "
            "CPU core. Devel and test F1 also differ.",
        ]),
        "",
        "| type | P | R | F1 | gold entities |",
        "|---|---|---|---|---|",
        *_score_rows(dev["tokens"]),
        "",
        f"Raw text through clinlake's own sentence splitter and tokenizer (corpus tokens joined by spaces): "
        f"F1 {100 * dev['raw_text']['overall']['f1']:.2f} "
        f"(P {100 * dev['raw_text']['overall']['precision']:.2f}, R {100 * dev['raw_text']['overall']['recall']:.2f}).",
        *_abbreviation_lines(dev),
        "",
        "## Size and speed",
        f"- `model.onnx` {_size_mb(model_dir / 'model.onnx'):.1f} MB, `model.json` "
        f"{_size_mb(model_dir / 'model.json'):.2f} MB; shared embeddings "
        f"{sum(_size_mb(p) for p in embeddings.iterdir()):.1f} MB (counted once for all models).",
        f"- {meta['speed_pieces_per_s_1_thread']:,} tokens/s on one core (onnxruntime, 1 thread, end to end: features, "
        "network, Viterbi and marginals; measured on a shared machine, so a lower bound). "
        "`benchmarks/ner_speed.py` compares onnxruntime with PyTorch.",
        "",
        "## Retrain",
        "```bash",
        f"clinlake train ner --corpus {corpus} --name {meta['name']} --max-minutes {training['max_minutes']:g}"
        + training_flags(training),
        "```",
        f"(`pip install -e '.[train]'`; seed {training['seed']}; writes `models/{meta['name']}/`, evaluates on devel, "
        "quantises if F1 holds and rewrites this card.) Score any token<TAB>tag file with "
        f"`clinlake evaluate ner --model {meta['name']} --conll FILE --predictions OUT.tsv`.",
        "",
        *(["Selection run history (epoch, mean loss, devel F1): "
           + ", ".join(f"{h['epoch']}: {h['loss']:.2f} / {100 * h['dev_f1']:.2f}" for h in selection["history"]),
           "",
           "Refit history (epoch, mean loss on train+devel): "
           + ", ".join(f"{h['epoch']}: {h['loss']:.2f}" for h in training["history"])] if selection else [
            "Training history (epoch, mean loss, devel F1): "
            + ", ".join(f"{h['epoch']}: {h['loss']:.2f} / {100 * h['dev_f1']:.2f}" for h in training["history"])]),
        "",
    ]
    return "\n".join(lines)


def _abbreviation_lines(dev: dict) -> list[str]:
    """Model-card lines on the abbreviation propagation the scores above include."""
    alone = dev.get("model_alone")
    if not alone:
        return []
    return [
        "",
        "These scores include document-level abbreviation propagation, as the pipeline's NER stage applies it "
        "within a note (`pipelines/engine/short_forms.py`): \"long form (SF)\" with the long form tagged makes SF "
        "an entity of its label from the definition on. The devel file marks no document boundaries, so a definition "
        f"reaches the {dev['abbreviation_reach']} sentences after it (`clinlake evaluate ner --abbreviation-reach`). "
        f"The model alone, sentence by sentence: F1 **{100 * alone['tokens']['overall']['f1']:.2f}** "
        f"(P {100 * alone['tokens']['overall']['precision']:.2f}, R {100 * alone['tokens']['overall']['recall']:.2f}); "
        f"raw text {100 * alone['raw_text']['overall']['f1']:.2f}.",
    ]


def _refit_lines(corpus: str, training: dict, own_dev: dict) -> list[str]:
    """Model-card lines on the data of a model refit on train+devel."""
    selection = training["selection"]
    return [
        f"- Trained on the **train and devel** splits of {corpus} (`../shared/data/ner/{corpus}/`, "
        f"{training['train_sentences']} sentences) for {training['best_epoch']} epochs: the epoch count that a "
        f"train-only run (same seed and settings, {selection['train_sentences']} sentences) selected by strict "
        "entity F1 on devel. The devel scores below are that train-only model's, the held-out estimate; the "
        f"shipped model saw devel in training (its own devel F1, {100 * own_dev['tokens']['overall']['f1']:.2f}, "
        "estimates nothing). The test split was never used.",
    ]


def models_readme(models: Path = MODELS) -> str:
    """models/README.md: every trained model with its devel F1 next to the published target."""
    rows, train_only = [], []
    for name in ("ncbi_disease", "bc5cdr", "anatem", "bionlp13cg", "linnaeus"):
        path = models / name / "model.json"
        if not path.exists():
            rows.append(f"| `{name}` | – | not trained | | | | | |")
            continue
        meta = json.loads(path.read_text(encoding="utf-8"))
        if "dev" not in meta:  # exported, not yet evaluated (a training run in progress)
            rows.append(f"| `{name}` | {meta['corpus']} | – | being trained | | | | |")
            continue
        dev, target = devel_estimate(meta), PUBLISHED_F1[meta["corpus"]]
        is_refit = bool(meta["training"].get("selection"))
        refit = " (refit on train+devel)" if is_refit else ""
        if not is_refit:
            train_only.append(name)
        f1 = 100 * dev["tokens"]["overall"]["f1"]
        alone = dev.get("model_alone", dev)
        rows.append(f"| [`{name}`]({name}/MODEL_CARD.md){refit} | {meta['corpus']} | **{f1:.2f}** | "
                    f"{100 * alone['tokens']['overall']['f1']:.2f} | "
                    f"{100 * dev['raw_text']['overall']['f1']:.2f} | {target:.2f} | {f1 - target:+.2f} | "
                    f"{_size_mb(models / name / 'model.onnx'):.1f} MB "
                    f"{'int8' if meta['quantization'].get('kept') else 'fp32'} |")
    embeddings = sum(_size_mb(p) for p in (models / "embeddings").iterdir())
    train_only_note = "" if not train_only else (
        f"; {', '.join(f'`{n}`' for n in train_only)} ship{'s' if len(train_only) == 1 else ''} the train-only run")
    return "\n".join([
        "# Shipped NER models",
        "",
        "BiLSTM-CNN-Char-CRF taggers (Kocaman & Talby 2020 style) trained with `clinlake train ner` on the train "
        "splits under `../shared/data/ner/` (and devel, for a model refit on train+devel), exported to ONNX and "
        "served with onnxruntime "
        "(`pipelines/engine/ner/model.py`). Use them in a job config as `pipeline.ner: [{model: ncbi_disease}]`.",
        "",
        "Scores are **devel** strict entity-level F1 (conlleval semantics; `clinlake evaluate ner`). The target is the "
        "published Spark NLP **test** F1, so the comparison is indicative only: dev and test differ, and we never "
        "looked at test. *Raw text* = the devel tokens joined by spaces and re-tokenised by clinlake's own "
        "tokenizer, scored on the corpus tokens. A model *refit on train+devel* ships a network trained on both "
        "splits for the epoch count selected on devel; its row gives the devel scores of the train-only run that "
        "made that selection (the shipped model has seen devel). Whether a refit pays was checked on devel halves "
        f"(the README's \"When a refit pays\"){train_only_note}. *Devel F1* and *raw-text F1* include "
        "document-level abbreviation propagation (`pipelines/engine/short_forms.py`, on in every NER stage by default: "
        "\"long form (SF)\" with the long form tagged makes SF an entity of its label from the definition on; a devel "
        f"file has no document boundaries, so a definition reaches the next {ABBREVIATION_REACH} sentences); "
        "*model alone* is the tagger sentence by sentence.",
        "",
        "| model | corpus | devel F1 | model alone | raw-text F1 | published test F1 | gap | model.onnx |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"All models share `embeddings/` (fastText {_vector_size(models / 'embeddings')}-d word vectors, fp16, "
        f"{embeddings:.1f} MB). "
        "Each directory holds `model.onnx`, `model.json` (tags, character map, CRF transitions, devel scores, "
        "version) and `MODEL_CARD.md`.",
        "",
        "Retrain one model (each card gives its own command), e.g. `clinlake train ner --corpus BC5CDR "
        "--name bc5cdr --max-minutes 25 --epochs 80 --patience 10 --refit` "
        "(needs `pip install -e '.[train]'`); rewrite cards and this table: `clinlake train card NAME ...`.",
        "",
        *clinical_models_section(models),
    ])


CLINICAL_MODELS = ("clinical_core", "maccrobat", "ade")


def clinical_models_section(models: Path = MODELS) -> list[str]:
    """The clinical (BRAT-trained) models of models/README.md: document-level devel scores."""
    rows = []
    for name in CLINICAL_MODELS:
        path = models / name / "model.json"
        if not path.exists():
            continue
        meta = json.loads(path.read_text(encoding="utf-8"))
        if "dev" not in meta:  # exported, not yet evaluated (a training run in progress)
            continue
        refit = " (refit on train+devel)" if meta["training"].get("selection") else ""
        for corpus, report in devel_estimate(meta).items():
            labels = ", ".join(meta["labels"]) if len(meta["labels"]) <= 4 else f"{len(meta['labels'])} types (see card)"
            rows.append(f"| [`{name}`]({name}/MODEL_CARD.md){refit} | {labels} | {corpus} | "
                        f"**{100 * report['strict']['micro']['f1']:.2f}** | {100 * report['lenient']['micro']['f1']:.2f} | "
                        f"{_size_mb(models / name / 'model.onnx'):.1f} MB "
                        f"{'int8' if meta['quantization'].get('kept') else 'fp32'} |")
    if not rows:
        return []
    return [
        "## Clinical models (raw documents in, character offsets out)",
        "",
        "Trained with `clinlake train clinical` on the train documents of MACCROBAT, Chia or PHEE "
        "(`../shared/data/clinical/`) through clinlake's own sentence splitter and tokenizer; gold types mapped by "
        "the label maps in `conf/label_maps/`. Scores: `clinlake evaluate brat` on the **devel** documents, micro "
        "F1 over the mapped types, strict (exact offsets and type) and lenient (overlap and type). A model refit on "
        "train+devel ships a network trained on both splits for the epoch count selected on devel; its rows give "
        "the devel scores of the train-only run that made that selection.",
        "",
        "| model | labels | devel corpus | strict F1 | lenient F1 | model.onnx |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "`clinical_core` is the default NER stage of `conf/local.yaml`. Side by side with a spaCy NER pipeline trained "
        "on the same documents: `benchmarks/clinical_peers.py`.",
        "",
    ]


def reexport(model_dir: Path) -> None:
    """Export a trained model again from its PyTorch weights (build/ner/<name>/torch_state.pt)
    with the current exporter, keeping its tags, characters and training record."""
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    net, crf = load_torch(model_dir)
    embeddings_dir = (model_dir / meta["embeddings"]).resolve()
    embeddings = Embeddings.load(embeddings_dir)
    export(net, crf, name=meta["name"], corpus=meta["corpus"], tags=meta["tags"], chars=meta["chars"],
           out_dir=model_dir, info=meta["training"], sample=_reexport_sample(meta), embeddings=embeddings,
           embeddings_dir=embeddings_dir, extra={k: meta[k] for k in ("kind", "label_maps") if k in meta})


def _reexport_sample(meta: dict) -> list[Example]:
    if meta.get("kind") != "brat":
        return load_split(meta["corpus"], "devel")[:64]
    from clinlake.pipelines.training.clinical import ABBREVIATIONS, corpus_dir
    from clinlake.pipelines.corpora.clinical import load_brat_split
    from clinlake.pipelines.engine.text import TextSplitter

    splitter = TextSplitter.from_file(ABBREVIATIONS)
    return [ex for corpus in meta["label_maps"] for ex in load_brat_split(corpus_dir(corpus, "devel"), {}, splitter)[:32]]


def rescore_selection(model_dir: Path, *, quantize: bool = True, finish: Callable[..., dict] = finish) -> None:
    """Evaluate a refit model's train-only selection model again (kept under
    build/ner/<name>.selection/ by training) with ``finish`` (this module's, or the clinical
    trainer's) and store its devel scores in model.json."""
    selection_dir = selection_model_dir(model_dir)
    if not (selection_dir / "model.onnx").exists():
        raise FileNotFoundError(f"{selection_dir} is missing: the devel scores of a refit model come from its "
                                "train-only selection model; retrain with --refit to rebuild it")
    selected = finish(selection_dir, quantize=quantize)
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    meta["training"]["selection"].update(dev=selected["dev"], quantization=selected["quantization"])
    (model_dir / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def card_main(argv: Sequence[str], prog: str = "clinlake train card") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog=prog, description="Evaluate a trained model on devel, quantise it "
                                     "when F1 holds, time it and (re)write its MODEL_CARD.md.")
    parser.add_argument("names", nargs="+", help="model names under models/")
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--card-only", action="store_true", help="only rewrite MODEL_CARD.md, model.json's version "
                        "and models/README.md from model.json (no evaluation)")
    parser.add_argument("--reexport", action="store_true", help="export the ONNX model again from the PyTorch "
                        "weights kept under build/ner/<name>/ first")
    args = parser.parse_args(argv)
    for name in args.names:
        meta = json.loads((MODELS / name / "model.json").read_text(encoding="utf-8"))
        if meta.get("kind") == "brat":  # a clinical model: document-level evaluation and card
            from clinlake.pipelines.training import clinical as module
        else:
            module = sys.modules[__name__]
        if args.card_only:  # model.json is rewritten too: its version follows any edit of its record
            write_meta_and_card(MODELS / name, meta, module.model_card)
            continue
        if args.reexport:
            reexport(MODELS / name)
        if meta["training"].get("selection"):
            rescore_selection(MODELS / name, quantize=not args.no_quantize, finish=module.finish)
        meta = module.finish(MODELS / name, quantize=not args.no_quantize)
        print(json.dumps({"name": name, "dev": meta["dev"], "quantization": meta["quantization"]})[:2000])
    (MODELS / "README.md").write_text(models_readme(), encoding="utf-8")
    return 0

"""Serving of the trained biomedical NER taggers (BiLSTM-CNN-Char + CRF) with onnxruntime.

Runtime only: numpy + onnxruntime, never torch (training lives in :mod:`pipelines.train_ner`).

A model directory (``models/<name>/``) holds

* ``model.onnx`` — the network: shared word vectors + character CNN + casing → BiLSTM →
  per-tag emission scores ``[batch, tokens, tags]``;
* ``model.json`` — tags, character map, CRF transitions (start/end/pairwise, IOB constraints
  already folded in), the name of the shared embedding directory and the version.

The word vectors live once for all models in ``models/embeddings/`` (``vectors.npy`` fp16 +
``vocab.txt``) and are looked up here in numpy, so the five ONNX graphs stay small.

Tokens. The pipeline's tokenizer keeps ``3.5``, ``b.i.d.`` or ``'s`` as one token; the NER
corpora split every punctuation character (``3 . 5``, ``Parkinson ' s``). :func:`model_pieces`
splits each pipeline token into corpus-style pieces (runs of letters/digits, single other
characters); the trainer applies the same function to the corpus tokens, so training and
serving see the same kind of token. Entity offsets are piece offsets: still exact slices of
the original text.

Confidence of an entity = the mean, over its pieces, of the CRF marginal probability
(forward-backward) of the tag Viterbi chose for that piece. In [0, 1].
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .short_forms import propagate
from .types import Entity, Sentence

__all__ = [
    "NerModel", "NerStage", "WordFeatures", "encode_batch", "encode_serving_batch", "load_ner_stage", "load_model",
    "model_pieces", "word_key", "case_id", "viterbi", "viterbi_batch", "marginals", "marginals_batch", "iob_spans",
    "windows", "CrfDecoder",
]

PIECE = re.compile(r"[^\W_]+|\S")
_DIGIT = re.compile(r"\d")
MAX_CHARS = 20  # characters per token seen by the char CNN (longer words are cut; why: bounded input)
WINDOW = 256  # longest piece sequence tagged in one go; longer sentences are windowed
OVERLAP = 32  # pieces of context on each side of a window that are tagged but not kept
BATCH_PIECES = 4096  # padded pieces per CRF decoding batch
NETWORK_PIECES = 1024  # padded pieces per onnxruntime call

PAD, UNK = 0, 1
CASES = ("pad", "lower", "title", "upper", "mixed", "numeric", "has_digit", "punct", "other")


# ----------------------------------------------------------------------------- featurisation
# Shared with the trainer: whatever is changed here changes what the models were trained on.

def model_pieces(tokens: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Corpus-style pieces (start, end, text) of (start, end, text) tokens, in order."""
    pieces: list[tuple[int, int, str]] = []
    for start, _end, text in tokens:
        pieces += [(start + m.start(), start + m.end(), m.group()) for m in PIECE.finditer(text)]
    return pieces


def word_key(word: str) -> str:
    """The embedding key of a word: lower case, every digit 0 (casing is a separate feature)."""
    return _DIGIT.sub("0", word.lower())


def case_id(word: str) -> int:
    if word.isdigit():
        return CASES.index("numeric")
    if not any(ch.isalnum() for ch in word):
        return CASES.index("punct")
    if any(ch.isdigit() for ch in word):
        return CASES.index("has_digit")
    if word.islower():
        return CASES.index("lower")
    if word.isupper():
        return CASES.index("upper")
    if word[0].isupper() and word[1:].islower():
        return CASES.index("title")
    return CASES.index("mixed") if word.isalpha() else CASES.index("other")


@dataclass(frozen=True)
class Embeddings:
    """The shared word vectors: row 0 = padding (zeros), row 1 = unknown word."""

    vocab: Mapping[str, int]
    vectors: np.ndarray  # [words, dim]: float16 on disk, float32 once loaded

    @classmethod
    def load(cls, directory: Path) -> "Embeddings":
        """Vocabulary and vectors, widened to float32 in memory once per process (exact; a
        batch's rows are then gathered straight into the network's input type)."""
        words = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
        vectors = np.load(directory / "vectors.npy").astype(np.float32)
        return cls({w: i for i, w in enumerate(words) if w}, vectors)


class WordFeatures:
    """Per-word features for one embedding table and one char map, memoised in NumPy rows.

    Words repeat, and the Python work per character (char ids, casing, embedding key) is the
    cost of featurisation; each distinct word is featurised once, then a batch is one dict
    lookup per token plus NumPy gathers. The memo is emptied when it holds ROWS_MAX words."""

    ROWS_MAX = 200_000  # bounded memory: under 50 MB (rows grow by doubling)

    def __init__(self, embeddings: Embeddings, char_map: Mapping[str, int]) -> None:
        self.embeddings, self.char_map = embeddings, char_map
        self.clear()

    def clear(self) -> None:
        self.index: dict[str, int] = {}
        self.word_ids = np.zeros(1024, dtype=np.int64)
        self.cases = np.zeros(1024, dtype=np.int64)
        self.chars = np.zeros((1024, MAX_CHARS), dtype=np.int64)

    def rows(self, words: Sequence[str]) -> np.ndarray:
        """Memo row of each word (featurising the unseen ones)."""
        if len(self.index) + len(words) > self.ROWS_MAX:
            self.clear()
        index = self.index
        rows = [index.get(w) for w in words]
        if None in rows:  # unseen words (a word can repeat within the batch)
            rows = [index[w] if w in index else self._add(w) for w in words]
        return np.array(rows, dtype=np.int64)

    def _add(self, word: str) -> int:
        row = self.index[word] = len(self.index)
        if row == len(self.word_ids):  # grow by doubling
            self.word_ids, self.cases = np.resize(self.word_ids, 2 * row), np.resize(self.cases, 2 * row)
            self.chars = np.concatenate([self.chars, np.zeros_like(self.chars)])
        ids = [self.char_map.get(ch, UNK) for ch in word[:MAX_CHARS]]
        self.word_ids[row] = self.embeddings.vocab.get(word_key(word), UNK)
        self.cases[row] = case_id(word)
        self.chars[row, : len(ids)] = ids
        return row


def encode_batch(sentences: Sequence[Sequence[str]], features: WordFeatures) -> dict[str, np.ndarray]:
    """Padded training-graph inputs for piece sequences: word vectors, char ids per token
    [batch, steps, width], case ids, lengths.

    Char ids are padded to the batch's longest word (at most MAX_CHARS): the char CNN
    max-pools over non-padding positions only, so the width changes the cost, not the result."""
    flat, where, shape = _flatten(sentences)
    rows = features.rows(flat)
    width = _char_width(flat)
    word_ids, cases = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    chars = np.zeros(shape + (width,), dtype=np.int64)
    word_ids[where], cases[where], chars[where] = features.word_ids[rows], features.cases[rows], \
        features.chars[rows, :width]
    return {
        "words": features.embeddings.vectors[word_ids].astype(np.float32, copy=False),
        "chars": chars,
        "cases": cases,
        "lengths": np.array([len(s) for s in sentences], dtype=np.int64),
    }


def encode_serving_batch(sentences: Sequence[Sequence[str]], features: WordFeatures) -> dict[str, np.ndarray]:
    """Inputs of the exported (serving) graph: like :func:`encode_batch`, but characters come
    once per *distinct* word (``word_chars`` [distinct + 1, width], row 0 all padding) and
    ``char_index`` [batch, steps] points each token at its row. The char CNN then runs once
    per distinct word instead of once per padded position (it was half the inference time)."""
    flat, where, shape = _flatten(sentences)
    rows = features.rows(flat)
    width = _char_width(flat)
    distinct, position = np.unique(rows, return_inverse=True)
    word_ids, cases, char_index = (np.zeros(shape, dtype=np.int64) for _ in range(3))
    word_ids[where], cases[where], char_index[where] = features.word_ids[rows], features.cases[rows], position + 1
    word_chars = np.zeros((len(distinct) + 1, width), dtype=np.int64)
    word_chars[1:] = features.chars[distinct, :width]
    return {
        "words": features.embeddings.vectors[word_ids].astype(np.float32, copy=False),
        "word_chars": word_chars,
        "char_index": char_index,
        "cases": cases,
        "lengths": np.array([len(s) for s in sentences], dtype=np.int64),
    }


def _flatten(sentences: Sequence[Sequence[str]]) -> tuple[list[str], tuple[np.ndarray, np.ndarray], tuple[int, int]]:
    """All words in order, their (sentence, position) index arrays, and the padded shape."""
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    flat = [w for s in sentences for w in s]
    rows = np.repeat(np.arange(len(sentences)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return flat, (rows, cols), (len(sentences), max(1, int(lengths.max(initial=1))))


def _char_width(words: Sequence[str]) -> int:
    return min(MAX_CHARS, max(map(len, words), default=1))


# ----------------------------------------------------------------------------- CRF decoding

def viterbi(emissions: np.ndarray, start: np.ndarray, end: np.ndarray, trans: np.ndarray) -> list[int]:
    """Best tag path for one sequence. emissions [T, K]; trans[i, j] = score of i → j."""
    length = emissions.shape[0]
    if length == 0:
        return []
    score = start + emissions[0]
    back = np.zeros((length, emissions.shape[1]), dtype=np.int64)
    for t in range(1, length):
        total = score[:, None] + trans
        back[t] = total.argmax(axis=0)
        score = total.max(axis=0) + emissions[t]
    path = [int((score + end).argmax())]
    for t in range(length - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def marginals(emissions: np.ndarray, start: np.ndarray, end: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Per-token tag posteriors [T, K] of the linear-chain CRF (forward-backward in log space)."""
    length, tags = emissions.shape
    alpha = np.empty((length, tags))
    beta = np.empty((length, tags))
    alpha[0] = start + emissions[0]
    for t in range(1, length):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + trans, axis=0) + emissions[t]
    beta[-1] = end
    for t in range(length - 2, -1, -1):
        beta[t] = _logsumexp(trans + (emissions[t + 1] + beta[t + 1])[None, :], axis=1)
    log_z = _logsumexp(alpha[-1] + end, axis=0)
    return np.exp(alpha + beta - log_z)


FORBIDDEN = -1000.0  # transition scores at or below this are IOB constraints (the trainer folds in -10000)


class CrfDecoder:
    """Batched Viterbi and marginals of one linear-chain CRF, set up once per model.

    Padded batches [B, T, K] are decoded one NumPy step per position for the whole batch
    (decoding would otherwise cost more than the network). What keeps a step cheap:

    * the IOB structure: a tag whose only allowed predecessors are itself and one other (I-X
      follows only B-X or I-X) is scored from those two instead of a max over every tag, so a
      33-tag model does about half the work; forbidden moves could never win a max;
    * tags are kept internally with those "pair" tags last, so each part is a slice, and the
      maximum is read at the argmax through one flat index;
    * no per-step masking: the recursions run over the padding, and each sentence is read
      back from its own last position (backtracking, backward pass) instead.

    Ties go to the lower original tag index within a pair (as :func:`viterbi` does); among the
    other tags to the lower internal index (exact ties of float sums do not happen in practice)."""

    def __init__(self, start: np.ndarray, end: np.ndarray, trans: np.ndarray, dtype=np.float32) -> None:
        self.dtype = np.dtype(dtype)
        start, end, trans = (np.asarray(x, self.dtype) for x in (start, end, trans))
        tags = len(start)
        allowed = [np.flatnonzero(trans[:, k] > FORBIDDEN) for k in range(tags)]
        pairs = [k for k in range(tags) if len(allowed[k]) == 2 and k in allowed[k]]
        self.dense = np.array([k for k in range(tags) if k not in pairs], dtype=np.int64)
        self.pairs = np.array(pairs, dtype=np.int64)
        self.order = np.concatenate([self.dense, self.pairs])  # internal position -> tag
        internal = self.internal = np.argsort(self.order)  # tag -> internal position
        n_dense = self.n_dense = len(self.dense)
        inner = trans[np.ix_(self.order, self.order)]  # [from, to], internal order
        self.start, self.end = start[self.order], end[self.order]
        self.into_dense = np.ascontiguousarray(inner[:, :n_dense].T)[None]  # [1, to, from]
        others = [int(allowed[k][allowed[k] != k][0]) for k in pairs]
        self.pair_other = internal[np.array(others, dtype=np.int64)] if pairs else np.zeros(0, dtype=np.int64)
        self.pair_self = np.arange(n_dense, tags)
        self.pair_other_trans = inner[self.pair_other, self.pair_self]
        self.pair_self_trans = inner[self.pair_self, self.pair_self]
        self.self_first = np.array([k < o for k, o in zip(pairs, others)], dtype=bool)  # wins a tie
        # probability space for the marginals; forbidden moves are exactly 0
        self.step_trans = np.exp(inner - inner.max())
        self.step_trans_t = np.ascontiguousarray(self.step_trans.T)
        self.start_prob = np.exp(self.start - self.start.max())
        self.end_prob = _normalised(np.exp(self.end - self.end.max()))

    def paths(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Best tag path of each sentence, padded [B, T] (entries past a sentence's end are junk)."""
        batch, steps, tags = np.shape(emissions)
        if steps == 0:
            return np.zeros((batch, 0), dtype=np.int64)
        return self.order[self._paths(self._internal(emissions), lengths)]

    def confidences(self, emissions: np.ndarray, lengths: Sequence[int], paths: np.ndarray) -> np.ndarray:
        """Posterior probability [B, T] of the tag each of ``paths`` [B, T] chose (padded)."""
        posteriors = self._posteriors(self._internal(emissions), lengths)
        return np.take_along_axis(posteriors, self.internal[paths][:, :, None], axis=2)[:, :, 0]

    def posteriors(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Per-token tag posteriors [B, T, K] (rows past a sentence's end are junk)."""
        return self._posteriors(self._internal(emissions), lengths)[:, :, self.internal]

    def _internal(self, emissions: np.ndarray) -> np.ndarray:
        return np.asarray(emissions, self.dtype)[:, :, self.order]

    @staticmethod
    def _ending(lengths: Sequence[int], steps: int) -> list[np.ndarray]:
        """The sentences whose last position is t, for each t."""
        last = np.asarray(lengths, dtype=np.int64) - 1
        by_end = np.argsort(last, kind="stable")
        bounds = np.searchsorted(last[by_end], np.arange(steps + 1))
        return [by_end[bounds[t]:bounds[t + 1]] for t in range(steps)]

    def _paths(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        batch, steps, tags = emissions.shape
        n_dense, ending = self.n_dense, self._ending(lengths, steps)
        others, own = self.pair_other, self.pair_self
        back = np.empty((steps, batch, tags), dtype=np.int8 if tags < 128 else np.int64)
        total = np.empty((batch, n_dense, tags), dtype=self.dtype)
        flat = total.reshape(-1)
        offsets = (np.arange(batch * n_dense) * tags).reshape(batch, n_dense)
        score, step = self.start + emissions[:, 0], np.empty((batch, tags), dtype=self.dtype)
        final = np.zeros((batch, tags), dtype=self.dtype)
        final[ending[0]] = score[ending[0]]
        for t in range(1, steps):
            np.add(score[:, None, :], self.into_dense, out=total)
            best = total.argmax(axis=2)
            back[t, :, :n_dense] = best
            step[:, :n_dense] = flat[offsets + best]
            if len(own):
                via_other = score[:, others] + self.pair_other_trans
                via_self = score[:, n_dense:] + self.pair_self_trans
                keep_self = np.where(self.self_first, via_self >= via_other, via_self > via_other)
                back[t, :, n_dense:] = np.where(keep_self, own, others)
                np.maximum(via_self, via_other, out=step[:, n_dense:])
            step += emissions[:, t]
            score, step = step, score
            if len(ending[t]):
                final[ending[t]] = score[ending[t]]
        last_tags = (final + self.end).argmax(axis=1)
        paths = np.zeros((batch, steps), dtype=np.int64)
        rows = np.arange(batch)
        for t in range(steps - 1, -1, -1):
            paths[ending[t], t] = last_tags[ending[t]]
            if t:
                paths[:, t - 1] = back[t, rows, paths[:, t]]
        return paths

    def _posteriors(self, emissions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
        """Forward-backward in probability space, renormalised at every step: a [B, K] x [K, K]
        matrix product per position instead of a log-sum-exp over [B, K, K] (several times
        faster with many tags); the per-step scale factors cancel in the final normalisation."""
        batch, steps, tags = emissions.shape
        ending = self._ending(lengths, steps)
        scores = np.exp(emissions - emissions.max(axis=2, keepdims=True))
        step_trans, step_trans_t, last = self.step_trans, self.step_trans_t, self.end_prob
        alpha = np.empty((batch, steps, tags), dtype=self.dtype)
        beta = np.empty((batch, steps, tags), dtype=self.dtype)
        if steps == 0:
            return alpha
        alpha[:, 0] = _normalised(self.start_prob * scores[:, 0])
        for t in range(1, steps):
            alpha[:, t] = _normalised((alpha[:, t - 1] @ step_trans) * scores[:, t])
        beta[:, -1] = last
        for t in range(steps - 2, -1, -1):
            beta[:, t] = _normalised((scores[:, t + 1] * beta[:, t + 1]) @ step_trans_t)
            beta[ending[t], t] = last
        return _normalised(alpha * beta)


def viterbi_batch(emissions: np.ndarray, lengths: Sequence[int], start: np.ndarray, end: np.ndarray,
                  trans: np.ndarray) -> list[list[int]]:
    """:func:`viterbi` for a padded batch [B, T, K] at once (:class:`CrfDecoder`, in the
    emissions' float precision)."""
    emissions = np.asarray(emissions)
    paths = CrfDecoder(start, end, trans, dtype=emissions.dtype).paths(emissions, lengths)
    return [paths[b, :n].tolist() for b, n in enumerate(lengths)]


def marginals_batch(emissions: np.ndarray, lengths: Sequence[int], start: np.ndarray, end: np.ndarray,
                    trans: np.ndarray) -> np.ndarray:
    """:func:`marginals` for a padded batch: posteriors [B, T, K] (rows past a sentence's end are junk)."""
    emissions = np.asarray(emissions)
    return CrfDecoder(start, end, trans, dtype=emissions.dtype).posteriors(emissions, lengths)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=-1, keepdims=True)


def iob_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(first, last+1, type) entity spans of IOB2 tags, conlleval-style repair: an I- that
    does not continue an entity of its type starts one; B- always starts one."""
    spans: list[tuple[int, int, str]] = []
    current: list = []  # [start, type] of the open entity
    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and current and current[1] == kind:
            continue
        if current:
            spans.append((current[0], i, current[1]))
            current = []
        if prefix in ("B", "I") and kind:
            current = [i, kind]
    if current:
        spans.append((current[0], len(tags), current[1]))
    return spans


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


def _threads() -> int:
    """Spark sets OMP_NUM_THREADS to spark.task.cpus in Python workers; default one core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


class NerModel:
    """One ONNX tagger: tags piece sequences. Built once per process per directory (:func:`load_model`)."""

    def __init__(self, directory: Path) -> None:
        import onnxruntime as ort  # imported only when a model is used

        self.directory = directory
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        self.meta = meta
        self.name = f"{meta['name']}@{meta['version']}"
        self.tags: list[str] = meta["tags"]
        self.char_map: dict[str, int] = meta["chars"]
        crf = meta["crf"]
        self.start = np.asarray(crf["start"], dtype=np.float64)
        self.end = np.asarray(crf["end"], dtype=np.float64)
        self.trans = np.asarray(crf["transitions"], dtype=np.float64)
        self.decoder = CrfDecoder(self.start, self.end, self.trans, dtype=np.float32)
        self.outside = self.tags.index("O") if "O" in self.tags else -1
        self.embeddings = _embeddings((directory / meta["embeddings"]).resolve())
        self.features = WordFeatures(self.embeddings, self.char_map)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        expected = {i.name: i.shape for i in self.session.get_inputs()}["words"][2]
        if isinstance(expected, int) and expected != self.embeddings.vectors.shape[1]:
            raise ValueError(f"model {meta['name']} was trained on {expected}-d word vectors but "
                             f"{directory / meta['embeddings']} holds {self.embeddings.vectors.shape[1]}-d ones: "
                             "retrain it (clinlake train) against these vectors")

    network_pieces = NETWORK_PIECES  # padded pieces per network call

    def batch_emissions(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """Padded emission scores [batch, longest, tags] (float32, as the network gives them) of
        piece sequences, sorted by length or not. The network runs on consecutive slices of about
        ``network_pieces`` padded pieces: the LSTM is faster per token on such batches than on the
        larger ones the CRF decoder prefers."""
        longest = max((len(s) for s in sequences), default=0)
        scores = np.zeros((len(sequences), max(1, longest), len(self.tags)), dtype=np.float32)
        for lo, hi in _slices([len(s) for s in sequences], self.network_pieces):
            part = self.network_emissions(sequences[lo:hi])
            scores[lo:hi, : part.shape[1]] = part
        return scores

    def network_emissions(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """One network call: padded emission scores [batch, longest, tags] (onnxruntime)."""
        (scores,) = self.session.run(["emissions"], encode_serving_batch(sequences, self.features))
        return scores

    def emissions(self, sequences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Emission scores [len, tags] per piece sequence (each at most WINDOW long)."""
        scores = self.batch_emissions(sequences)
        return [scores[b, : len(s)] for b, s in enumerate(sequences)]

    def tag(self, sequences: Sequence[Sequence[str]]) -> list[tuple[list[str], list[float]]]:
        """(tags, probability of each chosen tag) per piece sequence of any length.

        Long sequences are cut into overlapping windows; all windows of all sequences are
        sorted by length and run in batches of about BATCH_PIECES padded pieces. The CRF is
        decoded in float32, the network's precision. Only entities carry a confidence, so the
        posteriors (forward-backward) are computed only for windows where Viterbi found an
        entity: a window tagged all O gets NaN probabilities."""
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
            found = np.flatnonzero(((best != self.outside) & (np.arange(best.shape[1]) < lengths[:, None])).any(axis=1))
            if len(found):
                chosen[found] = self.decoder.confidences(scores[found], lengths[found], best[found])
            for b, (i, (lo, _hi, keep_lo, keep_hi)) in enumerate(batch):
                paths[i][keep_lo:keep_hi] = best[b, keep_lo - lo:keep_hi - lo]
                probs[i][keep_lo:keep_hi] = chosen[b, keep_lo - lo:keep_hi - lo]
        names = self.tags
        return [([names[k] for k in path.tolist()], prob.tolist()) for path, prob in zip(paths, probs)]


def _batches(jobs: list) -> Iterable[list]:
    """Consecutive jobs (sorted by length) grouped so padded size stays under BATCH_PIECES."""
    for lo, hi in _slices([job[1][1] - job[1][0] for job in jobs], BATCH_PIECES):
        yield jobs[lo:hi]


def _slices(lengths: Sequence[int], pieces: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive runs whose padded size (run length x its longest) stays
    under ``pieces``, or that hold a single item."""
    runs, lo, longest = [], 0, 0
    for i, length in enumerate(lengths):
        longest = max(longest, length)
        if i > lo and longest * (i - lo + 1) > pieces:
            runs.append((lo, i))
            lo, longest = i, length
    return runs + [(lo, len(lengths))] if len(lengths) > lo else runs


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


def model_version(model_dir: Path) -> str:
    """sha256 (first 12 hex digits) of model.onnx plus model.json without its version field."""
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    meta.pop("version", None)
    digest = hashlib.sha256((model_dir / "model.onnx").read_bytes())
    digest.update(json.dumps(meta, sort_keys=True).encode())
    return digest.hexdigest()[:12]


# ----------------------------------------------------------------------------- pipeline stage

PROPAGATED = "+abbreviation"  # appended to the stage name in ``ner_model`` for propagated entities


class NerStage:
    """A pipeline NER stage over one model: sentences in, entities out (labels mapped/filtered).

    With ``propagate_abbreviations`` the note is the document of :mod:`pipelines.short_forms`:
    an abbreviation defined as "long form (SF)" with the long form tagged makes SF an entity of
    that label from the definition's sentence to the end of the note; an entity found that way takes the
    confidence of the entity that defined it, and its source is the stage's name + ``+abbreviation``
    (so ``ner_model`` tells the tagger's own entities from propagated ones)."""

    def __init__(self, model: NerModel, labels: Sequence[str] = (), label_map: Mapping[str, str] | None = None,
                 propagate_abbreviations: bool = True):
        self.model = model
        self.name = model.name
        self.label_map = dict(label_map or {})
        self.labels = frozenset(labels)
        self.propagate_abbreviations = propagate_abbreviations

    def find(self, text: str, sentences: Sequence[Sentence]) -> list[Entity]:
        pieces = [model_pieces((t.start, t.end, t.text) for t in s.tokens) for s in sentences]
        words = [[p[2] for p in sentence] for sentence in pieces]
        tagged = self.model.tag(words)
        spans = [iob_spans(tags) for tags, _ in tagged]
        # span -> None (the tagger's own) or the (sentence, entity) a propagated span took its label from
        found = propagate(words, spans) if self.propagate_abbreviations else [dict.fromkeys(s) for s in spans]

        def confidence(index: int, span: tuple[int, int, str]) -> float:
            probs = tagged[index][1]
            return round(float(np.mean(probs[span[0]:span[1]])), 4)

        entities: list[Entity] = []
        for index, (sentence, sentence_pieces, sentence_spans) in enumerate(zip(sentences, pieces, found)):
            for (first, last, kind), origin in sentence_spans.items():
                label = self.label_map.get(kind, kind)
                if self.labels and label not in self.labels:
                    continue
                start, end = sentence_pieces[first][0], sentence_pieces[last - 1][1]
                entities.append(Entity(start=start, end=end, text=text[start:end], label=label,
                                       confidence=confidence(*(origin or (index, (first, last, kind)))),
                                       source=self.name if origin is None else self.name + PROPAGATED,
                                       sentence_index=sentence.index))
        return entities


def load_ner_stage(model_dir: Path, *, labels: Sequence[str] = (), label_map: Mapping[str, str] | None = None,
                   propagate_abbreviations: bool = True) -> NerStage:
    """The pipeline's entry point (see pipelines/pipeline.py)."""
    return NerStage(load_model(Path(model_dir)), labels=labels, label_map=label_map,
                    propagate_abbreviations=propagate_abbreviations)

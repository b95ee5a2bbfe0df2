"""Featurisation of the NER taggers (BiLSTM-CNN-Char + CRF): pieces, casing, word vectors, char ids.

Shared with the trainer (:mod:`clinlake.pipelines.training.ner`): whatever is changed here changes what
the models were trained on. Runtime only: numpy, never torch.

Tokens. The pipeline's tokenizer keeps ``3.5``, ``b.i.d.`` or ``'s`` as one token; the NER
corpora split every punctuation character (``3 . 5``, ``Parkinson ' s``). :func:`model_pieces`
splits each pipeline token into corpus-style pieces (:data:`clinlake.pipelines.engine.pieces.CORPUS_PIECE`);
the trainer applies the same function to the corpus tokens, so training and serving see the same
kind of token. Entity offsets are piece offsets: still exact slices of the original text.

The word vectors live once for all models in ``models/embeddings/`` (``vectors.npy`` fp16 +
``vocab.txt``) and are looked up here in numpy, so the ONNX graphs stay small.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from clinlake.pipelines.engine.pieces import CORPUS_PIECE

_DIGIT = re.compile(r"\d")
MAX_CHARS = 20  # characters per token seen by the char CNN (longer words are cut; why: bounded input)

PAD, UNK = 0, 1
CASES = ("pad", "lower", "title", "upper", "mixed", "numeric", "has_digit", "punct", "other")


def model_pieces(tokens: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Corpus-style pieces (start, end, text) of (start, end, text) tokens, in order (a
    :class:`~clinlake.pipelines.engine.types.Token` is such a tuple). A token's end must be its
    start plus the length of its text, as the tokenizer makes them: a token that is one piece is
    returned as it is, not copied (most tokens; fewer objects made per note, less for the
    garbage collector to walk)."""
    pieces: list[tuple[int, int, str]] = []
    add = pieces.append
    for token in tokens:
        text = token[2]
        if text.isalnum() or (len(text) == 1 and not text.isspace()):
            # one [^\W_]+ run (most tokens) or one other character ("," "."): the regex would find just it
            add(token)
        else:
            start = token[0]
            pieces += [(start + m.start(), start + m.end(), m.group()) for m in CORPUS_PIECE.finditer(text)]
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

"""The shared fastText word vectors of every NER model (``clinlake train embeddings``)."""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from clinlake.pipelines.engine.ner.features import UNK, model_pieces, word_key
from clinlake.pipelines.resources import models_dir, shared_data
from clinlake.pipelines.training.ner.corpus import CORPORA, SEED, devel_sentences, load_split

log = logging.getLogger("clinlake.train_ner")

#: The shared text the vectors are trained on, under the shared data folder.
EMBED_TEXTS = ("corpus/biomedical_sentences.txt", "corpus/health_text.txt")


def default_embeddings_dir() -> Path:
    """The shipped word vectors: ``models/embeddings/``."""
    return models_dir() / "embeddings"


def embedding_sentences(skip: frozenset[str] = frozenset(), *, shared: Path | None = None,
                        texts: Sequence[str] = EMBED_TEXTS, corpora: Sequence[str] = CORPORA) -> Iterator[list[str]]:
    """The shared text corpora (less the lines in ``skip``), then the words of the five NER *train*
    splits (labels unused: the vectors see the corpora's own vocabulary in context). Devel splits
    are not added, but biomedical_sentences.txt already holds nearly all their sentences,
    unlabelled (only test sentences were removed upstream): the README says what that is worth
    on devel F1, measured with ``skip=devel_sentences()``."""
    shared = shared_data() if shared is None else shared
    for name in texts:
        with open(shared / name, encoding="utf-8") as handle:
            for line in handle:
                if skip and line.strip() in skip:
                    continue
                words = [word_key(p[2]) for p in model_pieces([(0, len(line), line)])]
                if words:
                    yield words
    for corpus in corpora:
        for words, _ in load_split(corpus, "train", shared=shared):
            yield [word_key(w) for w in words]


class SentenceStream:
    """Re-iterable sentence stream for gensim (it makes several passes); arguments as
    :func:`embedding_sentences`."""

    def __init__(self, skip: frozenset[str] = frozenset(), **sources) -> None:
        self.skip, self.sources = skip, sources

    def __iter__(self) -> Iterator[list[str]]:
        return embedding_sentences(self.skip, **self.sources)


def build_embeddings(out: Path | None = None, *, epochs: int = 15, dim: int = 200, max_words: int = 100_000,
                     workers: int = 1, without_devel: bool = False, shared: Path | None = None,
                     texts: Sequence[str] = EMBED_TEXTS, corpora: Sequence[str] = CORPORA) -> Path:
    """Train fastText (skip-gram, char 3-6-grams) and save ONE fp16 matrix for all models
    (to ``out``, default ``models/embeddings/``; returns it).

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
    but a retrain on the same data moved NCBI-disease's devel F1 by 0.8).

    ``shared``, ``texts``, ``corpora``: the shared data folder (default
    :func:`~clinlake.pipelines.resources.shared_data`), the text files under it and the NER corpora."""
    # gensim is imported here, not at module level: only training the vectors needs it.
    from gensim.models import FastText

    out = default_embeddings_dir() if out is None else out
    ner_words: Counter[str] = Counter()
    for corpus in corpora:
        for split in ("train", "devel"):
            for words, _ in load_split(corpus, split, shared=shared):
                ner_words.update(word_key(w) for w in words)
    started = time.time()
    model = FastText(vector_size=dim, window=5, min_count=3, sg=1, negative=5, min_n=3, max_n=6,
                     bucket=500_000, workers=workers, seed=SEED)
    skip = devel_sentences(shared=shared, corpora=corpora) if without_devel else frozenset()
    corpus = SentenceStream(skip, shared=shared, texts=texts, corpora=corpora)
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
    return out

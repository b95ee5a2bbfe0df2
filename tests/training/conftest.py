"""Shared fixtures of the training tests."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pytest


@pytest.fixture
def write_vectors() -> Callable[[Path, Iterable[str]], Path]:
    """A function writing random 16-d word vectors (vocab.txt + vectors.npy) for ``words`` into
    ``<directory>/embeddings`` and returning that folder."""
    from clinlake.pipelines.engine.ner.features import word_key

    def write(directory: Path, words: Iterable[str]) -> Path:
        vocab = ["<pad>", "<unk>", *sorted({word_key(w) for w in words})]
        embeddings = directory / "embeddings"
        embeddings.mkdir()
        np.save(embeddings / "vectors.npy", np.random.default_rng(0).normal(size=(len(vocab), 16)).astype(np.float16))
        (embeddings / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return embeddings

    return write

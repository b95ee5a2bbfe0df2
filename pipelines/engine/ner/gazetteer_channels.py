"""Gazetteer channels: a term list's matches as extra input of the NER network.

A model trained with them (``clinlake train ner --gazetteer-features``; how the list is learned and
why training sentences are jackknifed: :mod:`pipelines.training.ner.gazetteer_features`) ships its
list as ``gazetteer_features.tsv`` (the format of ``gazetteer.tsv``, :mod:`pipelines.engine.gazetteer`)
and names it in model.json (``gazetteer_features``: ``file``, ``labels``). Each piece gets two
channels per entity type, in ``labels`` order: column 2t *begins a match of type t*, column 2t + 1
*continues one*, each holding the matched term's precision (0 elsewhere). Matches are found as the
gazetteer step finds them (case-insensitive on the model's pieces, longest first, left to right);
the channels follow the word vectors in the network's ``words`` input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clinlake.pipelines.engine.gazetteer import Gazetteer, GazetteerError, Term, read_gazetteer

FILE = "gazetteer_features.tsv"


class GazetteerChannels:
    """The channels of piece sequences for one term list and one ordered set of entity types."""

    def __init__(self, terms: Mapping[tuple[str, ...], Term], labels: Sequence[str]) -> None:
        self.terms = dict(terms)
        self.labels = tuple(labels)
        self._index = Gazetteer(self.terms)
        self._column = {label: 2 * i for i, label in enumerate(self.labels)}

    @property
    def width(self) -> int:
        return 2 * len(self.labels)

    def match(self, tokens: Sequence[str], index: Gazetteer | None = None) -> np.ndarray:
        """[pieces, width] channels of one sequence against ``index`` (default: this list)."""
        out = np.zeros((len(tokens), self.width), dtype=np.float32)
        for (start, end, label), term in (index or self._index).matches(tokens, []):
            column = self._column.get(label)
            if column is not None:
                out[start, column] = term.precision
                out[start + 1:end, column + 1] = term.precision
        return out

    def of(self, tokens: Sequence[str]) -> np.ndarray:
        """The channels of one sequence (training overrides this for its jackknifed sentences)."""
        return self.match(tokens)

    def batch(self, sequences: Sequence[Sequence[str]], steps: int) -> np.ndarray:
        """[batch, steps, width] channels of padded sequences (padding rows are zero)."""
        out = np.zeros((len(sequences), steps, self.width), dtype=np.float32)
        for b, tokens in enumerate(sequences):
            if tokens:
                out[b, :len(tokens)] = self.of(tokens)
        return out

    def with_words(self, feeds: dict[str, np.ndarray], sequences: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """``feeds`` (the featuriser's inputs) with the channels appended to the word vectors."""
        steps = feeds["cases"].shape[1]
        return {**feeds, "words": np.concatenate([feeds["words"], self.batch(sequences, steps)], axis=2)}


def load_channels(model_dir: Path, meta: Mapping[str, Any]) -> GazetteerChannels | None:
    """The channels a model.json names (None for a model trained without them)."""
    spec = meta.get("gazetteer_features")
    if not spec:
        return None
    if not isinstance(spec, Mapping) or not spec.get("file") or not spec.get("labels"):
        raise GazetteerError(f"{model_dir.name}/model.json: gazetteer_features needs 'file' and 'labels'")
    return GazetteerChannels(read_gazetteer(model_dir / spec["file"]), spec["labels"])

"""Gazetteer features for the NER network: term-list matches as input channels (issue 20, item 4).

The gazetteer *step* (:mod:`pipelines.engine.gazetteer`) adds an entity wherever a near-certain
training string occurs. Here the term list is an input instead, and the network weighs it against
the context: each token gets two channels per entity type, *begins* and *continues* a match of a
term of that type, holding the share of the term's training occurrences annotators tagged with
that type (the same longest-match-first matching as the step, on the model's pieces). The list is
looser than the step's (every entity string tagged with one type in at least
:data:`FEATURE_MIN_PRECISION` of its occurrences, once is enough), since the network, not a rule,
decides.

Training sentences must not see a list made from themselves: every entity of a training sentence
would match its own string, the network would learn to trust the channels completely, and at
serving the entities no list holds would be missed. So the training examples are cut into
:data:`JACKKNIFE_PARTS` contiguous parts, and each part's channels come from the list learned on the
other parts (as often as a new document's entities are in a list learned from the rest); any other
sentence (devel, held-out, silver) is matched against the list learned from all training examples,
the one that ships.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from clinlake.pipelines.engine.gazetteer import Gazetteer
from clinlake.pipelines.engine.ner.gazetteer_channels import FILE as CHANNELS_FILE, GazetteerChannels
from clinlake.pipelines.training.ner.corpus import Example
from clinlake.pipelines.training.ner.gazetteer import (TERM_LINES_HEADER, Lexicon, Terms, learn_gazetteer,
                                                      lexicon_header_lines, write_terms)

FEATURE_MIN_PRECISION = 0.5  # a string annotators left untagged more often than not stays out
FEATURE_MIN_COUNT = 1
JACKKNIFE_PARTS = 5


def feature_terms(examples: Sequence[Example], lexicons: Sequence[Lexicon] = ()) -> Terms:
    """The term list of the channels, learned from ``examples`` (see the module doc), plus the names of
    ``lexicons`` the examples do not contradict (as the gazetteer step takes them)."""
    return learn_gazetteer(examples, min_precision=FEATURE_MIN_PRECISION, min_count=FEATURE_MIN_COUNT,
                           lexicons=lexicons)


class JackknifedChannels(GazetteerChannels):
    """Channels with fixed rows for given sentence objects: the training examples' jackknifed
    channels, keyed by the identity of their piece lists; any other sentence is matched against
    the full list (``terms``)."""

    def __init__(self, terms: Terms, labels: Sequence[str], lexicons: Sequence[Lexicon] = ()) -> None:
        super().__init__(terms, labels)
        self.lexicons = tuple(lexicons)
        self._fixed: dict[int, tuple[Sequence[str], np.ndarray]] = {}

    def fix(self, tokens: Sequence[str], channels: np.ndarray) -> None:
        self._fixed[id(tokens)] = (tokens, channels)

    def of(self, tokens: Sequence[str]) -> np.ndarray:
        """The fixed channels of this very sentence object, else its match against the full list."""
        fixed = self._fixed.get(id(tokens))
        return fixed[1] if fixed is not None and fixed[0] is tokens else self.match(tokens)

    def record(self) -> dict:
        """What the training record keeps (model.json ``training.gazetteer_features``; the top-level
        ``gazetteer_features``, file and labels, is :func:`write_channel_terms`'s)."""
        return {"labels": list(self.labels), "terms": len(self.terms), "min_precision": FEATURE_MIN_PRECISION,
                "min_count": FEATURE_MIN_COUNT, "jackknife_parts": JACKKNIFE_PARTS,
                **({"lexicons": [{"file": lexicon.source, "label": lexicon.label} for lexicon in self.lexicons]}
                   if self.lexicons else {})}


def write_channel_terms(model_dir: Path, channels: GazetteerChannels, *, source: str) -> dict:
    """Write the full list to ``<model_dir>/gazetteer_features.tsv``; model.json's ``gazetteer_features``."""
    header = [f"# gazetteer channels of the network, learned from {source}: entity strings tagged with one label "
              f"in at least {FEATURE_MIN_PRECISION:.0%} of their occurrences "
              "(pipelines/training/ner/gazetteer_features.py)",
              *lexicon_header_lines(getattr(channels, "lexicons", ())), TERM_LINES_HEADER]
    write_terms(model_dir / CHANNELS_FILE, header, channels.terms)
    return {"file": CHANNELS_FILE, "labels": list(channels.labels)}


def training_channels(train: Sequence[Example], labels: Sequence[str], *, lexicons: Sequence[Lexicon] = (),
                      parts: int = JACKKNIFE_PARTS) -> JackknifedChannels:
    """Channels whose full list is learned from all of ``train`` (and ``lexicons``) and whose training
    sentences are jackknifed: each of ``parts`` contiguous parts matched against the list of the other
    parts (a lexicon name's precision, too, comes from the other parts)."""
    if parts < 2 or len(train) < parts:
        raise ValueError(f"jackknifed gazetteer channels need at least {max(parts, 2)} training sentences and parts")
    channels = JackknifedChannels(feature_terms(train, lexicons), labels, lexicons)
    bounds = np.linspace(0, len(train), parts + 1).round().astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rest = Gazetteer(feature_terms([*train[:lo], *train[hi:]], lexicons))
        for tokens, _ in train[lo:hi]:
            channels.fix(tokens, channels.match(tokens, rest))
    return channels

"""The CoNLL training data of the biomedical NER taggers, as model pieces with IOB2 tags."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from clinlake.pipelines.corpora.conll import read_conll
from clinlake.pipelines.engine.ner.features import model_pieces
from clinlake.pipelines.resources import shared_data

#: The five biomedical corpora under ``<shared data>/ner/`` (``clinlake train ner --corpus``).
CORPORA = ("NCBI-disease", "BC5CDR", "AnatEM", "BioNLP13CG", "LINNAEUS")
#: One seed for every NER training run: word vectors, network initialisation, batch order.
SEED = 13

Example = tuple[list[str], list[str]]  # pieces, IOB2 tags


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


def tag_set(examples: Sequence[Example]) -> list[str]:
    """The tags a network trained on ``examples`` emits, in its output order: O, then B-/I- by type."""
    return ["O"] + sorted({t for _, tags in examples for t in tags} - {"O"}, key=lambda t: (t[2:], t[:2]))


def entity_labels(tags: Sequence[str]) -> list[str]:
    """The entity types of a tag set, in its order (B-X, I-X → X)."""
    return list(dict.fromkeys(t[2:] for t in tags if t != "O"))


def split_path(corpus: str, split: str, *, shared: Path | None = None) -> Path:
    """``<shared data>/ner/<corpus>/<split>.tsv`` (default: :func:`~clinlake.pipelines.resources.shared_data`)."""
    return (shared_data() if shared is None else shared) / "ner" / corpus / f"{split}.tsv"


def load_split(corpus: str, split: str, *, shared: Path | None = None) -> list[Example]:
    return [to_pieces(t, g) for t, g in read_conll(split_path(corpus, split, shared=shared))]


def devel_sentences(*, shared: Path | None = None, corpora: Sequence[str] = CORPORA) -> frozenset[str]:
    """The corpora's devel sentences as biomedical_sentences.txt writes them (tokens joined by spaces)."""
    return frozenset(" ".join(tokens) for corpus in corpora
                     for tokens, _ in read_conll(split_path(corpus, "devel", shared=shared)))

"""Training examples from document-level BRAT corpora (MACCROBAT, Chia) — raw text in.

The clinical models are trained on what the pipeline will see at run time: each ``.txt`` is
split into sentences and tokens by clinlake's own :class:`~pipelines.engine.text.TextSplitter`,
tokens are cut into model pieces (:func:`pipelines.engine.ner.features.model_pieces`, as at serving
time), and the gold entities (after a label map) become IOB2 tags on those pieces.

Gold entities that cannot be one IOB2 span are left out of *training* (never of scoring:
``clinlake evaluate brat`` scores against every mapped gold entity) and counted:

* ``discontinuous`` — more than one fragment;
* ``overlapping`` — overlaps an entity already kept; entities are kept longest first
  (then earliest), so an outer mention wins over the mentions nested in it;
* ``cross_sentence`` — its pieces fall in two sentences of our splitter.

An entity whose edge falls inside a piece (``HbA1c`` annotated as ``HbA``) is kept with the
whole piece and counted as ``widened``: the model cannot produce a sub-piece boundary.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from clinlake.pipelines.corpora.brat import read_ann, read_text_exact
from clinlake.pipelines.corpora.label_maps import load_label_map
from clinlake.pipelines.engine.ner.features import model_pieces
from clinlake.pipelines.engine.text import TextSplitter

Example = tuple[list[str], list[str]]  # pieces, IOB2 tags (as in pipelines.training.ner)

#: corpus name → where it is under ../shared/data/ (PHEE is JSON lines, converted to BRAT by pipelines/corpora/phee.py)
BRAT_CORPORA: dict[str, str] = {"MACCROBAT": "clinical/MACCROBAT", "Chia": "clinical/Chia", "PHEE": "clinical/PHEE"}


@dataclass
class Stats:
    documents: int = 0
    sentences: int = 0
    entities: Counter = field(default_factory=Counter)  # kept, per label
    left_out: Counter = field(default_factory=Counter)  # reason → count
    widened: int = 0

    def as_dict(self) -> dict:
        return {"documents": self.documents, "sentences": self.sentences, "entities": dict(self.entities),
                "left_out": dict(self.left_out), "widened": self.widened}


def mapped_spans(ann: Path, label_map: Mapping[str, str], stats: Stats) -> list[tuple[int, int, str]]:
    """(start, end, label) of the contiguous mapped gold entities, duplicates removed."""
    spans: dict[tuple[int, int, str], None] = {}
    for entity in read_ann(ann).entities:
        label = label_map.get(entity.type)
        if label is None:
            continue
        if entity.discontinuous:
            stats.left_out["discontinuous"] += 1
            continue
        spans.setdefault((entity.start, entity.end, label), None)
    return list(spans)


def non_overlapping(spans: Iterable[tuple[int, int, str]], stats: Stats) -> list[tuple[int, int, str]]:
    """Longest first, then earliest; a span overlapping one already kept is left out."""
    kept: list[tuple[int, int, str]] = []
    for span in sorted(spans, key=lambda s: (s[0] - s[1], s[0], s[2])):
        if any(span[0] < k[1] and k[0] < span[1] for k in kept):
            stats.left_out["overlapping"] += 1
        else:
            kept.append(span)
    return sorted(kept)


def document_examples(text: str, spans: Sequence[tuple[int, int, str]], splitter: TextSplitter,
                      stats: Stats) -> list[Example]:
    """One example per sentence of ``text`` (non-overlapping ``spans`` become IOB2 tags)."""
    sentences = [model_pieces(s.tokens) for s in splitter.split(text)]
    sentences = [s for s in sentences if s]
    flat = [(i, j) for i, s in enumerate(sentences) for j in range(len(s))]
    starts = [sentences[i][j][0] for i, j in flat]
    tags = [["O"] * len(s) for s in sentences]
    for start, end, label in spans:
        first = bisect.bisect_right(starts, start) - 1  # piece containing or before start
        if first < 0 or sentences[flat[first][0]][flat[first][1]][1] <= start:
            first += 1  # start falls in the gap after that piece
        last = bisect.bisect_left(starts, end) - 1  # last piece starting before end
        if first > last or first >= len(flat):
            stats.left_out["no_pieces"] += 1
            continue
        (si, sj), (ei, ej) = flat[first], flat[last]
        if si != ei:
            stats.left_out["cross_sentence"] += 1
            continue
        if sentences[si][sj][0] != start or sentences[ei][ej][1] != end:
            stats.widened += 1
        tags[si][sj] = "B-" + label
        for j in range(sj + 1, ej + 1):
            tags[si][j] = "I-" + label
        stats.entities[label] += 1
    stats.documents += 1
    stats.sentences += len(sentences)
    return [([p[2] for p in s], t) for s, t in zip(sentences, tags)]


def load_brat_split(directory: Path, label_map: Mapping[str, str], splitter: TextSplitter,
                    stats: Stats | None = None) -> list[Example]:
    """Examples of every ``directory/*.txt`` with its ``.ann`` (documents in name order)."""
    stats = stats if stats is not None else Stats()
    examples: list[Example] = []
    for txt in sorted(directory.glob("*.txt")):
        ann = txt.with_suffix(".ann")
        spans = mapped_spans(ann, label_map, stats) if ann.is_file() else []
        examples += document_examples(read_text_exact(txt), non_overlapping(spans, stats), splitter, stats)
    return examples


def load_label_maps(pairs: Iterable[tuple[str, Path]]) -> dict[str, dict[str, str]]:
    return {corpus: load_label_map(path) for corpus, path in pairs}

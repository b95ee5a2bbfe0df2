"""NER chunks an upstream model already found: the ``pipeline.ner`` entry ``{column: NAME}``.

A user's own Spark NLP model writes its chunks into the input table (an Annotation array,
annotatorType ``chunk``, the label in metadata ``entity``). The Spark edge
(:mod:`clinlake.pipelines.spark.chunks`) turns that column into plain :class:`ExternalChunk`
values per note; :class:`ColumnNerStage` checks them against the note text and yields them as
entities, which then go through sections, assertion and the rest like any stage's.

Offsets arrive in Spark NLP's convention made end-exclusive by the edge (``end + 1``), counted
in UTF-16 code units as Java strings are; for a note with characters outside the Basic
Multilingual Plane they are converted to Python (code point) offsets here. A chunk that does not
fit its note raises :class:`ExternalChunkError`, whose message gives positions, labels and the
column, never note text (notes are PHI); the Spark edge quarantines that note.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Mapping, Sequence

from clinlake.pipelines.engine.types import Entity, Sentence

CHUNK_TYPE = "chunk"
DEFAULT_CONFIDENCE = 1.0  # a chunk without metadata "confidence"


class ExternalChunkError(ValueError):
    """A chunk of a NER input column does not fit its note (no note text in the message)."""


@dataclass(frozen=True, slots=True)
class ExternalChunk:
    """One chunk as the Spark edge hands it over: ``end`` exclusive, UTF-16 offsets."""

    begin: int | None
    end: int | None
    chunk: str | None
    label: str | None
    confidence: float | None = None
    annotator_type: str | None = CHUNK_TYPE

    @classmethod
    def from_dict(cls, row: Mapping) -> "ExternalChunk":
        return cls(row.get("begin"), row.get("end"), row.get("chunk"), row.get("label"),
                   row.get("confidence"), row.get("annotator_type", CHUNK_TYPE))


class ColumnNerStage:
    """Entities from a NER input column, validated against the note text."""

    def __init__(self, column: str, labels: Sequence[str] = (), label_map: Mapping[str, str] | None = None) -> None:
        self.column = column
        self.name = f"column:{column}"
        self.labels = frozenset(labels)
        self.label_map = dict(label_map or {})

    def find(self, text: str, sentences: Sequence[Sentence],
             chunks: Sequence[ExternalChunk] | None = None) -> list[Entity]:
        if chunks is None:
            raise ExternalChunkError(f"NER column {self.column!r} is null for this note")
        to_index = utf16_to_index(text)
        starts = [s.start for s in sentences]
        entities = []
        for position, chunk in enumerate(chunks):
            start, end, label = self._checked(position, chunk, text, to_index)
            label = self.label_map.get(label, label)
            if self.labels and label not in self.labels:
                continue
            confidence = DEFAULT_CONFIDENCE if chunk.confidence is None else float(chunk.confidence)
            entities.append(Entity(start=start, end=end, text=text[start:end], label=label, confidence=confidence,
                                   source=self.name, sentence_index=_sentence_of(starts, sentences, start)))
        return entities

    def _checked(self, position: int, chunk: ExternalChunk, text: str,
                 to_index: dict[int, int] | None) -> tuple[int, int, str]:
        where = f"NER column {self.column!r}, chunk {position}"
        if chunk.annotator_type != CHUNK_TYPE:
            raise ExternalChunkError(f"{where}: annotatorType {chunk.annotator_type!r}, expected {CHUNK_TYPE!r}")
        if not chunk.label:
            raise ExternalChunkError(f"{where}: no label (metadata 'entity')")
        if chunk.begin is None or chunk.end is None:
            raise ExternalChunkError(f"{where} ({chunk.label}): begin or end is null")
        start, end = _to_index(chunk.begin, to_index), _to_index(chunk.end, to_index)
        if start is None or end is None or not 0 <= start < end <= len(text):
            raise ExternalChunkError(
                f"{where} ({chunk.label}): offsets begin={chunk.begin}, end={chunk.end - 1} (inclusive) do not fit "
                f"a note of {len(text)} characters")
        if chunk.chunk is not None and chunk.chunk != text[start:end]:
            raise ExternalChunkError(
                f"{where} ({chunk.label}): its text differs from the note's text at begin={chunk.begin}, "
                f"end={chunk.end - 1} (inclusive)")
        return start, end, chunk.label


def utf16_to_index(text: str) -> dict[int, int] | None:
    """UTF-16 offset -> code point offset, for a text with characters outside the BMP; None
    (offsets are the same) otherwise. Offsets inside a surrogate pair have no entry."""
    if text.isascii() or all(ord(ch) <= 0xFFFF for ch in text):
        return None
    mapping, unit = {}, 0
    for index, ch in enumerate(text):
        mapping[unit] = index
        unit += 2 if ord(ch) > 0xFFFF else 1
    mapping[unit] = len(text)
    return mapping


def _to_index(offset: int, to_index: dict[int, int] | None) -> int | None:
    return offset if to_index is None else to_index.get(offset)


def _sentence_of(starts: list[int], sentences: Sequence[Sentence], start: int) -> int:
    """The index of the sentence the chunk starts in (the one before, between sentences)."""
    position = max(bisect_right(starts, start) - 1, 0)
    return sentences[position].index if sentences else -1


def column_stages(stages: Sequence[object]) -> list[ColumnNerStage]:
    return [stage for stage in stages if isinstance(stage, ColumnNerStage)]

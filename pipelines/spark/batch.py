"""Arrow batches in, Arrow batches out: the engine's interface to Spark's ``mapInArrow``.

One output row per input row, always: a note is either annotated (with its entities
nested in the row) or quarantined with a reason code. Nothing here raises on bad data; a
failure inside the engine for one note quarantines that note (``engine_error``) and the
batch goes on. Reason details never contain note text (clinical notes are PHI).

Input batch columns: ``note_id`` (string), ``text`` (binary: raw UTF-8 bytes, decoded here
so invalid UTF-8 is caught per note, or string), ``pre_reason`` (a reason already decided
by the Spark side, e.g. duplicate ids, or null), for each ``pipeline.ner`` column entry its chunks
as plain structs (``_ner_column_<name>``, see :mod:`clinlake.pipelines.spark.chunks`) and the
pass-through columns, copied as is.
"""
from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa

from clinlake.schemas.arrow import arrow_schema, arrow_type
from clinlake.schemas.tables import NOTE_RESULT_COLUMNS, STATUS_ANNOTATED, STATUS_QUARANTINED

from clinlake.pipelines.engine.columns import ExternalChunk, ExternalChunkError
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.engine.types import Entity

ID_COLUMN = "note_id"
CHUNKS_PREFIX = "_ner_column_"  # + a pipeline.ner column entry's name (pipelines/spark/chunks.py)
TEXT_COLUMN = "text"
PRE_REASON_COLUMN = "pre_reason"

# Reason codes (documented in README, "Quarantine reasons").
NULL_ID = "null_id"
NULL_TEXT = "null_text"
EMPTY_TEXT = "empty_text"
INVALID_UTF8 = "invalid_utf8"
INVALID_SURROGATES = "invalid_surrogates"
CONTROL_CHARACTERS = "control_characters"
TEXT_TOO_LONG = "text_too_long"
ENGINE_ERROR = "engine_error"
TEXT_NOT_STRING = "text_not_string"
INVALID_NER_CHUNK = "invalid_ner_chunk"

# C0/C1 control characters other than the whitespace ones notes legitimately contain.
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")
_CONTROL_TABLE = {c: None for c in range(0x00, 0x20) if chr(c) not in _ALLOWED_CONTROLS}
_CONTROL_TABLE.update({c: None for c in range(0x7F, 0xA0)})


@dataclass(frozen=True, slots=True)
class Limits:
    max_text_chars: int = 1_000_000
    allow_control_characters: bool = False


@dataclass(frozen=True, slots=True)
class Quarantine:
    reason: str
    detail: str


def decode_text(value: bytes | str | None) -> tuple[str | None, Quarantine | None]:
    """Turn the raw text value into a str, or say why it cannot be one."""
    if value is None:
        return None, Quarantine(NULL_TEXT, "text is null")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, Quarantine(INVALID_UTF8, f"invalid UTF-8 at byte {exc.start} of {len(raw)}")
    if isinstance(value, str):
        return value, None
    return None, Quarantine(TEXT_NOT_STRING, f"text is of type {type(value).__name__}")


def check_text(text: str, limits: Limits) -> Quarantine | None:
    """Per-note input checks that need no global view (duplicates are checked in Spark)."""
    if len(text) > limits.max_text_chars:
        return Quarantine(TEXT_TOO_LONG, f"{len(text)} characters > max_text_chars={limits.max_text_chars}")
    if not text.strip():
        return Quarantine(EMPTY_TEXT, "text is empty or whitespace only" if text else "text is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return Quarantine(INVALID_SURROGATES, f"unpaired surrogate at character {exc.start}")
    if not limits.allow_control_characters and len(text.translate(_CONTROL_TABLE)) != len(text):
        first = next(i for i, ch in enumerate(text) if ord(ch) in _CONTROL_TABLE)
        return Quarantine(CONTROL_CHARACTERS,
                          f"control character U+{ord(text[first]):04X} ({unicodedata.name(text[first], 'control')}) "
                          f"at character {first}")
    return None


def entity_id(version: str, text_sha256: str, entity: Entity) -> str:
    key = f"{version}|{text_sha256}|{entity.start}|{entity.end}|{entity.label}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def entity_record(entity: Entity, version: str, text_sha256: str) -> dict[str, Any]:
    """One entity in the output schema (inclusive ``end``, Spark NLP convention)."""
    result = entity.assertion
    return {
        "entity_id": entity_id(version, text_sha256, entity),
        "chunk": entity.text,
        "begin": entity.start,
        "end": entity.end - 1,
        "label": entity.label,
        "ner_confidence": float(entity.confidence),
        "ner_model": entity.source,
        "assertion": result.assertion if result else None,
        "assertion_confidence": float(result.confidence) if result else None,
        "is_historical": result.is_historical if result else None,
        "assertion_cue": result.cue if result else None,
        "sentence_index": entity.sentence_index,
        "section": entity.section,
    }


def result_schema(passthrough: pa.Schema | None = None) -> pa.Schema:
    schema = arrow_schema(NOTE_RESULT_COLUMNS)
    for field in passthrough or []:
        schema = schema.append(field)
    return schema


def annotate_note(pipeline: Pipeline, note_id: str | None, raw_text: Any, pre_reason: str | None,
                  limits: Limits, *, chunks: dict[str, list[ExternalChunk] | None] | None = None) -> dict[str, Any]:
    """The result row for one note (without pass-through columns)."""
    row, text, problem = _checked_row(note_id, raw_text, pre_reason, limits)
    outcome: Any = problem
    if problem is None:
        try:
            outcome = pipeline.annotate_many([text], [chunks])[0]
        except Exception as exc:  # annotate_many returns a note's failure; this is anything else
            outcome = exc
    return _finished_row(row, text, outcome, pipeline.version)


def _checked_row(note_id: str | None, raw_text: Any, pre_reason: str | None,
                 limits: Limits) -> tuple[dict[str, Any], str | None, Quarantine | None]:
    """A note's result row before annotation, its text, and why it cannot be annotated (or None)."""
    row: dict[str, Any] = {"note_id": note_id, "status": STATUS_QUARANTINED, "reason": None, "detail": None,
                           "text_sha256": None, "text_length": None, "entity_count": 0, "entities": [],
                           "quarantined_text": None}
    text, problem = decode_text(raw_text)
    if text is not None:
        row["text_length"] = len(text)
        problem = problem or check_text(text, limits)
        if problem is None or problem.reason not in (INVALID_SURROGATES,):
            row["text_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if problem is None and note_id is None:
        problem = Quarantine(NULL_ID, "note id is null")
    if problem is None and pre_reason is not None:
        reason, _, detail = pre_reason.partition(":")
        problem = Quarantine(reason, detail or reason)
    return row, text, problem


def _finished_row(row: dict[str, Any], text: str | None, outcome: list[Entity] | Exception | Quarantine,
                  version: str) -> dict[str, Any]:
    """The row of an annotated note (``outcome``: its entities) or a quarantined one (a
    Quarantine, or the engine's exception: messages carry positions and labels, no note text)."""
    if isinstance(outcome, list):
        try:
            records = [entity_record(e, version, row["text_sha256"]) for e in outcome]
        except Exception as exc:  # one bad note must never fail the partition
            outcome = exc
        else:
            row.update(status=STATUS_ANNOTATED, entity_count=len(records), entities=records)
            return row
    if isinstance(outcome, ExternalChunkError):
        problem = Quarantine(INVALID_NER_CHUNK, str(outcome))
    elif isinstance(outcome, Exception):
        problem = Quarantine(ENGINE_ERROR, f"{type(outcome).__name__} in the annotation engine")
    else:
        problem = outcome
    row.update(reason=problem.reason, detail=problem.detail)
    if problem.reason != INVALID_SURROGATES:
        row["quarantined_text"] = text
    return row


def annotate_batch(pipeline: Pipeline, batch: pa.RecordBatch, *, passthrough: Sequence[str] = (),
                   limits: Limits = Limits()) -> pa.RecordBatch:
    """Annotate every note of an Arrow batch; one result row per input row, same order. The
    notes that pass the checks go through the engine together (:meth:`Pipeline.annotate_many`)."""
    ids = batch.column(ID_COLUMN).to_pylist()
    texts = _raw_values(batch.column(TEXT_COLUMN))
    pre = (batch.column(PRE_REASON_COLUMN).to_pylist() if PRE_REASON_COLUMN in batch.schema.names
           else [None] * batch.num_rows)
    chunks = _note_chunks(batch, pipeline.chunk_columns)
    checked = [_checked_row(i, t, r, limits) for i, t, r in zip(ids, texts, pre)]
    ready = [n for n, (_, _, problem) in enumerate(checked) if problem is None]
    try:
        outcomes: dict[int, Any] = dict(zip(ready, pipeline.annotate_many([checked[n][1] for n in ready],
                                                                          [chunks[n] for n in ready]), strict=True))
    except Exception as exc:  # annotate_many returns failures per note; anything else quarantines the batch's
        # notes (engine_error), never the partition
        outcomes = dict.fromkeys(ready, exc)
    rows = [_finished_row(row, text, outcomes.get(n, problem), pipeline.version)
            for n, (row, text, problem) in enumerate(checked)]
    core = result_schema()
    arrays = [pa.array([row[f.name] for row in rows], type=f.type) for f in core]
    fields = list(core)
    for name in passthrough:
        arrays.append(batch.column(name))
        fields.append(batch.schema.field(name))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def annotate_batches(pipeline: Pipeline, batches: Iterable[pa.RecordBatch], **options: Any) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield annotate_batch(pipeline, batch, **options)


def _note_chunks(batch: pa.RecordBatch, columns: Sequence[str]) -> list[dict[str, list[ExternalChunk] | None]]:
    """Per row, each NER input column's chunks (None where the column is null for the note)."""
    per_column = {name: batch.column(CHUNKS_PREFIX + name).to_pylist() for name in columns}
    return [{name: None if values[row] is None else [ExternalChunk.from_dict(c) for c in values[row]]
             for name, values in per_column.items()} for row in range(batch.num_rows)]


def _raw_values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    # Strings arrive as raw bytes (binary) so a single note with invalid UTF-8 is
    # quarantined instead of failing the whole batch's conversion to Python.
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.binary()) if pa.types.is_string(column.type) else column.cast(pa.large_binary())
    return column.to_pylist()


__all__ = ["annotate_batch", "annotate_batches", "annotate_note", "result_schema", "Limits", "arrow_type"]

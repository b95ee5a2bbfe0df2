"""Spark NLP ``Annotation`` arrays derived in Spark SQL from a note's ``entities``.

``note_status``'s ``ner_chunk`` and ``assertion_annotations`` (``output.sparknlp_annotations``)
repeat what the nested ``entities`` already hold. Building them here, when ``note_status`` is
written, instead of in the Python worker keeps them out of the Arrow batches and the staging
Parquet: through Spark they cost 0.6–0.9 ms of a note when the worker built them (README,
Performance).

Metadata keys follow NerConverter (entity, sentence, chunk, confidence) and AssertionDL
(sentence, chunk, confidence); ``entity_id`` is added to both so users can join them explicitly
instead of relying on array positions. ``chunk`` is the entity's position among the note's
entities, also in ``assertion_annotations`` (which leaves out entities without an assertion).
Confidences are written with four decimals by Spark's ``format_string`` (Java's ``%.4f``:
half-up on the shortest decimal form of the double).
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from clinlake.pipelines.engine.columns import CHUNK_TYPE


def _annotation(kind: str, entity: Column, result: Column, metadata: list[tuple[str, Column]]) -> Column:
    """One Annotation struct with Spark NLP's field names and types (metadata keys in order;
    fields nullable, as Parquet reads them, so no cast to the non-null Annotation type)."""
    pairs = [part for key, value in metadata for part in (F.lit(key), value)]
    return F.struct(F.lit(kind).alias("annotatorType"), entity["begin"].alias("begin"),
                    entity["end"].alias("end"), result.alias("result"), F.create_map(*pairs).alias("metadata"),
                    F.array().cast("array<float>").alias("embeddings"))


def _shared(entity: Column, index: Column) -> list[tuple[str, Column]]:
    return [("sentence", entity["sentence_index"].cast("string")), ("chunk", index.cast("string")),
            ("entity_id", entity["entity_id"])]


def _confidence(value: Column) -> Column:
    return F.format_string("%.4f", value)


def ner_chunk_column(entities: Column) -> Column:
    """NerConverter-style ``chunk`` annotations, one per entity, in the entities' order."""
    return F.transform(entities, lambda e, i: _annotation(
        CHUNK_TYPE, e, e["chunk"],
        _shared(e, i) + [("entity", e["label"]), ("confidence", _confidence(e["ner_confidence"])),
                         ("ner_source", e["ner_model"])]))


def assertion_annotations_column(entities: Column) -> Column:
    """AssertionDL-style ``assertion`` annotations of the entities that have an assertion."""
    indexed = F.transform(entities, lambda e, i: F.struct(e.alias("e"), i.alias("i")))
    asserted = F.filter(indexed, lambda x: x["e"]["assertion"].isNotNull())
    return F.transform(asserted, lambda x: _annotation(
        "assertion", x["e"], x["e"]["assertion"],
        _shared(x["e"], x["i"]) + [("confidence", _confidence(x["e"]["assertion_confidence"])),
                                   ("is_historical", F.coalesce(x["e"]["is_historical"], F.lit(False))
                                    .cast("string"))]))


def sparknlp_columns(entities: Column, annotated: Column) -> list[Column]:
    """``ner_chunk`` and ``assertion_annotations`` for ``note_status``: null where the note is
    not ``annotated`` (quarantined notes have no annotations)."""
    return [F.when(annotated, ner_chunk_column(entities)).alias("ner_chunk"),
            F.when(annotated, assertion_annotations_column(entities)).alias("assertion_annotations")]


__all__ = ["assertion_annotations_column", "ner_chunk_column", "sparknlp_columns"]

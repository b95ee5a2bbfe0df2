"""The Spark edge of ``pipeline.ner`` entries ``{column: NAME}``: a Spark NLP chunk column of the
input (array of Annotation structs: annotatorType, begin, end (inclusive), result, metadata with
``entity`` and optionally ``confidence``) becomes plain structs the engine reads per note
(:class:`clinlake.pipelines.engine.columns.ExternalChunk`): begin, end made exclusive, chunk,
label, confidence, annotator_type. Validation against the note text happens in the engine.
"""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clinlake.pipelines.spark.batch import CHUNKS_PREFIX  # the engine input's column: _ner_column_NAME

REQUIRED_FIELDS = ("begin", "end", "result", "metadata")


class ChunkColumnError(ValueError):
    """A ``pipeline.ner`` column is missing from the input or is not an Annotation array."""


def engine_column(name: str) -> str:
    return CHUNKS_PREFIX + name


def plain_chunk_columns(df: DataFrame, names: Sequence[str]) -> list[Column]:
    """One engine input column per NER input column (aliased :func:`engine_column`)."""
    return [plain_chunks(df, name).alias(engine_column(name)) for name in names]


def plain_chunks(df: DataFrame, name: str) -> Column:
    element = _element_type(df, name)
    metadata = element["metadata"].dataType

    def convert(a: Column) -> Column:
        kind = a["annotatorType"] if "annotatorType" in element.names else F.lit("chunk")
        return F.struct(
            a["begin"].cast("int").alias("begin"),
            (a["end"].cast("int") + 1).alias("end"),
            a["result"].cast("string").alias("chunk"),
            _metadata_value(a["metadata"], metadata, "entity").alias("label"),
            _metadata_value(a["metadata"], metadata, "confidence").try_cast("double").alias("confidence"),
            kind.cast("string").alias("annotator_type"),
        )

    return F.transform(F.col(name), convert)


def _element_type(df: DataFrame, name: str) -> T.StructType:
    if name not in df.columns:
        raise ChunkColumnError(f"pipeline.ner column {name!r} is not a column of the input; it has {df.columns}")
    kind = df.schema[name].dataType
    element = kind.elementType if isinstance(kind, T.ArrayType) else None
    if not isinstance(element, T.StructType) or any(f not in element.names for f in REQUIRED_FIELDS):
        raise ChunkColumnError(
            f"pipeline.ner column {name!r} must be a Spark NLP Annotation array (fields {', '.join(REQUIRED_FIELDS)}, "
            f"e.g. NerConverter's output); it is {kind.simpleString()}")
    meta = element["metadata"].dataType
    if not isinstance(meta, (T.MapType, T.StructType)):
        raise ChunkColumnError(f"pipeline.ner column {name!r}: metadata must be a map or struct; "
                               f"it is {meta.simpleString()}")
    return element


def _metadata_value(metadata: Column, kind: T.DataType, key: str) -> Column:
    if isinstance(kind, T.MapType):
        return metadata.getItem(key).cast("string")
    if key in kind.names:  # JSON input: Spark infers a struct for the metadata object
        return metadata.getField(key).cast("string")
    return F.lit(None).cast("string")

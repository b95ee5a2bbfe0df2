"""Spark rendering of :mod:`schemas.tables`."""
from __future__ import annotations

from pyspark.sql import types as T

from .tables import ENTITY_COLUMNS, Column

_SCALARS = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "timestamp": T.TimestampType(),
}


def annotation_type() -> T.StructType:
    """Spark NLP's Annotation struct, taken from spark-nlp itself so the two never drift."""
    from sparknlp.annotation import Annotation

    return Annotation.dataType()


def spark_type(type_name: str) -> T.DataType:
    if type_name in _SCALARS:
        return _SCALARS[type_name]
    if type_name == "entities":
        return T.ArrayType(T.StructType([spark_field(c) for c in ENTITY_COLUMNS]), containsNull=False)
    if type_name == "annotations":
        return T.ArrayType(annotation_type(), containsNull=False)
    raise ValueError(f"unknown column type {type_name!r}")


def spark_field(column: Column) -> T.StructField:
    return T.StructField(column.name, spark_type(column.type), nullable=column.nullable)


def spark_schema(columns: tuple[Column, ...], extra: tuple[T.StructField, ...] = ()) -> T.StructType:
    return T.StructType([spark_field(c) for c in columns] + list(extra))

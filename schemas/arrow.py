"""Arrow rendering of :mod:`schemas.tables` (no PySpark import: used by the engine)."""
from __future__ import annotations

import pyarrow as pa

from .tables import ENTITY_COLUMNS, Column

_ANNOTATION = pa.struct([
    pa.field("annotatorType", pa.string(), nullable=False),
    pa.field("begin", pa.int32(), nullable=False),
    pa.field("end", pa.int32(), nullable=False),
    pa.field("result", pa.string(), nullable=False),
    pa.field("metadata", pa.map_(pa.string(), pa.string()), nullable=False),
    pa.field("embeddings", pa.list_(pa.float32()), nullable=False),
])

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_type(type_name: str) -> pa.DataType:
    if type_name in _SCALARS:
        return _SCALARS[type_name]
    if type_name == "entities":
        return pa.list_(entity_struct())
    if type_name == "annotations":
        return pa.list_(_ANNOTATION)
    raise ValueError(f"unknown column type {type_name!r}")


def entity_struct() -> pa.StructType:
    return pa.struct([arrow_field(c) for c in ENTITY_COLUMNS])


def annotation_struct() -> pa.StructType:
    return _ANNOTATION


def arrow_field(column: Column) -> pa.Field:
    return pa.field(column.name, arrow_type(column.type), nullable=column.nullable)


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([arrow_field(c) for c in columns])

"""Render the table reference in README.md from the declared schemas.

    python -m clinlake.schemas.docs   # prints the Markdown; tests check README contains it
"""
from __future__ import annotations

from .tables import RUN_COLUMNS, Column, entity_table, note_status_table, quarantine_table

TABLES: dict[str, tuple[Column, ...]] = {
    "entities": entity_table(),
    "note_status": note_status_table(sparknlp=True),
    "quarantine": quarantine_table(),
    "runs": RUN_COLUMNS,
}

_TYPE_NAMES = {"entities": "array<struct>", "annotations": "array<Annotation>"}


def table_markdown(name: str, columns: tuple[Column, ...]) -> str:
    rows = [f"#### `{name}`", "", "| column | type | null | meaning |", "|---|---|---|---|"]
    rows += [f"| `{c.name}` | {_TYPE_NAMES.get(c.type, c.type)} | {'yes' if c.nullable else 'no'} | {c.doc.replace('|', chr(92) + '|')} |"
             for c in columns]
    return "\n".join(rows)


def reference_markdown() -> str:
    return "\n\n".join(table_markdown(name, cols) for name, cols in TABLES.items())


if __name__ == "__main__":
    print(reference_markdown())

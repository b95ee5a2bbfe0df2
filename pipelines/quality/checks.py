"""clinlake checks: what GX cannot express on one table, computed with Spark SQL.

A suite's ``checks`` list names them (``- {check: entities_per_note, mean_min: 1.0}``):
the substring invariant against the note text, every input row accounted for in
``note_status``, entity counts consistent across tables, the declared schema, and
distribution checks with configurable bounds that catch a broken model (entities per
note, share of notes without entities, share of each assertion value, share of
quarantined notes). :data:`CHECKS` is the registry; :func:`register_check` adds one.

Failures carry counts, column names and note/entity ids only, never note text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pyspark.sql import functions as F

from clinlake.pipelines.quality.types import CheckSpec, Failure, GateInputError
from clinlake.schemas.spark import spark_schema
from clinlake.schemas.tables import RUN_COLUMNS, entity_table, note_status_table, quarantine_table

#: Example note/entity ids a failure's detail lists.
N_EXAMPLES = 5


@dataclass
class CheckContext:
    """What a check may read: the tables under validation, the input notes, a shared memo."""

    spark: Any
    tables: Mapping[str, Any]
    notes: Any  # DataFrame(note_id string, text string) or None
    persist: Callable[[Any], Any] = lambda df: df
    memo: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str, check: str):
        if name not in self.tables:
            raise GateInputError(f"check {check!r} needs table {name!r}; pass it in tables")
        return self.tables[name]

    def input_notes(self, check: str):
        if self.notes is None:
            raise GateInputError(f"check {check!r} needs the input notes; pass notes")
        return self.notes


@dataclass(frozen=True)
class CheckDef:
    """A registered check: its function, the table it belongs to and its parameter kinds."""

    fn: Callable[[CheckContext, CheckSpec, str], list[Failure]]
    table: str | None  # the suite table it belongs to (None: any)
    params: dict[str, str]  # name -> number | share | count | bounds
    doc: str


CHECKS: dict[str, CheckDef] = {}


def register_check(name: str, *, table: str | None, params: Mapping[str, str] | None = None, doc: str = ""):
    """Register a clinlake check (a function ``(ctx, spec, table) -> list[Failure]``)."""
    def wrap(fn):
        CHECKS[name] = CheckDef(fn=fn, table=table, params={"min_notes": "count", **(params or {})},
                                doc=doc or (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return wrap


def run_check(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    """Run one check on a suite's ``table``; its failures carry the suite entry's severity."""
    failures = CHECKS[spec.name].fn(ctx, spec, table) or []
    return [Failure(table=f.table, expectation=f.expectation, observed=f.observed, expected=f.expected,
                    detail=f.detail, column=f.column, severity=spec.severity, source="clinlake")
            for f in failures]


def _examples(df, columns: Sequence[str], n: int = N_EXAMPLES) -> str:
    rows = df.select(*columns).limit(n).collect()
    return ", ".join("/".join("null" if v is None else str(v) for v in row) for row in rows)


@register_check("declared_schema", table=None,
                doc="Column names and types as declared in schemas/tables.py (pass-through columns may follow).")
def _declared_schema(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    df = ctx.table(table, spec.name)
    declared = {"entities": lambda: entity_table(),
                "note_status": lambda: note_status_table(sparknlp="ner_chunk" in df.columns),
                "quarantine": quarantine_table, "runs": lambda: RUN_COLUMNS}
    if table not in declared:
        return [Failure(table, spec.name, "no declared schema", f"one of {', '.join(declared)}")]
    expected = [(f.name, f.dataType.simpleString()) for f in spark_schema(declared[table]())]
    actual = [(f.name, f.dataType.simpleString()) for f in df.schema]
    problems = []
    actual_types = dict(actual)
    for i, (name, type_) in enumerate(expected):
        if name not in actual_types:
            problems.append(f"{name} missing")
        elif actual_types[name] != type_:
            problems.append(f"{name} is {actual_types[name][:60]}, declared {type_[:60]}")
        elif i < len(actual) and actual[i][0] != name:
            problems.append(f"{name} out of order")
    if not problems:
        return []
    return [Failure(table, spec.name, "; ".join(problems[:8]) + (" …" if len(problems) > 8 else ""),
                    "the declared columns and types, in order")]


@register_check("substring_matches_text", table="entities",
                doc="chunk equals the note text at begin..end (0-based, end inclusive) for every entity.")
def _substring_matches_text(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    entities = ctx.table("entities", spec.name).select("note_id", "entity_id", "chunk", "begin", "end")
    notes = ctx.input_notes(spec.name).where(F.col("note_id").isNotNull() & F.col("text").isNotNull()) \
        .dropDuplicates(["note_id"]).withColumnRenamed("text", "_note_text")
    joined = entities.join(notes, "note_id", "left")
    missing = F.col("_note_text").isNull()
    mismatch = (~missing) & (
        F.col("chunk").isNull() | F.col("begin").isNull() | F.col("end").isNull() | (F.col("begin") < 0)
        | (F.col("end") < F.col("begin")) | (F.col("end") >= F.char_length("_note_text"))
        | (F.expr("substring(_note_text, begin + 1, `end` - begin + 1)") != F.col("chunk")))
    joined = joined.withColumn("_missing", missing).withColumn("_mismatch", mismatch)
    row = joined.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("_missing").cast("long")).alias("missing"),
                     F.sum(F.col("_mismatch").cast("long")).alias("mismatch")).first()
    failures = []
    if row["mismatch"]:
        failures.append(Failure(
            table, spec.name, {"mismatched": row["mismatch"], "of": row["n"]},
            "0 entities whose chunk differs from substring(text, begin+1, end-begin+1)",
            detail="e.g. note_id/entity_id " + _examples(joined.where("_mismatch"), ["note_id", "entity_id"])))
    if row["missing"]:
        failures.append(Failure(
            table, spec.name, {"entities_without_input_note": row["missing"], "of": row["n"]},
            "every entity's note_id among the input notes (with text)",
            detail="e.g. note_id " + _examples(joined.where("_missing").select("note_id").distinct(), ["note_id"])))
    return failures


@register_check("notes_present_once", table="note_status",
                doc="Every input row is accounted for in note_status exactly once, and no id is annotated twice.")
def _notes_present_once(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    notes = ctx.input_notes(spec.name)
    status = ctx.table("note_status", spec.name)
    inp = notes.groupBy("note_id").agg(F.count(F.lit(1)).alias("n_in")).withColumnRenamed("note_id", "_in_id")
    out = status.groupBy("note_id").agg(F.count(F.lit(1)).alias("n_out"),
                                        F.sum((F.col("status") == "annotated").cast("long")).alias("n_ann"))
    joined = inp.join(out, inp["_in_id"].eqNullSafe(out["note_id"]), "full") \
        .select(F.coalesce("_in_id", "note_id").alias("id"), F.coalesce("n_in", F.lit(0)).alias("n_in"),
                F.coalesce("n_out", F.lit(0)).alias("n_out"), F.coalesce("n_ann", F.lit(0)).alias("n_ann"))
    kinds = {
        "missing": (F.col("n_in") > 0) & (F.col("n_out") == 0),
        "not_in_input": (F.col("n_in") == 0) & (F.col("n_out") > 0),
        "count_mismatch": (F.col("n_in") > 0) & (F.col("n_out") > 0) & (F.col("n_in") != F.col("n_out")),
        "annotated_more_than_once": F.col("n_ann") > 1,
    }
    row = joined.agg(*[F.sum(cond.cast("long")).alias(k) for k, cond in kinds.items()],
                     F.sum("n_in").alias("rows_in"), F.sum("n_out").alias("rows_out")).first()
    bad = {k: row[k] for k in kinds if row[k]}
    if not bad and row["rows_in"] == row["rows_out"]:
        return []
    examples = _examples(joined.where(" OR ".join(f"({c})" for c in (
        "n_in > 0 AND n_out = 0", "n_in = 0 AND n_out > 0", "n_in != n_out", "n_ann > 1"))), ["id"])
    observed = {**bad, "input_rows": row["rows_in"] or 0, "note_status_rows": row["rows_out"] or 0}
    return [Failure(table, spec.name, observed,
                    "each input row once in note_status (an id occurring k times in the input occurs k times), "
                    "no id annotated twice", detail=f"e.g. note_id {examples}")]


def _annotated_counts(ctx: CheckContext, check: str):
    """(note_id, entity_count, n) per annotated note, n = its rows in the entities table (cached)."""
    if "annotated_counts" in ctx.memo:
        return ctx.memo["annotated_counts"]
    status = ctx.table("note_status", check)
    entities = ctx.table("entities", check)
    annotated = status.where(F.col("status") == "annotated").select("note_id", "entity_count")
    counts = entities.groupBy("note_id").agg(F.count(F.lit(1)).alias("n"))
    per_note = annotated.join(counts, "note_id", "left").withColumn("n", F.coalesce("n", F.lit(0)))
    ctx.memo["annotated_counts"] = per_note = ctx.persist(per_note)
    return per_note


@register_check("entity_counts_consistent", table="note_status",
                doc="note_status.entity_count equals the note's rows in entities; entities only for annotated notes.")
def _entity_counts_consistent(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    per_note = _annotated_counts(ctx, spec.name)
    wrong = per_note.where(F.col("n") != F.col("entity_count"))
    n_wrong = wrong.count()
    annotated = ctx.table("note_status", spec.name).where(F.col("status") == "annotated").select("note_id")
    orphans = ctx.table("entities", spec.name).select("note_id").distinct().join(annotated, "note_id", "left_anti")
    n_orphans = orphans.count()
    failures = []
    if n_wrong:
        failures.append(Failure(table, spec.name, {"notes_with_wrong_entity_count": n_wrong},
                                "entity_count = number of rows in entities, for every annotated note",
                                detail=f"e.g. note_id {_examples(wrong, ['note_id'])}", column="entity_count"))
    if n_orphans:
        failures.append(Failure(table, spec.name, {"entity_note_ids_not_annotated": n_orphans},
                                "entities only for notes annotated in note_status",
                                detail=f"e.g. note_id {_examples(orphans, ['note_id'])}"))
    return failures


def _bounds_failures(table: str, check: str, metric: str, value: float, low: float | None, high: float | None,
                     **extra) -> list[Failure]:
    if (low is not None and value < low) or (high is not None and value > high):
        if low is None:
            expected = f"{metric} <= {high:g}"
        elif high is None:
            expected = f"{metric} >= {low:g}"
        else:
            expected = f"{metric} in [{low:g}, {high:g}]"
        return [Failure(table, check, {metric: round(value, 4), **extra}, expected)]
    return []


@register_check("entities_per_note", table="entities",
                params={"mean_min": "number", "mean_max": "number", "max": "number"},
                doc="Mean and maximum number of entities per annotated note within bounds.")
def _entities_per_note(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    row = _annotated_counts(ctx, spec.name).agg(F.count(F.lit(1)).alias("notes"), F.avg("n").alias("mean"),
                                                F.max("n").alias("max")).first()
    notes = row["notes"]
    if notes < max(1, spec.params.get("min_notes", 1)):
        return []
    p = spec.params
    return (_bounds_failures(table, spec.name, "mean", float(row["mean"]), p.get("mean_min"), p.get("mean_max"),
                             annotated_notes=notes)
            + _bounds_failures(table, spec.name, "max", float(row["max"]), None, p.get("max"), annotated_notes=notes))


@register_check("share_notes_without_entities", table="note_status", params={"min": "share", "max": "share"},
                doc="Share of annotated notes with no entity within bounds.")
def _share_without(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    row = _annotated_counts(ctx, spec.name).agg(
        F.count(F.lit(1)).alias("notes"), F.sum((F.col("n") == 0).cast("long")).alias("empty")).first()
    notes = row["notes"]
    if notes < max(1, spec.params.get("min_notes", 1)):
        return []
    share = (row["empty"] or 0) / notes
    return _bounds_failures(table, spec.name, "share", share, spec.params.get("min"), spec.params.get("max"),
                            notes_without_entities=row["empty"] or 0, annotated_notes=notes)


@register_check("share_quarantined", table="note_status", params={"max": "share"},
                doc="Share of input rows quarantined at most max (a broken input feed).")
def _share_quarantined(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    row = ctx.table("note_status", spec.name).agg(
        F.count(F.lit(1)).alias("rows"), F.sum((F.col("status") == "quarantined").cast("long")).alias("q")).first()
    rows = row["rows"]
    if rows < max(1, spec.params.get("min_notes", 1)):
        return []
    return _bounds_failures(table, spec.name, "share", (row["q"] or 0) / rows, None, spec.params.get("max"),
                            quarantined=row["q"] or 0, rows=rows)


@register_check("assertion_share", table="entities", params={"shares": "bounds", "min_entities": "count"},
                doc="Share of entities with each assertion value within per-value bounds ('none' = null).")
def _assertion_share(ctx: CheckContext, spec: CheckSpec, table: str) -> list[Failure]:
    entities = ctx.table("entities", spec.name)
    counts = {r["a"]: r["n"] for r in entities.groupBy(F.coalesce("assertion", F.lit("none")).alias("a"))
              .agg(F.count(F.lit(1)).alias("n")).collect()}
    total = sum(counts.values())
    if total == 0 or total < spec.params.get("min_entities", 1):
        return []
    failures = []
    for value, bounds in spec.params.get("shares", {}).items():
        share = counts.get(value, 0) / total
        for f in _bounds_failures(table, spec.name, "share", share, bounds.get("min"), bounds.get("max"),
                                  entities=counts.get(value, 0), of=total):
            failures.append(Failure(f.table, f.expectation, f.observed, f.expected.replace("share", f"share of {value}", 1),
                                    column="assertion"))
    return failures

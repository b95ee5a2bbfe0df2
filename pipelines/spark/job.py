"""The Spark edge of the annotate job: read notes, run the engine per partition with
``mapInArrow`` (every stage in one pass per Arrow batch), write the tables, account for
every note.

Flow: read → prepare (id as string, text as raw bytes, duplicate-id verdicts computed
with a window, pass-through columns) → ``mapInArrow`` (one result row per input row) →
staged once as Parquet under ``<output>/_staging/<run_id>`` → ``entities``,
``note_status``, ``quarantine`` derived from the staged results → ``runs`` row appended.
The staged results are read back rather than recomputed, so the engine runs once per note.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clinlake import __version__
from clinlake.schemas.spark import spark_schema
from clinlake.schemas.tables import (NOTE_RESULT_COLUMNS, RUN_COLUMNS, SPARKNLP_COLUMNS, STATUS_ANNOTATED,
                                     STATUS_QUARANTINED, TABLE_NAMES, entity_table, note_status_table, quarantine_table)

from clinlake.pipelines.spark.batch import (
    ID_COLUMN, PRE_REASON_COLUMN, TEXT_COLUMN, TEXT_NOT_STRING, Limits, annotate_batches,
)
from clinlake.pipelines.config import InputConfig, JobConfig, NerColumnConfig
from clinlake.pipelines.resources import Resolver, resolve_data_path
from clinlake.pipelines.engine.pipeline import cached_pipeline
from clinlake.pipelines.quality.gate import validate_tables
from clinlake.pipelines.quality.suites import configured_labels, load_suite
from clinlake.pipelines.report.html import collect_report_data, write_run_report
from clinlake.pipelines.spark.chunks import ChunkColumnError, engine_column, plain_chunk_columns
from clinlake.pipelines.spark.progress import BatchCounter, clear_description, describe
from clinlake.pipelines.spark.progress import reporting as progress_lines
from clinlake.pipelines.spark.session import isolate_worker_imports
from clinlake.pipelines.spark.sparknlp_columns import sparknlp_columns
from clinlake.pipelines.spark.delta_spark import DeltaSparkTables, quote_name, use_delta_spark
from clinlake.pipelines.spark.tables import DeltaTables, ParquetTables, read_delta
from clinlake.pipelines.spark.worker import worker_pipeline

COPIES_COLUMN = "_copies"  # rows sharing the note id (incremental mode skips only unique, clean ids)
DUPLICATE_ID = "duplicate_id"
DUPLICATE_ID_CONFLICT = "duplicate_id_conflict"
CSV_DEFAULTS = {"header": "true", "multiLine": "true", "escape": '"'}


class InputError(ValueError):
    """The input cannot be read as notes (missing columns, unreadable path)."""


class QualityGateError(RuntimeError):
    """The quality gate failed in enforce mode; nothing was published. The message is the
    gate's one-screen summary (no note text)."""


class RunIntegrityError(RuntimeError):
    """Notes were lost or duplicated between input and output; the run is failed."""


@dataclass
class RunSummary:
    run_id: str
    pipeline_version: str
    status: str
    notes_read: int
    notes_annotated: int
    notes_quarantined: int
    entities: int
    duration_s: float
    tables: dict[str, str]
    notes_unchanged: int = 0
    table_versions: dict[str, int] = field(default_factory=dict)
    gate_status: str | None = None
    gate_summary: str | None = None
    gate_failures: list[dict] = field(default_factory=list)
    data_docs: str | None = None
    report_path: str | None = None
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    assertions: dict[str, int] = field(default_factory=dict)


def read_notes(spark: SparkSession, conf: InputConfig) -> DataFrame:
    path = resolve_data_path(conf.path) if conf.path is not None else f"table {conf.table}"
    options = {**CSV_DEFAULTS, **conf.options} if conf.format == "csv" else dict(conf.options)
    try:
        if conf.table is not None:
            df = read_catalog_table(spark, conf.table, conf.version)
        elif conf.format == "delta":
            df = read_delta(spark, path, conf.version)
        else:
            df = spark.read.format(conf.format).options(**options).load(path)
    except Exception as exc:  # AnalysisException etc.: the message names the path, never data
        what = "input" if conf.table is not None else f"{conf.format} input"
        raise InputError(f"cannot read {what} at {path}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300]}") from None
    missing = [c for c in (conf.id_column, conf.text_column, *conf.passthrough) if c not in df.columns]
    if missing:
        raise InputError(f"input at {path} has no column(s) {missing}; it has {df.columns}. "
                         "Set input.id_column / input.text_column / input.passthrough accordingly.")
    return df


def read_catalog_table(spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
    """A catalog table (``input.table``); ``version``: Delta time travel."""
    if version is None:
        return spark.table(name)
    return spark.sql(f"SELECT * FROM {quote_name(name)} VERSION AS OF {int(version)}")


def prepare_notes(df: DataFrame, conf: InputConfig, chunk_columns: Sequence[str] = ()) -> DataFrame:
    """Columns the engine needs, under the engine's names, plus the pre-decided reasons.
    ``chunk_columns``: the input's NER chunk columns (``pipeline.ner`` column entries)."""
    reserved = {c.name for c in NOTE_RESULT_COLUMNS + SPARKNLP_COLUMNS} | {"pipeline_version", "run_id"}
    clash = sorted(set(conf.passthrough) & reserved)
    if clash:
        raise InputError(f"input.passthrough column(s) {clash} clash with clinlake's output columns; "
                         "rename them in the input first.")
    text_type = df.schema[conf.text_column].dataType
    if isinstance(text_type, (T.StringType, T.BinaryType)):
        text = F.col(conf.text_column).cast("binary")
        type_reason = F.lit(None).cast("string")
    else:
        # Not a note: kept (as its string form) for the quarantine table, never annotated.
        text = F.col(conf.text_column).cast("string").cast("binary")
        type_reason = F.lit(f"{TEXT_NOT_STRING}:input column type is {text_type.simpleString()}")
    notes = df.select(
        F.col(conf.id_column).cast("string").alias(ID_COLUMN),
        text.alias(TEXT_COLUMN),
        type_reason.alias("_type_reason"),
        *_chunk_columns(df, chunk_columns),
        *[F.col(c) for c in conf.passthrough],
    )
    return (notes.withColumn(PRE_REASON_COLUMN, F.coalesce("_type_reason", _duplicate_reason(conf)))
            .withColumn(COPIES_COLUMN, F.count(F.lit(1)).over(Window.partitionBy(ID_COLUMN)))
            .drop("_type_reason"))


def ner_columns(config: JobConfig) -> list[str]:
    """The input columns ``pipeline.ner`` column entries read (a user's Spark NLP chunks)."""
    return [entry.column for entry in config.pipeline.ner if isinstance(entry, NerColumnConfig)]


def _chunk_columns(df: DataFrame, names: Sequence[str]) -> list:
    try:
        return plain_chunk_columns(df, names)
    except ChunkColumnError as exc:
        raise InputError(str(exc)) from None


def _duplicate_reason(conf: InputConfig):
    by_id = Window.partitionBy(ID_COLUMN)
    text_hash = F.coalesce(F.sha2(F.col(TEXT_COLUMN), 256), F.lit(""))
    copies = F.count(F.lit(1)).over(by_id)
    distinct_texts = F.size(F.collect_set(text_hash).over(by_id))
    rank = F.row_number().over(by_id.orderBy(text_hash))
    duplicated = F.col(ID_COLUMN).isNotNull() & (copies > 1)
    all_copies = F.concat(F.lit(f"{DUPLICATE_ID}:note id occurs "), copies.cast("string"), F.lit(" times"))
    if conf.duplicate_ids == "quarantine_all":
        return F.when(duplicated, all_copies)
    conflict = F.concat(F.lit(f"{DUPLICATE_ID_CONFLICT}:"), copies.cast("string"),
                        F.lit(" rows with different texts share this note id"))
    return (F.when(duplicated & (distinct_texts > 1), conflict)
            .when(duplicated & (rank > 1), F.lit(f"{DUPLICATE_ID}:identical copy of a note annotated in this run")))


def engine_task_count(notes: int, cores: int, notes_per_partition: int) -> int:
    """Engine tasks for ``notes`` notes on ``cores`` cores: at least two per core (so a slow task does
    not leave cores idle), more when that would put over ``notes_per_partition`` notes in one task,
    rounded up to a multiple of the cores. The round-robin repartition that uses it makes tasks of
    equal size, so the last wave then fills every core: 41 tasks on 2 cores left one core idle for
    the whole last task (about 2 % of a 20k-note run), 42 do not."""
    cores = max(1, cores)
    tasks = max(2 * cores, -(-notes // max(1, notes_per_partition)))
    return -(-tasks // cores) * cores


def engine_partitions(spark: SparkSession, notes: int, notes_per_partition: int) -> int:
    """:func:`engine_task_count` for the session's cores. The round-robin repartition that uses it is
    retry-safe: Spark sorts before it, so a task re-run after a lost executor gets the same notes."""
    return engine_task_count(notes, spark.sparkContext.defaultParallelism, notes_per_partition)


def annotate_notes(notes: DataFrame, config: JobConfig, counter: BatchCounter | None = None) -> DataFrame:
    """Run the whole engine on every partition with ``mapInArrow``; one row out per row in.
    ``counter`` counts the finished result batches for the driver's progress lines."""
    passthrough = tuple(config.input.passthrough)
    limits = Limits(max_text_chars=config.input.max_text_chars,
                    allow_control_characters=config.input.control_characters == "allow")
    schema = spark_schema(NOTE_RESULT_COLUMNS, extra=tuple(notes.schema[c] for c in passthrough))

    # Only what the engine is built from travels to the executors, not the whole job config.
    pipeline_conf, resolver = config.pipeline, Resolver(config.base_dir)

    def run_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pipeline = worker_pipeline(pipeline_conf, resolver)  # built once per Python worker
        results = annotate_batches(pipeline, batches, passthrough=passthrough, limits=limits)
        yield from (map(counter.count, results) if counter is not None else results)

    chunks = [engine_column(name) for name in ner_columns(config)]
    engine_input = notes.select(ID_COLUMN, TEXT_COLUMN, PRE_REASON_COLUMN, *chunks, *passthrough)
    return engine_input.mapInArrow(run_partition, schema)


def derive_tables(results: DataFrame, config: JobConfig, run_id: str, version: str) -> dict[str, DataFrame]:
    passthrough = list(config.input.passthrough)
    stamp = [F.lit(version).alias("pipeline_version"), F.lit(run_id).alias("run_id")]
    entity_cols = [c.name for c in entity_table() if c.name not in ("pipeline_version", "run_id")]
    entities = (results.where(F.col("status") == STATUS_ANNOTATED)
                .select("note_id", F.explode("entities").alias("e"), *passthrough)
                .select(*[F.col("note_id") if c == "note_id" else F.col(f"e.{c}") for c in entity_cols],
                        *stamp, *passthrough))
    status_cols = [F.col(c.name) for c in note_status_table() if c.name not in ("pipeline_version", "run_id")]
    if config.output.sparknlp_annotations:  # derived here, not in the worker: see pipelines/spark/sparknlp_columns.py
        status_cols += sparknlp_columns(F.col("entities"), F.col("status") == STATUS_ANNOTATED)
    note_status = results.select(*status_cols, *stamp, *passthrough)
    q_cols = [c.name for c in quarantine_table() if c.name not in ("pipeline_version", "run_id")]
    quarantine = results.where(F.col("status") == STATUS_QUARANTINED).select(*q_cols, *stamp, *passthrough)
    return {"entities": entities, "note_status": note_status, "quarantine": quarantine}


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def output_tables(spark: SparkSession, config: JobConfig, *,
                  full_refresh: bool) -> ParquetTables | DeltaTables | DeltaSparkTables:
    partition_by = {"entities": list(config.output.partition_by)}
    allowed = {c.name for c in entity_table()} | set(config.input.passthrough)
    unknown = [c for c in config.output.partition_by if c not in allowed]
    if unknown:
        raise InputError(f"output.partition_by column(s) {unknown} are not columns of the entities table "
                         "(entity columns or input.passthrough columns)")
    if config.output.format == "delta":
        incremental = config.output.incremental and not full_refresh
        names = config.output.table_names()
        if use_delta_spark(spark, writer=config.output.delta_writer, named=bool(names)):
            return DeltaSparkTables(spark, config.output.path, names=names, incremental=incremental,
                                    partition_by=partition_by)
        return DeltaTables(spark, config.output.path, incremental=incremental, partition_by=partition_by)
    return ParquetTables(spark, config.output.path, mode=config.output.mode, partition_by=partition_by)


def unchanged_notes(notes: DataFrame, stored_status: DataFrame, version: str) -> DataFrame:
    """Ids of input notes whose stored row says: annotated, same text hash, same pipeline version.

    Only notes with a unique id and no pre-decided quarantine reason qualify; everything
    else (new, edited, upgraded, previously quarantined, duplicated) is processed again.
    """
    stored = (stored_status.where((F.col("status") == STATUS_ANNOTATED) & (F.col("pipeline_version") == version))
              .select(ID_COLUMN, F.col("text_sha256").alias("_stored_sha")))
    clean = notes.where(F.col(ID_COLUMN).isNotNull() & F.col(PRE_REASON_COLUMN).isNull()
                        & (F.col(COPIES_COLUMN) == 1) & F.col(TEXT_COLUMN).isNotNull())
    return (clean.select(ID_COLUMN, F.sha2(F.col(TEXT_COLUMN), 256).alias("_sha"))
            .join(stored, ID_COLUMN).where(F.col("_sha") == F.col("_stored_sha")).select(ID_COLUMN))


def run_annotate(spark: SparkSession, config: JobConfig, *, run_id: str | None = None,
                 full_refresh: bool = False, progress_interval: float = 2.0) -> RunSummary:
    """The annotate job: read, annotate (only what changed, for incremental Delta output),
    publish one commit per table, check that no note was lost, record the run.

    A run id that already committed successfully makes the run a no-op
    (status ``already_committed``), so a scheduler may retry a run safely. While the engine runs,
    a progress line is logged (logger ``clinlake.progress``, INFO) at most every
    ``progress_interval`` seconds when batches have finished.
    """
    run_id = run_id or new_run_id()
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    isolate_worker_imports(spark)
    # Built on the driver too: validates lexicons, rules and models before any Spark work.
    pipeline = cached_pipeline(config.pipeline, Resolver(config.base_dir))
    tables = output_tables(spark, config, full_refresh=full_refresh)
    paths = {name: tables.path(name) for name in TABLE_NAMES}
    summary = RunSummary(run_id=run_id, pipeline_version=pipeline.version, status="failed", notes_read=0,
                         notes_annotated=0, notes_quarantined=0, entities=0, duration_s=0.0, tables=paths)
    if tables.run_already_committed(run_id):
        summary.status = "already_committed"
        return summary
    staging = f"{config.output.path.rstrip('/')}/_staging/{run_id}"
    write_mode = (("incremental" if tables.incremental else "full_refresh") if config.output.format == "delta"
                  else config.output.mode)
    error: str | None = None
    unchanged: DataFrame | None = None
    try:
        describe(spark, "read notes", run_id)
        notes = read_notes(spark, config.input)
        summary.notes_read = notes.count()
        chunk_columns = ner_columns(config)
        prepared = prepare_notes(notes, config.input, chunk_columns)
        # With NER input columns, a note's entities may change while its text does not: no skipping.
        stored_status = tables.read("note_status") if tables.incremental and not chunk_columns else None
        if stored_status is not None:
            describe(spark, "find unchanged notes (incremental)", run_id)
            unchanged = unchanged_notes(prepared, stored_status, pipeline.version).cache()
            summary.notes_unchanged = unchanged.count()
            prepared = prepared.join(unchanged, ID_COLUMN, "left_anti")
        describe(spark, "annotate: text, sections, NER, assertion (engine)", run_id)
        counter = BatchCounter(spark)
        to_annotate = summary.notes_read - summary.notes_unchanged
        prepared = prepared.repartition(engine_partitions(spark, to_annotate, config.spark.notes_per_partition))
        with progress_lines(counter, to_annotate, interval=progress_interval):
            annotate_notes(prepared, config, counter).write.mode("overwrite").parquet(staging)
        describe(spark, "count results", run_id)
        results = spark.read.parquet(staging)
        _summarise_results(results, summary)
        accounted = summary.notes_annotated + summary.notes_quarantined + summary.notes_unchanged
        if accounted != summary.notes_read:
            raise RunIntegrityError(
                f"{summary.notes_read} notes read but {summary.notes_annotated} annotated + "
                f"{summary.notes_quarantined} quarantined + {summary.notes_unchanged} unchanged")
        derived = derive_tables(results, config, run_id, pipeline.version)
        processed = results.select(ID_COLUMN).distinct()
        describe(spark, "quality gate", run_id)
        gate = audit(spark, config, derived, prepared, run_id, summary)
        if gate is not None and gate.blocks(config.quality.mode):
            if config.quality.report:  # the report shows why nothing was published
                summary.report_path = str(write_report(spark, config, derived, prepared, summary, gate))
            report = f"\nrun report: {summary.report_path}" if summary.report_path else ""
            raise QualityGateError(gate.summary() + report)
        for name in ("entities", "note_status", "quarantine"):
            describe(spark, f"publish {name}", run_id)
            keys = processed.where(F.col(ID_COLUMN).isNotNull()) if name == "entities" else processed
            tables.publish(name, derived[name], keys, run_id=run_id, pipeline_version=pipeline.version)
        summary.status = "succeeded"
        if config.quality.report:
            describe(spark, "run report", run_id)
            summary.duration_s = round(time.monotonic() - clock, 3)
            summary.report_path = str(write_report(spark, config, derived, prepared, summary, gate))
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
        raise
    finally:
        summary.duration_s = round(time.monotonic() - clock, 3)
        summary.table_versions = dict(tables.versions)
        describe(spark, "record the run", run_id)
        row = _run_row(spark, config, summary, pipeline.ner_stage_names, started, error, write_mode)
        tables.append_run(row, run_id=run_id, pipeline_version=pipeline.version,
                          succeeded=summary.status == "succeeded")
        if "runs" in tables.versions:
            summary.table_versions["runs"] = tables.versions["runs"]
        if unchanged is not None:
            unchanged.unpersist()
        _remove_staging(staging)
        clear_description(spark)
    return summary


def audit(spark: SparkSession, config: JobConfig, derived: dict[str, DataFrame], notes: DataFrame, run_id: str,
          summary: RunSummary):
    """Validate the run's tables before anything is published (write-audit-publish)."""
    if config.quality.mode == "off":
        summary.gate_status = "off"
        return None
    resolver = Resolver(config.base_dir)
    labels = configured_labels(config.pipeline, resolver)
    suites = [load_suite(resolver.resource(path), sets={"labels": labels} if labels else None)
              for path in config.quality.suites]
    context_root = _local_dir(config, "_quality", run_id) if config.quality.data_docs else None
    gate = validate_tables(spark, {"entities": derived["entities"], "note_status": derived["note_status"]},
                           notes, suites, context_root=context_root, run_id=run_id)
    summary.gate_status = "passed" if gate.passed else "failed"
    summary.gate_summary = gate.summary()
    summary.gate_failures = [f.to_dict() for f in gate.failures]
    summary.data_docs = str(gate.data_docs) if gate.data_docs else None
    return gate


def write_report(spark: SparkSession, config: JobConfig, derived: dict[str, DataFrame], notes: DataFrame,
                 summary: RunSummary, gate) -> Path:
    data = collect_report_data(spark, derived, notes, n_samples=config.quality.report_samples)
    path = _local_dir(config, "_reports", summary.run_id) / "run_report.html"
    return write_run_report(path, asdict(summary), gate=gate, **data)


def _local_dir(config: JobConfig, kind: str, run_id: str) -> Path:
    # Reports and Data Docs are local files; for object-store outputs they go under ./clinlake-runs.
    root = config.output.path if "://" not in config.output.path else "clinlake-runs"
    return Path(root) / kind / run_id


def _summarise_results(results: DataFrame, summary: RunSummary) -> None:
    """Counts for the summary in two Spark jobs (one over the notes, one over their entities),
    not one per figure: each job re-reads the staging files."""
    statuses, reasons = Counter(), Counter()
    for row in results.groupBy("status", "reason").agg(F.count("*").alias("n")).collect():
        statuses[row["status"]] += row["n"]
        if row["status"] == STATUS_QUARANTINED:
            reasons[row["reason"]] += row["n"]
    summary.notes_annotated = statuses[STATUS_ANNOTATED]
    summary.notes_quarantined = statuses[STATUS_QUARANTINED]
    summary.quarantine_reasons = dict(reasons)
    labels, assertions = Counter(), Counter()
    for row in (results.select(F.explode("entities").alias("e")).groupBy("e.label", "e.assertion")
                .agg(F.count("*").alias("n")).collect()):
        labels[row["label"]] += row["n"]
        assertions[str(row["assertion"])] += row["n"]
    summary.labels = dict(labels.most_common())
    summary.assertions = dict(assertions.most_common())
    summary.entities = sum(summary.labels.values())


def _run_row(spark: SparkSession, config: JobConfig, summary: RunSummary, stages: list[str],
             started: datetime, error: str | None, write_mode: str) -> DataFrame:
    row = {
        "run_id": summary.run_id, "pipeline_version": summary.pipeline_version, "clinlake_version": __version__,
        "status": summary.status, "started_at": started, "finished_at": datetime.now(timezone.utc),
        "duration_s": summary.duration_s, "input_path": config.input.path or config.input.table,
        "input_format": "table" if config.input.table else config.input.format,
        "output_path": config.output.path, "output_format": config.output.format, "write_mode": write_mode,
        "notes_read": summary.notes_read, "notes_unchanged": summary.notes_unchanged,
        "notes_annotated": summary.notes_annotated, "notes_quarantined": summary.notes_quarantined,
        "entities": summary.entities, "ner_stages": ",".join(stages),
        "table_versions": json.dumps(summary.table_versions) if summary.table_versions else None,
        "gate_status": summary.gate_status,
        "gate_failures": json.dumps(summary.gate_failures) if summary.gate_failures else None,
        "report_path": summary.report_path, "error": error,
    }
    return spark.createDataFrame([tuple(row[c.name] for c in RUN_COLUMNS)], spark_schema(RUN_COLUMNS))


def _remove_staging(staging: str) -> None:
    # Local paths only; on object stores the staging prefix is left for lifecycle rules.
    path = Path(staging.removeprefix("file://"))
    if "://" not in staging and path.exists():
        shutil.rmtree(path, ignore_errors=True)
        parent = path.parent
        if parent.name == "_staging" and not any(parent.iterdir()):
            parent.rmdir()

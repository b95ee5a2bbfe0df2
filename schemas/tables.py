"""Every clinlake table, declared once.

Columns are declared with neutral type names so the pure-Python engine can build Arrow
batches without importing PySpark; :mod:`schemas.spark` and :mod:`schemas.arrow` turn the
same declarations into a Spark ``StructType`` and a ``pyarrow.Schema``. The README's table
reference is generated from the ``doc`` strings (``python -m clinlake.schemas.docs``).

Offsets follow Spark NLP: ``begin`` is 0-based and ``end`` is inclusive, so for every
entity row ``substring(text, begin + 1, end - begin + 1) == chunk``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # string | int | long | double | boolean | timestamp | entities | annotations
    nullable: bool
    doc: str


#: Columns of one entity. Shared by the flat ``entities`` table and the nested
#: per-note result the engine returns from each Spark partition.
ENTITY_COLUMNS: tuple[Column, ...] = (
    Column("entity_id", "string", False,
           "Deterministic id: sha256 of pipeline version, note text hash, offsets and label (32 hex)."),
    Column("chunk", "string", False, "The entity text, exactly as in the note."),
    Column("begin", "int", False, "0-based offset of the first character in the note text."),
    Column("end", "int", False, "0-based offset of the last character (inclusive, Spark NLP convention)."),
    Column("label", "string", False, "Entity type, e.g. PROBLEM, TEST, TREATMENT, Disease."),
    Column("ner_confidence", "double", False, "Confidence in [0, 1]: mean CRF marginal of the model's tags; 1.0 for dictionary matches."),
    Column("ner_model", "string", False,
           "Stage that found the entity, with its version (e.g. clinical_core@<sha>, dictionary:problem@<sha>); "
           "'+abbreviation' appended when it was tagged as the short form of an abbreviation whose long form "
           "the stage tagged (pipelines/engine/short_forms.py), '+binomial' when it is another form of a binomial "
           "the stage tagged, e.g. E. coli after Escherichia coli (pipelines/engine/binomials.py), "
           "'+consistency' when the stage's note-level label vote added or relabelled it "
           "(pipelines/engine/consistency.py), '+gazetteer' when it is a term of the model's gazetteer "
           "(pipelines/engine/gazetteer.py). Abbreviations are on unless a model's cross-validation turned them "
           "off; the other three steps only for models whose cross-validation chose them (model.json "
           "document_level), or where the job config turns them on."),
    Column("assertion", "string", True,
           "present | absent | possible | conditional | hypothetical | associated_with_someone_else."),
    Column("assertion_confidence", "double", True, "Confidence of the assertion decision in [0, 1]."),
    Column("is_historical", "boolean", True, "True when the finding is described as past history."),
    Column("assertion_cue", "string", True, "The trigger phrase that decided the assertion, if any."),
    Column("sentence_index", "int", False, "0-based index of the sentence holding the entity."),
    Column("section", "string", True, "Canonical section name (e.g. family_history); null before any heading."),
)

NOTE_ID = Column("note_id", "string", True, "The input note id (cast to string); null only for quarantined rows.")
PIPELINE_VERSION = Column("pipeline_version", "string", False,
                          "clinlake version + fingerprint of the pipeline config, rules, lexicons and models.")
RUN_ID = Column("run_id", "string", False, "Id of the run that wrote the row.")

STATUS_ANNOTATED = "annotated"
STATUS_QUARANTINED = "quarantined"

#: What the engine returns per input note (one row per input row, always).
NOTE_RESULT_COLUMNS: tuple[Column, ...] = (
    NOTE_ID,
    Column("status", "string", False, f"{STATUS_ANNOTATED} | {STATUS_QUARANTINED}."),
    Column("reason", "string", True, "Why the note was quarantined (a reason code); null when annotated."),
    Column("detail", "string", True, "Human-readable detail for the reason; never contains note text."),
    Column("text_sha256", "string", True, "sha256 of the note text as UTF-8; null if the text is unusable."),
    Column("text_length", "long", True, "Length of the note text in characters."),
    Column("entity_count", "int", False, "Number of entity rows written for the note."),
    Column("entities", "entities", False, "The note's entities (nested; exploded into the entities table)."),
    Column("quarantined_text", "string", True,
           "The original text of a quarantined note (string input only), kept so it can be fixed and re-run."),
)

#: Optional Spark NLP interop columns on ``note_status`` (output.sparknlp_annotations).
SPARKNLP_COLUMNS: tuple[Column, ...] = (
    Column("ner_chunk", "annotations", True,
           "Spark NLP chunk annotations (metadata: entity, sentence, chunk, confidence, entity_id, ner_source)."),
    Column("assertion_annotations", "annotations", True,
           "Spark NLP assertion annotations, aligned with ner_chunk; metadata carries entity_id as the join key."),
)

RUN_COLUMNS: tuple[Column, ...] = (
    RUN_ID,
    PIPELINE_VERSION,
    Column("clinlake_version", "string", False, "Package version."),
    Column("status", "string", False, "succeeded | failed."),
    Column("started_at", "timestamp", False, "UTC start time."),
    Column("finished_at", "timestamp", False, "UTC end time."),
    Column("duration_s", "double", False, "Wall-clock seconds."),
    Column("input_path", "string", False, "Where the notes were read from."),
    Column("input_format", "string", False, "delta | parquet | csv | json."),
    Column("output_path", "string", False, "Root of the output tables."),
    Column("output_format", "string", False, "delta | parquet."),
    Column("write_mode", "string", False,
           "incremental | full_refresh (Delta), overwrite | append (Parquet)."),
    Column("notes_read", "long", False, "Input rows read."),
    Column("notes_unchanged", "long", False,
           "Notes skipped by incremental mode: same text hash and pipeline version as their stored row."),
    Column("notes_annotated", "long", False, "Notes annotated."),
    Column("notes_quarantined", "long", False, "Notes quarantined."),
    Column("entities", "long", False, "Entity rows written."),
    Column("ner_stages", "string", False, "Comma-separated NER stages with versions."),
    Column("table_versions", "string", True, "JSON: Delta table version each output table has after the run."),
    Column("gate_status", "string", True, "Quality gate: passed | failed | off (null if the run ended before it)."),
    Column("gate_failures", "string", True,
           "JSON list of failed expectations and checks (names, counts, example ids; never note text)."),
    Column("report_path", "string", True, "The run report (HTML) written for this run."),
    Column("error", "string", True, "Error class and message when the run failed (never note text)."),
)


# Pass-through input columns (e.g. patient_id, note_date) are appended after these, with
# the types they have in the input; they are the user's, so they are not declared here.

def entity_table() -> tuple[Column, ...]:
    """The flat ``entities`` table: note id, entity columns, versions."""
    return (Column("note_id", "string", False, "The input note id (cast to string)."),) + ENTITY_COLUMNS + (PIPELINE_VERSION, RUN_ID)


def note_status_table(*, sparknlp: bool = False) -> tuple[Column, ...]:
    """One row per input row: annotated or quarantined, with the reason."""
    keep = tuple(c for c in NOTE_RESULT_COLUMNS if c.name not in ("entities", "quarantined_text"))
    return keep + (SPARKNLP_COLUMNS if sparknlp else ()) + (PIPELINE_VERSION, RUN_ID)


def quarantine_table() -> tuple[Column, ...]:
    """Quarantined input rows with their reason and (for string input) original text."""
    names = ("note_id", "reason", "detail", "text_sha256", "text_length", "quarantined_text")
    return tuple(c for c in NOTE_RESULT_COLUMNS if c.name in names) + (PIPELINE_VERSION, RUN_ID)


TABLE_NAMES: tuple[str, ...] = ("entities", "note_status", "quarantine", "runs")

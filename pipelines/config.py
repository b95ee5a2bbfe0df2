"""Job configuration: YAML in, validated dataclasses out.

Validation is strict, in the spirit of medspaCy's ``ConTextRule.from_dict``: an unknown key,
a wrong type or a value outside its allowed set raises :class:`ConfigError` naming the key
path (``input.text_column``) and, for typos, the closest valid key.

Relative resource paths (lexicons, rules, heading lists) are resolved against the directory
of the config file, which the loader records as ``base_dir``; ``clinlake:<path>`` names a file
shipped inside the package (:mod:`clinlake.pipelines.resources` resolves both). Input and output
paths stay as given (relative to the working directory), like any Spark job.
"""
from __future__ import annotations

import difflib
import re
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import yaml

class ConfigError(ValueError):
    """The job configuration is invalid; the message names the offending key."""


#: The tables the job writes (``clinlake.schemas.tables.TABLE_NAMES``; repeated so config stays light).
OUTPUT_TABLES: tuple[str, ...] = ("entities", "note_status", "quarantine", "runs")
#: One part of a catalog table name (catalog, schema or table): letters, digits, ``_`` and ``-``.
NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class InputConfig:
    path: str | None = None  # files or a table folder; or:
    table: str | None = None  # a catalog table name ([catalog.]schema.table), read with spark.table
    format: Literal["delta", "parquet", "csv", "json"] = "parquet"  # for path (ignored with table)
    version: int | None = None  # Delta input only: read this table version (time travel)
    id_column: str = "note_id"
    text_column: str = "text"
    passthrough: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    max_text_chars: int = 1_000_000
    control_characters: Literal["quarantine", "allow"] = "quarantine"
    duplicate_ids: Literal["keep_one_if_identical", "quarantine_all"] = "keep_one_if_identical"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.table is None):
            raise ConfigError("missing required key 'input.path' (or 'input.table', a catalog table name)"
                              if self.path is None else "set one of 'input.path' and 'input.table', not both")
        if self.table is not None:
            check_table_name(self.table, key="input.table", parts=(1, 3))


@dataclass(frozen=True)
class OutputConfig:
    path: str = "lake"
    format: Literal["delta", "parquet"] = "delta"
    # Parquet output only (Delta output replaces the processed notes' rows, see README).
    mode: Literal["overwrite", "append"] = "overwrite"
    # Delta output only: annotate only new/changed notes (text hash or pipeline version).
    incremental: bool = True
    # Partition columns of the entities table (e.g. a pass-through note_date), fixed when it is created.
    partition_by: list[str] = field(default_factory=list)
    sparknlp_annotations: bool = True
    # Delta output as catalog tables instead of folders under path (needs a Spark session with Delta):
    # <catalog>.<schema>.<table>, table = entities/note_status/quarantine/runs unless renamed in tables.
    catalog: str | None = None
    schema: str | None = None
    tables: dict[str, str] = field(default_factory=dict)  # per-table name: bare (in catalog.schema) or qualified
    # Who commits Delta output: delta-spark when the session has Delta (auto), else delta-rs.
    delta_writer: Literal["auto", "delta-spark", "delta-rs"] = "auto"

    def __post_init__(self) -> None:
        if self.catalog is not None:
            check_table_name(self.catalog, key="output.catalog", parts=(1, 1))
            if self.schema is None:
                raise ConfigError("'output.catalog' needs 'output.schema' (tables are <catalog>.<schema>.<table>)")
        if self.schema is not None:
            check_table_name(self.schema, key="output.schema", parts=(1, 1))
        reject_unknown_keys(self.tables, OUTPUT_TABLES, error=ConfigError, prefix="output.tables.")
        for table, name in self.tables.items():
            check_table_name(name, key=f"output.tables.{table}", parts=(1, 3))
        missing = [t for t in OUTPUT_TABLES if "." not in self.tables.get(t, "") and self.schema is None]
        if self.tables and missing:
            raise ConfigError(f"output.tables names {sorted(self.tables)} but no 'output.schema' to put "
                              f"{', '.join(missing)} in: set output.schema, or give every table a qualified name")
        if self.table_names() and self.format != "delta":
            raise ConfigError("output table names (output.catalog / output.schema / output.tables) need "
                              "'output.format: delta'")
        if self.table_names() and self.delta_writer == "delta-rs":
            raise ConfigError("output table names (output.catalog / output.schema / output.tables) need the "
                              "delta-spark writer; 'output.delta_writer: delta-rs' writes folders under output.path")

    def table_names(self) -> dict[str, str]:
        """Catalog name of each table (``{}`` when the tables are folders under ``path``)."""
        if self.schema is None and not self.tables:
            return {}
        prefix = ".".join(p for p in (self.catalog, self.schema) if p)
        return {t: (name if "." in (name := self.tables.get(t, t)) else f"{prefix}.{name}") for t in OUTPUT_TABLES}


def check_table_name(name: str, *, key: str, parts: tuple[int, int]) -> None:
    """``name`` is 1-3 dot-separated parts (``parts``: fewest, most) of letters, digits, ``_``, ``-``."""
    split = name.split(".")
    low, high = parts
    if not (low <= len(split) <= high) or not all(NAME_PART.fullmatch(p) for p in split):
        shape = "a name" if high == 1 else "a table name ([catalog.]schema.table or table)"
        raise ConfigError(f"{key!r} must be {shape} of letters, digits, '_' and '-'; got {name!r}")


@dataclass(frozen=True)
class TextConfig:
    abbreviations: str = "clinlake:conf/abbreviations.yaml"


@dataclass(frozen=True)
class SectionsConfig:
    headings: str = "clinlake:conf/sections.yaml"
    unknown_caps_headings: bool = True


@dataclass(frozen=True)
class DictionaryConfig:
    name: str
    path: str
    label: str | None = None  # None: the lexicon file carries a label column


@dataclass(frozen=True)
class NerModelConfig:
    """A trained NER model stage (ONNX, served with onnxruntime)."""

    model: str  # a model name under models/ (e.g. ncbi_disease) or a path to a model directory
    labels: list[str] = field(default_factory=list)  # keep only these labels (after label_map); empty: all
    label_map: dict[str, str] = field(default_factory=dict)  # rename labels, e.g. {Disease: PROBLEM}
    # Document-level steps (a note is the document). Each unset (null) takes the model's own default,
    # chosen by cross-validation where its model.json records one ("document_level": on only where the
    # step won by CV), else the built-in default; true/false here overrides. README, "Biomedical NER".
    # "long form (SF)" with the long form tagged: SF is tagged with its label for the rest of the
    # note (pipelines/engine/short_forms.py). Built-in default: on.
    propagate_abbreviations: bool | None = None
    # A string tagged somewhere in the note is settled by a confidence-weighted vote over all its
    # occurrences (pipelines/engine/consistency.py), a tagged occurrence's vote weighted as the model's
    # model.json says (document_level.consistency_entity_weight, else 1). Built-in default: off.
    label_consistency: bool | None = None
    # A tagged binomial ("Escherichia coli") tags its other forms ("E. coli", "E coli") for the rest of
    # the note (pipelines/engine/binomials.py). Built-in default: off.
    binomial_short_forms: bool | None = None
    # Entity strings the model's training annotators tagged almost every time (models/<name>/gazetteer.tsv)
    # are tagged where nothing else is (pipelines/engine/gazetteer.py). Built-in default: off.
    gazetteer: bool | None = None


@dataclass(frozen=True)
class NerColumnConfig:
    """NER chunks a user's own Spark NLP model already wrote into the input table: an Annotation
    array column (annotatorType ``chunk``, label in metadata ``entity``), e.g. NerConverter's output.
    The Spark edge hands its spans to the engine (pipelines/engine/columns.py), which validates them
    against the note text and runs sections, assertion, the quality gate and publishing on them."""

    column: str  # the input column holding the chunks
    # The labels to keep (after label_map); required: the quality gate checks every label against them.
    labels: list[str] = field(default_factory=list)
    label_map: dict[str, str] = field(default_factory=dict)  # rename labels, e.g. {DISEASE: PROBLEM}


@dataclass(frozen=True)
class AssertionConfig:
    # hybrid: ConText rules + the shipped CNN (models/assertion), the best on the NegEx kit devel split.
    engine: Literal["hybrid", "rules", "model", "none"] = "hybrid"
    rules: str = "clinlake:conf/context_rules.yaml"
    model: str = "assertion"  # a model name under models/ or a model directory (engine model/hybrid)
    max_scope: int = 12
    section_defaults: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SECTION_DEFAULTS))
    # Per NER label, the assertion labels its entities may take; any other result becomes present
    # (pipelines/engine/assertion/by_label.py: a test "negative for X" was done, not absent).
    allowed_by_label: dict[str, list[str]] = field(default_factory=lambda: {
        label: list(names) for label, names in DEFAULT_ALLOWED_BY_LABEL.items()})


DEFAULT_ALLOWED_BY_LABEL = {
    "TEST": ("present", "possible", "conditional", "hypothetical", "associated_with_someone_else"),
}

DEFAULT_SECTION_DEFAULTS = {
    "family_history": "associated_with_someone_else",
    "past_medical_history": "historical",
    "past_surgical_history": "historical",
}


def default_ner() -> list[NerModelConfig]:
    """The shipped clinical PROBLEM / TEST / TREATMENT model (models/clinical_core). On MACCROBAT and
    Chia devel it is better alone than with the lexicon dictionary added (see conf/local.yaml)."""
    return [NerModelConfig(model="clinical_core")]


@dataclass(frozen=True)
class PipelineConfig:
    text: TextConfig = field(default_factory=TextConfig)
    sections: SectionsConfig = field(default_factory=SectionsConfig)
    ner: list[NerModelConfig | NerColumnConfig] = field(default_factory=default_ner)
    dictionary: list[DictionaryConfig] = field(default_factory=list)
    # Chunk merge: stages earlier in the order win overlaps (see pipelines/engine/merge.py).
    dictionary_precedence: Literal["after_models", "before_models"] = "after_models"
    assertion: AssertionConfig = field(default_factory=AssertionConfig)


@dataclass(frozen=True)
class QualityConfig:
    """The quality gate between writing and publishing (write-audit-publish)."""

    # enforce: a failed gate stops the publish (exit 4); warn: publish and report; off: skip.
    mode: Literal["enforce", "warn", "off"] = "enforce"
    # Great Expectations suites (YAML); users add expectations by adding or editing files.
    suites: list[str] = field(default_factory=lambda: ["clinlake:conf/expectations/entities.yaml",
                                                       "clinlake:conf/expectations/note_status.yaml"])
    data_docs: bool = True  # GX Data Docs under <output>/_quality/<run_id>/
    report: bool = True  # static HTML run report under <output>/_reports/<run_id>/
    report_samples: int = 3  # notes shown highlighted in the report (their text is in the HTML); 0: none


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "clinlake-annotate"
    # Rows per Arrow batch sent to Python workers. Notes average a few KB but reach MBs,
    # so Spark's default of 10,000 rows would make memory unbounded per batch.
    arrow_batch_rows: int = 64
    # Notes per engine task. The engine costs CPU per note, not per byte, so the notes are spread over
    # max(2 x the session's cores, notes / notes_per_partition) tasks, rounded up to a multiple of the
    # cores (a last wave that fills every core): sized by bytes (as Spark and its
    # adaptive execution would), a table of short notes ran in one task on one core.
    notes_per_partition: int = 500
    shuffle_partitions: int = 8
    # Spark's own log level for sessions clinlake creates (the run summary is printed regardless).
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobConfig:
    input: InputConfig
    output: OutputConfig = field(default_factory=OutputConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    #: Directory that relative resource paths are resolved against (set by the loader).
    base_dir: str = "."


def default_config_path() -> Path:
    return Path(str(resources.files("clinlake.conf").joinpath("local.yaml")))


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> JobConfig:
    """Read a YAML job config, apply ``overrides`` (dotted keys), validate, return it."""
    config_path = Path(path) if path is not None else default_config_path()
    raw = read_yaml(config_path, what="config file", error=ConfigError)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    raw.pop("base_dir", None)
    config = parse_config(raw, source=str(config_path))
    return replace(config, base_dir=str(config_path.resolve().parent))


def read_yaml(path: Path, *, what: str, error: type[Exception]) -> Any:
    """A YAML file's content; a missing file or bad YAML raises ``error`` naming the file."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({type(exc).__name__}: {exc})") from None


def parse_config(raw: Mapping[str, Any], *, source: str = "config") -> JobConfig:
    try:
        return _build(JobConfig, raw, prefix="")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot override {dotted!r}: {key!r} is not a mapping")
        node = child
    node[leaf] = value


def reject_unknown_keys(raw: Mapping, known: Iterable[str], *, error: Callable[[str], Exception],
                        where: str = "", prefix: str = "") -> None:
    """Raise ``error(message)`` for the first key of ``raw`` not in ``known``.

    The message names the closest known key (difflib), else lists the known keys in the order
    given: ``{where}unknown key '{prefix}{key}' (did you mean '{prefix}{close}'?)``. ``prefix``
    is the key path (``input.``); ``where`` locates the mapping (``checks[2]: ``). Shared by the
    job configuration and the quality suites.
    """
    known = list(known)
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid keys: {', '.join(known)})"
            raise error(f"{where}unknown key '{prefix}{key}'{hint}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    reject_unknown_keys(raw, sorted(f.name for f in fields(cls) if f.name != "base_dir"), error=ConfigError,
                        prefix=prefix)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "base_dir":
            continue
        key = f"{prefix}{f.name}"
        if f.name in raw:
            values[f.name] = _coerce(hints[f.name], raw[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
            raise ConfigError(f"missing required key {key!r}")
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key!r} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1 and all(is_dataclass(a) for a in inner):
            return _build_variant(inner, value, key)
        return _coerce(inner[0], value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key!r} must be a list; got {type(value).__name__}")
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key!r} must be a mapping; got {type(value).__name__}")
        if typing.get_origin(args[1]) is list:  # e.g. allowed_by_label: label -> list of names
            return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
        # Spark options and conf values are strings on the JVM side; YAML may give bools/ints.
        return {str(k): _scalar_to_str(v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key!r} must be true or false; got {value!r}")
        return value
    if hint is int:
        # Table versions start at 0; every other integer setting must be positive.
        minimum = 0 if key.endswith((".version", ".report_samples")) else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a non-negative" if minimum == 0 else "a positive"
            raise ConfigError(f"{key!r} must be {kind} integer; got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key!r} must be a non-empty string; got {value!r}")
        return value
    raise ConfigError(f"{key!r}: unsupported type {hint!r}")  # pragma: no cover - programming error


def _build_variant(variants: list[type], value: Any, key: str) -> Any:
    """One of several entry kinds (``{model: ...}`` or ``{column: ...}``), told apart by the one
    required key each has; exactly one of those keys must be present."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    required = {f.name: cls for cls in variants for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}  # type: ignore[misc]
    present = [name for name in required if name in value]
    if len(present) != 1:
        names = " or ".join(repr(name) for name in required)
        found = f"; got both {' and '.join(map(repr, present))}" if present else ""
        raise ConfigError(f"{key!r} needs exactly one of {names}{found}")
    built = _build(required[present[0]], value, prefix=f"{key}.")
    if isinstance(built, NerColumnConfig) and not built.labels:
        raise ConfigError(f"'{key}.labels' is required for a column entry: the labels its chunks may carry "
                          "(others are dropped; the quality gate checks every label against them)")
    return built


def _scalar_to_str(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{key!r} must be a string, number or boolean; got {type(value).__name__}")

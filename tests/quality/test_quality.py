"""The quality gate: GX 1.x suites from YAML plus clinlake checks, on tables built from the real engine's output."""
from __future__ import annotations

import dataclasses
import hashlib
import re
import textwrap

import pytest
from pyspark.sql import functions as F

from clinlake.pipelines.spark.batch import entity_record
from clinlake.pipelines.resources import Resolver
from clinlake.pipelines.quality.checks import CHECKS
from clinlake.pipelines.quality.gate import GateResult, validate_tables
from clinlake.pipelines.quality.suites import SuiteError, configured_labels, default_suites, load_suite, parse_suite
from clinlake.pipelines.quality.types import Failure, GateInputError
from clinlake.schemas.spark import spark_schema
from clinlake.schemas.tables import entity_table, note_status_table

NOTES = {
    "n1": "CHIEF COMPLAINT: Chest pain.\nHISTORY OF PRESENT ILLNESS: The patient denies fever. "
          "She has diabetes and hypertension.",
    "n2": "FAMILY HISTORY: Mother had breast cancer. Father with coronary artery disease.\n"
          "PLAN: Start metformin 500 mg p.o. b.i.d. Return if chest pain develops.",
    "n3": "ASSESSMENT: Possible pneumonia. No evidence of pulmonary embolism. Blood pressure 120/80.",
    "n4": "Nothing clinical here at all.",
    "n5": "PAST MEDICAL HISTORY: Asthma. MEDICATIONS: Albuterol inhaler. Chest x-ray was normal.",
}
BAD = [("empty", ""), (None, "Headache.")]


@pytest.fixture(scope="module")
def lake(spark, pipeline):
    """entities / note_status as the job writes them, from the real engine (pure Python, no job run)."""
    version, run_id = pipeline.version, "quality-run"
    entities, status = [], []
    for note_id, text in NOTES.items():
        sha = hashlib.sha256(text.encode()).hexdigest()
        records = [entity_record(e, version, sha) for e in pipeline.annotate(text)]
        entities += [{"note_id": note_id, **r, "pipeline_version": version, "run_id": run_id} for r in records]
        status.append({"note_id": note_id, "status": "annotated", "reason": None, "detail": None,
                       "text_sha256": sha, "text_length": len(text), "entity_count": len(records),
                       "pipeline_version": version, "run_id": run_id})
    for note_id, reason in (("empty", "empty_text"), (None, "null_id")):
        status.append({"note_id": note_id, "status": "quarantined", "reason": reason, "detail": reason,
                       "text_sha256": None, "text_length": None, "entity_count": 0,
                       "pipeline_version": version, "run_id": run_id})
    tables = {"entities": spark.createDataFrame(entities, spark_schema(entity_table())),
              "note_status": spark.createDataFrame(status, spark_schema(note_status_table()))}
    notes = spark.createDataFrame(list(NOTES.items()) + BAD, "id string, body string")
    assert len(entities) >= 10
    return tables, notes, None


def checks_only(suites, **params):
    """The suites' clinlake checks only (no GX), with ``params`` overriding check parameters."""
    return [dataclasses.replace(s, expectations=(), checks=tuple(
        dataclasses.replace(c, params={**c.params, **{k: v for k, v in params.items() if k in CHECKS[c.name].params}})
        for c in s.checks)) for s in suites]


def validate(spark, tables, notes, suites, **kwargs):
    return validate_tables(spark, tables, notes, suites, id_column="id", text_column="body", **kwargs)


def no_note_text(result: GateResult, tables) -> None:
    """Failure descriptions carry counts and ids, never note text or entity chunks."""
    rendered = result.summary(max_failures=100) + repr(result.to_dict())
    for text in NOTES.values():
        for sentence in re.split(r"[.:\n]", text):
            if len(sentence.strip()) >= 12:
                assert sentence.strip() not in rendered
    for row in tables["entities"].select("chunk").distinct().collect():
        if len(row["chunk"]) >= 5:
            assert row["chunk"].lower() not in rendered.lower(), row["chunk"]


def test_clean_tables_pass_with_gx_and_data_docs(spark, lake, tmp_path):
    tables, notes, _ = lake
    result = validate(spark, tables, notes, default_suites(), context_root=tmp_path / "gx", run_id="quality-run")
    assert result.passed, result.summary()
    assert result.failures == []
    n_expectations = sum(len(s.expectations) + len(s.checks) for s in default_suites())
    assert result.evaluated == n_expectations
    assert result.data_docs is not None and result.data_docs.name == "index.html" and result.data_docs.exists()
    assert not result.blocks("enforce") and not result.blocks("warn")
    assert "quality gate passed" in result.summary()


def test_offsets_shifted_by_one_fail_substring_check(spark, lake):
    tables, notes, _ = lake
    shifted = tables["entities"].withColumn("begin", F.col("begin") + 1).withColumn("end", F.col("end") + 1)
    suites = [s for s in checks_only(default_suites()) if s.table == "entities"]
    result = validate(spark, {**tables, "entities": shifted}, notes, suites)
    assert not result.passed and result.blocks("enforce") and not result.blocks("warn")
    [failure] = [f for f in result.failures if f.expectation == "substring_matches_text"]
    n = tables["entities"].count()
    assert failure.observed == {"mismatched": n, "of": n}
    assert failure.detail.startswith("e.g. note_id/entity_id n")
    assert {f.expectation for f in result.failures} == {"substring_matches_text"}
    no_note_text(result, tables)


def test_all_entities_dropped_fail_distribution_checks(spark, lake):
    tables, notes, _ = lake
    dropped = tables["entities"].limit(0)
    shipped = [s for s in checks_only(default_suites()) if s.table == "entities"]
    assert validate(spark, {**tables, "entities": dropped}, notes, shipped).passed  # 5 notes < min_notes: quiet
    result = validate(spark, {**tables, "entities": dropped}, notes, checks_only(default_suites(), min_notes=1))
    failed = {f.expectation: f for f in result.failures}
    assert not result.passed
    assert {"entities_per_note", "share_notes_without_entities", "entity_counts_consistent"} <= set(failed)
    assert failed["entities_per_note"].observed["mean"] == 0
    assert failed["share_notes_without_entities"].observed["share"] == 1.0
    assert failed["share_notes_without_entities"].expected == "share <= 0.5"


def test_missing_and_duplicated_notes_fail_notes_present_once(spark, lake):
    tables, notes, _ = lake
    status = tables["note_status"]
    broken = status.where("note_id IS NULL OR note_id != 'n2'").unionByName(status.where("note_id = 'n3'"))
    suite = [s for s in checks_only(default_suites()) if s.table == "note_status"]
    result = validate(spark, {**tables, "note_status": broken}, notes, suite)
    [failure] = [f for f in result.failures if f.expectation == "notes_present_once"]
    assert failure.observed["missing"] == 1 and failure.observed["count_mismatch"] == 1
    assert failure.observed["annotated_more_than_once"] == 1
    assert "n2" in failure.detail and "n3" in failure.detail


def test_user_expectations_duplicate_ids_and_severity(spark, lake, tmp_path):
    """A user-added YAML suite takes effect; a duplicated entity_id fails; text stays out of results."""
    tables, notes, _ = lake
    path = tmp_path / "my_entities.yaml"
    path.write_text(textwrap.dedent("""\
        table: entities
        sets: {labels: [PROBLEM, TEST, TREATMENT]}
        expectations:
          - {expectation: expect_compound_columns_to_be_unique, column_list: [note_id, entity_id]}
          - {expectation: expect_column_values_to_match_regex, column: entity_id, regex: '^[0-9a-f]{32}$'}
          - {expectation: expect_column_values_to_be_in_set, column: label, value_set: $labels, severity: warning}
          - {expectation: expect_column_distinct_values_to_equal_set, column: chunk, value_set: [zzz]}
        """))
    suite = load_suite(path, sets={"labels": ["PROBLEM"]})  # the job narrows the configured label set
    assert suite.expectations[2].kwargs["value_set"] == ["PROBLEM"]
    entities = tables["entities"]
    duplicated = entities.unionByName(entities.orderBy("entity_id").limit(1))
    result = validate(spark, {"entities": duplicated}, notes, [suite])
    failed = {f.expectation: f for f in result.failures}
    assert set(failed) == {"expect_compound_columns_to_be_unique", "expect_column_values_to_be_in_set",
                           "expect_column_distinct_values_to_equal_set"}
    assert failed["expect_compound_columns_to_be_unique"].observed["unexpected"] == 2
    assert failed["expect_column_values_to_be_in_set"].severity == "warning"
    assert failed["expect_column_values_to_be_in_set"].column == "label"
    assert failed["expect_column_distinct_values_to_equal_set"].column == "chunk"  # values withheld: see below
    assert not result.passed and len(result.critical) == 2 and len(result.warnings) == 1
    assert result.data_docs is None  # ephemeral context
    no_note_text(result, tables)


def test_warning_only_failures_pass_the_gate():
    gate = GateResult(passed=True, evaluated=3, failures=[Failure("entities", "x", 1, "0", severity="warning")])
    assert not gate.blocks("enforce") and gate.warnings and not gate.critical
    with pytest.raises(ValueError, match="gate mode"):
        gate.blocks("strict")


def test_configured_labels(default_config):
    assert configured_labels(default_config.pipeline, Resolver(default_config.base_dir)) == ["PROBLEM", "TEST", "TREATMENT"]
    labels = default_suites(sets={"labels": configured_labels(default_config.pipeline, Resolver(default_config.base_dir))})[0].sets["labels"]
    assert labels == ["PROBLEM", "TEST", "TREATMENT"]


def test_shipped_suites_load_and_cover_the_issue():
    suites = {s.table: s for s in default_suites()}
    assert set(suites) == {"entities", "note_status"}
    entity_types = {e.type for e in suites["entities"].expectations}
    assert {"expect_compound_columns_to_be_unique", "expect_column_pair_values_a_to_be_greater_than_b",
            "expect_column_values_to_be_in_set", "expect_column_values_to_be_between"} <= entity_types
    assert {c.name for c in suites["entities"].checks} >= {"substring_matches_text", "entities_per_note",
                                                           "assertion_share", "declared_schema"}
    assert {c.name for c in suites["note_status"].checks} >= {"notes_present_once", "share_notes_without_entities"}
    assert set(CHECKS) >= {c.name for s in suites.values() for c in s.checks}


@pytest.mark.parametrize("body, message", [
    ("table: entities\nexpectations:\n  - {expectation: expect_column_values_to_not_be_null, column: a}\n"
     "  - {expectation: expect_colum_values_to_not_be_null, column: a}",
     r"expectations\[1\]: unknown expectation 'expect_colum_values_to_not_be_null' "
     r"\(did you mean 'expect_column_values_to_not_be_null'\?\)"),
    ("table: entities\nexpectations:\n  - {expectation: expect_column_values_to_not_be_null, colum: a}",
     r"expectations\[0\]: expect_column_values_to_not_be_null: unknown key 'colum' \(did you mean 'column'\?\)"),
    ("table: entities\nexpectations:\n  - {expectation: expect_column_values_to_be_between, column: a, "
     "min_value: low}", r"expectations\[0\]: expect_column_values_to_be_between: invalid arguments: min_value"),
    ("table: entities\nexpectations:\n  - {column: a}", r"expectations\[0\]: missing required key 'expectation'"),
    ("table: entities\nexpectations:\n  - {expectation: expect_column_values_to_be_in_set, column: a, "
     "value_set: $labelz}", r"expectations\[0\]: refers to an undefined set '\$labelz'"),
    ("table: entities\nchecks:\n  - {check: substring_matches_txt}",
     r"checks\[0\]: unknown check 'substring_matches_txt' \(did you mean 'substring_matches_text'\?\)"),
    ("table: entities\nchecks:\n  - {check: entities_per_note, mean_minimum: 1}",
     r"checks\[0\]: entities_per_note: unknown key 'mean_minimum' \(did you mean 'mean_min'\?\)"),
    ("table: entities\nchecks:\n  - {check: assertion_share, shares: {absent: {max: 1.5}}}",
     r"checks\[0\]: assertion_share.shares.absent.max must be a share in \[0, 1\]"),
    ("table: entities\nchecks:\n  - {check: notes_present_once}",
     r"checks\[0\]: check 'notes_present_once' validates table 'note_status'"),
    ("table: entities\nchecks:\n  - {check: declared_schema, severity: fatal}", r"checks\[0\]: 'severity' must be"),
    ("table: entities\nexpectation: []", r"unknown key 'expectation' \(did you mean 'expectations'\?\)"),
    ("expectations: []", r"missing required key 'table'"),
    ("table: [entities", r"not valid YAML"),
])
def test_suite_errors_name_the_entry(tmp_path, body, message):
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(path)
    assert str(path) in str(info.value)


def test_missing_suite_file_and_missing_table(spark, tmp_path):
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml")
    suite = parse_suite({"table": "entities", "checks": [{"check": "declared_schema"}]})
    with pytest.raises(GateInputError, match="validates table 'entities', which was not passed"):
        validate_tables(spark, {}, None, [suite])

"""An entity's NER label restricts the assertion labels it may take (pipeline.assertion.allowed_by_label)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from clinlake.pipelines.config import DEFAULT_ALLOWED_BY_LABEL, ConfigError, parse_config
from clinlake.pipelines.engine.assertion.by_label import AllowedByLabel, AllowedLabelsError
from clinlake.pipelines.engine.assertion.rules import PRESENT_PRIOR
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.engine.types import AssertionResult
from clinlake.pipelines.resources import Resolver

NEGATED = AssertionResult("absent", True, 0.95, cue="negative for", cue_start=20, cue_end=32, cue_category="NEGATED")


def test_a_label_may_not_take_absent_the_result_becomes_present_with_its_historical_flag() -> None:
    rule = AllowedByLabel.from_config({"TEST": ["present", "possible"]})
    assert rule.apply("TEST", NEGATED) == AssertionResult("present", True, PRESENT_PRIOR)
    possible = AssertionResult("possible", False, 0.7, cue="may")
    assert rule.apply("TEST", possible) is possible
    assert rule.apply("PROBLEM", NEGATED) is NEGATED  # labels not listed take everything
    assert rule.apply(None, NEGATED) is NEGATED
    assert rule.apply_all(["TEST", "PROBLEM"], [NEGATED, NEGATED]) == [
        AssertionResult("present", True, PRESENT_PRIOR), NEGATED]
    with pytest.raises(ValueError):
        rule.apply_all(["TEST"], [NEGATED, NEGATED])
    assert not AllowedByLabel.from_config({}) and rule
    assert rule.allows("TEST", "possible") and not rule.allows("TEST", "absent")
    assert rule.allows("PROBLEM", "absent") and rule.allows(None, "absent")


def test_unknown_assertion_labels_and_a_missing_present_are_refused() -> None:
    with pytest.raises(AllowedLabelsError, match=r"allowed_by_label\['TEST'\] has unknown assertion labels \['negated'\]"):
        AllowedByLabel.from_config({"TEST": ["present", "negated"]})
    with pytest.raises(AllowedLabelsError, match="must include 'present'"):
        AllowedByLabel.from_config({"TEST": ["possible"]})


def test_config_reads_lists_per_label_and_defaults_to_test_never_absent() -> None:
    base = {"input": {"path": "notes.parquet"}}
    default = parse_config(base).pipeline.assertion.allowed_by_label
    assert default == {"TEST": list(DEFAULT_ALLOWED_BY_LABEL["TEST"])} and "absent" not in default["TEST"]
    custom = parse_config({**base, "pipeline": {"assertion": {"allowed_by_label": {
        "TEST": ["present"], "TREATMENT": ["present", "absent"]}}}})
    assert custom.pipeline.assertion.allowed_by_label == {"TEST": ["present"], "TREATMENT": ["present", "absent"]}
    assert parse_config({**base, "pipeline": {"assertion": {"allowed_by_label": {}}}}).pipeline.assertion \
        .allowed_by_label == {}
    with pytest.raises(ConfigError, match="allowed_by_label.TEST' must be a list"):
        parse_config({**base, "pipeline": {"assertion": {"allowed_by_label": {"TEST": "present"}}}})


def test_the_pipeline_applies_it_by_entity_label(default_config) -> None:
    pipeline = Pipeline.from_config(default_config)
    text = "HIV serology was negative, and there was no fever."
    sentences = pipeline.splitter.split(text)
    sections = pipeline.sections.detect(text)
    test, finding = text.index("HIV serology"), text.index("fever")
    targets = [(0, test, test + len("HIV serology")), (0, finding, finding + len("fever"))]
    unlabelled = pipeline.assess(text, sentences, sections, targets)
    assert [r.assertion for r in unlabelled] == ["absent", "absent"]
    labelled = pipeline.assess(text, sentences, sections, targets, labels=["TEST", "PROBLEM"])
    assert [r.assertion for r in labelled] == ["present", "absent"]
    assert labelled[0].cue is None and labelled[1].cue == unlabelled[1].cue
    free = Pipeline.build(replace(default_config.pipeline, assertion=replace(
        default_config.pipeline.assertion, allowed_by_label={})), Resolver(default_config.base_dir))
    assert [r.assertion for r in free.assess(text, sentences, sections, targets, labels=["TEST", "PROBLEM"])] == \
        ["absent", "absent"]
    assert free.version != pipeline.version  # the setting is part of the pipeline version

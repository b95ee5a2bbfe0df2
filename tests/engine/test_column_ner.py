"""``pipeline.ner: [{column: NAME}]``: chunks a user's own Spark NLP model wrote, taken as entities."""
from __future__ import annotations

import pytest

from clinlake.pipelines.config import ConfigError, NerColumnConfig, NerModelConfig, parse_config
from clinlake.pipelines.engine.columns import ColumnNerStage, ExternalChunk, ExternalChunkError, utf16_to_index
from clinlake.pipelines.engine.fingerprint import conf_models
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.resources import Resolver
from clinlake.pipelines.spark.batch import annotate_note, Limits

TEXT = "HISTORY: The patient denies chest pain. Mother had breast cancer."


def chunk(text: str, phrase: str, label: str = "DISEASE", **kw) -> ExternalChunk:
    begin = text.index(phrase)
    return ExternalChunk(begin, begin + len(phrase), phrase, label, **kw)


@pytest.fixture(scope="module")
def column_pipeline() -> Pipeline:
    conf = parse_config({"input": {"path": "x"}, "pipeline": {
        "ner": [{"column": "ner_chunk", "labels": ["PROBLEM"], "label_map": {"DISEASE": "PROBLEM"}}],
        "assertion": {"engine": "rules"}}}).pipeline
    return Pipeline.build(conf, Resolver("."))


def test_config_tells_model_and_column_entries_apart():
    conf = parse_config({"input": {"path": "x"}, "pipeline": {"ner": [
        {"model": "clinical_core"}, {"column": "ner_chunk", "labels": ["PROBLEM"]}]}}).pipeline
    assert conf.ner == [NerModelConfig(model="clinical_core"), NerColumnConfig(column="ner_chunk", labels=["PROBLEM"])]
    # clinical_core, the assertion model and the cue model its hybrid policy names; no column
    assert len(conf_models(conf, Resolver("."))) == 3


@pytest.mark.parametrize("entry, message", [
    ({"column": "c"}, "'pipeline.ner[0].labels' is required for a column entry"),
    ({"column": "c", "model": "m", "labels": ["X"]}, "'pipeline.ner[0]' needs exactly one of 'model' or 'column'; "
                                                     "got both 'model' and 'column'"),
    ({"labels": ["X"]}, "'pipeline.ner[0]' needs exactly one of 'model' or 'column'"),
    ({"column": "c", "labels": ["X"], "propagate_abbreviations": True}, "unknown key 'pipeline.ner[0].propagate"),
])
def test_config_errors_name_the_entry(entry, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_config({"input": {"path": "x"}, "pipeline": {"ner": [entry]}})


def test_chunks_become_entities_with_sections_and_assertions(column_pipeline):
    chunks = {"ner_chunk": [chunk(TEXT, "chest pain", confidence=0.75), chunk(TEXT, "breast cancer"),
                            chunk(TEXT, "patient", label="PERSON")]}  # PERSON is not kept
    entities = column_pipeline.annotate(TEXT, chunks)
    assert [(e.start, e.end, e.text, e.label, e.confidence, e.source, e.section, e.assertion.assertion)
            for e in entities] == [
        (28, 38, "chest pain", "PROBLEM", 0.75, "column:ner_chunk", "history", "absent"),
        (51, 64, "breast cancer", "PROBLEM", 1.0, "column:ner_chunk", "history", "associated_with_someone_else"),
    ]
    assert [e.sentence_index for e in entities] == [1, 2]  # the heading is sentence 0
    assert column_pipeline.chunk_columns == ["ner_chunk"]


@pytest.mark.parametrize("bad, message", [
    (ExternalChunk(28, 38, "chest pain", "DISEASE", annotator_type="named_entity"),
     "chunk 0: annotatorType 'named_entity', expected 'chunk'"),
    (ExternalChunk(28, 38, "chest pain", None), "chunk 0: no label"),
    (ExternalChunk(None, 38, "chest pain", "DISEASE"), "chunk 0 (DISEASE): begin or end is null"),
    (ExternalChunk(60, 99, "x", "DISEASE"), "offsets begin=60, end=98 (inclusive) do not fit a note of 65 characters"),
    (ExternalChunk(29, 39, "chest pain", "DISEASE"), "its text differs from the note's text at begin=29, end=38"),
])
def test_a_chunk_that_does_not_fit_quarantines_the_note_without_text(column_pipeline, bad, message):
    with pytest.raises(ExternalChunkError, match=message.replace("(", r"\(").replace(")", r"\)")):
        column_pipeline.annotate(TEXT, {"ner_chunk": [bad]})
    row = annotate_note(column_pipeline, "n1", TEXT, None, Limits(), chunks={"ner_chunk": [bad]})
    assert (row["status"], row["reason"], row["entities"]) == ("quarantined", "invalid_ner_chunk", [])
    assert "NER column 'ner_chunk'" in row["detail"]
    assert not any(word in row["detail"] for word in ("patient", "chest", "breast", "Mother"))


def test_a_null_chunk_column_quarantines_the_note(column_pipeline):
    row = annotate_note(column_pipeline, "n1", TEXT, None, Limits(), chunks={"ner_chunk": None})
    assert (row["reason"], row["detail"]) == ("invalid_ner_chunk", "NER column 'ner_chunk' is null for this note")


def test_utf16_offsets_of_spark_nlp_are_converted_for_astral_characters():
    text = "Pain 😀 then fever."
    assert utf16_to_index("plain ascii") is None
    mapping = utf16_to_index(text)
    begin16 = len(text[:text.index("fever")].encode("utf-16-le")) // 2  # what Java's String.indexOf gives
    assert (begin16, mapping[begin16]) == (13, 12)
    stage = ColumnNerStage("c", labels=["PROBLEM"])
    found = stage.find(text, [], [ExternalChunk(begin16, begin16 + 5, "fever", "PROBLEM")])
    assert [(e.start, e.end, e.text) for e in found] == [(12, 17, "fever")]

from pathlib import Path

import pytest

from clinlake.pipelines.config import ConfigError, load_config, parse_config
from clinlake.pipelines.resources import Resolver


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_resolves_packaged_resources(default_config):
    assert default_config.input.format == "csv"
    assert default_config.input.text_column == "transcription"
    assert [m.model for m in default_config.pipeline.ner] == ["clinical_core"]
    assert default_config.pipeline.dictionary == []
    assert Resolver(default_config.base_dir).model_dir("clinical_core").joinpath("model.onnx").is_file()
    assert Resolver(default_config.base_dir).resource(default_config.pipeline.assertion.rules).is_file()


def test_minimal_config_gets_defaults():
    config = parse_config({"input": {"path": "notes.parquet"}})
    assert (config.output.format, config.output.incremental) == ("delta", True)
    assert [m.model for m in config.pipeline.ner] == ["clinical_core"] and config.pipeline.dictionary == []
    assert config.input.format == "parquet"
    assert config.input.id_column == "note_id"
    assert config.output.path == "lake"
    assert config.spark.arrow_batch_rows == 64


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"input": {"path": "x", "txt_column": "t"}}, "unknown key 'input.txt_column' (did you mean 'input.text_column'?)"),
        ({"input": {"path": "x"}, "ouput": {}}, "unknown key 'ouput' (did you mean 'output'?)"),
        ({}, "missing required key 'input'"),
        ({"input": {}}, "missing required key 'input.path'"),
        ({"input": {"path": "x", "format": "xlsx"}}, "'input.format' must be one of 'delta', 'parquet', 'csv', 'json'; got 'xlsx'"),
        ({"input": {"path": "x", "max_text_chars": -5}}, "'input.max_text_chars' must be a positive integer"),
        ({"input": {"path": "x", "passthrough": "patient_id"}}, "'input.passthrough' must be a list"),
        ({"input": {"path": "x"}, "output": {"sparknlp_annotations": "yes"}},
         "'output.sparknlp_annotations' must be true or false"),
        ({"input": {"path": "x"}, "pipeline": {"dictionary": [{"name": "a"}]}},
         "missing required key 'pipeline.dictionary[0].path'"),
        ({"input": {"path": "x"}, "pipeline": {"assertion": {"engine": "magic"}}},
         "'pipeline.assertion.engine' must be one of 'hybrid', 'rules', 'model', 'none'"),
        ({"input": {"path": ""}}, "'input.path' must be a non-empty string"),
        ({"input": {"path": "x", "version": -1}}, "'input.version' must be a non-negative integer; got -1"),
        ({"input": {"path": "x"}, "output": {"format": "csv"}}, "'output.format' must be one of 'delta', 'parquet'"),
        ({"input": {"path": "x"}, "spark": {"conf": {"a": [1]}}}, "'spark.conf.a' must be a string, number or boolean"),
        ({"input": {"path": "x", "table": "main.clin.notes"}}, "set one of 'input.path' and 'input.table', not both"),
        ({"input": {"table": "a.b.c.d"}}, "'input.table' must be a table name ([catalog.]schema.table or table)"),
        ({"input": {"table": "main.clin.notes; DROP"}}, "'input.table' must be a table name"),
        ({"input": {"path": "x"}, "output": {"catalog": "main"}}, "'output.catalog' needs 'output.schema'"),
        ({"input": {"path": "x"}, "output": {"schema": "a.b"}}, "'output.schema' must be a name of letters"),
        ({"input": {"path": "x"}, "output": {"schema": "s", "tables": {"entitis": "e"}}},
         "unknown key 'output.tables.entitis' (did you mean 'output.tables.entities'?)"),
        ({"input": {"path": "x"}, "output": {"tables": {"entities": "ents"}}},
         "output.tables names ['entities'] but no 'output.schema' to put entities, note_status, quarantine, runs in"),
        ({"input": {"path": "x"}, "output": {"schema": "s", "format": "parquet"}},
         "output table names (output.catalog / output.schema / output.tables) need 'output.format: delta'"),
        ({"input": {"path": "x"}, "output": {"schema": "s", "delta_writer": "delta-rs"}}, "need the delta-spark writer"),
        ({"input": {"path": "x"}, "output": {"delta_writer": "spark"}},
         "'output.delta_writer' must be one of 'auto', 'delta-spark', 'delta-rs'"),
    ],
)
def test_invalid_configs_name_the_bad_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, source="job.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("job.yaml: ")


def test_yaml_errors_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "input: [unclosed"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_overrides_and_relative_resources(tmp_path):
    path = write(tmp_path, "input: {path: a.csv, format: csv}\npipeline:\n  dictionary:\n"
                           "    - {name: mine, path: terms.txt, label: DRUG}\n")
    config = load_config(path, {"input.path": "b.parquet", "input.format": "parquet", "spark.master": "local[1]"})
    assert (config.input.path, config.input.format, config.spark.master) == ("b.parquet", "parquet", "local[1]")
    assert Resolver(config.base_dir).resource("terms.txt") == tmp_path / "terms.txt"
    # Shipped resources are reachable from any config via the clinlake: prefix.
    assert Resolver(config.base_dir).resource("clinlake:conf/context_rules.yaml").is_file()
    assert Resolver(config.base_dir).resource("clinlake:samples/mtsamples_sample.csv").is_file()


def test_spark_options_become_strings(tmp_path):
    config = load_config(write(tmp_path, "input: {path: a.csv, options: {header: true, samplingRatio: 0.5}}\n"))
    assert config.input.options == {"header": "true", "samplingRatio": "0.5"}


def test_catalog_table_names():
    config = parse_config({"input": {"table": "main.clinical.notes"},
                           "output": {"catalog": "main", "schema": "clinical", "tables": {"runs": "ops.clinlake_runs",
                                                                                           "quarantine": "held"}}})
    assert (config.input.path, config.input.table) == (None, "main.clinical.notes")
    assert config.output.table_names() == {"entities": "main.clinical.entities",
                                           "note_status": "main.clinical.note_status",
                                           "quarantine": "main.clinical.held", "runs": "ops.clinlake_runs"}
    in_current_catalog = parse_config({"input": {"path": "x"}, "output": {"schema": "clinical"}})
    assert in_current_catalog.output.table_names()["entities"] == "clinical.entities"
    assert parse_config({"input": {"path": "x"}}).output.table_names() == {}  # folders under output.path
    qualified = parse_config({"input": {"path": "x"}, "output": {"tables": {t: f"c.s.{t}_v2" for t in
                                                                           ("entities", "note_status", "quarantine",
                                                                            "runs")}}})
    assert qualified.output.table_names()["runs"] == "c.s.runs_v2"

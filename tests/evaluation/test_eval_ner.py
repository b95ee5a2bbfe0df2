"""Strict entity-level scorer (conlleval semantics), file formats and the evaluate command."""
from __future__ import annotations

import json

import pytest

from clinlake.pipelines.resources import package_resource
from clinlake.pipelines.corpora.conll import read_conll
from clinlake.pipelines.evaluation.ner import score_spans, score_tags, spans, write_predictions


def needs_model(name: str):
    return pytest.mark.skipif(not (package_resource(f"models/{name}") / "model.onnx").exists(),
                              reason=f"model {name} not trained")


def test_perfect_prediction_scores_one():
    tags = [["B-Disease", "I-Disease", "O", "B-Chemical"]]
    result = score_tags(tags, tags)
    assert result["overall"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "correct": 2, "predicted": 2, "gold": 2}


def test_boundary_or_type_errors_are_wrong_twice():
    gold = [["B-Disease", "I-Disease", "O", "B-Chemical"]]
    pred = [["B-Disease", "O", "O", "B-Disease"]]  # short span, wrong type
    result = score_tags(gold, pred)
    assert result["overall"]["correct"] == 0
    assert (result["overall"]["predicted"], result["overall"]["gold"]) == (2, 2)
    assert result["per_type"]["Chemical"]["recall"] == 0.0
    assert result["per_type"]["Disease"]["precision"] == 0.0


def test_partial_credit_is_none_and_f1_is_harmonic_mean():
    gold = [["B-X", "O", "B-X", "O", "B-X"], ["B-Y", "I-Y"]]
    pred = [["B-X", "O", "B-X", "I-X", "O"], ["B-Y", "I-Y"]]
    result = score_tags(gold, pred)
    overall = result["overall"]
    assert (overall["correct"], overall["predicted"], overall["gold"]) == (2, 3, 4)
    assert overall["precision"] == pytest.approx(0.6667, abs=1e-4)
    assert overall["recall"] == 0.5
    assert overall["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), abs=1e-4)


def test_conlleval_repair_of_dangling_inside_tags():
    # conlleval: I-X after O or after another type starts a new entity.
    assert spans(["O", "I-X", "I-X", "B-Y", "I-X"]) == [(1, 3, "X"), (3, 4, "Y"), (4, 5, "X")]
    assert score_tags([["B-X", "I-X"]], [["I-X", "I-X"]])["overall"]["f1"] == 1.0


def test_no_predictions_and_no_gold():
    assert score_tags([["O", "O"]], [["O", "O"]])["overall"]["f1"] == 0.0
    assert score_spans([[(0, 1, "X")]], [[]])["overall"]["recall"] == 0.0


def test_read_and_write_conll_round_trip(tmp_path):
    source = tmp_path / "gold.tsv"
    source.write_text("Selegiline\tB-Chemical\n-\tO\n\n\nParkinson\tB-Disease\n'\tI-Disease\n", encoding="utf-8")
    sentences = read_conll(source)
    assert sentences == [(["Selegiline", "-"], ["B-Chemical", "O"]), (["Parkinson", "'"], ["B-Disease", "I-Disease"])]
    out = tmp_path / "pred.tsv"
    write_predictions(out, sentences, [["B-Chemical", "O"], ["B-Disease", "O"]])
    assert out.read_text(encoding="utf-8") == (
        "Selegiline\tB-Chemical\tB-Chemical\n-\tO\tO\n\nParkinson\tB-Disease\tB-Disease\n'\tI-Disease\tO\n\n")


def test_read_conll_rejects_a_line_without_tag(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("token-only\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        read_conll(bad)


@needs_model("ncbi_disease")
def test_evaluate_command_writes_predictions_and_json(tmp_path, capsys):
    from clinlake.jobs.evaluate import main

    gold = tmp_path / "gold.tsv"
    rows = ["The O", "patient O", "has O", "breast B-Disease", "cancer I-Disease", ". O"]
    gold.write_text("\n".join(r.replace(" ", "\t") for r in rows) + "\n\n", encoding="utf-8")
    out = tmp_path / "pred.tsv"
    assert main(["ner", "--model", "ncbi_disease", "--conll", str(gold), "--predictions", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"]["overall"]["gold"] == 1
    assert report["tokens"]["overall"]["f1"] == 1.0
    assert report["raw_text"]["overall"]["f1"] == 1.0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[3] == "breast\tB-Disease\tB-Disease" and lines[-1] == ""


def test_evaluate_command_usage_errors(tmp_path, capsys):
    from clinlake.jobs.evaluate import main

    assert main([]) == 2
    assert main(["ner", "--model", "ncbi_disease", "--conll", str(tmp_path / "missing.tsv")]) == 2
    assert "no such file" in capsys.readouterr().out

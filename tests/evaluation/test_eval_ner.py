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


@needs_model("linnaeus")
def test_evaluate_scores_the_steps_the_models_stage_runs_and_tags_as_the_stage_does(tmp_path, capsys):
    """The first score of ``clinlake evaluate ner`` is the model's own document-level steps (linnaeus:
    all four, the vote weighing tagged occurrences ×3, WordNet's names in its gazetteer, windows of 200
    sentences for its full-text articles): on a short
    file it equals what the pipeline's NER stage finds when the same sentences are one note."""
    from clinlake.jobs.evaluate import main
    from clinlake.pipelines.engine.ner.stage import load_ner_stage
    from clinlake.pipelines.engine.text import TextSplitter
    from clinlake.pipelines.evaluation.ner import iob_tags
    from clinlake.pipelines.resources import Resolver

    sentences = [("The small white fed on cabbage .", [(1, 3)]),  # a WordNet name: the gazetteer's
                 ("Wheat yields rose .", [(0, 1)]),  # untagged alone; the vote over the next ones tags it
                 ("The wheat crop and Triticum aestivum grew .", [(1, 2), (4, 6)]),
                 ("Wheat was harvested .", [(0, 1)]), ("Wheat straw was burnt .", [(0, 1)])]
    tokens = [text.split() for text, _ in sentences]
    gold = [iob_tags(len(t), [(a, b, "Species") for a, b in found]) for t, (_, found) in zip(tokens, sentences)]
    conll = tmp_path / "gold.tsv"
    conll.write_text("".join("".join(f"{w}\t{g}\n" for w, g in zip(t, tags)) + "\n" for t, tags in zip(tokens, gold)),
                     encoding="utf-8")
    out = tmp_path / "pred.tsv"
    assert main(["ner", "--model", "linnaeus", "--conll", str(conll), "--predictions", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    steps = report["stage_steps"]
    assert (steps["steps"], steps["consistency_entity_weight"], steps["abbreviation_reach"],
            steps["consistency_reach"]) == ("abbreviations+binomials+consistency+gazetteer", 3.0, 200, 200)
    assert steps["gazetteer_learned_from"] == "LINNAEUS train+devel" and steps["gazetteer_terms"] > 40_000
    assert steps["tokens"]["overall"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "correct": 6, "predicted": 6,
                                          "gold": 6}
    assert report["tokens"]["overall"]["correct"] == 4  # abbreviations alone miss "small white" and "Wheat yields"
    predicted = [[line.split("\t")[2] for line in block.splitlines()]
                 for block in out.read_text(encoding="utf-8").strip().split("\n\n")]
    assert predicted == gold  # --predictions holds the stage steps' tags

    note = "\n".join(text for text, _ in sentences)  # the same sentences as one note, through the stage
    found = load_ner_stage(Resolver().model_dir("linnaeus")).find(note, TextSplitter.from_file().split(note))
    firsts = [sum(len(text) + 1 for text, _ in sentences[:i]) for i in range(len(sentences))]
    by_sentence = [[(len(note[first:e.start].split()), len(note[first:e.end].split()), e.label) for e in found
                    if first <= e.start < first + len(text)] for first, (text, _) in zip(firsts, sentences)]
    assert [iob_tags(len(t), spans) for t, spans in zip(tokens, by_sentence)] == predicted


def test_the_stage_variant_follows_model_json_and_the_built_in_default():
    from clinlake.pipelines.evaluation.ner_variants import stage_variant

    assert stage_variant({}) == "abbreviations"  # no record: the stage's built-in default
    assert stage_variant({"document_level": {"propagate_abbreviations": False}}) == "network"
    assert stage_variant({"document_level": {"label_consistency": True, "gazetteer": True,
                                             "chosen_by": "5-fold CV"}}) == "abbreviations+consistency+gazetteer"

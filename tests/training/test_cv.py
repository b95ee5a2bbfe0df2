"""k-fold cross-validation of an NER recipe (pipelines/training/ner/cv.py): the folds, the recipe, a run."""
from __future__ import annotations

import statistics

import pytest

from clinlake.pipelines.evaluation.ner_variants import DEFAULT, VARIANTS
from clinlake.pipelines.resources import Resolver
from clinlake.pipelines.training.ner.cv import (CrossValidationError, Recipe, cross_validate, fold_blocks, format_cv,
                                                rescore, split_fold)


@pytest.mark.parametrize("n, k", [(10, 2), (11, 5), (5424 + 923, 5), (7, 7)])
def test_folds_are_contiguous_disjoint_balanced_and_cover_every_sentence_once(n, k):
    blocks = fold_blocks(n, k)
    assert len(blocks) == k and blocks == fold_blocks(n, k)  # deterministic
    assert [i for block in blocks for i in block] == list(range(n))  # in order, each sentence once
    assert all(block.step == 1 and len(block) > 0 for block in blocks)
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_a_fold_trains_on_every_other_block_and_holds_out_its_own():
    examples = [([f"w{i}"], ["O"]) for i in range(11)]
    blocks = fold_blocks(11, 3)
    for fold in range(3):
        train, held = split_fold(examples, blocks, fold)
        assert held == examples[blocks[fold].start:blocks[fold].stop]
        assert sorted(train + held) == sorted(examples) and not set(map(str, train)) & set(map(str, held))


def test_impossible_folds_are_refused_by_name():
    with pytest.raises(CrossValidationError, match="at least 2 folds"):
        fold_blocks(10, 1)
    with pytest.raises(CrossValidationError, match="3 sentences cannot make 5 folds"):
        fold_blocks(3, 5)


def test_the_recipe_is_the_shipped_models_selected_epochs_and_settings():
    ncbi = Recipe.of_model(Resolver().model_dir("ncbi_disease"))
    assert ncbi.epochs == 21 and ncbi.network.get("hidden", 150) == 150 and ncbi.lr == pytest.approx(2e-3)
    assert Recipe.of_model(Resolver().model_dir("bc5cdr")).epochs == 26  # a refit: the epochs it trained for
    assert Recipe.of_model(Resolver().model_dir("bc5cdr"), epochs=3).epochs == 3


def _corpus(shared, write_vectors, sentences_per_split=6):
    """A tiny NCBI-disease layout under ``shared`` and word vectors for its words."""
    rows = [(["Aspirin", "induced", "asthma", "in", "a", "patient", "."], ["O", "O", "B-Disease", "O", "O", "O", "O"]),
            (["No", "renal", "failure", "was", "seen", "."], ["O", "B-Disease", "I-Disease", "O", "O", "O"])]
    folder = shared / "ner" / "NCBI-disease"
    folder.mkdir(parents=True)
    for split in ("train", "devel"):
        text = "".join("".join(f"{w}\t{t}\n" for w, t in zip(*rows[i % 2])) + "\n" for i in range(sentences_per_split))
        (folder / f"{split}.tsv").write_text(text, encoding="utf-8")
    return write_vectors(shared, {w for tokens, _ in rows for w in tokens})


def test_cross_validation_trains_and_scores_each_fold_in_parallel_processes(tmp_path, monkeypatch, write_vectors):
    pytest.importorskip("torch")
    embeddings = _corpus(tmp_path, write_vectors)
    model_dir = Resolver().model_dir("ncbi_disease")
    monkeypatch.setattr(Recipe, "of_model", classmethod(lambda cls, d, epochs=None: cls(
        epochs=epochs, network={"hidden": 8, "char_filters": 4}, lr=1e-2, batch_pieces=1000)))
    kept = tmp_path / "predictions"
    report = cross_validate("NCBI-disease", model_dir, k=3, epochs=2, jobs=2, shared=tmp_path,
                            embeddings_dir=embeddings, predictions_dir=kept)
    assert report["sentences"] == 12 and report["k"] == 3 and report["recipe"]["epochs"] == 2
    assert [f["fold"] for f in report["folds"]] == [0, 1, 2]
    assert [f["held_out"] for f in report["folds"]] == [[0, 4], [4, 8], [8, 12]]
    assert all(f["train_sentences"] == 8 and f["epochs"] == 2 and 0.0 <= f["f1"] <= 1.0 for f in report["folds"])
    f1s = [f["f1"] for f in report["folds"]]
    assert report["f1"] == {"mean": round(statistics.fmean(f1s), 4), "sd": round(statistics.stdev(f1s), 4)}
    assert "3-fold CV of ncbi_disease's recipe on NCBI-disease" in format_cv(report)
    assert all(set(f["variants"]) == set(VARIANTS) and f["variants"][DEFAULT]["f1"] == f["f1"] for f in report["folds"])
    assert report["variants"][DEFAULT]["gain"] == {"mean": 0.0, "sd": 0.0}
    # the kept predictions score the same again without training, and only against their own blocks
    assert sorted(p.name for p in kept.iterdir()) == ["fold0.json.gz", "fold1.json.gz", "fold2.json.gz"]
    again = rescore("NCBI-disease", kept, k=3, shared=tmp_path)
    training_only = ("seconds", "train_sentences", "epochs")
    assert again["folds"] == [{k: v for k, v in f.items() if k not in training_only} for f in report["folds"]]
    assert again["f1"] == report["f1"] and again["variants"] == report["variants"]
    assert "rescored from" in format_cv(again)
    with pytest.raises(CrossValidationError, match=r"fold0.json.gz holds sentences \[0, 4\], not fold 0 of 4"):
        rescore("NCBI-disease", kept, k=4, shared=tmp_path)
    one = cross_validate("NCBI-disease", model_dir, k=3, epochs=2, folds=[1], shared=tmp_path,
                         embeddings_dir=embeddings)
    assert one["folds"] == [{**report["folds"][1], "seconds": one["folds"][0]["seconds"]}]  # same seed, same fold
    with pytest.raises(CrossValidationError, match="folds must be in 0..2"):
        cross_validate("NCBI-disease", model_dir, k=3, epochs=2, folds=[3], shared=tmp_path,
                       embeddings_dir=embeddings)


def test_a_cv_report_is_kept_in_model_json_and_shown_in_the_card_and_the_models_table(tmp_path):
    import shutil

    from clinlake.pipelines.engine.ner.metadata import read_meta
    from clinlake.pipelines.training.cards import models_readme
    from clinlake.pipelines.training.refresh import record_cv

    models = tmp_path / "models"
    for name in ("ncbi_disease", "embeddings"):
        shutil.copytree(Resolver().model_dir("ncbi_disease").parent / name, models / name)
    folds = [{"f1": f, "model_alone_f1": f - 0.01} for f in (0.84, 0.86, 0.85)]
    report = {"corpus": "NCBI-disease", "k": 3, "sentences": 6347, "recipe": {"epochs": 21}, "abbreviation_reach": 20,
              "folds": folds, "f1": {"mean": 0.85, "sd": 0.01}, "model_alone_f1": {"mean": 0.84, "sd": 0.01}}
    meta = record_cv("ncbi_disease", report, measured="2026-12-05", models=models)
    assert meta["cv"]["folds_f1"] == [0.84, 0.86, 0.85] and read_meta(models / "ncbi_disease")["cv"] == meta["cv"]
    card = (models / "ncbi_disease" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Cross-validated estimate" in card and "strict F1 **85.00 ± 1.00**" in card
    assert "Per fold: 84.00, 86.00, 85.00. Measured 2026-12-05." in card
    assert "| 85.00 ± 1.00 |" in models_readme(models)
    with pytest.raises(ValueError, match="the CV report is of 'AnatEM'"):
        record_cv("ncbi_disease", {**report, "corpus": "AnatEM"}, measured="2026-12-05", models=models)
    with pytest.raises(ValueError, match="names no training recipe"):
        record_cv("ncbi_disease", {k: v for k, v in report.items() if k != "recipe"}, measured="2026-12-05",
                  models=models)


def test_a_clinical_model_is_cross_validated_on_its_brat_corpora_train_then_devel_documents():
    from clinlake.pipelines.engine.ner.metadata import read_meta
    from clinlake.pipelines.training.ner.cv import cv_examples

    model_dir = Resolver().model_dir("maccrobat")
    data = read_meta(model_dir)["training"]["data"]
    name, examples = cv_examples(None, model_dir=model_dir)
    assert name == "MACCROBAT"
    assert len(examples) == data["MACCROBAT/train"]["sentences"] + data["MACCROBAT/devel"]["sentences"]
    assert all(len(pieces) == len(tags) for pieces, tags in examples)
    labels = {t[2:] for _, tags in examples for t in tags if t != "O"}
    assert labels <= set(read_meta(model_dir)["labels"])
    with pytest.raises(CrossValidationError, match="trained on MACCROBAT, not NCBI-disease"):
        cv_examples("NCBI-disease", model_dir=model_dir)


def test_document_level_steps_are_on_by_default_only_where_they_win_by_cv(tmp_path):
    import shutil

    from clinlake.pipelines.engine.ner.metadata import read_meta
    from clinlake.pipelines.training.cv_card import document_level_choice, wins
    from clinlake.pipelines.training.refresh import record_cv

    assert wins([0.01, 0.002, -0.001]) and not wins([0.05, -0.001, -0.002]) and not wins([0.0, 0.0, 0.0])
    models = tmp_path / "models"
    for name in ("ncbi_disease", "embeddings"):
        shutil.copytree(Resolver().model_dir("ncbi_disease").parent / name, models / name)
    by_fold = {  # F1 of each variant on three folds
        "network": (0.85, 0.86, 0.84), "abbreviations": (0.84, 0.85, 0.845),
        # with abbreviations off, these are judged against the network alone, not against abbreviations
        "abbreviations+consistency": (0.86, 0.87, 0.86), "consistency": (0.845, 0.865, 0.835),
        "binomials": (0.85, 0.86, 0.84), "gazetteer": (0.855, 0.865, 0.845),
        "consistency+gazetteer": (0.85, 0.87, 0.84)}
    folds = [{"f1": by_fold["abbreviations"][i], "model_alone_f1": by_fold["network"][i],
              "variants": {n: {"f1": v[i]} for n, v in by_fold.items()}} for i in range(3)]
    summary = {n: {"f1": {"mean": 0.0, "sd": 0.0}, "gain": {"mean": 0.0, "sd": 0.0}} for n in by_fold}
    report = {"corpus": "NCBI-disease", "k": 3, "sentences": 6347, "recipe": {"epochs": 21}, "abbreviation_reach": 20,
              "folds": folds, "f1": {"mean": 0.845, "sd": 0.005}, "model_alone_f1": {"mean": 0.85, "sd": 0.01},
              "variants": summary}
    meta = record_cv("ncbi_disease", report, measured="2026-12-05", models=models)
    assert meta["cv"]["variants"]["network"]["folds_gain"] == [0.01, 0.01, -0.005]
    choice = document_level_choice(meta["cv"])
    assert choice["propagate_abbreviations"] == {"on": False, "mean_gain": -0.005, "folds_gain": [-0.01, -0.01, 0.005]}
    assert choice["binomial_short_forms"] == {"on": False, "mean_gain": 0.0, "folds_gain": [0.0, 0.0, 0.0]}
    assert choice["label_consistency"] == {"on": False, "mean_gain": -0.0017, "folds_gain": [-0.005, 0.005, -0.005]}
    assert choice["gazetteer"] == {"on": True, "mean_gain": 0.005, "folds_gain": [0.005, 0.005, 0.005]}
    final = read_meta(models / "ncbi_disease")
    assert final["document_level"] == {
        "propagate_abbreviations": False, "binomial_short_forms": False, "label_consistency": False,
        "gazetteer": True, "chosen_by": "3-fold CV, 2026-12-05"}
    # the gazetteer won: learned from NCBI-disease train+devel, shipped beside the model, recorded
    from clinlake.pipelines.engine.gazetteer import read_gazetteer
    from clinlake.pipelines.engine.ner.stage import load_ner_stage

    terms = read_gazetteer(models / "ncbi_disease" / "gazetteer.tsv")
    assert final["gazetteer"]["terms"] == len(terms) > 100 and final["gazetteer"]["learned_from"] == "NCBI-disease train+devel"
    assert all(t.label == "Disease" and 0.9 <= t.precision <= 1.0 for t in terms.values())
    stage = load_ner_stage(models / "ncbi_disease")
    assert stage.gazetteer.terms == terms and not stage.label_consistency and not stage.propagate_abbreviations
    assert not load_ner_stage(models / "ncbi_disease", gazetteer=False).gazetteer
    card = (models / "ncbi_disease" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "| gazetteer | 0.00 ± 0.00 | +0.00 ± 0.00 | 2 / 0 |" in card  # its folds against abbreviations
    assert "`propagate_abbreviations: false` (-0.50)" in card and "`label_consistency: false` (-0.17)" in card
    assert "`gazetteer: true` (+0.50)" in card and "With those defaults (`gazetteer`)" in card
    from clinlake.pipelines.training.cards import models_readme

    assert ("| `ncbi_disease` | 84.50 ± 0.50 | off (-0.50, 1/3) | off (-0.17, 1/3) | off (+0.00, 0/3) | "
            "**on** (+0.50, 3/3) | 0.00 ± 0.00 |") in models_readme(models)


def test_the_votes_weight_a_cv_scored_with_is_kept_where_the_vote_wins(tmp_path):
    import shutil

    from clinlake.pipelines.engine.ner.metadata import consistency_entity_weight, read_meta
    from clinlake.pipelines.engine.ner.stage import load_ner_stage
    from clinlake.pipelines.training.cards import models_readme
    from clinlake.pipelines.training.refresh import record_cv

    models = tmp_path / "models"
    for name in ("ncbi_disease", "embeddings"):
        shutil.copytree(Resolver().model_dir("ncbi_disease").parent / name, models / name)
    by_fold = {"network": (0.85, 0.86, 0.84), "abbreviations": (0.86, 0.87, 0.85),
               "abbreviations+consistency": (0.87, 0.88, 0.85)}  # the vote wins on two folds, loses on none

    def report(weight: float, vote: tuple[float, ...]) -> dict:
        f1 = {**by_fold, "abbreviations+consistency": vote}
        folds = [{"f1": f1["abbreviations"][i], "model_alone_f1": f1["network"][i],
                  "variants": {n: {"f1": v[i]} for n, v in f1.items()}} for i in range(3)]
        summary = {n: {"f1": {"mean": 0.0, "sd": 0.0}, "gain": {"mean": 0.0, "sd": 0.0}} for n in f1}
        return {"corpus": "NCBI-disease", "k": 3, "sentences": 6347, "recipe": {"epochs": 21},
                "abbreviation_reach": 20, "consistency_entity_weight": weight, "folds": folds,
                "f1": {"mean": 0.86, "sd": 0.01}, "model_alone_f1": {"mean": 0.85, "sd": 0.01}, "variants": summary}

    meta = record_cv("ncbi_disease", report(3.0, by_fold["abbreviations+consistency"]), measured="2026-12-07",
                     models=models)
    assert meta["cv"]["consistency_entity_weight"] == 3.0
    assert meta["document_level"]["label_consistency"] is True
    assert read_meta(models / "ncbi_disease")["document_level"]["consistency_entity_weight"] == 3.0
    stage = load_ner_stage(models / "ncbi_disease")
    assert stage.label_consistency and stage.consistency_entity_weight == 3.0
    card = (models / "ncbi_disease" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "weighing a tagged occurrence's vote 3 times" in card
    assert "tagged votes ×3)" in models_readme(models)
    # the vote loses (two folds down): it is off, and no weight is recorded for it
    meta = record_cv("ncbi_disease", report(3.0, (0.85, 0.86, 0.86)), measured="2026-12-07", models=models)
    assert meta["document_level"]["label_consistency"] is False and "consistency_entity_weight" not in meta["document_level"]
    assert consistency_entity_weight(read_meta(models / "ncbi_disease")) == 1.0  # (the loaded model is cached)


def test_a_cv_scores_the_vote_with_the_models_weight_unless_given_one():
    from clinlake.pipelines.training.ner.cv import _vote_weight

    linnaeus = Resolver().model_dir("linnaeus")
    assert _vote_weight(linnaeus, None) == 3.0 and _vote_weight(linnaeus, 2) == 2.0
    assert _vote_weight(Resolver().model_dir("ncbi_disease"), None) == 1.0 and _vote_weight(None, None) == 1.0
    for bad in (0, -1.5):
        with pytest.raises(CrossValidationError, match="positive number"):
            _vote_weight(linnaeus, bad)


def test_the_conll_windows_a_cv_scored_with_are_kept_and_read_back_by_evaluation_and_cv(tmp_path):
    import shutil

    from clinlake.pipelines.engine.ner.metadata import read_meta
    from clinlake.pipelines.evaluation.ner_variants import ConllReach, StageSteps
    from clinlake.pipelines.training.ner.cv import conll_reach
    from clinlake.pipelines.training.refresh import record_cv

    models = tmp_path / "models"
    for name in ("ncbi_disease", "embeddings"):
        shutil.copytree(Resolver().model_dir("ncbi_disease").parent / name, models / name)
    f1 = {"network": (0.85, 0.86, 0.84), "abbreviations": (0.86, 0.87, 0.85)}
    folds = [{"f1": f1["abbreviations"][i], "model_alone_f1": f1["network"][i],
              "variants": {n: {"f1": v[i]} for n, v in f1.items()}} for i in range(3)]
    report = {"corpus": "NCBI-disease", "k": 3, "sentences": 6347, "recipe": {"epochs": 21}, "folds": folds,
              "abbreviation_reach": 200, "consistency_reach": 150, "f1": {"mean": 0.86, "sd": 0.01},
              "model_alone_f1": {"mean": 0.85, "sd": 0.01},
              "variants": {n: {"f1": {"mean": 0.0, "sd": 0.0}, "gain": {"mean": 0.0, "sd": 0.0}} for n in f1}}
    meta = record_cv("ncbi_disease", report, measured="2026-12-07", models=models)
    assert meta["cv"]["consistency_reach"] == 150
    assert read_meta(models / "ncbi_disease")["document_level"]["conll_reach"] == {"abbreviations": 200,
                                                                                   "consistency": 150}
    assert "abbreviation reach 200, vote reach 150 sentences either side" in \
        (models / "ncbi_disease" / "MODEL_CARD.md").read_text(encoding="utf-8")
    # evaluation and the next CV take the model's windows; a CV may be given others
    assert StageSteps.of_model(models / "ncbi_disease").record["consistency_reach"] == 150
    assert conll_reach(models / "ncbi_disease") == ConllReach(abbreviations=200, consistency=150)
    assert conll_reach(models / "ncbi_disease", 20, None) == ConllReach(abbreviations=20, consistency=150)
    with pytest.raises(CrossValidationError, match="vote reach must be 0 or more"):
        conll_reach(models / "ncbi_disease", None, -1)
    # the built-in windows are not written down
    report = {**report, "abbreviation_reach": 20, "consistency_reach": 10}
    meta = record_cv("ncbi_disease", report, measured="2026-12-07", models=models)
    assert "conll_reach" not in meta["document_level"] and "consistency_reach" not in meta["cv"]
    assert conll_reach(models / "ncbi_disease") == ConllReach() == ConllReach(20, 10)


def test_a_model_json_window_must_be_sentences():
    from clinlake.pipelines.engine.ner.metadata import ModelMetaError
    from clinlake.pipelines.evaluation.ner_variants import ConllReach

    assert ConllReach.of_meta({"document_level": {"conll_reach": {"consistency": 50}}}) == ConllReach(20, 50)
    for bad in ({"consistency": -1}, {"consistency": True}, {"sentences": 5}, 50, {"abbreviations": 2.5}):
        with pytest.raises(ModelMetaError, match="conll_reach"):
            ConllReach.of_meta({"document_level": {"conll_reach": bad}})


@pytest.mark.parametrize("flags, message", [
    (["--model", "bc5cdr", "--gazetteer-features", "--channel-lexicons"], "bc5cdr names no gazetteer_lexicons"),
    (["--model", "linnaeus", "--channel-lexicons"], "need the channels (--gazetteer-features)"),
])
def test_lexicons_in_the_channels_need_a_lexicon_and_the_channels(flags, message, capsys):
    from clinlake.jobs.evaluate import main as evaluate_main

    assert evaluate_main(["cv", *flags]) == 2  # refused before any corpus is read or network trained
    assert message in capsys.readouterr().out

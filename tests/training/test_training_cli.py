"""``clinlake train``: the subcommands' parsers (jobs/train.py) and the lexicon builder run end to end."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinlake.jobs import train


def test_train_clinical_cli_rejects_an_unknown_corpus(capsys):
    args = train.clinical_parser("clinlake train clinical").parse_args(
        ["--name", "x", "--brat", "MACCROBAT=a.yaml", "--brat", "PHEE=b.yaml", "--hidden", "200"])
    assert [(c, str(p)) for c, p in args.brat] == [("MACCROBAT", "a.yaml"), ("PHEE", "b.yaml")]
    assert args.hidden == 200 and args.char_filters == 50
    with pytest.raises(SystemExit):
        train.clinical_parser("clinlake train clinical").parse_args(["--name", "x", "--brat", "i2b2=a.yaml"])
    assert "expected CORPUS=LABEL_MAP with CORPUS one of MACCROBAT, Chia, PHEE" in capsys.readouterr().err


def test_every_subcommand_has_its_parser_and_help(capsys):
    assert list(train.SUBCOMMANDS) == ["ner", "clinical", "embeddings", "distill", "install", "card", "assertion",
                                       "lexicons", "wordnet"]
    for name, (parser, _, _) in train.SUBCOMMANDS.items():
        with pytest.raises(SystemExit) as exit_:
            train.main([name, "--help"])
        assert exit_.value.code == 0
        assert f"usage: clinlake train {name}" in capsys.readouterr().out
        assert parser(f"clinlake train {name}").prog == f"clinlake train {name}"
    assert train.main([]) == 2


def test_ner_options_and_model_names():
    args = train.ner_parser("clinlake train ner").parse_args(["--corpus", "NCBI-disease", "--dropout", "0.3"])
    assert args.embeddings is None and args.out is None and args.max_minutes == 12.0 and args.epochs == 40
    assert train.network_options(args) == {"hidden": 150, "char_filters": 50, "dropout": 0.3}
    assert train.default_name("NCBI-disease") == "ncbi_disease" and train.default_name("BioNLP13CG") == "bionlp13cg"
    assert args.gazetteer_features is False and args.refit_epochs is None
    args = train.ner_parser("clinlake train ner").parse_args(["--corpus", "BC5CDR", "--refit", "--refit-epochs", "26",
                                                              "--gazetteer-features"])
    assert args.refit and args.refit_epochs == 26 and args.gazetteer_features


@pytest.mark.parametrize("flags", [["--refit-epochs", "26"], ["--refit", "--refit-epochs", "0"]])
def test_refit_epochs_need_a_refit_and_a_positive_count(flags, capsys):
    assert train.main(["ner", "--corpus", "BC5CDR", *flags]) == 2
    assert "--refit-epochs needs --refit and a count of 1 or more" in capsys.readouterr().out


def test_lexicons_are_built_from_the_shared_folder_given(tmp_path, capsys):
    docs = tmp_path / "shared" / "data" / "clinical" / "MACCROBAT" / "train"
    docs.mkdir(parents=True)
    text = "Fever and cough. Fever again, no cough.\n"
    (docs / "1.txt").write_text(text, encoding="utf-8")
    spans = [(0, 5), (10, 15), (17, 22), (33, 38)]  # Fever, cough, Fever, cough
    assert [text[s:e].lower() for s, e in spans] == ["fever", "cough", "fever", "cough"]
    (docs / "1.ann").write_text("".join(f"T{i}\tSign_symptom {s} {e}\t{text[s:e]}\n" for i, (s, e) in
                                        enumerate(spans, 1)), encoding="utf-8")
    out = tmp_path / "lexicons"
    assert train.main(["lexicons", "--shared", str(tmp_path / "shared"), "--out", str(out)]) == 0
    lines = (out / "problem.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# Derived by clinlake.pipelines.training.lexicons")
    assert [line for line in lines if not line.startswith("#")] == ["cough", "fever"]
    assert f"PROBLEM         2 terms → {Path(out) / 'problem.txt'}" in capsys.readouterr().out


def test_install_copies_a_model_trained_elsewhere_and_points_it_at_the_same_word_vectors(tmp_path, capsys):
    """A model written with --out DIR names its word vectors relative to DIR; installed under
    models/NAME it must name the same folder relative to its new place, and load and tag."""
    import json
    import os
    import shutil

    from clinlake.pipelines.engine.ner.model import NerModel
    from clinlake.pipelines.resources import models_dir
    from clinlake.pipelines.training.refresh import install_model

    shipped = models_dir() / "ncbi_disease"
    vectors = (shipped / json.loads((shipped / "model.json").read_text())["embeddings"]).resolve()
    trained = tmp_path / "elsewhere" / "deep" / "student"
    trained.mkdir(parents=True)
    for name in ("model.json", "model.onnx", "MODEL_CARD.md"):
        shutil.copyfile(shipped / name, trained / name)
    meta = json.loads((trained / "model.json").read_text())
    meta["embeddings"] = os.path.relpath(vectors, trained)
    (trained / "model.json").write_text(json.dumps(meta))
    models = tmp_path / "models"
    (models / "ncbi_x").mkdir(parents=True)
    (models / "embeddings").symlink_to(vectors)  # models/README.md states the shared vectors' size
    (models / "ncbi_x" / "gazetteer.tsv").write_text("# kept\n")
    target = install_model(trained, "ncbi_x", models=models)
    installed = json.loads((target / "model.json").read_text())
    assert installed["name"] == "ncbi_x" and installed["embeddings"] != meta["embeddings"]
    assert (target / installed["embeddings"]).resolve() == vectors
    assert (target / "gazetteer.tsv").read_text() == "# kept\n"  # files the source lacks stay
    assert (target / "model.onnx").read_bytes() == (shipped / "model.onnx").read_bytes()
    assert (models / "README.md").read_text().startswith("# Shipped NER models")  # rewritten for the new folder
    sentence = ["Familial", "adenomatous", "polyposis", "is", "inherited", "."]
    assert NerModel(target).tag([sentence]) == NerModel(shipped).tag([sentence])
    missing = tmp_path / "moved"
    shutil.copytree(trained, missing)
    (missing / "model.json").write_text(json.dumps({**meta, "embeddings": "no/such/vectors"}))
    with pytest.raises(FileNotFoundError, match="word vectors"):
        install_model(missing, "other", models=models)
    assert train.main(["install", str(tmp_path / "nothing"), "--name", "y"]) == 2
    assert "no model.json" in capsys.readouterr().out


def test_train_assertion_student_rejects_an_unknown_silver_source_before_training(capsys, tmp_path):
    assert train.main(["assertion", "--silver", "notes,web", "--out", str(tmp_path / "m")]) == 2
    assert "--silver: unknown silver source 'web' (known: notes, chia)" in capsys.readouterr().out
    assert train.main(["assertion", "--silver", ",", "--out", str(tmp_path / "m")]) == 2
    assert "--silver: no silver source given" in capsys.readouterr().out
    assert not (tmp_path / "m").exists()
    args = train.assertion_parser("clinlake train assertion").parse_args([])  # the shipped recipe
    assert args.student and args.silver == "notes,chia" and args.ensemble == 3
    assert args.silver_weight == 0.5 and args.teacher_mix == 0.5
    assert not train.assertion_parser("clinlake train assertion").parse_args(["--no-student"]).student

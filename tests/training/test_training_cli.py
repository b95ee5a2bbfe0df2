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
    assert list(train.SUBCOMMANDS) == ["ner", "clinical", "embeddings", "distill", "card", "assertion", "lexicons"]
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

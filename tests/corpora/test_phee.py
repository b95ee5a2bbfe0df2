"""PHEE JSON lines → BRAT documents (pipelines/corpora/phee.py)."""
from __future__ import annotations

import json

import pytest

from clinlake.pipelines.corpora.brat import check_offsets, read_ann, read_text_exact
from clinlake.pipelines.corpora.phee import ensure_brat, sentence_entities, to_ann

TEXT = "Severe hepatitis developed after isoniazid and rifampicin for latent tuberculosis."
RECORD = {
    "id": "123_4", "context": TEXT,
    "annotations": [{"events": [
        {"event_type": "Adverse_event",
         "Effect": {"text": [["hepatitis"]], "start": [[7]]},
         "Treatment": {"text": [["isoniazid and rifampicin for latent tuberculosis"]], "start": [[33]],
                       "Drug": {"text": [["isoniazid"], ["rifampicin"]], "start": [[33], [47]]},
                       "Disorder": {"text": [["latent", "tuberculosis"]], "start": [[62, 69]]}}},
        {"event_type": "Adverse_event",  # the same drug in a second event is written once
         "Effect": {"text": [["Severe hepatitis"]], "start": [[0]]},
         "Treatment": {"text": [["isoniazid"]], "start": [[33]], "Drug": {"text": [["isoniazid"]], "start": [[33]]}}},
    ]}],
}


def test_event_arguments_become_typed_mentions_once_each():
    assert sentence_entities(RECORD) == [
        ("Adverse_effect", ((7, 16),)),
        ("Drug", ((33, 42),)),
        ("Drug", ((47, 57),)),
        ("Indication", ((62, 68), (69, 81))),  # two fragments: kept as a discontinuous mention
        ("Adverse_effect", ((0, 16),)),
    ]


def test_ann_offsets_match_the_text_and_bad_offsets_are_an_error():
    document = to_ann(RECORD)
    assert check_offsets(document, TEXT) == []
    assert [e.text for e in document.entities] == ["hepatitis", "isoniazid", "rifampicin", "latent tuberculosis",
                                                   "Severe hepatitis"]
    broken = {**RECORD, "annotations": [{"events": [{"event_type": "Adverse_event",
                                                     "Effect": {"text": [["x" * 9]], "start": [[80]]}}]}]}
    with pytest.raises(ValueError, match="123_4") as error:
        to_ann(broken)
    assert "hepatitis" not in str(error.value)  # no note text in errors


def test_ensure_brat_writes_pairs_once(tmp_path):
    source = tmp_path / "phee"
    source.mkdir()
    (source / "train.json").write_text(json.dumps(RECORD) + "\n\n", encoding="utf-8")
    out = ensure_brat(source, tmp_path / "brat", "train")
    assert read_text_exact(out / "123_4.txt") == TEXT
    assert len(read_ann(out / "123_4.ann").entities) == 5
    (out / "123_4.txt").write_text("changed", encoding="utf-8")
    ensure_brat(source, tmp_path / "brat", "train")  # up to date: not rewritten
    assert read_text_exact(out / "123_4.txt") == "changed"


def test_phee_to_brat_command_converts_both_splits(tmp_path, capsys):
    from clinlake.jobs.corpora import main

    source = tmp_path / "shared" / "data" / "clinical" / "PHEE"
    source.mkdir(parents=True)
    (source / "train.json").write_text(json.dumps(RECORD) + "\n", encoding="utf-8")
    assert main(["phee-to-brat", "--shared", str(tmp_path / "shared"), "--out", str(tmp_path / "brat")]) == 2
    assert "devel.json" in capsys.readouterr().err  # a split is missing: nothing converted
    (source / "devel.json").write_text(json.dumps({**RECORD, "id": "9_1"}) + "\n", encoding="utf-8")
    assert main(["phee-to-brat", "--shared", str(tmp_path / "shared"), "--out", str(tmp_path / "brat")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"train: 1 documents in {tmp_path / 'brat' / 'train'}",
                                                    f"devel: 1 documents in {tmp_path / 'brat' / 'devel'}"]
    assert (tmp_path / "brat" / "devel" / "9_1.ann").is_file()

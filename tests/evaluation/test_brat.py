"""BRAT reading/writing, the document-level scorer and `clinlake evaluate brat`."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from clinlake.jobs.evaluate import main as evaluate_main
from clinlake.pipelines.corpora.brat import (
    Attribute, BratFormatError, TextBound, check_offsets, entities_to_ann, format_ann, parse_ann, read_ann,
    read_text_exact, write_ann,
)
from clinlake.pipelines.evaluation.brat import GoldEntity, PredEntity, gold_entities, score
from clinlake.pipelines.corpora.label_maps import load_label_map

TEXT = "A 75–year–old man with chest pain,\r\nno fever; started\r\naspirin and topical steroids.\r\n"


def _at(text: str, phrase: str) -> tuple[int, int]:
    start = text.index(phrase)
    return start, start + len(phrase)


# ----------------------------------------------------------------------------- reading / writing


def test_round_trip_is_exact_with_discontinuous_spans_and_other_lines():
    content = ("T1\tAge 2 13\t75–year–old\n"
               "T2\tDrug 69 76;85 93\taspirin steroids\n"
               "E1\tSign_symptom:T3 \n"
               "A1\tPOLARITY E1 NEG\n"
               "M2\tNegated T2\n"
               "R1\tMODIFY Arg1:T1 Arg2:E1\t\n"
               "*\tOverlap T1 T2\n"
               "#1\tAnnotatorNotes T1\tfree text\n"
               "\n"
               "T3\tCondition 0 4\tlast line without newline")
    document = parse_ann(content)
    assert format_ann(document) == content
    t2 = document.entities[1]
    assert t2 == TextBound("T2", "Drug", ((69, 76), (85, 93)), "aspirin steroids")
    assert (t2.start, t2.end, t2.discontinuous) == (69, 93, True)
    assert document.attributes == [Attribute("A1", "POLARITY", "E1", "NEG"), Attribute("M2", "Negated", "T2")]
    assert [e.id for e in document.entities] == ["T1", "T2", "T3"]


def test_round_trip_keeps_crlf_line_endings(tmp_path):
    content = "T1\tDrug 0 7\taspirin\r\nA1\tAssertion T1 absent\r\n"
    path = tmp_path / "doc.ann"
    path.write_bytes(content.encode("utf-8"))
    document = read_ann(path)
    assert document.entities[0].spans == ((0, 7),)
    write_ann(tmp_path / "copy.ann", document)
    assert (tmp_path / "copy.ann").read_bytes() == content.encode("utf-8")


def test_malformed_offsets_name_the_line_not_its_text():
    with pytest.raises(BratFormatError, match=r"doc.ann:2") as info:
        parse_ann("T1\tDrug 0 7\taspirin\nT2\tDrug x y\tsecret\n", source="doc.ann")
    assert "secret" not in str(info.value)


def test_offsets_after_non_ascii_and_crlf(tmp_path):
    (tmp_path / "note.txt").write_bytes(TEXT.encode("utf-8"))
    text = read_text_exact(tmp_path / "note.txt")
    assert text == TEXT  # CRLF kept: "\r" counts in the offsets
    aspirin, steroids = _at(text, "aspirin"), _at(text, "steroids")
    content = (f"T1\tAge 2 13\t75–year–old\n"
               f"T2\tDrug {aspirin[0]} {aspirin[1]};{steroids[0]} {steroids[1]}\taspirin steroids\n")
    document = parse_ann(content)
    assert check_offsets(document, text) == []
    assert text[2:13] == "75–year–old"
    assert format_ann(document) == content
    # A wrong offset (as if "–" were three UTF-8 bytes) is caught.
    assert check_offsets(parse_ann("T1\tAge 2 17\t75–year–old\n"), text) == ["T1"]


def test_entities_to_ann_writes_t_and_assertion_lines(tmp_path):
    text = TEXT
    pain, fever = _at(text, "chest pain"), _at(text, "fever; started\r\naspirin")
    entities = [SimpleNamespace(start=pain[0], end=pain[1], label="PROBLEM",
                                assertion=SimpleNamespace(assertion="present")),
                SimpleNamespace(start=fever[0], end=fever[1], label="PROBLEM", assertion=None)]
    document = entities_to_ann(entities, text)
    assert format_ann(document) == (f"T1\tPROBLEM {pain[0]} {pain[1]}\tchest pain\n"
                                    "A1\tAssertion T1 present\n"
                                    f"T2\tPROBLEM {fever[0]} {fever[1]}\tfever; started  aspirin\n")
    assert check_offsets(document, text) == []
    write_ann(tmp_path / "p.ann", document)
    assert format_ann(read_ann(tmp_path / "p.ann")) == format_ann(document)


# ----------------------------------------------------------------------------- scorer


def _micro(result, mode):
    m = result[mode]["micro"]
    return m["precision"], m["recall"], m["f1"]


def test_strict_needs_exact_offsets_and_type_lenient_needs_overlap():
    gold = [GoldEntity("PROBLEM", ((10, 20),)), GoldEntity("TEST", ((30, 35),)), GoldEntity("TREATMENT", ((50, 60),))]
    pred = [PredEntity("PROBLEM", 10, 20),   # exact
            PredEntity("TEST", 32, 40),      # overlap only
            PredEntity("PROBLEM", 50, 60),   # right span, wrong type
            PredEntity("TEST", 70, 75)]      # spurious
    result = score([(gold, pred)])
    assert _micro(result, "strict") == (0.25, 0.3333, 0.2857)
    assert _micro(result, "lenient") == (0.5, 0.6667, 0.5714)
    strict, lenient = result["strict"]["per_type"], result["lenient"]["per_type"]
    assert strict["PROBLEM"]["precision"] == 0.5 and strict["PROBLEM"]["recall"] == 1.0
    assert strict["TEST"]["f1"] == 0.0 and lenient["TEST"]["f1"] == 0.6667
    assert strict["TREATMENT"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "correct_predicted": 0,
                                   "correct_gold": 0, "predicted": 0, "gold": 1}


def test_touching_spans_do_not_overlap_and_micro_sums_documents():
    doc1 = ([GoldEntity("PROBLEM", ((0, 5),))], [PredEntity("PROBLEM", 5, 9)])
    doc2 = ([GoldEntity("PROBLEM", ((0, 5),))], [PredEntity("PROBLEM", 0, 5)])
    result = score([doc1, doc2])
    assert _micro(result, "strict") == (0.5, 0.5, 0.5)
    assert _micro(result, "lenient") == (0.5, 0.5, 0.5)


def test_discontinuous_gold_strict_full_extent_lenient_any_fragment():
    gold = [GoldEntity("TREATMENT", ((10, 17), (26, 34)))]
    assert _micro(score([(gold, [PredEntity("TREATMENT", 10, 34)])]), "strict") == (1.0, 1.0, 1.0)
    assert _micro(score([(gold, [PredEntity("TREATMENT", 10, 17)])]), "strict") == (0.0, 0.0, 0.0)
    assert _micro(score([(gold, [PredEntity("TREATMENT", 26, 34)])]), "lenient") == (1.0, 1.0, 1.0)
    assert _micro(score([(gold, [PredEntity("TREATMENT", 18, 25)])]), "lenient") == (0.0, 0.0, 0.0)  # the gap


def test_lenient_counts_predictions_and_gold_separately():
    gold = [GoldEntity("PROBLEM", ((0, 5),)), GoldEntity("PROBLEM", ((6, 10),))]
    result = score([(gold, [PredEntity("PROBLEM", 0, 10)])])  # one long prediction covers both
    assert _micro(result, "lenient") == (1.0, 1.0, 1.0)
    assert _micro(result, "strict") == (0.0, 0.0, 0.0)


def test_unmapped_gold_types_are_ignored_and_duplicates_count_once(tmp_path):
    (tmp_path / "d.ann").write_text("T1\tSign_symptom 0 5\tfever\nT2\tSign_symptom 0 5\tfever\n"
                                    "T3\tLab_value 6 9\thigh\nT4\tDrug 10 13;20 25\tab cd\n", encoding="utf-8")
    gold, ignored = gold_entities(tmp_path / "d.ann", {"Sign_symptom": "PROBLEM", "Drug": "TREATMENT"})
    assert gold == [GoldEntity("PROBLEM", ((0, 5),)), GoldEntity("TREATMENT", ((10, 13), (20, 25)))]
    assert ignored == 1
    assert len(gold_entities(tmp_path / "d.ann", None)[0]) == 3  # no map: every type kept by name


def test_label_map_must_be_a_mapping(tmp_path):
    (tmp_path / "bad.yaml").write_text("- PROBLEM\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        load_label_map(tmp_path / "bad.yaml")


def test_shipped_label_maps_follow_the_lexicon_type_map():
    from clinlake.pipelines.resources import package_resource
    from clinlake.pipelines.training.lexicons import TYPE_MAP

    for corpus, name in (("MACCROBAT", "maccrobat"), ("Chia", "chia")):
        assert load_label_map(package_resource(f"conf/label_maps/{name}_clinical_core.yaml")) == TYPE_MAP[corpus]


# ----------------------------------------------------------------------------- CLI


def _corpus(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    text_a = "The patient had fever and chest pain –\r\nno cough. Started aspirin.\r\n"
    (data / "a.txt").write_bytes(text_a.encode("utf-8"))
    fever, aspirin, cough = _at(text_a, "fever"), _at(text_a, "aspirin"), _at(text_a, "cough")
    (data / "a.ann").write_text(f"T1\tSign_symptom {fever[0]} {fever[1]}\tfever\n"
                                f"T2\tSign_symptom {cough[0]} {cough[1]}\tcough\n"
                                f"T3\tMedication {aspirin[0]} {aspirin[1]}\taspirin\n"
                                f"T4\tAge 0 3\tThe\n", encoding="utf-8")
    text_b = "Diabetes mellitus. No hypertension.\n"
    (data / "b.txt").write_text(text_b, encoding="utf-8")
    dm = _at(text_b, "Diabetes mellitus")
    (data / "b.ann").write_text(f"T1\tDisease_disorder {dm[0]} {dm[1]}\tDiabetes mellitus\n", encoding="utf-8")
    label_map = tmp_path / "map.yaml"
    label_map.write_text("Sign_symptom: PROBLEM\nDisease_disorder: PROBLEM\nMedication: TREATMENT\n", encoding="utf-8")
    return data, label_map


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    import contextlib
    import io

    tmp_path = tmp_path_factory.mktemp("brat_cli")
    data, label_map = _corpus(tmp_path)
    out = tmp_path / "pred"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = evaluate_main(["brat", "--data", str(data), "--predictions", str(out),
                              "--label-map", str(label_map), "--json"])
    return code, json.loads(buffer.getvalue()), data, out


def test_cli_writes_ann_per_document_and_scores(cli_run):
    code, report, data, out = cli_run
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.ann", "b.ann"]
    assert report["documents"] == 2 and report["gold_ignored_unmapped"] == 1
    assert report["strict"]["micro"]["gold"] == 4
    for name in ("a", "b"):
        predicted = read_ann(out / f"{name}.ann")
        text = read_text_exact(data / f"{name}.txt")
        assert check_offsets(predicted, text) == []
        assert len(predicted.attributes) == len(predicted.entities)  # one Assertion per entity
        assert {a.name for a in predicted.attributes} <= {"Assertion"}
    # Offsets agree with gold after the "–" and the CRLF: "aspirin" (a shipped TREATMENT term) scores exactly,
    # and "no cough" is written as absent.
    text_a = read_text_exact(data / "a.txt")
    predicted_a = read_ann(out / "a.ann")
    spans = {e.spans[0]: e for e in predicted_a.entities}
    assert (_at(text_a, "aspirin"), "TREATMENT") in {(s, e.type) for s, e in spans.items()}
    assert report["strict"]["per_type"]["TREATMENT"]["recall"] == 1.0
    cough = spans[_at(text_a, "cough")]
    assert [a.value for a in predicted_a.attributes if a.target == cough.id] == ["absent"]
    for mode in ("strict", "lenient"):
        assert set(report[mode]["per_type"]) >= {"PROBLEM", "TREATMENT"}
        assert 0.0 < report[mode]["micro"]["f1"] <= 1.0


def test_cli_text_report_and_usage_errors(tmp_path, capsys):
    data, label_map = _corpus(tmp_path)
    assert evaluate_main(["brat", "--data", str(data), "--predictions", str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out
    assert "strict:" in printed and "lenient:" in printed and "micro" in printed
    assert "fever" not in printed  # no note text on the console
    assert evaluate_main(["brat", "--data", str(tmp_path / "missing"), "--predictions", str(tmp_path / "p")]) == 2
    (tmp_path / "bad.yaml").write_text("[1, 2]\n", encoding="utf-8")
    assert evaluate_main(["brat", "--data", str(data), "--predictions", str(tmp_path / "p"),
                          "--label-map", str(tmp_path / "bad.yaml")]) == 2

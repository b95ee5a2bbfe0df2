"""Tests for assertion scoring on BRAT event polarity (``clinlake evaluate assertion-brat``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinlake.jobs.evaluate import main as evaluate_main
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.evaluation.assertion_brat import (
    DEFAULT_TYPES, DocumentAssessor, Event, GoldDoc, GoldItem, evaluate, format_report, gold_label, label_score,
    parse_event, parse_types, predict_split, read_gold_doc, read_split, score_pairs, three_way,
)
from clinlake.pipelines.engine.types import AssertionResult


def write_doc(folder: Path, name: str, text: str, ann: str) -> Path:
    txt = folder / f"{name}.txt"
    txt.write_text(text, encoding="utf-8", newline="")
    (folder / f"{name}.ann").write_text(ann, encoding="utf-8", newline="")
    return txt


def t_line(tid: str, kind: str, text: str, phrase: str, occurrence: int = 0) -> str:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(phrase, start + 1)
    return f"{tid}\t{kind} {start} {start + len(phrase)}\t{phrase}"


# --- gold -----------------------------------------------------------------------------------

GOLD_TEXT = "No fever. Possible pneumonia. Rash maybe. Cough present. Chest and back pain. Seen 2019. Not nausea."


@pytest.fixture()
def gold_folder(tmp_path: Path) -> Path:
    text = GOLD_TEXT
    chest, pain = text.index("Chest"), text.index("pain")
    lines = [
        t_line("T1", "Sign_symptom", text, "fever"), "E1\tSign_symptom:T1 ",
        "A1\tPOLARITY E1 NEG",
        t_line("T2", "Disease_disorder", text, "pneumonia"), "E2\tDisease_disorder:T2 ",
        "A2\tPOLARITY E2 UNCERTAIN",
        t_line("T3", "Sign_symptom", text, "Rash"), "E3\tSign_symptom:T3 ",
        "A3\tPOLARITY E3 MAYBE_POS",
        t_line("T4", "Sign_symptom", text, "Cough"), "E4\tSign_symptom:T4 ",  # no polarity: present
        f"T5\tSign_symptom {chest} {chest + 5};{pain} {pain + 4}\tChest pain",  # two fragments
        "E5\tSign_symptom:T5 ", "A5\tPOLARITY E5 POS",
        t_line("T6", "Date", text, "2019"), "E6\tDate:T6 ", "A6\tPOLARITY E6 NEG",  # type not selected
        t_line("T7", "Sign_symptom", text, "nausea"), "E7\tSign_symptom:T7 Site:T4",
        "A7\tPOLARITY E7 MAYBE_NEG",
        "E8\tSign_symptom:T4 ", "A8\tPOLARITY E8 NEG",  # second event on T4: the first one counts
        "R1\tMODIFY Arg1:T6 Arg2:E4\t",
    ]
    write_doc(tmp_path, "doc1", text, "\n".join(lines) + "\n")
    return tmp_path


def test_parse_event_reads_type_trigger_and_arguments() -> None:
    assert parse_event("E3\tSign_symptom:T5 Site:T2 Cause:E1") == Event(
        "E3", "Sign_symptom", "T5", (("Site", "T2"), ("Cause", "E1")))
    assert parse_event("E1\tDisease_disorder:T13 ") == Event("E1", "Disease_disorder", "T13", ())
    assert parse_event("R1\tMODIFY Arg1:T8 Arg2:E4") is None
    assert parse_event("E2\tno-colon-here") is None
    assert parse_event("E2") is None


def test_gold_label_mapping() -> None:
    assert [gold_label(v) for v in ("NEG", "UNCERTAIN", "POS", None, "MAYBE_NEG", "MAYBE_POS")] == [
        "absent", "possible", "present", "present", None, None]


def test_gold_items_follow_polarity_and_exclude_maybe(gold_folder: Path) -> None:
    doc, tally = read_gold_doc(gold_folder / "doc1.txt")
    by_trigger = {item.trigger: item for item in doc.items}
    assert {t: i.label for t, i in by_trigger.items()} == {
        "T1": "absent", "T2": "possible", "T4": "present", "T5": "present"}
    assert by_trigger["T4"].event == "E4" and by_trigger["T4"].polarity is None
    assert dict(tally.excluded_maybe) == {"MAYBE_POS": 1, "MAYBE_NEG": 1}
    assert tally.other_types == 1  # the Date event
    assert dict(tally.polarity) == {"NEG": 1, "UNCERTAIN": 1, "none": 1, "POS": 1}


def test_discontinuous_trigger_uses_full_extent(gold_folder: Path) -> None:
    doc, _ = read_gold_doc(gold_folder / "doc1.txt")
    item = next(i for i in doc.items if i.trigger == "T5")
    assert len(item.spans) == 2
    assert doc.text[item.start:item.end] == "Chest and back pain"


def test_types_none_keeps_every_event_type(gold_folder: Path) -> None:
    doc, tally = read_gold_doc(gold_folder / "doc1.txt", types=None)
    assert {i.trigger for i in doc.items} == {"T1", "T2", "T4", "T5", "T6"}
    assert tally.other_types == 0
    assert parse_types("all") is None
    assert parse_types(None) == DEFAULT_TYPES
    assert parse_types("Sign_symptom, Medication") == frozenset({"Sign_symptom", "Medication"})


def test_read_split_skips_text_without_ann(gold_folder: Path) -> None:
    (gold_folder / "orphan.txt").write_text("No gold here.", encoding="utf-8")
    split = read_split(gold_folder)
    assert [d.name for d in split.docs] == ["doc1"]
    assert len(split.items) == 4


# --- scoring -------------------------------------------------------------------------------


def test_three_way_maps_our_six_labels() -> None:
    assert [three_way(x) for x in ("absent", "possible", "present", "hypothetical", "conditional",
                                   "associated_with_someone_else")] == [
        "absent", "possible", "present", "present", "present", "present"]


def test_scores_on_hand_made_predictions() -> None:
    pairs = [
        ("absent", "absent"), ("absent", "absent"), ("absent", "present"),  # 2 tp, 1 fn
        ("present", "absent"),  # fp absent
        ("possible", "possible"), ("possible", "absent"),  # tp possible; fn possible + fp absent
        ("present", "possible"), ("present", "present"),  # fp possible; correct present
    ]
    scores = score_pairs(pairs)
    absent, possible = scores.per_label["absent"], scores.per_label["possible"]
    assert (absent.tp, absent.fp, absent.fn) == (2, 2, 1)
    assert absent.precision == pytest.approx(0.5)
    assert absent.recall == pytest.approx(2 / 3)
    assert absent.f1 == pytest.approx(4 / 7)
    assert (possible.tp, possible.fp, possible.fn) == (1, 1, 1)
    assert possible.f1 == pytest.approx(0.5)
    assert scores.accuracy == pytest.approx(4 / 8)
    assert scores.confusion["possible"] == {"absent": 1, "possible": 1, "present": 0}
    assert scores.to_dict()["per_label"]["absent"]["support"] == 3


def test_label_score_without_predictions_or_gold_is_zero() -> None:
    assert label_score([("present", "present")], "absent").f1 == 0.0
    assert score_pairs([]).accuracy == 0.0


# --- prediction ----------------------------------------------------------------------------


class RecordingEngine:
    """Answers 'absent' for every target and records each assess call's targets and section."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[tuple[int, int]], str | None]] = []

    def assess(self, text, sentence, targets, section=None):
        self.calls.append((sentence.index, list(targets), section))
        return [AssertionResult("absent", False, 0.9) for _ in targets]


def recording_assessor() -> tuple[DocumentAssessor, RecordingEngine]:
    """The default pipeline's text and section stages around a RecordingEngine."""
    rules = DocumentAssessor.from_config("rules").pipeline
    engine = RecordingEngine()
    pipeline = Pipeline(splitter=rules.splitter, sections=rules.sections, ner_stages=[], assertion=engine,
                        version=rules.version)
    return DocumentAssessor(pipeline), engine


def test_assess_is_called_once_per_sentence_with_all_its_triggers() -> None:
    text = "Fever and cough. Rash."
    items = [GoldItem("d", f"E{n}", f"T{n}", "Sign_symptom", ((text.index(w), text.index(w) + len(w)),), None,
                      "present") for n, w in enumerate(("Fever", "cough", "Rash"), start=1)]
    assessor, engine = recording_assessor()
    labels = assessor.predict(GoldDoc("d", text, items))
    assert labels == ["absent", "absent", "absent"]
    assert [(index, targets) for index, targets, _ in engine.calls] == [(0, [(0, 5), (10, 15)]), (1, [(17, 21)])]


def test_triggers_out_of_order_are_assessed_by_sentence_and_answered_in_place() -> None:
    text = "Fever and cough. Rash."
    words = ("Rash", "cough", "Fever")  # not in text order
    items = [GoldItem("d", f"E{n}", f"T{n}", "Sign_symptom", ((text.index(w), text.index(w) + len(w)),), None,
                      "present") for n, w in enumerate(words, start=1)]
    assessor, engine = recording_assessor()
    assert assessor.predict(GoldDoc("d", text, items)) == ["absent", "absent", "absent"]
    assert [(index, targets) for index, targets, _ in engine.calls] == [(0, [(10, 15), (0, 5)]), (1, [(17, 21)])]


def test_the_assessor_is_a_pipeline_without_ner_stages() -> None:
    assessor = DocumentAssessor.from_config("rules")
    assert assessor.pipeline.ner_stages == () and assessor.name == "rules"
    with pytest.raises(ValueError, match="unknown assertion engine"):
        DocumentAssessor.from_config("none")


def test_trigger_crossing_a_sentence_end_is_unplaced() -> None:
    text = "Fever. Cough."
    item = GoldItem("d", "E1", "T1", "Sign_symptom", ((0, 5), (7, 12)), None, "present")
    rules = DocumentAssessor.from_config("rules")
    assert rules.predict(GoldDoc("d", text, [item])) == [None]
    assert rules.predict(GoldDoc("d", text, [])) == []


def test_rules_end_to_end(tmp_path: Path) -> None:
    text = "No fever. Possible pneumonia. Cough present."
    ann = "\n".join([
        t_line("T1", "Sign_symptom", text, "fever"), "E1\tSign_symptom:T1 ", "A1\tPOLARITY E1 NEG",
        t_line("T2", "Disease_disorder", text, "pneumonia"), "E2\tDisease_disorder:T2 ",
        "A2\tPOLARITY E2 UNCERTAIN",
        t_line("T3", "Sign_symptom", text, "Cough"), "E3\tSign_symptom:T3 ",
    ]) + "\n"
    write_doc(tmp_path, "note", text, ann)
    split = read_split(tmp_path)
    labels, _ = predict_split(DocumentAssessor.from_config("rules"), split)
    assert labels == {"note:T1": "absent", "note:T2": "possible", "note:T3": "present"}
    report = evaluate(tmp_path, "rules")
    assert report["scored"] == 3 and report["accuracy"] == 1.0
    assert report["per_label"]["absent"]["f1"] == 1.0 and report["per_label"]["possible"]["f1"] == 1.0
    assert report["gold"] == {"absent": 1, "possible": 1, "present": 1}


def test_cli_reports_json_and_rejects_missing_directory(tmp_path: Path, capsys) -> None:
    text = "No fever."
    write_doc(tmp_path, "note", text, t_line("T1", "Sign_symptom", text, "fever") +
              "\nE1\tSign_symptom:T1 \nA1\tPOLARITY E1 NEG\n")
    assert evaluate_main(["assertion-brat", "--data", str(tmp_path), "--engine", "rules", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["per_label"]["absent"]["tp"] == 1 and out["unplaced"] == 0
    assert "fever" not in json.dumps(out)  # no note text in reports
    assert evaluate_main(["assertion-brat", "--data", str(tmp_path / "missing"), "--engine", "rules"]) == 2
    assert "no such directory" in capsys.readouterr().out
    assert evaluate_main(["assertion-brat", "--data", str(tmp_path), "--engine", "rules", "--types", "all"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("engine rules on 1 documents") and "absent" in printed
    report = evaluate(tmp_path, "rules", types=None)
    assert format_report(report).splitlines()[0] == printed.splitlines()[0]


def test_evaluate_subcommand_wires_the_options(tmp_path: Path, capsys) -> None:
    from clinlake.jobs.evaluate import main

    text = "Possible pneumonia."
    write_doc(tmp_path, "note", text, t_line("T1", "Disease_disorder", text, "pneumonia") +
              "\nE1\tDisease_disorder:T1 \nA1\tPOLARITY E1 UNCERTAIN\n")
    assert main(["assertion-brat", "--data", str(tmp_path), "--engine", "rules", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["engine"] == "rules" and out["per_label"]["possible"]["f1"] == 1.0
    assert main(["assertion-brat", "--data", str(tmp_path / "nope")]) == 2


def test_a_test_trigger_with_a_negative_result_is_present_under_the_label_map(tmp_path: Path, capsys) -> None:
    """MACCROBAT: "HIV serology was negative": the test was done (present, its result negative);
    "no fever": the finding is absent. Diagnostic_procedure maps to TEST, which the default
    allowed_by_label keeps from absent; without a label map the rules' absent stands."""
    text = "HIV serology was negative, and there was no fever."
    ann = "\n".join([
        t_line("T1", "Diagnostic_procedure", text, "HIV serology"), "E1\tDiagnostic_procedure:T1 ",
        t_line("T2", "Sign_symptom", text, "fever"), "E2\tSign_symptom:T2 ", "A2\tPOLARITY E2 NEG",
    ]) + "\n"
    write_doc(tmp_path, "note", text, ann)
    split = read_split(tmp_path)
    from clinlake.pipelines.corpora.label_maps import load_label_map
    from clinlake.pipelines.evaluation.assertion_brat import DEFAULT_LABEL_MAP

    labelled = DocumentAssessor.from_config("rules", label_map=load_label_map(DEFAULT_LABEL_MAP))
    assert predict_split(labelled, split)[0] == {"note:T1": "present", "note:T2": "absent"}
    assert predict_split(DocumentAssessor.from_config("rules"), split)[0] == {"note:T1": "absent",
                                                                              "note:T2": "absent"}
    report = evaluate(tmp_path, "rules")
    assert report["label_map"] == "maccrobat_clinical_core.yaml" and report["accuracy"] == 1.0
    assert evaluate(tmp_path, "rules", label_map=None)["per_label"]["absent"]["fp"] == 1
    assert evaluate_main(["assertion-brat", "--data", str(tmp_path), "--engine", "rules", "--label-map", "none",
                          "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label_map"] is None and out["per_label"]["absent"]["fp"] == 1

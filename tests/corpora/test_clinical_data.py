"""BRAT documents → training examples on clinlake's own tokens (pipelines/corpora/clinical.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinlake.pipelines.corpora.clinical import (
    Stats, document_examples, load_brat_split, mapped_spans, non_overlapping,
)
from clinlake.pipelines.engine.text import TextSplitter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def splitter() -> TextSplitter:
    return TextSplitter.from_file(REPO / "conf" / "abbreviations.yaml")


def tagged(examples):
    return [list(zip(words, tags)) for words, tags in examples]


def test_entities_become_iob2_tags_on_pipeline_pieces(splitter):
    text = "Chest pain and HbA1c 7.5%. Started metformin 500 mg."
    spans = [(0, 10, "PROBLEM"), (15, 20, "TEST"), (35, 44, "TREATMENT")]
    stats = Stats()
    examples = document_examples(text, spans, splitter, stats)
    assert tagged(examples) == [
        [("Chest", "B-PROBLEM"), ("pain", "I-PROBLEM"), ("and", "O"), ("HbA1c", "B-TEST"), ("7", "O"), (".", "O"),
         ("5", "O"), ("%", "O"), (".", "O")],
        [("Started", "O"), ("metformin", "B-TREATMENT"), ("500", "O"), ("mg", "O"), (".", "O")],
    ]
    assert stats.entities == {"PROBLEM": 1, "TEST": 1, "TREATMENT": 1}
    assert stats.sentences == 2 and stats.widened == 0 and not stats.left_out


def test_an_edge_inside_a_piece_widens_to_the_piece(splitter):
    stats = Stats()
    examples = document_examples("Low HbA1c today.", [(4, 7, "TEST")], splitter, stats)  # "HbA" of "HbA1c"
    assert tagged(examples)[0][1] == ("HbA1c", "B-TEST")
    assert stats.widened == 1


def test_an_entity_across_two_sentences_is_left_out(splitter):
    text = "He had fever. Cough followed."
    stats = Stats()
    examples = document_examples(text, [(7, 19, "PROBLEM"), (14, 19, "PROBLEM")], splitter, stats)
    assert [t for _, tags in examples for t in tags].count("B-PROBLEM") == 1  # only "Cough"
    assert tagged(examples)[1][0] == ("Cough", "B-PROBLEM")
    assert stats.left_out == {"cross_sentence": 1}


def test_overlaps_keep_the_longest_then_the_earliest():
    stats = Stats()
    kept = non_overlapping([(0, 5, "A"), (0, 20, "B"), (10, 14, "C"), (30, 34, "D"), (32, 36, "E")], stats)
    assert kept == [(0, 20, "B"), (30, 34, "D")]
    assert stats.left_out == {"overlapping": 3}


def test_label_map_duplicates_and_discontinuous_spans(tmp_path):
    ann = tmp_path / "doc.ann"
    ann.write_text("T1\tSign_symptom 0 5\tfever\nT2\tDisease_disorder 0 5\tfever\nT3\tSeverity 6 10\tmild\n"
                   "T4\tSign_symptom 11 15;20 24\tpain ache\nE1\tSign_symptom:T1\n", encoding="utf-8")
    stats = Stats()
    spans = mapped_spans(ann, {"Sign_symptom": "PROBLEM", "Disease_disorder": "PROBLEM"}, stats)
    assert spans == [(0, 5, "PROBLEM")]  # T2 maps to the same label and span: one entity; Severity unmapped
    assert stats.left_out == {"discontinuous": 1}


def test_load_brat_split_reads_every_document_in_name_order(tmp_path, splitter):
    (tmp_path / "b.txt").write_bytes("Fever – no rash.\r\nAspirin given.".encode())
    (tmp_path / "b.ann").write_text("T1\tSign_symptom 0 5\tFever\nT2\tMedication 18 25\tAspirin\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Nothing here.", encoding="utf-8")  # no .ann: no entities
    stats = Stats()
    examples = load_brat_split(tmp_path, {"Sign_symptom": "PROBLEM", "Medication": "TREATMENT"}, splitter, stats)
    assert tagged(examples) == [
        [("Nothing", "O"), ("here", "O"), (".", "O")],
        [("Fever", "B-PROBLEM"), ("–", "O"), ("no", "O"), ("rash", "O"), (".", "O")],
        [("Aspirin", "B-TREATMENT"), ("given", "O"), (".", "O")],
    ]
    assert stats.documents == 2 and stats.entities == {"PROBLEM": 1, "TREATMENT": 1}

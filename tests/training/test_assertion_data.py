"""Training rows of the assertion model from annotated documents (pipelines/training/assertion.py)."""
import json

from clinlake.pipelines.training.assertion_data import (IGNORE, chia_examples, phee_examples, phee_train_path,
                                                        training_examples)

TEXT = ("No history of diabetes mellitus\n"
        "Current smokers with asthma\n"
        "Patients with pneumonia\n"
        "Previous stroke or history of seizures")
ANN = "\n".join([
    "T1\tObservation 3 13\thistory of",
    "T2\tCondition 14 31\tdiabetes mellitus",
    "T3\tNegation 0 2\tNo",
    "R1\tHas_negation Arg1:T2 Arg2:T3\t",
    "R2\tAND Arg1:T1 Arg2:T2\t",
    "T4\tTemporal 32 39\tCurrent",
    "T5\tCondition 53 59\tasthma",
    "R3\tHas_temporal Arg1:T5 Arg2:T4\t",
    "T6\tCondition 74 83\tpneumonia",
    "T7\tTemporal 84 92\tPrevious",
    "T8\tCondition 93 99\tstroke",
    "R4\tHas_temporal Arg1:T8 Arg2:T7\t",
    "T9\tCondition 114 122\tseizures",
    "T10\tCondition 84 99;114 122\tPrevious stroke ... seizures",
]) + "\n"


def test_chia_conditions_get_negation_and_time_from_their_linked_entities(tmp_path):
    (tmp_path / "NCT1_exc.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "NCT1_exc.ann").write_text(ANN, encoding="utf-8")
    examples = chia_examples(tmp_path)
    found = {TEXT[e.target[0]:e.target[1]]: e for e in examples}
    assert list(found) == ["diabetes mellitus", "asthma", "pneumonia", "stroke", "seizures"]  # T10: discontinuous
    labels = {name: (e.labels["negation"], e.labels["temporality"]) for name, e in found.items()}
    assert labels == {
        "diabetes mellitus": (1, 1),  # Has_negation; linked to "history of"
        "asthma": (0, 0),             # linked to "Current"
        "pneumonia": (0, 0),          # its line has no word of the past
        "stroke": (0, 1),             # linked to "Previous"
        "seizures": (0, IGNORE),      # unlinked, but its line speaks of the past: not guessed
    }
    # each row's span is its criterion's line, also where the splitter runs lines together
    assert all(TEXT[e.span[0]:e.span[1]] in TEXT.split("\n") for e in examples)
    assert {e.source for e in examples} == {"chia"} and all(e.labels["certainty"] == IGNORE for e in examples)
    rows, counts = training_examples([], None, chia=tmp_path)
    assert len(rows) == 5 and counts == {"kit_train": 0, "chia_train": 5, "chia_negated": 1, "chia_historical": 2}


PHEE_TEXT = "No seizures or rash were seen with drug X, which may cause pain and swelling at the site."


def _phee_event(effect: list[tuple[str, int]], **attributes) -> dict:
    return {"event_id": "E1", "event_type": "Adverse_event",
            "Effect": {"text": [[t] for t, _ in effect], "start": [[s] for _, s in effect]},
            **{name: {"text": [["x"]], "start": [[0]], "value": value} for name, value in attributes.items()}}


def test_phee_effects_are_negated_where_their_event_is_and_other_heads_are_masked(tmp_path):
    records = [
        {"id": "1", "context": PHEE_TEXT, "annotations": [{"events": [
            _phee_event([("seizures", 3), ("rash", 15)], Negated=True),
            _phee_event([("pain", 59)], Speculated=True),
            # a mention whose start does not hold its text is left out, not guessed
            _phee_event([("swelling", 10)]),
        ]}]},
        {"id": "2", "context": "Drug Y caused hives.", "annotations": [{"events": [
            {"event_id": "E1", "event_type": "Adverse_event",
             "Effect": {"text": [["caused", "hives"]], "start": [[7, 14]]}}]}]},  # two fragments: skipped
    ]
    path = tmp_path / "train.json"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    examples = phee_examples(path)
    found = {e.text[e.target[0]:e.target[1]]: e.labels for e in examples}
    assert found == {
        "seizures": {"negation": 1, "certainty": IGNORE, "temporality": IGNORE, "experiencer": IGNORE},
        "rash": {"negation": 1, "certainty": IGNORE, "temporality": IGNORE, "experiencer": IGNORE},
        "pain": {"negation": 0, "certainty": IGNORE, "temporality": IGNORE, "experiencer": IGNORE},
    }
    assert all(e.span == (0, len(PHEE_TEXT)) and e.source == "phee" for e in examples)
    rows, counts = training_examples([], None, phee=path)
    assert len(rows) == 3 and counts == {"kit_train": 0, "phee_train": 3, "phee_negated": 2}


def test_phee_train_split_reads_whole():
    examples = phee_examples(phee_train_path())
    assert len(examples) > 2000 and 10 < sum(e.labels["negation"] == 1 for e in examples) < 100
    assert all(e.text[e.target[0]:e.target[1]].strip() for e in examples)

"""Training rows of the assertion model from annotated documents (pipelines/training/assertion.py)."""
from clinlake.pipelines.training.assertion_data import IGNORE, chia_examples, training_examples

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

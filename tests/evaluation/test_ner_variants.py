"""Post-processing variants scored on the same predictions (pipelines/evaluation/ner_variants.py)."""
import pytest

from clinlake.pipelines.evaluation.ner_variants import Tagged, UnknownVariantError, score_variants


def test_each_variant_applies_its_own_document_level_steps_to_the_same_predictions():
    tokens = [["Escherichia", "coli", "(", "EC", ")", "grew", "."],
              ["E", ".", "coli", "and", "EC", "cells", "."],
              ["Escherichia", "coli", "again", "."]]
    gold = [["B-Species", "I-Species", "O", "B-Species", "O", "O", "O"],
            ["B-Species", "I-Species", "I-Species", "O", "B-Species", "O", "O"],
            ["B-Species", "I-Species", "O", "O"]]
    predicted = [["B-Species", "I-Species", "O", "O", "O", "O", "O"], ["O"] * 7, ["O"] * 4]
    confidence = [[0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0] * 7, [0.6, 0.6, 1.0, 1.0]]
    scores = score_variants(Tagged(tokens, predicted, confidence), gold)
    assert scores["network"] == {"f1": round(2 * 1 / (1 + 5), 4), "precision": 1.0, "recall": 0.2}
    assert scores["abbreviations"] == {"f1": 0.75, "precision": 1.0, "recall": 0.6}  # + both EC
    # + "E. coli" and the repeated full form
    assert scores["abbreviations+binomials"] == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    # the vote: "Escherichia coli" tagged once (0.9) against once untagged (O at 0.6): tagged
    assert scores["abbreviations+consistency"] == {"f1": round(2 * 0.8 / 1.8, 4), "precision": 1.0, "recall": 0.8}
    assert list(score_variants(Tagged(tokens, predicted, confidence), gold, ["network"])) == ["network"]
    with pytest.raises(UnknownVariantError, match="unknown variants"):
        score_variants(Tagged(tokens, predicted, confidence), gold, ["ensemble"])

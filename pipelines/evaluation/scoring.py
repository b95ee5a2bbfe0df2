"""The one precision / recall / F1 formula behind every scorer (NER, BRAT, assertion)."""
from __future__ import annotations


def precision_recall_f1(correct_predicted: int, predicted: int, correct_gold: int, gold: int) -> tuple[float, float, float]:
    """Precision = correct predictions / predictions, recall = gold found / gold, F1 their
    harmonic mean; 0.0 where a denominator is 0. The two "correct" counts differ only for
    lenient (overlap) matching, where one prediction may find several gold entities."""
    precision = correct_predicted / predicted if predicted else 0.0
    recall = correct_gold / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1

"""Placing a document-level entity in a sentence's spans, as every document-level step does
(abbreviations, :mod:`pipelines.engine.short_forms`; binomials, :mod:`pipelines.engine.binomials`)."""
from __future__ import annotations


def place(sentence_spans: dict, start: int, end: int, label: str, value: object) -> bool:
    """Tag tokens ``start:end`` of one sentence with ``label`` the way document-level propagation
    does: where no span overlaps them, or one span covers exactly them with another label (it is
    replaced); a span inside or overlapping a longer one is left alone. True when placed."""
    overlapping = [s for s in sentence_spans if s[0] < end and start < s[1]]
    alone = len(overlapping) == 1 and overlapping[0][:2] == (start, end)
    if overlapping and not (alone and overlapping[0][2] != label):
        return False
    for span in overlapping:
        del sentence_spans[span]
    sentence_spans[(start, end, label)] = value
    return True

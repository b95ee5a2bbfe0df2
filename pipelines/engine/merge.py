"""Chunk merge: one non-overlapping set of entities from several NER stages.

Precedence, in order: the stage configured first wins; within a stage the longer span
wins; then the earlier start. An entity that overlaps an already kept one is dropped.
Adjacent (touching, non-overlapping) entities are both kept.
"""
from __future__ import annotations

import bisect
from typing import Sequence

from clinlake.pipelines.engine.types import Entity


def merge_chunks(stage_outputs: Sequence[Sequence[Entity]]) -> list[Entity]:
    ranked = [
        (stage_rank, -(e.end - e.start), e.start, e)
        for stage_rank, entities in enumerate(stage_outputs)
        for e in entities
    ]
    ranked.sort(key=lambda item: item[:3])
    starts: list[int] = []  # kept spans, sorted by start; they never overlap
    ends: list[int] = []
    kept: list[Entity] = []
    for *_, entity in ranked:
        pos = bisect.bisect_right(starts, entity.start)
        # Only the neighbours on either side can overlap a span among disjoint sorted spans.
        if pos > 0 and ends[pos - 1] > entity.start:
            continue
        if pos < len(starts) and starts[pos] < entity.end:
            continue
        starts.insert(pos, entity.start)
        ends.insert(pos, entity.end)
        kept.insert(pos, entity)
    return kept

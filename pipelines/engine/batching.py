"""How the engine cuts rows of unequal length into network calls: runs padded to their longest.

Both networks (the NER tagger and the assertion classifier) pad the rows of one call to the
longest, so padding is wasted work, and each call has a fixed cost of its own. Rows sorted by
length and cut into consecutive runs keep both small; the rules for a cut are the same for both.
"""
from __future__ import annotations

from typing import Sequence


def padded_runs(lengths: Sequence[int], *, max_pieces: int | None = None, max_rows: int | None = None,
                call_cost: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) runs of consecutive ``lengths`` (sorted or not: a run is padded to its longest).

    A row starts a new run when joining the run before it would make that run's padded size exceed
    ``max_pieces``, the run hold more than ``max_rows`` rows, or padding the run's rows up to the new
    longest cost more than ``call_cost`` pieces (the price of one more call, in pieces of work). A
    row longer than ``max_pieces`` alone gets a run of its own.
    """
    runs: list[tuple[int, int]] = []
    lo, longest = 0, 0
    for i, length in enumerate(lengths):
        grown = max(longest, length)
        if i > lo and ((max_pieces is not None and grown * (i - lo + 1) > max_pieces)
                       or (max_rows is not None and i - lo >= max_rows)
                       or (call_cost is not None and (i - lo) * (grown - longest) > call_cost)):
            runs.append((lo, i))
            lo, grown = i, length
        longest = grown
    return runs + [(lo, len(lengths))] if len(lengths) > lo else runs

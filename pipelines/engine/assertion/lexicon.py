"""The ConText rule lexicon compiled for matching (:mod:`.context` uses it): a trie over the
literals' pieces, the pattern regexes, and one prefilter alternation screening a sentence for any
pattern at all. Separate from the engine so each module stays one concern.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from clinlake.pipelines.engine.assertion.rules import ContextRule, rule_pieces


# A rule match: (first piece, end piece exclusive, rule index).
Match = tuple[int, int, int]


class CompiledLexicon:
    """Rules compiled for matching: a trie over literal pieces plus the pattern regexes."""

    _END = ""  # trie key holding the rule index; '' can never be a piece

    def __init__(self, rules: Sequence[ContextRule]) -> None:
        self.rules = tuple(rules)
        self.trie: dict[str, Any] = {}
        self.patterns: list[tuple[re.Pattern[str], int]] = []
        for index, rule in enumerate(self.rules):
            if rule.pattern is None:
                self._insert(rule_pieces(rule.literal), index)
            else:
                self.patterns.append((re.compile(rule.pattern), index))
        self.any_pattern = _prefilter([regex for regex, _ in self.patterns])

    def _insert(self, pieces: tuple[str, ...], index: int) -> None:
        node = self.trie
        for piece in pieces:
            node = node.setdefault(piece, {})
        node.setdefault(self._END, index)  # first rule in file order wins a tie

    def literal_matches(self, norms: Sequence[str]) -> Iterable[Match]:
        """Yield (first piece, end piece, rule index) for every literal occurrence."""
        trie, end_key = self.trie, self._END
        # only pieces some rule starts with are walked from (most pieces start none)
        for first in [i for i, norm in enumerate(norms) if norm in trie]:
            node = trie
            for pos in range(first, len(norms)):
                node = node.get(norms[pos])
                if node is None:
                    break
                if end_key in node:
                    yield first, pos + 1, node[end_key]


_WORD_BOUNDARY = "\\b"


def _top_level_alternation(pattern: str) -> bool:
    """Whether ``pattern`` has a "|" outside every group and character class ("\\bfoo|bar")."""
    depth, in_class, escaped = 0, False, False
    for at, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]" or pattern[at - 1] == "["  # "[]...]": a leading "]" is a member
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def _prefilter(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One alternation of all patterns, so most sentences (which match none) cost one scan.

    None when no safe combination exists: capture groups could be backreferenced and
    would be renumbered, and global inline flags may not be combined.
    """
    if not patterns or any(regex.groups for regex in patterns):
        return None
    # The patterns that start at a word boundary share one "\b(?:...)": tried once per position
    # instead of once per pattern, the scan takes half the time (the same matches: \b(?:X|Y) is
    # \bX|\bY, so long as X and Y have no "|" of their own at the top level).
    def factored(pattern: str) -> bool:
        return pattern.startswith(_WORD_BOUNDARY) and not _top_level_alternation(pattern)

    bounded = [regex.pattern[len(_WORD_BOUNDARY):] for regex in patterns if factored(regex.pattern)]
    others = [regex.pattern for regex in patterns if not factored(regex.pattern)]
    branches = ([_WORD_BOUNDARY + "(?:" + "|".join(f"(?:{p})" for p in bounded) + ")"] if bounded else []) \
        + [f"(?:{p})" for p in others]
    try:
        return re.compile("|".join(branches))
    except re.error:
        return None

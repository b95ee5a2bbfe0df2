"""ConText rules as data (``conf/context_rules.yaml``): the vocabulary, one validated rule, the file.

In the spirit of medspaCy's ``ConTextRule``: :meth:`ContextRule.from_dict` rejects unknown keys
and values with a :class:`RuleError` naming the rule index and key; :func:`load_rules` reads a rule
file. The engine that applies the rules is :mod:`.context`.

Note text is PHI: errors raised here carry rule indices and keys, never note text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from clinlake.pipelines.engine.pieces import WORD_PIECE
from clinlake.pipelines.engine.types import ASSERTION_LABELS
from clinlake.pipelines.resources import package_resource

# --- vocabulary -------------------------------------------------------------------------

NEGATED = "NEGATED_EXISTENCE"
POSSIBLE = "POSSIBLE_EXISTENCE"
HYPOTHETICAL = "HYPOTHETICAL"
CONDITIONAL = "CONDITIONAL"
FAMILY = "FAMILY"
HISTORICAL = "HISTORICAL"
PSEUDO = "PSEUDO"
TERMINATE = "TERMINATE"

CATEGORIES: frozenset[str] = frozenset(
    {NEGATED, POSSIBLE, HYPOTHETICAL, CONDITIONAL, FAMILY, HISTORICAL, PSEUDO, TERMINATE}
)
DIRECTIONS: frozenset[str] = frozenset({"FORWARD", "BACKWARD", "BIDIRECTIONAL", "TARGET", "TERMINATE", "PSEUDO"})
# TARGET: the cue qualifies the target it is part of (or overlaps) and nothing else, e.g.
# "tobacco use" is a social-history item, historical by the kit's convention.
TARGET_DIRECTION = "TARGET"

# Categories that decide the assertion label (HISTORICAL is a separate flag).
CATEGORY_LABEL: Mapping[str, str] = {
    FAMILY: "associated_with_someone_else",
    HYPOTHETICAL: "hypothetical",
    CONDITIONAL: "conditional",
    NEGATED: "absent",
    POSSIBLE: "possible",
}
LABEL_CATEGORY: Mapping[str, str] = {label: cat for cat, label in CATEGORY_LABEL.items()}
LABEL_PRECEDENCE: tuple[str, ...] = (
    "associated_with_someone_else",
    "hypothetical",
    "conditional",
    "absent",
    "possible",
    "present",
)
# Cues that end another category's scope besides TERMINATE rules: negation and
# uncertainty are exclusive readings of one clause ("no effusion, likely atelectasis").
CUT_BY: Mapping[str, frozenset[str]] = {
    NEGATED: frozenset({POSSIBLE}),
    POSSIBLE: frozenset({NEGATED}),
}

HISTORICAL_DEFAULT = "historical"
SECTION_DEFAULT_VALUES: frozenset[str] = frozenset(set(ASSERTION_LABELS) - {"present"} | {HISTORICAL_DEFAULT})

# Deliberately conservative, ordered by the strength of the evidence: a matched cue, a
# section heading, no cue at all. On the NegEx kit's train split cue decisions and
# default-'present' decisions both agree with gold ~99% of the time, but the kit cannot
# see possible/hypothetical/conditional errors, so it overstates reliability.
DEFAULT_RULE_CONFIDENCE = 0.9
SECTION_DEFAULT_CONFIDENCE = 0.85
PRESENT_PRIOR = 0.8

_RULE_KEYS: frozenset[str] = frozenset(
    {"literal", "pattern", "category", "direction", "max_scope", "confidence", "terminates"}
)
_REQUIRED_KEYS: tuple[str, ...] = ("literal", "category", "direction")
_FILE_KEYS: frozenset[str] = frozenset({"version", "rules"})
RULE_FILE_VERSION = 1
# Direction a TERMINATE / PSEUDO rule must carry (they have no scope of their own).
_FIXED_DIRECTION: Mapping[str, str] = {TERMINATE: "TERMINATE", PSEUDO: "PSEUDO"}

DEFAULT_RULES_PATH = package_resource("conf/context_rules.yaml")



class RuleError(ValueError):
    """A context rule (or rule file) is malformed; the message names the rule index and key."""


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextRule:
    """One lexicon entry. ``literal`` names the cue (and matches it unless ``pattern`` is set)."""

    literal: str
    category: str
    direction: str
    pattern: str | None = None
    max_scope: int | None = None
    confidence: float = DEFAULT_RULE_CONFIDENCE
    # TERMINATE only: the categories whose scopes this cue ends (None = all of them).
    terminates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _validate_rule(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int | None = None) -> "ContextRule":
        """Build a rule from a YAML mapping; unknown keys and values raise ``RuleError``."""
        where = _rule_where(index)
        if not isinstance(data, Mapping):
            raise RuleError(f"{where}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - _RULE_KEYS)
        if unknown:
            raise RuleError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_RULE_KEYS))})")
        category = data.get("category")
        fixed = _FIXED_DIRECTION.get(category) if isinstance(category, str) else None
        direction = data.get("direction", fixed)
        for key in _REQUIRED_KEYS:
            if (direction if key == "direction" else data.get(key)) is None:
                raise RuleError(f"{where}: missing required key {key!r}")
        try:
            return cls(
                literal=data["literal"],
                category=category,
                direction=direction,
                pattern=data.get("pattern"),
                max_scope=data.get("max_scope"),
                confidence=data.get("confidence", DEFAULT_RULE_CONFIDENCE),
                terminates=_as_tuple(data.get("terminates")),
            )
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from None


def _as_tuple(value: Any) -> Any:
    # YAML gives lists; the frozen rule wants something hashable. Anything else is
    # passed through so validation can name the key.
    return tuple(value) if isinstance(value, list) else value


def _rule_where(index: int | None) -> str:
    return "rule" if index is None else f"rule #{index}"


def _validate_rule(rule: ContextRule) -> None:
    """Type/value checks shared by direct construction and ``from_dict``."""
    if not isinstance(rule.literal, str) or not WORD_PIECE.search(rule.literal):
        # YAML 1.1 reads bare no/yes/on/off as booleans, hence the hint.
        raise RuleError("key 'literal' must be a non-empty string (quote words like 'no' in YAML)")
    if rule.category not in CATEGORIES:
        raise RuleError(_unknown_value("category", rule.category, CATEGORIES))
    if rule.direction not in DIRECTIONS:
        raise RuleError(_unknown_value("direction", rule.direction, DIRECTIONS))
    fixed = _FIXED_DIRECTION.get(rule.category)
    if fixed is not None and rule.direction != fixed:
        raise RuleError(f"key 'direction' must be {fixed!r} for category {rule.category!r}")
    if fixed is None and rule.direction in _FIXED_DIRECTION.values():
        raise RuleError(f"key 'direction' {rule.direction!r} is only valid for category {rule.direction!r}")
    if rule.max_scope is not None and not is_positive_int(rule.max_scope):
        raise RuleError("key 'max_scope' must be a positive integer")
    if not _is_number(rule.confidence) or not 0.0 <= rule.confidence <= 1.0:
        raise RuleError("key 'confidence' must be a number in [0, 1]")
    if rule.pattern is not None:
        _validate_pattern(rule)
    if rule.terminates is not None:
        _validate_terminates(rule)


def _unknown_value(key: str, value: Any, allowed: Iterable[str]) -> str:
    return f"key {key!r} has unknown value {value!r} (allowed: {', '.join(sorted(allowed))})"


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_terminates(rule: ContextRule) -> None:
    if rule.category != TERMINATE:
        raise RuleError("key 'terminates' is only valid for category 'TERMINATE'")
    scoped = sorted(CATEGORIES - {PSEUDO, TERMINATE})
    if not isinstance(rule.terminates, tuple) or not rule.terminates:
        raise RuleError("key 'terminates' must be a non-empty list of categories")
    for category in rule.terminates:
        if category not in scoped:
            raise RuleError(_unknown_value("terminates", category, scoped))


def _validate_pattern(rule: ContextRule) -> None:
    if not isinstance(rule.pattern, str) or not rule.pattern:
        raise RuleError("key 'pattern' must be a non-empty string")
    try:
        compiled = re.compile(rule.pattern)
    except re.error as exc:
        raise RuleError(f"key 'pattern' is not a valid regex ({exc})") from None
    # The literal documents what the pattern is for; a pattern that cannot even match
    # its own literal is almost certainly a typo.
    if compiled.search(_normalise_spacing(rule.literal.lower())) is None:
        raise RuleError("key 'pattern' does not match its own literal")


def _normalise_spacing(text: str) -> str:
    return " ".join(text.split())


def load_rules(path: str | Path) -> list[ContextRule]:
    """Read a rule file: a mapping ``{version: 1, rules: [...]}`` or a bare list of rules."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - _FILE_KEYS)
        if unknown:
            raise RuleError(f"rule file: unknown top-level key {unknown[0]!r} (allowed: version, rules)")
        if data.get("version", RULE_FILE_VERSION) != RULE_FILE_VERSION:
            version = data["version"]
            raise RuleError(f"rule file: unsupported version {version!r} (expected {RULE_FILE_VERSION})")
        data = data.get("rules")
    if not isinstance(data, list) or not data:
        raise RuleError("rule file: expected a non-empty list of rules under 'rules'")
    rules = [ContextRule.from_dict(item, index) for index, item in enumerate(data)]
    reject_duplicates(rules)
    return rules


def reject_duplicates(rules: Sequence[ContextRule]) -> None:
    # Two rules with the same match text can never both fire; the later one is dead.
    seen: dict[tuple[str, ...] | str, int] = {}
    for index, rule in enumerate(rules):
        key = rule.pattern if rule.pattern is not None else rule_pieces(rule.literal)
        if key in seen:
            raise RuleError(f"rule #{index}: key 'literal' duplicates rule #{seen[key]}")
        seen[key] = index


def rule_pieces(text: str) -> tuple[str, ...]:
    return tuple(WORD_PIECE.findall(text.lower()))

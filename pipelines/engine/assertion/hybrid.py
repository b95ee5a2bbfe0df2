"""The rules+model hybrid assertion engine: ConText rules and the CNN, attribute by attribute.

Which engine answers which attribute is a :class:`HybridPolicy`, stored with the model
(``hybrid.json``) after being chosen by cross-validation on the NegEx kit's train+devel
(``clinlake evaluate assertion-cv``, ``clinlake train assertion --policy-from-cv``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.assertion.model import HYBRID_FILE, AssertionModel, ModelAnswer, model_label
from clinlake.pipelines.engine.assertion.rules import HISTORICAL_DEFAULT
from clinlake.pipelines.engine.types import AssertionResult, Sentence


SOURCES = ("rules", "model", "either")
ATTRIBUTES = ("negation", "possible", "historical", "not_particular", "other")


@dataclass(frozen=True)
class HybridPolicy:
    """Which engine answers each attribute.

    ``rules`` / ``model``: that engine alone; ``either``: true when either engine says so
    (a union; for negation, the model is heard only where no rule cue decided the label -
    pseudo-triggers and terminators leave no cue, so a negation union can override them,
    which is why the shipped policy takes negation from the rules). The defaults are the
    shipped ``hybrid.json``.

    ``historical_threshold``: where the historical flag heeds the model, the model says historical
    when its probability of the class is above this; ``None``, when historical is its most probable
    temporality class (as the model engine alone decides).
    """

    negation: str = "rules"
    possible: str = "rules"
    historical: str = "either"
    not_particular: str = "rules"
    other: str = "rules"
    historical_threshold: float | None = None

    def __post_init__(self) -> None:
        for key in ATTRIBUTES:
            value = getattr(self, key)
            if value not in SOURCES:
                raise ValueError(f"hybrid policy {key!r} has unknown value {value!r} (allowed: {', '.join(SOURCES)})")
        threshold = self.historical_threshold
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 < threshold < 1.0):
            raise ValueError(f"hybrid policy 'historical_threshold' must be a probability between 0 and 1 "
                             f"(exclusive) or null, not {threshold!r}")

    @classmethod
    def from_file(cls, path: str | Path) -> "HybridPolicy":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        policy = data.get("policy", data)
        unknown = sorted(set(policy) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{Path(path).name}: unknown hybrid policy key {unknown[0]!r}")
        return cls(**policy)


def _rule_flags(result: AssertionResult) -> dict[str, bool]:
    return {
        "negation": result.assertion == "absent",
        "possible": result.assertion == "possible",
        "historical": result.is_historical,
        "not_particular": result.assertion in ("hypothetical", "conditional"),
        "other": result.assertion == "associated_with_someone_else",
    }


def _model_flags(answer: ModelAnswer, historical_threshold: float | None = None) -> dict[str, bool]:
    return {
        "negation": answer.negated > 0.5,
        "possible": answer.possible > 0.5,
        "historical": answer.is_historical if historical_threshold is None else answer.historical > historical_threshold,
        "not_particular": answer.is_not_particular,
        "other": answer.other > 0.5,
    }


@lru_cache(maxsize=16)
def _sources(policy: HybridPolicy) -> tuple[tuple[str, str], ...]:
    """(attribute, source) pairs of a policy, made once per policy (building them per entity was slow)."""
    return tuple((key, getattr(policy, key)) for key in ATTRIBUTES)


def needs_model(rule: AssertionResult, policy: HybridPolicy) -> bool:
    """Whether the model's answer can change :func:`combine`'s result for this rule result: an
    attribute the policy takes from the model, or a union (``either``) the rules have not already
    made true. When it cannot, :func:`combine` returns the rules' result as it is, so the model is
    not run for that target (under the shipped policy: targets the rules already call historical)."""
    flags = _rule_flags(rule)
    return any(source == "model" or (source == "either" and not flags[key]) for key, source in _sources(policy))


def combine(rule: AssertionResult, answer: ModelAnswer, policy: HybridPolicy, *,
            section_historical: bool = False) -> AssertionResult:
    """One hybrid decision from the rules' result and the model's answer. ``section_historical``: the
    target's section makes it historical by default (the model cannot see sections, so a policy taking
    the historical flag from the model alone keeps it, as the model engine alone does)."""
    rules_flags, model_flags = _rule_flags(rule), _model_flags(answer, policy.historical_threshold)
    if section_historical:
        model_flags["historical"] = True
    rule_decided = rule.cue is not None and rule.cue_category != "HISTORICAL"
    flags = {}
    for key, source in _sources(policy):
        if source == "rules":
            flags[key] = rules_flags[key]
        elif source == "model":
            flags[key] = model_flags[key]
        elif key == "negation":
            flags[key] = rules_flags[key] or (not rule_decided and model_flags[key])
        else:
            flags[key] = rules_flags[key] or model_flags[key]
    if flags["other"]:
        label = "associated_with_someone_else"
    elif flags["not_particular"]:
        label = rule.assertion if rule.assertion in ("hypothetical", "conditional") else "hypothetical"
    elif flags["negation"]:
        label = "absent"
    elif flags["possible"]:
        label = "possible"
    else:
        label = "present"
    historical = flags["historical"]
    if label == rule.assertion:
        # The rules agree: keep their cue and confidence, except the cue of a HISTORICAL
        # trigger behind a 'present' the model has overruled on the historical flag.
        if rule.cue_category == "HISTORICAL" and rule.is_historical != historical:
            return AssertionResult(label, historical, rule.confidence)
        return AssertionResult(label, historical, rule.confidence, rule.cue, rule.cue_start, rule.cue_end,
                               rule.cue_category)
    model_result = model_label(answer)
    confidence = model_result.confidence if label == model_result.assertion else 0.5
    return AssertionResult(label, historical, confidence)


class HybridAssertion:
    """Rules and model together, attribute by attribute (see :class:`HybridPolicy`)."""

    def __init__(self, rules: ContextAssertion, model: AssertionModel, policy: HybridPolicy | None = None) -> None:
        self.rules = rules
        self.model = model
        if policy is None:
            hybrid_file = model.model_dir / HYBRID_FILE
            policy = HybridPolicy.from_file(hybrid_file) if hybrid_file.is_file() else HybridPolicy()
        self.policy = policy

    def assess(
        self, text: str, sentence: Sentence, targets: Sequence[tuple[int, int]], section: str | None = None
    ) -> list[AssertionResult]:
        return self.assess_many(text, [(sentence, targets, section)])[0]

    def assess_many(self, text: str, groups: Sequence[tuple[Sentence, Sequence[tuple[int, int]], str | None]]
                    ) -> list[list[AssertionResult]]:
        """:meth:`assess` of each (sentence, targets, section) group of one note: the rules
        group by group, then the model at once on the targets whose result it can change
        (:func:`needs_model`); the others keep the rules' result, as :func:`combine` would."""
        cues = None
        if self.model.reads_cues:  # the model reads the rules' cues: one analysis serves both
            rule_results, cues = self.rules.assess_many_with_cues(text, groups)
        else:
            rule_results = self.rules.assess_many(text, groups)
        asked = [[needs_model(r, self.policy) for r in rules] for rules in rule_results]
        answers = iter(self.model.answers_many(text, [
            ((s.start, s.end), _asked(targets, flags)) for (s, targets, _), flags in zip(groups, asked, strict=True)],
            None if cues is None else [_asked(group_cues, flags) for group_cues, flags in zip(cues, asked)]))
        results = []
        for (_, _, section), rules, flags in zip(groups, rule_results, asked):
            model = iter(next(answers))
            section_historical = section is not None and self.rules.section_defaults.get(section) == HISTORICAL_DEFAULT
            results.append([combine(r, next(model), self.policy, section_historical=section_historical) if ask else r
                            for r, ask in zip(rules, flags)])
        return results


def _asked(items: Sequence, flags: Sequence[bool]) -> list:
    """The items (targets, or their cues) whose flag says the model is asked about them."""
    return [item for item, ask in zip(items, flags, strict=True) if ask]

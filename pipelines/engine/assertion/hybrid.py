"""The rules+model hybrid assertion engine: ConText rules and the CNN, attribute by attribute.

Which engine answers which attribute is a :class:`HybridPolicy`, stored with the model
(``hybrid.json``) after being chosen by cross-validation on the NegEx kit's train+devel
(``clinlake evaluate assertion-cv``, ``clinlake train assertion --policy-from-cv``).

A policy may take the not-particular flag from a second, cue-reading network (``cue_model``):
one trained on the rules' cues as well as the words, asked only about targets whose sentence holds
a hypothetical or conditional cue (:func:`needs_cue_model`), so it costs little. It is not the main
network because reading cues lowers that network's historical F1. The shipped policy asks one
(models/assertion_cues) about PROBLEM entities only (``cue_model_labels``): asked about every entity,
it undid the rules' hypothetical on planned procedures, which its training data never marks
(README, "Assertion engines").
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

from clinlake.pipelines.engine.assertion.context import ContextAssertion, Cue
from clinlake.pipelines.engine.assertion.model import HYBRID_FILE, AssertionModel, ModelAnswer, model_label
from clinlake.pipelines.engine.assertion.rules import HISTORICAL_DEFAULT
from clinlake.pipelines.engine.types import AssertionResult, Sentence


SOURCES = ("rules", "model", "either")
CUE_MODEL = "cue_model"  # a source of the not-particular flag alone (see the module doc)
ATTRIBUTES = ("negation", "possible", "historical", "not_particular", "other")
# the rule categories whose cue in a target's sentence has the cue model asked about that target
CUE_MODEL_CATEGORIES = frozenset({"HYPOTHETICAL", "CONDITIONAL"})
CUE_MODEL_DIR_KEY = "cue_model_dir"  # hybrid.json: the cue model's directory, relative to the model's

Source = Literal["rules", "model", "either", "cue_model"]


class HybridPolicyError(ValueError):
    """A hybrid policy that names an unknown source, or one the engine cannot serve."""


@dataclass(frozen=True)
class HybridPolicy:
    """Which engine answers each attribute.

    ``rules`` / ``model``: that engine alone; ``either``: true when either engine says so
    (a union; for negation, the model is heard only where no rule cue decided the label -
    pseudo-triggers and terminators leave no cue, so a negation union can override them,
    which is why the shipped policy takes negation from the rules). The defaults are the
    shipped ``hybrid.json``. ``not_particular`` may also be ``cue_model``: the cue-reading network's
    flag where it is asked (:func:`needs_cue_model`), the rules' elsewhere.

    ``historical_threshold``: where the historical flag heeds the model, the model says historical
    when its probability of the class is above this; ``None``, when historical is its most probable
    temporality class (as the model engine alone decides).

    ``cue_model_labels``: the NER labels of the entities the cue model may be asked about (``None``:
    any). A cue model learns only from the kinds of targets its data marks (the kit's are all problems),
    so it is kept off the others; a target without a label (the kit's gold spans) is asked.
    """

    negation: Source = "rules"
    possible: Source = "rules"
    historical: Source = "either"
    not_particular: Source = "rules"
    other: Source = "rules"
    historical_threshold: float | None = None
    cue_model_labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for key in ATTRIBUTES:
            value = getattr(self, key)
            allowed = (*SOURCES, CUE_MODEL) if key == "not_particular" else SOURCES
            if value not in allowed:
                raise HybridPolicyError(f"hybrid policy {key!r} has unknown value {value!r} "
                                        f"(allowed: {', '.join(allowed)})")
        labels = self.cue_model_labels
        if labels is not None:
            if isinstance(labels, str) or not labels or not all(isinstance(label, str) and label for label in labels):
                raise HybridPolicyError(f"hybrid policy 'cue_model_labels' must be a non-empty list of NER labels "
                                        f"or null, not {labels!r}")
            if not self.asks_cue_model:
                raise HybridPolicyError("hybrid policy 'cue_model_labels' is set but no attribute is taken from "
                                        "the cue model (not_particular: cue_model)")
            object.__setattr__(self, "cue_model_labels", tuple(labels))  # JSON gives a list; the policy is hashed
        threshold = self.historical_threshold
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 < threshold < 1.0):
            raise HybridPolicyError(f"hybrid policy 'historical_threshold' must be a probability between 0 and 1 "
                                    f"(exclusive) or null, not {threshold!r}")

    @classmethod
    def from_file(cls, path: str | Path) -> "HybridPolicy":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        policy = data.get("policy", data)
        unknown = sorted(set(policy) - set(cls.__dataclass_fields__))
        if unknown:
            raise HybridPolicyError(f"{Path(path).name}: unknown hybrid policy key {unknown[0]!r}")
        return cls(**policy)

    @property
    def asks_cue_model(self) -> bool:
        return self.not_particular == CUE_MODEL


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


def has_not_particular_cue(cues: Sequence[Cue]) -> bool:
    """Whether a target's sentence holds a hypothetical or conditional cue of the rules (whether or not
    its scope reaches the target): the targets a cue model is asked about. Elsewhere the rules' flag
    stands: in cross-validation the cue model never called a target not-particular without such a cue."""
    return any(cue.category in CUE_MODEL_CATEGORIES for cue in cues)


def needs_cue_model(cues: Sequence[Cue], policy: HybridPolicy, label: str | None = None) -> bool:
    """Whether the cue model is asked about a target, given the rules' cues of its sentence and its NER
    ``label`` (None where it has none): where the policy takes the not-particular flag from the cue model,
    allows the label (``cue_model_labels``) and :func:`has_not_particular_cue`."""
    return (policy.asks_cue_model
            and (label is None or policy.cue_model_labels is None or label in policy.cue_model_labels)
            and has_not_particular_cue(cues))


def combine(rule: AssertionResult, answer: ModelAnswer | None, policy: HybridPolicy, *,
            section_historical: bool = False, cue_answer: ModelAnswer | None = None) -> AssertionResult:
    """One hybrid decision from the rules' result and the model's answer. ``section_historical``: the
    target's section makes it historical by default (the model cannot see sections, so a policy taking
    the historical flag from the model alone keeps it, as the model engine alone does). ``answer`` is
    None where the model was not asked (:func:`needs_model`: it could not change the result);
    ``cue_answer``, the cue model's, None where it was not asked (:func:`needs_cue_model`)."""
    rules_flags = _rule_flags(rule)
    model_flags = rules_flags if answer is None else _model_flags(answer, policy.historical_threshold)
    if section_historical and answer is not None:
        model_flags["historical"] = True
    rule_decided = rule.cue is not None and rule.cue_category != "HISTORICAL"
    flags = {}
    for key, source in _sources(policy):
        if source == "rules":
            flags[key] = rules_flags[key]
        elif source == CUE_MODEL:
            flags[key] = rules_flags[key] if cue_answer is None else cue_answer.is_not_particular
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
    return AssertionResult(label, historical, _confidence(label, rule, answer, cue_answer))


def _confidence(label: str, rule: AssertionResult, answer: ModelAnswer | None, cue_answer: ModelAnswer | None) -> float:
    """The confidence of a label the rules did not give: the cue model's where its not-particular flag
    made or unmade it, else the model's where its own label agrees, else 0.5."""
    rules_not_particular = rule.assertion in ("hypothetical", "conditional")
    if cue_answer is not None and (label == "hypothetical") != rules_not_particular:
        return cue_answer.not_particular if label == "hypothetical" else 1.0 - cue_answer.not_particular
    if answer is not None:
        model_result = model_label(answer)
        if label == model_result.assertion:
            return model_result.confidence
    return 0.5


class HybridAssertion:
    """Rules and model together, attribute by attribute (see :class:`HybridPolicy`); ``cue_model``, the
    cue-reading network of a policy that takes the not-particular flag from one."""

    def __init__(self, rules: ContextAssertion, model: AssertionModel, policy: HybridPolicy | None = None, *,
                 cue_model: AssertionModel | None = None) -> None:
        self.rules = rules
        self.model = model
        if policy is None:  # the model's own policy, and the cue model hybrid.json names with it
            hybrid_file = model.model_dir / HYBRID_FILE
            policy = HybridPolicy.from_file(hybrid_file) if hybrid_file.is_file() else HybridPolicy()
            if policy.asks_cue_model and cue_model is None:
                cue_model = _cue_model_of(hybrid_file)
        if policy.asks_cue_model and (cue_model is None or not cue_model.reads_cues):
            raise HybridPolicyError("the hybrid policy takes the not-particular flag from a cue-reading model "
                                    "(cue_model) but none was given" if cue_model is None else
                                    f"the cue model {cue_model.model_dir} does not read the rules' cues")
        self.policy = policy
        self.cue_model = cue_model if policy.asks_cue_model else None

    def assess(
        self, text: str, sentence: Sentence, targets: Sequence[tuple[int, int]], section: str | None = None
    ) -> list[AssertionResult]:
        return self.assess_many(text, [(sentence, targets, section)])[0]

    def assess_many(self, text: str, groups: Sequence[tuple[Sentence, Sequence[tuple[int, int]], str | None]], *,
                    labels: Sequence[Sequence[str | None]] | None = None) -> list[list[AssertionResult]]:
        """:meth:`assess` of each (sentence, targets, section) group of one note: the rules
        group by group, then the model at once on the targets whose result it can change
        (:func:`needs_model`), and the cue model on those it is asked about (:func:`needs_cue_model`,
        which heeds the targets' NER ``labels``, one sequence per group, where given);
        a target neither is asked about keeps the rules' result, as :func:`combine` would."""
        cues = None
        if self.model.reads_cues or self.cue_model is not None:  # one analysis serves rules and networks
            rule_results, cues = self.rules.assess_many_with_cues(text, groups)
        else:
            rule_results = self.rules.assess_many(text, groups)
        asked = [[needs_model(r, self.policy) for r in rules] for rules in rule_results]
        answers = self._answers(self.model, text, groups, asked, cues if self.model.reads_cues else None)
        if cues is None:
            cue_asked = [[False] * len(rules) for rules in rule_results]
        else:
            group_labels = labels if labels is not None else [[None] * len(group_cues) for group_cues in cues]
            cue_asked = [[needs_cue_model(c, self.policy, label) for c, label in zip(group_cues, target_labels, strict=True)]
                         for group_cues, target_labels in zip(cues, group_labels, strict=True)]
        cue_answers = self._answers(self.cue_model, text, groups, cue_asked, cues)
        results = []
        for (_, _, section), rules, flags, cue_flags, model, cue_model in zip(
                groups, rule_results, asked, cue_asked, answers, cue_answers, strict=True):
            section_historical = section is not None and self.rules.section_defaults.get(section) == HISTORICAL_DEFAULT
            model, cue_model = iter(model), iter(cue_model)
            results.append([combine(r, next(model) if ask else None, self.policy, section_historical=section_historical,
                                    cue_answer=next(cue_model) if cue_ask else None) if ask or cue_ask else r
                            for r, ask, cue_ask in zip(rules, flags, cue_flags)])
        return results

    @staticmethod
    def _answers(model: AssertionModel | None, text: str, groups, asked: list[list[bool]],
                 cues: list | None) -> list[list[ModelAnswer]]:
        """A network's answers per group, for the asked targets only (one call for the note)."""
        if model is None or not any(map(any, asked)):
            return [[] for _ in groups]
        return model.answers_many(text, [((s.start, s.end), _asked(targets, flags))
                                         for (s, targets, _), flags in zip(groups, asked, strict=True)],
                                  None if cues is None else [_asked(c, flags) for c, flags in zip(cues, asked)])


def cue_model_dir(model_dir: Path) -> Path | None:
    """The cue model's directory the model's hybrid.json names (``cue_model_dir``, relative to the
    model's directory), or None."""
    hybrid_file = Path(model_dir) / HYBRID_FILE
    if not hybrid_file.is_file():
        return None
    directory = json.loads(hybrid_file.read_text(encoding="utf-8")).get(CUE_MODEL_DIR_KEY)
    return None if directory is None else (hybrid_file.parent / directory).resolve()


def _cue_model_of(hybrid_file: Path) -> AssertionModel | None:
    directory = cue_model_dir(hybrid_file.parent)
    return None if directory is None else AssertionModel(directory)


def _asked(items: Sequence, flags: Sequence[bool]) -> list:
    """The items (targets, or their cues) whose flag says the model is asked about them."""
    return [item for item, ask in zip(items, flags, strict=True) if ask]

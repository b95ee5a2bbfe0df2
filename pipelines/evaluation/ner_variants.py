"""Document-level post-processing variants of one tagger's output, scored on the same predictions.

Cross-validation (:mod:`pipelines.training.ner.cv`) trains one network per fold and scores every
variant here on that fold's held-out predictions, so two variants differ only in their
post-processing and their paired difference carries no training noise. A variant maps the
tagger's tags (and confidences) of consecutive sentences to new tags:

* ``network``: the tagger alone, sentence by sentence;
* every combination of the NER stage's four steps, named by the steps it runs joined with ``+``
  in the stage's order (:data:`STEP_ORDER`), e.g. ``abbreviations+consistency+gazetteer``:

  - ``abbreviations``: abbreviation propagation (:mod:`pipelines.engine.short_forms`) reaching
    ``abbreviation_reach`` sentences (the built-in default, so the paired gains are against it);
  - ``binomials``: abbreviated binomials (:mod:`pipelines.engine.binomials`) over the same reach;
  - ``consistency``: the label consistency vote (:mod:`pipelines.engine.consistency`) over
    ``consistency_reach`` neighbouring sentences (default :data:`CONSISTENCY_REACH`), a tagged occurrence's vote weighted by
    ``Tagged.consistency_weight`` (the model's, as its stage runs it);
  - ``gazetteer``: the matches of a gazetteer learned from the tagger's own training examples
    (:mod:`pipelines.training.ner.gazetteer`) where no entity overlaps them (scored only when a
    gazetteer is given).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from clinlake.pipelines.engine.gazetteer import FILE as GAZETTEER_FILE, Term, read_gazetteer
from clinlake.pipelines.engine.ner.metadata import (CONSISTENCY_WEIGHT, ModelMeta, ModelMetaError,
                                                    consistency_entity_weight, document_level_defaults)
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH, iob_tags, post_processed, score_tags, spans
from clinlake.pipelines.training.ner.gazetteer import with_gazetteer

CONSISTENCY_REACH = 10  # sentences either side a vote reaches in a CoNLL file (the devel figures' N)
CONLL_REACH = "conll_reach"  # model.json document_level key: a model's own windows, where its documents are longer
DEFAULT = "abbreviations"  # the built-in default of the stage's post-processing
STEP_ORDER = ("abbreviations", "binomials", "consistency", "gazetteer")  # the order the NER stage runs them in
# model.json document_level key (the stage's option) → the step's name here
VARIANT_STEP = {"propagate_abbreviations": "abbreviations", "binomial_short_forms": "binomials",
                "label_consistency": "consistency", "gazetteer": "gazetteer"}


@dataclass(frozen=True)
class Tagged:
    """A tagger's output on consecutive sentences of one corpus."""
    tokens: Sequence[Sequence[str]]
    tags: Sequence[Sequence[str]]
    confidence: Sequence[Sequence[float]]  # posterior of each chosen tag, O included
    abbreviation_reach: int | None = ABBREVIATION_REACH
    gazetteer: Mapping[tuple[str, ...], Term] | None = None  # learned from the tagger's training examples
    consistency_weight: float = 1.0  # the vote's weight on a tagged occurrence (model.json document_level)
    consistency_reach: int = CONSISTENCY_REACH  # sentences either side the vote reaches


@dataclass(frozen=True)
class ConllReach:
    """How many neighbouring sentences stand in for a note in a CoNLL file, which marks no documents:
    an abbreviation definition or a binomial reaches ``abbreviations`` sentences after its own, the
    label consistency vote ``consistency`` either side. The pipeline's stage needs none of this (a
    note is the document); evaluation and CV use the model's (model.json ``document_level.conll_reach``),
    so a corpus of long full-text articles can declare a window near its document length."""
    abbreviations: int = ABBREVIATION_REACH
    consistency: int = CONSISTENCY_REACH

    @classmethod
    def of_meta(cls, meta: Mapping) -> "ConllReach":
        given = (meta.get("document_level") or {}).get(CONLL_REACH)
        if given is None:
            return cls()
        if not isinstance(given, Mapping) or not set(given) <= {"abbreviations", "consistency"} or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in given.values()):
            raise ModelMetaError(f"model.json document_level.{CONLL_REACH} must map 'abbreviations' and/or "
                                 f"'consistency' to a number of sentences (0 or more), got {given!r}")
        return cls(**given)

    def is_default(self) -> bool:
        return self == ConllReach()

    def record(self) -> dict[str, int]:
        return {"abbreviations": self.abbreviations, "consistency": self.consistency}


def variant_name(steps: Iterable[str]) -> str:
    """The name of the variant running ``steps`` (``network`` for none)."""
    chosen = set(steps)
    unknown = chosen - set(STEP_ORDER)
    if unknown:
        raise UnknownVariantError(f"unknown steps {sorted(unknown)}; known: {list(STEP_ORDER)}")
    return "+".join(step for step in STEP_ORDER if step in chosen) or "network"


def _variant(steps: frozenset[str]) -> Callable[[Tagged], list[list[str]]]:
    def variant(tagged: Tagged) -> list[list[str]]:
        tags = post_processed(tagged.tokens, tagged.tags, tagged.confidence,
                              abbreviation_reach=tagged.abbreviation_reach,
                              abbreviations="abbreviations" in steps, binomials="binomials" in steps,
                              consistency_reach=tagged.consistency_reach if "consistency" in steps else None,
                              consistency_weight=tagged.consistency_weight)
        if "gazetteer" not in steps:
            return tags
        added = with_gazetteer(tagged.tokens, [spans(t) for t in tags], tagged.gazetteer or {})
        return [iob_tags(len(t), found) for t, found in zip(tagged.tokens, added)]
    return variant


VARIANTS: dict[str, Callable[[Tagged], list[list[str]]]] = {
    variant_name(steps): _variant(frozenset(steps))
    for size in range(len(STEP_ORDER) + 1) for steps in itertools.combinations(STEP_ORDER, size)}
NEEDS_GAZETTEER = {name for name in VARIANTS if "gazetteer" in name.split("+")}


class UnknownVariantError(KeyError):
    """A variant name that :data:`VARIANTS` does not hold."""


def score_variants(tagged: Tagged, gold: Sequence[Sequence[str]], names: Sequence[str] | None = None) -> dict[str, dict]:
    """Strict overall precision, recall and F1 of each variant (by default all of :data:`VARIANTS`
    that ``tagged`` has what they need for)."""
    chosen = [n for n in VARIANTS if tagged.gazetteer is not None or n not in NEEDS_GAZETTEER] \
        if names is None else list(names)
    unknown = [n for n in chosen if n not in VARIANTS]
    if unknown:
        raise UnknownVariantError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    out = {}
    for name in chosen:
        overall = score_tags(gold, VARIANTS[name](tagged))["overall"]
        out[name] = {key: overall[key] for key in ("f1", "precision", "recall")}
    return out


def stage_variant(model_meta: Mapping) -> str:
    """The variant a model's NER stage runs by default: its model.json ``document_level`` choice, the
    built-in default for any step it does not name (abbreviations only where it names none)."""
    return variant_name(VARIANT_STEP[step] for step, on in document_level_defaults(model_meta).items() if on)


@dataclass(frozen=True)
class StageSteps:
    """The document-level steps a model's NER stage runs by default, as a post-processing of its tags
    on consecutive sentences of a CoNLL file (for ``evaluate_model(..., stage_steps=)``): the same
    variant the CV scores, with the model's vote weight and the gazetteer it ships. A CoNLL file
    marks no documents, so the model's declared windows stand in for the note (:class:`ConllReach`)."""
    name: str
    consistency_weight: float
    gazetteer: Mapping[tuple[str, ...], Term] | None
    gazetteer_learned_from: str | None  # a gazetteer learned from the file scored knows its answers
    reach: ConllReach = ConllReach()

    @classmethod
    def of_model(cls, model_dir: Path) -> "StageSteps":
        meta = ModelMeta.load(model_dir).raw
        name = stage_variant(meta)
        shipped = "gazetteer" in name.split("+")
        return cls(name=name, consistency_weight=consistency_entity_weight(meta),
                   gazetteer=read_gazetteer(model_dir / GAZETTEER_FILE) if shipped else None,
                   gazetteer_learned_from=(meta.get("gazetteer") or {}).get("learned_from") if shipped else None,
                   reach=ConllReach.of_meta(meta))

    @property
    def record(self) -> dict:
        return {"steps": self.name, "abbreviation_reach": self.reach.abbreviations,
                "consistency_reach": self.reach.consistency,
                CONSISTENCY_WEIGHT: self.consistency_weight, "gazetteer_terms": len(self.gazetteer or {}),
                "gazetteer_learned_from": self.gazetteer_learned_from}

    def __call__(self, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                 confidence: Sequence[Sequence[float]]) -> list[list[str]]:
        return VARIANTS[self.name](Tagged(tokens=tokens, tags=tags, confidence=confidence, gazetteer=self.gazetteer,
                                          consistency_weight=self.consistency_weight,
                                          abbreviation_reach=self.reach.abbreviations,
                                          consistency_reach=self.reach.consistency))

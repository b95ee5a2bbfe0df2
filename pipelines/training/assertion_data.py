"""The assertion classifier's training rows (:class:`Example`): the NegEx kit, MACCROBAT and Chia
(train splits only), read into targets in their sentences with per-head labels, :data:`IGNORE` where
a source says nothing about a head. Used by ``clinlake train assertion`` and ``clinlake evaluate
assertion-cv`` (:mod:`~clinlake.pipelines.training.assertion`, :mod:`~clinlake.pipelines.training.assertion_cv`).

* the NegEx kit's ``negex_kit_train.tsv``: negation, temporality and experiencer for one
  phrase per sentence (certainty is not annotated there and is masked out of the loss);
* MACCROBAT ``train/`` (BRAT): every event trigger of a finding-like type
  (:data:`~clinlake.pipelines.corpora.label_maps.MACCROBAT_FINDING_TYPES`) becomes a target in its
  sentence (our own sentence splitter); the event's ``POLARITY`` gives negation (``NEG``) and certainty
  (``UNCERTAIN``); ``MAYBE_*`` values are masked. With ``with_history`` a trigger inside a ``History``
  span is labelled historical (else recent) and one inside a ``Family_history`` span gets the
  experiencer ``other`` (else patient); otherwise those heads are masked for MACCROBAT rows;
* Chia ``train/`` (BRAT, trial eligibility criteria): see :func:`chia_examples`;
* PHEE ``train.json`` (drug-safety case report sentences): see :func:`phee_examples`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

from clinlake.pipelines.corpora.brat import parse_ann, read_text_exact
from clinlake.pipelines.corpora.label_maps import MACCROBAT_FINDING_TYPES
from clinlake.pipelines.corpora.negex_kit import locate_phrase, read_kit
from clinlake.pipelines.engine.assertion.context import ContextAssertion, Cue
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.evaluation.assertion_kit import span_sentence
from clinlake.pipelines.resources import shared_data

IGNORE = -1

KIT_NEGATION = {"Affirmed": 0, "Negated": 1}
KIT_TEMPORALITY = {"Recent": 0, "Historical": 1, "Not particular": 2}


def kit_path(split: str, *, shared: Path | None = None) -> Path:
    """The NegEx kit's ``negex_kit_<split>.tsv`` under the shared data folder (default
    :func:`~clinlake.pipelines.resources.shared_data`)."""
    return (shared_data() if shared is None else shared) / "assertion" / f"negex_kit_{split}.tsv"


def maccrobat_train_dir(*, shared: Path | None = None) -> Path:
    """MACCROBAT's BRAT ``train/`` folder under the shared data folder."""
    return (shared_data() if shared is None else shared) / "clinical" / "MACCROBAT" / "train"


def chia_train_dir(*, shared: Path | None = None) -> Path:
    """Chia's BRAT ``train/`` folder under the shared data folder."""
    return (shared_data() if shared is None else shared) / "clinical" / "Chia" / "train"


def phee_train_path(*, shared: Path | None = None) -> Path:
    """PHEE's ``train.json`` (JSON lines) under the shared data folder."""
    return (shared_data() if shared is None else shared) / "clinical" / "PHEE" / "train.json"


@dataclass
class Example:
    text: str
    span: tuple[int, int]
    target: tuple[int, int]
    labels: dict[str, int] = field(default_factory=dict)  # head -> class index or IGNORE
    source: str = "kit"
    # head -> a teacher's class probabilities, learnt where the head's label is IGNORE (distillation)
    soft: dict[str, tuple[float, ...]] | None = None
    # the ConText rules' cues of the target's sentence (:func:`with_cues`), for a cue-reading network
    cues: tuple[Cue, ...] | None = None


def with_cues(examples: Sequence[Example], rules: ContextAssertion) -> list[Example]:
    """Copies of ``examples`` carrying the cues ``rules`` find for their targets (no section: the
    examples' sources have none)."""
    return [replace(ex, cues=rules.assess_with_cues(ex.text, span_sentence(ex.text, ex.span), [ex.target])[1][0])
            for ex in examples]


# --- data -------------------------------------------------------------------------------


def kit_examples(path: str | Path) -> list[Example]:
    return rows_examples(read_kit(path))


def rows_examples(rows: Iterable[dict[str, str]]) -> list[Example]:
    """Training examples of kit rows whose phrase is found in their sentence."""
    examples = []
    for row in rows:
        text = row["sentence"]
        target = locate_phrase(row["phrase"], text)
        if target is None:
            continue
        examples.append(Example(text, (0, len(text)), target, {
            "negation": KIT_NEGATION[row["negation"].strip()],
            "certainty": IGNORE,
            "temporality": KIT_TEMPORALITY[row["temporality"].strip()],
            "experiencer": 0 if row["experiencer"].strip() == "Patient" else 1,
        }))
    return examples


_T_LINE = re.compile(r"^(T\d+)\t(\S+) (\d+) (\d+)\t", re.M)
_E_LINE = re.compile(r"^(E\d+)\t(\S+):(T\d+)", re.M)
_A_LINE = re.compile(r"^A\d+\tPOLARITY (E\d+) (\S+)", re.M)


def maccrobat_examples(folder: str | Path, with_history: bool = False) -> list[Example]:
    """Targets and labels from MACCROBAT BRAT files (see module doc)."""
    splitter = TextSplitter.from_file()
    examples = []
    for ann_path in sorted(Path(folder).glob("*.ann")):
        with open(ann_path.with_suffix(".txt"), encoding="utf-8", newline="") as handle:
            text = handle.read()
        ann = ann_path.read_text(encoding="utf-8")
        spans = {m.group(1): (m.group(2), int(m.group(3)), int(m.group(4))) for m in _T_LINE.finditer(ann)}
        polarity = {m.group(1): m.group(2) for m in _A_LINE.finditer(ann)}
        history = [(s, e) for kind, s, e in spans.values() if kind == "History"]
        family = [(s, e) for kind, s, e in spans.values() if kind == "Family_history"]
        sentences = splitter.split(text)
        seen = set()
        for event in _E_LINE.finditer(ann):
            event_id, kind, trigger = event.groups()
            if kind not in MACCROBAT_FINDING_TYPES or trigger not in spans or trigger in seen:
                continue
            seen.add(trigger)
            _, start, end = spans[trigger]
            sentence = next((s for s in sentences if s.start <= start and end <= s.end), None)
            if sentence is None or start >= end:
                continue
            value = polarity.get(event_id, "POS")
            labels = {
                "negation": 1 if value == "NEG" else IGNORE if value.startswith("MAYBE") else 0,
                "certainty": 1 if value == "UNCERTAIN" else IGNORE if value.startswith("MAYBE") else 0,
                "temporality": IGNORE,
                "experiencer": IGNORE,
            }
            if with_history:
                labels["temporality"] = 1 if _inside(start, end, history) else 0
                labels["experiencer"] = 1 if _inside(start, end, family) else 0
            examples.append(Example(text, (sentence.start, sentence.end), (start, end), labels, "maccrobat"))
    return examples


def training_examples(kit: list[Example], maccrobat: Path | None, *, with_history: bool = False,
                      chia: Path | None = None, phee: Path | None = None) -> tuple[list[Example], dict[str, int]]:
    """The recipe's examples: the kit rows ``kit``, then MACCROBAT's train documents when ``maccrobat``
    is a folder, then Chia's when ``chia`` is, then PHEE's when ``phee`` is a file; with their counts
    (rows of each source, MACCROBAT's negated and possible rows, Chia's negated and historical rows,
    PHEE's negated rows)."""
    counts = {"kit_train": len(kit)}
    examples = list(kit)
    if maccrobat is not None and maccrobat.is_dir():
        extra = maccrobat_examples(maccrobat, with_history=with_history)
        counts["maccrobat_train"] = len(extra)
        counts["maccrobat_negated"] = sum(ex.labels["negation"] == 1 for ex in extra)
        counts["maccrobat_possible"] = sum(ex.labels["certainty"] == 1 for ex in extra)
        examples += extra
    if chia is not None and chia.is_dir():
        extra = chia_examples(chia)
        counts["chia_train"] = len(extra)
        counts["chia_negated"] = sum(ex.labels["negation"] == 1 for ex in extra)
        counts["chia_historical"] = sum(ex.labels["temporality"] == 1 for ex in extra)
        examples += extra
    if phee is not None and phee.is_file():
        extra = phee_examples(phee)
        counts["phee_train"] = len(extra)
        counts["phee_negated"] = sum(ex.labels["negation"] == 1 for ex in extra)
        examples += extra
    return examples, counts


# Chia (trial eligibility criteria) marks time by Temporal / Observation entities linked to a
# Condition; their words say which side of "now" it lies on. Anything else leaves temporality masked.
CHIA_PAST = re.compile(r"\b(?:previous(?:ly)?|prior|past|history|ago|preexisting|pre-existing|former(?:ly)?|"
                       r"last|within)\b", re.I)
CHIA_PRESENT = re.compile(r"\b(?:current(?:ly)?|active|ongoing|recent|concomitant|concurrent|acute|at screening|"
                          r"at baseline|undergoing)\b", re.I)
_R_LINE = re.compile(r"^R\d+\t(\S+) Arg1:(T\d+) Arg2:(T\d+)", re.M)


def chia_examples(folder: str | Path) -> list[Example]:
    """Every Chia ``Condition`` in its sentence (clinlake's splitter): negated where a ``Has_negation``
    relation leaves it (else affirmed); historical where it is linked to a Temporal or Observation
    entity saying past ("previous", "history of", "within the last 6 months"), recent where one says
    present ("current", "active") or where its criterion (line) has no word of the past at all,
    otherwise temporality masked; certainty and experiencer masked."""
    splitter = TextSplitter.from_file()
    examples = []
    for ann_path in sorted(Path(folder).glob("*.ann")):
        text = read_text_exact(ann_path.with_suffix(".txt"))
        ann = ann_path.read_text(encoding="utf-8")
        entities = {e.id: e for e in parse_ann(ann, source=ann_path.name).entities}
        negated, when = set(), {}
        for kind, first, second in _R_LINE.findall(ann):
            if kind == "Has_negation":
                negated.add(first)
            for target, cue in ((first, second), (second, first)):
                cue_entity = entities.get(cue)
                if cue_entity is None or cue_entity.type not in ("Temporal", "Observation"):
                    continue
                if CHIA_PAST.search(cue_entity.text):
                    when[target] = 1
                elif CHIA_PRESENT.search(cue_entity.text):
                    when.setdefault(target, 0)
        sentences = splitter.split(text)
        for entity in entities.values():
            if entity.type != "Condition" or entity.discontinuous or entity.start >= entity.end:
                continue
            sentence = next((s for s in sentences if s.start <= entity.start and entity.end <= s.end), None)
            if sentence is None:
                continue
            # one criterion per line, most without a full stop: the sentence is cut at the line's ends
            line_start = text.rfind("\n", 0, entity.start) + 1
            line_end = len(text) if text.find("\n", entity.end) < 0 else text.find("\n", entity.end)
            span = (max(sentence.start, line_start), min(sentence.end, line_end))
            temporality = when.get(entity.id, IGNORE if CHIA_PAST.search(text, *span) else 0)
            labels = {"negation": 1 if entity.id in negated else 0, "certainty": IGNORE,
                      "temporality": temporality, "experiencer": IGNORE}
            examples.append(Example(text, span, (entity.start, entity.end), labels, "chia"))
    return examples


def phee_examples(path: str | Path) -> list[Example]:
    """The effect of every PHEE event (adverse or therapeutic: a problem) in its sentence, each of its
    mentions written in one piece: negated where the event's ``Negated`` attribute is true (else
    affirmed). Certainty is masked: ``Speculated`` doubts the event, the drug causing the effect ("X
    was the probable cause of the delirium"), not that the effect happened. Temporality and experiencer
    are masked (a case report's events are neither history nor the present of one admission, and
    its subject may be a population)."""
    examples = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            text = record["context"]
            seen = set()
            for annotation in record.get("annotations") or []:
                for event in annotation.get("events") or []:
                    effect = event.get("Effect")
                    if not isinstance(effect, dict):
                        continue
                    negated = bool((event.get("Negated") or {}).get("value"))
                    for texts, starts in zip(effect.get("text") or [], effect.get("start") or []):
                        if len(texts) != 1 or (starts[0], negated) in seen:
                            continue
                        start, end = starts[0], starts[0] + len(texts[0])
                        if text[start:end] != texts[0] or start >= end:
                            continue
                        seen.add((starts[0], negated))
                        labels = {"negation": int(negated), "certainty": IGNORE, "temporality": IGNORE,
                                  "experiencer": IGNORE}
                        examples.append(Example(text, (0, len(text)), (start, end), labels, "phee"))
    return examples


def _inside(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(lo <= start and end <= hi for lo, hi in spans)


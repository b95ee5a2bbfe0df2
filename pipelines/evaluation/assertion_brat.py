"""Assertion on clinical documents: scoring the assertion stage on MACCROBAT's event polarity.

MACCROBAT (BRAT standoff) marks events (``E<n><TAB><Type>:T<k> [Role:T<j> ...]``) whose trigger is
a text-bound entity, and some events carry ``A<n><TAB>POLARITY E<k> <value>``. Gold, per event
trigger of a finding-like type (:data:`DEFAULT_TYPES`, the same six types the assertion model's
MACCROBAT rows use; ``types=None`` keeps every event type):

* ``NEG`` → ``absent``; ``UNCERTAIN`` → ``possible``;
* no polarity, or ``POS`` → ``present``;
* ``MAYBE_NEG`` / ``MAYBE_POS`` (hedged annotator readings, 10 of 1,652 devel events, 57 in all of
  MACCROBAT) are **excluded from scoring** and counted as ``excluded_maybe``: they are neither a
  clear negation nor a clear uncertainty, and the model's training masks them the same way.

One gold item per trigger entity (a trigger shared by two events counts once, first event wins);
a discontinuous trigger (``start end;start end``) is assessed with its full extent, from its first
fragment's start to its last fragment's end.

Prediction is the pipeline's own assertion stage with gold triggers in place of entities: a
:class:`~clinlake.pipelines.engine.pipeline.Pipeline` built from the job config's ``pipeline``
section (its text stage and abbreviations, sections, rules file, model, ``max_scope`` and section
defaults) with no NER or dictionary stage and the chosen engine (``rules`` | ``model`` |
``hybrid``). The document is read exactly (:func:`~clinlake.pipelines.corpora.brat.read_text_exact`),
split into sentences and sections by the pipeline, and the triggers go through
:meth:`~clinlake.pipelines.engine.pipeline.Pipeline.assess` as (sentence, start, end) targets:
one ``assess`` call per sentence with every gold trigger of that sentence, in the section of its
first trigger, exactly as for the pipeline's own entities. A trigger that crosses one of our
sentence boundaries cannot be assessed; it is counted as ``unplaced`` and left out of the scores.

Each trigger also carries the clinlake label its type maps to (``label_map``, by default
``conf/label_maps/maccrobat_clinical_core.yaml``: ``Diagnostic_procedure`` → ``TEST``, findings →
``PROBLEM``, …; ``Clinical_event`` maps to none), so the job config's ``allowed_by_label`` applies as
it does to the pipeline's own entities (a ``TEST`` is never absent by default);
``label_map=None`` assesses every trigger without a label.

Our six labels are mapped to three: ``absent`` → absent, ``possible`` → possible, everything
else (present, hypothetical, conditional, associated_with_someone_else) → present. Scores:
precision / recall / F1 of ``absent`` and of ``possible`` (a predicted absent on a gold present or
possible entity is a false positive of absent, and so on), accuracy over the three labels, counts.

``clinlake evaluate assertion-brat --data DIR [--engine rules|model|hybrid] [--config FILE]
[--label-map FILE|none] [--json]`` prints :func:`evaluate`'s report (:func:`format_report` is its text). Note text is PHI: nothing here prints, logs or
raises with text; reports carry file names, ids, counts and scores only.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from clinlake.pipelines.config import JobConfig, load_config
from clinlake.pipelines.corpora.brat import Attribute, Extent, Fragments, read_ann, read_text_exact
from clinlake.pipelines.corpora.label_maps import MACCROBAT_FINDING_TYPES, load_label_map
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.engine.types import Sentence
from clinlake.pipelines.evaluation.scoring import precision_recall_f1
from clinlake.pipelines.resources import Resolver, package_resource

DEFAULT_TYPES: frozenset[str] = MACCROBAT_FINDING_TYPES
POLARITY_LABELS: Mapping[str, str] = {"NEG": "absent", "UNCERTAIN": "possible", "POS": "present"}
EXCLUDED_POLARITIES: frozenset[str] = frozenset({"MAYBE_NEG", "MAYBE_POS"})
LABELS: tuple[str, ...] = ("absent", "possible", "present")
SCORED_LABELS: tuple[str, ...] = ("absent", "possible")
DEFAULT_LABEL_MAP = package_resource("conf/label_maps/maccrobat_clinical_core.yaml")
ENGINES: tuple[str, ...] = ("rules", "model", "hybrid")


# --- gold ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """An ``E`` line: ``E3<TAB>Sign_symptom:T5 Site:T2`` (``arguments`` as (role, id) pairs)."""

    id: str
    type: str
    trigger: str
    arguments: tuple[tuple[str, str], ...] = ()


def parse_event(line: str) -> Event | None:
    """The event on an ``E`` line, or None when the line is not a well-formed event."""
    if not line.startswith("E") or "\t" not in line:
        return None
    event_id, rest = line.split("\t", 1)
    fields = rest.split()
    if not fields or fields[0].count(":") != 1:
        return None
    kind, trigger = fields[0].split(":")
    arguments = tuple(tuple(f.split(":", 1)) for f in fields[1:] if ":" in f)
    if not kind or not trigger:
        return None
    return Event(event_id, kind, trigger, arguments)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class GoldItem(Extent):
    """One scored trigger entity; ``label`` is absent | possible | present."""

    doc: str
    event: str
    trigger: str
    type: str
    spans: Fragments
    polarity: str | None
    label: str

    @property
    def key(self) -> str:
        return f"{self.doc}:{self.trigger}"


@dataclass(slots=True)
class GoldDoc:
    name: str
    text: str
    items: list[GoldItem]


@dataclass(slots=True)
class GoldSplit:
    docs: list[GoldDoc]
    excluded_maybe: Counter = field(default_factory=Counter)  # MAYBE_* value -> events left out
    other_types: int = 0  # events of a type not selected
    polarity: Counter = field(default_factory=Counter)  # value ("none" when absent) over kept items

    @property
    def items(self) -> list[GoldItem]:
        return [item for doc in self.docs for item in doc.items]


def gold_label(polarity: str | None) -> str | None:
    """absent | possible | present for a POLARITY value; None for MAYBE_* (excluded)."""
    if polarity is None:
        return "present"
    if polarity in EXCLUDED_POLARITIES:
        return None
    return POLARITY_LABELS.get(polarity, "present")


def read_gold_doc(txt: Path, types: frozenset[str] | None = DEFAULT_TYPES) -> tuple[GoldDoc, GoldSplit]:
    """Gold items of one document and its bookkeeping (as a one-document GoldSplit)."""
    document = read_ann(txt.with_suffix(".ann"))
    spans = {e.id: e.spans for e in document.entities}
    polarity = {a.target: a.value for a in document.attributes
                if isinstance(a, Attribute) and a.name == "POLARITY"}
    events = [e for e in map(parse_event, (x for x in document.lines if isinstance(x, str))) if e]
    tally = GoldSplit([])
    items: list[GoldItem] = []
    seen: set[str] = set()
    for event in events:
        if event.trigger not in spans or event.trigger in seen:
            continue
        if types is not None and event.type not in types:
            tally.other_types += 1
            continue
        seen.add(event.trigger)
        value = polarity.get(event.id)
        label = gold_label(value)
        if label is None:
            tally.excluded_maybe[value] += 1
            continue
        tally.polarity[value or "none"] += 1
        items.append(GoldItem(txt.stem, event.id, event.trigger, event.type, spans[event.trigger], value, label))
    items.sort(key=lambda i: (i.start, i.end, i.trigger))
    return GoldDoc(txt.stem, read_text_exact(txt), items), tally


def read_split(folder: str | Path, types: frozenset[str] | None = DEFAULT_TYPES) -> GoldSplit:
    """Every ``folder/*.txt`` with a ``.ann`` beside it, in name order."""
    split = GoldSplit([])
    for txt in sorted(Path(folder).glob("*.txt")):
        if not txt.with_suffix(".ann").is_file():
            continue
        doc, tally = read_gold_doc(txt, types)
        split.docs.append(doc)
        split.excluded_maybe.update(tally.excluded_maybe)
        split.polarity.update(tally.polarity)
        split.other_types += tally.other_types
    return split


# --- prediction ---------------------------------------------------------------------------


def three_way(label: str) -> str:
    """Our six labels -> absent | possible | present."""
    return label if label in SCORED_LABELS else "present"


def sentence_of(sentences: Sequence[Sentence], start: int, end: int) -> int | None:
    """Index of the sentence containing [start, end), or None when it crosses a boundary."""
    for sentence in sentences:
        if sentence.start <= start and end <= sentence.end:
            return sentence.index
    return None


class DocumentAssessor:
    """A pipeline without NER stages whose assertion stage assesses gold triggers instead."""

    def __init__(self, pipeline: Pipeline, name: str = "", label_map: Mapping[str, str] | None = None) -> None:
        if pipeline.assertion is None:
            raise ValueError("the pipeline to assess with has no assertion stage")
        self.pipeline = pipeline
        self.name = name
        self.label_map = dict(label_map) if label_map is not None else None

    @classmethod
    def from_config(cls, engine: str = "hybrid", config: JobConfig | str | Path | None = None, *,
                    label_map: Mapping[str, str] | None = None) -> "DocumentAssessor":
        """The config's ``pipeline`` section (default: conf/local.yaml) with ``engine`` as the
        assertion engine and no NER or dictionary stage (gold triggers take their place), built
        by :meth:`~clinlake.pipelines.engine.pipeline.Pipeline.build`; ``label_map``: gold type ->
        clinlake label of the triggers (None: no labels)."""
        if engine not in ENGINES:
            raise ValueError(f"unknown assertion engine {engine!r} (allowed: {', '.join(ENGINES)})")
        job = config if isinstance(config, JobConfig) else load_config(config)
        conf = replace(job.pipeline, ner=[], dictionary=[], assertion=replace(job.pipeline.assertion, engine=engine))
        return cls(Pipeline.build(conf, Resolver(job.base_dir)), engine, label_map)

    def predict(self, doc: GoldDoc) -> list[str | None]:
        """Our six-way label per gold item of ``doc`` (None: the trigger crosses a sentence end)."""
        if not doc.items:
            return []
        sentences = self.pipeline.splitter.split(doc.text)
        sections = self.pipeline.sections.detect(doc.text)
        # (sentence, item position), by sentence: Pipeline.assess takes one sentence's targets together
        located = sorted((index, i) for i, item in enumerate(doc.items)
                         if (index := sentence_of(sentences, item.start, item.end)) is not None)
        targets = [(index, doc.items[i].start, doc.items[i].end) for index, i in located]
        entity_labels = ([self.label_map.get(doc.items[i].type) for _, i in located]
                         if self.label_map is not None else None)
        labels: list[str | None] = [None] * len(doc.items)
        for (_, position), result in zip(located, self.pipeline.assess(doc.text, sentences, sections, targets,
                                                                       labels=entity_labels), strict=True):
            labels[position] = result.assertion
        return labels


def predict_split(assessor: DocumentAssessor, split: GoldSplit) -> tuple[dict[str, str | None], float]:
    """Six-way label per item key and the seconds spent (splitting, sections and assertion)."""
    labels: dict[str, str | None] = {}
    started = time.perf_counter()
    for doc in split.docs:
        for item, label in zip(doc.items, assessor.predict(doc), strict=True):
            labels[item.key] = label
    return labels, time.perf_counter() - started


# --- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelScore:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def to_dict(self) -> dict[str, Any]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "support": self.support}


def label_score(pairs: Sequence[tuple[str, str]], label: str) -> LabelScore:
    """P/R/F1 of one label over (gold, predicted) pairs."""
    tp = sum(g == label and p == label for g, p in pairs)
    fp = sum(g != label and p == label for g, p in pairs)
    fn = sum(g == label and p != label for g, p in pairs)
    precision, recall, f1 = precision_recall_f1(tp, tp + fp, tp, tp + fn)
    return LabelScore(precision, recall, f1, tp, fp, fn)


@dataclass
class AssertionScores:
    scored: int
    accuracy: float
    per_label: dict[str, LabelScore]
    confusion: dict[str, dict[str, int]]  # gold -> predicted -> count

    def f1(self, label: str) -> float:
        return self.per_label[label].f1

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "accuracy": round(self.accuracy, 4),
                "per_label": {k: v.to_dict() for k, v in self.per_label.items()}, "confusion": self.confusion}


def score_pairs(pairs: Sequence[tuple[str, str]]) -> AssertionScores:
    """Scores over (gold, predicted) pairs in the three-way vocabulary."""
    accuracy = sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0
    counts = Counter(pairs)
    confusion = {g: {p: counts[(g, p)] for p in LABELS} for g in LABELS}
    return AssertionScores(len(pairs), accuracy, {label: label_score(pairs, label) for label in SCORED_LABELS},
                           confusion)


def gold_pairs(items: Iterable[GoldItem], predicted: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(gold, three-way predicted) for every item with a prediction (None and missing are left out)."""
    pairs = []
    for item in items:
        label = predicted.get(item.key)
        if label is not None:
            pairs.append((item.label, three_way(label)))
    return pairs


# --- evaluation and report ----------------------------------------------------------------


def evaluate(data: str | Path, engine: str = "hybrid", *, config: JobConfig | str | Path | None = None,
             types: frozenset[str] | None = DEFAULT_TYPES,
             label_map: str | Path | None = DEFAULT_LABEL_MAP) -> dict[str, Any]:
    """Read the split, run one engine, score; a JSON-ready report (no text). ``label_map``: the
    YAML mapping gold types to clinlake labels (None: triggers have no label)."""
    split = read_split(data, types)
    assessor = DocumentAssessor.from_config(engine, config,
                                            label_map=load_label_map(label_map) if label_map is not None else None)
    predicted, seconds = predict_split(assessor, split)
    items = split.items
    scores = score_pairs(gold_pairs(items, predicted))
    return {
        "engine": engine, "data": str(data), "documents": len(split.docs),
        "label_map": Path(label_map).name if label_map is not None else None,
        "types": sorted(types) if types is not None else "all",
        "gold": dict(Counter(item.label for item in items)),
        "polarity": dict(split.polarity), "excluded_maybe": dict(split.excluded_maybe),
        "other_type_events": split.other_types,
        "unplaced": sum(1 for item in items if predicted.get(item.key) is None),
        **scores.to_dict(),
        "seconds": round(seconds, 3),
        "entities_per_second": round(len(items) / seconds, 1) if seconds else None,
    }


def format_report(report: Mapping[str, Any]) -> str:
    gold = report["gold"]
    maybe = sum(report["excluded_maybe"].values())
    lines = [
        f"engine {report['engine']} on {report['documents']} documents in {report['data']}",
        f"gold trigger entities: absent {gold.get('absent', 0)}, possible {gold.get('possible', 0)}, "
        f"present {gold.get('present', 0)}; excluded: {maybe} MAYBE_NEG/MAYBE_POS, "
        f"{report['other_type_events']} events of other types, {report['unplaced']} crossing a sentence end",
        "labels: ours absent -> absent, possible -> possible, any other -> present; "
        f"trigger labels from {report.get('label_map') or 'nowhere (none)'}",
        f"scored {report['scored']}   accuracy {report['accuracy']:.3f}",
        f"  {'label':<10} {'P':>7} {'R':>7} {'F1':>7} {'tp':>5} {'fp':>5} {'fn':>5}",
    ]
    for label, s in report["per_label"].items():
        lines.append(f"  {label:<10} {s['precision']:7.3f} {s['recall']:7.3f} {s['f1']:7.3f} "
                     f"{s['tp']:5d} {s['fp']:5d} {s['fn']:5d}")
    if report.get("entities_per_second"):
        lines.append(f"speed: {report['entities_per_second']:.0f} entities/s (text stage, sections, assertion)")
    return "\n".join(lines)


def parse_types(value: str | None) -> frozenset[str] | None:
    """``--types``: None/empty -> the default six, ``all`` -> every type, else a comma list."""
    if not value:
        return DEFAULT_TYPES
    if value.strip().lower() == "all":
        return None
    return frozenset(t.strip() for t in value.split(",") if t.strip())

"""Document-level NER evaluation on raw text against BRAT gold (``clinlake evaluate brat``).

For each ``DIR/*.txt`` (read exactly, CRLF kept) the full engine runs on the raw text — our
sentence splitter, tokenizer, sections, NER stages, chunk merge and assertion — and its
entities are written to ``OUTDIR/<doc>.ann`` (``T`` lines with BRAT offsets, end exclusive,
plus ``A<n><TAB>Assertion T<n> <label>``). They are then scored against ``DIR/<doc>.ann``.

Label map: a YAML mapping from gold types to our labels (``Sign_symptom: PROBLEM``). Gold
entities whose type is not in the map are ignored, and so are predictions whose label is no
value of the map (so a model's extra labels do not count as false positives). Without a map,
every gold type and every predicted label is kept, compared by name. Exact duplicate gold
entities (same type after mapping, same fragments) count once.

Scoring, per type (our labels) and micro over all types:

* strict: a prediction is correct when its label equals the gold type and its ``start`` and
  ``end`` equal the gold entity's. A discontinuous gold entity (``start end;start end``) counts
  with its full extent, from its first fragment's start to its last fragment's end.
* lenient: a prediction is correct when it overlaps (shares at least one character with) a gold
  entity of the same type; for a discontinuous gold entity, overlap with any of its fragments
  counts (the gap between fragments does not). Precision counts the predictions that overlap
  some gold entity, recall the gold entities overlapped by some prediction (i2b2-2010 "inexact"
  style, no one-to-one alignment), so one long prediction covering two gold entities finds both.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from clinlake.pipelines.config import NerModelConfig, load_config
from clinlake.pipelines.corpora.brat import Extent, Fragments, entities_to_ann, read_ann, read_text_exact, write_ann
from clinlake.pipelines.corpora.label_maps import load_label_map
from clinlake.pipelines.engine.pipeline import Pipeline
from clinlake.pipelines.evaluation.scoring import precision_recall_f1
from clinlake.pipelines.resources import Resolver


@dataclass(frozen=True, slots=True)
class GoldEntity(Extent):
    label: str
    spans: Fragments


@dataclass(frozen=True, slots=True)
class PredEntity:
    label: str
    start: int
    end: int


def gold_entities(ann: Path, label_map: Mapping[str, str] | None) -> tuple[list[GoldEntity], int]:
    """Mapped, de-duplicated gold entities of one ``.ann`` and the number of T lines ignored."""
    seen: dict[GoldEntity, None] = {}
    ignored = 0
    for entity in read_ann(ann).entities:
        label = entity.type if label_map is None else label_map.get(entity.type)
        if label is None:
            ignored += 1
            continue
        seen.setdefault(GoldEntity(label, tuple(sorted(entity.spans))), None)
    return list(seen), ignored


def _overlaps(start: int, end: int, fragments: Fragments) -> bool:
    return any(start < e and s < end for s, e in fragments)


class Counts:
    """Per-label counts: strict [correct, predicted, gold]; lenient [pred matched, gold matched]."""

    def __init__(self) -> None:
        self.strict: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.lenient: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, gold: Sequence[GoldEntity], predicted: Sequence[PredEntity]) -> None:
        pred_keys = {(p.label, p.start, p.end) for p in predicted}
        gold_keys = {(g.label, g.start, g.end) for g in gold}
        for label, _, _ in pred_keys:
            self.strict[label][1] += 1
        for g in gold:
            self.strict[g.label][2] += 1
        for key in pred_keys & gold_keys:
            self.strict[key[0]][0] += 1
        by_label: dict[str, list[GoldEntity]] = defaultdict(list)
        for g in gold:
            by_label[g.label].append(g)
        preds = sorted(pred_keys)
        for label, s, e in preds:
            if any(_overlaps(s, e, g.spans) for g in by_label.get(label, ())):
                self.lenient[label][0] += 1
        for g in gold:
            if any(label == g.label and _overlaps(s, e, g.spans) for label, s, e in preds):
                self.lenient[g.label][1] += 1

    def report(self) -> dict:
        labels = sorted(set(self.strict) | set(self.lenient))
        strict = {k: _prf(self.strict[k][0], self.strict[k][0], self.strict[k][1], self.strict[k][2])
                  for k in labels}
        lenient = {k: _prf(self.lenient[k][0], self.lenient[k][1], self.strict[k][1], self.strict[k][2])
                   for k in labels}
        total = [sum(self.strict[k][i] for k in labels) for i in range(3)]
        total_l = [sum(self.lenient[k][i] for k in labels) for i in range(2)]
        return {"strict": {"micro": _prf(total[0], total[0], total[1], total[2]), "per_type": strict},
                "lenient": {"micro": _prf(total_l[0], total_l[1], total[1], total[2]), "per_type": lenient}}


def _prf(pred_correct: int, gold_found: int, predicted: int, gold: int) -> dict:
    p, r, f = precision_recall_f1(pred_correct, predicted, gold_found, gold)
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
            "correct_predicted": pred_correct, "correct_gold": gold_found, "predicted": predicted, "gold": gold}


def score(docs: Iterable[tuple[Sequence[GoldEntity], Sequence[PredEntity]]]) -> dict:
    """Strict and lenient P/R/F1, per type and micro, over (gold, predicted) per document."""
    counts = Counts()
    for gold, predicted in docs:
        counts.add(gold, predicted)
    return counts.report()


def brat_pipeline(model: str | None = None, config: str | Path | None = None, *,
                  propagate_abbreviations: bool = True) -> Pipeline:
    """The pipeline to evaluate: the ``pipeline`` section of ``config`` (default: the shipped
    conf/local.yaml) as is, or, with ``model``, that section with one NER model stage
    (abbreviation propagation on, as by default, or off) and no dictionary."""
    job = load_config(config)
    conf = job.pipeline
    if model:
        stage = NerModelConfig(model=model, propagate_abbreviations=propagate_abbreviations)
        conf = replace(conf, ner=[stage], dictionary=[])
    return Pipeline.build(conf, Resolver(job.base_dir))


def evaluate(data: Path, predictions: Path, *, model: str | None = None, config: str | Path | None = None,
             label_map: Mapping[str, str] | None = None, pipeline=None) -> dict:
    """Annotate every ``data/*.txt``, write ``predictions/<doc>.ann``, score against gold."""
    if pipeline is None:
        pipeline = brat_pipeline(model, config)
    texts = sorted(data.glob("*.txt"))
    predictions.mkdir(parents=True, exist_ok=True)
    targets = None if label_map is None else set(label_map.values())
    counts = Counts()
    ignored_gold = ignored_pred = discontinuous = 0
    missing_gold: list[str] = []
    for txt in texts:
        text = read_text_exact(txt)
        entities = pipeline.annotate(text)
        write_ann(predictions / f"{txt.stem}.ann", entities_to_ann(entities, text))
        ann = txt.with_suffix(".ann")
        if ann.is_file():
            gold, ignored = gold_entities(ann, label_map)
        else:
            gold, ignored = [], 0
            missing_gold.append(txt.name)
        ignored_gold += ignored
        discontinuous += sum(1 for g in gold if len(g.spans) > 1)
        predicted = [PredEntity(e.label, e.start, e.end) for e in entities
                     if targets is None or e.label in targets]
        ignored_pred += len(entities) - len(predicted)
        counts.add(gold, predicted)
    return {"pipeline_version": pipeline.version, "ner_stages": pipeline.ner_stage_names,
            "data": str(data), "predictions": str(predictions), "documents": len(texts),
            "missing_gold": missing_gold, "gold_ignored_unmapped": ignored_gold,
            "predicted_ignored_unmapped": ignored_pred, "gold_discontinuous": discontinuous,
            **counts.report()}


def evaluate_files(data: Path, predictions: Path, *, model: str | None = None, config: str | Path | None = None,
                   label_map: str | Path | None = None) -> dict:
    """:func:`evaluate` with the label map read from a YAML file (``clinlake evaluate brat``); the
    report then names the file (``label_map``). Raises LabelMapError / ConfigError."""
    mapping = load_label_map(label_map) if label_map is not None else None
    report = evaluate(data, predictions, model=model, config=config, label_map=mapping)
    if label_map is not None:
        report["label_map"] = str(label_map)
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['documents']} documents in {report['data']}; pipeline {report['pipeline_version']} "
             f"(NER stages: {', '.join(report['ner_stages']) or 'none'}); predictions in {report['predictions']}",
             f"ignored: {report['gold_ignored_unmapped']} gold entities of unmapped types, "
             f"{report['predicted_ignored_unmapped']} predictions of unmapped labels; "
             f"{report['gold_discontinuous']} discontinuous gold entities"]
    if report["missing_gold"]:
        lines.append(f"no gold .ann for {len(report['missing_gold'])} documents (scored as having no entities)")
    for mode in ("strict", "lenient"):
        result = report[mode]
        lines.append(f"{mode}:")
        lines.append(f"  {'type':<24} {'P':>7} {'R':>7} {'F1':>7} {'gold':>6} {'pred':>6}")
        for name, r in [("micro", result["micro"]), *result["per_type"].items()]:
            lines.append(f"  {name:<24} {100 * r['precision']:7.2f} {100 * r['recall']:7.2f} {100 * r['f1']:7.2f} "
                         f"{r['gold']:6d} {r['predicted']:6d}")
    return "\n".join(lines)

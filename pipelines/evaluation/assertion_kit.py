"""Dev-only evaluation of the ConText assertion stage on the NegEx kit TSVs.

The kit (columns ``id, note, phrase, sentence, negation, temporality, experiencer``)
labels one phrase per sentence with three attributes. Each row becomes one
engine ``assess`` call over the whole sentence, and the engine's output is
mapped onto the kit's vocabulary:

* negation:    absent -> ``Negated``, anything else -> ``Affirmed``
* experiencer: associated_with_someone_else -> ``Other``, else ``Patient``
  (the kit's ``Family member`` and ``Other`` are both scored as ``Other``)
* temporality: hypothetical / conditional -> ``Not particular``, else
  ``is_historical`` -> ``Historical``, else ``Recent``

Any engine with the ``assess`` interface (:class:`~clinlake.pipelines.engine.types.AssertionEngine`:
the rules, the trained model, the hybrid) can be scored. :func:`run_kit` is ``clinlake evaluate
assertion --data KIT.tsv [--predictions OUT.tsv] [--engine rules|model|hybrid] [--json]``: it
writes ``id<TAB>negation<TAB>temporality<TAB>experiencer`` in the kit's vocabulary (with a header
line; a row whose phrase cannot be found in its sentence is written as the engine's default
``Affirmed / Recent / Patient`` and left out of the scores) and returns the per-attribute
accuracy and per-class precision/recall/F1 (:class:`KitRun`; :func:`format_run` is its text).
Nothing here prints or raises with sentence text (the kit is de-identified, but the habit matters
for real notes); error listings carry row ids only.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from clinlake.pipelines.corpora.negex_kit import locate_phrase, read_kit
from clinlake.pipelines.engine.assertion.engines import load_assertion_engine
from clinlake.pipelines.engine.pieces import WORD_PIECE
from clinlake.pipelines.engine.types import AssertionEngine, AssertionResult, Sentence, Token
from clinlake.pipelines.evaluation.scoring import precision_recall_f1

ATTRIBUTES: tuple[str, ...] = ("negation", "temporality", "experiencer")
PREDICTION_COLUMNS: tuple[str, ...] = ("id", *ATTRIBUTES)
ENGINES: tuple[str, ...] = ("rules", "model", "hybrid")
KIT_COLUMNS: tuple[str, ...] = ("id", "phrase", "sentence", *ATTRIBUTES)  # the columns scoring reads
Tokenizer = Callable[[str], Sequence[Token]]
UNLOCATED_LABELS: Mapping[str, str] = {"negation": "Affirmed", "temporality": "Recent", "experiencer": "Patient"}


def regex_tokenize(text: str, span: tuple[int, int] | None = None) -> list[Token]:
    """Word / single-punctuation tokens (:data:`~clinlake.pipelines.engine.pieces.WORD_PIECE`)
    of ``text`` (or of ``text[span]``), with offsets relative to ``text``."""
    lo, hi = span or (0, len(text))
    return [Token(m.start(), m.end(), m.group()) for m in WORD_PIECE.finditer(text, lo, hi)]


def whole_sentence(text: str, tokenizer: Tokenizer = regex_tokenize) -> Sentence:
    """The whole string as one Sentence (index 0), tokenized by ``tokenizer``."""
    return Sentence(0, 0, len(text), tuple(tokenizer(text)))


def span_sentence(text: str, span: tuple[int, int]) -> Sentence:
    """``text[span]`` as one Sentence (index 0) of word pieces, offsets into ``text``: how the rules
    read a training example's sentence inside its document (:func:`whole_sentence` of a kit row)."""
    return Sentence(0, span[0], span[1], tuple(regex_tokenize(text, span)))


def to_kit_labels(result: AssertionResult) -> dict[str, str]:
    """Map an engine result onto the kit's three attributes."""
    if result.assertion in ("hypothetical", "conditional"):
        temporality = "Not particular"
    elif result.is_historical:
        temporality = "Historical"
    else:
        temporality = "Recent"
    return {
        "negation": "Negated" if result.assertion == "absent" else "Affirmed",
        "temporality": temporality,
        "experiencer": "Other" if result.assertion == "associated_with_someone_else" else "Patient",
    }


def _gold_labels(row: Mapping[str, str]) -> dict[str, str]:
    return {
        "negation": row["negation"].strip(),
        "temporality": row["temporality"].strip(),
        "experiencer": "Patient" if row["experiencer"].strip() == "Patient" else "Other",
    }


@dataclass(frozen=True)
class ClassScore:
    precision: float
    recall: float
    f1: float
    support: int  # gold count


@dataclass
class KitEvaluation:
    """Scores over the located rows; ``errors`` holds (row id, attribute, gold, predicted)."""

    rows: int = 0
    unlocated: list[str] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, ClassScore]] = field(default_factory=dict)
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)
    seconds: float = 0.0  # time spent in the engine

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scores (row ids of unlocated rows; no text)."""
        return {
            "rows": self.rows,
            "unlocated": list(self.unlocated),
            "accuracy": {a: round(v, 4) for a, v in self.accuracy.items()},
            "per_class": {
                a: {label: {"precision": round(c.precision, 4), "recall": round(c.recall, 4),
                            "f1": round(c.f1, 4), "support": c.support} for label, c in scores.items()}
                for a, scores in self.per_class.items()
            },
            "engine_seconds": round(self.seconds, 3),
            "sentences_per_second": round(self.rows / self.seconds, 1) if self.seconds else None,
        }

    def f1(self, attribute: str, label: str) -> float:
        score = self.per_class.get(attribute, {}).get(label)
        return score.f1 if score is not None else 0.0

    def report(self) -> str:
        lines = [f"rows scored: {self.rows}  (phrase not found: {len(self.unlocated)})"]
        for attribute in ATTRIBUTES:
            lines.append(f"{attribute}: accuracy {self.accuracy[attribute]:.3f}")
            for label, score in sorted(self.per_class[attribute].items()):
                lines.append(
                    f"    {label:<15} P {score.precision:.3f}  R {score.recall:.3f}  "
                    f"F1 {score.f1:.3f}  (n={score.support})"
                )
        return "\n".join(lines)


def predict_kit(
    rows: Sequence[Mapping[str, str]], engine: AssertionEngine, tokenizer: Tokenizer = regex_tokenize
) -> tuple[list[AssertionResult | None], float]:
    """The engine's results for kit rows (None where the phrase is not found) and engine seconds."""
    results: list[AssertionResult | None] = []
    seconds = 0.0
    for row in rows:
        text = row["sentence"]
        span = locate_phrase(row["phrase"], text)
        if span is None:
            results.append(None)
            continue
        sentence = whole_sentence(text, tokenizer)
        started = time.perf_counter()
        results.append(engine.assess(text, sentence, [span])[0])
        seconds += time.perf_counter() - started
    return results, seconds


def score_kit(
    rows: Sequence[Mapping[str, str]], results: Sequence[AssertionResult | None], seconds: float = 0.0
) -> KitEvaluation:
    """Score engine results against the kit rows they were predicted for."""
    labels = [None if result is None else to_kit_labels(result) for result in results]
    return score_labels(rows, labels, seconds)


def score_labels(
    rows: Sequence[Mapping[str, str]], labels: Sequence[Mapping[str, str] | None], seconds: float = 0.0
) -> KitEvaluation:
    """Score kit-vocabulary predictions (None = phrase not located, left out)."""
    evaluation = KitEvaluation(seconds=seconds)
    pairs: dict[str, list[tuple[str, str]]] = {attribute: [] for attribute in ATTRIBUTES}
    for row, predicted in zip(rows, labels, strict=True):
        if predicted is None:
            evaluation.unlocated.append(row["id"])
            continue
        evaluation.rows += 1
        gold = _gold_labels(row)
        for attribute in ATTRIBUTES:
            pairs[attribute].append((gold[attribute], predicted[attribute]))
            if gold[attribute] != predicted[attribute]:
                evaluation.errors.append((row["id"], attribute, gold[attribute], predicted[attribute]))
    for attribute, attribute_pairs in pairs.items():
        evaluation.accuracy[attribute] = _accuracy(attribute_pairs)
        evaluation.per_class[attribute] = _class_scores(attribute_pairs)
    return evaluation


def evaluate_kit(
    path: str | Path,
    engine: AssertionEngine,
    tokenizer: Tokenizer = regex_tokenize,
) -> KitEvaluation:
    """Run ``engine`` over every kit row and score the three attributes."""
    rows = read_kit(path)
    results, seconds = predict_kit(rows, engine, tokenizer)
    return score_kit(rows, results, seconds)


def write_predictions(
    path: str | Path, rows: Sequence[Mapping[str, str]], results: Sequence[AssertionResult | None]
) -> None:
    """``id<TAB>negation<TAB>temporality<TAB>experiencer`` with a header, one line per kit row."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(PREDICTION_COLUMNS) + "\n")
        for row, result in zip(rows, results, strict=True):
            labels = UNLOCATED_LABELS if result is None else to_kit_labels(result)
            handle.write("\t".join([row["id"], *(labels[a] for a in ATTRIBUTES)]) + "\n")


def build_engine(
    name: str,
    rules_path: str | Path | None = None,
    model_dir: str | Path | None = None,
    max_scope: int = 12,
) -> AssertionEngine:
    """``rules`` | ``model`` | ``hybrid`` with no section defaults (the kit has no sections)."""
    engine = load_assertion_engine(name, rules_path=rules_path, model_dir=model_dir, max_scope=max_scope)
    assert engine is not None
    return engine


class KitError(ValueError):
    """A kit file or an engine that cannot be used; the message names files and columns, never text."""


@dataclass
class KitRun:
    """One engine scored on one kit file (``clinlake evaluate assertion``)."""

    engine: str
    data: Path
    evaluation: KitEvaluation

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "data": str(self.data), **self.evaluation.to_dict()}


def run_kit(
    data: str | Path,
    engine_name: str = "rules",
    predictions: str | Path | None = None,
    *,
    rules_path: str | Path | None = None,
    model_dir: str | Path | None = None,
    max_scope: int = 12,
) -> KitRun:
    """Build the engine, predict every kit row, write ``predictions`` (if given) and score.

    Raises :class:`KitError` when the engine cannot be loaded or the file lacks kit columns."""
    try:
        engine = build_engine(engine_name, rules_path, model_dir, max_scope)
    except (OSError, ValueError) as exc:  # messages name files and keys, never note text
        raise KitError(f"cannot load the {engine_name} engine: {exc}") from exc
    rows = read_kit(data)
    missing = [c for c in KIT_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise KitError(f"{data} lacks kit column(s) {', '.join(missing)}")
    results, seconds = predict_kit(rows, engine)
    if predictions is not None:
        write_predictions(predictions, rows, results)
    return KitRun(engine_name, Path(data), score_kit(rows, results, seconds))


def format_run(run: KitRun, show_errors: bool = False) -> str:
    """The text report of a run; with ``show_errors``, one line per mistake (row id, no text)."""
    evaluation = run.evaluation
    lines = [f"engine {run.engine} on {run.data.name}", evaluation.report()]
    if evaluation.seconds:
        lines.append(f"speed: {evaluation.rows / evaluation.seconds:.0f} sentences/s (engine time only)")
    if show_errors:
        lines += [f"{row_id}\t{attribute}\tgold={gold}\tpredicted={predicted}"
                  for row_id, attribute, gold, predicted in evaluation.errors]
    return "\n".join(lines)


def _accuracy(pairs: Sequence[tuple[str, str]]) -> float:
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0


def _class_scores(pairs: Iterable[tuple[str, str]]) -> dict[str, ClassScore]:
    pairs = list(pairs)
    gold_counts = Counter(g for g, _ in pairs)
    predicted_counts = Counter(p for _, p in pairs)
    hits = Counter(g for g, p in pairs if g == p)
    scores = {}
    for label in sorted(set(gold_counts) | set(predicted_counts)):
        precision, recall, f1 = precision_recall_f1(hits[label], predicted_counts[label], hits[label],
                                                    gold_counts[label])
        scores[label] = ClassScore(precision, recall, f1, gold_counts[label])
    return scores

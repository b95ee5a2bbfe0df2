"""Dev-only evaluation of the ConText assertion stage on the NegEx kit TSVs.

The kit (columns ``id, note, phrase, sentence, negation, temporality, experiencer``)
labels one phrase per sentence with three attributes. Each row becomes one
``ContextAssertion.assess`` call over the whole sentence, and the engine's output is
mapped onto the kit's vocabulary:

* negation:    absent -> ``Negated``, anything else -> ``Affirmed``
* experiencer: associated_with_someone_else -> ``Other``, else ``Patient``
  (the kit's ``Family member`` and ``Other`` are both scored as ``Other``)
* temporality: hypothetical / conditional -> ``Not particular``, else
  ``is_historical`` -> ``Historical``, else ``Recent``

Run ``python -m clinlake.pipelines.assertion_eval KIT.tsv [--rules conf/context_rules.yaml]``
for a metrics report. Nothing here prints or raises with sentence text (the kit is
de-identified, but the habit matters for real notes); error listings carry row ids only.
"""
from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from .context import DEFAULT_RULES_PATH, ContextAssertion
from .types import AssertionResult, Sentence, Token

ATTRIBUTES: tuple[str, ...] = ("negation", "temporality", "experiencer")
Tokenizer = Callable[[str], Sequence[Token]]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def regex_tokenize(text: str) -> list[Token]:
    """Word / single-punctuation tokens with offsets relative to ``text``."""
    return [Token(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


def whole_sentence(text: str, tokenizer: Tokenizer = regex_tokenize) -> Sentence:
    """The whole string as one Sentence (index 0), tokenized by ``tokenizer``."""
    return Sentence(0, 0, len(text), tuple(tokenizer(text)))


def locate_phrase(phrase: str, sentence: str) -> tuple[int, int] | None:
    """Span of ``phrase`` in ``sentence``, ignoring case and runs of whitespace."""
    words = phrase.split()
    if not words:
        return None
    match = re.search(r"\s+".join(map(re.escape, words)), sentence, flags=re.IGNORECASE)
    return (match.start(), match.end()) if match else None


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


def read_kit(path: str | Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def predict_row(
    engine: ContextAssertion, row: Mapping[str, str], tokenizer: Tokenizer = regex_tokenize
) -> AssertionResult | None:
    """Engine result for one kit row, or None when the phrase is not in the sentence."""
    text = row["sentence"]
    span = locate_phrase(row["phrase"], text)
    if span is None:
        return None
    return engine.assess(text, whole_sentence(text, tokenizer), [span])[0]


def evaluate_kit(
    path: str | Path,
    engine: ContextAssertion,
    tokenizer: Tokenizer = regex_tokenize,
) -> KitEvaluation:
    """Run ``engine`` over every kit row and score the three attributes."""
    evaluation = KitEvaluation()
    pairs: dict[str, list[tuple[str, str]]] = {attribute: [] for attribute in ATTRIBUTES}
    for row in read_kit(path):
        result = predict_row(engine, row, tokenizer)
        if result is None:
            evaluation.unlocated.append(row["id"])
            continue
        evaluation.rows += 1
        gold, predicted = _gold_labels(row), to_kit_labels(result)
        for attribute in ATTRIBUTES:
            pairs[attribute].append((gold[attribute], predicted[attribute]))
            if gold[attribute] != predicted[attribute]:
                evaluation.errors.append((row["id"], attribute, gold[attribute], predicted[attribute]))
    for attribute, attribute_pairs in pairs.items():
        evaluation.accuracy[attribute] = _accuracy(attribute_pairs)
        evaluation.per_class[attribute] = _class_scores(attribute_pairs)
    return evaluation


def _accuracy(pairs: Sequence[tuple[str, str]]) -> float:
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0


def _class_scores(pairs: Iterable[tuple[str, str]]) -> dict[str, ClassScore]:
    pairs = list(pairs)
    gold_counts = Counter(g for g, _ in pairs)
    predicted_counts = Counter(p for _, p in pairs)
    hits = Counter(g for g, p in pairs if g == p)
    scores = {}
    for label in sorted(set(gold_counts) | set(predicted_counts)):
        precision = hits[label] / predicted_counts[label] if predicted_counts[label] else 0.0
        recall = hits[label] / gold_counts[label] if gold_counts[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = ClassScore(precision, recall, f1, gold_counts[label])
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score the ConText assertion rules on a NegEx kit TSV.")
    parser.add_argument("kit", type=Path)
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES_PATH)
    parser.add_argument("--max-scope", type=int, default=12)
    parser.add_argument("--show-errors", action="store_true", help="list row ids of mistakes (no text)")
    args = parser.parse_args(argv)
    engine = ContextAssertion.from_file(args.rules, max_scope=args.max_scope)
    evaluation = evaluate_kit(args.kit, engine)
    print(evaluation.report())
    if args.show_errors:
        for row_id, attribute, gold, predicted in evaluation.errors:
            print(f"{row_id}\t{attribute}\tgold={gold}\tpredicted={predicted}")


if __name__ == "__main__":
    main()

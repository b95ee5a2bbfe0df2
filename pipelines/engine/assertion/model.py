"""Trained assertion classifier (ONNX, served with onnxruntime).

It has the :class:`~clinlake.pipelines.engine.types.AssertionEngine` interface of the ConText
rules (:mod:`.context`) and the hybrid (:mod:`.hybrid`):
``assess(text, sentence, targets, section) -> list[AssertionResult]``, so the pipeline can
hold any of the three.

The model (trained by :mod:`clinlake.pipelines.training.assertion`, shipped in
``models/assertion/``) reads the sentence as word/punctuation pieces (the same
:data:`~clinlake.pipelines.engine.pieces.WORD_PIECE` split the rules use, so the
tokenizer that built the Sentence does not matter), lowercased with digits folded to ``0``.
Each piece gets a *position id* saying where it sits relative to the target (inside it, or
1, 2, 3, 4, 5-6, 7-9, 10-14, 15+ pieces to its left or right). A masked two-layer CNN
over word+position embeddings is max-pooled over the whole window and over the target; four
softmax heads answer four questions:

* ``negation``    affirmed | negated
* ``certainty``   certain | possible
* ``temporality`` recent | historical | not_particular  (hypothetical/conditional)
* ``experiencer`` patient | other

A model whose ``config.json`` lists ``cue_categories`` also reads the ConText rules' analysis of the
sentence (a third input, ``cues``): each piece of a trigger the rules chose carries its category, and
whether that trigger modifies the target (:class:`~clinlake.pipelines.engine.assertion.context.Cue`;
ids: 0 none, ``1 + k`` a modifying cue of the k-th category, ``1 + K + k`` one that does not). So the
network learns from the kit when to trust the lexicon's cues instead of relearning them from a few
hundred rows. The hybrid hands the model the cues of its own rules; the model engine alone runs the
rules for them (``cue_rules``).

:func:`model_label` turns the four answers into one of the six i2b2 labels plus the
historical flag (associated_with_someone_else > hypothetical > absent > possible > present,
as in the rules). Padding is masked after every layer, so a target's result does not
depend on the other targets batched with it.

Runtime code imports only numpy and onnxruntime (imported when a model is loaded). Note
text is PHI: errors raised here carry offsets and file names, never text.
"""
from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clinlake.pipelines.engine.assertion.context import ContextAssertion, Cue
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH, HISTORICAL_DEFAULT
from clinlake.pipelines.engine.batching import padded_runs
from clinlake.pipelines.engine.onnx_session import open_session
from clinlake.pipelines.engine.pieces import WORD_PIECE
from clinlake.pipelines.engine.types import AssertionResult, Sentence
from clinlake.pipelines.resources import package_resource

MODEL_DIR_DEFAULT = package_resource("models/assertion")  # the shipped model
MODEL_FILE = "model.onnx"
VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.json"
HYBRID_FILE = "hybrid.json"

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
HEADS: Mapping[str, tuple[str, ...]] = {
    "negation": ("affirmed", "negated"),
    "certainty": ("certain", "possible"),
    "temporality": ("recent", "historical", "not_particular"),
    "experiencer": ("patient", "other"),
}
# Distance buckets (in pieces from the target) -> position id offsets.
_BUCKET_EDGES: tuple[int, ...] = (1, 2, 3, 4, 5, 7, 10, 15)
N_BUCKETS = len(_BUCKET_EDGES)
POS_PAD, POS_TARGET = 0, 1
N_POSITIONS = 2 + 2 * N_BUCKETS  # pad, target, left buckets, right buckets
DEFAULT_WINDOW = 40  # pieces kept on each side of the target
MAX_TARGET_PIECES = 24
MAX_ROWS = 512  # targets per network call (bounded memory on notes with thousands of entities)
# What one extra network call costs, in padded pieces of CNN work (onnxruntime's per-call cost
# measured at ~25 pieces on one core): rows of unequal length go in separate calls when padding
# them to one width would cost more than this.
CALL_COST_PIECES = 24

# The rule categories a cue-reading model is trained with (written to its config.json; the serving
# model reads its own list from there). PSEUDO and TERMINATE triggers have no scope and are no cues.
CUE_CATEGORIES: tuple[str, ...] = ("CONDITIONAL", "FAMILY", "HISTORICAL", "HYPOTHETICAL", "NEGATED_EXISTENCE",
                                   "POSSIBLE_EXISTENCE")

_DIGIT = re.compile(r"\d")


# --- features ---------------------------------------------------------------------------


def normalize(piece: str) -> str:
    return _DIGIT.sub("0", piece.lower())


def _bucket(distance: int) -> int:
    """0-based bucket of a distance >= 1."""
    index = 0
    for i, edge in enumerate(_BUCKET_EDGES):
        if distance >= edge:
            index = i
    return index


def left_position(distance: int) -> int:
    return 2 + _bucket(distance)


def right_position(distance: int) -> int:
    return 2 + N_BUCKETS + _bucket(distance)


# position ids by distance, looked up instead of bucketed per piece (index 0 unused; every
# distance from the last bucket edge on shares that bucket)
_FAR = _BUCKET_EDGES[-1]
_LEFT_POSITIONS = [POS_PAD] + [left_position(d) for d in range(1, _FAR + 1)]
_RIGHT_POSITIONS = [POS_PAD] + [right_position(d) for d in range(1, _FAR + 1)]


def encode_target(
    text: str,
    span: tuple[int, int],
    target: tuple[int, int],
    vocab: Mapping[str, int],
    window: int = DEFAULT_WINDOW,
    *,
    cues: Sequence[Cue] | None = None,
    cue_categories: Sequence[str] = CUE_CATEGORIES,
) -> tuple[list[int], ...]:
    """(token ids, position ids) for one target inside the text span ``span`` (note offsets), and
    the cue ids when ``cues`` (the target's :class:`Cue` s) is given.

    Pieces overlapping the target are the target; ``window`` pieces are kept each side.
    A sentence boundary inside the window is marked with ``<s>`` / ``</s>``.
    """
    return encode_targets(text, span, [target], vocab, window, cues=None if cues is None else [cues],
                          cue_categories=cue_categories)[0]


def _cue_row(starts: Sequence[int], lo: int, hi: int, cues: Sequence[Cue], cue_categories: Sequence[str]) -> list[int]:
    """Cue ids of pieces ``lo``..``hi`` (exclusive): a piece inside a cue's span gets its id; a cue
    modifying the target wins over one that does not (chosen triggers never overlap, but pattern
    and literal matches are selected apart)."""
    row = [0] * (hi - lo)
    n = len(cue_categories)
    for cue in cues:
        try:
            k = cue_categories.index(cue.category)
        except ValueError:  # a category the model was not trained with
            continue
        value = 1 + k + (0 if cue.modifies else n)
        for i in range(max(lo, bisect_left(starts, cue.start)), min(hi, bisect_left(starts, cue.end))):
            if row[i - lo] == 0 or (cue.modifies and row[i - lo] > n):
                row[i - lo] = value
    return row


@lru_cache(maxsize=None)
def _left_positions(length: int) -> tuple[int, ...]:
    """Position ids of ``length`` context pieces left of a target, farthest first (lengths are at
    most the window plus one, so the cache stays small)."""
    return tuple(_LEFT_POSITIONS[min(length - i, _FAR)] for i in range(length))


@lru_cache(maxsize=None)
def _right_positions(length: int) -> tuple[int, ...]:
    """Position ids of ``length`` context pieces right of a target, nearest first."""
    return tuple(_RIGHT_POSITIONS[min(i, _FAR)] for i in range(1, length + 1))


MAX_MEMO_PIECES = 200_000  # a serving model's piece -> id memo is emptied when it grows past this


def encode_targets(
    text: str,
    span: tuple[int, int],
    targets: Sequence[tuple[int, int]],
    vocab: Mapping[str, int],
    window: int = DEFAULT_WINDOW,
    memo: dict[str, int] | None = None,
    *,
    cues: Sequence[Sequence[Cue]] | None = None,
    cue_categories: Sequence[str] = CUE_CATEGORIES,
) -> list[tuple[list[int], ...]]:
    """:func:`encode_target` of each target of one span, the span's pieces read and looked up
    once (a sentence with several entities was tokenised once per entity before). ``memo`` keeps
    each piece's id as written, across calls (normalising every piece again cost more than the rest).
    ``cues``: each target's cues (aligned with ``targets``): rows then carry cue ids as a third list."""
    lo, hi = span
    matches = list(WORD_PIECE.finditer(text, lo, hi))
    starts = [m.start() for m in matches]
    ends = [m.end() for m in matches]
    unk = vocab[UNK]
    if memo is None:
        ids = [vocab.get(normalize(m.group()), unk) for m in matches]
    else:
        if len(memo) > MAX_MEMO_PIECES:
            memo.clear()
        pieces = [m.group() for m in matches]
        ids = [memo.get(piece, -1) for piece in pieces]  # ids are >= 0: -1 is "not seen yet"
        if -1 in ids:
            for i, piece in enumerate(pieces):
                if ids[i] < 0:
                    ids[i] = memo[piece] = vocab.get(normalize(piece), unk)
    bos, eos = vocab.get(BOS, unk), vocab.get(EOS, unk)
    rows = []
    for t_start, t_end in targets:
        # pieces are ordered and disjoint: those ending by the target's start are a prefix,
        # those starting at or after its end a suffix, the rest overlap the target
        first_inside = bisect_right(ends, t_start)
        first_right = max(first_inside, bisect_left(starts, t_end))
        inside = ids[first_inside:first_right][:MAX_TARGET_PIECES] or [unk]  # spaces only: a placeholder
        left = ids[max(0, first_inside - window):first_inside]
        right = ids[first_right:first_right + window]
        if first_inside <= window:
            left = [bos, *left]
        if len(ids) - first_right <= window:
            right = [*right, eos]
        positions = [*_left_positions(len(left)), *[POS_TARGET] * len(inside), *_right_positions(len(right))]
        if cues is None:
            rows.append((left + inside + right, positions))
            continue
        lo = max(0, first_inside - window)
        cue_row = _cue_row(starts, lo, min(len(ids), first_right + window), cues[len(rows)], cue_categories)
        cue_left = cue_row[:first_inside - lo]
        cue_inside = cue_row[first_inside - lo:first_right - lo][:MAX_TARGET_PIECES] or [0]
        cue_right = cue_row[first_right - lo:]
        if len(left) > len(cue_left):
            cue_left = [0, *cue_left]  # <s>
        if len(right) > len(cue_right):
            cue_right = [*cue_right, 0]  # </s>
        rows.append((left + inside + right, positions, cue_left + cue_inside + cue_right))
    return rows


def pad_batch(rows: Sequence[tuple[list[int], ...]]) -> tuple[np.ndarray, ...]:
    """The rows' lists (token ids, position ids[, cue ids]) as zero-padded [rows, width] arrays."""
    width = max(len(row[0]) for row in rows)
    arrays = tuple(np.zeros((len(rows), width), dtype=np.int64) for _ in rows[0])
    for i, row in enumerate(rows):
        for array, values in zip(arrays, row):
            array[i, : len(values)] = values
    return arrays


INPUT_NAMES: tuple[str, ...] = ("tokens", "positions", "cues")


def model_feeds(rows: Sequence[tuple[list[int], ...]]) -> dict[str, np.ndarray]:
    """The network's inputs for ``rows`` (``tokens``, ``positions`` and, for a cue-reading model, ``cues``)."""
    return dict(zip(INPUT_NAMES, pad_batch(rows)))


# --- label mapping ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelAnswer:
    """The model's four probabilities for one target (positive class of each question)."""

    negated: float
    possible: float
    historical: float
    not_particular: float
    other: float

    @classmethod
    def from_probs(cls, probs: Mapping[str, np.ndarray]) -> "ModelAnswer":
        temporality = probs["temporality"]
        return cls(
            negated=float(probs["negation"][1]),
            possible=float(probs["certainty"][1]),
            historical=float(temporality[1]),
            not_particular=float(temporality[2]),
            other=float(probs["experiencer"][1]),
        )

    @classmethod
    def from_batch(cls, outputs: Mapping[str, np.ndarray]) -> list["ModelAnswer"]:
        """One answer per row of the heads' [rows, classes] probabilities."""
        temporality = outputs["temporality"]
        columns = (outputs["negation"][:, 1], outputs["certainty"][:, 1], temporality[:, 1], temporality[:, 2],
                   outputs["experiencer"][:, 1])
        return [cls(*values) for values in zip(*(c.astype(np.float64).tolist() for c in columns))]

    @property
    def is_not_particular(self) -> bool:
        return self.not_particular > max(self.historical, 1.0 - self.historical - self.not_particular)

    @property
    def is_historical(self) -> bool:
        return self.historical > max(self.not_particular, 1.0 - self.historical - self.not_particular)


def model_label(answer: ModelAnswer) -> AssertionResult:
    """Six-label decision from the four heads, same precedence as the rules."""
    if answer.other > 0.5:
        label, confidence = "associated_with_someone_else", answer.other
    elif answer.is_not_particular:
        label, confidence = "hypothetical", answer.not_particular
    elif answer.negated > 0.5:
        label, confidence = "absent", answer.negated
    elif answer.possible > 0.5:
        label, confidence = "possible", answer.possible
    else:
        label = "present"
        confidence = (1.0 - answer.negated) * (1.0 - answer.possible)
    return AssertionResult(label, answer.is_historical, round(float(confidence), 6))


# --- the model engine -------------------------------------------------------------------


class AssertionModel:
    """The ONNX assertion classifier behind the ``assess`` interface."""

    def __init__(
        self,
        model_dir: str | Path = MODEL_DIR_DEFAULT,
        *,
        section_defaults: Mapping[str, str] | None = None,
        threads: int | None = None,
        cue_rules: ContextAssertion | None = None,
    ) -> None:
        """``cue_rules``: the ConText rules whose cues a cue-reading model is given when it is the
        engine alone (:meth:`assess_many`; default: the shipped rule file, loaded when first needed).
        Callers of :meth:`answers_many` pass the cues themselves, as the hybrid does."""
        model_dir = Path(model_dir)
        for name in (MODEL_FILE, VOCAB_FILE, CONFIG_FILE):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"assertion model file {name!r} missing in {model_dir}")
        self.model_dir = model_dir
        self.vocab: dict[str, int] = json.loads((model_dir / VOCAB_FILE).read_text(encoding="utf-8"))
        self.config: dict[str, Any] = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        self.window = int(self.config.get("window", DEFAULT_WINDOW))
        self.name = f"assertion-model@{self.config.get('version', 'unknown')}"
        self.section_defaults = dict(section_defaults or {})
        # a model trained with the rules' cues as an input lists their categories (empty: it reads none)
        self.cue_categories: tuple[str, ...] = tuple(self.config.get("cue_categories") or ())
        self.cue_rules = cue_rules
        self._session = open_session(model_dir / MODEL_FILE, threads=threads)
        inputs = {i.name for i in self._session.get_inputs()}
        if ("cues" in inputs) != bool(self.cue_categories):
            raise ValueError(f"assertion model in {model_dir}: config.json's cue_categories and the graph's "
                             f"inputs ({', '.join(sorted(inputs))}) disagree")
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._piece_ids: dict[str, int] = {}  # piece as written -> vocabulary id (encode_targets' memo)

    @property
    def reads_cues(self) -> bool:
        """Whether the network takes the rules' cues as an input (then :meth:`answers_many` needs them)."""
        return bool(self.cue_categories)

    def answers(self, text: str, span: tuple[int, int], targets: Sequence[tuple[int, int]],
                cues: Sequence[Sequence[Cue]] | None = None) -> list[ModelAnswer]:
        """Raw model answers for targets inside the text span ``span`` (``cues``: each target's, for a
        model that :attr:`reads_cues`)."""
        return self.answers_many(text, [(span, targets)], None if cues is None else [cues])[0]

    def answers_many(self, text: str, groups: Sequence[tuple[tuple[int, int], Sequence[tuple[int, int]]]],
                     cues: Sequence[Sequence[Sequence[Cue]]] | None = None) -> list[list[ModelAnswer]]:
        """:meth:`answers` of each (span, targets) group of one note, all groups' targets
        together (one call per sentence cost more in call overhead than in the CNN). ``cues``: per
        group, each target's cues (:meth:`ContextAssertion.assess_with_cues`); required by a model that
        :attr:`reads_cues`, ignored by one that does not."""
        if self.cue_categories and cues is None:
            raise ValueError(f"{self.name} reads the rules' cues: pass cues= (ContextAssertion.assess_with_cues)")
        if not self.cue_categories:
            cues = None
        rows = [row for k, (span, targets) in enumerate(groups)
                for row in encode_targets(text, span, targets, self.vocab, self.window, self._piece_ids,
                                          cues=None if cues is None else cues[k], cue_categories=self.cue_categories)]
        # Rows sorted by length and called in runs of similar length: padding every row of a note
        # to its longest was half the CNN's work on the sample notes. A row's answer does not
        # depend on its batch-mates or the padded width (masked after every layer).
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        answers: list[ModelAnswer] = [None] * len(rows)  # type: ignore[list-item]
        for lo, hi in padded_runs([len(rows[i][0]) for i in order], call_cost=CALL_COST_PIECES, max_rows=MAX_ROWS):
            feeds = model_feeds([rows[i] for i in order[lo:hi]])
            outputs = dict(zip(self._outputs, self._session.run(self._outputs, feeds)))
            for i, answer in zip(order[lo:hi], ModelAnswer.from_batch(outputs)):
                answers[i] = answer
        grouped, at = [], 0
        for _, targets in groups:
            grouped.append(answers[at:at + len(targets)])
            at += len(targets)
        return grouped

    def assess(
        self, text: str, sentence: Sentence, targets: Sequence[tuple[int, int]], section: str | None = None
    ) -> list[AssertionResult]:
        return self.assess_many(text, [(sentence, targets, section)])[0]

    def assess_many(self, text: str, groups: Sequence[tuple[Sentence, Sequence[tuple[int, int]], str | None]], *,
                    labels: Sequence[Sequence[str | None]] | None = None) -> list[list[AssertionResult]]:
        """:meth:`assess` of each (sentence, targets, section) group of one note (the targets' NER
        ``labels`` are not read), batched."""
        for sentence, targets, _ in groups:
            _check_targets(sentence, targets)
        cues = None
        if self.cue_categories:
            if self.cue_rules is None:
                self.cue_rules = ContextAssertion.from_file(DEFAULT_RULES_PATH)
            cues = self.cue_rules.assess_many_with_cues(text, groups)[1]
        answers = self.answers_many(text, [((s.start, s.end), targets) for s, targets, _ in groups], cues)
        results = []
        for (_, _, section), group_answers in zip(groups, answers):
            labels = [model_label(a) for a in group_answers]
            default = self.section_defaults.get(section) if section is not None else None
            results.append(labels if default is None else [_apply_section_default(r, default) for r in labels])
        return results


def _apply_section_default(result: AssertionResult, default: str) -> AssertionResult:
    """Section defaults for the model engine: a family-history section makes the relative
    the experiencer; a history section sets the historical flag; others apply when the
    model found nothing (``present``)."""
    if default == HISTORICAL_DEFAULT:
        return AssertionResult(result.assertion, True, result.confidence)
    if default == "associated_with_someone_else" or result.assertion == "present":
        return AssertionResult(default, result.is_historical, result.confidence)
    return result


def _check_targets(sentence: Sentence, targets: Sequence[tuple[int, int]]) -> None:
    for start, end in targets:
        if not sentence.start <= start < end <= sentence.end:
            raise ValueError(
                f"target span [{start}, {end}) is empty or outside sentence {sentence.index} "
                f"[{sentence.start}, {sentence.end})"
            )

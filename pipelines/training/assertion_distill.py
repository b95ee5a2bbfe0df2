"""Distil the assertion ensemble into one network of a member's size.

The shipped assertion model averages three CNNs (:func:`~pipelines.training.assertion_net.make_ensemble`):
by cross-validation the average is worth about 0.03 hybrid Historical F1 over one network, but every
target the hybrid asks the model about costs three networks. A *student* here is one network of the
same recipe trained on

* the recipe's gold examples (the NegEx kit rows, MACCROBAT's train events), on their gold labels where
  they have them and on the *teacher's* (the ensemble's averaged probabilities: soft labels) for the heads
  their source leaves masked (certainty on the kit, temporality and experiencer on MACCROBAT);
* *silver* targets that carry no label at all, every head on the teacher's probabilities:
  ``notes``, the entities clinlake's own default pipeline finds in the bundled MTSamples notes (real
  transcriptions, the kit's kind of text; their sentences from the pipeline's splitter), and ``chia``,
  Chia's train conditions in their criteria (:func:`~pipelines.training.assertion_data.chia_examples`,
  its weak labels dropped).

No kit row is ever silver, so under cross-validation the held-out block is unseen by teacher and
student alike (``clinlake evaluate assertion-cv --student``). Training needs torch (the ``train`` extra).
Nothing here prints or raises with text.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Literal, Sequence

from clinlake.pipelines.engine.assertion.model import DEFAULT_WINDOW, HEADS
from clinlake.pipelines.resources import sample_texts
from clinlake.pipelines.training.assertion_net import build_vocab, encode_example, torch_inputs, train
from clinlake.pipelines.training.assertion_data import IGNORE, Example, chia_examples, chia_train_dir

SilverSource = Literal["notes", "chia"]
SILVER_SOURCES: tuple[SilverSource, ...] = ("notes", "chia")
SILVER = "silver"  # the source name of an example with no gold label (its rows' weight: ``silver_weight``)
_NO_LABELS = {head: IGNORE for head in HEADS}


class SilverSourceError(ValueError):
    """An unknown silver source was asked for."""


def note_targets(texts: Sequence[str] | None = None) -> list[Example]:
    """Unlabelled targets: each entity the default pipeline (``conf/local.yaml``) finds in ``texts``
    (default: the bundled MTSamples notes), in its sentence."""
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.pipeline import Pipeline

    if texts is None:
        texts = sample_texts()
    # The rules are enough to find targets: entities do not depend on the assertion engine.
    pipeline = Pipeline.from_config(load_config(overrides={"pipeline.assertion.engine": "rules"}))
    examples = []
    for text in texts:
        sentences = pipeline.splitter.split(text)
        for entity in pipeline.annotate(text):
            sentence = sentences[entity.sentence_index]
            examples.append(Example(text, (sentence.start, sentence.end), (entity.start, entity.end),
                                    dict(_NO_LABELS), SILVER))
    return examples


def chia_targets(folder: Path) -> list[Example]:
    """Chia's train conditions as unlabelled targets (their weak labels dropped)."""
    return [replace(ex, labels=dict(_NO_LABELS), source=SILVER) for ex in chia_examples(folder)]


def parse_silver_sources(text: str) -> tuple[str, ...]:
    """A comma-separated list of silver sources (``--silver notes,chia``), checked."""
    sources = tuple(part for part in text.split(",") if part)
    if not sources:
        raise SilverSourceError(f"no silver source given (known: {', '.join(SILVER_SOURCES)})")
    _check_sources(sources)
    return sources


def _check_sources(sources: Sequence[str]) -> None:
    unknown = sorted(set(sources) - set(SILVER_SOURCES))
    if unknown:
        raise SilverSourceError(f"unknown silver source {unknown[0]!r} (known: {', '.join(SILVER_SOURCES)})")


def silver_examples(sources: Sequence[str], *, shared: Path | None = None) -> list[Example]:
    """The unlabelled targets of ``sources`` (:data:`SILVER_SOURCES`), in that order."""
    _check_sources(sources)
    examples: list[Example] = []
    for source in sources:
        examples += note_targets() if source == "notes" else chia_targets(chia_train_dir(shared=shared))
    return examples


def teacher_probabilities(teacher, examples: Sequence[Example], vocab: dict[str, int], *,
                          window: int = DEFAULT_WINDOW, batch_size: int = 256,
                          cue_categories: Sequence[str] = ()) -> list[dict[str, tuple[float, ...]]]:
    """The teacher network's (an ensemble's averaged) probabilities of every head, per example
    (``cue_categories``: the teacher reads the examples' cues)."""
    import torch  # training only

    teacher.eval()
    # similar lengths batched together: padding is masked, so only the time changes
    order = sorted(range(len(examples)), key=lambda i: examples[i].span[1] - examples[i].span[0])
    probs: list[dict[str, tuple[float, ...]]] = [{}] * len(examples)
    with torch.no_grad():
        for first in range(0, len(order), batch_size):
            chunk = order[first:first + batch_size]
            inputs = torch_inputs([encode_example(examples[i], vocab, window, cue_categories) for i in chunk])
            outputs = [o.numpy() for o in teacher(*inputs)]
            for row, i in enumerate(chunk):
                probs[i] = {head: tuple(float(p) for p in outputs[k][row]) for k, head in enumerate(HEADS)}
    return probs


def with_teacher(examples: Sequence[Example], probs: Sequence[dict[str, tuple[float, ...]]]) -> list[Example]:
    """Copies of ``examples`` carrying the teacher's probabilities (used where a head's label is masked)."""
    return [replace(ex, soft=p) for ex, p in zip(examples, probs, strict=True)]


def train_student(gold: Sequence[Example], silver: Sequence[Example], teacher, teacher_vocab: dict[str, int], *,
                  epochs: int, seed: int, source_weight: dict[str, float], silver_weight: float = 1.0,
                  teacher_mix: float = 0.0, window: int = DEFAULT_WINDOW, cue_categories: Sequence[str] = (),
                  cue_dropout: float = 0.0, report: Callable[[str], None] = lambda line: None):
    """One network trained on ``gold`` (gold labels, mixed ``teacher_mix`` : 1 - ``teacher_mix`` with the
    teacher's; the teacher's alone where masked) and ``silver`` (the teacher's on every head); returns
    (network, its vocabulary: words of gold and silver alike). ``cue_categories``: teacher and student
    read the rules' cues (every example must carry them; ``cue_dropout``: see :func:`train`)."""
    examples = list(gold) + list(silver)
    labelled = with_teacher(examples, teacher_probabilities(teacher, examples, teacher_vocab, window=window,
                                                            cue_categories=cue_categories))
    vocab = build_vocab(labelled)
    report(f"student: {len(gold)} gold and {len(silver)} silver targets, vocab {len(vocab)}")
    weights = {**source_weight, SILVER: silver_weight}
    return train(labelled, vocab, epochs=epochs, seed=seed, source_weight=weights, teacher_mix=teacher_mix,
                 window=window, cue_categories=cue_categories, cue_dropout=cue_dropout), vocab

"""Distilling the assertion ensemble into one network (pipelines/training/assertion_distill.py)."""
import pytest

from clinlake.pipelines.engine.assertion.model import HEADS
from clinlake.pipelines.training.assertion_data import IGNORE, Example, chia_examples, chia_train_dir
from clinlake.pipelines.training.assertion_distill import (SILVER, SilverSourceError, chia_targets, note_targets,
                                                           silver_examples)

torch = pytest.importorskip("torch")

from clinlake.pipelines.training.assertion_net import _soft_targets, build_vocab, make_ensemble, train  # noqa: E402
from clinlake.pipelines.training.assertion_distill import teacher_probabilities, with_teacher  # noqa: E402

HISTORICAL = (0.0, 1.0, 0.0)  # temporality: recent, historical, not_particular


def _examples(n: int, *, temporality: int = IGNORE, soft=None) -> list[Example]:
    words = ["fever", "cough", "rash", "pain", "edema"]
    examples = []
    for i in range(n):
        text = f"Patient reports {words[i % 5]} and {words[(i + 2) % 5]} today ."
        start = text.index(words[i % 5])
        labels = {"negation": 0, "certainty": IGNORE, "temporality": temporality, "experiencer": 0}
        examples.append(Example(text, (0, len(text)), (start, start + len(words[i % 5])), labels, "kit",
                                None if soft is None else {h: soft.get(h, (1.0, 0.0)) for h in HEADS}))
    return examples


def _temporality(net, examples, vocab):
    probs = teacher_probabilities(net, examples, vocab)
    return [max(range(3), key=lambda c: p["temporality"][c]) for p in probs]


def test_soft_targets_are_none_without_a_teacher_and_zero_rows_where_an_example_has_none():
    plain = _examples(2)
    assert _soft_targets(plain) is None
    mixed = _examples(1, soft={"temporality": HISTORICAL}) + plain[:1]
    soft = _soft_targets(mixed)
    assert [tuple(t.shape) for t in soft] == [(2, len(classes)) for classes in HEADS.values()]
    temporality = soft[list(HEADS).index("temporality")]
    assert temporality[0].tolist() == list(HISTORICAL) and temporality[1].tolist() == [0.0, 0.0, 0.0]


def test_a_masked_head_learns_the_teachers_probabilities_and_a_gold_label_wins_unless_mixed_with_them():
    taught = _examples(40, soft={"temporality": HISTORICAL})  # temporality masked: learnt from the teacher
    vocab = build_vocab(taught)
    net = train(taught, vocab, epochs=25, seed=1, word_dropout=0.0)
    assert _temporality(net, taught, vocab) == [1] * 40
    gold = _examples(40, temporality=0, soft={"temporality": HISTORICAL})  # gold 'recent' beside the teacher
    net = train(gold, vocab, epochs=25, seed=1, word_dropout=0.0)
    assert _temporality(net, gold, vocab) == [0] * 40
    net = train(gold, vocab, epochs=25, seed=1, word_dropout=0.0, teacher_mix=1.0)  # the teacher alone
    assert _temporality(net, gold, vocab) == [1] * 40


def test_teacher_probabilities_are_each_examples_own_whatever_the_batching():
    examples = _examples(7, temporality=1)
    examples[3] = Example("Old fever .", (0, 11), (4, 9), dict(examples[3].labels))  # a shorter sentence
    vocab = build_vocab(examples, min_count=1)
    teacher = make_ensemble([train(examples, vocab, epochs=2, seed=s) for s in (1, 2)])
    batched = teacher_probabilities(teacher, examples, vocab, batch_size=3)
    for example, probs in zip(examples, batched):
        (alone,) = teacher_probabilities(teacher, [example], vocab)
        for head in HEADS:
            assert probs[head] == pytest.approx(alone[head], abs=1e-6)
            assert sum(probs[head]) == pytest.approx(1.0, abs=1e-5)
    carried = with_teacher(examples, batched)
    assert [ex.soft for ex in carried] == batched and all(ex.soft is None for ex in examples)


def test_silver_targets_carry_no_label():
    chia = chia_targets(chia_train_dir())
    assert len(chia) == len(chia_examples(chia_train_dir())) > 1000
    assert all(ex.source == SILVER and set(ex.labels.values()) == {IGNORE} for ex in chia)
    text = "HISTORY: The patient had pneumonia last year. She denies chest pain."
    notes = note_targets([text])
    assert notes and all(ex.source == SILVER and set(ex.labels.values()) == {IGNORE} for ex in notes)
    for ex in notes:  # each target inside its sentence, the sentence inside the note
        assert 0 <= ex.span[0] <= ex.target[0] < ex.target[1] <= ex.span[1] <= len(text)
    assert any(text[slice(*ex.target)] == "pneumonia" for ex in notes)
    with pytest.raises(SilverSourceError, match="unknown silver source 'web'"):
        silver_examples(["notes", "web"])

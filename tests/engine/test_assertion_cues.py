"""The assertion network reading the ConText rules' cues (context.Cue, model.encode_targets' cue ids,
a cue-reading model in the engines, the hybrid handing it the rules' cues)."""
import json

import numpy as np
import pytest

from clinlake.pipelines.engine.assertion.context import ContextAssertion, Cue
from clinlake.pipelines.engine.assertion.hybrid import HybridAssertion, HybridPolicy, combine
from clinlake.pipelines.engine.assertion.model import (CONFIG_FILE, CUE_CATEGORIES, HEADS, MODEL_FILE, VOCAB_FILE,
                                                       AssertionModel, ModelAnswer, encode_targets, model_feeds)
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.engine.types import AssertionResult
from clinlake.pipelines.evaluation.assertion_kit import span_sentence, whole_sentence
from clinlake.pipelines.training.assertion_data import Example, with_cues

N = len(CUE_CATEGORIES)
NEG, HIST = 1 + CUE_CATEGORIES.index("NEGATED_EXISTENCE"), 1 + CUE_CATEGORIES.index("HISTORICAL")


@pytest.fixture(scope="module")
def rules() -> ContextAssertion:
    return ContextAssertion.from_file(DEFAULT_RULES_PATH)


def span_of(text: str, phrase: str) -> tuple[int, int]:
    start = text.index(phrase)
    return start, start + len(phrase)


def test_assess_with_cues_returns_the_same_results_and_each_targets_cues(rules):
    text = "No history of asthma; cough since Monday."
    asthma, cough = span_of(text, "asthma"), span_of(text, "cough")
    sentence = whole_sentence(text)
    results, cues = rules.assess_with_cues(text, sentence, [asthma, cough])
    assert results == rules.assess(text, sentence, [asthma, cough])
    by_category = {c.category: c for c in cues[0]}
    assert by_category["NEGATED_EXISTENCE"] == Cue(0, 2, "NEGATED_EXISTENCE", True)
    assert by_category["HISTORICAL"] == Cue(3, 13, "HISTORICAL", True)
    # the same triggers, seen from the cough: the ';' ends their scopes
    assert {(c.start, c.end, c.category) for c in cues[1]} == {(c.start, c.end, c.category) for c in cues[0]}
    assert not any(c.modifies for c in cues[1])
    assert rules.assess_with_cues(text, sentence, []) == ([], [])


def test_cue_ids_mark_the_cue_pieces_by_category_and_whether_they_modify_the_target():
    text = "no history of asthma"
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "no": 4, "history": 5, "of": 6, "asthma": 7}
    target = span_of(text, "asthma")
    cues = [Cue(0, 2, "NEGATED_EXISTENCE", True), Cue(3, 13, "HISTORICAL", False), Cue(14, 16, "UNKNOWN", True)]
    ((ids, positions, cue_ids),) = encode_targets(text, (0, len(text)), [target], vocab, cues=[cues])
    assert ids == [2, 4, 5, 6, 7, 3]  # <s> no history of asthma </s>
    assert cue_ids == [0, NEG, HIST + N, HIST + N, 0, 0]  # a category the model does not know is no cue
    assert len(cue_ids) == len(positions)
    # without cues the rows are as before: two lists
    assert encode_targets(text, (0, len(text)), [target], vocab) == [(ids, positions)]


def test_cue_ids_follow_the_window():
    words = [f"w{i}" for i in range(30)]
    text = " ".join(["denies", *words, "fever"])
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    target = span_of(text, "fever")
    cue = Cue(0, 6, "NEGATED_EXISTENCE", True)
    ((ids, _, cue_ids),) = encode_targets(text, (0, len(text)), [target], vocab, window=10, cues=[[cue]])
    assert len(ids) == len(cue_ids) == 10 + 1 + 1  # no <s>: the window cuts the sentence's start
    assert cue_ids == [0] * 12
    ((ids, _, cue_ids),) = encode_targets(text, (0, len(text)), [target], vocab, window=40, cues=[[cue]])
    assert cue_ids[:2] == [0, NEG] and set(cue_ids[2:]) == {0} and len(cue_ids) == len(ids)
    feeds = model_feeds(encode_targets(text, (0, len(text)), [target, span_of(text, "w3")], vocab, cues=[[cue], [cue]]))
    assert sorted(feeds) == ["cues", "positions", "tokens"]
    assert feeds["cues"].shape == feeds["tokens"].shape


def test_with_cues_attaches_the_rules_cues_of_each_examples_target(rules):
    text = "Seen today. She denies chest pain."
    span = (12, len(text))
    example = Example(text, span, span_of(text, "chest pain"))
    (cued,) = with_cues([example], rules)
    assert cued.cues == (Cue(text.index("denies"), text.index("denies") + 6, "NEGATED_EXISTENCE", True),)
    assert example.cues is None
    sentence = span_sentence(text, span)
    assert (sentence.start, sentence.end) == span and sentence.tokens[0].text == "She"
    assert span_sentence(text, (0, len(text))) == whole_sentence(text)  # a kit row is its whole text


@pytest.fixture()
def cue_model(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from clinlake.pipelines.training.assertion_net import export_onnx, make_net, n_cue_ids

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "no": 4, "history": 5, "of": 6, "asthma": 7, "cough": 8}
    net = make_net(len(vocab), n_cues=n_cue_ids(CUE_CATEGORIES))
    with torch.no_grad():  # make the cue embedding matter: large, distinct rows
        net.cue.weight.normal_(0.0, 3.0)
        net.cue.weight[0].zero_()
    export_onnx(net.eval(), tmp_path / MODEL_FILE, len(vocab))
    (tmp_path / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"version": "t-cues", "window": 40, "cue_categories":
                                                    list(CUE_CATEGORIES),
                                                    "heads": {h: list(c) for h, c in HEADS.items()}}))
    return tmp_path


def test_a_cue_reading_model_needs_cues_and_its_answers_depend_on_them(cue_model, rules):
    model = AssertionModel(cue_model)
    assert model.reads_cues and model.cue_categories == CUE_CATEGORIES
    text = "No history of asthma"
    target = span_of(text, "asthma")
    with pytest.raises(ValueError, match="cues"):
        model.answers(text, (0, len(text)), [target])
    cues = rules.assess_with_cues(text, whole_sentence(text), [target])[1]
    with_rule_cues = model.answers(text, (0, len(text)), [target], cues)[0]
    without_any = model.answers(text, (0, len(text)), [target], [()])[0]
    assert with_rule_cues != without_any
    # the engine alone runs the rules for its cues
    (result,) = model.assess(text, whole_sentence(text), [target])
    assert result == model.assess_many(text, [(whole_sentence(text), [target], None)])[0][0]
    assert model.cue_rules is not None


def test_config_and_graph_must_agree_on_cues(cue_model):
    config = json.loads((cue_model / CONFIG_FILE).read_text())
    del config["cue_categories"]
    (cue_model / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cue_categories"):
        AssertionModel(cue_model)


def test_the_hybrid_gives_a_cue_reading_model_the_rules_cues(cue_model, rules):
    model = AssertionModel(cue_model)
    policy = HybridPolicy(historical="model", not_particular="model")
    hybrid = HybridAssertion(rules, model, policy)
    text = "No history of asthma; cough since Monday."
    targets = [span_of(text, "asthma"), span_of(text, "cough")]
    sentence = whole_sentence(text)
    rule_results, cues = rules.assess_with_cues(text, sentence, targets)
    answers = model.answers(text, (0, len(text)), targets, cues)
    assert hybrid.assess(text, sentence, targets) == [combine(r, a, policy) for r, a in zip(rule_results, answers)]


def test_a_section_that_makes_targets_historical_holds_where_the_model_decides_the_flag(cue_model):
    rules = ContextAssertion.from_file(DEFAULT_RULES_PATH, section_defaults={"past_medical_history": "historical"})
    never_historical = ModelAnswer(negated=0.0, possible=0.0, historical=0.0, not_particular=0.0, other=0.0)
    policy = HybridPolicy(historical="model")
    rule = AssertionResult("present", True, 0.6)
    assert combine(rule, never_historical, policy).is_historical is False
    assert combine(rule, never_historical, policy, section_historical=True).is_historical is True
    hybrid = HybridAssertion(rules, AssertionModel(cue_model), policy)
    text = "Asthma."
    (in_section,) = hybrid.assess(text, whole_sentence(text), [(0, 6)], "past_medical_history")
    assert in_section.is_historical is True
    assert np.isfinite(in_section.confidence)


def test_cue_dropout_hides_a_share_of_the_rows_cues_from_training(rules):
    torch = pytest.importorskip("torch")
    from clinlake.pipelines.training.assertion_net import build_vocab, make_net, n_cue_ids, train

    texts = ["She denies chest pain .", "History of asthma as a child .", "No cough today .", "Mother had cancer ."]
    examples = []
    for i, text in enumerate(texts * 4):
        target = span_of(text, text.split()[-2])
        labels = {"negation": i % 2, "certainty": 0, "temporality": i % 3, "experiencer": 0}
        examples.append(Example(text, (0, len(text)), target, labels, "kit"))
    examples = with_cues(examples, rules)
    assert sum(1 for ex in examples if ex.cues) >= 12  # the rules find cues in most rows
    vocab = build_vocab(examples, min_count=1)

    def cue_change(dropout: float) -> float:
        torch.manual_seed(5)  # train() seeds with 5 then builds the net: the same initial weights
        start = make_net(len(vocab), n_cues=n_cue_ids(CUE_CATEGORIES)).cue.weight.detach().clone()
        net = train(examples, vocab, epochs=2, batch_size=4, seed=5, cue_categories=CUE_CATEGORIES,
                    cue_dropout=dropout)
        return float((net.cue.weight.detach() - start).abs().max())

    # every row without its cues: the cue embedding learns nothing (only AdamW's weight decay moves it)
    assert cue_change(1.0) < 1e-4
    assert cue_change(0.5) > 1e-3
    assert cue_change(0.0) > 1e-3

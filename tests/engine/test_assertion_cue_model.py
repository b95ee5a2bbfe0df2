"""The hybrid's second, cue-reading network for the not-particular flag (hybrid.py, ``cue_model``)."""
from __future__ import annotations

import pytest

from clinlake.pipelines.engine.assertion.context import ContextAssertion, Cue
from clinlake.pipelines.engine.assertion.hybrid import (CUE_MODEL, HybridAssertion, HybridPolicy, HybridPolicyError,
                                                        combine, needs_cue_model)
from clinlake.pipelines.engine.assertion.model import AssertionModel, ModelAnswer
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.engine.types import AssertionResult
from clinlake.pipelines.evaluation.assertion_kit import span_sentence

ASKS = HybridPolicy(not_particular=CUE_MODEL)


def answer(**probs: float) -> ModelAnswer:
    values = {"negated": 0.0, "possible": 0.0, "historical": 0.0, "not_particular": 0.0, "other": 0.0}
    return ModelAnswer(**{**values, **probs})


class RecordingCueModel:
    """Stands in for a cue-reading AssertionModel: answers not-particular for every target it is
    asked about and records which targets those were, with the cues it was given."""

    reads_cues = True
    model_dir = "recording"

    def __init__(self, not_particular: float) -> None:
        self.not_particular = not_particular
        self.asked: list[tuple[tuple[int, int], tuple]] = []

    def answers_many(self, text, groups, cues=None):
        assert cues is not None, "the hybrid must give the cue model the rules' cues"
        out = []
        for (_, targets), group_cues in zip(groups, cues, strict=True):
            self.asked.extend(zip(targets, group_cues, strict=True))
            out.append([answer(not_particular=self.not_particular) for _ in targets])
        return out


@pytest.fixture(scope="module")
def rules() -> ContextAssertion:
    return ContextAssertion.from_file(DEFAULT_RULES_PATH)


@pytest.fixture(scope="module")
def model() -> AssertionModel:
    return AssertionModel()


def span_of(text: str, phrase: str) -> tuple[int, int]:
    start = text.index(phrase)
    return start, start + len(phrase)


def test_only_the_not_particular_flag_may_come_from_the_cue_model():
    assert HybridPolicy(not_particular="cue_model").asks_cue_model
    assert not HybridPolicy().asks_cue_model
    for attribute in ("negation", "possible", "historical", "other"):
        with pytest.raises(HybridPolicyError, match=f"{attribute}.*cue_model"):
            HybridPolicy(**{attribute: "cue_model"})


def test_the_cue_model_is_asked_only_where_a_hypothetical_or_conditional_cue_is_in_the_sentence():
    hypothetical_elsewhere = (Cue(0, 4, "HYPOTHETICAL", False),)
    conditional = (Cue(10, 14, "CONDITIONAL", True),)
    negation_only = (Cue(0, 2, "NEGATED_EXISTENCE", True),)
    assert needs_cue_model(hypothetical_elsewhere, ASKS) and needs_cue_model(conditional, ASKS)
    assert not needs_cue_model(negation_only, ASKS) and not needs_cue_model((), ASKS)
    assert not needs_cue_model(conditional, HybridPolicy(not_particular="model"))


def test_combine_takes_the_not_particular_flag_from_the_cue_model_where_it_was_asked():
    conditional = AssertionResult("conditional", False, 0.75, "if", 0, 2, "CONDITIONAL")
    present = AssertionResult("present", False, 0.8)
    no, yes = answer(not_particular=0.1), answer(not_particular=0.9)
    # it unmakes the rules' conditional, and makes a hypothetical the rules missed
    overruled = combine(conditional, None, ASKS, cue_answer=no)
    assert (overruled.assertion, overruled.confidence, overruled.cue) == ("present", pytest.approx(0.9), None)
    made = combine(present, None, ASKS, cue_answer=yes)
    assert (made.assertion, made.confidence) == ("hypothetical", pytest.approx(0.9))
    # agreeing, the rules' result stands with its cue; not asked, the rules' flag stands
    assert combine(conditional, None, ASKS, cue_answer=yes) == conditional
    assert combine(present, answer(not_particular=0.99), ASKS) == present
    # the other attributes still follow the main model: historical=either by default
    assert combine(present, answer(historical=0.9), ASKS, cue_answer=no).is_historical is True


def test_the_hybrid_asks_the_cue_model_about_the_gated_targets_only_with_their_cues(rules, model):
    cue_model = RecordingCueModel(not_particular=0.95)
    hybrid = HybridAssertion(rules, model, HybridPolicy(not_particular=CUE_MODEL), cue_model=cue_model)
    text = "Call for any fever or severe depression. No cough."
    first, second = span_sentence(text, (0, 40)), span_sentence(text, (41, len(text)))
    targets = [span_of(text, "fever"), span_of(text, "severe depression")]
    cough = span_of(text, "cough")
    results = hybrid.assess_many(text, [(first, targets, None), (second, [cough], None)])
    # both targets of the sentence with the hypothetical "call for" are asked, the cough is not
    assert [target for target, _ in cue_model.asked] == targets
    assert all(any(c.category == "HYPOTHETICAL" for c in cues) for _, cues in cue_model.asked)
    assert [r.assertion for r in results[0]] == ["hypothetical", "hypothetical"]
    assert results[1][0].assertion == "absent"
    rule_results = rules.assess_many(text, [(first, targets, None), (second, [cough], None)])
    assert results[1] == rule_results[1]


def test_a_policy_asking_for_a_cue_model_needs_one_that_reads_cues(rules, model):
    with pytest.raises(HybridPolicyError, match="cue_model"):
        HybridAssertion(rules, model, HybridPolicy(not_particular=CUE_MODEL))
    with pytest.raises(HybridPolicyError, match="does not read"):
        HybridAssertion(rules, model, HybridPolicy(not_particular=CUE_MODEL), cue_model=model)
    # a policy that does not ask keeps no cue model, and never runs one
    assert HybridAssertion(rules, model, HybridPolicy(), cue_model=RecordingCueModel(0.9)).cue_model is None


@pytest.fixture()
def model_pair(tmp_path):
    """A copy of the shipped model whose hybrid.json asks a cue model (a small untrained one) for the
    not-particular flag, as ``clinlake train assertion --policy-from-cv`` writes it."""
    import json
    import shutil

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from clinlake.pipelines.engine.assertion.model import (CONFIG_FILE, CUE_CATEGORIES, HEADS, HYBRID_FILE,
                                                           MODEL_DIR_DEFAULT, MODEL_FILE, VOCAB_FILE)
    from clinlake.pipelines.training.assertion_net import export_onnx, make_net, n_cue_ids

    main, cues = tmp_path / "assertion", tmp_path / "assertion_cues"
    shutil.copytree(MODEL_DIR_DEFAULT, main)
    cues.mkdir()
    torch.manual_seed(0)
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "call": 4, "for": 5, "fever": 6}
    export_onnx(make_net(len(vocab), n_cues=n_cue_ids(CUE_CATEGORIES)).eval(), cues / MODEL_FILE, len(vocab))
    (cues / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    (cues / CONFIG_FILE).write_text(json.dumps({"version": "t-cues", "window": 40, "cue_categories": list(CUE_CATEGORIES),
                                                "heads": {h: list(c) for h, c in HEADS.items()}}))
    record = json.loads((main / HYBRID_FILE).read_text())
    record["policy"]["not_particular"] = CUE_MODEL
    record["cue_model_dir"] = "../assertion_cues"
    (main / HYBRID_FILE).write_text(json.dumps(record))
    return main, cues


def test_a_hybrid_loads_the_cue_model_its_hybrid_file_names(model_pair):
    from clinlake.pipelines.engine.assertion.engines import load_assertion_engine
    from clinlake.pipelines.engine.assertion.hybrid import cue_model_dir

    main, cues = model_pair
    assert cue_model_dir(main) == cues.resolve()
    hybrid = load_assertion_engine("hybrid", model_dir=main)
    assert hybrid.policy.asks_cue_model and hybrid.cue_model.reads_cues
    assert hybrid.cue_model.model_dir.resolve() == cues.resolve()
    text = "Call for any fever."
    (result,) = hybrid.assess(text, span_sentence(text, (0, len(text))), [span_of(text, "fever")])
    assert result.assertion in ("hypothetical", "present")  # the untrained network's flag, not an error


def test_the_pipeline_version_follows_the_cue_model_files_not_its_card(model_pair):
    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.engine.fingerprint import conf_models, pipeline_version
    from clinlake.pipelines.resources import Resolver

    main, cues = model_pair
    config = load_config(overrides={"pipeline.assertion.model": str(main)})
    resolver = Resolver(config.base_dir)
    assert cues.resolve() in conf_models(config.pipeline, resolver)
    before = pipeline_version(config.pipeline, resolver)
    (cues / "MODEL_CARD.md").write_text("edited card", encoding="utf-8")
    assert pipeline_version(config.pipeline, resolver) == before
    with open(cues / "vocab.json", "a", encoding="utf-8") as vocab:
        vocab.write(" ")
    assert pipeline_version(config.pipeline, resolver) != before


PROBLEMS_ONLY = HybridPolicy(not_particular=CUE_MODEL, cue_model_labels=("PROBLEM",))


def test_cue_model_labels_are_a_non_empty_list_of_labels_and_need_a_policy_asking_the_cue_model():
    # JSON gives a list; the policy keeps a tuple (it is hashed) and compares equal to one built with a tuple
    assert HybridPolicy(not_particular=CUE_MODEL, cue_model_labels=["PROBLEM"]) == PROBLEMS_ONLY
    assert PROBLEMS_ONLY.cue_model_labels == ("PROBLEM",)
    for bad in ("PROBLEM", [], ["PROBLEM", ""], [3]):
        with pytest.raises(HybridPolicyError, match="cue_model_labels"):
            HybridPolicy(not_particular=CUE_MODEL, cue_model_labels=bad)
    with pytest.raises(HybridPolicyError, match="no attribute is taken from the cue model"):
        HybridPolicy(cue_model_labels=["PROBLEM"])


def test_the_cue_model_is_asked_only_about_the_policys_labels_and_about_unlabelled_targets():
    conditional = (Cue(10, 14, "CONDITIONAL", True),)
    assert needs_cue_model(conditional, PROBLEMS_ONLY, "PROBLEM")
    assert not needs_cue_model(conditional, PROBLEMS_ONLY, "TREATMENT")
    assert not needs_cue_model(conditional, PROBLEMS_ONLY, "TEST")
    assert needs_cue_model(conditional, PROBLEMS_ONLY, None)  # the kit's gold spans carry no label
    assert needs_cue_model(conditional, ASKS, "TREATMENT")  # no cue_model_labels: every label
    assert not needs_cue_model((), PROBLEMS_ONLY, "PROBLEM")  # the cue gate still holds


def test_the_hybrid_asks_the_cue_model_about_the_targets_whose_label_the_policy_names(rules, model):
    cue_model = RecordingCueModel(not_particular=0.05)
    hybrid = HybridAssertion(rules, model, PROBLEMS_ONLY, cue_model=cue_model)
    text = "She will undergo resection if the pain returns."
    sentence = span_sentence(text, (0, len(text)))
    targets = [span_of(text, "resection"), span_of(text, "the pain")]
    (results,) = hybrid.assess_many(text, [(sentence, targets, None)], labels=[["TREATMENT", "PROBLEM"]])
    assert [target for target, _ in cue_model.asked] == [targets[1]]
    (rule_results,) = rules.assess_many(text, [(sentence, targets, None)])
    # the rules call both not particular; the treatment keeps that, the problem takes the cue model's "no"
    assert [r.assertion for r in rule_results] == ["hypothetical", "hypothetical"]
    assert results[0] == rule_results[0] and results[1].assertion == "present"
    # without labels every gated target is asked, as in the kit's cross-validation
    cue_model.asked.clear()
    hybrid.assess_many(text, [(sentence, targets, None)])
    assert [target for target, _ in cue_model.asked] == targets


class LabelRecordingEngine:
    """An assertion engine with assess_many that records the NER labels the pipeline gives it."""

    def __init__(self) -> None:
        self.labels = None

    def assess(self, text, sentence, targets, section=None):
        return self.assess_many(text, [(sentence, targets, section)])[0]

    def assess_many(self, text, groups, *, labels=None):
        self.labels = labels
        return [[AssertionResult("present", False, 0.9) for _ in targets] for _, targets, _ in groups]


def test_the_pipeline_gives_the_engine_its_targets_labels_group_by_group():
    from clinlake.pipelines.engine.pipeline import Pipeline
    from clinlake.pipelines.evaluation.assertion_brat import DocumentAssessor

    base = DocumentAssessor.from_config("rules").pipeline
    engine = LabelRecordingEngine()
    pipeline = Pipeline(splitter=base.splitter, sections=base.sections, ner_stages=[], assertion=engine,
                        version=base.version)
    text = "Fever and aspirin. Rash."
    sentences = pipeline.splitter.split(text)
    targets = [(0, 0, 5), (0, 10, 17), (1, 19, 23)]
    results = pipeline.assess(text, sentences, [], targets, labels=["PROBLEM", "TREATMENT", "PROBLEM"])
    assert len(results) == 3
    assert engine.labels == [["PROBLEM", "TREATMENT"], ["PROBLEM"]]
    pipeline.assess(text, sentences, [], targets)
    assert engine.labels is None
    with pytest.raises(ValueError, match="2 NER labels for 3 assertion targets"):
        pipeline.assess(text, sentences, [], targets, labels=["PROBLEM", "TEST"])


def test_the_shipped_hybrid_asks_its_cue_model_about_problems_only():
    from clinlake.pipelines.engine.assertion.engines import load_assertion_engine

    hybrid = load_assertion_engine("hybrid")
    assert hybrid.policy.asks_cue_model and hybrid.policy.cue_model_labels == ("PROBLEM",)
    assert hybrid.cue_model is not None and hybrid.cue_model.reads_cues
    # a planned procedure (a TREATMENT) keeps the rules' hypothetical; the cue model never sees it
    text = "She is planned for surgical intervention."
    sentence = span_sentence(text, (0, len(text)))
    target = [span_of(text, "surgical intervention")]
    (rules_result,) = hybrid.rules.assess(text, sentence, target)
    ((result,),) = hybrid.assess_many(text, [(sentence, target, None)], labels=[["TREATMENT"]])
    assert rules_result.assertion == "hypothetical" and result == rules_result

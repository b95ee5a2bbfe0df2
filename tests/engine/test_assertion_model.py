"""Tests for the trained assertion model, the hybrid and ``clinlake evaluate assertion``."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from clinlake.pipelines.evaluation.assertion_kit import (
    UNLOCATED_LABELS, evaluate_kit, score_labels, to_kit_labels, whole_sentence, write_predictions,
)
from clinlake.pipelines.corpora.negex_kit import read_kit
from clinlake.pipelines.engine.assertion.model import (
    HEADS, HYBRID_FILE, MAX_ROWS, MODEL_DIR_DEFAULT, N_POSITIONS, POS_TARGET, AssertionModel, ModelAnswer,
    CALL_COST_PIECES, MAX_ROWS, encode_target, encode_targets, model_label, pad_batch,
)
from clinlake.pipelines.engine.batching import padded_runs
from clinlake.pipelines.engine.assertion.hybrid import HybridAssertion, HybridPolicy, combine, needs_model
from clinlake.pipelines.engine.assertion.engines import load_assertion_engine
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.types import AssertionResult

KIT_DEVEL = Path(__file__).resolve().parents[3] / "shared" / "data" / "assertion" / "negex_kit_devel.tsv"
HEADER = "id\tnote\tphrase\tsentence\tnegation\ttemporality\texperiencer\n"


@pytest.fixture(scope="module")
def model() -> AssertionModel:
    return AssertionModel(MODEL_DIR_DEFAULT)


@pytest.fixture(scope="module")
def rules() -> ContextAssertion:
    return ContextAssertion.from_file(DEFAULT_RULES_PATH)


def assess_one(engine, sentence: str, phrase: str) -> AssertionResult:
    start = sentence.lower().index(phrase.lower())
    return engine.assess(sentence, whole_sentence(sentence), [(start, start + len(phrase))])[0]


def answer(**probs: float) -> ModelAnswer:
    values = {"negated": 0.0, "possible": 0.0, "historical": 0.0, "not_particular": 0.0, "other": 0.0}
    values.update(probs)
    return ModelAnswer(**values)


# --- evaluation mapping and the TSV writer ----------------------------------------------


@pytest.mark.parametrize(
    "assertion, historical, expected",
    [
        ("present", False, ("Affirmed", "Recent", "Patient")),
        ("present", True, ("Affirmed", "Historical", "Patient")),
        ("absent", False, ("Negated", "Recent", "Patient")),
        ("absent", True, ("Negated", "Historical", "Patient")),
        ("possible", False, ("Affirmed", "Recent", "Patient")),
        ("hypothetical", True, ("Affirmed", "Not particular", "Patient")),
        ("conditional", False, ("Affirmed", "Not particular", "Patient")),
        ("associated_with_someone_else", False, ("Affirmed", "Recent", "Other")),
    ],
)
def test_kit_mapping(assertion, historical, expected):
    labels = to_kit_labels(AssertionResult(assertion, historical, 0.9))
    assert (labels["negation"], labels["temporality"], labels["experiencer"]) == expected


def test_prediction_writer_has_header_and_one_line_per_row(tmp_path):
    rows = [{"id": "7"}, {"id": "9"}]
    out = tmp_path / "pred.tsv"
    write_predictions(out, rows, [AssertionResult("absent", True, 0.9), None])
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == ["id\tnegation\ttemporality\texperiencer", "7\tNegated\tHistorical\tPatient",
                     "9\t" + "\t".join(UNLOCATED_LABELS.values())]


def test_scores_leave_unlocated_rows_out():
    rows = [{"id": "1", "negation": "Negated", "temporality": "Recent", "experiencer": "Patient"},
            {"id": "2", "negation": "Affirmed", "temporality": "Historical", "experiencer": "Family member"}]
    predicted = [{"negation": "Negated", "temporality": "Historical", "experiencer": "Patient"}, None]
    evaluation = score_labels(rows, predicted)
    assert evaluation.rows == 1 and evaluation.unlocated == ["2"]
    assert evaluation.accuracy["negation"] == 1.0 and evaluation.accuracy["temporality"] == 0.0
    assert evaluation.to_dict()["per_class"]["negation"]["Negated"]["f1"] == 1.0


def test_evaluate_assertion_command(tmp_path, capsys):
    from clinlake.jobs.evaluate import main

    kit = tmp_path / "kit.tsv"
    kit.write_text(HEADER + "1\t \tchest  pain\tPatient denies CHEST PAIN.\tNegated\tRecent\tPatient\n"
                            "2\t \tdiabetes\tHistory of DIABETES.\tAffirmed\tHistorical\tPatient\n"
                            "3\t \tgout\tNothing to see.\tAffirmed\tRecent\tPatient\n", encoding="utf-8")
    out = tmp_path / "pred.tsv"
    assert main(["assertion", "--data", str(kit), "--predictions", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 2 and report["unlocated"] == ["3"]
    assert report["accuracy"] == {"negation": 1.0, "temporality": 1.0, "experiencer": 1.0}
    assert out.read_text(encoding="utf-8").splitlines()[1:] == [
        "1\tNegated\tRecent\tPatient", "2\tAffirmed\tHistorical\tPatient", "3\tAffirmed\tRecent\tPatient"]
    assert main(["assertion", "--data", str(kit), "--engine", "hybrid"]) == 0
    printed = capsys.readouterr().out
    assert "Negated" in printed and "DIABETES" not in printed  # scores only, never text


def test_evaluate_assertion_missing_file(tmp_path):
    from clinlake.jobs.evaluate import main

    assert main(["assertion", "--data", str(tmp_path / "missing.tsv")]) == 2


# --- the model ---------------------------------------------------------------------------


def test_encoding_marks_target_and_boundaries(model):
    text = "No chest pain."
    ids, positions = encode_target(text, (0, len(text)), (3, 13), model.vocab)
    assert len(ids) == len(positions) == 6  # <s> no chest pain . </s>
    assert positions[2:4] == [POS_TARGET, POS_TARGET]
    assert ids[0] == model.vocab["<s>"] and ids[-1] == model.vocab["</s>"]
    assert all(0 < p < N_POSITIONS for p in positions)


@pytest.mark.parametrize(
    "sentence, phrase, label, historical",
    [
        ("The patient denies chest pain.", "chest pain", "absent", False),
        ("No evidence of pneumonia.", "pneumonia", "absent", False),
        ("She presents with shortness of breath.", "shortness of breath", "present", False),
        ("History of myocardial infarction in 2005.", "myocardial infarction", "present", True),
        ("Return to the ED if you develop fever.", "fever", "hypothetical", False),
    ],
)
def test_model_predicts_hand_written_sentences(model, sentence, phrase, label, historical):
    result = assess_one(model, sentence, phrase)
    assert (result.assertion, result.is_historical) == (label, historical)
    assert 0.0 <= result.confidence <= 1.0


def test_model_result_does_not_depend_on_batch_neighbours(model):
    text = "No fever, chills or night sweats, but a productive cough since last week."
    targets = [(3, 8), (10, 16), (20, 32), (40, 56)]
    together = model.answers(text, (0, len(text)), targets)
    alone = [model.answers(text, (0, len(text)), [t])[0] for t in targets]
    for a, b in zip(together, alone):
        assert np.allclose([a.negated, a.historical], [b.negated, b.historical], atol=1e-6)


def test_encode_targets_equals_one_target_at_a_time(model):
    text = "Pt has hx of HTN , DM2 and no chest pain ; mother with breast ca . " * 30  # > window pieces
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    targets = [words[i] for i in (0, 3, 5, 30, 200, len(words) - 1)] + [(words[8][0], words[10][1])]
    together = encode_targets(text, (0, len(text)), targets, model.vocab, window=40)
    assert together == [encode_target(text, (0, len(text)), t, model.vocab, window=40) for t in targets]
    first, last = together[0], together[-2]
    assert first[0][0] == model.vocab["<s>"] and first[0][-1] != model.vocab["</s>"]  # 40 pieces kept right
    assert last[0][-1] == model.vocab["</s>"] and last[0][0] != model.vocab["<s>"]
    assert len(together[4][0]) == 40 + 1 + 40  # far from both ends: no boundary marks
    # the serving memo (piece as written -> id) gives the same rows, first call and later ones,
    # and is emptied rather than grown past its bound
    memo: dict[str, int] = {}
    assert encode_targets(text, (0, len(text)), targets, model.vocab, window=40, memo=memo) == together
    assert memo["DM2"] == model.vocab.get("dm0", model.vocab["<unk>"]) and memo["HTN"] == model.vocab.get("htn", model.vocab["<unk>"])
    assert encode_targets(text, (0, len(text)), targets, model.vocab, window=40, memo=memo) == together
    from clinlake.pipelines.engine.assertion import model as model_module
    memo.update({f"x{i}": 1 for i in range(model_module.MAX_MEMO_PIECES + 1)})
    assert encode_targets(text, (0, len(text)), targets, model.vocab, window=40, memo=memo) == together
    assert len(memo) < 100


def test_model_batches_a_notes_groups_without_changing_answers(model, rules):
    """assess_many (one network call per MAX_ROWS targets of a note) answers what assess does
    sentence by sentence, for the model and the hybrid, also past MAX_ROWS targets."""
    text = "No fever or chills. Mother had breast cancer. " * (MAX_ROWS // 3 * 2 + 10)
    sentences, groups = [], []
    for index, start in enumerate(range(0, len(text), 46)):
        sentence = whole_sentence(text[start:start + 45])
        sentence = type(sentence)(index=index, start=start, end=start + 45,
                                  tokens=tuple(type(t)(t.start + start, t.end + start, t.text) for t in sentence.tokens))
        words = ("fever", "chills") if index % 2 == 0 else ("breast cancer",)
        spans = [(start + text[start:start + 45].index(w), start + text[start:start + 45].index(w) + len(w))
                 for w in words]
        groups.append((sentence, spans, "past_medical_history" if index % 5 == 0 else None))
    assert sum(len(g[1]) for g in groups) > MAX_ROWS
    for engine in (model, HybridAssertion(rules, model)):
        one_by_one = [engine.assess(text, *group) for group in groups]
        assert engine.assess_many(text, groups) == one_by_one
    labels = {r.assertion for results in one_by_one for r in results}  # the hybrid's
    assert labels == {"absent", "associated_with_someone_else"}


def test_assertion_runs_cut_where_padding_costs_more_than_a_call():
    def runs(lengths, call_cost=CALL_COST_PIECES, max_rows=MAX_ROWS):
        return padded_runs(lengths, call_cost=call_cost, max_rows=max_rows)

    # 3 rows padded from 10 to 12: 6 pieces; from 12 to 30 with 4 rows: 72 > 24 -> a new run
    assert runs([10, 10, 10, 12, 30, 31, 90]) == [(0, 4), (4, 6), (6, 7)]
    assert runs([5] * 7, max_rows=3) == [(0, 3), (3, 6), (6, 7)]
    assert runs([1, 50], call_cost=49) == [(0, 2)]
    assert runs([1, 50], call_cost=48) == [(0, 1), (1, 2)]
    assert runs([]) == []


def test_model_answers_rows_of_any_length_as_alone(model):
    """Targets in sentences of very different lengths (several length runs, rows sorted by length
    inside the call) get the answers each gets alone, in the caller's order."""
    text = "No fever. " + "The patient denies chest pain, cough, dyspnea and nausea today. " * 3 + \
        "Mother had breast cancer and a stroke at the age of seventy, " + "with heart failure " * 20 + "."
    words = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z]+", text)]
    picks = [words[i] for i in (1, 0, len(words) - 3, 7, 30, len(words) // 2, 3)]
    groups = [((0, 9), [picks[0], picks[1]]), ((9, len(text)), picks[2:])]
    together = model.answers_many(text, groups)
    alone = [[model.answers(text, span, [t])[0] for t in targets] for span, targets in groups]
    assert together == alone
    lengths = sorted(len(ids) for span, targets in groups
                     for ids, _ in encode_targets(text, span, targets, model.vocab, model.window))
    assert len(padded_runs(lengths, call_cost=CALL_COST_PIECES, max_rows=MAX_ROWS)) >= 2  # several calls


def test_model_checks_targets_without_text(model):
    sentence = whole_sentence("Secret words here.")
    with pytest.raises(ValueError) as info:
        model.assess("Secret words here.", sentence, [(0, 99)])
    assert "Secret" not in str(info.value)


def test_model_section_defaults():
    engine = AssertionModel(MODEL_DIR_DEFAULT, section_defaults={"family_history": "associated_with_someone_else",
                                                                 "past_medical_history": "historical"})
    text = "Diabetes."
    sentence = whole_sentence(text)
    assert engine.assess(text, sentence, [(0, 8)], "family_history")[0].assertion == "associated_with_someone_else"
    assert engine.assess(text, sentence, [(0, 8)], "past_medical_history")[0].is_historical


def test_model_label_precedence():
    assert model_label(answer(other=0.9, negated=0.9)).assertion == "associated_with_someone_else"
    assert model_label(answer(not_particular=0.8, negated=0.9)).assertion == "hypothetical"
    assert model_label(answer(negated=0.7, possible=0.9)).assertion == "absent"
    assert model_label(answer(possible=0.6)).assertion == "possible"
    result = model_label(answer(historical=0.7))
    assert (result.assertion, result.is_historical) == ("present", True)


def test_onnx_export_matches_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from clinlake.pipelines.training.assertion_net import export_onnx, make_ensemble, make_net

    torch.manual_seed(0)
    net = make_ensemble([make_net(50), make_net(50)])
    export_onnx(net, tmp_path / "m.onnx", 50)
    rows = [([2, 7, 9, 11, 3], [3, 2, 1, 10, 11]), ([2, 5, 8, 3], [4, 3, 2, 1])]
    tokens, positions = pad_batch(rows)
    with torch.no_grad():
        expected = [o.numpy() for o in net(torch.from_numpy(tokens), torch.from_numpy(positions))]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(list(HEADS), {"tokens": tokens, "positions": positions})
    for a, b in zip(expected, got):
        assert np.allclose(a, b, atol=1e-5)


def test_shipped_model_files():
    for name in ("model.onnx", "vocab.json", "config.json", HYBRID_FILE, "MODEL_CARD.md"):
        assert (MODEL_DIR_DEFAULT / name).is_file(), name
    size = sum(p.stat().st_size for p in MODEL_DIR_DEFAULT.iterdir())
    assert size < 20 * 2**20


# --- hybrid ------------------------------------------------------------------------------


def test_hybrid_keeps_rule_cue_when_it_agrees():
    rule = AssertionResult("absent", False, 0.9, "denies", 8, 14, "NEGATED_EXISTENCE")
    result = combine(rule, answer(negated=0.9, historical=0.8), HybridPolicy(historical="either"))
    assert (result.assertion, result.is_historical, result.cue) == ("absent", True, "denies")


def test_hybrid_model_negation_only_where_no_rule_decided():
    policy = HybridPolicy(negation="either")
    decided = AssertionResult("possible", False, 0.9, "likely", 0, 6, "POSSIBLE_EXISTENCE")
    assert combine(decided, answer(negated=0.9), policy).assertion == "possible"
    undecided = AssertionResult("present", False, 0.8)
    result = combine(undecided, answer(negated=0.9), policy)
    assert result.assertion == "absent" and result.cue is None


def test_hybrid_policy_sources():
    rule = AssertionResult("present", True, 0.8, "history of", 0, 10, "HISTORICAL")
    assert combine(rule, answer(), HybridPolicy(historical="rules")).is_historical
    overruled = combine(rule, answer(), HybridPolicy(historical="model"))
    assert not overruled.is_historical and overruled.cue is None
    hypo = combine(AssertionResult("present", False, 0.8), answer(not_particular=0.9),
                   HybridPolicy(not_particular="model"))
    assert hypo.assertion == "hypothetical"
    conditional = AssertionResult("conditional", False, 0.9, "with exertion", 0, 5, "CONDITIONAL")
    assert combine(conditional, answer(not_particular=0.9), HybridPolicy(not_particular="either")).assertion == "conditional"


@pytest.mark.parametrize(
    "sentence, phrase, label, historical",
    [
        ("No fever; history of asthma.", "asthma", "present", True),  # the model alone says absent
        ("No fever but has a cough.", "cough", "present", False),  # the model alone says absent
        ("Pneumonia is likely.", "pneumonia", "possible", False),
        ("Mother had breast cancer.", "breast cancer", "associated_with_someone_else", False),
        ("Return to the ED if you develop fever.", "fever", "hypothetical", False),
        ("Denies alcohol or other drug use.", "alcohol", "absent", True),
    ],
)
def test_shipped_hybrid_on_hand_written_sentences(sentence, phrase, label, historical):
    result = assess_one(load_assertion_engine("hybrid"), sentence, phrase)
    assert (result.assertion, result.is_historical) == (label, historical)


def test_a_historical_cut_off_decides_the_models_historical_answer_where_the_policy_heeds_it():
    plain = AssertionResult("present", False, 0.9)
    # P(historical) 0.45 is not the model's most probable class (recent, 0.55) but passes a 0.4 cut-off
    unsure = answer(historical=0.45)
    assert not combine(plain, unsure, HybridPolicy(historical="either")).is_historical
    assert combine(plain, unsure, HybridPolicy(historical="either", historical_threshold=0.4)).is_historical
    assert combine(plain, unsure, HybridPolicy(historical="model", historical_threshold=0.4)).is_historical
    assert not combine(plain, unsure, HybridPolicy(historical="model", historical_threshold=0.5)).is_historical
    # the rules' flag still holds under a union, and a rules-only flag never heeds the model
    ruled = AssertionResult("present", True, 0.8, "history of", 0, 10, "HISTORICAL")
    assert combine(ruled, answer(historical=0.1), HybridPolicy(historical="either", historical_threshold=0.4)).is_historical
    assert not combine(plain, unsure, HybridPolicy(historical="rules", historical_threshold=0.4)).is_historical
    # the other attributes do not move with it
    cut = combine(AssertionResult("absent", False, 0.9, "no", 0, 2, "NEGATED"), unsure,
                  HybridPolicy(historical_threshold=0.4))
    assert (cut.assertion, cut.is_historical, cut.cue) == ("absent", True, "no")


def test_hybrid_policy_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown value 'both'"):
        HybridPolicy(historical="both")
    for bad in (0.0, 1.0, 1.5, True, "0.4"):
        with pytest.raises(ValueError, match="historical_threshold"):
            HybridPolicy(historical_threshold=bad)
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({"policy": {"historical": "either", "historical_threshold": 0.4}}))
    assert HybridPolicy.from_file(cut) == HybridPolicy(historical="either", historical_threshold=0.4)
    path = tmp_path / "hybrid.json"
    path.write_text(json.dumps({"policy": {"historicl": "model"}}))
    with pytest.raises(ValueError, match="unknown hybrid policy key 'historicl'"):
        HybridPolicy.from_file(path)


def test_engine_factory(model):
    assert load_assertion_engine("none") is None
    assert isinstance(load_assertion_engine("rules"), ContextAssertion)
    hybrid = load_assertion_engine("hybrid")
    assert isinstance(hybrid, HybridAssertion)
    assert hybrid.policy == HybridPolicy.from_file(MODEL_DIR_DEFAULT / HYBRID_FILE)
    with pytest.raises(ValueError, match="unknown assertion engine"):
        load_assertion_engine("bert")


def test_hybrid_in_the_pipeline_interface(model, rules):
    hybrid = HybridAssertion(rules, model)
    text = "Clinic note.\nNo fever; history of asthma."
    start = text.index("No")
    sentence = whole_sentence(text[start:])
    sentence = type(sentence)(1, start, len(text), tuple(
        type(t)(t.start + start, t.end + start, t.text) for t in sentence.tokens))
    fever, asthma = (text.index("fever"), text.index("fever") + 5), (text.index("asthma"), text.index("asthma") + 6)
    first, second = hybrid.assess(text, sentence, [fever, asthma], None)
    assert first.assertion == "absent" and text[first.cue_start:first.cue_end] == "No"
    assert second.assertion == "present" and second.is_historical


def test_the_model_is_asked_only_where_its_answer_can_change_the_hybrid_result():
    historical = AssertionResult("present", True, 0.9, "history of", 0, 10, "HISTORICAL")
    absent = AssertionResult("absent", False, 0.9, "no", 0, 2, "NEGATED_EXISTENCE")
    shipped = HybridPolicy()  # historical from either, the rest from the rules
    assert not needs_model(historical, shipped) and needs_model(absent, shipped)
    assert needs_model(historical, HybridPolicy(historical="model"))  # the model may overrule it
    assert not needs_model(absent, HybridPolicy(negation="either", historical="rules"))
    assert not needs_model(historical, HybridPolicy(historical="rules"))
    # where it is not asked, no answer could have changed the result
    answers = [answer(), answer(historical=0.99), answer(negated=0.99, other=0.99, not_particular=0.99)]
    for rule, policy in ((historical, shipped), (absent, HybridPolicy(negation="either", historical="rules"))):
        assert all(combine(rule, a, policy) == rule for a in answers)


def test_the_hybrid_runs_the_model_on_the_targets_that_need_it_and_combines_like_combine(model, rules):
    text = "She reports a cough and chest pain today; no fever; history of asthma and stroke."
    sentence = whole_sentence(text)
    targets = [(text.index(w), text.index(w) + len(w)) for w in ("cough", "chest pain", "fever", "asthma", "stroke")]
    asked: list[tuple] = []

    class Spy:
        reads_cues = False

        def answers_many(self, text, groups, cues=None):
            assert cues is None  # the shipped model reads no cues: the hybrid computes none
            asked.extend(t for _, targets in groups for t in targets)
            return model.answers_many(text, groups)

    hybrid = HybridAssertion(rules, Spy(), HybridPolicy())
    results = hybrid.assess(text, sentence, targets, None)
    rule_results = rules.assess(text, sentence, targets, None)
    assert [r.is_historical for r in rule_results] == [False, False, False, True, True]  # "history of"
    assert asked == targets[:3]  # the rules already call asthma and stroke historical
    everything = model.answers(text, (sentence.start, sentence.end), targets)
    assert results == [combine(r, a, HybridPolicy()) for r, a in zip(rule_results, everything)]


# --- devel floors (measured values in models/assertion/MODEL_CARD.md) ----------------------


@pytest.mark.skipif(not KIT_DEVEL.exists(), reason="NegEx kit not available")
@pytest.mark.parametrize(
    "engine_name, negated, historical, not_particular",
    # measured: rules 0.977 / 0.784 / 0.970, model 0.982 / 0.855 / 0.970, hybrid 0.977 / 0.869 / 1.0
    [("rules", 0.96, 0.76, 0.93), ("model", 0.95, 0.83, 0.93), ("hybrid", 0.96, 0.85, 0.95)],
)
def test_devel_floor(engine_name, negated, historical, not_particular):
    engine = load_assertion_engine(engine_name)
    evaluation = evaluate_kit(KIT_DEVEL, engine)
    assert evaluation.rows >= 480
    assert evaluation.f1("negation", "Negated") >= negated
    assert evaluation.f1("temporality", "Historical") >= historical
    assert evaluation.f1("temporality", "Not particular") >= not_particular
    assert len(read_kit(KIT_DEVEL)) == evaluation.rows + len(evaluation.unlocated)

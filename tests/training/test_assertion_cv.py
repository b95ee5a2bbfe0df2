"""Cross-validation of the assertion recipe and the hybrid policy (pipelines/training/assertion_cv.py)."""
from dataclasses import asdict

import pytest

from clinlake.pipelines.engine.assertion.hybrid import HybridPolicy
from clinlake.pipelines.training.assertion_cv import (HISTORICAL_THRESHOLDS, METRICS, AssertionRecipe,
                                                      cross_validate_assertion,
                                                      format_assertion_cv, kit_rows, policies, policy_key, summarise)


def _scores(objective_parts):
    return dict(zip(METRICS, objective_parts), negation_accuracy=1.0, temporality_accuracy=1.0)


def test_the_policy_chosen_by_cv_is_the_best_mean_and_the_simplest_within_the_margin():
    assert len(policies()) == 27 and len({policy_key(p) for p in policies()}) == 27
    either = HybridPolicy(negation="rules", historical="either", not_particular="either")
    rules_only = HybridPolicy(negation="rules", historical="rules", not_particular="rules")
    model_hist = HybridPolicy(negation="rules", historical="model", not_particular="rules")

    def fold(values):
        scores = {policy_key(p): _scores((0.9, 0.5, 0.9)) for p in policies()}
        scores.update({"rules": _scores((0.9, 0.5, 0.9)), "model": _scores((0.8, 0.6, 0.8))})
        scores.update({policy_key(p): _scores(v) for p, v in values.items()})
        return {"scores": scores}

    folds = [fold({either: (0.95, 0.80, 0.95), rules_only: (0.95, 0.79, 0.95), model_hist: (0.95, 0.70, 0.95)}),
             fold({either: (0.95, 0.86, 0.95), rules_only: (0.95, 0.85, 0.95), model_hist: (0.95, 0.95, 0.95)})]
    summary = summarise(folds)
    # means: either 2.730, rules_only 2.720, model_hist 2.725: all within 0.01 of the best; rules_only is simplest
    assert summary["policy_by_cv"]["key"] == policy_key(rules_only)
    assert summary["policy_by_cv"]["best_objective"] == 2.73 and summary["policy_by_cv"]["mean_objective"] == 2.72
    assert summary["engines"][policy_key(either)]["historical_f1"] == {"mean": 0.83, "sd": 0.0424}
    assert summarise(folds, margin=0.0)["policy_by_cv"]["key"] == policy_key(either)


def test_a_historical_cut_off_is_chosen_only_when_it_beats_the_best_plain_policy_by_more_than_the_margin():
    from dataclasses import replace

    plain = HybridPolicy(negation="rules", historical="either", not_particular="rules")
    cut = replace(plain, historical_threshold=0.4)

    def folds(gain):
        scores = {policy_key(p): _scores((0.9, 0.5, 0.9)) for p in policies(thresholds=HISTORICAL_THRESHOLDS)}
        scores.update({"rules": _scores((0.9, 0.5, 0.9)), "model": _scores((0.8, 0.6, 0.8)),
                       policy_key(plain): _scores((0.95, 0.80, 0.95)), policy_key(cut): _scores((0.95, 0.80 + gain, 0.95))})
        return [{"scores": scores}]

    assert policy_key(cut) == "hybrid negation=rules historical=either>0.4 not_particular=rules"
    assert summarise(folds(0.005))["policy_by_cv"]["key"] == policy_key(plain)  # within the margin: no cut-off
    chosen = summarise(folds(0.02))["policy_by_cv"]
    assert chosen["key"] == policy_key(cut) and chosen["policy"]["historical_threshold"] == 0.4


def test_a_fold_trains_on_the_other_blocks_and_scores_every_engine_on_its_own_rows():
    pytest.importorskip("torch")
    from clinlake.pipelines.engine.assertion.context import ContextAssertion
    from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
    from clinlake.pipelines.evaluation.assertion_kit import predict_kit, score_kit
    from clinlake.pipelines.training.assertion import headline
    from clinlake.pipelines.training.ner.cv import fold_blocks

    rows = kit_rows()
    report = cross_validate_assertion(AssertionRecipe(epochs=1, maccrobat=False), k=5, folds=[2])
    blocks = fold_blocks(len(rows), 5)
    (fold,) = report["folds"]
    assert report["rows"] == len(rows) and fold["held_out"] == [blocks[2].start, blocks[2].stop]
    assert set(fold["scores"]) == {"rules", "model",
                                   *(policy_key(p) for p in policies(thresholds=HISTORICAL_THRESHOLDS))}
    assert len(fold["scores"]) == 2 + 27 + 2 * 18  # historical from the model or either: 18 policies per cut-off
    held = rows[blocks[2].start:blocks[2].stop]
    rules, _ = predict_kit(held, ContextAssertion.from_file(DEFAULT_RULES_PATH))
    assert fold["scores"]["rules"] == headline(score_kit(held, rules))  # the held-out rows, nothing else
    # with every attribute from the rules, the hybrid is the rules
    all_rules = policy_key(HybridPolicy(negation="rules", historical="rules", not_particular="rules"))
    assert {m: fold["scores"][all_rules][m] for m in METRICS} == {m: fold["scores"]["rules"][m] for m in METRICS}
    text = format_assertion_cv(report, shipped=HybridPolicy())
    assert "(shipped)" in text and "(chosen by CV)" in text and f"({len(rows)} rows;" in text


def test_the_policy_chosen_by_cv_is_written_into_the_models_hybrid_file(tmp_path):
    import json
    import shutil

    from clinlake.pipelines.resources import Resolver
    from clinlake.pipelines.training.assertion_data import kit_path
    from clinlake.pipelines.training.assertion_cv import adopt_policy

    model_dir = tmp_path / "assertion"
    shutil.copytree(Resolver().model_dir("assertion"), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["training"].pop("distillation", None)  # a model of the recipe itself (the members' average)
    (model_dir / "config.json").write_text(json.dumps(config))
    chosen = HybridPolicy(negation="rules", historical="either", not_particular="rules")
    cv_scores = {m: {"mean": 0.9, "sd": 0.01} for m in METRICS}
    reads_cues = bool(config.get("cue_categories"))
    report = {"k": 5, "rows": 1908, "recipe": {"members": 3, "epochs": 12, "cues": not reads_cues},
              "engines": {policy_key(chosen): cv_scores},
              "policy_by_cv": {"policy": {"negation": "rules", "historical": "either", "not_particular": "rules"},
                               "key": policy_key(chosen), "margin": 0.01, "best_objective": 2.73,
                               "mean_objective": 2.73}}
    # a policy chosen for networks that read the rules' cues does not fit one that does not, and back
    with pytest.raises(ValueError, match="cues"):
        adopt_policy(model_dir, report, kit_devel=kit_path("devel"))
    report["recipe"]["cues"] = reads_cues
    record = adopt_policy(model_dir, report, kit_devel=kit_path("devel"))
    assert HybridPolicy.from_file(model_dir / "hybrid.json") == chosen
    assert record["cv"] == cv_scores and record["selected_on"].startswith("5-fold CV of the NegEx kit train+devel")
    assert 0.9 < record["devel"]["negated_f1"] <= 1.0


def test_a_student_fold_scores_the_members_average_the_student_and_the_first_member_on_the_same_rows(monkeypatch):
    pytest.importorskip("torch")
    import clinlake.pipelines.training.assertion_cv as assertion_cv
    from clinlake.pipelines.training.assertion_data import chia_train_dir
    from clinlake.pipelines.training.assertion_distill import chia_targets

    silver = chia_targets(chia_train_dir())[:60]
    asked = []
    monkeypatch.setattr(assertion_cv, "silver_examples",
                        lambda sources, shared=None: asked.append(tuple(sources)) or silver)
    recipe = AssertionRecipe(epochs=1, members=2, maccrobat=False, int8=False, student=True, silver=("chia",))
    report = cross_validate_assertion(recipe, k=5, folds=[1])
    (fold,) = report["folds"]
    assert asked == [("chia",)]
    assert {"scores", "scores_student", "scores_member"} <= set(fold)
    # three networks, one held-out block: the rules' scores are the same row for row
    assert fold["scores_student"]["rules"] == fold["scores_member"]["rules"] == fold["scores"]["rules"]
    assert set(fold["scores_student"]) == set(fold["scores"])
    assert report["engines_student"]["model"]["historical_f1"]["mean"] == fold["scores_student"]["model"]["historical_f1"]
    text = format_assertion_cv(report)
    assert "student (one network, distilled): model" in text and "first member alone: model" in text


def test_a_distilled_model_takes_the_policy_cv_chose_for_the_fold_students(tmp_path):
    import json
    import shutil

    from clinlake.pipelines.resources import Resolver
    from clinlake.pipelines.training.assertion_data import kit_path
    from clinlake.pipelines.training.assertion_cv import adopt_policy

    model_dir = tmp_path / "assertion"
    shutil.copytree(Resolver().model_dir("assertion"), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["training"]["distillation"] = {"teacher_members": 3}
    (model_dir / "config.json").write_text(json.dumps(config))
    recipe_policy = HybridPolicy(negation="rules", historical="either", not_particular="rules")
    student_policy = HybridPolicy(negation="rules", historical="model", not_particular="rules")

    def chosen(policy):
        return {"policy": {"negation": policy.negation, "historical": policy.historical,
                           "not_particular": policy.not_particular},
                "key": policy_key(policy), "margin": 0.01, "best_objective": 2.7, "mean_objective": 2.7}

    report = {"k": 5, "rows": 1908, "recipe": {"members": 3, "epochs": 12, "cues": bool(config.get("cue_categories"))},
              "engines": {policy_key(recipe_policy): {m: {"mean": 0.8, "sd": 0.0} for m in METRICS}},
              "policy_by_cv": chosen(recipe_policy)}
    with pytest.raises(ValueError, match="distilled student but the CV report scored no students"):
        adopt_policy(model_dir, report, kit_devel=kit_path("devel"))
    report["engines_student"] = {policy_key(student_policy): {m: {"mean": 0.9, "sd": 0.0} for m in METRICS}}
    report["policy_by_cv_student"] = chosen(student_policy)
    record = adopt_policy(model_dir, report, kit_devel=kit_path("devel"))
    assert HybridPolicy.from_file(model_dir / "hybrid.json") == student_policy
    assert record["cv"]["historical_f1"] == {"mean": 0.9, "sd": 0.0}
    assert "one student distilled from them" in record["selected_on"]


def test_the_recipes_context_window_and_cues_reach_every_network_of_a_fold_and_its_served_model(monkeypatch,
                                                                                                   tmp_path):
    pytest.importorskip("torch")
    import clinlake.pipelines.training.assertion_cv as assertion_cv
    import clinlake.pipelines.training.assertion_distill as assertion_distill
    from clinlake.pipelines.engine.assertion.context import ContextAssertion
    from clinlake.pipelines.engine.assertion.model import CUE_CATEGORIES
    from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
    from clinlake.pipelines.training.assertion_data import rows_examples, with_cues
    from clinlake.pipelines.training.assertion_net import make_net, n_cue_ids

    seen = []

    def fake_train(examples, vocab, **options):
        cues = options["cue_categories"]
        seen.append((options["window"], cues, all(ex.cues is not None for ex in examples) if cues else None,
                     options["cue_dropout"]))
        return make_net(len(vocab), n_cues=n_cue_ids(cues))

    def fake_teacher(teacher, examples, vocab, window, cue_categories):
        seen.append(("teacher", window, cue_categories))
        return [{} for _ in examples]

    monkeypatch.setattr(assertion_cv, "train", fake_train)
    monkeypatch.setattr(assertion_distill, "train", fake_train)
    monkeypatch.setattr(assertion_distill, "teacher_probabilities", fake_teacher)
    monkeypatch.setattr(assertion_cv, "silver_examples", lambda sources, shared: rows_examples(kit_rows()[40:50]))
    rules = ContextAssertion.from_file(DEFAULT_RULES_PATH)
    examples = rows_examples(kit_rows()[:40])
    recipe = AssertionRecipe(members=2, student=True, window=12)
    nets = assertion_cv._fold_nets(examples, recipe, shared=None, rules=rules)
    assert seen == [(12, (), None, 0.0), (12, (), None, 0.0), ("teacher", 12, ()), (12, (), None, 0.0)]  # members, teacher, student
    net, vocab = nets["scores"]
    served = assertion_cv._exported(net, vocab, tmp_path / "fold", recipe.window)
    assert served.window == 12 and not served.reads_cues
    assert "12 pieces of context each side" in assertion_cv._window({"window": 12})
    assert assertion_cv._window({"window": 40}) == ""

    seen.clear()
    cued = AssertionRecipe(members=2, student=True, cues=True, cue_dropout=0.25)
    nets = assertion_cv._fold_nets(with_cues(examples, rules), cued, shared=None, rules=rules)
    # the members, the teacher and the student (gold and silver targets) all read the cues, and all
    # trained networks are shown some rows without them
    assert seen == [(40, CUE_CATEGORIES, True, 0.25)] * 2 + [("teacher", 40, CUE_CATEGORIES),
                                                              (40, CUE_CATEGORIES, True, 0.25)]
    assert "(0.25 of training rows without)" in assertion_cv._cues(asdict(cued))
    assert assertion_cv._cues(asdict(recipe)) == ""
    net, vocab = nets["scores_student"]
    served = assertion_cv._exported(net, vocab, tmp_path / "cued", cued.window, assertion_cv.cue_categories(cued))
    assert served.reads_cues and served.cue_categories == CUE_CATEGORIES


def test_repeats_run_every_fold_again_with_seeds_a_stride_apart_and_report_each_repeats_mean(monkeypatch):
    from clinlake.pipelines.training import assertion_cv
    from clinlake.pipelines.training.assertion_cv import SEED_STRIDE, repeat_spread
    from clinlake.pipelines.training.ner.cv import CrossValidationError

    trained = []

    def fake_fold(rows, blocks, fold, recipe, *, shared=None):
        trained.append((fold, recipe.seed, recipe.epochs))
        historical = 0.7 + fold / 100 + (recipe.seed - 13) / 1000  # fold 1, seed 113: 0.81
        scores = {name: _scores((0.9, historical, 0.9)) for name in ("rules", "model",
                                                                     *(policy_key(p) for p in policies()))}
        return {"fold": fold, "held_out": [blocks[fold].start, blocks[fold].stop], "scores": scores}

    monkeypatch.setattr(assertion_cv, "run_fold", fake_fold)
    report = cross_validate_assertion(AssertionRecipe(epochs=3), k=5, folds=[3, 1], repeats=3)
    assert trained == [(1, 13, 3), (3, 13, 3), (1, 113, 3), (3, 113, 3), (1, 213, 3), (3, 213, 3)]
    assert SEED_STRIDE == 100 and report["repeats"] == 3 and report["recipe"]["seed"] == 13
    assert [(f["repeat"], f["fold"], f["seed"]) for f in report["folds"]] == \
        [(0, 1, 13), (0, 3, 13), (1, 1, 113), (1, 3, 113), (2, 1, 213), (2, 3, 213)]
    # repeat means: (0.71 + 0.73) / 2 = 0.72, then +0.1 and +0.2 with the seeds
    cell = report["repeat_spread"]["scores"]["rules"]["historical_f1"]
    assert cell == {"means": [0.72, 0.82, 0.92], "mean": 0.82, "sd": 0.1}
    # the engines' mean and sd are over all six fold runs
    assert report["engines"]["rules"]["historical_f1"]["mean"] == 0.82
    text = format_assertion_cv(report)
    assert "3 repeats on the same folds" in text and "0.720/0.820/0.920 ± 0.100" in text
    # one run keeps the single-run report (no repeat keys); repeats that hold other folds do not compare
    single = cross_validate_assertion(AssertionRecipe(), k=5, folds=[0])
    assert "repeats" not in single and "repeat" not in single["folds"][0] and "repeat_spread" not in single
    with pytest.raises(CrossValidationError, match="different folds"):
        repeat_spread([{**report["folds"][0], "repeat": 0}, {**report["folds"][3], "repeat": 1}])
    with pytest.raises(CrossValidationError, match="repeats must be 1 or more"):
        cross_validate_assertion(AssertionRecipe(), k=5, repeats=0)


def test_a_cue_model_fold_scores_the_policies_taking_not_particular_from_it_and_leaves_the_rest_alone(monkeypatch):
    pytest.importorskip("torch")
    import clinlake.pipelines.training.assertion_cv as assertion_cv
    from clinlake.pipelines.engine.assertion.hybrid import CUE_MODEL

    trained = []
    real_train = assertion_cv.train
    monkeypatch.setattr(assertion_cv, "train", lambda examples, vocab, **kw: trained.append(
        (bool(kw.get("cue_categories")), all(e.cues is not None for e in examples))) or real_train(examples, vocab, **kw))
    report = cross_validate_assertion(AssertionRecipe(epochs=1, maccrobat=False, int8=False, cue_model=True),
                                      k=5, folds=[3])
    (fold,) = report["folds"]
    # the cue model reads cues and is trained on examples carrying them; the recipe's own network does not
    assert sorted(trained) == [(False, False), (True, True)]
    with_cue_model = policies(thresholds=HISTORICAL_THRESHOLDS, cue_model=True)
    assert len(policies(cue_model=True)) == 36
    assert set(fold["scores"]) == {"rules", "model", *(policy_key(p) for p in with_cue_model)}
    for policy in policies():  # asking the cue model changes the not-particular flag alone
        cue_scores = fold["scores"][policy_key(HybridPolicy(negation=policy.negation, historical=policy.historical,
                                                            not_particular=CUE_MODEL))]
        same = fold["scores"][policy_key(HybridPolicy(negation=policy.negation, historical=policy.historical,
                                                      not_particular="rules"))]
        assert cue_scores["historical_f1"] == same["historical_f1"]
    assert "a cue model per fold" in format_assertion_cv(report)


def test_adopting_a_cue_model_policy_names_the_model_and_asks_it_about_problems_only(tmp_path):
    import json
    import shutil

    from clinlake.pipelines.engine.assertion.context import ContextAssertion
    from clinlake.pipelines.engine.assertion.hybrid import CUE_MODEL, HybridAssertion
    from clinlake.pipelines.engine.assertion.model import AssertionModel
    from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
    from clinlake.pipelines.resources import Resolver
    from clinlake.pipelines.training.assertion_data import kit_path
    from clinlake.pipelines.training.assertion_cv import adopt_policy

    model_dir, cues_dir = tmp_path / "assertion", tmp_path / "elsewhere" / "cues"
    shutil.copytree(Resolver().model_dir("assertion"), model_dir)
    shutil.copytree(Resolver().model_dir("assertion_cues"), cues_dir)
    config = json.loads((model_dir / "config.json").read_text())
    chosen = HybridPolicy(historical="either", not_particular=CUE_MODEL, historical_threshold=0.4)
    report = {"k": 5, "rows": 1908, "recipe": {"members": 3, "epochs": 12, "cue_model": True,
                                               "cues": bool(config.get("cue_categories"))},
              "engines_student": {policy_key(chosen): {m: {"mean": 0.9, "sd": 0.0} for m in METRICS}},
              "policy_by_cv_student": {"policy": asdict(chosen), "key": policy_key(chosen), "margin": 0.01,
                                       "best_objective": 2.79, "mean_objective": 2.79}}
    with pytest.raises(ValueError, match="holds none"):  # no sibling assertion_cues beside the copy
        adopt_policy(model_dir, report, kit_devel=kit_path("devel"))
    record = adopt_policy(model_dir, report, kit_devel=kit_path("devel"), cue_model_dir=cues_dir)
    assert record["cue_model_dir"] == "../elsewhere/cues"
    assert record["policy"]["cue_model_labels"] == ("PROBLEM",)
    assert json.loads((model_dir / "hybrid.json").read_text())["policy"]["cue_model_labels"] == ["PROBLEM"]
    # what the engine reads back from that file
    loaded = HybridAssertion(ContextAssertion.from_file(DEFAULT_RULES_PATH), AssertionModel(model_dir))
    assert loaded.policy.cue_model_labels == ("PROBLEM",)
    assert loaded.cue_model.model_dir.resolve() == cues_dir.resolve()
    anyone = adopt_policy(model_dir, report, kit_devel=kit_path("devel"), cue_model_dir=cues_dir, cue_model_labels=None)
    assert anyone["policy"]["cue_model_labels"] is None

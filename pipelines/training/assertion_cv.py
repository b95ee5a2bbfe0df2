"""k-fold cross-validation of the assertion recipe and of the hybrid policy on the NegEx kit.

The shipped assertion model chose its epoch count and its hybrid policy on the kit's devel split, and
the independent held-out evaluation found its Historical F1 far below the devel figure. The protocol
here (``clinlake evaluate assertion-cv``):

* **data**: the kit's train rows then devel rows, in file order, cut into ``k`` contiguous blocks
  (:func:`~pipelines.training.ner.cv.fold_blocks`; each row in one block, deterministic);
* **training**: for each fold, the recipe's network(s) trained on the other blocks' kit rows plus the
  recipe's extra data (MACCROBAT train documents, as ``clinlake train assertion`` uses them), the
  same epochs and seeds; nothing is selected on the held-out block; the fold's model is then quantised
  to static int8 (calibrated on the fold's training examples) as the shipped model is, and both
  graphs are scored, so the cost of quantisation is measured on the same networks;
* **scoring**: on the held-out rows, the rules alone, the model alone and the hybrid under each of the
  27 policies (negation, historical, not-particular × rules / model / either), and each policy whose
  historical flag heeds the model again with the model's historical answer cut at P(historical) >
  0.3 and > 0.4 instead of its most probable class (``HISTORICAL_THRESHOLDS``), with the kit metrics
  of ``clinlake evaluate assertion`` (Negated, Historical, Not-particular F1);
* **distillation** (``--student``): the fold's members also teach one network
  (:mod:`~clinlake.pipelines.training.assertion_distill`), scored on the same held-out rows beside their
  average and beside the first member alone, with a policy of its own chosen the same way;
* **policy by CV**: the policy with the best mean objective (Negated + Historical + Not-particular F1)
  over the folds, preferring the one leaving most to the rules within ``margin`` of the best, as
  :func:`~pipelines.training.assertion.select_hybrid` does on devel, then one without a cut-off;
* **repeats** (``--repeats R``): the whole CV run ``R`` times on the same folds with other seeds
  (repeat ``r`` trains with ``seed + SEED_STRIDE * r``). The means and the policy are then over all
  ``k * R`` fold runs, and ``repeat_spread`` gives each engine's mean per repeat and their sd: how far
  one CV run's mean moves with the seeds alone, the yardstick a difference between recipes must beat.

Training needs torch (the ``train`` extra). Folds can run in parallel processes.
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from clinlake.pipelines.corpora.negex_kit import locate_phrase, read_kit
from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.assertion.hybrid import (CUE_MODEL, SOURCES, HybridPolicy, combine,
                                                        has_not_particular_cue)
from clinlake.pipelines.engine.assertion.model import (CONFIG_FILE, CUE_CATEGORIES, DEFAULT_WINDOW, HEADS, MODEL_FILE,
                                                       VOCAB_FILE, AssertionModel, model_label)
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.evaluation.assertion_kit import score_kit, whole_sentence
from clinlake.pipelines.training.assertion import headline
from clinlake.pipelines.training.assertion_data import (chia_train_dir, kit_path, maccrobat_train_dir,
                                                        phee_train_path, rows_examples, training_examples, with_cues)
from clinlake.pipelines.training.assertion_distill import SILVER_SOURCES, silver_examples, train_student
from clinlake.pipelines.training.assertion_int8 import quantize_model_dir
from clinlake.pipelines.training.assertion_net import build_vocab, export_onnx, make_ensemble, train
from clinlake.pipelines.training.ner.cv import CrossValidationError, fold_blocks, spread

METRICS = ("negated_f1", "historical_f1", "not_particular_f1")
MARGIN = 0.01
SEED_STRIDE = 100  # repeat r trains with seed + SEED_STRIDE * r (a fold's members use seed, seed + 1, ...)


@dataclass(frozen=True)
class AssertionRecipe:
    """How each fold's network is trained (the defaults: ``clinlake train assertion``'s, one member)."""
    epochs: int = 12
    seed: int = 13
    members: int = 1
    maccrobat: bool = True
    maccrobat_history: bool = False
    maccrobat_weight: float = 0.5
    chia: bool = False  # also Chia train conditions (negation, temporality from linked time words)
    chia_weight: float = 0.5
    phee: bool = False  # also PHEE train effects (negation from the event's Negated attribute)
    phee_weight: float = 0.5
    int8: bool = True  # score the static-int8 graph the shipped model serves (and the float one beside it)
    window: int = DEFAULT_WINDOW  # pieces of context kept each side of the target, in training and serving
    # the network also reads the ConText rules' cues of the target's sentence (model.py, "cue_categories")
    cues: bool = False
    cue_dropout: float = 0.0  # share of training rows shown without their cues (assertion_net.train)
    # distillation (pipelines/training/assertion_distill.py): also a one-network student of the fold's
    # members (the teacher), trained on the fold's gold examples and unlabelled targets of ``silver``;
    # scored beside the members' average and beside the first member alone
    student: bool = False
    silver: tuple[str, ...] = SILVER_SOURCES
    silver_weight: float = 0.5
    teacher_mix: float = 0.5  # share of the teacher's probabilities in a gold-labelled head's loss
    # also one cue-reading network per fold (members=1, no student), scored as the source of the
    # not-particular flag where the rules see a hypothetical or conditional cue (hybrid.py, cue_model)
    cue_model: bool = False


HISTORICAL_THRESHOLDS = (0.3, 0.4)  # the model's P(historical) cut-offs scored beside its most probable class


def policy_key(policy: HybridPolicy) -> str:
    threshold = "" if policy.historical_threshold is None else f">{policy.historical_threshold:g}"
    return (f"hybrid negation={policy.negation} historical={policy.historical}{threshold} "
            f"not_particular={policy.not_particular}")


def policies(*, thresholds: Sequence[float] = (), cue_model: bool = False) -> list[HybridPolicy]:
    """The 27 policies :func:`~pipelines.training.assertion.select_hybrid` chooses among (36 with
    ``cue_model``: the not-particular flag from it too), and with ``thresholds`` each policy whose
    historical flag heeds the model again at each cut-off."""
    not_particular = (*SOURCES, CUE_MODEL) if cue_model else SOURCES
    plain = [HybridPolicy(negation=n, historical=h, not_particular=p)
             for n, h, p in itertools.product(SOURCES, SOURCES, not_particular)]
    return plain + [replace(policy, historical_threshold=t) for t in thresholds for policy in plain
                    if policy.historical != "rules"]


def kit_rows(*, shared: Path | None = None) -> list[dict[str, str]]:
    """The rows cross-validation cuts into blocks: the kit's train rows, then its devel rows."""
    return read_kit(kit_path("train", shared=shared)) + read_kit(kit_path("devel", shared=shared))


def _source_weights(recipe: AssertionRecipe) -> dict[str, float]:
    return {"kit": 1.0, "maccrobat": recipe.maccrobat_weight, "chia": recipe.chia_weight, "phee": recipe.phee_weight}


def cue_categories(recipe: AssertionRecipe) -> tuple[str, ...]:
    """The rule categories the recipe's networks read as cues (none unless ``recipe.cues``)."""
    return CUE_CATEGORIES if recipe.cues else ()


def _fold_nets(examples, recipe: AssertionRecipe, *, shared: Path | None, rules: ContextAssertion
               ) -> dict[str, tuple[object, dict]]:
    """The fold's networks to score, by report key, each with its vocabulary: ``scores`` the recipe's
    (its members' average); with ``recipe.student`` also ``scores_student`` (distilled from them) and
    ``scores_member`` (the first member alone: what one network gives without a teacher)."""
    vocab = build_vocab(examples)
    weights = _source_weights(recipe)
    cues = cue_categories(recipe)
    nets = [train(examples, vocab, epochs=recipe.epochs, seed=recipe.seed + i, source_weight=weights,
                  window=recipe.window, cue_categories=cues, cue_dropout=recipe.cue_dropout)
            for i in range(recipe.members)]
    served = nets[0] if len(nets) == 1 else make_ensemble(nets)
    fold_nets: dict[str, tuple[object, dict]] = {"scores": (served, vocab)}
    if recipe.student:
        silver = silver_examples(recipe.silver, shared=shared)
        student, student_vocab = train_student(examples, with_cues(silver, rules) if cues else silver, served,
                                               vocab, epochs=recipe.epochs, seed=recipe.seed,
                                               source_weight=weights, silver_weight=recipe.silver_weight,
                                               teacher_mix=recipe.teacher_mix, window=recipe.window,
                                               cue_categories=cues, cue_dropout=recipe.cue_dropout)
        fold_nets["scores_student"] = (student, student_vocab)
        fold_nets["scores_member"] = (nets[0], vocab)
    return fold_nets


def _exported(net, vocab: dict, directory: Path, window: int = DEFAULT_WINDOW,
              cues: Sequence[str] = ()) -> AssertionModel:
    """A fold's network exported and served the way the shipped model is (its context ``window``;
    ``cues``: the rule categories a cue-reading network was trained with)."""
    directory.mkdir(parents=True, exist_ok=True)
    export_onnx(net, directory / MODEL_FILE, len(vocab))
    (directory / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = {"version": "cv", "window": window, "heads": {h: list(c) for h, c in HEADS.items()},
              **({"cue_categories": list(cues)} if cues else {})}
    (directory / CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")
    return AssertionModel(directory)


def score_engines(rows: Sequence[Mapping[str, str]], rules, model: AssertionModel,
                  cue_model: AssertionModel | None = None) -> dict[str, dict[str, float]]:
    """Kit scores of the rules, the model and every hybrid policy on ``rows`` (each engine asked once per
    row; ``cue_model`` only about the rows the hybrid would ask it about, :func:`has_not_particular_cue`)."""
    rule_results, answers, cue_answers = [], [], []
    for row in rows:
        text = row["sentence"]
        span = locate_phrase(row["phrase"], text)
        if span is None:
            rule_results.append(None)
            answers.append(None)
            cue_answers.append(None)
            continue
        results, cues = rules.assess_with_cues(text, whole_sentence(text), [span])
        rule_results.append(results[0])
        answers.append(model.answers(text, (0, len(text)), [span], cues if model.reads_cues else None)[0])
        asked = cue_model is not None and has_not_particular_cue(cues[0])
        cue_answers.append(cue_model.answers(text, (0, len(text)), [span], cues)[0] if asked else None)
    scores = {"rules": headline(score_kit(rows, rule_results)),
              "model": headline(score_kit(rows, [None if a is None else model_label(a) for a in answers]))}
    for policy in policies(thresholds=HISTORICAL_THRESHOLDS, cue_model=cue_model is not None):
        results = [None if r is None else combine(r, a, policy, cue_answer=c)
                   for r, a, c in zip(rule_results, answers, cue_answers)]
        scores[policy_key(policy)] = headline(score_kit(rows, results))
    return scores


def run_fold(rows: Sequence[Mapping[str, str]], blocks: Sequence[range], fold: int, recipe: AssertionRecipe, *,
             shared: Path | None = None, threads: int = 1) -> dict:
    """Train on every block but ``fold`` and score every engine on the held-out block."""
    import torch  # training only

    torch.set_num_threads(threads)
    started = time.time()
    held = [rows[i] for i in blocks[fold]]
    train_rows = [rows[i] for block in blocks if block is not blocks[fold] for i in block]
    examples, counts = training_examples(rows_examples(train_rows),
                                         maccrobat_train_dir(shared=shared) if recipe.maccrobat else None,
                                         with_history=recipe.maccrobat_history,
                                         chia=chia_train_dir(shared=shared) if recipe.chia else None,
                                         phee=phee_train_path(shared=shared) if recipe.phee else None)
    rules = ContextAssertion.from_file(DEFAULT_RULES_PATH)
    if recipe.cues:
        examples = with_cues(examples, rules)
    result: dict = {"fold": fold, "held_out": [blocks[fold].start, blocks[fold].stop], "examples": counts}
    with tempfile.TemporaryDirectory(prefix="assertion-cv-") as directory:
        cue_model = _fold_cue_model(examples, recipe, rules, Path(directory) / "cue_model") \
            if recipe.cue_model else None
        for key, (net, vocab) in _fold_nets(examples, recipe, shared=shared, rules=rules).items():
            model_dir = Path(directory) / key
            result[key] = score_engines(held, rules, _exported(net, vocab, model_dir, recipe.window,
                                                               cue_categories(recipe)), cue_model)
            if recipe.int8:  # the same networks, quantised as the shipped model is: a paired comparison
                quantize_model_dir(model_dir, examples)
                result[f"{key}_fp32"] = result[key]
                result[key] = score_engines(held, rules, AssertionModel(model_dir), cue_model)
    return {**result, "seconds": round(time.time() - started, 1)}


def _fold_cue_model(examples, recipe: AssertionRecipe, rules: ContextAssertion, directory: Path) -> AssertionModel:
    """The fold's cue model: one network reading the rules' cues (the recipe's data, window and seed),
    served as the shipped one is (static int8 when the recipe's networks are)."""
    cue_examples = examples if recipe.cues else with_cues(examples, rules)
    vocab = build_vocab(cue_examples)
    net = train(cue_examples, vocab, epochs=recipe.epochs, seed=recipe.seed, source_weight=_source_weights(recipe),
                window=recipe.window, cue_categories=CUE_CATEGORIES)
    model = _exported(net, vocab, directory, recipe.window, CUE_CATEGORIES)
    if recipe.int8:
        quantize_model_dir(directory, cue_examples)
        model = AssertionModel(directory)
    return model


def _objective(scores: Mapping[str, float]) -> float:
    return sum(scores[m] for m in METRICS)


def _engines(folds: Sequence[dict], key: str) -> dict:
    return {name: {m: spread([f[key][name][m] for f in folds]) for m in (*METRICS, "negation_accuracy",
                                                                          "temporality_accuracy")}
            for name in folds[0][key]}


def _policy_by_cv(folds: Sequence[dict], key: str, margin: float) -> dict:
    """The policy with the best mean objective over the folds' ``key`` scores, preferring the one leaving
    most to the rules within ``margin`` of the best, then one without a historical cut-off (reports made
    before the cut-offs were scored hold only the 27 plain policies; those are chosen among)."""
    trials = []
    scored = folds[0][key]
    for policy in (p for p in policies(thresholds=HISTORICAL_THRESHOLDS, cue_model=True) if policy_key(p) in scored):
        objective = round(statistics.fmean(_objective(f[key][policy_key(policy)]) for f in folds), 4)
        trials.append((objective, ([policy.negation, policy.historical, policy.not_particular].count("rules"),
                                   policy.historical_threshold is None), policy))
    best = max(t[0] for t in trials)
    # within the margin: most left to the rules, then no cut-off of the model's P(historical), then the best
    objective, _, chosen = max((t for t in trials if t[0] >= best - margin), key=lambda t: (t[1], t[0]))
    return {"policy": asdict(chosen), "key": policy_key(chosen), "mean_objective": objective,
            "best_objective": best, "margin": margin}


def summarise(folds: Sequence[dict], margin: float = MARGIN) -> dict:
    """Mean ± sample sd of each engine's metrics over the folds, and the policy chosen by CV (on the
    served graph's scores; with an int8 recipe, the float graph's are summarised beside them; with a
    student, its engines and its own policy, and the first member's engines). Fold runs of several
    repeats (a ``repeat`` key) also get ``repeat_spread``: see :func:`repeat_spread`."""
    floats = {"engines_fp32": _engines(folds, "scores_fp32")} if all("scores_fp32" in f for f in folds) else {}
    students: dict[str, dict] = {}
    for kind in ("student", "member"):
        if all(f"scores_{kind}" in f for f in folds):
            students[f"engines_{kind}"] = _engines(folds, f"scores_{kind}")
            students[f"policy_by_cv_{kind}"] = _policy_by_cv(folds, f"scores_{kind}", margin)
    repeats = {"repeat_spread": repeat_spread(folds)} if len({f.get("repeat", 0) for f in folds}) > 1 else {}
    return {"engines": _engines(folds, "scores"), **floats, **students,
            "policy_by_cv": _policy_by_cv(folds, "scores", margin), **repeats}


def repeat_spread(folds: Sequence[dict]) -> dict:
    """For each scored network kind (``scores``, ``scores_student``, ...), engine and metric: the mean
    over each repeat's folds (in repeat order) and the sample sd of those means. Every repeat must
    hold the same folds, or the means would not compare."""
    by_repeat: dict[int, list[dict]] = {}
    for fold in folds:
        by_repeat.setdefault(fold.get("repeat", 0), []).append(fold)
    held = {r: sorted(f["fold"] for f in runs) for r, runs in by_repeat.items()}
    if len({tuple(v) for v in held.values()}) != 1:
        raise CrossValidationError(f"the repeats hold different folds: {held}")
    keys = [k for k in folds[0] if k.startswith("scores") and all(k in f for f in folds)]
    spread_of: dict = {}
    for key in keys:
        spread_of[key] = {}
        for name in folds[0][key]:
            spread_of[key][name] = {}
            for metric in METRICS:
                means = [round(statistics.fmean(f[key][name][metric] for f in by_repeat[r]), 4)
                         for r in sorted(by_repeat)]
                spread_of[key][name][metric] = {"means": means, **spread(means)}
    return spread_of


def cross_validate_assertion(recipe: AssertionRecipe, *, k: int = 5, jobs: int = 1, folds: Sequence[int] | None = None,
                             repeats: int = 1, shared: Path | None = None) -> dict:
    """The CV report of ``recipe`` on the kit's train+devel (see the module doc), ``repeats`` times
    over the same folds with other seeds."""
    if repeats < 1:
        raise CrossValidationError(f"repeats must be 1 or more, not {repeats}")
    rows = kit_rows(shared=shared)
    blocks = fold_blocks(len(rows), k)
    chosen = list(range(k)) if folds is None else sorted(set(folds))
    runs = [(r, f) for r in range(repeats) for f in chosen]
    seeded = [replace(recipe, seed=recipe.seed + SEED_STRIDE * r) for r in range(repeats)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_fold_job, [(rows, blocks, f, seeded[r], shared) for r, f in runs]))
    else:
        results = [run_fold(rows, blocks, f, seeded[r], shared=shared) for r, f in runs]
    if repeats > 1:  # which run of the fold each result is (a single run's report keeps its old form)
        results = [{**result, "repeat": r, "seed": seeded[r].seed} for (r, _), result in zip(runs, results)]
    return {"k": k, "rows": len(rows), "recipe": asdict(recipe), **({"repeats": repeats} if repeats > 1 else {}),
            "folds": results, **summarise(results)}


def _fold_job(job: tuple) -> dict:
    rows, blocks, fold, recipe, shared = job
    return run_fold(rows, blocks, fold, recipe, shared=shared)


def format_assertion_cv(report: dict, *, shipped: HybridPolicy | None = None) -> str:
    """The rules, the model, the shipped policy and the CV-chosen policy, mean ± sd over folds."""
    recipe = report["recipe"]
    lines = [f"{report['k']}-fold CV of the assertion recipe on the NegEx kit train+devel ({report['rows']} rows; "
             f"{recipe['members']} member(s), {recipe['epochs']} epochs, MACCROBAT "
             f"{'with history' if recipe['maccrobat_history'] else 'yes' if recipe['maccrobat'] else 'no'}"
             f"{', Chia' if recipe.get('chia') else ''}{', PHEE' if recipe.get('phee') else ''}"
             f"{_cues(recipe)}"
             f"{'; the static-int8 graph, its float graph below' if recipe.get('int8') else ''}"
             f"{_window(recipe)}"
             f"{_student_recipe(recipe) if recipe.get('student') else ''}"
             f"{_repeats(report)})",
             f"{'engine':<70} {'Negated F1':>15} {'Historical F1':>15} {'Not-partic. F1':>15}"]
    names = ["rules", "model"]
    if shipped is not None:
        names.append(policy_key(shipped))
    names.append(report["policy_by_cv"]["key"])
    for name in dict.fromkeys(names):
        scores = report["engines"][name]
        label = name + (" (shipped)" if shipped is not None and name == policy_key(shipped) else "") + \
            (" (chosen by CV)" if name == report["policy_by_cv"]["key"] else "")
        lines.append(f"{label:<70} {_cells(scores)}")
    for name in dict.fromkeys(names[1:]) if "engines_fp32" in report else ():
        lines.append(f"{'float graph: ' + name:<70} {_cells(report['engines_fp32'][name])}")
    for kind, title in (("student", "student (one network, distilled)"), ("member", "first member alone")):
        for name in dict.fromkeys(names[1:]) if f"engines_{kind}" in report else ():
            lines.append(f"{title + ': ' + name:<70} {_cells(report[f'engines_{kind}'][name])}")
    if "repeat_spread" in report:
        seeds = ", ".join(map(str, sorted({f["seed"] for f in report["folds"]})))
        lines.append(f"mean of each repeat (seeds {seeds}), and their sd: how far one CV run moves with the seeds")
        for kind, title in (("scores", "repeats: "), ("scores_student", "repeats, student: ")):
            for name in dict.fromkeys(names) if kind in report["repeat_spread"] else ():
                cells = " ".join(f"{'/'.join(f'{m:.3f}' for m in cell['means']):>15} ± {cell['sd']:.3f}"
                                 for cell in (report["repeat_spread"][kind][name][m] for m in METRICS))
                lines.append(f"{title + name:<70} {cells}")
    return "\n".join(lines)


def _repeats(report: Mapping) -> str:
    repeats = report.get("repeats", 1)
    return "" if repeats == 1 else f"; {repeats} repeats on the same folds, seeds {SEED_STRIDE} apart"


def _cues(recipe: Mapping) -> str:
    cue_model = "; a cue model per fold for not_particular=cue_model" if recipe.get("cue_model") else ""
    if not recipe.get("cues"):
        return cue_model
    dropout = recipe.get("cue_dropout", 0.0)
    return "; networks read the ConText cues" + (f" ({dropout:g} of training rows without)" if dropout else "") + \
        cue_model


def _window(recipe: Mapping) -> str:
    window = recipe.get("window", DEFAULT_WINDOW)
    return "" if window == DEFAULT_WINDOW else f"; {window} pieces of context each side (shipped: {DEFAULT_WINDOW})"


def _student_recipe(recipe: Mapping) -> str:
    return (f"; a student per fold on silver {'+'.join(recipe['silver'])} at weight {recipe['silver_weight']}, "
            f"teacher mix {recipe.get('teacher_mix', 0.0)}")


def _cells(scores: Mapping[str, dict]) -> str:
    return " ".join(f"{scores[m]['mean']:7.3f} ± {scores[m]['sd']:.3f}" for m in METRICS)


def adopt_policy(model_dir: Path, report: dict, *, kit_devel: Path, cue_model_dir: Path | None = None,
                 cue_model_labels: Sequence[str] | None = ("PROBLEM",)) -> dict:
    """Write the policy a CV report chose into the model's ``hybrid.json``, with its CV scores and,
    for reference, its scores on the kit's devel split (which the CV also covered). A policy taking the
    not-particular flag from a cue model names ``cue_model_dir`` there (default: the model directory's
    sibling ``assertion_cues``), relative to the model's directory, and asks it about entities of the
    NER labels ``cue_model_labels`` only (None: any; the kit's unlabelled targets, all problems, are
    always asked, so the CV scores stand)."""
    from clinlake.pipelines.evaluation.assertion_kit import evaluate_kit
    from clinlake.pipelines.engine.assertion.hybrid import CUE_MODEL_DIR_KEY, HybridAssertion
    from clinlake.pipelines.engine.assertion.model import HYBRID_FILE

    # a distilled model takes the policy CV chose for the fold students, the recipe's otherwise
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    student = "distillation" in config.get("training", {})
    if student and "policy_by_cv_student" not in report:
        raise ValueError("the model is a distilled student but the CV report scored no students "
                         "(clinlake evaluate assertion-cv --student)")
    # a policy chosen for networks that read the rules' cues does not fit one that does not, and back
    reads_cues = bool(config.get("cue_categories"))
    if reads_cues != bool(report["recipe"].get("cues")):
        raise ValueError(f"the model {'reads' if reads_cues else 'does not read'} the rules' cues but the CV "
                         f"report's networks {'did not' if reads_cues else 'did'} (clinlake evaluate assertion-cv "
                         f"{'--cues' if reads_cues else 'without --cues'})")
    chosen = report["policy_by_cv_student" if student else "policy_by_cv"]
    engines = report["engines_student" if student else "engines"]
    policy = HybridPolicy(**chosen["policy"])
    cue_model, cue_record = None, {}
    if policy.asks_cue_model:
        policy = replace(policy, cue_model_labels=cue_model_labels)  # HybridPolicy checks it and makes it a tuple
        cue_model_dir = Path(cue_model_dir or model_dir.parent / "assertion_cues")
        if not (cue_model_dir / CONFIG_FILE).is_file():
            raise ValueError(f"the policy takes the not-particular flag from a cue model, but {cue_model_dir} holds "
                             "none (clinlake train assertion --cues --ensemble 1 --no-student --out DIR)")
        cue_model = AssertionModel(cue_model_dir)
        cue_record = {CUE_MODEL_DIR_KEY: os.path.relpath(cue_model_dir.resolve(), Path(model_dir).resolve())}
    devel = headline(evaluate_kit(kit_devel, HybridAssertion(ContextAssertion.from_file(DEFAULT_RULES_PATH),
                                                             AssertionModel(model_dir), policy, cue_model=cue_model)))
    recipe = report["recipe"]
    record = {"policy": asdict(policy), **cue_record,
              "selected_on": f"{report['k']}-fold CV of the NegEx kit train+devel ({report['rows']} rows; "
                             f"{recipe['members']} member(s) per fold, {recipe['epochs']} epochs"
                             f"{', one student distilled from them' if student else ''}"
                             f"{'; the networks read the rules cues' if reads_cues else ''}"
                             f"{'; and one cue-reading network per fold' if recipe.get('cue_model') else ''})",
              "objective": "mean over folds of negated_f1 + historical_f1 + not_particular_f1",
              "margin": chosen["margin"], "best_objective": chosen["best_objective"],
              "cv": engines[chosen["key"]], "devel": devel}
    (model_dir / HYBRID_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record

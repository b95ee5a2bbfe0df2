"""Train the assertion classifier served by :mod:`clinlake.pipelines.engine.assertion.model`
and export it to ONNX (:func:`train_and_export`).

    clinlake train assertion --out models/assertion   # 3 members, then one student; 12 epochs, ~10 min

Training data (train splits only; devel is used to pick the epoch count and the hybrid
policy, never to fit weights): the NegEx kit's train split and MACCROBAT's train documents, read by
:mod:`~clinlake.pipelines.training.assertion_data`. By default the members' average is distilled
into one network (:mod:`~clinlake.pipelines.training.assertion_distill`), which is what ships;
``--no-student`` serves the average itself.

The network (``AssertionNet``, :func:`~clinlake.pipelines.training.assertion_net.make_net`) is the one
described in :mod:`clinlake.pipelines.engine.assertion.model`. Needs the ``train`` extra (torch, onnx).
Reports scores and row counts only, never text. torch is imported inside the functions that need it
(only training does).
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.assertion.hybrid import SOURCES, HybridAssertion, HybridPolicy
from clinlake.pipelines.engine.assertion.model import (
    CONFIG_FILE, CUE_CATEGORIES, DEFAULT_WINDOW, HEADS, HYBRID_FILE, MODEL_FILE, VOCAB_FILE, AssertionModel,
    ModelAnswer, encode_targets, model_label,
)
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.evaluation.assertion_kit import evaluate_kit
from clinlake.pipelines.resources import build_dir
from clinlake.pipelines.training.assertion_data import kit_examples, training_examples, with_cues
from clinlake.pipelines.training.assertion_distill import SILVER_SOURCES, silver_examples, train_student
from clinlake.pipelines.training.assertion_int8 import quantize_model_dir
from clinlake.pipelines.training.assertion_net import build_vocab, export_onnx, make_ensemble, torch_inputs, train


def fp32_copy(model_dir: Path) -> Path:
    """Where the float graph of an int8 assertion model is kept: build/assertion/<dir name>.fp32.onnx."""
    return build_dir() / "assertion" / f"{model_dir.resolve().name}.fp32.onnx"


def quantize_trained(model_dir: Path, *, kit_train: Path, maccrobat: Path | None) -> dict:
    """Quantise an exported float model in place, calibrated on the training examples its config
    records (``clinlake train assertion --quantize-only``): nothing is retrained."""
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    training = config.get("training", {})
    with_maccrobat = maccrobat if "maccrobat_train" in training.get("examples", {}) else None
    examples, _ = training_examples(kit_examples(kit_train), with_maccrobat,
                                    with_history=bool(training.get("maccrobat_history")))
    if config.get("cue_categories"):
        examples = with_cues(examples, ContextAssertion.from_file(DEFAULT_RULES_PATH))
    return quantize_model_dir(model_dir, examples, keep_fp32=fp32_copy(model_dir))


# --- evaluation helpers -----------------------------------------------------------------


def kit_scores(engine, path: str | Path) -> dict[str, float]:
    evaluation = evaluate_kit(path, engine)
    return headline(evaluation)


def headline(evaluation) -> dict[str, float]:
    pc = evaluation.per_class
    return {
        "negation_accuracy": round(evaluation.accuracy["negation"], 4),
        "temporality_accuracy": round(evaluation.accuracy["temporality"], 4),
        "experiencer_accuracy": round(evaluation.accuracy["experiencer"], 4),
        "negated_f1": round(pc["negation"].get("Negated").f1 if "Negated" in pc["negation"] else 0.0, 4),
        "historical_f1": round(pc["temporality"]["Historical"].f1 if "Historical" in pc["temporality"] else 0.0, 4),
        "not_particular_f1": round(
            pc["temporality"]["Not particular"].f1 if "Not particular" in pc["temporality"] else 0.0, 4),
        "other_f1": round(pc["experiencer"]["Other"].f1 if "Other" in pc["experiencer"] else 0.0, 4),
    }


class _TorchEngine:
    """The in-memory network behind ``assess`` (for scoring epochs before export); a cue-reading
    network (``cue_categories``) is given the cues of ``rules``."""

    def __init__(self, net, vocab, window: int, cue_categories=(), rules: ContextAssertion | None = None) -> None:
        self.net, self.vocab, self.window = net, vocab, window
        self.cue_categories, self.rules = tuple(cue_categories), rules

    def assess(self, text, sentence, targets, section=None):
        # torch is imported here, not at module level: only training needs it, serving never does.
        import torch

        cues = self.rules.assess_with_cues(text, sentence, targets)[1] if self.cue_categories else None
        rows = encode_targets(text, (sentence.start, sentence.end), targets, self.vocab, self.window, cues=cues,
                              cue_categories=self.cue_categories)
        with torch.no_grad():
            outs = [o.numpy() for o in self.net(*torch_inputs(rows))]
        return [model_label(ModelAnswer.from_probs({h: outs[k][i] for k, h in enumerate(HEADS)}))
                for i in range(len(targets))]


def select_hybrid(model_dir: str | Path, kit_devel: str | Path, margin: float = 0.01) -> dict:
    """Choose the hybrid policy on devel: negation, historical and not-particular each from
    the rules, the model or either (27 combinations); uncertainty and experiencer stay with
    the rules (the kit has no uncertainty column and 3 devel rows with another experiencer).
    Objective: Negated F1 + Historical F1 + Not-particular F1. Among the policies within
    ``margin`` of the best (about one devel row), the one that leaves the most attributes to
    the rules wins: the rules' terminators and pseudo-triggers are explicit, and a union
    with the model would override them on a one-row gain. Writes ``hybrid.json``."""
    rules = ContextAssertion.from_file(DEFAULT_RULES_PATH)
    model = AssertionModel(model_dir)
    trials = []
    for negation, historical, not_particular in itertools.product(SOURCES, repeat=3):
        policy = HybridPolicy(negation=negation, historical=historical, not_particular=not_particular)
        scores = headline(evaluate_kit(kit_devel, HybridAssertion(rules, model, policy)))
        objective = scores["negated_f1"] + scores["historical_f1"] + scores["not_particular_f1"]
        simplicity = [negation, historical, not_particular].count("rules")
        trials.append((round(objective, 4), simplicity, policy, scores))
    best = max(t[0] for t in trials)
    objective, _, policy, scores = max((t for t in trials if t[0] >= best - margin), key=lambda t: (t[1], t[0]))
    chosen = {"policy": asdict(policy), "devel": scores, "selected_on": Path(kit_devel).name,
              "objective": "negated_f1 + historical_f1 + not_particular_f1", "margin": margin,
              "best_objective": best}
    (Path(model_dir) / HYBRID_FILE).write_text(json.dumps(chosen, indent=2) + "\n", encoding="utf-8")
    return chosen


def train_and_export(out: Path, *, kit_train: Path, kit_devel: Path, maccrobat: Path | None,
                     maccrobat_history: bool = False, maccrobat_weight: float = 0.5, epochs: int = 12,
                     seed: int = 13, ensemble: int = 3, threads: int = 1, select_epoch: bool = False,
                     int8: bool = True, student: bool = True, silver: Sequence[str] | None = None,
                     silver_weight: float = 0.5, teacher_mix: float = 0.5, cues: bool = False,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Train the classifier (``ensemble`` members, seeds ``seed``, ``seed + 1``, ...) on the kit's
    train split and, when ``maccrobat`` is a folder, MACCROBAT's train documents; export it to
    ``out`` with its vocabulary and config; score it on ``kit_devel`` and choose the hybrid
    policy there (:func:`select_hybrid`). ``student``: serve one network distilled from the members
    (:mod:`~clinlake.pipelines.training.assertion_distill`; ``silver``: its unlabelled targets, default all).
    ``select_epoch``: score every epoch on devel and
    retrain for the best count (selection only). ``int8``: serve the static-int8 graph
    (:mod:`~clinlake.pipelines.training.assertion_int8`); the float graph is kept under build/. ``cues``: the
    networks also read the ConText rules' cues (:data:`CUE_CATEGORIES`, recorded in config.json). ``progress``
    receives one line per step (row counts, epoch scores). Returns the devel scores, the hybrid choice and the
    training time."""
    # torch is imported here, not at module level: only training needs it.
    import torch

    report = progress or (lambda line: None)
    torch.set_num_threads(threads)
    started = time.time()
    examples, counts = training_examples(kit_examples(kit_train), maccrobat, with_history=maccrobat_history)
    rules = ContextAssertion.from_file(DEFAULT_RULES_PATH)
    cue_categories = CUE_CATEGORIES if cues else ()
    if cues:
        examples = with_cues(examples, rules)
    vocab = build_vocab(examples)
    report(f"examples {counts}  vocab {len(vocab)}")
    weights = {"kit": 1.0, "maccrobat": maccrobat_weight}
    history: list[dict] = []
    if select_epoch:
        def score(epoch, net, loss):
            net.eval()
            scores = kit_scores(_TorchEngine(net, vocab, DEFAULT_WINDOW, cue_categories, rules), kit_devel)
            history.append({"epoch": epoch, "loss": round(loss, 2), **scores})
            report(json.dumps(history[-1]))

        train(examples, vocab, epochs=epochs, seed=seed, source_weight=weights, cue_categories=cue_categories,
              on_epoch=score)
        best = max(history, key=lambda h: (h["historical_f1"] + h["negated_f1"] + h["not_particular_f1"],
                                           -h["epoch"]))
        epochs = best["epoch"]
        report(f"selected epochs={epochs} on devel")
    members = [train(examples, vocab, epochs=epochs, seed=seed + k, source_weight=weights,
                     cue_categories=cue_categories) for k in range(ensemble)]
    net = members[0] if len(members) == 1 else make_ensemble(members)
    distillation = None
    if student:
        silver = tuple(silver or SILVER_SOURCES)
        silver_rows = silver_examples(silver)
        if cues:
            silver_rows = with_cues(silver_rows, rules)
        net, vocab = train_student(examples, silver_rows, net, vocab, epochs=epochs, seed=seed, source_weight=weights,
                                   silver_weight=silver_weight, teacher_mix=teacher_mix, cue_categories=cue_categories,
                                   report=report)
        distillation = {"teacher_members": ensemble, "silver": list(silver), "silver_targets": len(silver_rows),
                        "silver_weight": silver_weight, "teacher_mix": teacher_mix,
                        "labels": "soft: the teacher's averaged probabilities, alone where a head has no gold "
                                  "label, mixed with it (teacher_mix) where it has"}
    train_seconds = time.time() - started
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(net, out / MODEL_FILE, len(vocab))
    (out / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = {
        "version": time.strftime("%Y%m%d", time.gmtime()) + f"-s{seed}",
        "window": DEFAULT_WINDOW,
        "heads": {h: list(c) for h, c in HEADS.items()},
        **({"cue_categories": list(cue_categories)} if cue_categories else {}),
        "training": {"examples": counts, "epochs": epochs, "seed": seed, "ensemble": 1 if student else ensemble,
                     **({"distillation": distillation} if distillation else {}),
                     "maccrobat_history": maccrobat_history, "maccrobat_weight": maccrobat_weight,
                     "vocab_size": len(vocab), "train_seconds": round(train_seconds, 1)},
        "epoch_selection": history,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if int8:
        quantize_model_dir(out, examples, keep_fp32=fp32_copy(out))
    scores = kit_scores(AssertionModel(out), kit_devel)
    hybrid = select_hybrid(out, kit_devel)
    return {"devel": scores, "hybrid": hybrid, "train_seconds": round(train_seconds, 1)}

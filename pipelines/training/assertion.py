"""Train the assertion classifier served by :mod:`clinlake.pipelines.engine.assertion.model`
and export it to ONNX (:func:`train_and_export`).

    clinlake train assertion --out models/assertion   # 3 members, 12 epochs, ~5 min

Training data (train splits only; devel is used to pick the epoch count and the hybrid
policy, never to fit weights): the NegEx kit's train split and MACCROBAT's train documents, read by
:mod:`~clinlake.pipelines.training.assertion_data`.

The network (``AssertionNet``, :func:`make_net`) is the one described in
:mod:`clinlake.pipelines.engine.assertion.model`. Needs the ``train`` extra (torch, onnx). Kept
small: a couple of minutes on one CPU core. Reports scores and row counts only, never text.
torch is imported inside the functions that need it (only training does).
"""
from __future__ import annotations

import itertools
import json
import random
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.assertion.hybrid import SOURCES, HybridAssertion, HybridPolicy
from clinlake.pipelines.engine.assertion.model import (
    BOS, CONFIG_FILE, DEFAULT_WINDOW, EOS, HEADS, HYBRID_FILE, MODEL_FILE, N_POSITIONS, PAD, POS_TARGET, UNK,
    VOCAB_FILE, AssertionModel, ModelAnswer, encode_target, model_label, normalize, pad_batch,
)
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.evaluation.assertion_kit import evaluate_kit
from clinlake.pipelines.resources import build_dir
from clinlake.pipelines.training.assertion_data import IGNORE, Example, kit_examples, training_examples
from clinlake.pipelines.training.assertion_int8 import quantize_model_dir
from clinlake.pipelines.engine.pieces import WORD_PIECE


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
    return quantize_model_dir(model_dir, examples, keep_fp32=fp32_copy(model_dir))


def build_vocab(examples: Sequence[Example], min_count: int = 2) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for ex in examples:
        for match in WORD_PIECE.finditer(ex.text[ex.span[0]:ex.span[1]]):
            counts[normalize(match.group())] += 1
    vocab = {PAD: 0, UNK: 1, BOS: 2, EOS: 3}
    for word, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count >= min_count and word not in vocab:
            vocab[word] = len(vocab)
    return vocab


# --- model ------------------------------------------------------------------------------


def make_net(n_vocab: int, dim: int = 64, pos_dim: int = 16, channels: int = 96, hidden: int = 64,
             dropout: float = 0.3):
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch
    from torch import nn

    class AssertionNet(nn.Module):
        """Masked two-layer CNN over word+position embeddings; max pools; four heads."""

        def __init__(self) -> None:
            super().__init__()
            self.word = nn.Embedding(n_vocab, dim, padding_idx=0)
            self.pos = nn.Embedding(N_POSITIONS, pos_dim, padding_idx=0)
            self.conv1 = nn.Conv1d(dim + pos_dim, channels, 3, padding=1)
            self.conv2 = nn.Conv1d(channels, channels, 3, padding=2, dilation=2)
            self.drop = nn.Dropout(dropout)
            self.hidden = nn.Linear(2 * channels, hidden)
            self.heads = nn.ModuleList([nn.Linear(hidden, len(classes)) for classes in HEADS.values()])

        def logits(self, tokens, positions):
            mask = (tokens != 0).unsqueeze(1).to(torch.float32)
            target = (positions == POS_TARGET).unsqueeze(1).to(torch.float32)
            x = torch.cat([self.word(tokens), self.pos(positions)], dim=-1).transpose(1, 2)
            x = self.drop(x)
            h1 = torch.relu(self.conv1(x)) * mask
            h2 = torch.relu(self.conv2(h1)) * mask
            h = h1 + h2
            # h >= 0 and padding is 0, so a plain max ignores padding exactly.
            pooled = torch.cat([h.amax(dim=-1), (h * target).amax(dim=-1)], dim=-1)
            z = torch.relu(self.hidden(self.drop(pooled)))
            return [head(self.drop(z)) for head in self.heads]

        def forward(self, tokens, positions):
            return tuple(torch.softmax(lg, dim=-1) for lg in self.logits(tokens, positions))

    return AssertionNet()


def _tensors(examples: Sequence[Example], vocab, window: int):
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch

    rows = [encode_target(ex.text, ex.span, ex.target, vocab, window) for ex in examples]
    tokens, positions = pad_batch(rows)
    labels = torch.tensor([[ex.labels[h] for h in HEADS] for ex in examples], dtype=torch.long)
    return torch.from_numpy(tokens), torch.from_numpy(positions), labels


def train(
    examples: Sequence[Example],
    vocab: dict[str, int],
    *,
    epochs: int = 12,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 13,
    window: int = DEFAULT_WINDOW,
    word_dropout: float = 0.1,
    source_weight: dict[str, float] | None = None,
    on_epoch=None,
):
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = random.Random(seed)
    net = make_net(len(vocab))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="none")
    weights = source_weight or {}
    order = list(range(len(examples)))
    for epoch in range(epochs):
        net.train()
        rng.shuffle(order)
        total = 0.0
        for first in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[first:first + batch_size]]
            tokens, positions, labels = _tensors(batch, vocab, window)
            if word_dropout:
                drop = (torch.rand(tokens.shape) < word_dropout) & (tokens > 3)
                tokens = tokens.masked_fill(drop, 1)
            w = torch.tensor([weights.get(ex.source, 1.0) for ex in batch])
            loss = 0.0
            for k, logits in enumerate(net.logits(tokens, positions)):
                target = labels[:, k]
                per_row = loss_fn(logits, target)
                valid = (target != IGNORE).to(torch.float32) * w
                loss = loss + (per_row * valid).sum() / max(float(valid.sum()), 1.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        if on_epoch is not None:
            on_epoch(epoch + 1, net, total)
    net.eval()
    return net


def make_ensemble(nets):
    """Average the members' probabilities (one ONNX graph, one session at run time)."""
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch
    from torch import nn

    class Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(nets)

        def forward(self, tokens, positions):
            outs = [member(tokens, positions) for member in self.members]
            return tuple(torch.stack([o[k] for o in outs]).mean(dim=0) for k in range(len(HEADS)))

    return Ensemble().eval()


def export_onnx(net, path: str | Path, vocab_size: int) -> None:
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch

    net.eval()
    tokens = torch.randint(4, vocab_size, (2, 9), dtype=torch.long)
    positions = torch.tensor([[2, 3, 4, 1, 1, 10, 11, 12, 13]] * 2, dtype=torch.long)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact for this graph
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, (tokens, positions), str(path),
            input_names=["tokens", "positions"], output_names=list(HEADS),
            dynamic_axes={"tokens": {0: "batch", 1: "length"}, "positions": {0: "batch", 1: "length"},
                          **{h: {0: "batch"} for h in HEADS}},
            opset_version=17, dynamo=False,
        )


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
    """The in-memory network behind ``assess`` (for scoring epochs before export)."""

    def __init__(self, net, vocab, window: int) -> None:
        self.net, self.vocab, self.window = net, vocab, window

    def assess(self, text, sentence, targets, section=None):
        # torch is imported here, not at module level: only training needs it, serving never does.
        import torch

        rows = [encode_target(text, (sentence.start, sentence.end), t, self.vocab, self.window) for t in targets]
        tokens, positions = pad_batch(rows)
        with torch.no_grad():
            outs = [o.numpy() for o in self.net(torch.from_numpy(tokens), torch.from_numpy(positions))]
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
                     int8: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Train the classifier (``ensemble`` members, seeds ``seed``, ``seed + 1``, ...) on the kit's
    train split and, when ``maccrobat`` is a folder, MACCROBAT's train documents; export it to
    ``out`` with its vocabulary and config; score it on ``kit_devel`` and choose the hybrid
    policy there (:func:`select_hybrid`). ``select_epoch``: score every epoch on devel and
    retrain for the best count (selection only). ``int8``: serve the static-int8 graph
    (:mod:`~clinlake.pipelines.training.assertion_int8`); the float graph is kept under build/. ``progress`` receives one line per step (row
    counts, epoch scores). Returns the devel scores, the hybrid choice and the training time."""
    # torch is imported here, not at module level: only training needs it.
    import torch

    report = progress or (lambda line: None)
    torch.set_num_threads(threads)
    started = time.time()
    examples, counts = training_examples(kit_examples(kit_train), maccrobat, with_history=maccrobat_history)
    vocab = build_vocab(examples)
    report(f"examples {counts}  vocab {len(vocab)}")
    weights = {"kit": 1.0, "maccrobat": maccrobat_weight}
    history: list[dict] = []
    if select_epoch:
        def score(epoch, net, loss):
            net.eval()
            scores = kit_scores(_TorchEngine(net, vocab, DEFAULT_WINDOW), kit_devel)
            history.append({"epoch": epoch, "loss": round(loss, 2), **scores})
            report(json.dumps(history[-1]))

        train(examples, vocab, epochs=epochs, seed=seed, source_weight=weights, on_epoch=score)
        best = max(history, key=lambda h: (h["historical_f1"] + h["negated_f1"] + h["not_particular_f1"],
                                           -h["epoch"]))
        epochs = best["epoch"]
        report(f"selected epochs={epochs} on devel")
    members = [train(examples, vocab, epochs=epochs, seed=seed + k, source_weight=weights)
               for k in range(ensemble)]
    net = members[0] if len(members) == 1 else make_ensemble(members)
    train_seconds = time.time() - started
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(net, out / MODEL_FILE, len(vocab))
    (out / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = {
        "version": time.strftime("%Y%m%d", time.gmtime()) + f"-s{seed}",
        "window": DEFAULT_WINDOW,
        "heads": {h: list(c) for h, c in HEADS.items()},
        "training": {"examples": counts, "epochs": epochs, "seed": seed, "ensemble": ensemble,
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

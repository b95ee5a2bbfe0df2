"""Train the assertion classifier served by :mod:`clinlake.pipelines.engine.assertion.model`
and export it to ONNX (:func:`train_and_export`).

    clinlake train assertion --out models/assertion   # 3 members, 12 epochs, ~5 min

Training data (train splits only; devel is used to pick the epoch count and the hybrid
policy, never to fit weights):

* the NegEx kit's ``negex_kit_train.tsv``: negation, temporality and experiencer for one
  phrase per sentence (certainty is not annotated there and is masked out of the loss);
* MACCROBAT ``train/`` (BRAT): every event trigger of a finding-like type
  (:data:`~clinlake.pipelines.corpora.label_maps.MACCROBAT_FINDING_TYPES`) becomes a target in its sentence (our own sentence splitter);
  the event's ``POLARITY`` gives negation (``NEG``) and certainty (``UNCERTAIN``);
  ``MAYBE_*`` values are masked. With ``--maccrobat-history`` a trigger inside a
  ``History`` span is labelled historical (else recent) and one inside a
  ``Family_history`` span gets the experiencer ``other`` (else patient); otherwise those
  heads are masked for MACCROBAT rows.

The network (``AssertionNet``, :func:`make_net`) is the one described in
:mod:`clinlake.pipelines.engine.assertion.model`. Needs the ``train`` extra (torch, onnx). Kept
small: a couple of minutes on one CPU core. Reports scores and row counts only, never text.
torch is imported inside the functions that need it (only training does).
"""
from __future__ import annotations

import itertools
import json
import random
import re
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from clinlake.pipelines.corpora.brat import parse_ann, read_text_exact
from clinlake.pipelines.corpora.label_maps import MACCROBAT_FINDING_TYPES
from clinlake.pipelines.corpora.negex_kit import locate_phrase, read_kit
from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.assertion.hybrid import SOURCES, HybridAssertion, HybridPolicy
from clinlake.pipelines.engine.assertion.model import (
    BOS, CONFIG_FILE, DEFAULT_WINDOW, EOS, HEADS, HYBRID_FILE, MODEL_FILE, N_POSITIONS, PAD, POS_TARGET, UNK,
    VOCAB_FILE, AssertionModel, ModelAnswer, encode_target, model_label, normalize, pad_batch,
)
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.evaluation.assertion_kit import evaluate_kit
from clinlake.pipelines.resources import build_dir, shared_data
from clinlake.pipelines.training.assertion_int8 import quantize_model_dir
from clinlake.pipelines.engine.pieces import WORD_PIECE

IGNORE = -1

KIT_NEGATION = {"Affirmed": 0, "Negated": 1}
KIT_TEMPORALITY = {"Recent": 0, "Historical": 1, "Not particular": 2}


def kit_path(split: str, *, shared: Path | None = None) -> Path:
    """The NegEx kit's ``negex_kit_<split>.tsv`` under the shared data folder (default
    :func:`~clinlake.pipelines.resources.shared_data`)."""
    return (shared_data() if shared is None else shared) / "assertion" / f"negex_kit_{split}.tsv"


def maccrobat_train_dir(*, shared: Path | None = None) -> Path:
    """MACCROBAT's BRAT ``train/`` folder under the shared data folder."""
    return (shared_data() if shared is None else shared) / "clinical" / "MACCROBAT" / "train"


def chia_train_dir(*, shared: Path | None = None) -> Path:
    """Chia's BRAT ``train/`` folder under the shared data folder."""
    return (shared_data() if shared is None else shared) / "clinical" / "Chia" / "train"


@dataclass
class Example:
    text: str
    span: tuple[int, int]
    target: tuple[int, int]
    labels: dict[str, int] = field(default_factory=dict)  # head -> class index or IGNORE
    source: str = "kit"


# --- data -------------------------------------------------------------------------------


def kit_examples(path: str | Path) -> list[Example]:
    return rows_examples(read_kit(path))


def rows_examples(rows: Iterable[dict[str, str]]) -> list[Example]:
    """Training examples of kit rows whose phrase is found in their sentence."""
    examples = []
    for row in rows:
        text = row["sentence"]
        target = locate_phrase(row["phrase"], text)
        if target is None:
            continue
        examples.append(Example(text, (0, len(text)), target, {
            "negation": KIT_NEGATION[row["negation"].strip()],
            "certainty": IGNORE,
            "temporality": KIT_TEMPORALITY[row["temporality"].strip()],
            "experiencer": 0 if row["experiencer"].strip() == "Patient" else 1,
        }))
    return examples


_T_LINE = re.compile(r"^(T\d+)\t(\S+) (\d+) (\d+)\t", re.M)
_E_LINE = re.compile(r"^(E\d+)\t(\S+):(T\d+)", re.M)
_A_LINE = re.compile(r"^A\d+\tPOLARITY (E\d+) (\S+)", re.M)


def maccrobat_examples(folder: str | Path, with_history: bool = False) -> list[Example]:
    """Targets and labels from MACCROBAT BRAT files (see module doc)."""
    splitter = TextSplitter.from_file()
    examples = []
    for ann_path in sorted(Path(folder).glob("*.ann")):
        with open(ann_path.with_suffix(".txt"), encoding="utf-8", newline="") as handle:
            text = handle.read()
        ann = ann_path.read_text(encoding="utf-8")
        spans = {m.group(1): (m.group(2), int(m.group(3)), int(m.group(4))) for m in _T_LINE.finditer(ann)}
        polarity = {m.group(1): m.group(2) for m in _A_LINE.finditer(ann)}
        history = [(s, e) for kind, s, e in spans.values() if kind == "History"]
        family = [(s, e) for kind, s, e in spans.values() if kind == "Family_history"]
        sentences = splitter.split(text)
        seen = set()
        for event in _E_LINE.finditer(ann):
            event_id, kind, trigger = event.groups()
            if kind not in MACCROBAT_FINDING_TYPES or trigger not in spans or trigger in seen:
                continue
            seen.add(trigger)
            _, start, end = spans[trigger]
            sentence = next((s for s in sentences if s.start <= start and end <= s.end), None)
            if sentence is None or start >= end:
                continue
            value = polarity.get(event_id, "POS")
            labels = {
                "negation": 1 if value == "NEG" else IGNORE if value.startswith("MAYBE") else 0,
                "certainty": 1 if value == "UNCERTAIN" else IGNORE if value.startswith("MAYBE") else 0,
                "temporality": IGNORE,
                "experiencer": IGNORE,
            }
            if with_history:
                labels["temporality"] = 1 if _inside(start, end, history) else 0
                labels["experiencer"] = 1 if _inside(start, end, family) else 0
            examples.append(Example(text, (sentence.start, sentence.end), (start, end), labels, "maccrobat"))
    return examples


def training_examples(kit: list[Example], maccrobat: Path | None, *, with_history: bool = False,
                      chia: Path | None = None) -> tuple[list[Example], dict[str, int]]:
    """The recipe's examples: the kit rows ``kit``, then MACCROBAT's train documents when ``maccrobat``
    is a folder, then Chia's when ``chia`` is; with their counts (rows of each source, MACCROBAT's
    negated and possible rows, Chia's negated and historical rows)."""
    counts = {"kit_train": len(kit)}
    examples = list(kit)
    if maccrobat is not None and maccrobat.is_dir():
        extra = maccrobat_examples(maccrobat, with_history=with_history)
        counts["maccrobat_train"] = len(extra)
        counts["maccrobat_negated"] = sum(ex.labels["negation"] == 1 for ex in extra)
        counts["maccrobat_possible"] = sum(ex.labels["certainty"] == 1 for ex in extra)
        examples += extra
    if chia is not None and chia.is_dir():
        extra = chia_examples(chia)
        counts["chia_train"] = len(extra)
        counts["chia_negated"] = sum(ex.labels["negation"] == 1 for ex in extra)
        counts["chia_historical"] = sum(ex.labels["temporality"] == 1 for ex in extra)
        examples += extra
    return examples, counts


# Chia (trial eligibility criteria) marks time by Temporal / Observation entities linked to a
# Condition; their words say which side of "now" it lies on. Anything else leaves temporality masked.
CHIA_PAST = re.compile(r"\b(?:previous(?:ly)?|prior|past|history|ago|preexisting|pre-existing|former(?:ly)?|"
                       r"last|within)\b", re.I)
CHIA_PRESENT = re.compile(r"\b(?:current(?:ly)?|active|ongoing|recent|concomitant|concurrent|acute|at screening|"
                          r"at baseline|undergoing)\b", re.I)
_R_LINE = re.compile(r"^R\d+\t(\S+) Arg1:(T\d+) Arg2:(T\d+)", re.M)


def chia_examples(folder: str | Path) -> list[Example]:
    """Every Chia ``Condition`` in its sentence (clinlake's splitter): negated where a ``Has_negation``
    relation leaves it (else affirmed); historical where it is linked to a Temporal or Observation
    entity saying past ("previous", "history of", "within the last 6 months"), recent where one says
    present ("current", "active") or where its criterion (line) has no word of the past at all,
    otherwise temporality masked; certainty and experiencer masked."""
    splitter = TextSplitter.from_file()
    examples = []
    for ann_path in sorted(Path(folder).glob("*.ann")):
        text = read_text_exact(ann_path.with_suffix(".txt"))
        document = parse_ann(ann_path.read_text(encoding="utf-8"), source=ann_path.name)
        entities = {e.id: e for e in document.entities}
        negated, when = set(), {}
        for kind, first, second in _R_LINE.findall(ann_path.read_text(encoding="utf-8")):
            if kind == "Has_negation":
                negated.add(first)
            for target, cue in ((first, second), (second, first)):
                cue_entity = entities.get(cue)
                if cue_entity is None or cue_entity.type not in ("Temporal", "Observation"):
                    continue
                if CHIA_PAST.search(cue_entity.text):
                    when[target] = 1
                elif CHIA_PRESENT.search(cue_entity.text):
                    when.setdefault(target, 0)
        sentences = splitter.split(text)
        for entity in entities.values():
            if entity.type != "Condition" or entity.discontinuous or entity.start >= entity.end:
                continue
            sentence = next((s for s in sentences if s.start <= entity.start and entity.end <= s.end), None)
            if sentence is None:
                continue
            # one criterion per line, most without a full stop: the sentence is cut at the line's ends
            line_start = text.rfind("\n", 0, entity.start) + 1
            line_end = len(text) if text.find("\n", entity.end) < 0 else text.find("\n", entity.end)
            span = (max(sentence.start, line_start), min(sentence.end, line_end))
            temporality = when.get(entity.id, IGNORE if CHIA_PAST.search(text, *span) else 0)
            labels = {"negation": 1 if entity.id in negated else 0, "certainty": IGNORE,
                      "temporality": temporality, "experiencer": IGNORE}
            examples.append(Example(text, span, (entity.start, entity.end), labels, "chia"))
    return examples


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


def _inside(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(lo <= start and end <= hi for lo, hi in spans)


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

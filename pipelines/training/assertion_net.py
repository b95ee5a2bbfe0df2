"""The assertion network and its training loop: vocabulary, ``AssertionNet`` (:func:`make_net`),
:func:`train` (gold labels, and a teacher's probabilities when distilling), the members' average
(:func:`make_ensemble`) and the ONNX export. Used by ``clinlake train assertion``
(:mod:`~clinlake.pipelines.training.assertion`), its cross-validation
(:mod:`~clinlake.pipelines.training.assertion_cv`) and distillation
(:mod:`~clinlake.pipelines.training.assertion_distill`). torch is imported inside the functions that
need it (only training does).
"""
from __future__ import annotations

import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from clinlake.pipelines.engine.assertion.model import (
    BOS, EOS, HEADS, INPUT_NAMES, N_POSITIONS, PAD, POS_TARGET, UNK, DEFAULT_WINDOW, encode_target, normalize,
    pad_batch,
)
from clinlake.pipelines.engine.pieces import WORD_PIECE
from clinlake.pipelines.training.assertion_data import IGNORE, Example


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


def n_cue_ids(cue_categories: Sequence[str]) -> int:
    """Size of the cue embedding: none, then each category modifying the target, then not modifying it."""
    return 1 + 2 * len(cue_categories) if cue_categories else 0


def encode_example(ex: Example, vocab: Mapping[str, int], window: int, cue_categories: Sequence[str] = ()
                   ) -> tuple[list[int], ...]:
    """The network's input lists for one example: with ``cue_categories`` (a cue-reading network) its
    cue ids too, from ``ex.cues`` (:func:`~clinlake.pipelines.training.assertion_data.with_cues`)."""
    if not cue_categories:
        return encode_target(ex.text, ex.span, ex.target, vocab, window)
    if ex.cues is None:
        raise ValueError("a cue-reading network needs examples with cues (assertion_data.with_cues)")
    return encode_target(ex.text, ex.span, ex.target, vocab, window, cues=ex.cues, cue_categories=cue_categories)


def torch_inputs(rows: Sequence[tuple[list[int], ...]]):
    """The padded rows as the network's positional tensors (tokens, positions[, cues])."""
    import torch  # training only

    return tuple(torch.from_numpy(a) for a in pad_batch(rows))


# --- model ------------------------------------------------------------------------------


def make_net(n_vocab: int, dim: int = 64, pos_dim: int = 16, channels: int = 96, hidden: int = 64,
             dropout: float = 0.3, n_cues: int = 0, cue_dim: int = 16):
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch
    from torch import nn

    class AssertionNet(nn.Module):
        """Masked two-layer CNN over word+position(+cue) embeddings; max pools; four heads."""

        def __init__(self) -> None:
            super().__init__()
            self.word = nn.Embedding(n_vocab, dim, padding_idx=0)
            self.pos = nn.Embedding(N_POSITIONS, pos_dim, padding_idx=0)
            self.cue = nn.Embedding(n_cues, cue_dim, padding_idx=0) if n_cues else None
            self.conv1 = nn.Conv1d(dim + pos_dim + (cue_dim if n_cues else 0), channels, 3, padding=1)
            self.conv2 = nn.Conv1d(channels, channels, 3, padding=2, dilation=2)
            self.drop = nn.Dropout(dropout)
            self.hidden = nn.Linear(2 * channels, hidden)
            self.heads = nn.ModuleList([nn.Linear(hidden, len(classes)) for classes in HEADS.values()])

        def logits(self, tokens, positions, cues=None):
            mask = (tokens != 0).unsqueeze(1).to(torch.float32)
            target = (positions == POS_TARGET).unsqueeze(1).to(torch.float32)
            parts = [self.word(tokens), self.pos(positions)]
            if self.cue is not None:
                parts.append(self.cue(cues))
            x = torch.cat(parts, dim=-1).transpose(1, 2)
            x = self.drop(x)
            h1 = torch.relu(self.conv1(x)) * mask
            h2 = torch.relu(self.conv2(h1)) * mask
            h = h1 + h2
            # h >= 0 and padding is 0, so a plain max ignores padding exactly.
            pooled = torch.cat([h.amax(dim=-1), (h * target).amax(dim=-1)], dim=-1)
            z = torch.relu(self.hidden(self.drop(pooled)))
            return [head(self.drop(z)) for head in self.heads]

        def forward(self, tokens, positions, cues=None):
            return tuple(torch.softmax(lg, dim=-1) for lg in self.logits(tokens, positions, cues))

    net = AssertionNet()
    net.n_cues = n_cues
    return net


def _tensors(examples: Sequence[Example], vocab, window: int, cue_categories: Sequence[str] = ()):
    """(input tensors: tokens, positions[, cues]; labels [rows, heads])."""
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch

    inputs = torch_inputs([encode_example(ex, vocab, window, cue_categories) for ex in examples])
    labels = torch.tensor([[ex.labels[h] for h in HEADS] for ex in examples], dtype=torch.long)
    return inputs, labels


def _soft_targets(examples: Sequence[Example]):
    """Per head: the teacher's probabilities [rows, classes] (zeros where an example has none), or
    None when no example of the batch carries any (plain training)."""
    import torch  # training only

    if all(ex.soft is None for ex in examples):
        return None
    return [torch.tensor([ex.soft[h] if ex.soft is not None else (0.0,) * len(classes) for ex in examples])
            for h, classes in HEADS.items()]


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
    teacher_mix: float = 0.0,
    cue_categories: Sequence[str] = (),
    cue_dropout: float = 0.0,
    on_epoch=None,
):
    """One network trained on ``examples``; with ``cue_categories`` it reads the rules' cues (the
    examples must carry them: :func:`~clinlake.pipelines.training.assertion_data.with_cues`), and
    ``cue_dropout`` of the rows of each batch are shown without theirs."""
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = random.Random(seed)
    net = make_net(len(vocab), n_cues=n_cue_ids(cue_categories))
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
            (tokens, *others), labels = _tensors(batch, vocab, window, cue_categories)
            soft = _soft_targets(batch)
            if word_dropout:
                drop = (torch.rand(tokens.shape) < word_dropout) & (tokens > 3)
                tokens = tokens.masked_fill(drop, 1)
            if cue_dropout and others[1:]:
                # a row seen without its cues must be judged from its words: the network then keeps
                # what it learns without cues (bare list lines, family words) instead of leaning on them
                others[1] = others[1].masked_fill((torch.rand(tokens.shape[0]) < cue_dropout)[:, None], 0)
            w = torch.tensor([weights.get(ex.source, 1.0) for ex in batch])
            loss = 0.0
            for k, logits in enumerate(net.logits(tokens, *others)):
                target = labels[:, k]
                per_row = loss_fn(logits, target)
                valid = (target != IGNORE).to(torch.float32) * w
                if soft is None:
                    loss = loss + (per_row * valid).sum() / max(float(valid.sum()), 1.0)
                    continue
                # distillation: a masked head learns the teacher's probabilities (cross-entropy against
                # them), a gold label is mixed with them (teacher_mix); each row counts once
                has_soft = (soft[k].sum(dim=-1) > 0).to(torch.float32)
                taught = (target == IGNORE).to(torch.float32) * has_soft * w
                soft_per_row = -(soft[k] * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
                gold_per_row = per_row + teacher_mix * has_soft * (soft_per_row - per_row)
                loss = loss + ((gold_per_row * valid).sum() + (soft_per_row * taught).sum()) / max(
                    float(valid.sum() + taught.sum()), 1.0)
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

        def forward(self, tokens, positions, cues=None):
            outs = [member(tokens, positions, cues) for member in self.members]
            return tuple(torch.stack([o[k] for o in outs]).mean(dim=0) for k in range(len(HEADS)))

    ensemble = Ensemble().eval()
    ensemble.n_cues = nets[0].n_cues
    return ensemble


def export_onnx(net, path: str | Path, vocab_size: int) -> None:
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch

    net.eval()
    tokens = torch.randint(4, vocab_size, (2, 9), dtype=torch.long)
    positions = torch.tensor([[2, 3, 4, 1, 1, 10, 11, 12, 13]] * 2, dtype=torch.long)
    inputs = (tokens, positions)
    if getattr(net, "n_cues", 0):  # a cue-reading network: a third input
        inputs += (torch.tensor([[0, 1, 0, 0, 0, 0, net.n_cues - 1, 0, 0]] * 2, dtype=torch.long),)
    names = list(INPUT_NAMES[:len(inputs)])
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact for this graph
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, inputs, str(path),
            input_names=names, output_names=list(HEADS),
            dynamic_axes={**{name: {0: "batch", 1: "length"} for name in names},
                          **{h: {0: "batch"} for h in HEADS}},
            opset_version=17, dynamo=False,
        )

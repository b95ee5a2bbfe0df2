"""The NER network: the BiLSTM-CNN-Char emission network and the linear-chain CRF (torch
modules), and the ONNX serving graph built from their trained weights.

torch and onnx are imported inside the functions that need them, so importing this module
(for :data:`NETWORK_OPTIONS` or :func:`iob_mask`) never loads them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from clinlake.pipelines.engine.ner.features import CASES, PAD

NEG = -10000.0  # score of a forbidden IOB transition (finite: keeps ONNX/NumPy maths NaN-free)
#: :func:`build_network` options that a training record keeps and the command line sets.
NETWORK_OPTIONS = ("hidden", "char_filters", "dropout")


def torch_module():
    """The torch module, for the training functions that need it."""
    # torch is imported here, not at module level: only training needs it, serving never does.
    import torch

    return torch


def build_network(n_chars: int, n_tags: int, *, word_dim: int = 100, char_dim: int = 25, char_filters: int = 50,
                  case_dim: int = 8, hidden: int = 150, dropout: float = 0.5):
    """The BiLSTM-CNN-Char emission network (a torch.nn.Module)."""
    torch = torch_module()
    nn = torch.nn

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.word_dim = hidden, word_dim
            self.gazetteer = None  # GazetteerChannels whose channels join the word vectors (training.ner.fit)
            self.char_embed = nn.Embedding(n_chars, char_dim, padding_idx=PAD)
            self.char_cnn = nn.Conv1d(char_dim, char_filters, kernel_size=3, padding=1)
            self.case_embed = nn.Embedding(len(CASES), case_dim, padding_idx=PAD)
            self.drop = nn.Dropout(dropout)
            size = word_dim + char_filters + case_dim
            # Two one-way LSTMs instead of bidirectional=True: the backward one reads each
            # sentence reversed *within its length*, so padding never reaches real tokens
            # and a sentence is tagged the same in any batch (also in ONNX, without packing).
            self.fwd = nn.LSTM(size, hidden, batch_first=True)
            self.bwd = nn.LSTM(size, hidden, batch_first=True)
            self.out = nn.Linear(2 * hidden, n_tags)

        def forward(self, words, chars, cases, lengths):
            """Training graph: chars [batch, steps, width] per token."""
            batch, steps, width = chars.shape
            c = self.char_features(chars.reshape(batch * steps, width)).reshape(batch, steps, -1)
            return self.encode(words, c, cases, lengths)

        def char_features(self, chars):
            """[words, width] char ids → [words, filters] max-pooled CNN features."""
            c = self.char_embed(chars).transpose(1, 2)
            # Padding characters score -inf-ish before the max so they never win the pool.
            c = self.char_cnn(c).masked_fill((chars == PAD).unsqueeze(1), -1e4)
            return c.max(dim=2).values.clamp(min=-1.0)  # empty (pad) tokens → -1

        def encode(self, words, c, cases, lengths):
            """Word vectors + char features + casing → BiLSTM → emissions."""
            batch, steps = cases.shape
            x = self.drop(torch.cat([words, c, self.case_embed(cases)], dim=2))
            positions = torch.arange(steps, device=words.device).unsqueeze(0)
            valid = positions < lengths.unsqueeze(1)
            reverse = torch.where(valid, lengths.unsqueeze(1) - 1 - positions, positions)
            index = reverse.unsqueeze(2).expand(-1, -1, x.shape[2])
            h0 = x.new_zeros((1, batch, self.hidden))
            forward, _ = self.fwd(x, (h0, h0))
            backward, _ = self.bwd(torch.gather(x, 1, index), (h0, h0))
            backward = torch.gather(backward, 1, reverse.unsqueeze(2).expand(-1, -1, self.hidden))
            return self.out(self.drop(torch.cat([forward, backward], dim=2)))

    return Tagger()


def serving_onnx(net):
    """The serving graph as an ONNX model, built from the trained weights.

    Same maths as the training graph (``net.forward``), laid out for onnxruntime:
    the char CNN runs once per distinct word of a batch (``word_chars``, ``char_index``:
    see clinlake.pipelines.engine.ner.features.encode_serving_batch), and the two one-way LSTMs
    become ONE bidirectional ONNX LSTM given ``sequence_lens``, which reads each sentence
    backwards within its own length. The torch exporter instead traced the per-sentence reversal as gathers and
    masks around two LSTMs (about a quarter of the network's time in onnxruntime)."""
    # onnx is imported here, not at module level: only exporting a trained model needs it.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def weight(tensor) -> np.ndarray:
        return tensor.detach().float().numpy()

    hidden = net.hidden
    gates = np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in (0, 3, 1, 2)])  # torch ifgo → onnx iofc
    lstms = (net.fwd, net.bwd)
    # Char embedding then a width-3 convolution is linear in the one-hot characters, so it folds
    # into one [chars, filters] table per kernel offset: conv(p) = Σ_k table_k[char(p + k - 1)],
    # the bias inside the centre table. Three lookups replace the Conv. The pad character's
    # embedding row is zero, so its side tables are zero (the convolution's zero padding); its
    # centre row is -1e4, so a padding position never wins the max pool (training masks it
    # to -1e4) and an all-padding row pools to the same -1 floor.
    kernels = weight(net.char_cnn.weight)  # [filters, char_dim, 3]
    tables = [weight(net.char_embed.weight) @ kernels[:, :, k].T for k in range(3)]
    tables[1] = tables[1] + weight(net.char_cnn.bias)
    tables[1][PAD] = -1e4
    initializers = {
        **{f"char_table_{k}": table for k, table in enumerate(tables)},
        "case_table": weight(net.case_embed.weight),
        "lstm_w": np.stack([weight(m.weight_ih_l0)[gates] for m in lstms]),
        "lstm_r": np.stack([weight(m.weight_hh_l0)[gates] for m in lstms]),
        "lstm_b": np.stack([np.concatenate([weight(m.bias_ih_l0)[gates], weight(m.bias_hh_l0)[gates]])
                            for m in lstms]),
        "out_w": np.ascontiguousarray(weight(net.out.weight).T),
        "out_b": weight(net.out.bias),
        "floor": np.array(-1.0, dtype=np.float32),
        "flat_shape": np.array([0, 0, -1], dtype=np.int64),
        "pad_both_sides": np.array([0, 1, 0, 1], dtype=np.int64),
        "axis_1": np.array([1], dtype=np.int64),
        **{f"offset_{k}": np.array([k], dtype=np.int64) for k in range(3)},
        "stop_0": np.array([-2], dtype=np.int64),
        "stop_1": np.array([-1], dtype=np.int64),
        "stop_2": np.array([np.iinfo(np.int64).max], dtype=np.int64),
    }
    node = helper.make_node
    nodes = [
        node("Pad", ["word_chars", "pad_both_sides"], ["padded_chars"]),  # [distinct, width + 2], pad id 0
        *[node("Slice", ["padded_chars", f"offset_{k}", f"stop_{k}", "axis_1"], [f"chars_{k}"]) for k in range(3)],
        *[node("Gather", [f"char_table_{k}", f"chars_{k}"], [f"term_{k}"]) for k in range(3)],  # [distinct, width, filters]
        node("Sum", ["term_0", "term_1", "term_2"], ["conv"]),
        node("ReduceMax", ["conv"], ["pooled"], axes=[1], keepdims=0),
        node("Max", ["pooled", "floor"], ["word_char_features"]),  # empty (pad) word → -1, as in training
        node("Gather", ["word_char_features", "char_index"], ["char_features"]),  # [batch, steps, filters]
        node("Gather", ["case_table", "cases"], ["case_vectors"]),
        node("Concat", ["words", "char_features", "case_vectors"], ["features"], axis=2),
        node("Transpose", ["features"], ["steps_first"], perm=[1, 0, 2]),
        node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32),
        node("LSTM", ["steps_first", "lstm_w", "lstm_r", "lstm_b", "sequence_lens"], ["lstm_out"],
             direction="bidirectional", hidden_size=hidden),  # [steps, 2, batch, hidden]
        node("Transpose", ["lstm_out"], ["batch_first"], perm=[2, 0, 1, 3]),
        node("Reshape", ["batch_first", "flat_shape"], ["states"]),  # [batch, steps, forward ++ backward]
        node("MatMul", ["states", "out_w"], ["projected"]),
        node("Add", ["projected", "out_b"], ["emissions"]),
    ]
    inputs = [
        helper.make_tensor_value_info("words", TensorProto.FLOAT, ["batch", "steps", int(net.word_dim)]),
        helper.make_tensor_value_info("word_chars", TensorProto.INT64, ["distinct", "width"]),
        helper.make_tensor_value_info("char_index", TensorProto.INT64, ["batch", "steps"]),
        helper.make_tensor_value_info("cases", TensorProto.INT64, ["batch", "steps"]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
    ]
    outputs = [helper.make_tensor_value_info("emissions", TensorProto.FLOAT,
                                             ["batch", "steps", int(net.out.out_features)])]
    graph = helper.make_graph(nodes, "clinlake_ner", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="clinlake")
    model.ir_version = 8  # readable by onnxruntime releases older than the onnx package used to build it
    onnx.checker.check_model(model, full_check=True)
    return model


def iob_mask(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Constraint scores (0 allowed, NEG forbidden) for start→tag and tag→tag under IOB2."""
    def inside(tag: str) -> str | None:
        return tag[2:] if tag.startswith("I-") else None

    def entity(tag: str) -> str | None:
        return tag[2:] if tag[:2] in ("B-", "I-") else None

    start = np.array([NEG if inside(t) else 0.0 for t in tags])
    trans = np.array([[NEG if inside(b) and entity(a) != inside(b) else 0.0 for b in tags] for a in tags])
    return start, trans


def build_crf(tags: Sequence[str]):
    """The linear-chain CRF over ``tags`` (a torch.nn.Module) with the IOB2 constraints of :func:`iob_mask`."""
    torch = torch_module()
    nn = torch.nn
    start_mask, trans_mask = (torch.tensor(m, dtype=torch.float32) for m in iob_mask(tags))

    class CRF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            k = len(tags)
            self.start = nn.Parameter(torch.zeros(k))
            self.end = nn.Parameter(torch.zeros(k))
            self.trans = nn.Parameter(torch.zeros(k, k))
            self.register_buffer("start_mask", start_mask)
            self.register_buffer("trans_mask", trans_mask)

        def scores(self):
            """Start, end and transition scores with the IOB constraints folded in."""
            return self.start + self.start_mask, self.end, self.trans + self.trans_mask

        def nll(self, emissions, gold, mask):
            """Mean negative log-likelihood of gold paths: log Z (forward algorithm) - path score."""
            start, end, trans = self.scores()
            batch, steps, _ = emissions.shape
            rows = torch.arange(batch)
            maskf = mask.float()
            path = start[gold[:, 0]] + emissions[rows, 0, gold[:, 0]]
            alpha = start + emissions[:, 0]
            for t in range(1, steps):
                step = trans[gold[:, t - 1], gold[:, t]] + emissions[rows, t, gold[:, t]]
                path = path + step * maskf[:, t]
                nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
                alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
            last = gold[rows, mask.sum(1) - 1]
            path = path + end[last]
            log_z = torch.logsumexp(alpha + end, dim=1)
            return (log_z - path).mean()

        def marginal_loss(self, emissions, targets, mask):
            """Mean over sentences of the cross-entropy between soft target tag distributions
            ``targets`` [B, T, K] (a teacher's posteriors) and this CRF's own posteriors (forward-
            backward in log space), summed over each sentence's tokens: posterior distillation."""
            start, end, trans = self.scores()
            batch, steps, k = emissions.shape
            alphas = [start + emissions[:, 0]]
            for t in range(1, steps):
                nxt = torch.logsumexp(alphas[-1].unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
                alphas.append(torch.where(mask[:, t : t + 1], nxt, alphas[-1]))
            ending = end.expand(batch, k)
            betas = [ending] * steps
            for t in range(steps - 2, -1, -1):
                nxt = torch.logsumexp(trans.unsqueeze(0) + (emissions[:, t + 1] + betas[t + 1]).unsqueeze(1), dim=2)
                betas[t] = torch.where(mask[:, t + 1 : t + 2], nxt, ending)  # t is a sentence's last token
            log_z = torch.logsumexp(alphas[-1] + end, dim=1)
            log_marginals = torch.stack(alphas, 1) + torch.stack(betas, 1) - log_z[:, None, None]
            return -((targets * log_marginals).sum(2) * mask.float()).sum(1).mean()

    return CRF()


"""The tagger's BiLSTM in int8 with activation scales that do not depend on the batch.

Why: onnxruntime's int8 LSTM (``DynamicQuantizeLSTM``, the only int8 LSTM it has) scales the
activations of each matrix product by that product's own min and max: the input projection by
the min/max of the whole input tensor of the call, the recurrent product of each step by the
min/max of that step's hidden states over the batch. So a sentence's scores depended on the
sentences batched with it, and the shipped models served an fp32 graph
(:mod:`clinlake.pipelines.training.ner.dequantize`) to let the pipeline batch many notes.

This rewrite makes both ranges constants of the graph, so every call quantises with the same
scales and a sentence's scores are the same whatever its batch-mates (checked bit for bit in
tests/training/test_lstm_int8.py):

* **input**: the LSTM input (word vector | char CNN | casing) is clipped to ``[lo, hi]``, the
  range the model can produce (the word-vector table's extremes, the casing table's, and the
  char CNN's bound: the sum over its three taps of each filter's largest weight, floored at -1),
  and two constant channels holding ``hi`` and ``lo`` are appended, with zero input weights.
  Every row of the input then spans exactly ``[lo, hi]``. The clip changes nothing the model
  can produce; it only keeps the guarantee for any input fed to the graph directly.
* **hidden state**: two *bound units* are added to each direction. Their gate biases saturate
  (input, forget and output gates at 1, candidate at +1 or -1) and their cell starts at
  ±:data:`CELL`, so their output is exactly +1 and -1 at every step; nothing reads them (zero
  recurrent and input weights out of them, and they are sliced off the LSTM output). An LSTM's
  hidden state lies in [-1, 1], so every step's range is exactly [-1, 1].

The weights are quantised as before (int8, onnxruntime's ``quantize_dynamic`` on the LSTM only;
the zero rows and columns leave their scales unchanged). Two hidden units of 150 and two
input channels of 258 add about 1 % to the LSTM's work; int8 makes the network about 2x faster
(tagging end to end about 1.7x; benchmarks/ner_speed.py).
Needs ``onnx`` (train extra)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from clinlake.pipelines.training.ner.dequantize import dequantize_graph, replace_nodes

SATURATED = 50.0  # gate pre-activation of the bound units: sigmoid and tanh give exactly 1.0 in fp32
CELL = 1000.0  # initial cell state of the bound units: tanh stays exactly ±1 over any sentence length
BOUND_UNITS = 2
TECHNIQUE = "int8 bounded"  # model.json quantization.tried


class NotATaggerGraphError(ValueError):
    """The graph is not an fp32 BiLSTM tagger graph of this project's exporter."""


def input_range(arrays: dict[str, np.ndarray], word_vectors: np.ndarray) -> tuple[float, float]:
    """[lo, hi] that holds every value the tagger graph can feed its LSTM: word vectors, the casing
    table, the char CNN's max-pooled sum of three gathered taps (floored at ``floor``), and gazetteer
    channels' term precisions, in [0, 1], for a model that has them (a no-op for the others: every
    word-vector table spans 0 and 1)."""
    taps = [arrays[name] for name in sorted(arrays) if name.startswith("char_table_")]
    if not taps or "case_table" not in arrays or "floor" not in arrays:
        raise NotATaggerGraphError("the graph has no char_table_*, case_table or floor initializer")
    char_hi = float(sum(tap.max(axis=0) for tap in taps).max())
    floor = float(arrays["floor"])
    lo = min(float(word_vectors.min()), float(arrays["case_table"].min()), floor, 0.0)
    hi = max(float(word_vectors.max()), float(arrays["case_table"].max()), char_hi, floor, 1.0)
    return lo, hi


def _widen(weights: np.ndarray, hidden: int, *, extra_rows: int, extra_cols: int) -> np.ndarray:
    """[dirs, 4*hidden, cols] gate-stacked (i, o, f, c) weights with ``extra_rows`` zero rows after
    each gate's block and ``extra_cols`` zero columns."""
    dirs, _, cols = weights.shape
    wide = hidden + extra_rows
    out = np.zeros((dirs, 4 * wide, cols + extra_cols), dtype=np.float32)
    for gate in range(4):
        out[:, gate * wide:gate * wide + hidden, :cols] = weights[:, gate * hidden:(gate + 1) * hidden]
    return out


def _bias(bias: np.ndarray, hidden: int) -> np.ndarray:
    """[dirs, 8*(hidden+2)] biases (input then recurrent, gates i, o, f, c): the real units' as
    given; the bound units' input biases saturate every gate, the candidate of the low unit at -1."""
    wide = hidden + BOUND_UNITS
    out = np.zeros((bias.shape[0], 8 * wide), dtype=np.float32)
    for half in range(2):
        for gate in range(4):
            src = half * 4 * hidden + gate * hidden
            dst = half * 4 * wide + gate * wide
            out[:, dst:dst + hidden] = bias[:, src:src + hidden]
    for gate in range(4):
        out[:, gate * wide + hidden] = SATURATED
        out[:, gate * wide + hidden + 1] = SATURATED if gate < 3 else -SATURATED
    return out


def bound_lstm(model, *, lo: float, hi: float):
    """Rewrite the fp32 tagger graph ``model`` (an ``onnx.ModelProto``, changed in place and
    returned) so its LSTM sees inputs spanning exactly [lo, hi] and hidden states spanning [-1, 1]."""
    from onnx import helper, numpy_helper

    graph = model.graph
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    if len(lstms) != 1:
        raise NotATaggerGraphError(f"expected one fp32 LSTM, found {len(lstms)} "
                                   f"({sorted({n.op_type for n in graph.node if 'LSTM' in n.op_type})})")
    (lstm,) = lstms
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    x, w, r, b, lens = (list(lstm.input) + [""] * 5)[:5]
    if len(lstm.input) > 5 and any(lstm.input[5:]):
        raise NotATaggerGraphError("the LSTM already has initial states or peepholes")
    hidden = next(a.i for a in lstm.attribute if a.name == "hidden_size")
    dirs = arrays[w].shape[0]
    wide = hidden + BOUND_UNITS
    state = np.zeros((dirs, 1, wide), dtype=np.float32)
    h0, c0 = state.copy(), state.copy()
    h0[..., hidden], h0[..., hidden + 1] = 1.0, -1.0
    c0[..., hidden], c0[..., hidden + 1] = CELL, -CELL
    consts = {
        "bounded_w": _widen(arrays[w], hidden, extra_rows=BOUND_UNITS, extra_cols=2),
        "bounded_r": _widen(arrays[r], hidden, extra_rows=BOUND_UNITS, extra_cols=BOUND_UNITS),
        "bounded_b": _bias(arrays[b], hidden),
        "bounded_h0": h0, "bounded_c0": c0,
        "bounded_lo": np.array(lo, dtype=np.float32), "bounded_hi": np.array(hi, dtype=np.float32),
        "bounded_channels": np.array([hi, lo], dtype=np.float32),
        "bounded_dirs": np.array([dirs], dtype=np.int64), "bounded_wide": np.array([wide], dtype=np.int64),
        "bounded_two": np.array([2], dtype=np.int64),
        "bounded_0": np.array([0], dtype=np.int64), "bounded_1": np.array([1], dtype=np.int64),
        "bounded_2": np.array([2], dtype=np.int64), "bounded_3": np.array([3], dtype=np.int64),
        "bounded_hidden": np.array([hidden], dtype=np.int64),
    }
    out = lstm.output[0]
    node = helper.make_node
    added = [
        node("Clip", [x, "bounded_lo", "bounded_hi"], ["bounded_x"]),
        node("Shape", [x], ["bounded_x_shape"]),
        node("Slice", ["bounded_x_shape", "bounded_0", "bounded_2"], ["bounded_steps_batch"]),
        node("Slice", ["bounded_x_shape", "bounded_1", "bounded_2"], ["bounded_batch"]),
        node("Concat", ["bounded_steps_batch", "bounded_two"], ["bounded_channels_shape"], axis=0),
        node("Expand", ["bounded_channels", "bounded_channels_shape"], ["bounded_channel_values"]),
        node("Concat", ["bounded_x", "bounded_channel_values"], ["bounded_input"], axis=2),
        node("Concat", ["bounded_dirs", "bounded_batch", "bounded_wide"], ["bounded_state_shape"], axis=0),
        node("Expand", ["bounded_h0", "bounded_state_shape"], ["bounded_initial_h"]),
        node("Expand", ["bounded_c0", "bounded_state_shape"], ["bounded_initial_c"]),
        node("LSTM", ["bounded_input", "bounded_w", "bounded_r", "bounded_b", lens, "bounded_initial_h",
                      "bounded_initial_c"], [out + "_with_bounds"], name="bounded_lstm",
             **{a.name: helper.get_attribute_value(a) for a in lstm.attribute if a.name != "hidden_size"},
             hidden_size=wide),
        node("Slice", [out + "_with_bounds", "bounded_0", "bounded_hidden", "bounded_3"], [out]),  # real units only
    ]
    nodes = []
    for existing in graph.node:
        nodes.extend(added if existing is lstm else [existing])
    replace_nodes(graph, nodes, [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return model


def quantize_bounded(fp32: Path, int8: Path, *, word_vectors: np.ndarray) -> dict:
    """Write the int8, batch-invariant version of the fp32 tagger graph ``fp32`` to ``int8`` (the
    LSTM's weights int8, its activation ranges fixed by :func:`bound_lstm`; the rest stays fp32).
    Returns what model.json records about it."""
    import onnx
    from onnx import numpy_helper
    # onnxruntime.quantization imports onnx: only finishing a trained model needs it
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(fp32))
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    lo, hi = input_range(arrays, word_vectors)
    bound_lstm(model, lo=lo, hi=hi)
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        bounded = Path(tmp) / "bounded.onnx"
        onnx.save(model, str(bounded))
        quantize_dynamic(str(bounded), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
    return {"tried": TECHNIQUE, "batch_invariant": True, "input_range": [round(lo, 6), round(hi, 6)],
            "bound_units": BOUND_UNITS}


def is_bounded(model) -> bool:
    """Whether the ``onnx.ModelProto`` holds :func:`bound_lstm`'s rewrite (int8 or dequantised)."""
    return any(node.name.startswith("bounded_lstm") for node in model.graph.node)  # the quantiser adds "_quant"


def remove_bounds(model):
    """Undo :func:`bound_lstm` on an fp32 graph (e.g. a bounded int8 graph after
    :func:`~clinlake.pipelines.training.ner.dequantize.dequantize_graph`): the plain LSTM of the
    real units again, changed in place and returned. The weights are those of the given graph."""
    from onnx import helper, numpy_helper

    graph = model.graph
    lstm = next((node for node in graph.node if node.name.startswith("bounded_lstm")), None)
    if lstm is None or lstm.op_type != "LSTM":
        raise NotATaggerGraphError("no fp32 bounded_lstm node: dequantise the int8 graph first")
    producer = {out: node for node in graph.node for out in node.output}
    clip = producer[producer[lstm.input[0]].input[0]]  # Concat(Clip(x), bounds) -> x
    (strip,) = [node for node in graph.node if lstm.output[0] in node.input]
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    wide = next(a.i for a in lstm.attribute if a.name == "hidden_size")
    hidden = wide - BOUND_UNITS
    w, r, b = (arrays[name] for name in lstm.input[1:4])
    rows = np.concatenate([np.arange(g * wide, g * wide + hidden) for g in range(4)])
    plain = {"lstm_w": w[:, rows, :-2], "lstm_r": r[:, rows, :hidden],
             "lstm_b": b[:, np.concatenate([rows, 4 * wide + rows])]}
    restored = helper.make_node(
        "LSTM", [clip.input[0], "lstm_w", "lstm_r", "lstm_b", lstm.input[4]], list(strip.output), name="lstm",
        **{a.name: helper.get_attribute_value(a) for a in lstm.attribute if a.name != "hidden_size"},
        hidden_size=hidden)
    added = {id(node) for node in graph.node
             if any(out.startswith("bounded_") or out.endswith("_with_bounds") for out in node.output)}
    nodes = [restored if node is strip else node for node in graph.node if id(node) not in added]
    replace_nodes(graph, nodes, [numpy_helper.from_array(v.astype(np.float32), k) for k, v in plain.items()])
    return model


def plain_fp32_graph(src: Path, dst: Path) -> dict[str, int]:
    """Write the fp32 graph of the int8 tagger graph ``src`` to ``dst``: its int8-rounded weights in
    fp32, and for a bounded graph the plain LSTM again (for the shipped models, exactly the fp32
    graph the bounded one was made from). Returns what the rewrite counted (``dequantize_graph``)."""
    import onnx

    counts = dequantize_graph(src, dst)
    model = onnx.load(str(dst))
    if is_bounded(model):
        remove_bounds(model)
        onnx.checker.check_model(model)
        onnx.save(model, str(dst))
        counts = {**counts, "bounds_removed": 1}
    return counts

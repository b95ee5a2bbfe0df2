"""An int8 dynamic-quantised tagger graph rewritten as an fp32 graph of the same (int8-rounded) weights.

Why: onnxruntime's dynamic quantisation scales the *activations* of each call by that call's
whole input tensor (``DynamicQuantizeLSTM``, ``DynamicQuantizeLinear``), so a sentence's
scores depend on the sentences batched with it. The pipeline could only tag each note on its
own. The fp32 graph computes every row independently (checked bit for bit in
tests/engine/test_ner_batching.py), so the sentences of many notes can share network calls,
which more than pays for the int8 arithmetic it gives up (README, "Performance";
``python -m benchmarks.run``).

The weights stay the int8-rounded ones (``(q - zero_point) * scale``): the model is the one
its card scored, only its activations are no longer rounded. Needs ``onnx`` (train extra).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

DYNAMIC_OPS = frozenset({"DynamicQuantizeLSTM", "DynamicQuantizeLinear", "MatMulInteger"})


class NotDynamicInt8Error(ValueError):
    """The graph holds none of the dynamic-quantisation ops this module rewrites."""


def _weights(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, *, channel_axis: int) -> np.ndarray:
    """(q - zero_point) * scale, with per-tensor, per-direction or per-channel scales."""
    q, scale, zero_point = (np.asarray(x, dtype=np.float32) for x in (q, scale, zero_point))
    if scale.ndim:  # broadcast [dirs] or [dirs, channels] against [dirs, rows, channels]
        shape = [1] * q.ndim
        shape[0] = scale.shape[0]
        if scale.ndim == 2:
            shape[channel_axis] = scale.shape[1]
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return (q - zero_point) * scale


def dequantize_graph(src: Path, dst: Path) -> dict[str, int]:
    """Write ``src`` (an int8 dynamic-quantised ONNX graph) to ``dst`` as fp32. Returns how many
    LSTMs and MatMuls were rewritten. Raises :class:`NotDynamicInt8Error` for any other graph."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    array = {name: numpy_helper.to_array(init) for name, init in inits.items()}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    dropped, added, new_inits, counts = set(), {}, [], {"lstm": 0, "matmul": 0}

    for node in graph.node:
        if node.op_type == "DynamicQuantizeLSTM":
            x, w, r, b, lens, h0, c0, p, w_scale, w_zp, r_scale, r_zp = (list(node.input) + [""] * 12)[:12]
            # DynamicQuantizeLSTM keeps W/R as [dirs, input, 4*hidden]; LSTM wants [dirs, 4*hidden, input]
            for name, q, scale, zp in ((w + "_fp32", w, w_scale, w_zp), (r + "_fp32", r, r_scale, r_zp)):
                new_inits.append(numpy_helper.from_array(
                    _weights(array[q], array[scale], array[zp], channel_axis=2).transpose(0, 2, 1).copy(), name))
            inputs = [x, w + "_fp32", r + "_fp32", b, lens, h0, c0, p]
            while inputs and not inputs[-1]:
                inputs.pop()
            lstm = helper.make_node("LSTM", inputs, list(node.output), name=node.name)
            lstm.attribute.extend(node.attribute)
            added[id(node)] = lstm
            counts["lstm"] += 1
        elif node.op_type == "MatMulInteger":
            a_q, b_q, _a_zp, b_zp = (list(node.input) + [""] * 4)[:4]
            quantizer = producer[a_q]
            (cast,) = consumers[node.output[0]]
            (rescale,) = consumers[cast.output[0]]
            scale_product = producer[next(i for i in rescale.input if i != cast.output[0])]
            b_scale = next(i for i in scale_product.input if i != quantizer.output[1])
            if quantizer.op_type != "DynamicQuantizeLinear" or cast.op_type != "Cast" or rescale.op_type != "Mul":
                raise NotDynamicInt8Error(f"unexpected MatMulInteger pattern around {node.name!r}")
            weight = b_q + "_fp32"
            new_inits.append(numpy_helper.from_array(
                _weights(array[b_q], array[b_scale], array[b_zp] if b_zp else np.zeros(()), channel_axis=1), weight))
            added[id(node)] = helper.make_node("MatMul", [quantizer.input[0], weight], list(rescale.output),
                                               name=node.name + "_fp32")
            dropped.update({id(quantizer), id(cast), id(rescale), id(scale_product)})
            counts["matmul"] += 1
    if not added:
        raise NotDynamicInt8Error(f"{src} holds no dynamic int8 LSTM or MatMul")

    replace_nodes(graph, [added.get(id(node), node) for node in graph.node if id(node) not in dropped], new_inits)
    if any(node.op_type in DYNAMIC_OPS for node in graph.node):
        raise NotDynamicInt8Error("dynamic-quantisation ops left after the rewrite")
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return counts


def replace_nodes(graph, nodes: list, initializers: list) -> None:
    """Make ``nodes`` the graph's nodes, in order, and ``initializers`` (TensorProtos) its new
    initializers; an old initializer is kept only where a node still reads it and no new one
    takes its name."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    replaced = {init.name for init in initializers}
    kept = [init for init in graph.initializer if init.name in used and init.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + list(initializers))


def is_dynamic_int8(path: Path) -> bool:
    import onnx

    return any(node.op_type in DYNAMIC_OPS for node in onnx.load(str(path), load_external_data=False).graph.node)

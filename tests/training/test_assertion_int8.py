"""Static int8 quantisation of the assertion CNN (pipelines/training/assertion_int8.py)."""
import json
import re

import numpy as np
import pytest

from clinlake.pipelines.engine.assertion.model import (CONFIG_FILE, HEADS, MODEL_DIR_DEFAULT, MODEL_FILE, VOCAB_FILE,
                                                       AssertionModel, pad_batch)
from clinlake.pipelines.training.assertion_data import Example
from clinlake.pipelines.training.assertion_int8 import (VERSION_SUFFIX, QuantizationError, calibration_feeds,
                                                        quantize_model_dir)

SENTENCES = ["No fever , chills or night sweats but a productive cough since last week .",
             "History of hypertension and diabetes , mother with breast cancer .",
             "Patient denies chest pain ; possible pneumonia on the left .",
             "If the rash returns , stop the antibiotic ."]


def _examples(copies: int = 20) -> list[Example]:
    examples = []
    for text in SENTENCES * copies:
        for match in re.finditer(r"[a-z]{4,}", text):
            examples.append(Example(text, (0, len(text)), (match.start(), match.end())))
    return examples


def _vocab() -> dict[str, int]:
    words = sorted({w.lower() for s in SENTENCES for w in s.split()})
    return {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate(words)}}


@pytest.fixture()
def float_model(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from clinlake.pipelines.training.assertion_net import export_onnx, make_ensemble, make_net

    torch.manual_seed(0)
    vocab = _vocab()
    export_onnx(make_ensemble([make_net(len(vocab)), make_net(len(vocab))]).eval(), tmp_path / MODEL_FILE, len(vocab))
    (tmp_path / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"version": "t-s0", "window": 40,
                                                    "heads": {h: list(c) for h, c in HEADS.items()}}))
    return tmp_path


def _probabilities(model: AssertionModel, rows) -> np.ndarray:
    return np.array([[a.negated, a.possible, a.historical, a.not_particular, a.other]
                     for text, span, targets in rows for a in model.answers(text, span, targets)])


def test_calibration_feeds_are_a_seeded_sample_in_length_sorted_batches():
    examples, vocab = _examples(), _vocab()
    feeds = calibration_feeds(examples, vocab, 40, rows=50, batch=16)
    assert [len(f["tokens"]) for f in feeds] == [16, 16, 16, 2]
    widths = [f["tokens"].shape[1] for f in feeds]
    assert widths == sorted(widths)
    again = calibration_feeds(examples, vocab, 40, rows=50, batch=16)
    assert all(np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(feeds, again))
    everything = calibration_feeds(examples[:10], vocab, 40, rows=50, batch=16)  # fewer than rows: all of them
    assert sum(len(f["tokens"]) for f in everything) == 10


def test_quantised_model_is_int8_close_to_float_and_records_how(float_model, tmp_path):
    import onnx

    examples = _examples()
    rows = [(s, (0, len(s)), [(m.start(), m.end()) for m in re.finditer(r"[a-z]{4,}", s)]) for s in SENTENCES]
    before = _probabilities(AssertionModel(float_model), rows)
    record = quantize_model_dir(float_model, examples, keep_fp32=tmp_path / "kept" / "model.fp32.onnx")
    config = json.loads((float_model / CONFIG_FILE).read_text())
    assert config["version"] == "t-s0" + VERSION_SUFFIX and config["quantization"] == record
    assert record["ops"] == ["Conv"] and record["calibration_rows"] == len(examples)
    ops = [n.op_type for n in onnx.load(str(float_model / MODEL_FILE)).graph.node]
    assert ops.count("Conv") == 4 and ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 8
    kept = [n.op_type for n in onnx.load(str(tmp_path / "kept" / "model.fp32.onnx")).graph.node]
    assert "QuantizeLinear" not in kept and kept.count("Conv") == 4
    after = _probabilities(AssertionModel(float_model), rows)
    assert before.shape == after.shape == (len([t for *_, ts in rows for t in ts]), 5)
    assert 0 < np.abs(before - after).max() < 0.05  # changed (it is int8), but little
    with pytest.raises(QuantizationError, match="already quantised"):
        quantize_model_dir(float_model, examples)


def test_quantised_answers_do_not_depend_on_batch_mates_or_padding(float_model):
    """Fixed scales: a row quantises the same whatever else is in its call (dynamic int8 would not)."""
    import onnxruntime as ort

    quantize_model_dir(float_model, _examples())
    session = ort.InferenceSession(str(float_model / MODEL_FILE), providers=["CPUExecutionProvider"])
    rows = [([2, 7, 9, 11, 3], [3, 2, 1, 10, 11]), ([2] + [5, 8, 9, 12] * 6 + [3], [4] * 26), ([6, 3], [10, 11])]

    def answers(batch):
        tokens, positions = pad_batch(batch)
        return session.run(list(HEADS), {"tokens": tokens, "positions": positions})

    together = answers(rows)
    for i, row in enumerate(rows):
        alone = answers([row])
        for head_together, head_alone in zip(together, alone):
            assert np.array_equal(head_together[i], head_alone[0])


def test_the_shipped_assertion_model_is_the_static_int8_graph():
    onnx = pytest.importorskip("onnx")

    config = json.loads((MODEL_DIR_DEFAULT / CONFIG_FILE).read_text())
    assert config["version"].endswith(VERSION_SUFFIX) and config["quantization"]["ops"] == ["Conv"]
    assert config["quantization"]["calibration_rows"] == 2048
    ops = [n.op_type for n in onnx.load(str(MODEL_DIR_DEFAULT / MODEL_FILE)).graph.node]
    # one network (a student distilled from 3 members), 2 convolutions
    assert config["training"]["ensemble"] == 1 and config["training"]["distillation"]["teacher_members"] == 3
    assert ops.count("Conv") == 2 and ops.count("QuantizeLinear") >= 2

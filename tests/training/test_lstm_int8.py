"""The tagger's LSTM in int8 with fixed activation ranges (pipelines/training/ner/lstm_int8.py):
batch invariance bit for bit, scores kept, the rewrite undone exactly, and the refresh command."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from clinlake.pipelines.engine.ner.features import encode_serving_batch
from clinlake.pipelines.engine.ner.model import NerModel
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.resources import package_resource

onnx = pytest.importorskip("onnx")

from clinlake.pipelines.training.ner.lstm_int8 import (  # noqa: E402  (needs onnx)
    NotATaggerGraphError, bound_lstm, input_range, is_bounded, plain_fp32_graph, quantize_bounded, remove_bounds,
)

NOTES = [
    "HISTORY: Type 2 diabetes mellitus and hypertension. No chest pain.\n\nMEDICATIONS: Metformin 500 mg b.i.d.",
    "Chest x-ray showed a right lower lobe pneumonia. She was started on ceftriaxone and azithromycin.",
    "The patient denies fever, chills or night sweats. Hemoglobin A1c was 9.2 %. MRI of the brain was normal.",
    "Mother with breast cancer. Father had a myocardial infarction at 54. " * 3,
    "Acute kidney injury (AKI) resolved. AKI was attributed to contrast nephropathy in a 3.5 cm renal cyst.",
    "Ok.",
]


@pytest.fixture(scope="module")
def sentences() -> list[list[str]]:
    splitter = TextSplitter.from_file()
    return [[t.text for t in s.tokens] for text in NOTES for s in splitter.split(text)]


def _session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _emissions(session: ort.InferenceSession, model: NerModel, batch: list[list[str]]) -> np.ndarray:
    return session.run(["emissions"], encode_serving_batch(batch, model.features))[0]


def _alone_equals_in_batch(session, model, sentences) -> list[bool]:
    """Per sentence: are its scores alone bit for bit those it gets inside the whole batch, and in
    the reversed batch?"""
    together = _emissions(session, model, sentences)
    backwards = _emissions(session, model, sentences[::-1])[::-1]
    return [np.array_equal(_emissions(session, model, [words])[0], together[i, : len(words)])
            and np.array_equal(backwards[i, : len(words)], together[i, : len(words)])
            for i, words in enumerate(sentences)]


def test_input_range_bounds_every_feature_the_graph_can_make():
    taps = {f"char_table_{k}": np.array([[0.0, -1.0], [0.5 * (k + 1), 2.0], [-3.0, 0.25]], dtype=np.float32)
            for k in range(3)}
    arrays = {**taps, "case_table": np.array([[0.0, -2.5], [1.5, 0.0]], dtype=np.float32),
              "floor": np.array(-1.0, dtype=np.float32)}
    vectors = np.array([[0.1, -0.75], [1.25, 0.3]], dtype=np.float16)
    # char CNN: per filter the sum of each tap's largest weight: (0.5+1+1.5, 2+2+2) -> 6.0
    assert input_range(arrays, vectors) == (-2.5, 6.0)
    with pytest.raises(NotATaggerGraphError):
        input_range({"case_table": arrays["case_table"]}, vectors)


def test_bound_units_leave_the_fp32_scores_unchanged(fp32_model_dir, sentences, tmp_path):
    plain_dir = fp32_model_dir("ncbi_disease")
    model = NerModel(plain_dir)
    graph = onnx.load(str(plain_dir / "model.onnx"))
    bounded = tmp_path / "bounded.onnx"
    onnx.save(bound_lstm(graph, lo=-8.0, hi=8.0), str(bounded))
    assert is_bounded(onnx.load(str(bounded)))
    before = _emissions(_session(plain_dir / "model.onnx"), model, sentences)
    after = _emissions(_session(bounded), model, sentences)
    assert before.shape == after.shape
    assert np.abs(before - after).max() < 1e-4  # same network; only float summation order may differ


def test_bounded_int8_scores_a_sentence_the_same_in_any_batch(fp32_model_dir, sentences, tmp_path):
    from clinlake.pipelines.training.ner.export import quantize_dynamic_copy

    plain_dir = fp32_model_dir("clinical_core")
    model = NerModel(plain_dir)
    bounded, dynamic = tmp_path / "bounded.onnx", tmp_path / "dynamic.onnx"
    record = quantize_bounded(plain_dir / "model.onnx", bounded, word_vectors=model.embeddings.vectors)
    assert record["batch_invariant"] and record["bound_units"] == 2
    lo, hi = record["input_range"]
    assert lo < 0 < hi
    for threads in (1, 2):  # two threads split the batch's rows between them
        assert all(_alone_equals_in_batch(_session(bounded, threads), model, sentences))
    # the check can fail: plain dynamic int8 scales by each call's own ranges
    quantize_dynamic_copy(plain_dir / "model.onnx", dynamic)
    assert not all(_alone_equals_in_batch(_session(dynamic), model, sentences))
    # int8 stays close to the fp32 network
    gap = np.abs(_emissions(_session(bounded), model, sentences) - _emissions(_session(plain_dir / "model.onnx"),
                                                                            model, sentences)).max()
    assert 0 < gap < 1.0


def test_the_shipped_bounded_graph_is_undone_and_redone_exactly(fp32_model_dir, sentences, tmp_path):
    shipped = Path(package_resource("models/clinical_core"))
    plain_dir = fp32_model_dir("clinical_core")
    plain = onnx.load(str(plain_dir / "model.onnx"))
    assert not is_bounded(plain) and "LSTM" in {n.op_type for n in plain.graph.node}
    with pytest.raises(NotATaggerGraphError):
        remove_bounds(plain)
    redone = tmp_path / "redone.onnx"
    model = NerModel(plain_dir)
    quantize_bounded(plain_dir / "model.onnx", redone, word_vectors=model.embeddings.vectors)
    served = NerModel(shipped)
    assert np.array_equal(_emissions(_session(redone), model, sentences),
                          served.network_emissions(sentences))
    with pytest.raises(NotATaggerGraphError):  # a bounded graph cannot be bounded twice
        bound_lstm(onnx.load(str(redone)), lo=-1.0, hi=1.0)


def test_quantize_model_serves_batch_invariant_int8_when_f1_holds(fp32_model_dir, tmp_path, monkeypatch):
    from clinlake.pipelines.training import refresh
    from clinlake.pipelines.training.ner import export

    models = tmp_path / "models"
    shutil.copytree(fp32_model_dir("ncbi_disease"), models / "ncbi_disease")
    meta_path = models / "ncbi_disease" / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["quantization"] = {"tried": "int8 dynamic", "kept": False, "served": "fp32 graph of the int8 weights"}
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    monkeypatch.setattr(export, "tokens_per_second", lambda model, sequences, seconds=10.0: 4321.0)

    final = refresh.quantize_model("ncbi_disease", models=models, artifacts=tmp_path / "build")

    quantization = final["quantization"]
    assert quantization["tried"] == "int8 bounded" and quantization["kept"] is True
    assert quantization["from"] == "fp32 graph of the int8 weights"
    assert quantization["dev_f1_int8"] >= quantization["dev_f1_fp32"] - 0.002 and quantization["dev_f1_fp32"] > 0.8
    assert is_bounded(onnx.load(str(models / "ncbi_disease" / "model.onnx")))
    assert len(list((tmp_path / "build").glob("ncbi_disease*/model.fp32.onnx"))) == 1  # the fp32 graph is kept
    assert NerModel(models / "ncbi_disease").batch_invariant and final["speed_pieces_per_s_1_thread"] == 4321
    card = (models / "ncbi_disease" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "int8 LSTM" in card and "batch-invariant" in card
    with pytest.raises(ValueError, match="already int8"):
        refresh.quantize_model("ncbi_disease", models=models, artifacts=tmp_path / "build")
    # and back: --dequantize gives the plain fp32 graph it was made from
    back = tmp_path / "back.onnx"
    plain_fp32_graph(models / "ncbi_disease" / "model.onnx", back)
    names = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(back)).graph.initializer}
    original = {i.name: onnx.numpy_helper.to_array(i)
                for i in onnx.load(str(fp32_model_dir("ncbi_disease") / "model.onnx")).graph.initializer}
    assert np.array_equal(names["lstm_w"], original["lstm_w"]) and np.array_equal(names["lstm_r"], original["lstm_r"])

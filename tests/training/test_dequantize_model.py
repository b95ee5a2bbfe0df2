"""`clinlake train card NAME --dequantize` serves the int8-rounded weights it was given."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clinlake.pipelines.resources import package_resource


def test_dequantize_serves_the_int8_weights_not_a_full_precision_export_kept_under_build(tmp_path, monkeypatch,
                                                                                        fp32_model_dir):
    pytest.importorskip("onnx")
    from clinlake.pipelines.training import refresh
    from clinlake.pipelines.training.ner import export
    from clinlake.pipelines.training.ner.artifacts import artifacts_dir
    from clinlake.pipelines.training.ner.dequantize import dequantize_graph

    shipped = Path(package_resource("models/ncbi_disease"))
    models = tmp_path / "models"
    target = models / "ncbi_disease"
    target.mkdir(parents=True)
    export.quantize_dynamic_copy(fp32_model_dir("ncbi_disease") / "model.onnx", target / "model.onnx")
    meta = json.loads((shipped / "model.json").read_text(encoding="utf-8"))
    meta["embeddings"] = str((shipped / meta["embeddings"]).resolve())
    meta["quantization"] = {"tried": "int8 dynamic", "kept": True}
    (target / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    expected = tmp_path / "expected.onnx"
    dequantize_graph(target / "model.onnx", expected)
    # A full-precision export kept under build/ by an earlier run (here: another model's, as when a
    # model trained elsewhere is copied in): finish() used to put it back as model.onnx.
    artifacts = tmp_path / "build"
    kept = artifacts_dir(target, artifacts=artifacts) / "model.fp32.onnx"
    kept.parent.mkdir(parents=True)
    shutil.copyfile(package_resource("models/bc5cdr/model.onnx"), kept)
    monkeypatch.setattr(export, "tokens_per_second", lambda model, sequences, seconds=10.0: 1234.0)

    final = refresh.dequantize_model("ncbi_disease", models=models, artifacts=artifacts)

    assert (target / "model.onnx").read_bytes() == expected.read_bytes()
    assert final["quantization"]["served"] == "fp32 graph of the int8 weights"
    assert final["quantization"]["kept"] is False and final["speed_pieces_per_s_1_thread"] == 1234
    assert (artifacts_dir(target, artifacts=artifacts) / "model.int8.onnx").is_file()
    assert final["dev"]["model_alone"]["tokens"]["overall"]["f1"] > 0.8  # scored: the ncbi network, not bc5cdr's

"""Static int8 quantisation of the assertion CNN's convolutions (``clinlake train assertion``,
``clinlake evaluate assertion-cv``).

Why *static*: the activations' int8 scales are fixed once, from calibration rows of the model's own
training data, so a target's answer does not depend on the other targets of its batch (dynamic
quantisation computes a scale per call, from the whole batch). The convolutions then run as
onnxruntime ``QLinearConv`` in integer arithmetic; padding is the zero point, which stands for an
exact 0.0, so a row's answer does not depend on the padded width either. Only ``Conv`` is quantised:
the convolutions are most of the CNN's time, and leaving the small dense layers in float changed
fewer answers than quantising them too (measured on the sample notes when this was chosen).

Needs the ``train`` extra (``onnx``, for onnxruntime's quantisation tool); serving needs nothing new.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from clinlake.pipelines.engine.assertion.model import (CONFIG_FILE, DEFAULT_WINDOW, MODEL_FILE, VOCAB_FILE,
                                                       model_feeds)
from clinlake.pipelines.training.assertion_net import encode_example

CALIBRATION_ROWS = 2048
CALIBRATION_BATCH = 64
CALIBRATION_SEED = 0
QUANTIZED_OPS = ("Conv",)
VERSION_SUFFIX = "-int8"
METHOD = ("static int8 (QDQ): Conv weights per output channel (int8), activations uint8 with MinMax-calibrated "
          "fixed scales")


def calibration_feeds(examples: Sequence, vocab: Mapping[str, int], window: int, *, rows: int = CALIBRATION_ROWS,
                      batch: int = CALIBRATION_BATCH, seed: int = CALIBRATION_SEED,
                      cue_categories: Sequence[str] = ()) -> list[dict[str, np.ndarray]]:
    """Model inputs of ``rows`` training examples drawn with ``seed`` (all of them when fewer), in
    batches of ``batch`` rows of similar length, as the engine feeds the model (with the examples' cues
    for a cue-reading model: ``cue_categories``)."""
    chosen = list(examples) if len(examples) <= rows else random.Random(seed).sample(list(examples), rows)
    encoded = sorted((encode_example(ex, vocab, window, cue_categories) for ex in chosen),
                     key=lambda row: len(row[0]))
    return [model_feeds(encoded[lo:lo + batch]) for lo in range(0, len(encoded), batch)]


def quantize_conv_int8(fp32_path: Path, out_path: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> dict:
    """Write the static-int8 graph of ``fp32_path`` to ``out_path`` (may be the same file),
    calibrated on ``feeds``. Returns the record kept in the model's config."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="assertion-int8-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(QUANTIZED_OPS))
        out_path.write_bytes(quantized.read_bytes())
    return {"method": METHOD, "ops": list(QUANTIZED_OPS), "calibration_rows": sum(len(f["tokens"]) for f in feeds),
            "calibration": f"training examples drawn with seed {CALIBRATION_SEED}"}


class QuantizationError(ValueError):
    """The model cannot be quantised as asked (e.g. it already is)."""


def quantize_model_dir(model_dir: Path, examples: Sequence, *, keep_fp32: Path | None = None) -> dict:
    """Quantise ``model_dir``'s ``model.onnx`` in place, calibrated on ``examples`` (the model's own
    training examples); record how in ``config.json`` (``quantization``) and mark its version
    ``-int8``, so every output row names the graph that made it. ``keep_fp32``: where the float
    graph is kept (under build/ for the shipped model; it is not shipped). Refuses a model that
    is already quantised."""
    config_path = model_dir / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "quantization" in config:
        raise QuantizationError(f"the assertion model in {model_dir} is already quantised "
                                f"({config['quantization'].get('method', 'int8')})")
    vocab = json.loads((model_dir / VOCAB_FILE).read_text(encoding="utf-8"))
    if keep_fp32 is not None:
        keep_fp32.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / MODEL_FILE, keep_fp32)
    feeds = calibration_feeds(examples, vocab, int(config.get("window", DEFAULT_WINDOW)),
                              cue_categories=tuple(config.get("cue_categories") or ()))
    record = quantize_conv_int8(model_dir / MODEL_FILE, model_dir / MODEL_FILE, feeds)
    config["quantization"] = record
    config["version"] = f"{config.get('version', 'unknown')}{VERSION_SUFFIX}"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return record

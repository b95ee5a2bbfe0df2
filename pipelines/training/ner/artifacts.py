"""Where an NER model directory's training artefacts go (not shipped): ``build/ner/...``."""
from __future__ import annotations

import hashlib
from pathlib import Path

from clinlake.pipelines.resources import build_dir, models_dir


def artifacts_root() -> Path:
    """Training artefacts that are not shipped (PyTorch weights, the fp32 ONNX of a quantised model)."""
    return build_dir() / "ner"


def artifacts_dir(model_dir: Path, *, models: Path | None = None, artifacts: Path | None = None) -> Path:
    """Where a model directory's training artefacts go (PyTorch weights, the fp32 export of an
    int8 model; not shipped): build/ner/<name> for a shipped model (models/<name>) and for a
    folder already under build/ner (a refit's selection model keeps its own);
    build/ner/<name>-<hash of the parent folder> for any other output folder, so two runs whose
    output folders merely share a name never share (or overwrite) artefacts.
    ``models``, ``artifacts``: the shipped models' folder and the artefacts' root (default
    ``models/`` and ``build/ner/`` of the checkout)."""
    models = models_dir() if models is None else models
    artifacts = artifacts_root() if artifacts is None else artifacts
    resolved = Path(model_dir).resolve()
    if resolved.parent in (models.resolve(), artifacts.resolve()):
        return artifacts / resolved.name
    return artifacts / f"{resolved.name}-{hashlib.sha1(str(resolved.parent).encode()).hexdigest()[:8]}"


def selection_model_dir(model_dir: Path, *, models: Path | None = None, artifacts: Path | None = None) -> Path:
    """Where ``--refit`` keeps the train-only selection model of ``model_dir``."""
    artifacts = artifacts_dir(model_dir, models=models, artifacts=artifacts)
    return artifacts.with_name(artifacts.name + ".selection")

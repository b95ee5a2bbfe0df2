"""The pipeline version recorded in every output row: clinlake's version + a fingerprint."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from clinlake import __version__
from clinlake.pipelines.config import NerModelConfig, PipelineConfig
from clinlake.pipelines.engine.assertion.hybrid import cue_model_dir
from clinlake.pipelines.engine.ner.metadata import META_FILE, ModelMeta
from clinlake.pipelines.resources import Resolver


def pipeline_version(conf: PipelineConfig, resolver: Resolver) -> str:
    """``<clinlake version>+<fingerprint>``: changes when the code version, the pipeline
    config or any file it reads (lexicons, rules, headings, model files and their shared
    word vectors; not model cards) changes, so stored
    rows can tell which notes need re-annotation."""
    digest = hashlib.sha256()
    digest.update(__version__.encode())
    digest.update(json.dumps(asdict(conf), sort_keys=True).encode())
    for path in sorted(_resource_paths(conf, resolver)):
        digest.update(path.name.encode())
        try:
            digest.update(path.read_bytes())
        except FileNotFoundError:
            digest.update(b"<missing>")
    for model in conf_models(conf, resolver):
        for file in model_files(model):
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:10]}"


def model_files(model_dir: Path) -> list[Path]:
    """The files that decide a model's output: everything in its directory but the
    documentation (a card edit must not force re-annotation), plus the shared word vectors
    its model.json names (``embeddings``), which live outside the directory."""
    files = [p for p in sorted(model_dir.rglob("*")) if p.is_file() and p.suffix != ".md"]
    if (model_dir / META_FILE).is_file():  # NER models; the assertion model has none
        shared = ModelMeta.load(model_dir).embeddings_dir
        if shared is not None:
            files += [p for p in sorted(shared.rglob("*")) if p.is_file() and p.suffix != ".md"]
    return files


def conf_models(conf: PipelineConfig, resolver: Resolver) -> list[Path]:
    """Every model directory the pipeline loads (their files are part of the version)."""
    models = [resolver.model_dir(m.model) for m in conf.ner if isinstance(m, NerModelConfig)]
    if conf.assertion.engine in ("model", "hybrid"):
        models.append(resolver.model_dir(conf.assertion.model))
    if conf.assertion.engine == "hybrid":  # and the cue model its policy may name
        cue_model = cue_model_dir(resolver.model_dir(conf.assertion.model))
        if cue_model is not None:
            models.append(cue_model)
    return models


def _resource_paths(conf: PipelineConfig, resolver: Resolver) -> set[Path]:
    paths = {conf.text.abbreviations, conf.sections.headings, *(d.path for d in conf.dictionary)}
    if conf.assertion.engine in ("rules", "hybrid"):
        paths.add(conf.assertion.rules)
    return {resolver.resource(p) for p in paths}

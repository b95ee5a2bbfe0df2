"""Where clinlake finds its files: one resolver for packaged resources, model directories,
the job config's relative paths, and — for training and evaluation in a source checkout —
``../shared`` and ``build/``.

No other module derives a path from ``__file__``: packaged files are found through
``importlib.resources`` (so they resolve the same in a wheel, an editable install and on
Spark executors), and the checkout's folders through :func:`source_root`.

* ``clinlake:<path>`` names a file shipped inside the package (``clinlake:conf/sections.yaml``,
  ``clinlake:samples/mtsamples_sample.csv``);
* a relative resource path in a job config is resolved against the config file's directory
  (:class:`Resolver`); input and output paths stay as given, like any Spark job's.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clinlake.pipelines.config import ConfigError

PACKAGE_PREFIX = "clinlake:"
#: Overrides where the shared training/evaluation data lives (default: ``<checkout>/../shared/data``).
SHARED_DATA_ENV = "CLINLAKE_SHARED_DATA"


def package_resource(relative: str) -> Path:
    """A file or directory shipped in the package, by its repository-style path (``conf/...``,
    ``models/...``, ``samples/...``, ``pipelines/...``)."""
    first, _, rest = relative.partition("/")
    # conf/, models/ and pipelines/ are installed as clinlake.conf / .models / .pipelines (see setup.py).
    if first in ("conf", "models", "pipelines"):
        return Path(str(resources.files(f"clinlake.{first}"))) / rest
    return Path(str(resources.files("clinlake"))) / relative


SAMPLE_NOTES = "samples/mtsamples_sample.csv"  # the bundled notes (MTSamples), one per row, text in "transcription"


def sample_note_rows() -> list[dict[str, str]]:
    """The rows of the bundled sample notes' CSV, as dicts, in file order."""
    csv.field_size_limit(1 << 30)  # a transcription is one long field
    with open(package_resource(SAMPLE_NOTES), encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def sample_texts() -> list[str]:
    """The bundled sample notes' texts, blank ones left out, in file order."""
    return [row["transcription"] for row in sample_note_rows() if row["transcription"].strip()]


def models_dir() -> Path:
    """The shipped models (``models/``): written by training in a source checkout."""
    return Path(str(resources.files("clinlake.models")))


def source_root() -> Path:
    """The checkout that holds ``pipelines/`` (an editable install or a clone on ``sys.path``).
    Training writes under it (``models/``, ``build/``); an installed wheel has no checkout, so
    training paths are then given on the command line."""
    return Path(str(resources.files("clinlake.pipelines"))).resolve().parent


def shared_data() -> Path:
    """The shared corpora (``../shared/data`` beside the checkout, or ``$CLINLAKE_SHARED_DATA``)."""
    override = os.environ.get(SHARED_DATA_ENV)
    return Path(override) if override else source_root().parent / "shared" / "data"


def build_dir() -> Path:
    """Training artefacts and experiment output (``build/``, ignored by git)."""
    return source_root() / "build"


def resolve_data_path(path: str) -> str:
    """Input/output paths: ``clinlake:`` names a packaged file; anything else is left to Spark."""
    if path.startswith(PACKAGE_PREFIX):
        return str(package_resource(path[len(PACKAGE_PREFIX):]))
    return path


@dataclass(frozen=True)
class Resolver:
    """Resolves the pipeline's resource paths and model names. ``base_dir`` is where relative
    paths are taken from: the job config's directory (see :func:`~clinlake.pipelines.config.load_config`).
    Small and picklable: it travels to Spark executors with the pipeline config."""

    base_dir: str = "."

    def resource(self, path: str) -> Path:
        """A lexicon/rules/headings path: ``clinlake:<path>`` (packaged) or relative to ``base_dir``."""
        if path.startswith(PACKAGE_PREFIX):
            return package_resource(path[len(PACKAGE_PREFIX):])
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = Path(self.base_dir) / candidate
        return candidate

    def model_dir(self, model: str) -> Path:
        """A model name (``ncbi_disease`` → the shipped ``models/ncbi_disease/``) or a directory path."""
        candidate = self.resource(model)
        if ("/" in model or model.startswith(PACKAGE_PREFIX)) and candidate.is_dir():
            return candidate
        shipped = package_resource(f"models/{model}")
        if shipped.is_dir():
            return shipped
        if candidate.is_dir():
            return candidate
        raise ConfigError(f"model {model!r} not found: neither a shipped model under {shipped.parent} "
                          f"nor a directory at {candidate}")

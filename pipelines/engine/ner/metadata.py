"""``model.json``: the one typed reader (and writer) of an NER model directory's metadata.

Serving reads the fields it needs through :class:`ModelMeta`; training and the model cards keep
adding records (devel scores, quantisation, training settings) to the same file, so the whole
mapping stays available as :meth:`ModelMeta.to_dict`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

META_FILE = "model.json"
# The NER stage's document-level steps where neither the job config nor the model's
# ``document_level`` record (chosen by cross-validation) says otherwise.
BUILT_IN_STEPS = {"propagate_abbreviations": True, "label_consistency": False, "binomial_short_forms": False,
                  "gazetteer": False}


class ModelMetaError(ValueError):
    """A model directory has no readable ``model.json``, or it lacks a required field."""


@dataclass(frozen=True)
class ModelMeta:
    directory: Path
    raw: Mapping[str, Any]

    @classmethod
    def load(cls, model_dir: str | Path) -> "ModelMeta":
        directory = Path(model_dir)
        path = directory / META_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelMetaError(f"no {META_FILE} in model directory {directory}") from None
        except json.JSONDecodeError as exc:
            raise ModelMetaError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ModelMetaError(f"{path}: the top level must be an object")
        return cls(directory, raw)

    @property
    def document_level(self) -> dict[str, bool]:
        """The document-level steps this model's stage runs unless the job config says otherwise."""
        return document_level_defaults(self.raw)

    def _required(self, key: str) -> Any:
        if key not in self.raw:
            raise ModelMetaError(f"{self.directory / META_FILE}: missing field {key!r}")
        return self.raw[key]

    @property
    def name(self) -> str:
        return str(self._required("name"))

    @property
    def version(self) -> str:
        return str(self._required("version"))

    @property
    def tags(self) -> list[str]:
        return list(self._required("tags"))

    @property
    def chars(self) -> dict[str, int]:
        return dict(self._required("chars"))

    @property
    def crf(self) -> Mapping[str, Any]:
        """``start``, ``end`` and ``transitions`` scores (IOB constraints folded in)."""
        return self._required("crf")

    @property
    def embeddings_dir(self) -> Path | None:
        """The shared word-vector directory the model names (relative to its own), resolved."""
        relative = self.raw.get("embeddings")
        return (self.directory / relative).resolve() if isinstance(relative, str) else None

    def labels(self) -> list[str]:
        """Entity types of the IOB tags, in tag order (``B-Disease`` → ``Disease``)."""
        return list(dict.fromkeys(t.split("-", 1)[1] for t in self.tags if "-" in t))

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the whole mapping, to read or to change and write back."""
        return json.loads(json.dumps(self.raw))


def document_level_defaults(meta: Mapping[str, Any]) -> dict[str, bool]:
    """The steps a model.json's ``document_level`` turns on, the built-in default for any it omits."""
    chosen = meta.get("document_level") or {}
    return {step: bool(chosen.get(step, built_in)) for step, built_in in BUILT_IN_STEPS.items()}


CONSISTENCY_WEIGHT = "consistency_entity_weight"  # document_level key: the vote's weight on tagged occurrences


def consistency_entity_weight(meta: Mapping[str, Any]) -> float:
    """The label consistency vote's weight on a tagged occurrence (:mod:`pipelines.engine.consistency`)
    that a model.json's ``document_level`` records (chosen by cross-validation), 1.0 where it names none."""
    value = (meta.get("document_level") or {}).get(CONSISTENCY_WEIGHT, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ModelMetaError(f"model.json document_level.{CONSISTENCY_WEIGHT} must be a positive number, got {value!r}")
    return float(value)


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """The whole ``model.json`` of a model directory as a (mutable) dict."""
    return ModelMeta.load(model_dir).to_dict()


def write_meta(model_dir: str | Path, meta: Mapping[str, Any]) -> None:
    """Write ``model.json`` the way every trainer does (indented one space, UTF-8, final newline)."""
    (Path(model_dir) / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

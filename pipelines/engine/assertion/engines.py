"""Build an assertion engine by name: ``rules`` (ConText), ``model`` (the CNN), ``hybrid`` or ``none``."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.assertion.hybrid import HybridAssertion
from clinlake.pipelines.engine.assertion.model import MODEL_DIR_DEFAULT, AssertionModel
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.engine.types import AssertionEngine

ENGINES = ("rules", "model", "hybrid", "none")


def load_assertion_engine(
    engine: str,
    *,
    rules_path: str | Path | None = None,
    model_dir: str | Path | None = None,
    section_defaults: Mapping[str, str] | None = None,
    max_scope: int = 12,
) -> AssertionEngine | None:
    """``rules`` | ``model`` | ``hybrid`` | ``none`` -> an engine (None for ``none``)."""
    if engine == "none":
        return None
    if engine not in ENGINES:
        raise ValueError(f"unknown assertion engine {engine!r} (allowed: rules, model, hybrid, none)")
    model_path = Path(model_dir) if model_dir is not None else MODEL_DIR_DEFAULT
    if engine == "model":
        model = AssertionModel(model_path, section_defaults=section_defaults)
        if model.reads_cues:  # its cues come from the configured rules (section defaults are the model's own)
            model.cue_rules = ContextAssertion.from_file(rules_path or DEFAULT_RULES_PATH, max_scope=max_scope)
        return model
    rules = ContextAssertion.from_file(rules_path or DEFAULT_RULES_PATH, section_defaults=section_defaults,
                                       max_scope=max_scope)
    if engine == "rules":
        return rules
    return HybridAssertion(rules, AssertionModel(model_path))

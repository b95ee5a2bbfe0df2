"""The annotation engine: text → sentences, sections, entities, assertions.

Plain Python over plain data; no Spark. A :class:`Pipeline` is built once per Python
worker (see :func:`cached_pipeline`) and then annotates note after note.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from itertools import groupby
from pathlib import Path
from typing import Protocol, Sequence

from clinlake import __version__

from .config import JobConfig, resolve_model_dir, resolve_resource
from .assertion_model import AssertionEngine, load_assertion_engine
from .dictionary import DictionaryNer, read_lexicon
from .merge import merge_chunks
from .sections import SectionDetector, section_at
from .text import TextSplitter
from .types import Entity, Sentence


class NerStage(Protocol):
    """A named entity stage. ``name`` carries its version and lands in ``ner_model``."""

    name: str

    def find(self, text: str, sentences: Sequence[Sentence]) -> list[Entity]: ...


class Pipeline:
    def __init__(
        self,
        *,
        splitter: TextSplitter,
        sections: SectionDetector,
        ner_stages: Sequence[NerStage],
        assertion: AssertionEngine | None,
        version: str,
    ) -> None:
        self.splitter = splitter
        self.sections = sections
        self.ner_stages = tuple(ner_stages)
        self.assertion = assertion
        self.version = version

    @classmethod
    def from_config(cls, config: JobConfig) -> "Pipeline":
        pipeline_conf = config.pipeline
        splitter = TextSplitter.from_file(resolve_resource(config, pipeline_conf.text.abbreviations))
        sections = SectionDetector.from_file(
            resolve_resource(config, pipeline_conf.sections.headings),
            unknown_caps_headings=pipeline_conf.sections.unknown_caps_headings,
        )
        ner_stages: list[NerStage] = []
        if pipeline_conf.ner:
            from .ner_model import load_ner_stage  # onnxruntime is imported only when models are used

            ner_stages += [load_ner_stage(resolve_model_dir(config, m.model), labels=m.labels,
                                          label_map=m.label_map, propagate_abbreviations=m.propagate_abbreviations)
                           for m in pipeline_conf.ner]
        if pipeline_conf.dictionary:
            lexicons = [
                read_lexicon(resolve_resource(config, d.path), name=d.name, default_label=d.label)
                for d in pipeline_conf.dictionary
            ]
            dictionary = DictionaryNer(lexicons, splitter.tokenize)
            if pipeline_conf.dictionary_precedence == "before_models":
                ner_stages.insert(0, dictionary)
            else:
                ner_stages.append(dictionary)
        a = pipeline_conf.assertion
        assertion = load_assertion_engine(
            a.engine,
            rules_path=resolve_resource(config, a.rules),
            model_dir=resolve_model_dir(config, a.model) if a.engine in ("model", "hybrid") else None,
            section_defaults=a.section_defaults,
            max_scope=a.max_scope,
        )
        return cls(splitter=splitter, sections=sections, ner_stages=ner_stages,
                   assertion=assertion, version=pipeline_version(config))

    def annotate(self, text: str) -> list[Entity]:
        """All entities of one note, in text order, with sentence, section and assertion."""
        sentences = self.splitter.split(text)
        if not sentences:
            return []
        sections = self.sections.detect(text)
        entities = merge_chunks([stage.find(text, sentences) for stage in self.ner_stages])
        # Words of a heading ("MEDICATIONS:", "HISTORY OF PRESENT ILLNESS:") are not findings.
        headings = [(s.start, s.heading_end) for s in sections]
        entities = [e for e in entities if not _inside_any(e.start, e.end, headings)]
        # Headings the detector cannot see as such (MTSamples' ",MEDICATIONS,1." has lost its colon):
        # an ALL-CAPS known heading label is still a heading, not a finding.
        entities = [e for e in entities if not (e.text.isupper() and self.sections.is_heading_label(e.text))]
        for entity in entities:
            entity.section = section_at(sections, entity.start)
        if self.assertion is not None:
            self._assert(text, sentences, entities)
        return entities

    def _assert(self, text: str, sentences: Sequence[Sentence], entities: list[Entity]) -> None:
        for sentence_index, group in groupby(entities, key=lambda e: e.sentence_index):
            in_sentence = list(group)
            sentence = sentences[sentence_index]
            results = self.assertion.assess(  # type: ignore[union-attr]
                text, sentence, [(e.start, e.end) for e in in_sentence], in_sentence[0].section
            )
            for entity, result in zip(in_sentence, results):
                entity.assertion = result

    @property
    def ner_stage_names(self) -> list[str]:
        return [stage.name for stage in self.ner_stages]


def _inside_any(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= start and end <= hi for lo, hi in spans)


def pipeline_version(config: JobConfig) -> str:
    """``<clinlake version>+<fingerprint>``: changes when the code version, the pipeline
    config or any file it reads (lexicons, rules, headings, model files and their shared
    word vectors; not model cards) changes, so stored
    rows can tell which notes need re-annotation."""
    digest = hashlib.sha256()
    digest.update(__version__.encode())
    digest.update(json.dumps(asdict(config.pipeline), sort_keys=True).encode())
    for path in sorted(_resource_paths(config)):
        digest.update(path.name.encode())
        try:
            digest.update(path.read_bytes())
        except FileNotFoundError:
            digest.update(b"<missing>")
    for model in conf_models(config):
        for file in model_files(model):
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:10]}"


def model_files(model_dir: Path) -> list[Path]:
    """The files that decide a model's output: everything in its directory but the
    documentation (a card edit must not force re-annotation), plus the shared word vectors
    its model.json names (``embeddings``), which live outside the directory."""
    files = [p for p in sorted(model_dir.rglob("*")) if p.is_file() and p.suffix != ".md"]
    meta_path = model_dir / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if isinstance(meta, dict) and isinstance(meta.get("embeddings"), str):
        shared = (model_dir / meta["embeddings"]).resolve()
        files += [p for p in sorted(shared.rglob("*")) if p.is_file() and p.suffix != ".md"]
    return files


def conf_models(config: JobConfig) -> list[Path]:
    """Every model directory the pipeline loads (their files are part of the version)."""
    models = [resolve_model_dir(config, m.model) for m in config.pipeline.ner]
    if config.pipeline.assertion.engine in ("model", "hybrid"):
        models.append(resolve_model_dir(config, config.pipeline.assertion.model))
    return models


def _resource_paths(config: JobConfig) -> set[Path]:
    conf = config.pipeline
    paths = {conf.text.abbreviations, conf.sections.headings, *(d.path for d in conf.dictionary)}
    if conf.assertion.engine in ("rules", "hybrid"):
        paths.add(conf.assertion.rules)
    return {resolve_resource(config, p) for p in paths}


_CACHE: dict[str, Pipeline] = {}


def cached_pipeline(config: JobConfig) -> Pipeline:
    """One pipeline per Python worker process and config: built on first use, then reused
    by every task the worker runs (Spark reuses Python workers by default)."""
    key = json.dumps(asdict(config), sort_keys=True)
    pipeline = _CACHE.get(key)
    if pipeline is None:
        pipeline = _CACHE[key] = Pipeline.from_config(config)
    return pipeline

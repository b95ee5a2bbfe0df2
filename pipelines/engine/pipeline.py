"""The annotation engine: text → sentences, sections, entities, assertions.

Plain Python over plain data; no Spark. Every pipeline is built in one place,
:meth:`Pipeline.build`, from the job config's ``pipeline`` section and a
:class:`~clinlake.pipelines.resources.Resolver`; a Python worker builds it once
(:func:`cached_pipeline`) and then annotates note after note.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from itertools import groupby
from operator import itemgetter
from typing import Any, Mapping, Sequence

from clinlake.pipelines.config import JobConfig, NerColumnConfig, PipelineConfig
from clinlake.pipelines.engine.assertion.by_label import AllowedByLabel
from clinlake.pipelines.engine.assertion.engines import load_assertion_engine
from clinlake.pipelines.engine.columns import ColumnNerStage, ExternalChunk, column_stages
from clinlake.pipelines.engine.dictionary import DictionaryNer, read_lexicon
from clinlake.pipelines.engine.fingerprint import pipeline_version
from clinlake.pipelines.engine.merge import merge_chunks
from clinlake.pipelines.engine.sections import SectionDetector, section_at
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.engine.types import AssertionEngine, AssertionResult, Entity, NerStage, Section, Sentence
from clinlake.pipelines.resources import Resolver


NER_BATCH_CHARS = 1_000_000  # characters of notes whose sentences a batch-invariant NER stage tags together


class Pipeline:
    def __init__(
        self,
        *,
        splitter: TextSplitter,
        sections: SectionDetector,
        ner_stages: Sequence[NerStage],
        assertion: AssertionEngine | None,
        version: str,
        allowed_by_label: AllowedByLabel = AllowedByLabel({}),
    ) -> None:
        self.splitter = splitter
        self.sections = sections
        self.ner_stages = tuple(ner_stages)
        self.assertion = assertion
        self.version = version
        self.allowed_by_label = allowed_by_label

    @classmethod
    def build(cls, conf: PipelineConfig, resolver: Resolver) -> "Pipeline":
        """The pipeline a config section describes; ``resolver`` finds its files and models."""
        splitter = TextSplitter.from_file(resolver.resource(conf.text.abbreviations))
        sections = SectionDetector.from_file(
            resolver.resource(conf.sections.headings),
            unknown_caps_headings=conf.sections.unknown_caps_headings,
        )
        ner_stages = [_ner_stage(entry, resolver) for entry in conf.ner]
        if conf.dictionary:
            lexicons = [
                read_lexicon(resolver.resource(d.path), name=d.name, default_label=d.label)
                for d in conf.dictionary
            ]
            dictionary = DictionaryNer(lexicons, splitter.tokenize)
            if conf.dictionary_precedence == "before_models":
                ner_stages.insert(0, dictionary)
            else:
                ner_stages.append(dictionary)
        a = conf.assertion
        assertion = load_assertion_engine(
            a.engine,
            rules_path=resolver.resource(a.rules),
            model_dir=resolver.model_dir(a.model) if a.engine in ("model", "hybrid") else None,
            section_defaults=a.section_defaults,
            max_scope=a.max_scope,
        )
        return cls(splitter=splitter, sections=sections, ner_stages=ner_stages,
                   assertion=assertion, version=pipeline_version(conf, resolver),
                   allowed_by_label=AllowedByLabel.from_config(a.allowed_by_label))

    @classmethod
    def from_config(cls, config: JobConfig) -> "Pipeline":
        """The pipeline of a whole job config (notebooks, tests): :meth:`build` of its ``pipeline``
        section, resolving relative paths against the config file's directory."""
        return cls.build(config.pipeline, Resolver(config.base_dir))

    def annotate(self, text: str, chunks: Mapping[str, Sequence[ExternalChunk] | None] | None = None) -> list[Entity]:
        """All entities of one note, in text order, with sentence, section and assertion.
        ``chunks``: the note's NER input columns, by column name, for ``{column: ...}`` stages."""
        (result,) = self.annotate_many([text], [chunks])
        if isinstance(result, Exception):
            raise result
        return result

    def annotate_many(self, texts: Sequence[str],
                      chunks: Sequence[Mapping[str, Sequence[ExternalChunk] | None] | None] | None = None, *,
                      stage_seconds: dict[str, float] | None = None) -> list[list[Entity] | Exception]:
        """:meth:`annotate` of each note, with the NER stages that can (``find_many``) run over
        notes of up to :data:`NER_BATCH_CHARS` characters together. A note that fails gets its
        exception in its place instead of entities: it never fails the notes beside it.
        ``stage_seconds``: if given, seconds spent in ``text`` (sentences, sections), ``ner`` and
        ``assertion`` (with merging and heading filters) are added to it (benchmarks)."""
        clock = _StageClock(stage_seconds)
        note_chunks = list(chunks) if chunks is not None else [None] * len(texts)
        results: list[list[Entity] | Exception] = [[] for _ in texts]
        prepared: dict[int, tuple[list[Sentence], list[Section]]] = {}
        for i, text in enumerate(texts):
            try:
                sentences = self.splitter.split(text)
                if sentences:  # a note without a sentence has no entities
                    prepared[i] = (sentences, self.sections.detect(text))
            except Exception as exc:
                results[i] = exc
        clock.lap("text")
        for group in _groups(list(prepared), [len(texts[i]) for i in prepared], NER_BATCH_CHARS):
            found: dict[int, list[list[Entity]]] = {i: [] for i in group}
            shared: dict = {}  # what the model stages share within this group (their model pieces)
            for stage in self.ner_stages:
                items = [(i, texts[i], prepared[i][0], note_chunks[i]) for i in group if i in found]
                for i, entities in _find_notes(stage, items, shared).items():
                    if isinstance(entities, Exception):
                        results[i] = entities
                        del found[i]
                    else:
                        found[i].append(entities)
            clock.lap("ner")
            for i, per_stage in found.items():
                try:
                    results[i] = self._finish(texts[i], *prepared[i], merge_chunks(per_stage))
                except Exception as exc:
                    results[i] = exc
            clock.lap("assertion")
        return results

    def _finish(self, text: str, sentences: Sequence[Sentence], sections: Sequence[Section],
                entities: list[Entity]) -> list[Entity]:
        """A note's merged NER entities without headings, with sections and assertions."""
        # Words of a heading ("MEDICATIONS:", "HISTORY OF PRESENT ILLNESS:") are not findings.
        headings = [(s.start, s.heading_end) for s in sections]
        entities = [e for e in entities if not _inside_any(e.start, e.end, headings)]
        # Headings the detector cannot see as such (MTSamples' ",MEDICATIONS,1." has lost its colon):
        # an ALL-CAPS known heading label is still a heading, not a finding.
        entities = [e for e in entities if not (e.text.isupper() and self.sections.is_heading_label(e.text))]
        for entity in entities:
            entity.section = section_at(sections, entity.start)
        if self.assertion is not None:
            results = self.assess(text, sentences, sections, [(e.sentence_index, e.start, e.end) for e in entities],
                                  labels=[e.label for e in entities])
            for entity, result in zip(entities, results, strict=True):
                entity.assertion = result
        return entities

    def assess(self, text: str, sentences: Sequence[Sentence], sections: Sequence[Section],
               targets: Sequence[tuple[int, int, int]], *,
               labels: Sequence[str | None] | None = None) -> list[AssertionResult]:
        """The assertion stage on (sentence index, start, end) targets, one result each; with the
        targets' NER ``labels``, each result restricted to what its label may take (``allowed_by_label``),
        and the labels passed to the engine (the hybrid's cue model heeds them).

        The targets of one sentence, when consecutive, are assessed in one call, in the section
        where the first of them starts (as for the pipeline's own entities, which come in text
        order); evaluation passes gold spans through the same method."""
        if self.assertion is None:
            raise ValueError("this pipeline has no assertion stage (pipeline.assertion.engine: none)")
        if labels is not None and len(labels) != len(targets):
            raise ValueError(f"{len(labels)} NER labels for {len(targets)} assertion targets")
        groups, group_labels, position = [], [], 0
        for sentence_index, group in groupby(targets, key=itemgetter(0)):
            members = list(group)
            groups.append((sentences[sentence_index], [(s, e) for _, s, e in members],
                           section_at(sections, members[0][1])))
            if labels is not None:
                group_labels.append(labels[position:position + len(members)])
            position += len(members)
        assess_many = getattr(self.assertion, "assess_many", None)  # optional: see AssertionEngine
        if assess_many is None:
            results = [result for group in groups for result in self.assertion.assess(text, *group)]
        else:
            results = [result for results in assess_many(text, groups, labels=None if labels is None else group_labels)
                       for result in results]
        if labels is None or not self.allowed_by_label:
            return results
        return self.allowed_by_label.apply_all(labels, results)

    @property
    def ner_stage_names(self) -> list[str]:
        return [stage.name for stage in self.ner_stages]

    @property
    def chunk_columns(self) -> list[str]:
        """The input columns the ``{column: ...}`` stages read, in stage order."""
        return [stage.column for stage in column_stages(self.ner_stages)]


def _ner_stage(entry: object, resolver: Resolver) -> NerStage:
    if isinstance(entry, NerColumnConfig):
        return ColumnNerStage(entry.column, labels=entry.labels, label_map=entry.label_map)
    # Lazy: onnxruntime is imported only when a pipeline has model stages.
    from clinlake.pipelines.engine.ner.stage import load_ner_stage

    return load_ner_stage(resolver.model_dir(entry.model), labels=entry.labels, label_map=entry.label_map,
                          propagate_abbreviations=entry.propagate_abbreviations,
                          label_consistency=entry.label_consistency,
                          binomial_short_forms=entry.binomial_short_forms, gazetteer=entry.gazetteer)


class _StageClock:
    """Adds the seconds since its last lap to a named total, when it has totals to add to."""

    def __init__(self, totals: dict[str, float] | None) -> None:
        self.totals, self.last = totals, time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.totals is not None:
            now = time.perf_counter()
            self.totals[stage] = self.totals.get(stage, 0.0) + now - self.last
            self.last = now


def _groups(items: list[int], sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive runs of ``items`` whose ``sizes`` add up to at most ``budget`` (or one item)."""
    groups: list[list[int]] = []
    total = budget + 1
    for item, size in zip(items, sizes):
        if total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += size
    return groups


def _find_notes(stage: NerStage, items: Sequence[tuple[int, str, Sequence[Sentence], Any]], shared: dict
                ) -> dict[int, list[Entity] | Exception]:
    """One stage's entities for each (index, text, sentences, chunks) note, or the note's exception.
    ``shared`` goes to the stages that share work with each other (``shares_pieces``)."""
    options = {"shared": shared} if getattr(stage, "shares_pieces", False) else {}
    find_many = getattr(stage, "find_many", None)
    if find_many is not None and len(items) > 1:
        try:
            return dict(zip((i for i, *_ in items),
                            find_many([(text, sentences) for _, text, sentences, _ in items], **options), strict=True))
        except Exception:  # one note broke the shared call: find note by note to tell which
            pass
    found: dict[int, list[Entity] | Exception] = {}
    for i, text, sentences, chunks in items:
        try:
            found[i] = _find(stage, text, sentences, chunks, options)
        except Exception as exc:
            found[i] = exc
    return found


def _find(stage: NerStage, text: str, sentences: Sequence[Sentence],
          chunks: Mapping[str, Sequence[ExternalChunk] | None] | None, options: Mapping[str, Any]) -> list[Entity]:
    if isinstance(stage, ColumnNerStage):
        return stage.find(text, sentences, (chunks or {}).get(stage.column))
    return stage.find(text, sentences, **options)


def _inside_any(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= start and end <= hi for lo, hi in spans)


_CACHE: dict[str, Pipeline] = {}


def cached_pipeline(conf: PipelineConfig, resolver: Resolver) -> Pipeline:
    """One pipeline per Python worker process and pipeline config: built on first use, then
    reused by every task the worker runs (Spark reuses Python workers by default). The key is
    what the engine is built from, nothing else of the job config."""
    key = json.dumps([asdict(conf), asdict(resolver)], sort_keys=True)
    pipeline = _CACHE.get(key)
    if pipeline is None:
        pipeline = _CACHE[key] = Pipeline.build(conf, resolver)
    return pipeline

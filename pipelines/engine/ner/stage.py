"""The pipeline's NER stage over one trained model: sentences in, entities out."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from clinlake.pipelines.engine.consistency import consistent_labels
from clinlake.pipelines.engine.gazetteer import FILE as GAZETTEER_FILE
from clinlake.pipelines.engine.gazetteer import Gazetteer, Term, read_gazetteer
from clinlake.pipelines.engine.ner.crf import iob_spans
from clinlake.pipelines.engine.ner.features import model_pieces
from clinlake.pipelines.engine.ner.metadata import BUILT_IN_STEPS, consistency_entity_weight, document_level_defaults
from clinlake.pipelines.engine.ner.model import NerModel, load_model
from clinlake.pipelines.engine.short_forms import scored_spans
from clinlake.pipelines.engine.types import Entity, Sentence


GAZETTEER = "+gazetteer"  # provenance of an entity the model's gazetteer added


class ModelNerStage:
    """A pipeline NER stage over one model: sentences in, entities out (labels mapped/filtered).

    With ``propagate_abbreviations`` the note is the document of :mod:`pipelines.engine.short_forms`:
    an abbreviation defined as "long form (SF)" with the long form tagged makes SF an entity of
    that label from the definition's sentence to the end of the note; an entity found that way takes the
    confidence of the entity that defined it, and its source is the stage's name + ``+abbreviation``
    (so ``ner_model`` tells the tagger's own entities from propagated ones).

    With ``binomial_short_forms`` (off by default) a tagged binomial tags its abbreviated forms,
    and the reverse, for the rest of the note (:mod:`pipelines.engine.binomials`; source ``+binomial``).

    With a ``gazetteer`` (the model's ``gazetteer.tsv``, :mod:`pipelines.engine.gazetteer`) its terms
    are tagged last, where no entity overlaps them, with the term's training precision as confidence
    and the source ``+gazetteer``.

    With ``label_consistency`` the entities then go through the note-level vote of
    :mod:`pipelines.engine.consistency` (a tagged occurrence's vote weighted by
    ``consistency_entity_weight``); an entity the vote adds or relabels has the source
    ``+consistency``. The order is the one cross-validation scored: abbreviations, binomials, the
    vote, the gazetteer. Which steps run by default is each model's choice by cross-validation
    (:func:`load_ner_stage`, :func:`document_level_steps`); the constructor's defaults are the
    built-in ones."""

    def __init__(self, model: NerModel, labels: Sequence[str] = (), label_map: Mapping[str, str] | None = None,
                 propagate_abbreviations: bool = True, label_consistency: bool = False,
                 binomial_short_forms: bool = False, gazetteer: Mapping[tuple[str, ...], Term] | None = None,
                 consistency_entity_weight: float = 1.0):
        self.model = model
        self.name = model.name
        self.label_map = dict(label_map or {})
        self.labels = frozenset(labels)
        self.propagate_abbreviations = propagate_abbreviations
        self.label_consistency = label_consistency
        self.consistency_entity_weight = consistency_entity_weight
        self.binomial_short_forms = binomial_short_forms
        self.gazetteer = Gazetteer(gazetteer or {})

    shares_pieces = True  # find/find_many take ``shared`` (see :meth:`find_many`)

    def find(self, text: str, sentences: Sequence[Sentence], *, shared: dict | None = None) -> list[Entity]:
        return self.find_many([(text, sentences)], shared=shared)[0]

    def find_many(self, notes: Sequence[tuple[str, Sequence[Sentence]]], *,
                  shared: dict | None = None) -> list[list[Entity]]:
        """:meth:`find` of each (text, sentences) note. A batch-invariant model
        (:attr:`NerModel.batch_invariant`) tags the sentences of all the notes together, in
        length-sorted network batches shared across notes; any other model note by note, so a
        note's entities never depend on the notes beside it.

        ``shared``: a dict the pipeline hands every model stage of one batch, so the notes' model
        pieces are cut once for all the stages (every tagger reads the same pieces). It is keyed by
        the identity of each note's sentence list, so it must not outlive the lists (the pipeline
        makes one per batch of notes); nothing in it is modified."""
        pieces, words = [], []
        for _, sentences in notes:
            note_pieces, note_words = _note_pieces(sentences, shared)
            pieces.append(note_pieces)
            words.append(note_words)
        # The vote weighs untagged occurrences by the tagger's confidence in O, so it needs every
        # token's confidence; otherwise only entities' are computed. (Computing them only for the
        # sentences a vote reads, in a second network call, cost more on the sample notes: nearly every
        # clinical window holds an entity, so its posteriors are computed anyway.)
        options = {"every_confidence": True} if self.label_consistency else {}
        if getattr(self.model, "batch_invariant", False):  # taggers that do not say are tagged note by note
            tagged = self._split(words, self.model.tag([sentence for note in words for sentence in note], **options))
        else:
            tagged = [self.model.tag(note, **options) for note in words]
        return [self._entities(text, sentences, *parts)
                for (text, sentences), *parts in zip(notes, pieces, words, tagged, strict=True)]

    @staticmethod
    def _split(words: Sequence[Sequence[Sequence[str]]], flat: Sequence) -> list[list]:
        """A flat per-sentence list cut back into notes."""
        out, at = [], 0
        for note in words:
            out.append(list(flat[at:at + len(note)]))
            at += len(note)
        return out

    def _entities(self, text: str, sentences: Sequence[Sentence], pieces: Sequence[Sequence[tuple[int, int, str]]],
                  words: Sequence[Sequence[str]], tagged: Sequence[tuple[list[str], list[float]]]) -> list[Entity]:
        confidences = [probs for _, probs in tagged]
        # span -> (confidence, provenance appended to the stage's name)
        scored = scored_spans(words, [iob_spans(tags) for tags, _ in tagged], confidences,
                              propagate_abbreviations=self.propagate_abbreviations,
                              binomial_short_forms=self.binomial_short_forms)
        if self.label_consistency:
            scored = consistent_labels(words, scored, confidences, entity_weight=self.consistency_entity_weight)
        if self.gazetteer:
            for sentence_words, sentence_spans in zip(words, scored):
                for span, term in self.gazetteer.matches(sentence_words, list(sentence_spans)):
                    sentence_spans[span] = (term.precision, GAZETTEER)
        entities: list[Entity] = []
        for sentence, sentence_pieces, sentence_spans in zip(sentences, pieces, scored):
            for (first, last, kind), (score, provenance) in sentence_spans.items():
                label = self.label_map.get(kind, kind)
                if self.labels and label not in self.labels:
                    continue
                start, end = sentence_pieces[first][0], sentence_pieces[last - 1][1]
                entities.append(Entity(start=start, end=end, text=text[start:end], label=label, confidence=score,
                                       source=self.name + provenance, sentence_index=sentence.index))
        return entities


def _note_pieces(sentences: Sequence[Sentence], shared: dict | None
                 ) -> tuple[list[list[tuple[int, int, str]]], list[list[str]]]:
    """The model pieces of each sentence of a note and their words, from ``shared`` when another
    stage has cut them already (see :meth:`ModelNerStage.find_many`)."""
    key = ("model_pieces", id(sentences))
    found = shared.get(key) if shared is not None else None
    if found is None:
        pieces = [model_pieces(s.tokens) for s in sentences]
        found = (pieces, [[p[2] for p in sentence] for sentence in pieces])
        if shared is not None:
            shared[key] = found
    return found


def document_level_steps(model_meta: Mapping, **chosen: bool | None) -> dict[str, bool]:
    """Which document-level steps a stage runs: each given one (True/False) as given; each None as
    the model's ``document_level`` in model.json says (chosen by cross-validation,
    ``clinlake train card NAME --cv REPORT``), otherwise the built-in default (:data:`BUILT_IN_STEPS`)."""
    unknown = set(chosen) - set(BUILT_IN_STEPS)
    if unknown:
        raise TypeError(f"unknown document-level steps {sorted(unknown)}")
    model_default = document_level_defaults(model_meta)
    return {step: chosen[step] if chosen.get(step) is not None else model_default[step] for step in BUILT_IN_STEPS}


def load_ner_stage(model_dir: Path, *, labels: Sequence[str] = (), label_map: Mapping[str, str] | None = None,
                   propagate_abbreviations: bool | None = None, label_consistency: bool | None = None,
                   binomial_short_forms: bool | None = None, gazetteer: bool | None = None) -> ModelNerStage:
    """The pipeline's entry point (see pipelines/engine/pipeline.py); steps left None follow
    :func:`document_level_steps`; the vote's weight is the model's (model.json ``document_level``)."""
    model = load_model(Path(model_dir))
    steps = document_level_steps(model.meta, propagate_abbreviations=propagate_abbreviations,
                                 label_consistency=label_consistency, binomial_short_forms=binomial_short_forms,
                                 gazetteer=gazetteer)
    terms = read_gazetteer(Path(model_dir) / GAZETTEER_FILE) if steps.pop("gazetteer") else None
    return ModelNerStage(model, labels=labels, label_map=label_map, gazetteer=terms,
                         consistency_entity_weight=consistency_entity_weight(model.meta), **steps)

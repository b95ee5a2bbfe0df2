"""Strict entity-level NER evaluation with conlleval semantics.

An entity counts as correct only when its type and both boundaries equal a gold entity.
Spans are read from IOB2 tags as conlleval does: ``B-X`` starts an entity, ``I-X``
continues an open ``X`` entity and otherwise starts one (so ``O I-X`` and ``B-Y I-X``
are repaired, the same in gold and predictions); anything else ends it.

Two modes (``clinlake evaluate ner``):

* token mode: the model tags the corpus tokens (split into pieces exactly like the
  pipeline tokens at runtime), predictions are mapped back to the corpus tokens;
* raw-text mode: the corpus tokens are joined with single spaces into a text, the
  pipeline's own :class:`~pipelines.engine.text.TextSplitter` splits and tokenises it, the model
  tags that, and predicted character spans are mapped back to the corpus tokens, so any
  entity lost to our sentence splitting or tokenisation shows up as an error.

Both modes then apply document-level abbreviation propagation (:mod:`pipelines.engine.short_forms`),
as the pipeline's NER stage does within a note. CoNLL files keep each document's sentences
together and in order but mark no document boundaries, so a definition reaches the
``abbreviation_reach`` sentences after it (default :data:`ABBREVIATION_REACH`); the model's
sentence-by-sentence scores are reported next to them (``model_alone``).

``clinlake evaluate ner`` also scores, in token mode, every document-level step the model's stage
runs by default (``stage_steps``: abbreviations, binomials, the label consistency vote and the
gazetteer as model.json chooses them, over declared windows of neighbouring sentences): the figure
that matches what the pipeline does with the model, and the one model cards' CV columns estimate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol, Sequence

from clinlake.pipelines.corpora.conll import Sentence, read_conll
from clinlake.pipelines.engine.consistency import consistent_labels
from clinlake.pipelines.engine.ner.crf import iob_spans
from clinlake.pipelines.engine.ner.features import model_pieces
from clinlake.pipelines.engine.ner.model import load_model
from clinlake.pipelines.engine.ner.stage import ModelNerStage
from clinlake.pipelines.engine.short_forms import propagate, scored_spans
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.evaluation.scoring import precision_recall_f1

Span = tuple[int, int, str]  # first token, last token + 1, type


class PostProcessing(Protocol):
    """Document-level steps over a tagger's tags of consecutive sentences (as the stage would run them)."""
    record: dict  # what a report says about them

    def __call__(self, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                 confidence: Sequence[Sequence[float]]) -> list[list[str]]: ...
# Sentences after its own that an abbreviation definition reaches in a CoNLL file. Chosen on
# the devel sets (F1 gain on AnatEM/BC5CDR/NCBI-disease/BioNLP13CG with 10: +0.40/+1.01/+0.40/
# +0.73; 20: +0.46/+1.08/+0.40/+0.75; 40: the same as 20); an abstract is about ten sentences.
ABBREVIATION_REACH = 20


def spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of IOB2 tags: the decoder's own :func:`~clinlake.pipelines.engine.ner.crf.iob_spans`
    (one implementation of IOB repair for decoding and scoring)."""
    return iob_spans(tags)


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float | int]:
    p, r, f = precision_recall_f1(correct, predicted, correct, gold)
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
            "correct": correct, "predicted": predicted, "gold": gold}


def score_spans(gold: Sequence[Iterable[Span]], predicted: Sequence[Iterable[Span]]) -> dict:
    """Overall and per-type strict P/R/F1 over sentences of gold and predicted spans."""
    counts: dict[str, list[int]] = {}  # type → [correct, predicted, gold]
    for gold_spans, pred_spans in zip(gold, predicted, strict=True):
        g, p = set(gold_spans), set(pred_spans)
        for span in g:
            counts.setdefault(span[2], [0, 0, 0])[2] += 1
        for span in p:
            counts.setdefault(span[2], [0, 0, 0])[1] += 1
            if span in g:
                counts[span[2]][0] += 1
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {"overall": _prf(*total), "per_type": {k: _prf(*counts[k]) for k in sorted(counts)}}


def score_tags(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    return score_spans([spans(g) for g in gold], [spans(p) for p in predicted])


def write_predictions(path: str | Path, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """token<TAB>gold<TAB>predicted, a blank line between sentences (conlleval input)."""
    with open(path, "w", encoding="utf-8") as handle:
        for (tokens, gold), pred in zip(sentences, predicted, strict=True):
            for token, g, p in zip(tokens, gold, pred, strict=True):
                handle.write(f"{token}\t{g}\t{p}\n")
            handle.write("\n")


# ----------------------------------------------------------------------------- tagging

def tag_tokens(model, sentences: Sequence[Sentence]) -> list[list[str]]:
    """Token mode: tags of the corpus tokens (each token takes its first piece's tag, the
    way an entity starting inside a token would be reported at runtime)."""
    return [tags for tags, _ in tag_tokens_scored(model, sentences)]


def tag_tokens_scored(model, sentences: Sequence[Sentence]) -> list[tuple[list[str], list[float]]]:
    """:func:`tag_tokens` with the tagger's confidence in each token's tag (its first piece's
    CRF marginal), which label consistency weighs its votes with."""
    piece_lists, owners = [], []
    for tokens, _ in sentences:
        pieces, owner = [], []
        for i, token in enumerate(tokens):
            split = [p[2] for p in model_pieces([(0, len(token), token)])] or [token]
            pieces += split
            owner += [i] * len(split)
        piece_lists.append(pieces)
        owners.append(owner)
    tagged = model.tag(piece_lists, every_confidence=True)
    result = []
    for (tokens, _), owner, (tags, probs) in zip(sentences, owners, tagged):
        out, confidence = ["O"] * len(tokens), [1.0] * len(tokens)
        seen: set[int] = set()
        for i, tag, prob in zip(owner, tags, probs):
            if i not in seen:
                out[i], confidence[i] = tag, float(prob)
                seen.add(i)
        result.append((out, confidence))
    return result


def tag_raw_text(model, sentences: Sequence[Sentence], splitter=None) -> list[list[str]]:
    """Raw-text mode: join all sentences with spaces (one text per sentence, as a note
    would be a paragraph), run TextSplitter + the model, map entity spans back to tokens."""
    splitter = splitter or TextSplitter.from_file()
    stage = ModelNerStage(model, propagate_abbreviations=False)  # the model alone; see evaluate_model
    result = []
    for tokens, _ in sentences:
        starts, pos = [], 0
        for token in tokens:
            starts.append(pos)
            pos += len(token) + 1
        text = " ".join(tokens)
        found = []
        for entity in stage.find(text, splitter.split(text)):
            covered = [i for i, s in enumerate(starts) if s < entity.end and s + len(tokens[i]) > entity.start]
            if covered:
                found.append((covered[0], covered[-1] + 1, entity.label))
        result.append(iob_tags(len(tokens), found))
    return result


def iob_tags(length: int, spans: Iterable[Span]) -> list[str]:
    """IOB2 tags of ``length`` tokens holding non-overlapping ``spans``."""
    tags = ["O"] * length
    for start, end, label in spans:
        tags[start:end] = ["B-" + label] + ["I-" + label] * (end - start - 1)
    return tags


def with_abbreviations(tokens: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                       reach: int | None) -> list[list[str]]:
    """Predicted tags after abbreviation propagation over consecutive sentences."""
    propagated = propagate(tokens, [spans(tags) for tags in predicted], reach=reach)
    return [iob_tags(len(t), found) for t, found in zip(tokens, propagated)]


def post_processed(tokens: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                   confidence: Sequence[Sequence[float]], *, abbreviation_reach: int | None = ABBREVIATION_REACH,
                   abbreviations: bool = True, binomials: bool = False, consistency_reach: int | None = None,
                   remove: bool = False, consistency_weight: float = 1.0) -> list[list[str]]:
    """The tagger's ``predicted`` tags after the NER stage's document-level steps over consecutive
    sentences: abbreviation propagation (``abbreviations``, reaching ``abbreviation_reach`` sentences;
    None: off), abbreviated binomials (over the same reach; None: the whole file) and the label
    consistency vote (``consistency_reach``; None: off; a tagged occurrence's vote weighted by
    ``consistency_weight``), with entity confidences as the stage reports them
    (:func:`~pipelines.engine.short_forms.scored_spans`)."""
    scored = scored_spans(tokens, [spans(tags) for tags in predicted], confidence,
                          propagate_abbreviations=abbreviations and abbreviation_reach is not None,
                          reach=abbreviation_reach,
                          binomial_short_forms=binomials)
    if consistency_reach is not None:
        scored = consistent_labels(tokens, scored, confidence, reach=consistency_reach, remove=remove,
                                   entity_weight=consistency_weight)
    return [iob_tags(len(t), found) for t, found in zip(tokens, scored)]


def format_report(result: dict, title: str) -> str:
    lines = [title, f"{'type':<32} {'P':>7} {'R':>7} {'F1':>7} {'gold':>6} {'pred':>6}"]
    rows = [("overall", result["overall"]), *result["per_type"].items()]
    for name, r in rows:
        lines.append(f"{name:<32} {100 * r['precision']:7.2f} {100 * r['recall']:7.2f} {100 * r['f1']:7.2f} "
                     f"{r['gold']:6d} {r['predicted']:6d}")
    return "\n".join(lines)


def evaluate(model_dir: Path, conll: Path, predictions: Path | None, *, raw_text: bool = True,
             abbreviation_reach: int | None = ABBREVIATION_REACH, consistency_reach: int | None = None,
             stage_steps: PostProcessing | None = None) -> dict:
    return evaluate_model(load_model(model_dir), conll, predictions, raw_text=raw_text,
                          abbreviation_reach=abbreviation_reach, consistency_reach=consistency_reach,
                          stage_steps=stage_steps)


def evaluate_model(model, conll: Path, predictions: Path | None = None, *, raw_text: bool = True,
                   abbreviation_reach: int | None = ABBREVIATION_REACH, consistency_reach: int | None = None,
                   stage_steps: PostProcessing | None = None) -> dict:
    """Token-mode (and raw-text) scores of a loaded NerModel on a token<TAB>tag file, with
    abbreviation propagation reaching ``abbreviation_reach`` sentences (None: the model alone,
    sentence by sentence; the report then has no ``model_alone``).

    ``consistency_reach`` (None: off) adds the label consistency vote over that many neighbouring
    sentences, after propagation, in token mode only (the vote weighs the tagger's per-token
    confidence, which the raw-text path does not keep); the token scores before the vote are
    reported as ``before_label_consistency``.

    ``stage_steps`` (the steps the model's NER stage runs by default,
    :class:`~pipelines.evaluation.ner_variants.StageSteps`) adds ``stage_steps``: its record and the
    token-mode scores after it, whose tags are then what ``predictions`` holds."""
    sentences = read_conll(conll)
    gold = [tags for _, tags in sentences]
    tokens = [t for t, _ in sentences]
    scored = tag_tokens_scored(model, sentences)
    alone = {"tokens": [tags for tags, _ in scored]}
    if raw_text:
        alone["raw_text"] = tag_raw_text(model, sentences)
    final = alone
    if abbreviation_reach is not None:
        final = {mode: with_abbreviations(tokens, tags, abbreviation_reach) for mode, tags in alone.items()}
    before_vote = final["tokens"]
    if consistency_reach is not None:
        final = {**final, "tokens": post_processed(tokens, alone["tokens"], [conf for _, conf in scored],
                                                   abbreviation_reach=abbreviation_reach,
                                                   consistency_reach=consistency_reach)}
    written = final["tokens"]
    if stage_steps is not None:
        written = stage_steps(tokens, alone["tokens"], [conf for _, conf in scored])
    if predictions is not None:
        write_predictions(predictions, sentences, written)
    report = {"model": model.name, "file": str(conll), "sentences": len(sentences),
              **{mode: score_tags(gold, tags) for mode, tags in final.items()}}
    if stage_steps is not None:
        report["stage_steps"] = {**stage_steps.record, "tokens": score_tags(gold, written)}
    if abbreviation_reach is not None:
        report["abbreviation_reach"] = abbreviation_reach
        report["model_alone"] = {mode: score_tags(gold, tags) for mode, tags in alone.items()}
    if consistency_reach is not None:
        report["label_consistency_reach"] = consistency_reach
        report["before_label_consistency"] = {"tokens": score_tags(gold, before_vote)}
    return report

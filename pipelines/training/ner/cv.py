"""k-fold cross-validation of a biomedical NER training recipe: an estimate that one devel split cannot give.

Devel F1 selected and reported on one split over-estimated held-out F1 by several points on some corpora
(by more than ten on LINNAEUS). The protocol here:

* **data**: the corpus's train and devel sentences, in file order (train, then devel); for a clinical
  model (``kind: brat``), each of its BRAT corpora's train then devel documents, in name order, split
  and tokenised and with types mapped as its training did (:func:`cv_examples`);
* **folds**: ``k`` contiguous blocks of consecutive sentences, sizes differing by at most one. The
  CoNLL files mark no document boundaries, so a block keeps its documents whole except at its two
  edges; a sentence is in exactly one block, and the blocks depend only on the sentence count and
  ``k`` (deterministic, the same for every variant compared);
* **training**: for each fold, a fresh network trained on the other ``k - 1`` blocks for a fixed number
  of epochs (by default the epoch count the shipped model selected), with the shipped model's network
  settings, learning rate and seed. Nothing is selected on the held-out block, so its score is held out;
* **score**: strict entity-level F1 (conlleval semantics) on the held-out block's model pieces, with
  document-level abbreviation propagation over ``abbreviation_reach`` sentences as ``clinlake evaluate
  ner`` applies it, and the network alone beside it; the report gives every fold, the mean and the
  sample standard deviation;
* **variants**: every post-processing variant of :mod:`pipelines.evaluation.ner_variants` is scored on
  the same held-out predictions, with its mean paired difference against the shipped one (the label
  consistency vote with the model's weight on tagged occurrences, or the one given). With
  ``predictions_dir`` each fold's held-out tags and confidences are kept (``fold<k>.json.gz``), so
  :func:`rescore` can score variants again, or new ones, without training.

Training needs torch (``pip install -e '.[train]'``). Folds can run in parallel processes, one torch
thread each.
"""
from __future__ import annotations

import gzip
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from clinlake.pipelines.engine.ner.metadata import CONSISTENCY_WEIGHT, ModelMeta, consistency_entity_weight
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH
from clinlake.pipelines.evaluation.ner_variants import CONSISTENCY_REACH, DEFAULT, ConllReach, Tagged, score_variants
from clinlake.pipelines.training.ner.corpus import Example, load_split
from clinlake.pipelines.training.ner.gazetteer import Lexicon, learn_gazetteer, read_lexicons


class CrossValidationError(ValueError):
    """A cross-validation request that cannot be run (too few sentences, bad k, no recipe)."""


def fold_blocks(n_sentences: int, k: int) -> list[range]:
    """``k`` contiguous blocks covering ``range(n_sentences)`` in order, sizes differing by at most one."""
    if k < 2:
        raise CrossValidationError(f"cross-validation needs at least 2 folds, not {k}")
    if n_sentences < k:
        raise CrossValidationError(f"{n_sentences} sentences cannot make {k} folds")
    size, extra = divmod(n_sentences, k)
    blocks, start = [], 0
    for fold in range(k):
        end = start + size + (1 if fold < extra else 0)
        blocks.append(range(start, end))
        start = end
    return blocks


def split_fold(examples: Sequence[Example], blocks: Sequence[range], fold: int) -> tuple[list[Example], list[Example]]:
    """(training examples, held-out examples) of one fold."""
    held = blocks[fold]
    train = [examples[i] for block in blocks if block is not held for i in block]
    return train, [examples[i] for i in held]


@dataclass(frozen=True)
class Recipe:
    """How each fold's network is trained: the shipped model's settings unless overridden."""
    epochs: int
    network: dict
    lr: float
    batch_pieces: int
    lexicons: tuple[Lexicon, ...] = ()  # open vocabularies of the gazetteer variant (model.json gazetteer_lexicons)
    gazetteer_features: bool = False  # the network reads gazetteer channels (training.ner.gazetteer_features)
    channel_lexicons: tuple[Lexicon, ...] = ()  # open vocabularies in the channels' list (their training record's)

    @classmethod
    def of_model(cls, model_dir: Path, *, epochs: int | None = None) -> "Recipe":
        meta = ModelMeta.load(model_dir).raw
        training = meta.get("training") or {}
        # the epochs the shipped network trained for (a refit's count, which is its selection's unless
        # `--refit-epochs` gave another), else its selection's
        selected = training.get("best_epoch") or (training.get("selection") or {}).get("best_epoch")
        if epochs is None and not selected:
            raise CrossValidationError(f"{model_dir.name}'s model.json records no selected epoch count: give epochs")
        return cls(epochs=int(epochs or selected), network=dict(training.get("network") or {}),
                   lr=float(training.get("lr", 2e-3)), batch_pieces=int(training.get("batch_pieces", 1000)),
                   lexicons=read_lexicons(meta), gazetteer_features=bool(training.get("gazetteer_features")),
                   channel_lexicons=read_lexicons(training.get("gazetteer_features") or {}, key="lexicons"))

    def fit_options(self) -> dict:
        """The keywords of :func:`~.loop.fit` that train this recipe's network (a fixed epoch count, one thread)."""
        return dict(max_minutes=float("inf"), epochs=self.epochs, lr=self.lr, batch_pieces=self.batch_pieces,
                    threads=1, network=self.network, gazetteer_features=self.gazetteer_features,
                    channel_lexicons=self.channel_lexicons)


def run_fold(examples: Sequence[Example], blocks: Sequence[range], fold: int, recipe: Recipe, *,
             abbreviation_reach: int | None = ABBREVIATION_REACH, embeddings_dir: Path | None = None,
             predictions_dir: Path | None = None, consistency_weight: float = 1.0,
             consistency_reach: int = CONSISTENCY_REACH) -> dict:
    """Train on every block but ``fold`` and score the held-out block."""
    from clinlake.pipelines.training.ner.loop import fit, predict_scored  # torch: only here

    train, held = split_fold(examples, blocks, fold)
    started = time.time()
    net, crf, tags, chars, embeddings, record = fit(train, {}, **recipe.fit_options(), embeddings_dir=embeddings_dir)
    predicted = predict_scored(net, crf, held, embeddings, chars, tags)
    if predictions_dir is not None:
        write_fold_predictions(predictions_dir, fold, blocks[fold], predicted)
    scores = score_fold(train, held, blocks[fold], fold, predicted, abbreviation_reach, lexicons=recipe.lexicons,
                        consistency_weight=consistency_weight, consistency_reach=consistency_reach)
    return {**scores, "train_sentences": len(train),
            "epochs": record["best_epoch"], "seconds": round(time.time() - started, 1)}


def score_fold(train: Sequence[Example], held: Sequence[Example], block: range, fold: int,
               predicted: Sequence[tuple[list[str], list[float]]], abbreviation_reach: int | None, *,
               lexicons: Sequence[Lexicon] = (), consistency_weight: float = 1.0,
               consistency_reach: int = CONSISTENCY_REACH) -> dict:
    """One fold's scores: the shipped post-processing's (f1, precision, recall), the network's alone,
    and every variant's (the gazetteer variant's gazetteer learned from the fold's training examples,
    with the model's ``lexicons`` where it names some; the vote's weight ``consistency_weight``, its
    reach ``consistency_reach`` sentences either side)."""
    tagged = Tagged(tokens=[p for p, _ in held], tags=[t for t, _ in predicted],
                    confidence=[c for _, c in predicted], abbreviation_reach=abbreviation_reach,
                    gazetteer=learn_gazetteer(train, lexicons=lexicons), consistency_weight=consistency_weight,
                    consistency_reach=consistency_reach)
    variants = score_variants(tagged, [t for _, t in held])
    return {"fold": fold, "held_out": [block.start, block.stop], **variants[DEFAULT],
            "model_alone_f1": variants["network"]["f1"], "variants": variants}


def write_fold_predictions(directory: Path, fold: int, block: range,
                           predicted: Sequence[tuple[list[str], list[float]]]) -> Path:
    """``fold<k>.json.gz``: the held-out block's range, tags and tag confidences."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"fold{fold}.json.gz"
    record = {"fold": fold, "held_out": [block.start, block.stop],
              "tags": [t for t, _ in predicted], "confidence": [c for _, c in predicted]}
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump(record, out)
    return path


def read_fold_predictions(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as source:
        return json.load(source)


def spread(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (0 for one value), to 4 decimals."""
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def summarise(folds: Sequence[dict]) -> dict:
    """Mean and sample standard deviation of the folds' F1 (with and without abbreviations), and of
    each variant's F1 and its paired difference from the shipped post-processing."""
    out = {key: spread([f[key] for f in folds]) for key in ("f1", "model_alone_f1")}
    names = [n for n in folds[0].get("variants", {}) if all(n in f.get("variants", {}) for f in folds)]
    out["variants"] = {n: {"f1": spread([f["variants"][n]["f1"] for f in folds]),
                           "gain": spread([f["variants"][n]["f1"] - f["variants"][DEFAULT]["f1"] for f in folds])}
                       for n in names}
    return out


def cv_examples(corpus: str | None, *, model_dir: Path | None = None,
                shared: Path | None = None) -> tuple[str, list[Example]]:
    """(name, sentences) that cross-validation cuts into blocks: a biomedical corpus's train, then
    devel, in file order; for a clinical model (model.json ``kind: brat``), each of its corpora's train
    then devel documents with its label maps. ``corpus`` None: the model's own."""
    meta = ModelMeta.load(model_dir).raw if model_dir is not None else {}
    if meta.get("kind") == "brat":
        from clinlake.pipelines.corpora.clinical import load_brat_split
        from clinlake.pipelines.corpora.label_maps import load_label_map
        from clinlake.pipelines.engine.text import TextSplitter
        from clinlake.pipelines.resources import source_root
        from clinlake.pipelines.training.clinical import corpus_dir, default_abbreviations

        if corpus not in (None, meta["corpus"]):
            raise CrossValidationError(f"{model_dir.name} is trained on {meta['corpus']}, not {corpus}")
        splitter = TextSplitter.from_file(default_abbreviations())
        examples = []
        for name, map_path in meta["label_maps"].items():
            label_map = load_label_map(source_root() / map_path)
            for split in ("train", "devel"):
                examples += load_brat_split(corpus_dir(name, split, shared=shared), label_map, splitter)
        return meta["corpus"], examples
    corpus = corpus or meta.get("corpus")
    if not corpus:
        raise CrossValidationError("name a corpus or a model whose model.json names one")
    return corpus, load_split(corpus, "train", shared=shared) + load_split(corpus, "devel", shared=shared)


def chosen_folds(k: int, folds: Sequence[int] | None) -> list[int]:
    chosen = list(range(k)) if folds is None else sorted(set(folds))
    if any(not 0 <= f < k for f in chosen):
        raise CrossValidationError(f"folds must be in 0..{k - 1}, not {chosen}")
    return chosen


def cross_validate(corpus: str | None, model_dir: Path, *, k: int = 5, epochs: int | None = None, jobs: int = 1,
                   folds: Sequence[int] | None = None, abbreviation_reach: int | None = None,
                   shared: Path | None = None, embeddings_dir: Path | None = None,
                   predictions_dir: Path | None = None, consistency_weight: float | None = None,
                   consistency_reach: int | None = None, gazetteer_features: bool | None = None,
                   channel_lexicons: bool | None = None) -> dict:
    """The CV report of ``corpus`` (None: the model's) with the recipe of the model in ``model_dir``
    (see the module doc); the vote's weight is ``consistency_weight``, the reaches in sentences
    ``abbreviation_reach`` and ``consistency_reach`` (each None: the model's own);
    ``gazetteer_features`` overrides the recipe's (None: the model's own), and so does
    ``channel_lexicons`` (True: the channels' list also holds the model's ``gazetteer_lexicons``)."""
    recipe = Recipe.of_model(model_dir, epochs=epochs)
    if gazetteer_features is not None:
        recipe = replace(recipe, gazetteer_features=gazetteer_features)
    if channel_lexicons is not None:
        if channel_lexicons and not recipe.lexicons:
            raise CrossValidationError(f"{model_dir.name} names no gazetteer_lexicons to put in the channels")
        recipe = replace(recipe, channel_lexicons=recipe.lexicons if channel_lexicons else ())
    if recipe.channel_lexicons and not recipe.gazetteer_features:
        raise CrossValidationError("lexicons in the gazetteer channels need the channels (--gazetteer-features)")
    corpus, examples = cv_examples(corpus, model_dir=model_dir, shared=shared)
    blocks = fold_blocks(len(examples), k)
    chosen = chosen_folds(k, folds)
    weight = _vote_weight(model_dir, consistency_weight)
    reach = conll_reach(model_dir, abbreviation_reach, consistency_reach)
    options = dict(abbreviation_reach=reach.abbreviations, embeddings_dir=embeddings_dir,
                   predictions_dir=predictions_dir, consistency_weight=weight, consistency_reach=reach.consistency)
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_fold_job, [(examples, blocks, f, recipe, options) for f in chosen]))
    else:
        results = [run_fold(examples, blocks, f, recipe, **options) for f in chosen]
    return {"corpus": corpus, "recipe_of": model_dir.name, "k": k, "sentences": len(examples),
            "recipe": {"epochs": recipe.epochs, "network": recipe.network, "lr": recipe.lr,
                       "batch_pieces": recipe.batch_pieces, "gazetteer_features": recipe.gazetteer_features,
                       **({"channel_lexicons": [lexicon.source for lexicon in recipe.channel_lexicons]}
                          if recipe.channel_lexicons else {})},
            **lexicon_record(recipe.lexicons),
            "abbreviation_reach": reach.abbreviations, "consistency_reach": reach.consistency,
            CONSISTENCY_WEIGHT: weight, "folds": results, **summarise(results)}


def _vote_weight(model_dir: Path | None, given: float | None) -> float:
    """The consistency vote's weight a CV scores with: ``given``, else the model's (model.json), else 1."""
    if given is not None:
        if not given > 0:
            raise CrossValidationError(f"the vote's weight must be a positive number, got {given!r}")
        return float(given)
    return consistency_entity_weight(ModelMeta.load(model_dir).raw) if model_dir is not None else 1.0


def conll_reach(model_dir: Path | None, abbreviation_reach: int | None = None,
                consistency_reach: int | None = None) -> ConllReach:
    """The windows a CV scores with: each one given, else the model's (model.json), else the built-in."""
    for name, given in (("abbreviation", abbreviation_reach), ("vote", consistency_reach)):
        if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < 0):
            raise CrossValidationError(f"the {name} reach must be 0 or more sentences, got {given!r}")
    model = ConllReach.of_meta(ModelMeta.load(model_dir).raw) if model_dir is not None else ConllReach()
    return ConllReach(abbreviations=model.abbreviations if abbreviation_reach is None else abbreviation_reach,
                      consistency=model.consistency if consistency_reach is None else consistency_reach)


def lexicon_record(lexicons: Sequence[Lexicon]) -> dict:
    """The report's record of the open vocabularies its gazetteer variant was scored with (none: nothing)."""
    return {"gazetteer_lexicons": [{"file": lexicon.source, "label": lexicon.label, "names": len(lexicon.names)}
                                   for lexicon in lexicons]} if lexicons else {}


def rescore(corpus: str | None, predictions_dir: Path, *, k: int = 5,
            abbreviation_reach: int | None = None, model_dir: Path | None = None,
            shared: Path | None = None, consistency_weight: float | None = None,
            consistency_reach: int | None = None) -> dict:
    """A CV report from the fold predictions a run kept (:func:`write_fold_predictions`): every
    variant scored again without training. The saved blocks must be this corpus's ``k`` blocks."""
    corpus, examples = cv_examples(corpus, model_dir=model_dir, shared=shared)
    blocks = fold_blocks(len(examples), k)
    lexicons = read_lexicons(ModelMeta.load(model_dir).raw) if model_dir is not None else ()
    weight = _vote_weight(model_dir, consistency_weight)
    reach = conll_reach(model_dir, abbreviation_reach, consistency_reach)
    paths = sorted(predictions_dir.glob("fold*.json.gz"))
    if not paths:
        raise CrossValidationError(f"no fold predictions (fold<k>.json.gz) in {predictions_dir}")
    results = []
    for path in paths:
        saved = read_fold_predictions(path)
        fold = int(saved["fold"])
        if not 0 <= fold < k or saved["held_out"] != [blocks[fold].start, blocks[fold].stop]:
            raise CrossValidationError(f"{path.name} holds sentences {saved['held_out']}, not fold {fold} of "
                                       f"{k} over {len(examples)} {corpus} sentences")
        train, held = split_fold(examples, blocks, fold)
        predicted = list(zip(saved["tags"], saved["confidence"], strict=True))
        results.append(score_fold(train, held, blocks[fold], fold, predicted, reach.abbreviations, lexicons=lexicons,
                                  consistency_weight=weight, consistency_reach=reach.consistency))
    return {"corpus": corpus, "recipe_of": None, "k": k, "sentences": len(examples), "rescored_from": str(predictions_dir),
            **lexicon_record(lexicons), "abbreviation_reach": reach.abbreviations,
            "consistency_reach": reach.consistency, CONSISTENCY_WEIGHT: weight,
            "folds": results, **summarise(results)}


def _fold_job(job: tuple) -> dict:
    examples, blocks, fold, recipe, options = job
    return run_fold(examples, blocks, fold, recipe, **options)


def format_cv(report: dict) -> str:
    if report.get("recipe"):
        head = (f"{report['k']}-fold CV of {report['recipe_of']}'s recipe on {report['corpus']} train+devel "
                f"({report['sentences']} sentences, {report['recipe']['epochs']} epochs per fold)")
    else:
        head = (f"{report['k']}-fold CV on {report['corpus']} train+devel ({report['sentences']} sentences), "
                f"rescored from {report.get('rescored_from')}")
    lines = [head, f"{'fold':>4} {'held-out sentences':>20} {'F1':>7} {'P':>7} {'R':>7} {'alone':>7} {'s':>7}"]
    for f in report["folds"]:
        seconds = f"{f['seconds']:7.0f}" if "seconds" in f else f"{'-':>7}"
        lines.append(f"{f['fold']:>4} {f['held_out'][0]:>9}-{f['held_out'][1]:<10} {100 * f['f1']:7.2f} "
                     f"{100 * f['precision']:7.2f} {100 * f['recall']:7.2f} {100 * f['model_alone_f1']:7.2f} {seconds}")
    lines.append(f"mean F1 {100 * report['f1']['mean']:.2f} ± {100 * report['f1']['sd']:.2f} (sample sd); "
                 f"network alone {100 * report['model_alone_f1']['mean']:.2f} ± {100 * report['model_alone_f1']['sd']:.2f}")
    if report.get(CONSISTENCY_WEIGHT, 1.0) != 1.0:
        lines.append(f"label consistency vote: a tagged occurrence's vote weighs {report[CONSISTENCY_WEIGHT]:g}")
    if "consistency_reach" in report:
        lines.append(f"windows: a definition or binomial reaches {report['abbreviation_reach']} sentences after it, "
                     f"the vote {report['consistency_reach']} either side")
    variants = report.get("variants") or {}
    if variants:
        lines.append(f"{'variant':<46} {'F1 mean ± sd':>16} {'paired gain vs ' + DEFAULT:>30}")
        for name, v in variants.items():
            lines.append(f"{name:<46} {100 * v['f1']['mean']:8.2f} ± {100 * v['f1']['sd']:5.2f} "
                         f"{100 * v['gain']['mean']:+21.2f} ± {100 * v['gain']['sd']:5.2f}")
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


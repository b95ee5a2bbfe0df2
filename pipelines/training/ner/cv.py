"""k-fold cross-validation of a biomedical NER training recipe: an estimate that one devel split cannot give.

Devel F1 selected and reported on one split over-estimated held-out F1 by several points on some corpora
(by more than ten on LINNAEUS). The protocol here:

* **data**: the corpus's train and devel sentences, in file order (train, then devel);
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
  sample standard deviation.

Training needs torch (``pip install -e '.[train]'``). Folds can run in parallel processes, one torch
thread each.
"""
from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clinlake.pipelines.engine.ner.metadata import ModelMeta
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH, score_tags, with_abbreviations
from clinlake.pipelines.training.ner.corpus import Example, load_split


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

    @classmethod
    def of_model(cls, model_dir: Path, *, epochs: int | None = None) -> "Recipe":
        training = ModelMeta.load(model_dir).raw.get("training") or {}
        selected = (training.get("selection") or {}).get("best_epoch") or training.get("best_epoch")
        if epochs is None and not selected:
            raise CrossValidationError(f"{model_dir.name}'s model.json records no selected epoch count: give epochs")
        return cls(epochs=int(epochs or selected), network=dict(training.get("network") or {}),
                   lr=float(training.get("lr", 2e-3)), batch_pieces=int(training.get("batch_pieces", 1000)))


def run_fold(examples: Sequence[Example], blocks: Sequence[range], fold: int, recipe: Recipe, *,
             abbreviation_reach: int | None = ABBREVIATION_REACH, embeddings_dir: Path | None = None) -> dict:
    """Train on every block but ``fold`` and score the held-out block."""
    from clinlake.pipelines.training.ner.loop import fit, predict  # torch: only here

    train, held = split_fold(examples, blocks, fold)
    started = time.time()
    net, crf, tags, chars, embeddings, record = fit(
        train, {}, max_minutes=float("inf"), epochs=recipe.epochs, lr=recipe.lr, batch_pieces=recipe.batch_pieces,
        threads=1, network=recipe.network, embeddings_dir=embeddings_dir)
    predicted = predict(net, crf, held, embeddings, chars, tags)
    pieces, gold = [p for p, _ in held], [t for _, t in held]
    alone = score_tags(gold, predicted)["overall"]
    final = alone if abbreviation_reach is None else \
        score_tags(gold, with_abbreviations(pieces, predicted, abbreviation_reach))["overall"]
    return {"fold": fold, "held_out": [blocks[fold].start, blocks[fold].stop], "train_sentences": len(train),
            "epochs": record["best_epoch"], "f1": final["f1"], "precision": final["precision"],
            "recall": final["recall"], "model_alone_f1": alone["f1"], "seconds": round(time.time() - started, 1)}


def summarise(folds: Sequence[dict]) -> dict:
    """Mean and sample standard deviation of the folds' F1 (with and without abbreviations)."""
    out = {}
    for key in ("f1", "model_alone_f1"):
        values = [f[key] for f in folds]
        out[key] = {"mean": round(statistics.fmean(values), 4),
                    "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}
    return out


def cross_validate(corpus: str, model_dir: Path, *, k: int = 5, epochs: int | None = None, jobs: int = 1,
                   folds: Sequence[int] | None = None, abbreviation_reach: int | None = ABBREVIATION_REACH,
                   shared: Path | None = None, embeddings_dir: Path | None = None) -> dict:
    """The CV report of ``corpus`` with the recipe of the model in ``model_dir`` (see the module doc)."""
    examples = load_split(corpus, "train", shared=shared) + load_split(corpus, "devel", shared=shared)
    blocks = fold_blocks(len(examples), k)
    recipe = Recipe.of_model(model_dir, epochs=epochs)
    chosen = list(range(k)) if folds is None else sorted(set(folds))
    if any(not 0 <= f < k for f in chosen):
        raise CrossValidationError(f"folds must be in 0..{k - 1}, not {chosen}")
    options = dict(abbreviation_reach=abbreviation_reach, embeddings_dir=embeddings_dir)
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_fold_job, [(examples, blocks, f, recipe, options) for f in chosen]))
    else:
        results = [run_fold(examples, blocks, f, recipe, **options) for f in chosen]
    return {"corpus": corpus, "recipe_of": model_dir.name, "k": k, "sentences": len(examples),
            "recipe": {"epochs": recipe.epochs, "network": recipe.network, "lr": recipe.lr,
                       "batch_pieces": recipe.batch_pieces},
            "abbreviation_reach": abbreviation_reach, "folds": results, **summarise(results)}


def _fold_job(job: tuple) -> dict:
    examples, blocks, fold, recipe, options = job
    return run_fold(examples, blocks, fold, recipe, **options)


def format_cv(report: dict) -> str:
    lines = [f"{report['k']}-fold CV of {report['recipe_of']}'s recipe on {report['corpus']} train+devel "
             f"({report['sentences']} sentences, {report['recipe']['epochs']} epochs per fold)",
             f"{'fold':>4} {'held-out sentences':>20} {'F1':>7} {'P':>7} {'R':>7} {'alone':>7} {'s':>7}"]
    for f in report["folds"]:
        lines.append(f"{f['fold']:>4} {f['held_out'][0]:>9}-{f['held_out'][1]:<10} {100 * f['f1']:7.2f} "
                     f"{100 * f['precision']:7.2f} {100 * f['recall']:7.2f} {100 * f['model_alone_f1']:7.2f} "
                     f"{f['seconds']:7.0f}")
    lines.append(f"mean F1 {100 * report['f1']['mean']:.2f} ± {100 * report['f1']['sd']:.2f} (sample sd); "
                 f"network alone {100 * report['model_alone_f1']['mean']:.2f} ± {100 * report['model_alone_f1']['sd']:.2f}")
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


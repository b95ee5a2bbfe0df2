"""Ensembles of the NER recipe and their distillation into one student of today's size.

* **members**: ``members`` networks of the shipped recipe trained on the same examples, differing
  only in their seed (:data:`~.corpus.SEED` + 0, 1, ...). Member 0 is exactly the recipe's own
  network (same seed, same data), so "today's model" in a comparison is member 0.
* **ensemble**: the members' CRF tag posteriors averaged token by token, decoded by Viterbi over the
  log averaged posteriors under the IOB2 constraints (max-marginal decoding); the confidence of a tag
  is its averaged posterior. It costs ``members`` times the network time, so it is a teacher, not a
  shipped model.
* **silver**: a fixed, seeded sample of ``silver`` sentences of the shared unlabelled biomedical
  text (``data/corpus/biomedical_sentences.txt``, held-out test sentences already removed there),
  without any sentence of the corpus's own train and devel splits, labelled by the ensemble.
* **student**: one network of the same recipe and size (or a smaller LSTM: ``student_hidden``, for
  speed), trained for the recipe's epoch count on the gold examples plus, in each epoch, a fresh sample of ``ratio`` silver sentences per gold sentence.
  ``labels="hard"``: the CRF likelihood of the ensemble's decoded tags, silver and gold batched
  together (self-training from an ensemble teacher); ``"soft"``: in batches of their own, the
  cross-entropy between the ensemble's posteriors and the student CRF's own (posterior distillation). Same architecture, same character
  vocabulary and tag set, so at today's size it tags at today's speed; a student with a smaller
  LSTM (``student_hidden``) is faster in proportion to its LSTM's work.

:func:`distill_fold` runs all three on one cross-validation fold (members and student trained on
the other blocks only, so the held-out block is held out from the teacher too; with a
``predictions_dir`` it keeps the ensemble's pool posteriors, so another student recipe can be tried on
the same teacher); ``clinlake evaluate distill-cv`` runs it over the folds, :func:`train_student`
trains a shipped student on the model's own training data.
"""
from __future__ import annotations

import hashlib
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from clinlake.pipelines.corpora.conll import read_conll
from clinlake.pipelines.engine.ner.crf import CrfDecoder
from clinlake.pipelines.engine.ner.metadata import CONSISTENCY_WEIGHT, ModelMeta, consistency_entity_weight
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH
from clinlake.pipelines.evaluation.ner_variants import CONSISTENCY_REACH, stage_variant
from clinlake.pipelines.resources import shared_data
from clinlake.pipelines.training.ner.corpus import SEED, Example, split_path, tag_set, to_pieces
from clinlake.pipelines.training.ner.cv import (CrossValidationError, Recipe, chosen_folds, conll_reach, cv_examples,
                                                fold_blocks, lexicon_record, read_fold_predictions, score_fold, split_fold,
                                                spread, write_fold_predictions)

SYSTEMS = ("today", "ensemble", "student")  # what a distillation fold scores, in report order
UNLABELLED = Path("corpus") / "biomedical_sentences.txt"  # under the shared data folder


@dataclass(frozen=True)
class Plan:
    """How a student is distilled: ensemble size, silver pool size and the silver share per epoch."""
    members: int = 3
    silver: int = 20000
    ratio: float = 1.0
    max_pieces: int = 100  # longer unlabelled lines (tables, lists) are left out of the pool
    labels: Literal["hard", "soft"] = "hard"  # the ensemble's decoded tags, or its posteriors
    student_hidden: int | None = None  # the student's LSTM size per direction (None: the recipe's)

    def __post_init__(self) -> None:
        if self.labels not in ("hard", "soft"):
            raise CrossValidationError(f"silver labels are 'hard' or 'soft', not {self.labels!r}")
        if self.members < 1 or self.silver < 0 or self.ratio < 0 or self.max_pieces < 1:
            raise CrossValidationError(f"a distillation plan needs members >= 1 and non-negative silver and "
                                       f"ratio, not {asdict(self)}")
        if self.student_hidden is not None and self.student_hidden < 1:
            raise CrossValidationError(f"the student's hidden size must be 1 or more, not {self.student_hidden}")

    def student_recipe(self, recipe: Recipe) -> Recipe:
        """The student's recipe: the members' own, with ``student_hidden`` as its LSTM size when set."""
        if self.student_hidden is None:
            return recipe
        return replace(recipe, network={**recipe.network, "hidden": self.student_hidden})


def silver_pool(corpus: str, plan: Plan, *, shared: Path | None = None) -> list[list[str]]:
    """The unlabelled sentences (as model pieces) the ensemble labels: a seeded sample of ``plan.silver``
    lines of the shared biomedical text, none of them one of ``corpus``'s train or devel sentences."""
    shared = shared_data() if shared is None else shared
    own = {" ".join(tokens) for split in ("train", "devel")
           for tokens, _ in read_conll(split_path(corpus, split, shared=shared))}
    candidates = []
    with (shared / UNLABELLED).open(encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line and line not in own:
                candidates.append(line)
    rng = random.Random(SEED)
    rng.shuffle(candidates)
    pool: list[list[str]] = []
    for line in candidates:
        tokens = line.split(" ")
        pieces = to_pieces(tokens, ["O"] * len(tokens))[0]
        if len(pieces) <= plan.max_pieces:
            pool.append(pieces)
            if len(pool) == plan.silver:
                break
    return pool


@dataclass
class Member:
    """One trained network with what it needs to tag (:func:`~.loop.fit`'s outputs)."""
    net: object
    crf: object
    tags: list[str]
    chars: dict[str, int]
    embeddings: object
    record: dict | None = None  # fit()'s training record

    def posteriors(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        from clinlake.pipelines.training.ner.loop import posteriors

        return posteriors(self.net, self.crf, [(list(s), ["O"] * len(s)) for s in sentences], self.embeddings,
                          self.chars, self.tags)

    def tagged(self, examples: Sequence[Example]) -> list[tuple[list[str], list[float]]]:
        """(Viterbi tags, their posteriors) of each example."""
        from clinlake.pipelines.training.ner.loop import predict_scored

        return predict_scored(self.net, self.crf, examples, self.embeddings, self.chars, self.tags)


def fit_recipe(examples: Sequence[Example], recipe: Recipe, *, embeddings_dir: Path | None = None,
               **options) -> Member:
    """One network of ``recipe`` trained on ``examples`` for its epoch count (``options``: more
    :func:`~.loop.fit` keywords: seed, silver, ...)."""
    from clinlake.pipelines.training.ner.loop import fit

    net, crf, tags, chars, embeddings, record = fit(examples, {}, **recipe.fit_options(),
                                                    embeddings_dir=embeddings_dir, **options)
    return Member(net, crf, tags, chars, embeddings, record)


def train_members(examples: Sequence[Example], recipe: Recipe, members: int, *,
                  embeddings_dir: Path | None = None) -> list[Member]:
    """``members`` networks of ``recipe`` on ``examples``, seeds SEED, SEED + 1, ..."""
    trained = [fit_recipe(examples, recipe, embeddings_dir=embeddings_dir, seed=SEED + m) for m in range(members)]
    if any(m.tags != trained[0].tags for m in trained):
        raise CrossValidationError("ensemble members disagree on the tag set")
    return trained


def ensemble_tags(members: Sequence[Member], sentences: Sequence[Sequence[str]]
                  ) -> list[tuple[list[str], list[float]]]:
    """(tags, confidences) of each sentence from the members' averaged posteriors."""
    return decode_posteriors(ensemble_posteriors(members, sentences), members[0].tags)


def ensemble_posteriors(members: Sequence[Member], sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """The members' per-token tag posteriors [n, K] of each sentence, averaged."""
    per_member = [m.posteriors(sentences) for m in members]
    return [np.mean([p[i] for p in per_member], axis=0) for i in range(len(sentences))]


def decode_posteriors(averaged: Sequence[np.ndarray], tags: Sequence[str]) -> list[tuple[list[str], list[float]]]:
    """Max-marginal decoding: Viterbi over log posteriors with only the IOB2 constraints as
    transitions; each tag's confidence is its posterior."""
    from clinlake.pipelines.training.ner.network import iob_mask

    start, trans = iob_mask(tags)
    decoder = CrfDecoder(start, np.zeros(len(tags)), trans, dtype=np.float64)
    out: list[tuple[list[str], list[float]]] = []
    for marginals in averaged:
        if len(marginals) == 0:
            out.append(([], []))
            continue
        path = decoder.paths(np.log(np.maximum(marginals, 1e-12))[None], [len(marginals)])[0]
        out.append(([tags[k] for k in path.tolist()],
                    [round(float(marginals[t, k]), 4) for t, k in enumerate(path.tolist())]))
    return out


def fit_student(gold: Sequence[Example], silver: Sequence[Example], recipe: Recipe, plan: Plan, *,
                targets: Sequence[np.ndarray] | None = None, embeddings_dir: Path | None = None) -> Member:
    """The student: ``recipe`` on ``gold`` plus ``silver`` (their ``targets``' posteriors when
    ``plan.labels`` is soft)."""
    return fit_recipe(gold, plan.student_recipe(recipe), embeddings_dir=embeddings_dir, silver=silver,
                      silver_ratio=plan.ratio,
                      silver_targets=targets if plan.labels == "soft" else None)


@dataclass
class Distilled:
    """What :func:`distil` trained: the members (none when a kept teacher was reused), the
    student, the silver examples and the ensemble's posteriors on them."""
    members: list[Member]
    student: Member
    silver: list[Example]
    posteriors: list[np.ndarray]


def distil(gold: Sequence[Example], pool: Sequence[Sequence[str]], recipe: Recipe, plan: Plan, *,
           embeddings_dir: Path | None = None, teacher: Sequence[np.ndarray] | None = None) -> Distilled:
    """Members trained on ``gold`` label the pool (or ``teacher``: their pool posteriors kept by an
    earlier run), then the student trains on gold + silver."""
    members: list[Member] = []
    if teacher is None:
        members = train_members(gold, recipe, plan.members, embeddings_dir=embeddings_dir)
        teacher = ensemble_posteriors(members, pool)
    tags = tag_set(gold)  # fit()'s order
    silver = [(list(words), path) for words, (path, _) in zip(pool, decode_posteriors(teacher, tags))]
    student = fit_student(gold, silver, recipe, plan, targets=teacher, embeddings_dir=embeddings_dir)
    return Distilled(members, student, silver, list(teacher))


def pool_fingerprint(pool: Sequence[Sequence[str]]) -> str:
    return hashlib.sha256("\n".join(" ".join(p) for p in pool).encode("utf-8")).hexdigest()


def write_teacher(directory: Path, fold: int, pool: Sequence[Sequence[str]], posteriors: Sequence[np.ndarray],
                  tags: Sequence[str]) -> Path:
    """``teacher/fold<k>.npz``: the ensemble's posteriors on the silver pool (fp16), for ``--teacher``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"fold{fold}.npz"
    np.savez_compressed(path, posteriors=np.concatenate(posteriors).astype(np.float16),
                        lengths=np.array([len(p) for p in posteriors], dtype=np.int32),
                        tags=np.array(tags), pool=np.array(pool_fingerprint(pool)))
    return path


def read_teacher(path: Path, pool: Sequence[Sequence[str]], tags: Sequence[str]) -> list[np.ndarray]:
    if not path.is_file():
        raise CrossValidationError(f"no kept teacher {path}: run distill-cv with --predictions first")
    saved = np.load(path)
    if str(saved["pool"]) != pool_fingerprint(pool) or list(saved["tags"]) != list(tags):
        raise CrossValidationError(f"{path} was made on another silver pool or tag set: same --silver as its run")
    rows = saved["posteriors"].astype(np.float32)
    rows /= rows.sum(axis=1, keepdims=True)  # fp16 rounding
    return np.split(rows, np.cumsum(saved["lengths"])[:-1])


def distill_fold(examples: Sequence[Example], blocks: Sequence[range], fold: int, recipe: Recipe, plan: Plan,
                 pool: Sequence[Sequence[str]], *, abbreviation_reach: int | None = ABBREVIATION_REACH,
                 embeddings_dir: Path | None = None, predictions_dir: Path | None = None,
                 teacher_dir: Path | None = None, consistency_weight: float = 1.0,
                 consistency_reach: int = CONSISTENCY_REACH) -> dict:
    """Today's network (member 0), the ensemble and the student, all trained without ``fold``,
    scored on it with every post-processing variant (the vote weighted as the model's stage weighs it,
    the windows the model declares). ``teacher_dir``: the ``predictions_dir`` of an
    earlier run on the same folds and pool, whose today's and ensemble's predictions and pool
    posteriors are reused (only the student trains)."""
    train, held = split_fold(examples, blocks, fold)
    started = time.time()
    tags = tag_set(train)
    kept = None if teacher_dir is None else read_teacher(teacher_dir / "teacher" / f"fold{fold}.npz", pool, tags)
    run = distil(train, pool, recipe, plan, embeddings_dir=embeddings_dir, teacher=kept)
    predicted = {"student": run.student.tagged(held)}
    if kept is None:
        predicted["today"] = run.members[0].tagged(held)
        predicted["ensemble"] = ensemble_tags(run.members, [w for w, _ in held])
        if predictions_dir is not None:
            write_teacher(predictions_dir / "teacher", fold, pool, run.posteriors, tags)
    else:
        for system in ("today", "ensemble"):
            saved = read_fold_predictions(teacher_dir / system / f"fold{fold}.json.gz")
            if saved["held_out"] != [blocks[fold].start, blocks[fold].stop]:
                raise CrossValidationError(f"{teacher_dir / system} holds another fold {fold}")
            predicted[system] = list(zip(saved["tags"], saved["confidence"], strict=True))
    scores = {}
    for system in SYSTEMS:
        if predictions_dir is not None:
            write_fold_predictions(predictions_dir / system, fold, blocks[fold], predicted[system])
        scores[system] = score_fold(train, held, blocks[fold], fold, predicted[system], abbreviation_reach,
                                    lexicons=recipe.lexicons, consistency_weight=consistency_weight,
                                    consistency_reach=consistency_reach)
    entities = sum(t.startswith("B-") for _, ts in run.silver for t in ts)
    return {"fold": fold, "held_out": [blocks[fold].start, blocks[fold].stop], "train_sentences": len(train),
            "silver_sentences": len(run.silver), "silver_entities": entities, "teacher_reused": kept is not None,
            "systems": scores, "seconds": round(time.time() - started, 1)}


def distill_cv(corpus: str | None, model_dir: Path, plan: Plan, *, k: int = 5, jobs: int = 1,
               folds: Sequence[int] | None = None, epochs: int | None = None, shared: Path | None = None,
               embeddings_dir: Path | None = None, predictions_dir: Path | None = None,
               teacher_dir: Path | None = None) -> dict:
    """The distillation CV report (module doc): per fold and in summary, each system's F1 under the
    network alone, abbreviations, and the model's default steps, with paired gains over today's."""
    if ModelMeta.load(model_dir).raw.get("kind") == "brat":
        raise CrossValidationError("distillation CV is for the biomedical CoNLL models")
    corpus, examples = cv_examples(corpus, model_dir=model_dir, shared=shared)
    blocks = fold_blocks(len(examples), k)
    recipe = Recipe.of_model(model_dir, epochs=epochs)
    default = stage_variant(ModelMeta.load(model_dir).raw)
    weight = consistency_entity_weight(ModelMeta.load(model_dir).raw)
    reach = conll_reach(model_dir)
    pool = silver_pool(corpus, plan, shared=shared)
    jobs_args = [(examples, blocks, f, recipe, plan, pool,
                  dict(embeddings_dir=embeddings_dir, predictions_dir=predictions_dir, teacher_dir=teacher_dir,
                       consistency_weight=weight, abbreviation_reach=reach.abbreviations,
                       consistency_reach=reach.consistency))
                 for f in chosen_folds(k, folds)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as workers:
            results = list(workers.map(_distill_job, jobs_args))
    else:
        results = [_distill_job(a) for a in jobs_args]
    return {"corpus": corpus, "recipe_of": model_dir.name, "k": k, "sentences": len(examples), "plan": asdict(plan),
            "recipe": {"epochs": recipe.epochs, "network": recipe.network, "lr": recipe.lr,
                       "batch_pieces": recipe.batch_pieces},
            **lexicon_record(recipe.lexicons), "model_default_variant": default, CONSISTENCY_WEIGHT: weight,
            "abbreviation_reach": reach.abbreviations, "consistency_reach": reach.consistency,
            "folds": results,
            "summary": summarise_systems(results, ("network", "abbreviations", default))}


def _distill_job(job: tuple) -> dict:
    examples, blocks, fold, recipe, plan, pool, options = job
    return distill_fold(examples, blocks, fold, recipe, plan, pool, **options)


def summarise_systems(folds: Sequence[dict], variants: Sequence[str]) -> dict:
    """For each variant and system: F1 mean ± sd over the folds and the paired gain over today's."""
    out: dict = {}
    for variant in dict.fromkeys(variants):
        rows = {}
        for system in SYSTEMS:
            f1 = [f["systems"][system]["variants"][variant]["f1"] for f in folds]
            today = [f["systems"]["today"]["variants"][variant]["f1"] for f in folds]
            rows[system] = {"f1": spread(f1), "gain": spread([a - b for a, b in zip(f1, today)]),
                            "folds_gaining": sum(a > b for a, b in zip(f1, today))}
        out[variant] = rows
    return out


def format_distill_cv(report: dict) -> str:
    plan = report["plan"]
    lines = [f"{report['k']}-fold distillation CV of {report['recipe_of']}'s recipe on {report['corpus']} "
             f"train+devel ({report['sentences']} sentences; {plan['members']} members, {plan['silver']} silver "
             f"sentences with {plan['labels']} labels, {plan['ratio']:g} silver per gold sentence each epoch; "
             + (f"a student of {plan['student_hidden']} LSTM units; " if plan.get("student_hidden") else "")
             + f"folds "
             f"{', '.join(str(f['fold']) for f in report['folds'])})",
             f"{'post-processing':<40} {'system':<9} {'F1 mean ± sd':>15} {'gain vs today':>16} {'folds up':>9}"]
    for variant, rows in report["summary"].items():
        for system, row in rows.items():
            lines.append(f"{variant:<40} {system:<9} {100 * row['f1']['mean']:7.2f} ± {100 * row['f1']['sd']:5.2f} "
                         f"{100 * row['gain']['mean']:+9.2f} ± {100 * row['gain']['sd']:4.2f} "
                         f"{row['folds_gaining']:>5}/{len(report['folds'])}")
    seconds = statistics.fmean(f["seconds"] for f in report["folds"])
    reused = all(f.get("teacher_reused") for f in report["folds"])
    work = "the student alone: a kept teacher" if reused else "members, labelling, student"
    lines.append(f"mean {seconds:.0f} s per fold ({work})")
    return "\n".join(lines)


def train_student(model_dir: Path, plan: Plan, *, out_dir: Path, shared: Path | None = None,
                  embeddings_dir: Path | None = None, models: Path | None = None,
                  artifacts: Path | None = None) -> dict:
    """Distil the recipe of the biomedical model in ``model_dir`` into one student on the data that
    model trained on (train; train+devel for a refit), export it to ``out_dir`` and finish it
    (devel scores, int8 when F1 holds, speed, card). When devel is held out (not a refit), model.json's
    ``distillation`` also keeps the strict devel F1 of member 0 (today's recipe), of the ensemble and
    of the student, network alone. Returns the training record."""
    from clinlake.pipelines.training.cards import models_readme
    from clinlake.pipelines.training.ner.export import export, finish
    from clinlake.pipelines.training.ner.embeddings import default_embeddings_dir
    from clinlake.pipelines.training.ner.loop import save_torch_state, strict_f1
    from clinlake.pipelines.training.ner.corpus import load_split
    from clinlake.pipelines.resources import models_dir

    meta = ModelMeta.load(model_dir).raw
    if meta.get("kind") == "brat":
        raise CrossValidationError("distillation is for the biomedical CoNLL models")
    corpus, refit = meta["corpus"], bool(meta["training"].get("refit_on_devel"))
    train, devel = load_split(corpus, "train", shared=shared), load_split(corpus, "devel", shared=shared)
    recipe = Recipe.of_model(model_dir)
    embeddings_dir = embeddings_dir or default_embeddings_dir()
    run = distil(train + devel if refit else train, silver_pool(corpus, plan, shared=shared), recipe, plan,
                 embeddings_dir=embeddings_dir)
    members, student, silver = run.members, run.student, run.silver
    record = {**asdict(plan), "seeds": [SEED + m for m in range(plan.members)], "source": str(UNLABELLED),
              "member_hidden": recipe.network.get("hidden"),
              "silver_sentences": len(silver),
              "silver_entities": sum(t.startswith("B-") for _, tags in silver for t in tags)}
    if not refit:
        tagged = {"today": members[0].tagged(devel), "ensemble": ensemble_tags(members, [w for w, _ in devel]),
                  "student": student.tagged(devel)}
        record["devel_f1_network_alone"] = {system: round(strict_f1(devel, [t for t, _ in out]), 4)
                                            for system, out in tagged.items()}
    # fit() marks a run without devel sets as a refit; the student's data are the model's own
    info = {"corpus": corpus, **(student.record or {}), "refit_on_devel": refit, "distillation": record}
    export(student.net, student.crf, name=meta["name"], corpus=corpus, tags=student.tags, chars=student.chars,
           out_dir=out_dir, info=info, sample=devel[:64], embeddings=student.embeddings, embeddings_dir=embeddings_dir,
           artifacts=artifacts)
    save_torch_state(out_dir, student.net, student.crf, student.chars, student.tags,
                     plan.student_recipe(recipe).network,
                     artifacts=artifacts)
    finish(out_dir, shared=shared, artifacts=artifacts)
    models = models_dir() if models is None else models
    if out_dir.parent == models:
        (models / "README.md").write_text(models_readme(models), encoding="utf-8")
    return info

"""Model cards and ``models/README.md``: the Markdown written from a model's ``model.json``
(devel scores, quantisation, training record), for the biomedical NER models
(:func:`ner_model_card`); the clinical models' cards are in :mod:`clinlake.pipelines.training.clinical_card`.

Plain text from plain data: nothing here trains or imports torch, so the cards can be rewritten
(``clinlake train card --card-only``) and checked against the shipped ones cheaply.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clinlake.pipelines.engine.ner.metadata import CONSISTENCY_WEIGHT, read_meta
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH
from clinlake.pipelines.evaluation.ner_variants import ConllReach
from clinlake.pipelines.resources import models_dir
from clinlake.pipelines.training.cv_card import (chosen_variant, cv_card_lines, cv_cell, document_level_choice,
                                                 scored_reach)
from clinlake.pipelines.training.ner.network import NETWORK_OPTIONS

# ----------------------------------------------------------------------------- biomedical NER models

PUBLISHED_F1 = {"NCBI-disease": 89.13, "BC5CDR": 89.73, "AnatEM": 89.13, "BioNLP13CG": 85.58, "LINNAEUS": 86.26}
NER_LICENCES = {  # of the training data, as redistributed by MTL-Bioinformatics-2016 (Crichton et al. 2017)
    "NCBI-disease": "NCBI disease corpus (Doğan et al. 2014), released by NCBI as a public resource, free to use",
    "BC5CDR": "BioCreative V CDR corpus (Li et al. 2016), freely available for research use",
    "AnatEM": "AnatEM (Pyysalo & Ananiadou 2014), CC BY-SA 3.0",
    "BioNLP13CG": "BioNLP Shared Task 2013 Cancer Genetics (Pyysalo et al. 2015), CC BY-SA 3.0",
    "LINNAEUS": "LINNAEUS (Gerner et al. 2010), CC BY 3.0",
}


def _vector_size(embeddings_dir: Path) -> int:
    return int(np.load(embeddings_dir / "vectors.npy", mmap_mode="r").shape[1])


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def _score_rows(result: dict) -> list[str]:
    rows = [("**overall**", result["overall"]), *result["per_type"].items()]
    return [f"| {name} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {100 * r['f1']:.2f} | "
            f"{r['gold']} |" for name, r in rows]


TRAINING_FLAGS = (("max_epochs", "--epochs", 40), ("patience", "--patience", 5))  # record key, flag, default


def training_flags(training: dict) -> str:
    """The command-line flags that repeat a training record's options, defaults left out (the
    word vector size is not one: it comes from the shared embeddings)."""
    network = training.get("network") or {}
    flags = "".join(f" --{key.replace('_', '-')} {value}" for key, value in network.items() if key in NETWORK_OPTIONS)
    flags += "".join(f" {flag} {training[key]}" for key, flag, default in TRAINING_FLAGS
                     if training.get(key, default) != default)
    flags += " --gazetteer-features" if training.get("gazetteer_features") else ""
    flags += f" --refit-epochs {training['refit_epochs']}" if training.get("refit_epochs") else ""
    return flags + (" --refit" if training.get("refit_on_devel") else "")


def _channels_text(training: dict) -> str:
    """The architecture line's words for a network trained with gazetteer channels (else nothing)."""
    channels = training.get("gazetteer_features")
    if not channels:
        return ""
    return (f" + gazetteer channels ({2 * len(channels['labels'])}: begins / continues a match of each type's "
            f"terms, {channels['terms']:,} entity strings of the training data tagged with one type in at least "
            f"{channels['min_precision']:.0%} of their occurrences"
            + "".join(f" (the count includes the names of `{lexicon['file']}` as {lexicon['label']})"
                      for lexicon in channels.get("lexicons") or ()) +
            ", shipped as `gazetteer_features.tsv`; the "
            f"training sentences' channels jackknifed over {channels['jackknife_parts']} parts)")


def devel_estimate(meta: dict) -> dict:
    """The held-out devel scores of a model: its own, or, when the shipped model was refit on
    train+devel (its own devel scores saw the data), those of the train-only selection run."""
    selection = meta["training"].get("selection")
    return selection["dev"] if selection else meta["dev"]


def ner_model_card(model_dir: Path, meta: dict) -> str:
    """MODEL_CARD.md of a biomedical NER model (trained on a CoNLL corpus)."""
    corpus, training, dev = meta["corpus"], meta["training"], devel_estimate(meta)
    selection = training.get("selection")
    network = training.get("network") or {}
    f1 = 100 * dev["tokens"]["overall"]["f1"]
    target = PUBLISHED_F1[corpus]
    verdict = ("at or above" if f1 >= target else f"**{target - f1:.2f} points below**")
    quant = meta["quantization"]
    precision = weights_precision(quant)
    embeddings = (model_dir / meta["embeddings"]).resolve()
    reach = ConllReach.of_meta(meta)  # the windows its evaluation declares for a CoNLL file
    lines = [
        f"# {meta['name']} — {corpus} NER (BiLSTM-CNN-Char-CRF, ONNX)",
        "",
        f"Version `{meta['version']}` · labels: {', '.join(meta['labels'])}",
        "",
        "## Data and licence",
        *(_refit_lines(corpus, training, meta["dev"]) if selection else distillation_lines(corpus, training)
          if training.get("distillation") else [
            f"- Trained on the **train** split of {corpus} (`../shared/data/ner/{corpus}/train.tsv`, "
            f"{training['train_sentences']} sentences); epochs selected by strict entity F1 on **devel**. "
            "Not refit on train+devel (whether a refit pays for a corpus was checked on devel halves: the README's "
            "\"When a refit pays\"). The test split was never used."]),
        f"- Licence of the training corpus: {NER_LICENCES[corpus]}. Redistributed by the MTL-Bioinformatics-2016 "
        "collection (Crichton et al. 2017) under the original licence; check it before commercial use.",
        f"- Word vectors (shared by all models, `models/embeddings/`): fastText skip-gram, {_vector_size(embeddings)}-d, "
        "15 epochs, trained here (`clinlake train embeddings`) on `../shared/data/corpus/biomedical_sentences.txt`, "
        "`health_text.txt` (test sentences removed upstream) and the words of the five NER train splits "
        "(no labels). `biomedical_sentences.txt` also holds nearly all devel sentences of the five corpora, "
        "unlabelled, so the vectors have seen devel text but no test text, and devel F1 leans optimistic (the "
        "README's \"Devel text in the word vectors\"). Every devel word is in the shipped vocabulary, with a "
        "vector composed from its character n-grams where fastText never saw it.",
        "",
        "## Architecture",
        f"Frozen shared fastText vectors (fp16) + character CNN (25-d, {network.get('char_filters', 50)} filters, "
        f"width 3) + casing embedding (8-d){_channels_text(training)} → dropout {network.get('dropout', 0.5)} "
        "→ BiLSTM "
        f"2×{network.get('hidden', 150)} → linear → linear-chain CRF with IOB2 constraints, NumPy Viterbi. "
        "Tokens are the pipeline tokenizer's tokens split into corpus-style pieces (letter/digit runs, single "
        "other characters). Entity confidence = mean CRF marginal probability of the chosen tags.",
        f"Weights: {precision} ({quant.get('tried')} tried: devel F1 fp32 "
        f"{100 * quant.get('dev_f1_fp32', 0):.2f}, int8 {100 * quant.get('dev_f1_int8', 0):.2f}"
        + ("; devel is in the refit's training data, so this checks only that int8 keeps its outputs)."
           if selection else ").")
        + (" Dynamic quantisation scales activations per onnxruntime batch, so a sentence's scores shift slightly "
           "with the sentences batched with it (on the five devel sets, network batches of 512 to 4,096 pieces "
           "moved F1 by at most 0.16)." if quant.get("kept") and not _bounded(quant) else "") + served_note(quant),
        "",
        "## Devel scores (strict, entity level, conlleval semantics)",
        f"Overall F1 **{f1:.2f}** vs the published Spark NLP *test* F1 {target:.2f}: {verdict}. "
        + (f"{training['max_epochs']} epochs, the recipe's selected count (nothing selected on devel), one CPU "
           "thread on a shared machine." if training.get("distillation") else
           f"Best epoch {(selection or training)['best_epoch']} of {len((selection or training)['history'])} "
           f"(early stopping with patience {training.get('patience', 5)} "
           f"or the {training['max_minutes']:g}-minute wall-clock cap, one CPU thread on a shared machine).")
        + (" These are the train-only selection model's scores (held out); the shipped refit has seen devel."
           if selection else ""),
        *([] if f1 >= target else [
            "",
            f"Why below: the word vectors are frozen {_vector_size(embeddings)}-d fastText vectors trained on ~8M "
            "tokens of shared text "
            "(the paper used embeddings trained on far larger biomedical corpora), training had minutes of one "
            "CPU core. Devel and test F1 also differ.",
        ]),
        "",
        "| type | P | R | F1 | gold entities |",
        "|---|---|---|---|---|",
        *_score_rows(dev["tokens"]),
        "",
        f"Raw text through clinlake's own sentence splitter and tokenizer (corpus tokens joined by spaces): "
        f"F1 {100 * dev['raw_text']['overall']['f1']:.2f} "
        f"(P {100 * dev['raw_text']['overall']['precision']:.2f}, R {100 * dev['raw_text']['overall']['recall']:.2f}).",
        *_abbreviation_lines(dev),
        *cv_card_lines(corpus, meta.get("cv")),
        "",
        "## Size and speed",
        f"- `model.onnx` {size_mb(model_dir / 'model.onnx'):.1f} MB, `model.json` "
        f"{size_mb(model_dir / 'model.json'):.2f} MB; shared embeddings "
        f"{sum(size_mb(p) for p in embeddings.iterdir()):.1f} MB (counted once for all models).",
        f"- {meta['speed_pieces_per_s_1_thread']:,} tokens/s on one core (onnxruntime, 1 thread, end to end: features, "
        "network, Viterbi and marginals; measured on a shared machine, so a lower bound). "
        "`benchmarks/ner_speed.py` compares onnxruntime with PyTorch.",
        "",
        "## Retrain",
        "```bash",
        retrain_command(corpus, meta["name"], training),
        "```",
        f"(`pip install -e '.[train]'`; seed {training['seed']}; writes `models/{meta['name']}/`, evaluates on devel, "
        "quantises if F1 holds and rewrites this card.) Score any token<TAB>tag file with "
        f"`clinlake evaluate ner --model {meta['name']} --conll FILE --predictions OUT.tsv`: its first score "
        "(and the predictions) come after the document-level steps this model's NER stage runs by default, as "
        f"the pipeline runs it (over {reach.consistency} neighbouring sentences either side for "
        f"the vote, {reach.abbreviations} after a definition"
        + (f"; its gazetteer was learned from {meta['gazetteer']['learned_from']}, so that score is optimistic on "
           "those files" if (meta.get("gazetteer") or {}).get("learned_from") else "")
        + "), then the scores with abbreviation propagation alone and of the model alone.",
        "",
        *(["Selection run history (epoch, mean loss, devel F1): "
           + ", ".join(f"{h['epoch']}: {h['loss']:.2f} / {100 * h['dev_f1']:.2f}" for h in selection["history"]),
           "",
           "Refit history (epoch, mean loss on train+devel): "
           + ", ".join(f"{h['epoch']}: {h['loss']:.2f}" for h in training["history"])] if selection else [
            "Training history (epoch, mean loss, devel F1): "
            + ", ".join(f"{h['epoch']}: {h['loss']:.2f} / {100 * h['dev_f1']:.2f}" for h in training["history"])]
            if training["history"][0].get("dev_f1") is not None else [
            "Training history (epoch, mean loss): "
            + ", ".join(f"{h['epoch']}: {h['loss']:.2f}" for h in training["history"])]),
        "",
    ]
    return "\n".join(lines)


def _abbreviation_lines(dev: dict) -> list[str]:
    """Model-card lines on the abbreviation propagation the scores above include."""
    alone = dev.get("model_alone")
    if not alone:
        return []
    return [
        "",
        "These scores include document-level abbreviation propagation, as the pipeline's NER stage applies it "
        "within a note (`pipelines/engine/short_forms.py`): \"long form (SF)\" with the long form tagged makes SF "
        "an entity of its label from the definition on. The devel file marks no document boundaries, so a definition "
        f"reaches the {dev['abbreviation_reach']} sentences after it (`clinlake evaluate ner --abbreviation-reach`). "
        f"The model alone, sentence by sentence: F1 **{100 * alone['tokens']['overall']['f1']:.2f}** "
        f"(P {100 * alone['tokens']['overall']['precision']:.2f}, R {100 * alone['tokens']['overall']['recall']:.2f}); "
        f"raw text {100 * alone['raw_text']['overall']['f1']:.2f}.",
    ]


def retrain_command(corpus: str, name: str, training: dict) -> str:
    distillation = training.get("distillation")
    if distillation:
        return (f"clinlake train distill --model {name} --members {distillation['members']} "
                f"--silver {distillation['silver']} --ratio {distillation['ratio']:g} "
                f"--labels {distillation.get('labels', 'hard')}"
                + (f" --student-hidden {distillation['student_hidden']}" if distillation.get("student_hidden") else ""))
    return f"clinlake train ner --corpus {corpus} --name {name} --max-minutes {training['max_minutes']:g}" + \
        training_flags(training)


def _student_size(distillation: dict) -> str:
    hidden = distillation.get("student_hidden")
    if not hidden:
        return "of the same size"
    return f"smaller (an LSTM of {hidden} units per direction, the members' {distillation.get('member_hidden', '?')})"


def distillation_lines(corpus: str, training: dict) -> list[str]:
    """Model-card lines on the data of a student distilled from an ensemble (:mod:`.ner.distill`)."""
    d = training["distillation"]
    devel = d.get("devel_f1_network_alone")
    return [
        f"- **Distilled** (`clinlake train distill`): {d['members']} networks of the recipe (seeds "
        f"{', '.join(map(str, d['seeds']))}; seed 13's is the recipe's own model) trained on the **train** split of "
        f"{corpus}; their averaged CRF posteriors labelled {d['silver_sentences']:,} sentences "
        f"of `../shared/data/{d['source']}` ({d['silver_entities']:,} entities; none of {corpus}'s train or devel "
        f"sentences); this student, {_student_size(d)}, trained for {training['max_epochs']} epochs (the "
        f"recipe's selected count) on the {training['train_sentences']} train sentences plus {d['ratio']:g} silver "
        f"sentence{'' if d['ratio'] == 1 else 's'} per gold sentence in each epoch, drawn afresh, "
        + ("learning the ensemble's posteriors (cross-entropy with its own CRF posteriors)"
           if d.get("labels") == "soft" else "learning the ensemble's max-marginal tags (CRF likelihood)")
        + ". Devel was not used for training or selection; the test "
        "split was never used.",
        *([f"- Devel F1, network alone: today's recipe (seed 13) {100 * devel['today']:.2f}, the ensemble "
           f"{100 * devel['ensemble']:.2f}, this student {100 * devel['student']:.2f}. The cross-validated comparison "
           "is `clinlake evaluate distill-cv` (README)."] if devel else []),
    ]


def _refit_lines(corpus: str, training: dict, own_dev: dict) -> list[str]:
    """Model-card lines on the data of a model refit on train+devel."""
    selection = training["selection"]
    return [
        f"- Trained on the **train and devel** splits of {corpus} (`../shared/data/ner/{corpus}/`, "
        f"{training['train_sentences']} sentences) for {training['best_epoch']} epochs: the epoch count that a "
        f"train-only run (same seed and settings, {selection['train_sentences']} sentences) selected by strict "
        "entity F1 on devel. The devel scores below are that train-only model's, the held-out estimate; the "
        f"shipped model saw devel in training (its own devel F1, {100 * own_dev['tokens']['overall']['f1']:.2f}, "
        "estimates nothing). The test split was never used.",
    ]


def _window_note(step: str, reach: ConllReach) -> str:
    """A models/README.md cell's note of a CoNLL window other than the built-in one."""
    if reach.is_default():
        return ""
    if step == "label_consistency":
        return f"; ±{reach.consistency} sentences"
    return f"; {reach.abbreviations} sentences on" if step in ("propagate_abbreviations", "binomial_short_forms") else ""


def models_readme(models: Path | None = None) -> str:
    """models/README.md: every trained model with its devel F1 next to the published target
    (``models``: the models' folder, default the shipped ``models/``)."""
    models = models_dir() if models is None else models
    rows, train_only = [], []
    for name in BIOMEDICAL_MODELS:
        path = models / name / "model.json"
        if not path.exists():
            rows.append(f"| `{name}` | – | not trained | | | | | | |")
            continue
        meta = read_meta(path.parent)
        if "dev" not in meta:  # exported, not yet evaluated (a training run in progress)
            rows.append(f"| `{name}` | {meta['corpus']} | – | being trained | | | | |")
            continue
        dev, target = devel_estimate(meta), PUBLISHED_F1[meta["corpus"]]
        is_refit = bool(meta["training"].get("selection"))
        distilled = meta["training"].get("distillation")
        refit = (" (refit on train+devel)" if is_refit else
                 f" (distilled from {distilled['members']} networks)" if distilled else "")
        if not is_refit and not distilled:
            train_only.append(name)
        f1 = 100 * dev["tokens"]["overall"]["f1"]
        alone = dev.get("model_alone", dev)
        rows.append(f"| [`{name}`]({name}/MODEL_CARD.md){refit} | {meta['corpus']} | **{f1:.2f}** | "
                    f"{100 * alone['tokens']['overall']['f1']:.2f} | "
                    f"{100 * dev['raw_text']['overall']['f1']:.2f} | {cv_cell(meta.get('cv'))} | {target:.2f} | {f1 - target:+.2f} | "
                    f"{size_mb(models / name / 'model.onnx'):.1f} MB "
                    f"{short_precision(meta['quantization'])} |")
    embeddings = sum(size_mb(p) for p in (models / "embeddings").iterdir())
    train_only_note = "" if not train_only else (
        f"; {', '.join(f'`{n}`' for n in train_only)} ship{'s' if len(train_only) == 1 else ''} the train-only run")
    return "\n".join([
        "# Shipped NER models",
        "",
        "BiLSTM-CNN-Char-CRF taggers (Kocaman & Talby 2020 style) trained with `clinlake train ner` on the train "
        "splits under `../shared/data/ner/` (and devel, for a model refit on train+devel), exported to ONNX and "
        "served with onnxruntime "
        "(`pipelines/engine/ner/model.py`). Use them in a job config as `pipeline.ner: [{model: ncbi_disease}]`.",
        "",
        "Scores are **devel** strict entity-level F1 (conlleval semantics; `clinlake evaluate ner`). The target is the "
        "published Spark NLP **test** F1, so the comparison is indicative only: dev and test differ, and we never "
        "looked at test. *Raw text* = the devel tokens joined by spaces and re-tokenised by clinlake's own "
        "tokenizer, scored on the corpus tokens. A model *refit on train+devel* ships a network trained on both "
        "splits for the epoch count selected on devel; its row gives the devel scores of the train-only run that "
        "made that selection (the shipped model has seen devel). Whether a refit pays was checked on devel halves "
        f"(the README's \"When a refit pays\"){train_only_note}. A model *distilled* from an ensemble "
        "(`clinlake train distill`) is one network of the same size trained on the train split plus sentences of the "
        "shared unlabelled text labelled by several networks of its recipe; devel stays held out. *Devel F1* and *raw-text F1* include "
        "document-level abbreviation propagation (`pipelines/engine/short_forms.py`, the built-in default of an NER "
        "stage; each model's own defaults are chosen by CV, below: "
        "\"long form (SF)\" with the long form tagged makes SF an entity of its label from the definition on; a devel "
        f"file has no document boundaries, so a definition reaches the next {ABBREVIATION_REACH} sentences); "
        "*model alone* is the tagger sentence by sentence (`clinlake evaluate ner` prints both after its first score, "
        "which runs every document-level step the model's stage runs by default, with a gazetteer learned from "
        "train+devel: not an estimate on devel). *CV F1*: mean ± sd over k folds of train+devel "
        "(`clinlake evaluate cv`, each card's \"Cross-validated estimate\"; –: not run yet).",
        "",
        "| model | corpus | devel F1 | model alone | raw-text F1 | CV F1 | published test F1 | gap | model.onnx |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"All models share `embeddings/` (fastText {_vector_size(models / 'embeddings')}-d word vectors, fp16, "
        f"{embeddings:.1f} MB). "
        "Each directory holds `model.onnx`, `model.json` (tags, character map, CRF transitions, devel scores, "
        "version) and `MODEL_CARD.md`.",
        "",
        "Retrain one model (each card gives its own command), e.g. `clinlake train ner --corpus BC5CDR "
        "--name bc5cdr --max-minutes 25 --epochs 80 --patience 10 --refit` "
        "(needs `pip install -e '.[train]'`); rewrite cards and this table: `clinlake train card NAME ...`.",
        "",
        *clinical_models_section(models),
        *document_level_section(models),
    ])


def document_level_section(models: Path) -> list[str]:
    """models/README.md's table of each cross-validated model's document-level steps: the paired CV
    gain of each, and whether its stage runs it by default."""
    rows = []
    for name in (*BIOMEDICAL_MODELS, *CLINICAL_MODELS):
        path = models / name / "model.json"
        cv = read_meta(path.parent).get("cv") if path.exists() else None
        if not cv or not cv.get("variants"):
            continue
        cells = []
        for step, c in document_level_choice(cv).items():
            gain = "–" if c["mean_gain"] is None else f"{100 * c['mean_gain']:+.2f}"
            wins = sum(g > 0 for g in c["folds_gain"])
            weight = cv.get(CONSISTENCY_WEIGHT, 1.0) if step == "label_consistency" else 1.0
            window = _window_note(step, scored_reach(cv))
            cells.append(f"{'**on**' if c['on'] else 'off'} ({gain}, {wins}/{len(c['folds_gain'])}"
                         + (f"; tagged votes ×{weight:g}" if weight != 1.0 else "") + window + ")")
        default = chosen_variant(cv)
        with_steps = "–" if default is None else \
            f"{100 * cv['variants'][default]['f1']['mean']:.2f} ± {100 * cv['variants'][default]['f1']['sd']:.2f}"
        rows.append(f"| `{name}` | {100 * cv['f1']['mean']:.2f} ± {100 * cv['f1']['sd']:.2f} | " + " | ".join(cells)
                    + f" | {with_steps} |")
    if not rows:
        return []
    return [
        "## Document-level steps, chosen by cross-validation",
        "",
        "Each NER stage can run four steps over a whole note after tagging (README, \"How it works\"). For each "
        "cross-validated model, every step was scored on the same held-out predictions of every fold "
        "(`clinlake evaluate cv`); a cell gives whether the model's stage runs the step by default, its mean paired "
        "F1 gain (points; abbreviations against the network alone, each other step against the abbreviation "
        "choice alone) and the folds "
        "it gained on. A step is on only with a positive mean gain and more folds gaining than losing "
        "(`clinlake train card NAME --cv REPORT` writes the choice into model.json's `document_level`); a job "
        "config's stage options override it. *Tagged votes ×N*: the model's label consistency vote weighs a tagged "
        "occurrence's vote N times an untagged one's (model.json `document_level.consistency_entity_weight`, chosen "
        "by rescoring the same folds with `clinlake evaluate cv --rescore DIR --vote-weight N`). *CV F1, default "
        "steps*: the folds scored with the steps the model runs by default (chosen on the same folds, so slightly "
        "optimistic).",
        "",
        "| model | CV F1 (abbreviations) | abbreviations | label consistency | binomials | gazetteer | "
        "CV F1, default steps |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


CLINICAL_MODELS = ("clinical_core", "maccrobat", "ade")
BIOMEDICAL_MODELS = ("ncbi_disease", "bc5cdr", "anatem", "bionlp13cg", "linnaeus")


def clinical_models_section(models: Path) -> list[str]:
    """The clinical (BRAT-trained) models of models/README.md: document-level devel scores."""
    rows = []
    for name in CLINICAL_MODELS:
        path = models / name / "model.json"
        if not path.exists():
            continue
        meta = read_meta(path.parent)
        if "dev" not in meta:  # exported, not yet evaluated (a training run in progress)
            continue
        refit = " (refit on train+devel)" if meta["training"].get("selection") else ""
        for corpus, report in devel_estimate(meta).items():
            labels = ", ".join(meta["labels"]) if len(meta["labels"]) <= 4 else f"{len(meta['labels'])} types (see card)"
            rows.append(f"| [`{name}`]({name}/MODEL_CARD.md){refit} | {labels} | {corpus} | "
                        f"**{100 * report['strict']['micro']['f1']:.2f}** | {100 * report['lenient']['micro']['f1']:.2f} | "
                        f"{size_mb(models / name / 'model.onnx'):.1f} MB "
                        f"{short_precision(meta['quantization'])} |")
    if not rows:
        return []
    return [
        "## Clinical models (raw documents in, character offsets out)",
        "",
        "Trained with `clinlake train clinical` on the train documents of MACCROBAT, Chia or PHEE "
        "(`../shared/data/clinical/`) through clinlake's own sentence splitter and tokenizer; gold types mapped by "
        "the label maps in `conf/label_maps/`. Scores: `clinlake evaluate brat` on the **devel** documents, micro "
        "F1 over the mapped types, strict (exact offsets and type) and lenient (overlap and type). A model refit on "
        "train+devel ships a network trained on both splits for the epoch count selected on devel; its rows give "
        "the devel scores of the train-only run that made that selection.",
        "",
        "| model | labels | devel corpus | strict F1 | lenient F1 | model.onnx |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "`clinical_core` is the default NER stage of `conf/local.yaml`. Side by side with a spaCy NER pipeline trained "
        "on the same documents: `benchmarks/clinical_peers.py`.",
        "",
    ]


def _bounded(quant: dict) -> bool:
    """Serves the int8 LSTM with fixed activation ranges (pipelines/training/ner/lstm_int8.py)."""
    return bool(quant.get("kept") and quant.get("batch_invariant"))


def weights_precision(quant: dict) -> str:
    if _bounded(quant):
        return ("int8 LSTM (weights and activations; activation ranges fixed in the graph, so batch-invariant: "
                "`pipelines/training/ner/lstm_int8.py`), the rest fp32")
    if quant.get("served"):
        return f"{quant['served']} (int8 dynamic quantisation kept at training, since rewritten)"
    return "int8 (dynamic quantisation)" if quant.get("kept") else "fp32"


def short_precision(quant: dict) -> str:
    if _bounded(quant):
        return "int8 LSTM"
    return "fp32 (int8 weights)" if quant.get("served") else "int8" if quant.get("kept") else "fp32"


def served_note(quant: dict) -> str:
    if _bounded(quant):
        return (" Fixed ranges: the LSTM input is clipped to " + "[{:.3f}, {:.3f}]".format(*quant["input_range"])
                + " (the range its features can take) with two constant channels at the bounds, and two saturated "
                "hidden units pin each step's state range to [-1, 1], so onnxruntime's per-call scales are constants."
                + (f" Before: {quant['from']}." if quant.get("from") else ""))
    if not quant.get("served"):
        return ""
    return (" The int8 graph's dynamic quantisation scaled activations per onnxruntime call, so a sentence's tags "
            "depended on the sentences batched with it and the pipeline tagged each note alone; the served graph "
            "computes the same int8-rounded weights in fp32 (`clinlake train card --dequantize`), which is "
            "batch-invariant, so the pipeline tags the sentences of many notes together. model.json's `dev` holds "
            "the served graph's devel scores (a refit's train-only selection scores stay those of its int8 graph).")

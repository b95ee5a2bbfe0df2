"""What model.json, the model card and models/README.md show of a cross-validation of an NER model's
recipe (:mod:`clinlake.pipelines.training.ner.cv`, ``clinlake evaluate cv``): plain data to Markdown,
no training, so the cards render cheaply; and which document-level steps the NER stage runs by
default for the model (:func:`document_level_choice`)."""
from __future__ import annotations

from clinlake.pipelines.engine.ner.metadata import BUILT_IN_STEPS, CONSISTENCY_WEIGHT
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH
from clinlake.pipelines.evaluation.ner_variants import CONSISTENCY_REACH, VARIANT_STEP, ConllReach, variant_name
from clinlake.pipelines.training.ner.wordnet import LEXICON as WORDNET_ORGANISMS

DEFAULT = "abbreviations"  # the variant the paired gains are measured against (ner_variants.DEFAULT)


def model_record(report: dict, *, measured: str) -> dict:
    """What a model's model.json keeps of a CV report of its recipe (``measured``: the date)."""
    if not (report.get("recipe") or {}).get("epochs"):
        # a --rescore report knows the predictions, not how the networks that made them were trained
        raise ValueError("the CV report names no training recipe (a --rescore report): copy the \"recipe\" of "
                         "the run that kept its predictions into it")
    record = {"k": report["k"], "sentences": report["sentences"], "epochs": report["recipe"]["epochs"],
              "abbreviation_reach": report["abbreviation_reach"], "f1": report["f1"],
              "model_alone_f1": report["model_alone_f1"], "folds_f1": [f["f1"] for f in report["folds"]],
              "measured": measured}
    if report.get("variants"):
        record["variants"] = {name: {"f1": v["f1"], "gain": v["gain"],
                                     "folds_gain": [round(f["variants"][name]["f1"] - f["variants"][DEFAULT]["f1"], 4)
                                                    for f in report["folds"]]}
                              for name, v in report["variants"].items()}
    if report.get("gazetteer_lexicons"):  # the gazetteer variant's open vocabularies
        record["gazetteer_lexicons"] = report["gazetteer_lexicons"]
    if report.get(CONSISTENCY_WEIGHT, 1.0) != 1.0:  # the weight the consistency variants were scored with
        record[CONSISTENCY_WEIGHT] = report[CONSISTENCY_WEIGHT]
    if report.get("consistency_reach", CONSISTENCY_REACH) != CONSISTENCY_REACH:  # the vote's window, where declared
        record["consistency_reach"] = report["consistency_reach"]
    return record


def scored_reach(cv: dict) -> ConllReach:
    """The CoNLL windows a CV record was scored with (older records: the built-in ones)."""
    return ConllReach(abbreviations=cv.get("abbreviation_reach", ABBREVIATION_REACH),
                      consistency=cv.get("consistency_reach", CONSISTENCY_REACH))


def step_gains(variants: dict, with_it: str, without: str) -> list[float]:
    """Per fold, the F1 a step adds: variant ``with_it`` minus variant ``without``."""
    return [round(a - b, 4) for a, b in zip(variants[with_it]["folds_gain"], variants[without]["folds_gain"])]


def wins(gains: list[float]) -> bool:
    """A step is on by default only where it wins by CV: a positive mean paired gain, and more folds
    gaining than losing (a mean carried by one fold does not count)."""
    return sum(gains) > 0 and sum(g > 0 for g in gains) > sum(g < 0 for g in gains)


def chosen_variant(cv: dict) -> str | None:
    """The variant the model's stage runs by default (its chosen steps), when the CV scored it."""
    name = variant_name(VARIANT_STEP[step] for step, c in document_level_choice(cv).items() if c["on"])
    return name if name in (cv.get("variants") or {}) else None


def document_level_choice(cv: dict) -> dict:
    """The NER stage's default for each document-level step of this model, decided in the stage's
    order: abbreviations against the network alone; then each other step added to that choice
    against that choice alone (so with abbreviations off, the vote is judged without them). A step is
    on where it wins by CV (:func:`wins`); a step the record did not score keeps its built-in default."""
    variants = cv.get("variants") or {}
    choice: dict[str, dict] = {}

    def decide(step: str, with_it: str, without: str) -> None:
        if with_it in variants and without in variants:
            gains = step_gains(variants, with_it, without)
            choice[step] = {"on": wins(gains), "mean_gain": round(sum(gains) / len(gains), 4), "folds_gain": gains}
        else:
            choice[step] = {"on": BUILT_IN_STEPS[step], "mean_gain": None, "folds_gain": []}

    decide("propagate_abbreviations", "abbreviations", "network")
    base = {"abbreviations"} if choice["propagate_abbreviations"]["on"] else set()
    for step in BUILT_IN_STEPS:
        if step != "propagate_abbreviations":
            decide(step, variant_name(base | {VARIANT_STEP[step]}), variant_name(base))
    return {step: choice[step] for step in BUILT_IN_STEPS}


def cv_cell(cv: dict | None) -> str:
    """The CV column of models/README.md."""
    return "–" if not cv else f"{100 * cv['f1']['mean']:.2f} ± {100 * cv['f1']['sd']:.2f}"


def cv_card_lines(corpus: str, cv: dict | None, *, command: str | None = None, unit: str = "sentences") -> list[str]:
    """The model card's cross-validation section (nothing before the recipe was cross-validated)."""
    if not cv:
        return []
    command = command or f"clinlake evaluate cv --corpus {corpus}"
    return ["", "## Cross-validated estimate",
            f"{cv['k']}-fold cross-validation of this recipe on {corpus} train+devel (`{command}`; "
            f"{cv['sentences']:,} {unit} in {cv['k']} contiguous blocks; each fold a fresh network "
            f"trained {cv['epochs']} epochs on the other blocks with the same settings and seed, nothing selected on "
            f"the held-out block): strict F1 **{100 * cv['f1']['mean']:.2f} ± {100 * cv['f1']['sd']:.2f}** (mean ± "
            f"sample sd over folds, abbreviation reach {cv['abbreviation_reach']}"
            + (f", vote reach {cv['consistency_reach']} sentences either side" if "consistency_reach" in cv else "")
            + "; network alone "
            f"{100 * cv['model_alone_f1']['mean']:.2f} ± {100 * cv['model_alone_f1']['sd']:.2f}). Per fold: "
            + ", ".join(f"{100 * f:.2f}" for f in cv["folds_f1"]) + f". Measured {cv['measured']}. The devel F1 "
            "above is one split, which also chose the epoch count; compare variants on this figure.",
            *_variant_lines(cv)]


def _lexicon_source(file: str) -> str:
    """Where a gazetteer lexicon's names come from, for the card."""
    if file == WORDNET_ORGANISMS:
        return ("The names come from WordNet 3.1 (Princeton University, WordNet licence: free use, copy and "
                "distribution with its notice, which the lexicon file carries; `clinlake train wordnet`): the "
                "multi-word lemmas of organisms, persons excluded (`pipelines/training/ner/wordnet.py`).")
    return "The lexicon file's header names its source and licence."


def _variant_lines(cv: dict) -> list[str]:
    """The card's table of document-level variants scored on the same held-out predictions."""
    variants = cv.get("variants")
    if not variants:
        return []
    choice = document_level_choice(cv)
    weight = cv.get(CONSISTENCY_WEIGHT, 1.0)
    vote = ("" if weight == 1.0 else f"; the label consistency vote weighing a tagged occurrence's vote {weight:g} "
            "times, model.json `document_level.consistency_entity_weight`, chosen on these folds")
    reach = scored_reach(cv)
    if not reach.is_default():
        vote += (f"; a definition or binomial reaching {reach.abbreviations} sentences after it and the vote "
                 f"{reach.consistency} either side, model.json `document_level.conll_reach`, chosen on these folds")
    lines = ["", "Document-level steps scored on the same held-out predictions of every fold (paired: the "
             f"gain is the variant's F1 minus `{DEFAULT}`'s, fold by fold{vote}):", "",
             "| variant | CV F1 | paired gain | folds gaining / losing |", "|---|---|---|---|"]
    for name, v in variants.items():
        gains = v["folds_gain"]
        lines.append(f"| {name} | {100 * v['f1']['mean']:.2f} ± {100 * v['f1']['sd']:.2f} | "
                     f"{100 * v['gain']['mean']:+.2f} ± {100 * v['gain']['sd']:.2f} | "
                     f"{sum(g > 0 for g in gains)} / {sum(g < 0 for g in gains)} |")
    lines += ["", "The NER stage runs a step by default for this model only where it wins by this CV (positive "
              "mean paired gain, more folds gaining than losing), decided in the stage's order: abbreviations "
              "against the network alone, each other step added to that choice against that choice alone; a job "
              "config's stage options override: "
              + "; ".join(f"`{step}: {'true' if c['on'] else 'false'}`"
                          + (f" ({100 * c['mean_gain']:+.2f})" if c["mean_gain"] is not None else " (not measured)")
                          for step, c in choice.items()) + "."]
    default = chosen_variant(cv)
    if default is not None:
        v = variants[default]
        lines += ["", f"With those defaults (`{default}`) the CV F1 is **{100 * v['f1']['mean']:.2f} ± "
                  f"{100 * v['f1']['sd']:.2f}** (the steps were chosen on these same folds, so this figure leans "
                  "slightly optimistic)."]
    if choice["gazetteer"]["on"]:
        lines += ["", "The gazetteer ships as `gazetteer.tsv` beside the model: the entity strings the corpus's "
                  "annotators tagged with one label in at least 90 % of their occurrences in train+devel (and at "
                  "least twice), with that share as each match's confidence (`pipelines/engine/gazetteer.py`). "
                  "It is derived from the corpus's annotations, under the corpus's licence (above)."]
        for lexicon in cv.get("gazetteer_lexicons") or ():
            lines += ["", f"The gazetteer (in CV and as shipped) also holds the {lexicon['names']:,} names of "
                      f"`{lexicon['file']}` as {lexicon['label']}, in their plural and hyphenated forms, except names "
                      "the corpus's annotators left untagged in more than half of their occurrences in the training "
                      "text; a name the training text never shows matches with confidence 0.5 "
                      "(`pipelines/training/ner/gazetteer.py`). " + _lexicon_source(lexicon["file"])]
    return lines

"""What model.json, the model card and models/README.md show of a cross-validation of a biomedical
NER model's recipe (:mod:`clinlake.pipelines.training.ner.cv`, ``clinlake evaluate cv``): plain data to
Markdown, no training, so the cards render cheaply."""
from __future__ import annotations


def model_record(report: dict, *, measured: str) -> dict:
    """What a model's model.json keeps of a CV report of its recipe (``measured``: the date)."""
    return {"k": report["k"], "sentences": report["sentences"], "epochs": report["recipe"]["epochs"],
            "abbreviation_reach": report["abbreviation_reach"], "f1": report["f1"],
            "model_alone_f1": report["model_alone_f1"], "folds_f1": [f["f1"] for f in report["folds"]],
            "measured": measured}


def cv_cell(cv: dict | None) -> str:
    """The CV column of models/README.md."""
    return "–" if not cv else f"{100 * cv['f1']['mean']:.2f} ± {100 * cv['f1']['sd']:.2f}"


def cv_card_lines(corpus: str, cv: dict | None) -> list[str]:
    """The model card's cross-validation section (nothing before the recipe was cross-validated)."""
    if not cv:
        return []
    return ["", "## Cross-validated estimate",
            f"{cv['k']}-fold cross-validation of this recipe on {corpus} train+devel (`clinlake evaluate cv --corpus "
            f"{corpus}`; {cv['sentences']:,} sentences in {cv['k']} contiguous blocks; each fold a fresh network "
            f"trained {cv['epochs']} epochs on the other blocks with the same settings and seed, nothing selected on "
            f"the held-out block): strict F1 **{100 * cv['f1']['mean']:.2f} ± {100 * cv['f1']['sd']:.2f}** (mean ± "
            f"sample sd over folds, abbreviation reach {cv['abbreviation_reach']}; network alone "
            f"{100 * cv['model_alone_f1']['mean']:.2f} ± {100 * cv['model_alone_f1']['sd']:.2f}). Per fold: "
            + ", ".join(f"{100 * f:.2f}" for f in cv["folds_f1"]) + f". Measured {cv['measured']}. The devel F1 "
            "above is one split, which also chose the epoch count; compare variants on this figure."]

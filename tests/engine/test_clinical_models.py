"""The shipped clinical NER models tag hand-written notes (raw text in, exact offsets out)."""
from __future__ import annotations

import json

import pytest

from clinlake.pipelines.config import load_config
from clinlake.pipelines.resources import package_resource
from clinlake.pipelines.engine.pipeline import Pipeline

CASE = ("A 45-year-old man presented with fever and abdominal pain for 3 days. He was treated with oral "
        "amoxicillin 500 mg three times daily. Blood tests showed a white cell count of 15,000/mm3.")
NOTE = ("HISTORY OF PRESENT ILLNESS: The patient denies chest pain. CT of the abdomen showed appendicitis.\n"
        "PLAN: She was started on ceftriaxone 1 g IV daily.")


def model_only(name: str) -> Pipeline:
    return Pipeline.from_config(load_config(overrides={"pipeline.ner": [{"model": name}], "pipeline.dictionary": []}))


def found(pipeline: Pipeline, text: str) -> dict[tuple[str, str], object]:
    entities = pipeline.annotate(text)
    for e in entities:
        assert text[e.start:e.end] == e.text and 0.0 <= e.confidence <= 1.0
    return {(e.text, e.label): e for e in entities}


def test_clinical_core_is_the_default_and_tags_a_note(pipeline):
    entities = found(pipeline, NOTE)
    assert ("pain", "PROBLEM") in entities  # MACCROBAT convention: the body site is not part of the finding
    assert entities[("pain", "PROBLEM")].assertion.assertion == "absent"
    assert entities[("pain", "PROBLEM")].source.startswith("clinical_core@")
    assert entities[("CT", "TEST")].start == NOTE.index("CT of")
    assert entities[("appendicitis", "PROBLEM")].assertion.assertion == "present"
    assert entities[("ceftriaxone", "TREATMENT")].section == "plan"
    assert {label for _, label in entities} == {"PROBLEM", "TEST", "TREATMENT"}


def test_maccrobat_tags_a_case_report_with_its_own_types():
    entities = found(model_only("maccrobat"), CASE)
    expected = {("45-year-old", "Age"), ("man", "Sex"), ("fever", "Sign_symptom"), ("abdominal", "Biological_structure"),
                ("pain", "Sign_symptom"), ("3 days", "Duration"), ("amoxicillin", "Medication"),
                ("white cell count", "Diagnostic_procedure"), ("15,000/mm3", "Lab_value")}
    assert expected <= set(entities)
    assert entities[("15,000/mm3", "Lab_value")].end == CASE.index("15,000/mm3") + len("15,000/mm3")


def test_ade_tags_drug_indication_and_adverse_effect():
    text = "She was given amoxicillin for otitis media and developed a maculopapular rash."
    entities = found(model_only("ade"), text)
    assert {key for key in entities if key[1] != "ADVERSE_EFFECT"} == {("amoxicillin", "DRUG"),
                                                                       ("otitis media", "INDICATION")}
    assert entities[("amoxicillin", "DRUG")].start == text.index("amoxicillin")
    # One adverse effect, ending at "rash"; the model may take the article in (74 of PHEE's 2,725
    # train adverse effects start with one), so the span is checked by its end and its head.
    (effect,) = [e for key, e in entities.items() if key[1] == "ADVERSE_EFFECT"]
    assert effect.text in ("maculopapular rash", "a maculopapular rash") and effect.end == text.index(".")


@pytest.mark.parametrize("name", ["clinical_core", "maccrobat", "ade"])
def test_clinical_model_cards_report_document_level_devel_scores(name):
    model_dir = package_resource(f"models/{name}")
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "brat"
    card = (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    training = meta["training"]
    # A model refit on train+devel has seen devel: the card's scores are its train-only selection run's.
    held_out = training["selection"]["dev"] if training["refit_on_devel"] else meta["dev"]
    assert set(held_out) == set(meta["label_maps"])
    for corpus, report in held_out.items():
        strict = 100 * report["strict"]["micro"]["f1"]
        assert f"Strict micro F1 **{strict:.2f}**" in card
        assert strict > 55.0, (corpus, strict)  # far above the lexicon baseline (~49 strict)
    if training["refit_on_devel"]:
        selection = training["selection"]
        assert selection["train_sentences"] < training["train_sentences"]
        assert selection["best_epoch"] == training["best_epoch"] == len(training["history"])
        assert "train+devel" in card and "--refit" in card
        own = ", ".join(f"{c} {100 * r['strict']['micro']['f1']:.2f}" for c, r in meta["dev"].items())
        assert f"its own devel strict F1, {own}, estimates nothing" in card  # seen data, flagged as such
    assert meta["version"] in card

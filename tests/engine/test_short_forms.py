"""Document-level abbreviation propagation: definitions, propagation rules, the NER stage and evaluation."""
from __future__ import annotations

import pytest

from clinlake.pipelines.engine.short_forms import definitions, long_form_length, propagate


def words(text: str) -> list[str]:
    return text.split()


def test_schwartz_hearst_long_forms():
    assert long_form_length("PCL", words("tear of the posterior cruciate ligament")) == 3
    assert long_form_length("VHL", words("in von Hippel - Lindau")) == 4
    assert long_form_length("5-FU", words("with 5 - fluorouracil")) == 3
    # SF's first character must begin a word: "cruciate" does not start with its "l".
    assert long_form_length("LC", words("cruciate")) is None
    assert long_form_length("PAX6", words("aniridia")) is None


def test_definitions_need_a_short_form_in_parentheses():
    tokens = words("Posterior cruciate ligament ( PCL ) tears ( n = 4 ) and aniridia ( PAX6 ) ( 1 ) ( see below )")
    assert definitions(tokens) == [(0, 4, 5)]
    # Multi-token short forms (at most three tokens, 2-10 characters) are read whole.
    assert definitions(words("given 5 - fluorouracil ( 5 - FU ) daily")) == [(1, 5, 8)]
    assert definitions(words("the ( PCL ) alone")) == []  # nothing before it to be the long form


def test_a_tagged_long_form_labels_later_occurrences_within_reach():
    document = [words("Tears of the posterior cruciate ligament ( PCL ) are rare ."),
                words("The PCL was intact ."),
                words("An intact PCL ."),
                words("PCL again .")]
    spans = [[(3, 6, "Anatomy")], [], [], []]
    out = propagate(document, spans, reach=1)
    origin = (0, (3, 6, "Anatomy"))
    assert out[0] == {(3, 6, "Anatomy"): None, (7, 8, "Anatomy"): origin}  # also the SF of the definition
    assert out[1] == {(1, 2, "Anatomy"): origin}
    assert out[2] == {} and out[3] == {}  # beyond reach
    assert propagate(document, spans)[3] == {(0, 1, "Anatomy"): origin}  # reach None: the rest of the document
    # A definition does not reach back.
    assert propagate([words("The PCL ."), *document], [[], *spans])[0] == {}


def test_an_untagged_long_form_changes_nothing():
    document = [words("Phenylalanine hydroxylase ( PAH ) activity was low ."),
                words("PAH was measured ; PAH deficiency was ruled out .")]
    spans = [[], [(0, 1, "Disease"), (4, 6, "Disease")]]
    # Propagation never removes what the tagger found.
    assert propagate(document, spans) == [{}, {(0, 1, "Disease"): None, (4, 6, "Disease"): None}]


def test_relabelling_and_what_partial_overlaps_leave_alone():
    document = [words("Cyclosporin A ( CsA ) was given ."), words("CsA levels and CsA - induced toxicity .")]
    # The short form tagged alone with another label takes the definition's label; an entity that
    # merely contains it ("CsA - induced toxicity") is left as it is.
    out = propagate(document, [[(0, 2, "Chemical")], [(0, 1, "Disease"), (3, 7, "Disease")]])
    assert out[1] == {(0, 1, "Chemical"): (0, (0, 2, "Chemical")), (3, 7, "Disease"): None}
    # A long form tagged only in part is no definition: nothing changes.
    partial = [[(1, 2, "Chemical")], [(0, 1, "Disease")]]
    assert propagate(document, partial) == [{(1, 2, "Chemical"): None}, {(0, 1, "Disease"): None}]


class PhraseTagger:
    """A stand-in NER model: tags each occurrence of a lower-cased phrase, probability 0.9."""

    name = "phrases"

    def __init__(self, phrases: dict[str, str]):
        self.phrases = {tuple(p.split()): label for p, label in phrases.items()}

    def tag(self, sequences, every_confidence=False):
        out = []
        for seq in sequences:
            tags = ["O"] * len(seq)
            lowered = [w.lower() for w in seq]
            for phrase, label in self.phrases.items():
                n = len(phrase)
                for a in range(len(seq) - n + 1):
                    if tuple(lowered[a:a + n]) == phrase:
                        tags[a:a + n] = ["B-" + label] + ["I-" + label] * (n - 1)
            out.append((tags, [0.9 if t != "O" else 0.2 for t in tags]))
        return out


def test_the_ner_stage_propagates_within_a_note():
    from clinlake.pipelines.engine.ner.stage import ModelNerStage
    from clinlake.pipelines.engine.text import TextSplitter

    text = "MRI showed a tear of the posterior cruciate ligament (PCL).\nThe PCL graft was placed. PCL intact."
    splitter = TextSplitter.from_file()
    model = PhraseTagger({"posterior cruciate ligament": "Anatomy"})
    found = ModelNerStage(model).find(text, splitter.split(text))
    assert [(e.text, e.label, e.start, e.confidence) for e in found] == [
        ("posterior cruciate ligament", "Anatomy", 25, 0.9),
        ("PCL", "Anatomy", 54, 0.9),
        ("PCL", "Anatomy", text.index("PCL graft"), 0.9),  # the defining entity's confidence
        ("PCL", "Anatomy", text.index("PCL intact"), 0.9),
    ]
    assert all(text[e.start:e.end] == e.text for e in found)
    # The tagger's own entity keeps the stage name; propagated ones say where they came from.
    assert [e.source for e in found] == ["phrases"] + ["phrases+abbreviation"] * 3
    assert [e.sentence_index for e in found] == [0, 0, 1, 2]
    alone = ModelNerStage(model, propagate_abbreviations=False).find(text, splitter.split(text))
    assert [e.text for e in alone] == ["posterior cruciate ligament"]


def test_evaluation_reports_propagation_and_the_model_alone(tmp_path):
    from clinlake.pipelines.evaluation.ner import evaluate_model

    rows = [["Posterior", "B-Anatomy"], ["cruciate", "I-Anatomy"], ["ligament", "I-Anatomy"], ["(", "O"],
            ["PCL", "B-Anatomy"], [")", "O"], ["tears", "O"], [], ["The", "O"], ["PCL", "B-Anatomy"], ["held", "O"], []]
    conll = tmp_path / "gold.tsv"
    conll.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    model = PhraseTagger({"posterior cruciate ligament": "Anatomy"})
    report = evaluate_model(model, conll, tmp_path / "pred.tsv")
    assert report["abbreviation_reach"] == 20
    assert report["tokens"]["overall"]["f1"] == 1.0 and report["raw_text"]["overall"]["f1"] == 1.0
    alone = report["model_alone"]
    assert (alone["tokens"]["overall"]["correct"], alone["tokens"]["overall"]["gold"]) == (1, 3)
    assert alone["raw_text"]["overall"]["correct"] == 1
    assert "PCL\tB-Anatomy\tB-Anatomy" in (tmp_path / "pred.tsv").read_text(encoding="utf-8")
    assert evaluate_model(model, conll, abbreviation_reach=0)["tokens"]["overall"]["correct"] == 2  # same sentence
    plain = evaluate_model(model, conll, raw_text=False, abbreviation_reach=None)
    assert plain["tokens"] == alone["tokens"] and "model_alone" not in plain


def test_pipeline_config_switches_propagation_per_stage(tmp_path):
    from clinlake.pipelines.config import ConfigError, load_config

    config = load_config(None, overrides={"pipeline.ner": [{"model": "clinical_core",
                                                             "propagate_abbreviations": False}]})
    assert config.pipeline.ner[0].propagate_abbreviations is False
    assert load_config().pipeline.ner[0].propagate_abbreviations is None  # unset: the model's default (on)
    from clinlake.pipelines.engine.pipeline import Pipeline

    assert Pipeline.from_config(load_config()).ner_stages[0].propagate_abbreviations is True
    assert Pipeline.from_config(config).ner_stages[0].propagate_abbreviations is False
    with pytest.raises(ConfigError, match="propagate_abbreviation"):
        load_config(None, overrides={"pipeline.ner": [{"model": "clinical_core", "propagate_abbreviation": True}]})


def test_evaluate_command_rejects_a_negative_reach(tmp_path, capsys):
    from clinlake.jobs.evaluate import main

    conll = tmp_path / "gold.tsv"
    conll.write_text("PCL\tB-Anatomy\n\n", encoding="utf-8")
    assert main(["ner", "--model", "ncbi_disease", "--conll", str(conll), "--abbreviation-reach", "-1"]) == 2
    assert "--abbreviation-reach" in capsys.readouterr().out


def test_an_entity_confidence_is_numpys_mean_bit_for_bit():
    # the fast path (a plain sum below numpy's unrolled block) may not change one output bit
    import numpy as np

    from clinlake.pipelines.engine.short_forms import SEQUENTIAL_BELOW, mean

    rng = np.random.default_rng(7)
    for n in range(1, 2 * SEQUENTIAL_BELOW + 3):
        for _ in range(2000):
            values = (rng.random(n) * rng.choice([1.0, 1e-3, 1e-9], n)).tolist()  # float64, mixed magnitudes
            assert mean(values) == float(np.mean(values)), values
    assert mean(np.array([0.25, 0.5], dtype=np.float32).tolist()) == 0.375

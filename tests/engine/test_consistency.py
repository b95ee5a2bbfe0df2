"""Document-level label consistency: the vote, its ties, conflicting labels, overlapping spans, reach."""
from __future__ import annotations

import json

import pytest

from clinlake.pipelines.engine.consistency import VOTED, consistent_labels, occurrences


def words(text: str) -> list[str]:
    return text.split()


def confident(document, value: float = 0.9) -> list[list[float]]:
    return [[value] * len(tokens) for tokens in document]


def test_occurrences_are_exact_case_sensitive_token_matches():
    document = [words("Crohn disease and crohn disease ."), words("Crohn diseases ; Crohn disease")]
    found = occurrences(document, {("Crohn", "disease")})
    assert found == {("Crohn", "disease"): [(0, 0), (1, 3)]}


def test_a_tagged_string_tags_its_untagged_occurrences_when_its_label_outweighs_outside():
    document = [words("Crohn disease was diagnosed ."), words("Crohn disease flared ."), words("No Crohn disease .")]
    scored = [{(0, 2, "Disease"): (0.95, "")}, {(0, 2, "Disease"): (0.9, "")}, {}]
    out = consistent_labels(document, scored, confident(document, 0.6))
    assert out[0] == {(0, 2, "Disease"): (0.95, "")}  # the tagger's own stay as they are
    assert out[2] == {(1, 3, "Disease"): (0.925, VOTED)}  # mean confidence of the winning votes


def test_outside_wins_when_the_untagged_occurrences_outweigh_and_removal_is_opt_in():
    document = [words("Lead was found ."), words("Lead the team ."), words("Lead on .")]
    scored = [{(0, 1, "Chemical"): (0.55, "")}, {}, {}]
    tokens = confident(document, 0.9)
    assert consistent_labels(document, scored, tokens) == scored  # outside wins: nothing removed by default
    assert consistent_labels(document, scored, tokens, remove=True) == [{}, {}, {}]


def test_conflicting_labels_go_to_the_heavier_side():
    document = [words("p53 binds ."), words("p53 binds DNA ."), words("p53 again .")]
    scored = [{(0, 1, "Gene"): (0.9, "")}, {(0, 1, "Gene"): (0.8, "")}, {(0, 1, "Protein"): (0.95, "")}]
    out = consistent_labels(document, scored, confident(document), min_chars=2)
    assert out[2] == {(0, 1, "Gene"): (0.85, VOTED)}  # 1.7 against 0.95
    assert out[0] == scored[0] and out[1] == scored[1]


def test_a_tie_changes_nothing():
    document = [words("p53 binds ."), words("p53 binds DNA .")]
    scored = [{(0, 1, "Gene"): (0.8, "")}, {(0, 1, "Protein"): (0.8, "")}]
    assert consistent_labels(document, scored, confident(document), min_chars=2) == scored
    untagged_tie = [{(0, 1, "Gene"): (0.7, "")}, {}]
    assert consistent_labels(document, untagged_tie, confident(document, 0.7), min_chars=2) == untagged_tie


def test_the_entity_weight_lets_a_tagged_occurrence_outweigh_untagged_ones():
    # "rainbow trout" tagged once (0.9), left untagged twice with 0.95 in O: 0.9 against 1.9
    document = [words("rainbow trout were fed ."), words("the rainbow trout grew ."), words("rainbow trout died .")]
    scored = [{(0, 2, "Species"): (0.9, "")}, {}, {}]
    tokens = confident(document, 0.95)
    assert consistent_labels(document, scored, tokens) == scored  # weight 1: outside wins, nothing added
    assert consistent_labels(document, scored, tokens, entity_weight=2.0) == scored  # 1.8 against 1.9
    out = consistent_labels(document, scored, tokens, entity_weight=3.0)  # 2.7 against 1.9
    # added with the tagger's own (unscaled) mean confidence, not the weighted one
    assert out == [{(0, 2, "Species"): (0.9, "")}, {(1, 3, "Species"): (0.9, VOTED)}, {(0, 2, "Species"): (0.9, VOTED)}]
    # the weight scales label votes only: between two labels it changes nothing
    labels = [{(0, 2, "Species"): (0.6, "")}, {(1, 3, "Genus"): (0.9, "")}, {}]
    heavier = consistent_labels(document, labels, confident(document, 0.1), entity_weight=3.0)
    assert heavier[0] == {(0, 2, "Genus"): (0.9, VOTED)} and heavier[2] == {(0, 2, "Genus"): (0.9, VOTED)}


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan")])
def test_a_weight_that_is_not_positive_is_refused(weight):
    with pytest.raises(ValueError, match="entity_weight must be a positive number"):
        consistent_labels([words("a b")], [{}], [[0.5, 0.5]], entity_weight=weight)


def test_a_models_weight_comes_from_its_document_level_record():
    from clinlake.pipelines.engine.ner.metadata import ModelMetaError, consistency_entity_weight

    assert consistency_entity_weight({}) == 1.0
    assert consistency_entity_weight({"document_level": {"label_consistency": True}}) == 1.0
    assert consistency_entity_weight({"document_level": {"consistency_entity_weight": 3}}) == 3.0
    for bad in (0, -2, True, "3"):
        with pytest.raises(ModelMetaError, match="consistency_entity_weight"):
            consistency_entity_weight({"document_level": {"consistency_entity_weight": bad}})


def test_occurrences_inside_or_across_other_entities_neither_vote_nor_change():
    document = [words("breast cancer was found ."), words("metastatic breast cancer cells ."),
                words("cancer breast cancer .")]
    scored = [{(0, 2, "Disease"): (0.9, "")}, {(0, 3, "Disease"): (0.95, "")},
              {(0, 2, "Disease"): (0.9, "")}]  # overlaps the occurrence at 1..3 without equalling it
    out = consistent_labels(document, scored, confident(document, 0.99))
    assert out == scored


def test_short_candidates_without_letters_are_not_voted_on():
    document = [words("IL 2 binds ."), words("2 days .")]
    scored = [{(1, 2, "Gene"): (0.9, "")}, {}]
    assert consistent_labels(document, scored, confident(document, 0.1)) == scored


def test_reach_bounds_the_vote_to_neighbouring_sentences():
    document = [words("Crohn disease here ."), words("filler ."), words("Crohn disease there ."),
                words("filler ."), words("filler ."), words("filler ."), words("Crohn disease far .")]
    scored = [{(0, 2, "Disease"): (0.9, "")}] + [{} for _ in document[1:]]
    tokens = confident(document, 0.3)
    out = consistent_labels(document, scored, tokens, reach=2)
    assert out[2] == {(0, 2, "Disease"): (0.9, VOTED)}
    assert out[6] == {}  # four sentences from the nearest occurrence in its chain
    assert consistent_labels(document, scored, tokens)[6] == {(0, 2, "Disease"): (0.9, VOTED)}  # whole document


class MyopicTagger:
    """A stand-in NER model that sees a phrase only in sentences holding a trigger word (probability
    0.9 on its tags, 0.3 on O): the sentence-level blindness the vote repairs. Like the real model, a
    sentence tagged all O gets NaN confidences unless every token's confidence is asked for."""

    name = "myopic"
    batch_invariant = True

    def __init__(self, phrase: str, label: str, trigger: str):
        self.phrase, self.label, self.trigger = phrase.split(), label, trigger
        self.calls: list[tuple[list[str], bool]] = []

    def tag(self, sequences, every_confidence=False):
        self.calls += [(list(seq), every_confidence) for seq in sequences]
        out = []
        for seq in sequences:
            tags = ["O"] * len(seq)
            n = len(self.phrase)
            for a in range(len(seq) - n + 1):
                if self.trigger in seq and seq[a:a + n] == self.phrase:
                    tags[a:a + n] = ["B-" + self.label] + ["I-" + self.label] * (n - 1)
            untagged = all(t == "O" for t in tags) and not every_confidence
            out.append((tags, [float("nan") if untagged else 0.9 if t != "O" else 0.3 for t in tags]))
        return out


def test_the_ner_stage_votes_within_a_note_when_asked():
    from clinlake.pipelines.engine.ner.stage import ModelNerStage
    from clinlake.pipelines.engine.text import TextSplitter

    text = "Crohn disease was diagnosed in 2019.\nHer Crohn disease flared. No fistula."
    sentences = TextSplitter.from_file().split(text)
    model = MyopicTagger("Crohn disease", "Disease", "diagnosed")
    plain = ModelNerStage(model).find(text, sentences)
    assert [(e.start, e.text, e.source) for e in plain] == [(0, "Crohn disease", "myopic")]
    voted = ModelNerStage(model, label_consistency=True).find(text, sentences)
    second = text.index("Crohn disease flared")
    assert [(e.start, e.end, e.label, e.confidence, e.source, e.sentence_index) for e in voted] == [
        (0, 13, "Disease", 0.9, "myopic", 0),
        (second, second + 13, "Disease", 0.9, "myopic+consistency", 1)]
    # the tagger was asked for every token's confidence (the vote read the untagged sentence's O)
    assert model.calls and all(every for _, every in model.calls[-3:])


def test_the_ner_stage_votes_with_its_models_weight(tmp_path):
    from clinlake.pipelines.engine.ner.stage import ModelNerStage, load_ner_stage
    from clinlake.pipelines.engine.text import TextSplitter
    from clinlake.pipelines.resources import package_resource

    # MyopicTagger tags the phrase only beside its trigger, with 0.9, and reports 0.3 for its O tokens
    text = "Crohn disease was diagnosed.\nCrohn disease flared. Crohn disease eased. Crohn disease again."
    sentences = TextSplitter.from_file().split(text)
    model = MyopicTagger("Crohn disease", "Disease", "diagnosed")
    # 0.9 against 3 x 0.3 = 0.9: a tie, nothing added; weighted x2 the label wins
    assert len(ModelNerStage(model, label_consistency=True).find(text, sentences)) == 1
    voted = ModelNerStage(model, label_consistency=True, consistency_entity_weight=2.0).find(text, sentences)
    assert [e.source for e in voted] == ["myopic"] + ["myopic+consistency"] * 3
    assert all(e.confidence == 0.9 for e in voted)
    # a shipped model's stage takes the weight its model.json records (1 where it records none)
    for name in ("ncbi_disease", "linnaeus"):
        meta = json.loads((package_resource(f"models/{name}") / "model.json").read_text(encoding="utf-8"))
        expected = float(meta["document_level"].get("consistency_entity_weight", 1.0))
        assert load_ner_stage(package_resource(f"models/{name}")).consistency_entity_weight == expected


def test_the_pipeline_config_switches_the_vote_per_stage():
    from clinlake.pipelines.config import load_config

    config = load_config(None, overrides={"pipeline.ner": [{"model": "clinical_core", "label_consistency": True}]})
    assert config.pipeline.ner[0].label_consistency is True
    assert load_config().pipeline.ner[0].label_consistency is None  # unset: the model's default


def test_unset_steps_follow_the_models_cv_choice_and_set_ones_override_it():
    from clinlake.pipelines.engine.ner.stage import document_level_steps

    built_in = {"propagate_abbreviations": True, "label_consistency": False, "binomial_short_forms": False,
                "gazetteer": False}
    assert document_level_steps({}) == built_in
    chosen = {"document_level": {"propagate_abbreviations": False, "label_consistency": True,
                                 "binomial_short_forms": False, "chosen_by": "5-fold CV, 2026-12-05"}}
    assert document_level_steps(chosen) == {**built_in, "propagate_abbreviations": False, "label_consistency": True}
    assert document_level_steps(chosen, propagate_abbreviations=True, label_consistency=None) == {
        **built_in, "label_consistency": True}
    with pytest.raises(TypeError, match="unknown document-level steps"):
        document_level_steps({}, spelling=True)


def test_evaluation_scores_the_vote_in_token_mode(tmp_path, capsys):
    from clinlake.jobs.evaluate import main
    from clinlake.pipelines.evaluation.ner import evaluate_model

    rows = [["Crohn", "B-Disease"], ["disease", "I-Disease"], ["was", "O"], ["diagnosed", "O"], [],
            ["Her", "O"], ["Crohn", "B-Disease"], ["disease", "I-Disease"], ["flared", "O"], [],
            ["filler", "O"], [], ["Crohn", "B-Disease"], ["disease", "I-Disease"], []]
    conll = tmp_path / "gold.tsv"
    conll.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    model = MyopicTagger("Crohn disease", "Disease", "diagnosed")
    plain = evaluate_model(model, conll, raw_text=False)
    assert plain["tokens"]["overall"]["correct"] == 1 and "label_consistency_reach" not in plain
    near = evaluate_model(model, conll, raw_text=False, consistency_reach=1)
    assert near["label_consistency_reach"] == 1
    assert near["before_label_consistency"]["tokens"] == plain["tokens"]
    assert near["tokens"]["overall"]["correct"] == 2  # the third occurrence is two sentences from the tagged one
    assert evaluate_model(model, conll, raw_text=False, consistency_reach=3)["tokens"]["overall"]["f1"] == 1.0
    # the command: scored with a real model, and a negative reach refused
    assert main(["ner", "--model", "ncbi_disease", "--conll", str(conll), "--no-raw-text",
                 "--label-consistency", "3"]) == 0
    out = capsys.readouterr().out
    assert "label consistency vote over 3 sentences" in out and "before the vote: corpus tokens F1" in out
    assert main(["ner", "--model", "ncbi_disease", "--conll", str(conll), "--label-consistency", "-1"]) == 2
    assert "--label-consistency must be 0 or more" in capsys.readouterr().out


def test_the_votes_window_in_a_conll_file_is_the_taggeds_consistency_reach():
    from clinlake.pipelines.evaluation.ner_variants import VARIANTS, Tagged

    # "potato" tagged in the first sentence, untagged 12 sentences later: only a window of 12 or more joins them
    tokens = [["potato", "plants"]] + [["filler"]] * 11 + [["the", "potato"]]
    tags = [["B-Species", "O"]] + [["O"]] * 11 + [["O", "O"]]
    confidence = [[0.9, 0.9]] + [[0.9]] * 11 + [[0.9, 0.6]]
    near = Tagged(tokens=tokens, tags=tags, confidence=confidence, consistency_weight=3.0)  # the built-in 10
    far = Tagged(tokens=tokens, tags=tags, confidence=confidence, consistency_weight=3.0, consistency_reach=12)
    assert VARIANTS["consistency"](near)[-1] == ["O", "O"]
    assert VARIANTS["consistency"](far)[-1] == ["O", "B-Species"]

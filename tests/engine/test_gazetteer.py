"""A model's gazetteer: learned from training examples, read from gazetteer.tsv, matched by the NER stage."""
import pytest

from clinlake.pipelines.engine.gazetteer import Gazetteer, GazetteerError, Term, read_gazetteer
from clinlake.pipelines.training.ner.gazetteer import learn_gazetteer, write_gazetteer


def _example(tokens: str, tags: str):
    return tokens.split(), tags.split()


def test_only_strings_tagged_almost_every_time_and_often_enough_enter_the_gazetteer():
    examples = [_example("Crohn disease flared", "B-Disease I-Disease O"),
                _example("crohn disease again", "B-Disease I-Disease O"),
                _example("the cell line and the cell", "O B-Cell O O O O"),  # "cell" tagged 1 of 2
                _example("cell", "B-Cell"),
                _example("rare ataxia", "O B-Disease")]  # tagged once: too rare
    gazetteer = learn_gazetteer(examples)
    assert gazetteer == {("crohn", "disease"): Term("Disease", 1.0)}
    assert learn_gazetteer(examples, min_precision=0.6, min_count=1) == {
        ("ataxia",): Term("Disease", 1.0), ("cell",): Term("Cell", 0.6667), ("crohn", "disease"): Term("Disease", 1.0)}


def test_matches_are_case_insensitive_longest_first_and_never_overlap_an_entity():
    terms = {("crohn", "disease"): Term("Disease", 0.95), ("crohn",): Term("Person", 0.9), ("ibd",): Term("Disease", 1.0)}
    tokens = ["CROHN", "disease", "and", "Crohn", "'s", "IBD", "ibd"]
    found = Gazetteer(terms).matches(tokens, [(6, 7, "Other")])
    assert [span for span, _ in found] == [(0, 2, "Disease"), (3, 4, "Person"), (5, 6, "Disease")]
    assert found[0][1].precision == 0.95


def test_the_file_round_trips_and_a_bad_line_names_its_place(tmp_path):
    path = tmp_path / "gazetteer.tsv"
    terms = {("crohn", "disease"): Term("Disease", 0.95), ("ibd",): Term("Disease", 1.0)}
    write_gazetteer(path, terms, source="a test")
    assert path.read_text(encoding="utf-8").startswith("# learned from a test")
    assert read_gazetteer(path) == terms
    path.write_text("crohn disease\tDisease\n", encoding="utf-8")
    with pytest.raises(GazetteerError, match="gazetteer.tsv:1: expected pieces<TAB>LABEL<TAB>PRECISION"):
        read_gazetteer(path)
    with pytest.raises(GazetteerError, match="no gazetteer file"):
        read_gazetteer(tmp_path / "missing.tsv")


def test_the_ner_stage_adds_gazetteer_terms_last_where_nothing_overlaps():
    from clinlake.pipelines.engine.ner.stage import GAZETTEER, ModelNerStage
    from clinlake.pipelines.engine.text import TextSplitter

    class Tagger:
        name = "t@1"

        def tag(self, sequences, every_confidence=False):
            out = []
            for seq in sequences:
                tags = ["B-Disease" if w == "fever" else "O" for w in seq]
                out.append((tags, [0.8 if t != "O" else 0.5 for t in tags]))
            return out

    text = "Fever and Crohn disease. No fever."
    sentences = TextSplitter.from_file().split(text)
    terms = {("crohn", "disease"): Term("Disease", 0.95), ("fever",): Term("Symptom", 1.0)}
    found = ModelNerStage(Tagger(), gazetteer=terms).find(text, sentences)
    assert [(e.text, e.label, e.confidence, e.source) for e in found] == [
        ("Fever", "Symptom", 1.0, "t@1" + GAZETTEER),  # untagged by the model ("Fever" is not "fever")
        ("Crohn disease", "Disease", 0.95, "t@1" + GAZETTEER),
        ("fever", "Disease", 0.8, "t@1")]  # the model's own entity is never relabelled


def test_a_term_seen_only_in_upper_case_matches_only_in_upper_case(tmp_path):
    examples = [_example("PAD was found", "B-Disease O O"), _example("known PAD", "O B-Disease"),
                _example("Crohn disease and crohn disease", "B-Disease I-Disease O B-Disease I-Disease")]
    gazetteer = learn_gazetteer(examples)
    assert gazetteer == {("pad",): Term("Disease", 1.0, upper_only=True), ("crohn", "disease"): Term("Disease", 1.0)}
    found = Gazetteer(gazetteer).matches(["the", "pad", "and", "PAD", "and", "CROHN", "Disease"], [])
    assert [span for span, _ in found] == [(3, 4, "Disease"), (5, 7, "Disease")]  # not the word "pad"
    path = tmp_path / "gazetteer.tsv"
    write_gazetteer(path, gazetteer, source="a test")
    assert "pad\tDisease\t1.0\tupper" in path.read_text(encoding="utf-8") and read_gazetteer(path) == gazetteer

"""Abbreviated binomials within a document (pipelines/engine/binomials.py) and in the NER stage."""
from clinlake.pipelines.engine.binomials import binomial_at, propagate_binomials, tagged_binomials
from clinlake.pipelines.engine.short_forms import BINOMIAL, PROPAGATED, scored_spans


def test_binomial_forms_are_read_with_their_key_and_length():
    assert binomial_at(["Escherichia", "coli", "K-12"], 0) == (("E", "coli"), 2)
    assert binomial_at(["the", "E", ".", "coli", "strain"], 1) == (("E", "coli"), 3)
    assert binomial_at(["E.", "coli"], 0) == (("E", "coli"), 2)
    assert binomial_at(["E", "coli"], 0) == (("E", "coli"), 2)
    # not binomials: an upper-case epithet, a short word, a capitalised second word, an all-caps genus
    for tokens in (["Escherichia", "Coli"], ["In", "the"], ["E", ".", "Coli"], ["DNA", "repair"], ["E", ".", "ab"]):
        assert binomial_at(tokens, 0) is None


def test_a_tagged_full_binomial_tags_its_abbreviated_forms_later_in_the_document():
    document = [["Escherichia", "coli", "was", "grown", "."],
                ["E", ".", "coli", "and", "E", "coli", "cells", "."],
                ["Enterobacter", "coli", "and", "E", ".", "faecalis", "."]]
    spans = [[(0, 2, "Species")], [], []]
    out = propagate_binomials(document, spans)
    origin = (0, (0, 2, "Species"))
    assert out[0] == {(0, 2, "Species"): None}
    assert out[1] == {(0, 3, "Species"): origin, (4, 6, "Species"): origin}
    # same initial and epithet: the full form of another genus initial E is taken as the same binomial;
    # an abbreviated binomial with another epithet is not
    assert out[2] == {(0, 2, "Species"): origin}


def test_an_abbreviated_form_tagged_first_tags_the_full_form_after_it_but_not_before():
    document = [["Escherichia", "coli", "grew", "."], ["E", ".", "coli", "grew", "."], ["Escherichia", "coli", "."]]
    out = propagate_binomials(document, [[], [(0, 3, "Species")], []])
    assert out[0] == {} and out[2] == {(0, 2, "Species"): (1, (0, 3, "Species"))}


def test_reach_counts_from_the_nearest_tagged_sentence_and_conflicting_labels_settle_nothing():
    document = [["Bacillus", "subtilis", "."], ["x"], ["x"], ["B", ".", "subtilis", "."], ["x"], ["x"], ["x"],
                ["B", ".", "subtilis", "."]]
    spans = [[(0, 2, "Species")], [], [], [], [], [], [], []]
    out = propagate_binomials(document, spans, reach=3)
    assert (0, 3, "Species") in out[3] and out[7] == {}  # 7 is 7 sentences after the only tagged one
    spans[3] = [(0, 3, "Species")]
    assert propagate_binomials(document, spans, reach=4)[7] == {(0, 3, "Species"): (0, (0, 2, "Species"))}
    spans = [[(0, 2, "Species")], [], [], [(0, 3, "Organism")], [], [], [], []]
    assert tagged_binomials(document, spans) == {}
    assert propagate_binomials(document, spans) == [dict.fromkeys(s) for s in spans]


def test_a_binomial_inside_a_longer_entity_is_left_alone_and_two_labels_settle_nothing():
    document = [["Escherichia", "coli", "."], ["E", ".", "coli", "O157", "strains", "."], ["E", ".", "coli", "."]]
    spans = [[(0, 2, "Species")], [(0, 4, "Species")], []]
    out = propagate_binomials(document, spans)
    assert out[1] == {(0, 4, "Species"): None}  # the longer entity counts as the binomial, untouched
    assert out[2] == {(0, 3, "Species"): (0, (0, 2, "Species"))}
    spans = [[(0, 2, "Species")], [], [(0, 3, "Gene")]]  # E. coli tagged with another label: no relabelling
    assert propagate_binomials(document, spans) == [dict.fromkeys(s) for s in spans]


def test_scored_spans_marks_binomial_entities_with_the_confidence_of_their_origin():
    document = [["Escherichia", "coli", "(", "EC", ")", "grew", "."], ["E", ".", "coli", "and", "EC", "."]]
    spans = [[(0, 2, "Species")], []]
    confidences = [[0.9, 0.7, 0.99, 0.99, 0.99, 0.99, 0.99], [0.6, 0.6, 0.6, 0.99, 0.99, 0.99]]
    off = scored_spans(document, spans, confidences)
    assert off[1] == {(4, 5, "Species"): (0.8, PROPAGATED)}  # the abbreviation EC only
    on = scored_spans(document, spans, confidences, binomial_short_forms=True)
    assert on[0] == {(0, 2, "Species"): (0.8, ""), (3, 4, "Species"): (0.8, PROPAGATED)}
    assert on[1] == {(0, 3, "Species"): (0.8, BINOMIAL), (4, 5, "Species"): (0.8, PROPAGATED)}


def test_the_ner_stage_reports_binomial_entities_only_when_asked():
    from clinlake.pipelines.engine.ner.stage import ModelNerStage
    from clinlake.pipelines.engine.text import TextSplitter

    class Tagger:
        name = "species@test"

        def tag(self, sequences, every_confidence=False):
            out = []
            for seq in sequences:
                tags = ["O"] * len(seq)
                for a in range(len(seq) - 1):
                    if seq[a:a + 2] == ["Escherichia", "coli"]:
                        tags[a:a + 2] = ["B-Species", "I-Species"]
                out.append((tags, [0.9 if t != "O" else 0.4 for t in tags]))
            return out

    text = "Escherichia coli grew well. Then E. coli was washed."
    sentences = TextSplitter.from_file().split(text)
    plain = ModelNerStage(Tagger()).find(text, sentences)
    assert [(e.text, e.source) for e in plain] == [("Escherichia coli", "species@test")]
    found = ModelNerStage(Tagger(), binomial_short_forms=True).find(text, sentences)
    assert [(e.text, e.start, e.label, e.confidence, e.source) for e in found] == [
        ("Escherichia coli", 0, "Species", 0.9, "species@test"),
        ("E. coli", 33, "Species", 0.9, "species@test" + BINOMIAL)]

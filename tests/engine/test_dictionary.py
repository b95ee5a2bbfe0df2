import pytest

from clinlake.pipelines.engine.dictionary import DictionaryNer, Lexicon, LexiconError, read_lexicon
from clinlake.pipelines.engine.merge import merge_chunks
from clinlake.pipelines.engine.types import Entity


def lexicon(name, *terms):
    return Lexicon(name=name, version="v1", terms=tuple(terms))


@pytest.fixture(scope="module")
def splitter(pipeline):
    return pipeline.splitter


def spans(entities):
    return [(e.text, e.start, e.end, e.label, e.source) for e in entities]


def test_longest_match_case_and_whitespace_insensitive(splitter):
    ner = DictionaryNer([lexicon("p", ("chest pain", "PROBLEM"), ("pain", "PROBLEM"),
                                 ("chest pain radiating to the left arm", "PROBLEM"))], splitter.tokenize)
    text = "Reports CHEST   Pain today. Also pain in the back."
    found = ner.find(text, splitter.split(text))
    assert spans(found) == [("CHEST   Pain", 8, 20, "PROBLEM", "dictionary:p@v1"),
                            ("pain", 33, 37, "PROBLEM", "dictionary:p@v1")]
    assert [e.sentence_index for e in found] == [0, 1]
    long_text = "Chest pain radiating to the left arm."
    assert spans(ner.find(long_text, splitter.split(long_text)))[0][:3] == (
        "Chest pain radiating to the left arm", 0, 36)


def test_no_partial_tokens_and_no_sentence_crossing(splitter):
    ner = DictionaryNer([lexicon("p", ("pain", "PROBLEM"), ("fever cough", "PROBLEM"))], splitter.tokenize)
    text = "Painful joints. No fever.\n\nCough since Monday."
    assert ner.find(text, splitter.split(text)) == []


def test_first_lexicon_wins_for_shared_terms(splitter):
    ner = DictionaryNer([lexicon("drugs", ("insulin", "TREATMENT")), lexicon("labs", ("insulin", "TEST"))],
                        splitter.tokenize)
    text = "Started insulin."
    assert spans(ner.find(text, splitter.split(text))) == [("insulin", 8, 15, "TREATMENT", "dictionary:drugs@v1")]


def test_read_lexicon_labels_comments_and_errors(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("# comment\n\naspirin\nmetformin\tDRUG_ORAL\n")
    lex = read_lexicon(path, name="drugs", default_label="DRUG")
    assert lex.terms == (("aspirin", "DRUG"), ("metformin", "DRUG_ORAL"))
    assert len(lex.version) == 8
    with pytest.raises(LexiconError, match=r"terms.txt:3: no label"):
        read_lexicon(path, name="drugs", default_label=None)
    with pytest.raises(LexiconError, match="file not found"):
        read_lexicon(tmp_path / "missing.txt", name="x", default_label="X")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(LexiconError, match="has no terms"):
        read_lexicon(tmp_path / "empty.txt", name="x", default_label="X")


def ent(start, end, label="X", source="s"):
    return Entity(start=start, end=end, text="x" * (end - start), label=label, confidence=1.0, source=source)


def test_merge_precedence_stage_then_length_then_start():
    first_stage = [ent(10, 15, "A"), ent(30, 40, "A")]
    second_stage = [ent(5, 20, "B"), ent(20, 25, "B"), ent(38, 45, "B"), ent(50, 52, "B"), ent(50, 55, "B")]
    kept = merge_chunks([first_stage, second_stage])
    assert [(e.start, e.end, e.label) for e in kept] == [
        (10, 15, "A"), (20, 25, "B"), (30, 40, "A"), (50, 55, "B")]


def test_merge_keeps_adjacent_and_is_sorted():
    kept = merge_chunks([[ent(5, 10), ent(0, 5)], [ent(10, 12)]])
    assert [(e.start, e.end) for e in kept] == [(0, 5), (5, 10), (10, 12)]

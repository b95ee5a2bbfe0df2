"""Tests for the clinical sentence splitter and tokenizer (pipelines/engine/text.py)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.engine.types import Sentence, Token

REPO = Path(__file__).resolve().parents[2]
ABBREVIATIONS = REPO / "conf" / "abbreviations.yaml"


@pytest.fixture(scope="module")
def splitter() -> TextSplitter:
    return TextSplitter.from_file(ABBREVIATIONS)


def token_triples(tokens: list[Token]) -> list[tuple[str, int, int]]:
    return [(t.text, t.start, t.end) for t in tokens]


def sentence_texts(text: str, sentences: list[Sentence]) -> list[str]:
    return [text[s.start : s.end] for s in sentences]


def assert_invariants(text: str, sentences: list[Sentence]) -> None:
    """Offsets slice the original text; sentences are ordered, trimmed and non-empty; the
    tokens, in order, hold every non-whitespace character exactly once."""
    tokens = [t for s in sentences for t in s.tokens]
    previous_end = 0
    for index, sentence in enumerate(sentences):
        assert sentence.index == index
        assert sentence.tokens, "empty sentence"
        assert sentence.start == sentence.tokens[0].start
        assert sentence.end == sentence.tokens[-1].end
        assert sentence.start >= previous_end, "overlapping sentences"
        previous_end = sentence.end
    previous_end = 0
    for token in tokens:
        assert token.start >= previous_end and token.end > token.start
        assert text[token.start : token.end] == token.text
        assert not any(ch.isspace() for ch in token.text)
        previous_end = token.end
    # Ordered, disjoint, whitespace-free slices whose concatenation equals all
    # non-whitespace characters cover each of them exactly once.
    assert "".join(t.text for t in tokens) == "".join(text.split())




# ----------------------------------------------------------------------------- tokens


def test_dotted_clinical_abbreviation_is_one_token(splitter):
    text = "Aspirin 81 mg b.i.d. for pain."
    assert token_triples(splitter.tokenize(text)) == [
        ("Aspirin", 0, 7),
        ("81", 8, 10),
        ("mg", 11, 13),
        ("b.i.d.", 14, 20),
        ("for", 21, 24),
        ("pain", 25, 29),
        (".", 29, 30),
    ]


def test_abbreviations_match_case_insensitively(splitter):
    text = "DR. Jones gave Q.I.D. dosing"
    assert [t.text for t in splitter.tokenize(text)] == ["DR.", "Jones", "gave", "Q.I.D.", "dosing"]


def test_unlisted_dotted_letters_are_one_token(splitter):
    text = "Born in the U.S.A. and given p.o"
    assert [t.text for t in splitter.tokenize(text)] == ["Born", "in", "the", "U.S.A.", "and", "given", "p.o"]


def test_vitals_ratio_decimal_and_units(splitter):
    text = "BP 120/80, T 98.6/37, K 3.5 mg/dL"
    assert token_triples(splitter.tokenize(text)) == [
        ("BP", 0, 2),
        ("120/80", 3, 9),
        (",", 9, 10),
        ("T", 11, 12),
        ("98.6/37", 13, 20),
        (",", 20, 21),
        ("K", 22, 23),
        ("3.5", 24, 27),
        ("mg", 28, 30),
        ("/", 30, 31),
        ("dL", 31, 33),
    ]


def test_hyphenated_words_split_on_the_hyphen(splitter):
    text = "COVID-19 negative"
    assert token_triples(splitter.tokenize(text)) == [
        ("COVID", 0, 5),
        ("-", 5, 6),
        ("19", 6, 8),
        ("negative", 9, 17),
    ]


def test_possessive_thousands_and_percent(splitter):
    text = "The patient's WBC 1,000 (5%) today."
    assert token_triples(splitter.tokenize(text)) == [
        ("The", 0, 3),
        ("patient", 4, 11),
        ("'s", 11, 13),
        ("WBC", 14, 17),
        ("1,000", 18, 23),
        ("(", 24, 25),
        ("5", 25, 26),
        ("%", 26, 27),
        (")", 27, 28),
        ("today", 29, 34),
        (".", 34, 35),
    ]


def test_other_apostrophes_and_comma_lists(splitter):
    # Only "'s" is a clitic; a comma list of small numbers is not a thousands number.
    assert [t.text for t in splitter.tokenize("don't 1,2,3 0.25 .5")] == [
        "don", "'", "t", "1", ",", "2", ",", "3", "0.25", ".5",
    ]


def test_unicode_letters_and_symbols(splitter):
    text = "Café µg – 5 °C • naïve"
    assert token_triples(splitter.tokenize(text)) == [
        ("Café", 0, 4),
        ("µg", 5, 7),
        ("–", 8, 9),
        ("5", 10, 11),
        ("°", 12, 13),
        ("C", 13, 14),
        ("•", 15, 16),
        ("naïve", 17, 22),
    ]


def test_decomposed_accent_stays_in_the_word(splitter):
    text = "Cafe\u0301 ok"
    assert [t.text for t in splitter.tokenize(text)] == ["Cafe\u0301", "ok"]


def test_tokenize_range_keeps_offsets_of_the_full_text(splitter):
    text = "Pain 7/10. BP 120/80 today."
    assert token_triples(splitter.tokenize(text, 11, 20)) == [("BP", 11, 13), ("120/80", 14, 20)]
    assert splitter.tokenize(text, 20, 11) == []
    assert splitter.tokenize(text, -5, 10**6) == splitter.tokenize(text)


def test_number_prefix_abbreviation_only_before_a_number(splitter):
    text = "Tobacco: No. Alcohol: No. See No. 5."
    assert [t.text for t in splitter.tokenize(text)] == [
        "Tobacco", ":", "No", ".", "Alcohol", ":", "No", ".", "See", "No.", "5", ".",
    ]
    assert sentence_texts(text, splitter.split(text)) == ["Tobacco: No.", "Alcohol: No.", "See No. 5."]


# -------------------------------------------------------------------------- sentences


def test_title_abbreviation_does_not_end_a_sentence(splitter):
    text = "Seen by Dr. Smith today. He is well."
    sentences = splitter.split(text)
    assert [(s.index, s.start, s.end) for s in sentences] == [(0, 0, 24), (1, 25, 36)]
    assert sentence_texts(text, sentences) == ["Seen by Dr. Smith today.", "He is well."]
    assert ("Dr.", 8, 11) in token_triples(list(sentences[0].tokens))


def test_clinical_abbreviation_ends_a_sentence_only_before_a_capital(splitter):
    text = "Take 1 tab p.o. daily. Aspirin 81 mg b.i.d. Return in 2 weeks."
    assert sentence_texts(text, splitter.split(text)) == [
        "Take 1 tab p.o. daily.",
        "Aspirin 81 mg b.i.d.",
        "Return in 2 weeks.",
    ]
    text = "Metformin 500 mg b.i.d. 2 refills given."
    assert sentence_texts(text, splitter.split(text)) == [text]


def test_numbers_do_not_split_sentences(splitter):
    text = "Vitals: BP 124/78. Temp 98.6. Dose 3.5 mg daily."
    sentences = splitter.split(text)
    assert sentence_texts(text, sentences) == ["Vitals: BP 124/78.", "Temp 98.6.", "Dose 3.5 mg daily."]
    assert [t.text for t in sentences[2].tokens] == ["Dose", "3.5", "mg", "daily", "."]


def test_numbered_list_on_lines(splitter):
    text = "1. Aspirin 81 mg daily.\n2. Lisinopril"
    sentences = splitter.split(text)
    assert [(s.start, s.end) for s in sentences] == [(0, 23), (24, 37)]
    assert sentence_texts(text, sentences) == ["1. Aspirin 81 mg daily.", "2. Lisinopril"]
    assert [t.text for t in sentences[0].tokens] == ["1", ".", "Aspirin", "81", "mg", "daily", "."]


def test_single_newline_splits_before_list_markers_only(splitter):
    text = "Plan:\n- aspirin\n* statin\na) diet and\nexercise"
    assert sentence_texts(text, splitter.split(text)) == [
        "Plan:",
        "- aspirin",
        "* statin",
        "a) diet and\nexercise",
    ]
    wrapped = "The patient was seen by\nDr. Smith in clinic\ntoday."
    assert sentence_texts(wrapped, splitter.split(wrapped)) == [wrapped]


def test_blank_line_always_splits(splitter):
    text = "Chest pain since Monday\n\n  no fever\r\n\r\nno cough"
    sentences = splitter.split(text)
    assert sentence_texts(text, sentences) == ["Chest pain since Monday", "no fever", "no cough"]
    assert [(s.start, s.end) for s in sentences] == [(0, 23), (27, 35), (39, 47)]


def test_heading_lines_are_sentences_of_their_own(splitter):
    text = "CHIEF COMPLAINT\nchest pain\nHISTORY OF PRESENT ILLNESS: The patient is a 45-year-old man."
    assert sentence_texts(text, splitter.split(text)) == [
        "CHIEF COMPLAINT",
        "chest pain",
        "HISTORY OF PRESENT ILLNESS:",
        "The patient is a 45-year-old man.",
    ]


def test_inline_heading_after_a_period(splitter):
    text = "Lungs clear. PLAN: continue aspirin."
    assert sentence_texts(text, splitter.split(text)) == ["Lungs clear.", "PLAN:", "continue aspirin."]


def test_list_marker_after_heading_is_not_a_sentence(splitter):
    text = "IMPRESSION: 1. Pneumonia. 2. Dehydration."
    assert sentence_texts(text, splitter.split(text)) == ["IMPRESSION:", "1. Pneumonia.", "2. Dehydration."]


def test_mtsamples_comma_style(splitter):
    text = (
        "SUBJECTIVE:,  This 23-year-old white female presents with complaint of allergies.  "
        "She does not think it is flaring up.,MEDICATIONS: , Her only medication currently is "
        "Ortho Tri-Cyclen and the Allegra.,ALLERGIES: , She has no known medicine allergies.,"
        "OBJECTIVE:,Vitals:  Weight was 130 pounds and blood pressure 124/78.,HEENT:  Her throat "
        "was red.,Neck:  Supple.,Lungs:  Clear.,PLAN:,1.  She will try Zyrtec.,2.  Samples given."
    )
    sentences = splitter.split(text)
    assert sentence_texts(text, sentences) == [
        "SUBJECTIVE:,",
        "This 23-year-old white female presents with complaint of allergies.",
        "She does not think it is flaring up.,",
        "MEDICATIONS: ,",
        "Her only medication currently is Ortho Tri-Cyclen and the Allegra.,",
        "ALLERGIES: ,",
        "She has no known medicine allergies.,",
        "OBJECTIVE:,",
        "Vitals:  Weight was 130 pounds and blood pressure 124/78.,",
        "HEENT:",
        "Her throat was red.,",
        "Neck:  Supple.,",
        "Lungs:  Clear.,",
        "PLAN:,",
        "1.  She will try Zyrtec.,",
        "2.  Samples given.",
    ]
    assert [t.text for t in sentences[8].tokens][-3:] == ["124/78", ".", ","]
    assert_invariants(text, sentences)


def test_label_after_quirk_comma_without_period(splitter):
    text = "Lungs:  Clear,Heart:  Regular rate,Abdomen: soft"
    assert sentence_texts(text, splitter.split(text)) == [
        "Lungs:  Clear,",
        "Heart:  Regular rate,",
        "Abdomen: soft",
    ]


def test_repeated_quirk_commas_stay_with_the_heading(splitter):
    text = "DOPPLER: , ,1.  Mild mitral regurgitation."
    assert sentence_texts(text, splitter.split(text)) == ["DOPPLER: , ,", "1.  Mild mitral regurgitation."]


def test_comma_after_period_mid_sentence_does_not_split(splitter):
    text = "Acme Inc., and others; apples, pears, etc., were fine."
    assert sentence_texts(text, splitter.split(text)) == [text]


def test_question_exclamation_ellipsis_and_quotes(splitter):
    text = 'Any pain? no. Really?! Yes... He said "stop." (Then left.) Done'
    assert sentence_texts(text, splitter.split(text)) == [
        "Any pain? no.",
        "Really?!",
        "Yes...",
        'He said "stop."',
        "(Then left.)",
        "Done",
    ]


def test_time_is_not_a_heading(splitter):
    text = "SEEN AT 10:30 TODAY. BP: 120/80.,IMPRESSION:1. Pneumonia."
    assert sentence_texts(text, splitter.split(text)) == [
        "SEEN AT 10:30 TODAY.",
        "BP:",
        "120/80.,",
        "IMPRESSION:",
        "1. Pneumonia.",
    ]


# ------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("text", ["", " ", "   \n\t\r\n  ", "\u2028\u3000\xa0"])
def test_empty_and_whitespace_only(splitter, text):
    assert splitter.split(text) == []
    assert splitter.tokenize(text) == []


def test_control_characters_and_lone_surrogates(splitter):
    text = "a\x00b\x07 \x1b[31mred\x1b[0m \ud800 end."
    sentences = splitter.split(text)
    assert_invariants(text, sentences)
    assert [t.text for t in sentences[0].tokens][:3] == ["a", "\x00", "b"]


def test_every_sample_note_keeps_the_invariants(splitter, sample_notes):
    notes = [row["transcription"] for row in sample_notes]
    assert len(notes) == 322
    for note in notes:
        sentences = splitter.split(note)
        assert bool(sentences) == bool(note.strip())  # four sample notes are empty
        assert_invariants(note, sentences)


def test_random_strings_keep_the_invariants(splitter):
    rng = random.Random(20240601)
    alphabet = list("aZé µ0123456789 .,:;?!-/()'\"%°–•_*\n\n\r\t\x00\x0b\u2028\u0301") + [
        "b.i.d.", "Dr.", "No. ", "PLAN:", ",", "1. ", "\n\n", "U.S.", "3.5", "1,000", "120/80",
    ]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120)))
        assert_invariants(text, splitter.split(text))
    for _ in range(200):
        text = "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(0, 400)))
        assert_invariants(text, splitter.split(text))


@pytest.mark.parametrize(
    "text",
    [
        "a" * 300_000,
        "." * 200_000,
        "A, " * 100_000,
        "HPI: x.\n" * 20_000,
        "ABC DEF " * 40_000,
        "x" + " " * 200_000 + "y",
    ],
    ids=["one-word", "dots", "commas", "headings", "caps", "spaces"],
)
def test_degenerate_inputs_do_not_raise(splitter, text):
    assert_invariants(text, splitter.split(text))


def test_one_megabyte_note_keeps_the_invariants(splitter, sample_notes):
    # Speed is measured in benchmarks.run (engine section), not asserted here.
    notes = [row["transcription"] for row in sample_notes]
    text = ("\n\n".join(notes) * 2)[:1_000_000]
    assert_invariants(text, splitter.split(text))


def test_custom_abbreviation_lists():
    splitter = TextSplitter(["mg."], ["approx."], number_prefixes=["no."])
    text = "Give approx. Ten mg. Then rest."
    assert sentence_texts(text, splitter.split(text)) == ["Give approx. Ten mg.", "Then rest."]
    assert [t.text for t in splitter.tokenize("Dr. Who")] == ["Dr", ".", "Who"]


def test_tokens_are_immutable_and_unpack_as_the_ner_featuriser_reads_them():
    from clinlake.pipelines.engine.ner.features import model_pieces

    token = Token(4, 9, "IL-2b")
    start, end, text = token
    assert (start, end, text) == (4, 9, "IL-2b") and token.end == 9
    with pytest.raises(AttributeError):
        token.start = 0  # type: ignore[misc]
    assert model_pieces([token, Token(10, 13, "fev")]) == [(4, 6, "IL"), (6, 7, "-"), (7, 9, "2b"), (10, 13, "fev")]


@pytest.mark.parametrize("char", [",", ".", "_", "'", "İ", "\u00a0", "½", "é", "-"])
def test_one_character_tokens_are_cut_as_the_piece_regexes_cut_them(char):
    """The NER featuriser and the ConText rules take a one-character token as its own piece without
    the regex; what they take must be what the regex finds (nothing for a space, "_" a word piece)."""
    from clinlake.pipelines.engine.assertion.context import _WORD, _split_pieces
    from clinlake.pipelines.engine.ner.features import model_pieces
    from clinlake.pipelines.engine.pieces import CORPUS_PIECE, WORD_PIECE

    text = f"a {char} b"
    tokens = (Token(0, 1, "a"), Token(2, 3, char), Token(4, 5, "b"))
    assert model_pieces(tokens) == [(0, 1, "a"), *((2 + m.start(), 2 + m.end(), m.group())
                                                    for m in CORPUS_PIECE.finditer(char)), (4, 5, "b")]
    pieces = _split_pieces(text, Sentence(0, 0, 5, tokens))
    expected = [(2 + m.start(), 2 + m.end(), m.group().lower(), _WORD.match(m.group()) is not None)
                for m in WORD_PIECE.finditer(char)]
    assert list(zip(pieces.starts, pieces.ends, pieces.norms, pieces.is_word)) == [
        (0, 1, "a", True), *expected, (4, 5, "b", True)]

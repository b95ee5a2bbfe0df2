"""Tests for the ConText-style assertion stage (pipelines/engine/assertion/context.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinlake.pipelines.evaluation.assertion_kit import evaluate_kit, whole_sentence
from clinlake.pipelines.corpora.negex_kit import locate_phrase
from clinlake.pipelines.engine.assertion.rules import (
    DEFAULT_RULES_PATH, PRESENT_PRIOR, SECTION_DEFAULT_CONFIDENCE, ContextRule, RuleError, load_rules,
)
from clinlake.pipelines.engine.assertion.context import ContextAssertion
from clinlake.pipelines.engine.types import ASSERTION_LABELS, AssertionResult, Sentence, Token
from clinlake.pipelines.engine.pieces import WORD_PIECE

KIT_DEVEL = Path(__file__).resolve().parents[3] / "shared" / "data" / "assertion" / "negex_kit_devel.tsv"
SECTION_DEFAULTS = {
    "family_history": "associated_with_someone_else",
    "past_medical_history": "historical",
    "past_surgical_history": "historical",
}
PREFIX = "Clinic note.\n"  # puts the sentence at a non-zero offset, as in a real note


def make_sentence(note: str, start: int, end: int, pattern: str = WORD_PIECE.pattern) -> Sentence:
    tokens = tuple(
        Token(start + m.start(), start + m.end(), m.group()) for m in re.finditer(pattern, note[start:end])
    )
    return Sentence(index=1, start=start, end=end, tokens=tokens)


def assess(engine: ContextAssertion, sentence_text: str, *phrases: str, section: str | None = None,
           pattern: str = WORD_PIECE.pattern) -> list[AssertionResult]:
    """Assess each phrase (its first case-insensitive occurrence) inside one sentence."""
    note = PREFIX + sentence_text
    start = len(PREFIX)
    sentence = make_sentence(note, start, len(note), pattern)
    targets = []
    for phrase in phrases:
        index = note.lower().index(phrase.lower(), start)
        targets.append((index, index + len(phrase)))
    return engine.assess(note, sentence, targets, section=section)


def one(engine: ContextAssertion, sentence_text: str, phrase: str, **kwargs) -> AssertionResult:
    return assess(engine, sentence_text, phrase, **kwargs)[0]


@pytest.fixture(scope="module")
def engine() -> ContextAssertion:
    return ContextAssertion.from_file(DEFAULT_RULES_PATH, section_defaults=SECTION_DEFAULTS)


# --- categories -------------------------------------------------------------------------


def test_forward_negation_reports_cue_in_note_offsets(engine):
    result = one(engine, "Patient denies chest pain.", "chest pain")
    assert result.assertion == "absent"
    assert not result.is_historical
    assert result.cue_category == "NEGATED_EXISTENCE"
    note = PREFIX + "Patient denies chest pain."
    assert note[result.cue_start : result.cue_end] == result.cue == "denies"


@pytest.mark.parametrize(
    "sentence, phrase",
    [
        ("Pulmonary embolism was ruled out.", "pulmonary embolism"),
        ("Blood cultures were negative.", "blood cultures"),
        ("The rash has resolved.", "rash"),
        ("Complications: none.", "complications"),
    ],
)
def test_backward_negation(engine, sentence, phrase):
    assert one(engine, sentence, phrase).assertion == "absent"


@pytest.mark.parametrize(
    "sentence, phrase",
    [
        ("Findings suspicious for pneumonia.", "pneumonia"),
        ("Rule out myocardial infarction.", "myocardial infarction"),
        ("R/O sepsis.", "sepsis"),
        ("Pneumonia cannot be excluded.", "pneumonia"),
        ("Atelectasis versus pneumonia.", "pneumonia"),
    ],
)
def test_possible(engine, sentence, phrase):
    assert one(engine, sentence, phrase).assertion == "possible"


@pytest.mark.parametrize(
    "sentence, phrase",
    [
        ("Return to the ED if you experience chest pain.", "chest pain"),
        ("Should he develop fever, call the clinic.", "fever"),
        ("Call for any bleeding, dizziness or fainting.", "fainting"),
    ],
)
def test_hypothetical(engine, sentence, phrase):
    assert one(engine, sentence, phrase).assertion == "hypothetical"


@pytest.mark.parametrize(
    "sentence, phrase",
    [
        ("She reports chest pain with exertion.", "chest pain"),
        ("Shortness of breath on exertion.", "shortness of breath"),
        ("Hives when exposed to penicillin.", "hives"),
    ],
)
def test_conditional(engine, sentence, phrase):
    assert one(engine, sentence, phrase).assertion == "conditional"


@pytest.mark.parametrize(
    "sentence, phrase",
    [
        ("Mother had breast cancer.", "breast cancer"),
        ("Family history of colon cancer.", "colon cancer"),
        ("Diabetes in his father.", "diabetes"),
    ],
)
def test_family(engine, sentence, phrase):
    result = one(engine, sentence, phrase)
    assert result.assertion == "associated_with_someone_else"
    assert result.cue_category == "FAMILY"


def test_relative_as_reporter_is_not_the_experiencer(engine):
    assert one(engine, "Daughter reports that he fell and has hip pain.", "hip pain").assertion == "present"


@pytest.mark.parametrize(
    "sentence, phrase",
    [
        ("History of myocardial infarction.", "myocardial infarction"),
        ("Status post appendectomy.", "appendectomy"),
        ("She had a stroke five years ago.", "stroke"),
    ],
)
def test_historical_is_a_flag_next_to_present(engine, sentence, phrase):
    result = one(engine, sentence, phrase)
    assert result.assertion == "present"
    assert result.is_historical
    assert result.cue_category == "HISTORICAL"
    assert result.confidence == PRESENT_PRIOR


def test_negated_history_is_absent_and_historical(engine):
    result = one(engine, "No history of diabetes.", "diabetes")
    assert (result.assertion, result.is_historical) == ("absent", True)


@pytest.mark.parametrize(
    "sentence, phrase, label",
    [
        ("Denies alcohol or other drug use.", "alcohol", "absent"),
        ("Denies alcohol or other drug use.", "drug use", "absent"),
        ("The patient smokes cigarettes.", "smokes cigarettes", "present"),
        ("COPD and tobacco use.", "tobacco use", "present"),
    ],
)
def test_target_direction_qualifies_only_its_own_target(engine, sentence, phrase, label):
    # Social-history habits are historical (NegEx kit convention) via direction: TARGET.
    result = one(engine, sentence, phrase)
    assert (result.assertion, result.is_historical) == (label, True)


@pytest.mark.parametrize("sentence, phrase", [("Admitted for alcohol withdrawal.", "alcohol withdrawal"),
                                              ("EtOH intoxication on arrival.", "EtOH intoxication")])
def test_acute_alcohol_states_are_not_social_history(engine, sentence, phrase):
    assert not one(engine, sentence, phrase).is_historical


def test_target_direction_leaves_neighbours_alone(engine):
    tobacco, copd = assess(engine, "Tobacco use and chest pain.", "tobacco use", "chest pain")
    assert tobacco.is_historical and not copd.is_historical


def test_target_direction_rule_in_a_custom_lexicon():
    rules = [ContextRule("remote", "HISTORICAL", "TARGET"), ContextRule("no", "NEGATED_EXISTENCE", "FORWARD")]
    engine = ContextAssertion(rules)
    own, other = assess(engine, "No remote fracture, no edema.", "remote fracture", "edema")
    assert (own.assertion, own.is_historical, own.cue) == ("absent", True, "No")
    assert (other.assertion, other.is_historical) == ("absent", False)


def test_present_by_default(engine):
    result = one(engine, "Chest x-ray shows pneumonia.", "pneumonia")
    assert result == AssertionResult("present", False, PRESENT_PRIOR)


# --- scope ------------------------------------------------------------------------------


def test_scope_stops_at_sentence_end(engine):
    note = "No fever. Cough present."
    second = make_sentence(note, 10, len(note))
    start = note.index("Cough")
    (result,) = engine.assess(note, second, [(start, start + 5)])
    assert result.assertion == "present"


def test_scope_stops_at_terminator(engine):
    fever, cough = assess(engine, "No fever but cough.", "fever", "cough")
    assert fever.assertion == "absent"
    assert cough.assertion == "present"


def test_scope_stops_at_semicolon(engine):
    assert one(engine, "No fever; cough.", "cough").assertion == "present"


def test_scope_stops_at_max_scope_word_count():
    engine = ContextAssertion([ContextRule("no", "NEGATED_EXISTENCE", "FORWARD")], max_scope=3)
    fever, rash = assess(engine, "No fever, chills, nausea, rash.", "fever", "rash")
    assert fever.assertion == "absent"  # punctuation does not count towards the budget
    assert rash.assertion == "present"  # fourth word after the cue


def test_rule_max_scope_overrides_engine_default():
    rules = [ContextRule("denies", "NEGATED_EXISTENCE", "FORWARD", max_scope=30)]
    engine = ContextAssertion(rules, max_scope=2)
    assert one(engine, "Denies fever, chills, nausea, vomiting, rash.", "rash").assertion == "absent"


def test_negation_and_uncertainty_cut_each_other(engine):
    effusion, atelectasis = assess(engine, "No effusion, likely atelectasis.", "effusion", "atelectasis")
    assert effusion.assertion == "absent"
    assert atelectasis.assertion == "possible"


def test_terminator_limited_to_categories():
    rules = [
        ContextRule("history of", "HISTORICAL", "FORWARD"),
        ContextRule("no", "NEGATED_EXISTENCE", "FORWARD"),
        ContextRule("recent", "TERMINATE", "TERMINATE", terminates=("HISTORICAL",)),
    ]
    engine = ContextAssertion(rules)
    vomiting = one(engine, "History of asthma and recent vomiting.", "vomiting")
    assert not vomiting.is_historical
    assert one(engine, "No recent vomiting.", "vomiting").assertion == "absent"


def test_cue_never_modifies_a_target_it_overlaps(engine):
    result = one(engine, "Dyspnea on exertion.", "dyspnea on exertion")
    assert result.assertion == "present"


# --- pseudo-triggers --------------------------------------------------------------------


def test_pseudo_blocks_overlapping_trigger(engine):
    assert one(engine, "No increase in pain.", "pain").assertion == "present"


def test_pseudo_inside_target_does_not_block(engine):
    pain, increase = assess(engine, "No increase in pain.", "pain", "increase in pain")
    assert pain.assertion == "present"
    assert increase.assertion == "absent"


def test_not_only_is_pseudo(engine):
    pain, swelling = assess(engine, "Not only pain but also swelling.", "pain", "swelling")
    assert pain.assertion == swelling.assertion == "present"


def test_history_of_present_illness_is_not_historical(engine):
    result = one(engine, "History of present illness: fever for three days.", "fever")
    assert result.assertion == "present"
    assert not result.is_historical


def test_gram_negative_is_not_a_negation(engine):
    assert one(engine, "Gram negative rods.", "rods").assertion == "present"


# --- several targets --------------------------------------------------------------------


def test_multiple_targets_get_their_own_status(engine):
    cancer, pain = assess(
        engine, "Mother had breast cancer; patient denies chest pain.", "breast cancer", "chest pain"
    )
    assert cancer.assertion == "associated_with_someone_else"
    assert pain.assertion == "absent"


def test_results_follow_target_order(engine):
    text = "Possible pneumonia, no effusion but history of asthma."
    pneumonia, effusion, asthma = assess(engine, text, "pneumonia", "effusion", "asthma")
    assert [pneumonia.assertion, effusion.assertion, asthma.assertion] == ["possible", "absent", "present"]
    assert asthma.is_historical


def test_no_targets_no_results(engine):
    note = "No fever."
    assert engine.assess(note, make_sentence(note, 0, len(note)), []) == []


def test_tokenizer_granularity_does_not_matter(engine):
    text = "Patient denies fever, chills; pneumonia was ruled out."
    by_regex = assess(engine, text, "fever", "chills", "pneumonia")
    by_whitespace = assess(engine, text, "fever", "chills", "pneumonia", pattern=r"\S+")
    assert by_regex == by_whitespace


def test_sentence_without_tokens_is_split_from_text(engine):
    note = "Denies fever."
    sentence = Sentence(0, 0, len(note), ())
    (result,) = engine.assess(note, sentence, [(7, 12)])
    assert result.assertion == "absent"


# --- section defaults -------------------------------------------------------------------


def test_family_history_section_default(engine):
    result = one(engine, "Colon cancer.", "colon cancer", section="family_history")
    assert result.assertion == "associated_with_someone_else"
    assert result.confidence == SECTION_DEFAULT_CONFIDENCE
    assert result.cue is None


def test_family_history_section_outranks_negation(engine):
    result = one(engine, "No diabetes.", "diabetes", section="family_history")
    assert result.assertion == "associated_with_someone_else"


def test_past_medical_history_section_sets_historical(engine):
    result = one(engine, "Diabetes.", "diabetes", section="past_medical_history")
    assert result.assertion == "present"
    assert result.is_historical
    denied = one(engine, "Denies asthma.", "asthma", section="past_medical_history")
    assert (denied.assertion, denied.is_historical) == ("absent", True)


def test_unknown_section_has_no_default(engine):
    result = one(engine, "Diabetes.", "diabetes", section="assessment")
    assert (result.assertion, result.is_historical) == ("present", False)


def test_section_default_values_are_validated():
    with pytest.raises(ValueError, match="family_history"):
        ContextAssertion.from_file(DEFAULT_RULES_PATH, section_defaults={"family_history": "relatives"})


# --- results and inputs -----------------------------------------------------------------


def test_results_are_well_formed(engine):
    text = "No fever, possible pneumonia, mother with asthma, return if rash, pain with walking."
    phrases = ("fever", "pneumonia", "asthma", "rash", "pain")
    for result in assess(engine, text, *phrases):
        assert result.assertion in ASSERTION_LABELS
        assert 0.0 <= result.confidence <= 1.0
        if result.cue is not None:
            assert (PREFIX + text)[result.cue_start : result.cue_end] == result.cue


def test_target_outside_sentence_is_rejected_without_text(engine):
    note = "Secret patient words. Denies fever."
    sentence = make_sentence(note, 22, len(note))
    with pytest.raises(ValueError) as excinfo:
        engine.assess(note, sentence, [(0, 6)])
    assert "Secret" not in str(excinfo.value)


# --- rule file validation ---------------------------------------------------------------


def write_rules(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = '  - {literal: "no", category: NEGATED_EXISTENCE, direction: FORWARD}\n'
NEG_FWD = "category: NEGATED_EXISTENCE, direction: FORWARD"


@pytest.mark.parametrize(
    "fields, expected",
    [
        (f'literal: "x", {NEG_FWD}, scope: 3', "unknown key 'scope'"),
        ('literal: "x", category: NEGATION, direction: FORWARD', "key 'category' has unknown value 'NEGATION'"),
        ('literal: "x", category: POSSIBLE_EXISTENCE, direction: AHEAD', "key 'direction' has unknown value 'AHEAD'"),
        ('literal: "x", direction: FORWARD', "missing required key 'category'"),
        ('literal: "x", category: NEGATED_EXISTENCE', "missing required key 'direction'"),
        (f"literal: no, {NEG_FWD}", "key 'literal' must be a non-empty string"),
        ('literal: "x", category: TERMINATE, direction: FORWARD', "key 'direction' must be 'TERMINATE'"),
        (f'literal: "x", {NEG_FWD}, max_scope: 0', "key 'max_scope'"),
        (f'literal: "x", {NEG_FWD}, confidence: 2', "key 'confidence'"),
        (f'literal: "x", pattern: "(", {NEG_FWD}', "key 'pattern' is not a valid regex"),
        (f'literal: "deny", pattern: "denies", {NEG_FWD}', "key 'pattern' does not match its own literal"),
        (f'literal: "x", {NEG_FWD}, terminates: [FAMILY]', "key 'terminates' is only valid"),
        ('literal: "but", category: TERMINATE, terminates: [KIN]', "key 'terminates' has unknown value 'KIN'"),
        ('literal: "NO", category: NEGATED_EXISTENCE, direction: BACKWARD', "key 'literal' duplicates rule #0"),
    ],
)
def test_rule_file_errors_name_rule_and_key(tmp_path, fields, expected):
    path = write_rules(tmp_path, "version: 1\nrules:\n" + GOOD + "  - {" + fields + "}\n")
    with pytest.raises(RuleError, match=re.escape(f"rule #1: {expected}")):
        load_rules(path)


def test_rule_file_top_level_is_validated(tmp_path):
    with pytest.raises(RuleError, match="unknown top-level key 'rule'"):
        load_rules(write_rules(tmp_path, "rule:\n" + GOOD))
    with pytest.raises(RuleError, match="unsupported version"):
        load_rules(write_rules(tmp_path, "version: 2\nrules:\n" + GOOD))
    with pytest.raises(RuleError, match="non-empty list"):
        load_rules(write_rules(tmp_path, "version: 1\nrules: []\n"))


def test_terminate_and_pseudo_rules_may_omit_direction(tmp_path):
    body = 'rules:\n  - {literal: "but", category: TERMINATE}\n  - {literal: "no increase", category: PSEUDO}\n'
    rules = load_rules(write_rules(tmp_path, body))
    assert [r.direction for r in rules] == ["TERMINATE", "PSEUDO"]


def test_shipped_lexicon_is_broad():
    rules = load_rules(DEFAULT_RULES_PATH)
    assert len(rules) >= 300
    categories = {rule.category for rule in rules}
    assert categories == {
        "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HYPOTHETICAL", "CONDITIONAL",
        "FAMILY", "HISTORICAL", "PSEUDO", "TERMINATE",
    }


# --- evaluation on the NegEx kit (regression floor) -------------------------------------


def test_locate_phrase_ignores_case_and_spacing():
    assert locate_phrase("chest   pain", "No CHEST PAIN today") == (3, 13)
    assert locate_phrase("absent", "nothing here") is None


def test_whole_sentence_tokenizes_with_offsets():
    sentence = whole_sentence("No fever.")
    assert [t.text for t in sentence.tokens] == ["No", "fever", "."]
    assert (sentence.start, sentence.end) == (0, 9)


@pytest.mark.skipif(not KIT_DEVEL.exists(), reason="NegEx kit not available")
def test_devel_split_floor():
    # Measured on devel (rules tuned on train only): negation accuracy 0.990, Negated F1
    # 0.977; temporality accuracy 0.953, Historical F1 0.784; experiencer accuracy 1.0.
    # Floors sit a little lower so harmless rule edits pass and regressions fail.
    engine = ContextAssertion.from_file(DEFAULT_RULES_PATH)
    evaluation = evaluate_kit(KIT_DEVEL, engine)
    assert evaluation.rows >= 480
    assert evaluation.accuracy["negation"] >= 0.98
    assert evaluation.per_class["negation"]["Negated"].f1 >= 0.96
    assert evaluation.accuracy["temporality"] >= 0.935
    assert evaluation.per_class["temporality"]["Historical"].f1 >= 0.76
    assert evaluation.accuracy["experiencer"] >= 0.99


def test_the_pattern_prefilter_matches_exactly_where_some_pattern_matches():
    """The rules' regexes are screened by one alternation; the ones starting at a word boundary share
    it (``\\b(?:X|Y)``), which must never drop a sentence a pattern would match."""
    import re

    from clinlake.pipelines.engine.assertion.lexicon import _prefilter, _top_level_alternation

    assert _top_level_alternation(r"\bfoo|bar") and not _top_level_alternation(r"\b(?:foo|bar)")
    assert not _top_level_alternation(r"\bfoo[|]") and not _top_level_alternation(r"\bfoo\|")
    assert not _top_level_alternation(r"\bx[]|]") and _top_level_alternation(r"\bx[^]]|y")
    patterns = [re.compile(p) for p in (r"\bfoo|bar", r"\bin\s+(?:19|20)\d\d\b", r"(?<![\w.])\d{1,2}\s*\)",
                                        r"\bwhen(?=\s[^.;]{1,60}?\boccurs\b)", r"\bx[|]y")]
    combined = _prefilter(patterns)
    assert combined.pattern.startswith(r"\b(?:(?:in\s+")  # the bounded ones factored, "\bfoo|bar" not
    texts = ["crowbar", "foo", "afoo", "in 1996", "in1996", "item 2)", "v2.3)", "when it occurs", "x|y",
             "ax|y", "nothing here", "when pain"]
    for text in texts:
        assert (combined.search(text) is not None) == any(p.search(text) for p in patterns), text

"""Tests for note section detection (pipelines/engine/sections.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinlake.pipelines.engine.sections import SectionDetector, section_at
from clinlake.pipelines.engine.types import Section

REPO = Path(__file__).resolve().parents[2]
SECTIONS = REPO / "conf" / "sections.yaml"

REQUIRED = {
    "chief_complaint", "history_of_present_illness", "past_medical_history", "past_surgical_history",
    "family_history", "social_history", "medications", "allergies", "review_of_systems", "physical_exam",
    "vital_signs", "labs", "imaging", "assessment", "plan", "assessment_and_plan", "diagnosis", "procedure",
    "indications", "hospital_course", "discharge_medications", "discharge_instructions", "impression",
    "findings", "subjective", "objective", "history",
}  # fmt: skip


@pytest.fixture(scope="module")
def detector() -> SectionDetector:
    return SectionDetector.from_file(SECTIONS)




def headings(text: str, sections: list[Section]) -> list[tuple[str, str]]:
    return [(s.name, text[s.start : s.heading_end]) for s in sections]


def assert_well_formed(text: str, sections: list[Section]) -> None:
    """Sections are ordered and contiguous from the first heading to the end of the text."""
    for section, following in zip(sections, sections[1:]):
        assert section.end == following.start
    for section in sections:
        assert section.start < section.heading_end <= section.end
        assert not text[section.start].isspace()
    if sections:
        assert sections[-1].end == len(text)


def test_config_covers_the_required_sections(detector):
    assert REQUIRED <= detector.names


@pytest.mark.parametrize(
    ("heading", "name"),
    [
        ("CHIEF COMPLAINT:", "chief_complaint"),
        ("CC:", "chief_complaint"),
        ("HPI:", "history_of_present_illness"),
        ("History of Present Illness:", "history_of_present_illness"),
        ("PMH:", "past_medical_history"),
        ("PAST MEDICAL HISTORY:", "past_medical_history"),
        ("PSH:", "past_surgical_history"),
        ("FH:", "family_history"),
        ("FAMILY HISTORY:", "family_history"),
        ("SH:", "social_history"),
        ("SOCIAL HISTORY:", "social_history"),
        ("MEDICATIONS:", "medications"),
        ("CURRENT MEDICATIONS:", "medications"),
        ("ALLERGIES:", "allergies"),
        ("ROS:", "review_of_systems"),
        ("PE:", "physical_exam"),
        ("PHYSICAL EXAMINATION:", "physical_exam"),
        ("Vitals:", "vital_signs"),
        ("LABS:", "labs"),
        ("IMAGING:", "imaging"),
        ("ASSESSMENT:", "assessment"),
        ("PLAN:", "plan"),
        ("A/P:", "assessment_and_plan"),
        ("ASSESSMENT AND PLAN:", "assessment_and_plan"),
        ("IMPRESSION AND PLAN:", "assessment_and_plan"),
        ("Impression / Plan:", "assessment_and_plan"),
        ("PREOPERATIVE DIAGNOSIS:", "diagnosis"),
        ("POSTOPERATIVE DIAGNOSES:", "diagnosis"),
        ("PROCEDURE:", "procedure"),
        ("INDICATIONS:", "indications"),
        ("HOSPITAL COURSE:", "hospital_course"),
        ("DISCHARGE MEDICATIONS:", "discharge_medications"),
        ("DISCHARGE INSTRUCTIONS:", "discharge_instructions"),
        ("IMPRESSION:", "impression"),
        ("FINDINGS:", "findings"),
        ("SUBJECTIVE:", "subjective"),
        ("OBJECTIVE:", "objective"),
        ("HISTORY:", "history"),
        ("assessment   and\tplan :", "assessment_and_plan"),
    ],
)
def test_heading_variants_map_to_canonical_names(detector, heading, name):
    text = f"{heading} Stable."
    assert detector.detect(text) == [Section(name, 0, len(text), len(heading))]


def test_line_headings_in_a_conventional_note(detector):
    text = (
        "Clinic note\n"
        "CHIEF COMPLAINT: Chest pain.\n"
        "HPI: 45M with pain.\n"
        "Past Medical History: HTN.\n"
        "MEDICATIONS\n"
        "Aspirin 81 mg.\n"
        "A / P: Rest."
    )
    sections = detector.detect(text)
    assert headings(text, sections) == [
        ("chief_complaint", "CHIEF COMPLAINT:"),
        ("history_of_present_illness", "HPI:"),
        ("past_medical_history", "Past Medical History:"),
        ("medications", "MEDICATIONS"),
        ("assessment_and_plan", "A / P:"),
    ]
    assert sections[0].start == text.index("CHIEF")
    meds = text.index("MEDICATIONS")
    assert sections[3] == Section("medications", meds, text.index("A / P"), meds + len("MEDICATIONS"))
    assert_well_formed(text, sections)


def test_mtsamples_comma_style(detector):
    text = "SUBJECTIVE:,  Sore throat.,MEDICATIONS: , None.,PLAN:,1.  Rest."
    assert len(text) == 63
    assert detector.detect(text) == [
        Section("subjective", 0, 27, 11),
        Section("medications", 27, 48, 39),
        Section("plan", 48, 63, 53),
    ]


def test_headings_after_comma_space_and_semicolon(detector):
    text = "Seen today, ALLERGIES: none; PLAN:1. Rest"
    assert headings(text, detector.detect(text)) == [("allergies", "ALLERGIES:"), ("plan", "PLAN:")]


def test_sample_note_zero_sections_in_order(detector, sample_notes):
    note = [row["transcription"] for row in sample_notes][0]
    sections = detector.detect(note)
    assert headings(note, sections) == [
        ("subjective", "SUBJECTIVE:"),
        ("medications", "MEDICATIONS:"),
        ("allergies", "ALLERGIES:"),
        ("objective", "OBJECTIVE:"),
        ("vital_signs", "Vitals:"),
        ("assessment", "ASSESSMENT:"),
        ("plan", "PLAN:"),
    ]
    assert sections[0].start == 0
    assert section_at(sections, note.index("Ortho Tri-Cyclen")) == "medications"
    assert section_at(sections, note.index("Allergic rhinitis")) == "assessment"
    assert section_at(sections, note.index("Zyrtec instead")) == "plan"
    assert_well_formed(note, sections)


def test_mixed_case_unknown_labels_do_not_start_sections(detector):
    text = "PHYSICAL EXAM: General: well.,Neck:  Supple.,Lungs:  Clear."
    sections = detector.detect(text)
    assert sections == [Section("physical_exam", 0, len(text), 14)]
    assert section_at(sections, text.index("Supple")) == "physical_exam"


def test_subheadings_stay_inside_their_section(detector):
    text = "PHYSICAL EXAMINATION: HEENT: Normal. NECK: Supple. BP: 120/80.,ASSESSMENT: Well."
    assert headings(text, detector.detect(text)) == [
        ("physical_exam", "PHYSICAL EXAMINATION:"),
        ("assessment", "ASSESSMENT:"),
    ]


def test_unknown_caps_heading_is_named_by_its_text(detector):
    text = "OPERATIVE NOTE: Uneventful.,MISCELLANEOUS/EATING HISTORY: None."
    assert headings(text, detector.detect(text)) == [
        ("operative_note", "OPERATIVE NOTE:"),
        ("miscellaneous_eating_history", "MISCELLANEOUS/EATING HISTORY:"),
    ]
    strict = SectionDetector.from_file(SECTIONS, unknown_caps_headings=False)
    assert strict.detect(text) == []


def test_what_is_not_a_heading(detector):
    for text in [
        "A: yes",  # no word of two letters
        "Random label: value",  # mixed case, unknown
        "SEEN AT 10:30 TODAY",  # a time
        "Link. HTTP://EXAMPLE.ORG",  # a link
        "The plan: rest",  # not at a line start or after punctuation
        "PLAN FOR TOMORROW\nRest.",  # caps line without colon, not a known variant
        "X" * 70 + ": long",  # over 60 characters
        "",
    ]:
        assert detector.detect(text) == [], text


def test_caps_line_without_colon_must_match_a_variant(detector):
    text = "Note.\nPLAN\nRest.\n  ASSESSMENT AND PLAN  \nGood."
    assert headings(text, detector.detect(text)) == [
        ("plan", "PLAN"),
        ("assessment_and_plan", "ASSESSMENT AND PLAN"),
    ]


def test_section_at(detector):
    text = "Intro. HPI: Cough. PLAN: Rest."
    sections = detector.detect(text)
    assert sections == [Section("history_of_present_illness", 7, 19, 11), Section("plan", 19, 30, 24)]
    assert section_at(sections, 0) is None  # before the first heading
    assert section_at(sections, 6) is None
    assert section_at(sections, 7) == "history_of_present_illness"
    assert section_at(sections, 18) == "history_of_present_illness"
    assert section_at(sections, 19) == "plan"
    assert section_at(sections, 29) == "plan"
    assert section_at(sections, 30) is None  # end of text
    assert section_at([], 3) is None


def test_all_sample_notes(detector, sample_notes):
    notes = [row["transcription"] for row in sample_notes]
    with_sections = 0
    for note in notes:
        sections = detector.detect(note)
        assert_well_formed(note, sections)
        with_sections += bool(sections)
    assert with_sections >= 300


def test_custom_mapping_and_flat_yaml(tmp_path):
    path = tmp_path / "sections.yaml"
    path.write_text("chief_complaint: [CC, Reason for visit]\nplan: []\n", encoding="utf-8")
    detector = SectionDetector.from_file(path, unknown_caps_headings=False)
    text = "Reason  for visit: cough.\nPlan: rest.\nHEENT: ok"
    assert headings(text, detector.detect(text)) == [
        ("chief_complaint", "Reason  for visit:"),
        ("plan", "Plan:"),
    ]

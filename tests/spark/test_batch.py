"""The engine's Arrow interface: one row out per row in, bad input quarantined, exact offsets."""
import pyarrow as pa
import pytest

from clinlake.pipelines.spark.batch import Limits, annotate_batch, annotate_note, entity_record
from clinlake.schemas.tables import NOTE_RESULT_COLUMNS

GOOD = ("HISTORY OF PRESENT ILLNESS: The patient denies chest pain. She has diabetes.\n"
        "FAMILY HISTORY: Mother had breast cancer.\nMEDICATIONS: Metformin 500 mg b.i.d.")


def batch(ids, texts, text_type=pa.binary(), extra=None):
    columns = {"note_id": pa.array(ids, pa.string()), "text": pa.array(texts, text_type)}
    columns.update(extra or {})
    return pa.RecordBatch.from_pydict(columns)


def test_good_note_entities_offsets_sections_assertions(pipeline):
    row = annotate_note(pipeline, "n1", GOOD, None, Limits())
    assert row["status"] == "annotated" and row["reason"] is None
    found = {(e["chunk"], e["label"]): e for e in row["entities"]}
    for e in row["entities"]:
        assert GOOD[e["begin"]:e["end"] + 1] == e["chunk"]  # inclusive end
    assert found[("pain", "PROBLEM")]["assertion"] == "absent"
    assert found[("pain", "PROBLEM")]["assertion_cue"] == "denies"
    assert found[("pain", "PROBLEM")]["section"] == "history_of_present_illness"
    assert not any(e["chunk"] in ("ILLNESS", "MEDICATIONS") for e in row["entities"])  # headings are not findings
    assert found[("diabetes", "PROBLEM")]["assertion"] == "present"
    assert found[("breast cancer", "PROBLEM")]["assertion"] == "associated_with_someone_else"
    assert found[("breast cancer", "PROBLEM")]["section"] == "family_history"
    assert found[("Metformin", "TREATMENT")]["section"] == "medications"
    assert row["entity_count"] == len(row["entities"]) == 4


def test_entity_ids_are_deterministic_and_versioned(pipeline):
    first = [e["entity_id"] for e in annotate_note(pipeline, "a", GOOD, None, Limits())["entities"]]
    again = [e["entity_id"] for e in annotate_note(pipeline, "b", GOOD, None, Limits())["entities"]]
    assert first == again and len(set(first)) == len(first)
    entity = pipeline.annotate(GOOD)[0]
    assert entity_record(entity, "other-version", "x" * 64)["entity_id"] != first[0]


@pytest.mark.parametrize(
    "note_id, raw, reason",
    [
        (None, "Chest pain.", "null_id"),
        ("n", None, "null_text"),
        ("n", "", "empty_text"),
        ("n", " \n\t ", "empty_text"),
        ("n", b"chest pain \xff\xfe", "invalid_utf8"),
        ("n", b"chest \xed\xa0\x80 pain", "invalid_utf8"),  # an encoded lone surrogate
        ("n", "chest \ud800 pain", "invalid_surrogates"),
        ("n", "chest\x00pain", "control_characters"),
        ("n", "chest\x1bpain", "control_characters"),
        ("n", 12345, "text_not_string"),
        ("n", "x" * 5_000_001, "text_too_long"),
    ],
)
def test_bad_input_is_quarantined_with_reason(pipeline, note_id, raw, reason):
    row = annotate_note(pipeline, note_id, raw, None, Limits(max_text_chars=1_000_000))
    assert (row["status"], row["reason"], row["entity_count"], row["entities"]) == ("quarantined", reason, 0, [])
    assert row["detail"]
    assert "chest" not in row["detail"] and "pain" not in row["detail"]  # PHI never in details


def test_control_characters_can_be_allowed(pipeline):
    row = annotate_note(pipeline, "n", "Chest pain.\x00", None, Limits(allow_control_characters=True))
    assert row["status"] == "annotated"


def test_pre_reason_from_spark_side_wins(pipeline):
    row = annotate_note(pipeline, "n", "Chest pain.", "duplicate_id:note id occurs 2 times", Limits())
    assert (row["status"], row["reason"], row["detail"]) == ("quarantined", "duplicate_id", "note id occurs 2 times")
    assert row["quarantined_text"] == "Chest pain." and row["text_sha256"]


class ExplodingPipeline:
    version = "test"
    chunk_columns: list[str] = []

    def annotate_many(self, texts, chunks=None):
        raise RuntimeError(f"boom on {texts}")


class OneBadNotePipeline:
    """Delegates to a real pipeline but hands back a failure for notes that mention 'boom'."""

    def __init__(self, pipeline):
        self.inner, self.version, self.chunk_columns = pipeline, pipeline.version, []

    def annotate_many(self, texts, chunks=None):
        return [KeyError("note 7") if "boom" in t else r for t, r in zip(texts, self.inner.annotate_many(texts))]


def test_engine_error_quarantines_without_text():
    row = annotate_note(ExplodingPipeline(), "n", "secret diagnosis", None, Limits())
    assert (row["status"], row["reason"]) == ("quarantined", "engine_error")
    assert "secret" not in row["detail"]


def test_engine_errors_quarantine_notes_one_by_one_in_a_batch(pipeline):
    texts = [GOOD, "secret boom words", "No fever.", "secret boom again"]
    out = annotate_batch(ExplodingPipeline(), batch(["a", "b", "c", "d"], [t.encode() for t in texts]))
    assert out.column("reason").to_pylist() == ["engine_error"] * 4
    assert not any("secret" in d for d in out.column("detail").to_pylist())
    out = annotate_batch(OneBadNotePipeline(pipeline), batch(["a", "b", "c", "d"], [t.encode() for t in texts]))
    assert out.column("status").to_pylist() == ["annotated", "quarantined", "annotated", "quarantined"]
    assert out.column("detail").to_pylist() == [None, "KeyError in the annotation engine", None,
                                                "KeyError in the annotation engine"]
    alone = annotate_note(pipeline, "a", GOOD, None, Limits())
    assert out.column("entities").to_pylist()[0] == alone["entities"] and alone["entity_count"] > 0


def test_batch_keeps_row_count_order_and_passthrough(pipeline):
    texts = [GOOD.encode(), None, b"\xff", "No fever.".encode()]
    extra = {"patient_id": pa.array([1, 2, 3, 4], pa.int64())}
    out = annotate_batch(pipeline, batch(["a", "b", "c", None], texts, extra=extra), passthrough=["patient_id"])
    assert out.num_rows == 4
    assert out.column("note_id").to_pylist() == ["a", "b", "c", None]
    assert out.column("status").to_pylist() == ["annotated", "quarantined", "quarantined", "quarantined"]
    assert out.column("reason").to_pylist() == [None, "null_text", "invalid_utf8", "null_id"]
    assert out.column("patient_id").to_pylist() == [1, 2, 3, 4]
    # The Spark NLP arrays are derived in Spark from these entities (tests/spark/test_sparknlp_columns.py).
    assert out.schema.names[:len(NOTE_RESULT_COLUMNS)] == [c.name for c in NOTE_RESULT_COLUMNS]
    assert "ner_chunk" not in out.schema.names


def test_string_column_with_invalid_utf8_does_not_fail_the_batch(pipeline):
    data = b"Chest pain.\xff"
    offsets = pa.py_buffer(pa.array([0, 11, len(data)], pa.int32()).buffers()[1])
    # Arrow validates UTF-8 on construction; from_buffers lets us build what a bad file yields.
    strings = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(data)])
    out = annotate_batch(pipeline, pa.RecordBatch.from_pydict({"note_id": pa.array(["a", "b"]), "text": strings}))
    assert out.column("status").to_pylist() == ["annotated", "quarantined"]
    assert out.column("reason").to_pylist() == [None, "invalid_utf8"]


def test_offsets_exact_on_every_sample_note(pipeline, sample_notes):
    total = 0
    for note in sample_notes:
        text = note["transcription"]
        row = annotate_note(pipeline, note[""], text, None, Limits())
        if not text.strip():  # the real sample has a few empty transcriptions
            assert (row["status"], row["reason"]) == ("quarantined", "empty_text")
            continue
        assert row["status"] == "annotated", row["reason"]
        for e in row["entities"]:
            assert text[e["begin"]:e["end"] + 1] == e["chunk"]
            assert 0 <= e["begin"] <= e["end"] < len(text)
            assert e["assertion"] in {"present", "absent", "possible", "conditional", "hypothetical",
                                      "associated_with_someone_else"}
            assert 0.0 <= e["assertion_confidence"] <= 1.0
        total += row["entity_count"]
    assert total > 5 * len(sample_notes)  # the default clinical model finds real entities in real notes


def test_colonless_caps_headings_are_not_entities(pipeline):
    # MTSamples lost line breaks and sometimes the colon: ",MEDICATIONS,1." and ",PHYSICAL EXAMINATION,GENERAL:".
    text = ("Otherwise noncontributory.,MEDICATIONS,1.  Aspirin.,PHYSICAL EXAMINATION,GENERAL:  Well.,"
            "NEUROLOGIC:  No focal deficit. Medications were reviewed.")
    chunks = [e.text for e in pipeline.annotate(text)]
    assert "MEDICATIONS" not in chunks and "PHYSICAL EXAMINATION" not in chunks and "NEUROLOGIC" not in chunks
    assert "Aspirin" in chunks

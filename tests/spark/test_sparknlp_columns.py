"""note_status's Spark NLP arrays, derived in Spark SQL from the nested entities."""
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from clinlake.pipelines.spark.batch import annotate_batch
from clinlake.pipelines.spark.sparknlp_columns import sparknlp_columns
from clinlake.schemas.spark import spark_schema
from clinlake.schemas.tables import ENTITY_COLUMNS, NOTE_RESULT_COLUMNS, STATUS_ANNOTATED

RESULT_COLUMNS = tuple(c for c in NOTE_RESULT_COLUMNS if c.name in ("note_id", "status", "entities"))


def entity(entity_id, begin, end, chunk, label, confidence, assertion=None, assertion_confidence=None,
           is_historical=None, sentence_index=0):
    values = {c.name: None for c in ENTITY_COLUMNS}
    values.update(entity_id=entity_id, chunk=chunk, begin=begin, end=end, label=label, ner_confidence=confidence,
                  ner_model="m@1", assertion=assertion, assertion_confidence=assertion_confidence,
                  is_historical=is_historical, sentence_index=sentence_index)
    return values


def derived(spark, rows):
    df = spark.createDataFrame(rows, schema=spark_schema(RESULT_COLUMNS))
    return df.select("note_id", *sparknlp_columns(F.col("entities"), F.col("status") == STATUS_ANNOTATED))


def test_annotations_carry_offsets_labels_indices_and_metadata(spark, tmp_path):
    entities = [entity("e0", 4, 9, "fever", "PROBLEM", 0.98765, "absent", 0.9, False),
                entity("e1", 15, 20, "aspirin", "TREATMENT", 0.5, sentence_index=1),  # no assertion
                entity("e2", 30, 37, "diabetes", "PROBLEM", 0.03125, "present", 0.123449, None, 2)]
    out = derived(spark, [("n1", STATUS_ANNOTATED, entities), ("q1", "quarantined", [])])
    path = str(tmp_path / "status")
    out.write.parquet(path)
    table = pq.read_table(path).sort_by("note_id").to_pylist()
    annotated, quarantined = table
    assert quarantined["ner_chunk"] is None and quarantined["assertion_annotations"] is None
    chunks = annotated["ner_chunk"]
    assert [(c["annotatorType"], c["begin"], c["end"], c["result"], c["embeddings"]) for c in chunks] == [
        ("chunk", 4, 9, "fever", []), ("chunk", 15, 20, "aspirin", []), ("chunk", 30, 37, "diabetes", [])]
    # Metadata as stored: NerConverter's keys plus entity_id and ner_source, in this order.
    assert chunks[2]["metadata"] == [("sentence", "2"), ("chunk", "2"), ("entity_id", "e2"), ("entity", "PROBLEM"),
                                     ("confidence", "0.0313"), ("ner_source", "m@1")]
    assert [dict(c["metadata"])["confidence"] for c in chunks] == ["0.9877", "0.5000", "0.0313"]
    assertions = annotated["assertion_annotations"]
    # Entities without an assertion are left out; "chunk" still counts every entity of the note.
    assert [(a["annotatorType"], a["begin"], a["end"], a["result"]) for a in assertions] == [
        ("assertion", 4, 9, "absent"), ("assertion", 30, 37, "present")]
    assert [a["metadata"] for a in assertions] == [
        [("sentence", "0"), ("chunk", "0"), ("entity_id", "e0"), ("confidence", "0.9000"), ("is_historical", "false")],
        [("sentence", "2"), ("chunk", "2"), ("entity_id", "e2"), ("confidence", "0.1234"), ("is_historical", "false")]]


def test_annotated_note_without_entities_has_empty_arrays(spark):
    row = derived(spark, [("n1", STATUS_ANNOTATED, [])]).first()
    assert (row["ner_chunk"], row["assertion_annotations"]) == ([], [])


def test_engine_output_round_trip(spark, pipeline, tmp_path):
    """Real engine rows through Spark: one chunk per entity, confidences within rounding."""
    import pyarrow as pa

    texts = ["The patient denies chest pain. She has diabetes and takes metformin.",
             "FAMILY HISTORY: Mother had breast cancer.\nNo fever."]
    batch = pa.RecordBatch.from_pydict({"note_id": ["a", "b"], "text": [t.encode() for t in texts]})
    out = annotate_batch(pipeline, batch)
    path = tmp_path / "results.parquet"
    pq.write_table(pa.Table.from_batches([out]).select(["note_id", "status", "entities"]), path)
    rows = {r["note_id"]: r for r in spark.read.parquet(str(path))
            .select("note_id", "entities", *sparknlp_columns(F.col("entities"), F.col("status") == STATUS_ANNOTATED))
            .collect()}
    assert sum(len(r["entities"]) for r in rows.values()) >= 4
    for row in rows.values():
        assert [(c.begin, c.end, c.result, c.metadata["entity"], c.metadata["entity_id"]) for c in row["ner_chunk"]] \
            == [(e.begin, e.end, e.chunk, e.label, e.entity_id) for e in row["entities"]]
        for chunk, e in zip(row["ner_chunk"], row["entities"]):
            assert abs(float(chunk.metadata["confidence"]) - e.ner_confidence) <= 5e-5
        asserted = [e for e in row["entities"] if e.assertion is not None]
        assert [(a.result, a.metadata["entity_id"]) for a in row["assertion_annotations"]] == [
            (e.assertion, e.entity_id) for e in asserted]

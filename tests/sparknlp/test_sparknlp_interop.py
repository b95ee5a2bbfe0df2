"""Spark NLP interop both ways, with the real Spark NLP JVM jar (spark-nlp_2.12 5.5.3 on Spark 3.5,
in a subprocess: see .ci/sparknlp-env.sh for why not clinlake's Spark 4.1).

1. Spark NLP reads ours: Chunk2Doc and ChunkEmbeddings take the ``ner_chunk`` column a real
   clinlake job wrote as their ``chunk`` input.
2. We read theirs: a NerCrf model trained here writes NerConverter chunks into the input table;
   clinlake's job takes them (``pipeline.ner: [{column: ner_chunk}]``) through sections, assertion,
   the quality gate and Delta publishing.
"""
from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from clinlake.pipelines.config import parse_config
from clinlake.pipelines.spark.job import run_annotate
from clinlake.pipelines.spark.tables import read_delta

from interop_data import NOTES, vector, write_training_files

CHUNK_KEYS = {"entity", "sentence", "chunk", "confidence", "entity_id", "ner_source"}


@pytest.fixture(scope="module")
def work(spark, sparknlp_env, tmp_path_factory):
    """clinlake's job on NOTES (ours.parquet: its chunk column with the text), then one Spark NLP
    session: its annotators read ours, and a NerCrf model trained there writes theirs."""
    work = tmp_path_factory.mktemp("sparknlp")
    write_training_files(work)
    pq.write_table(pa.table({"note_id": list(NOTES), "text": list(NOTES.values())}), work / "notes.parquet")
    config = parse_config({"input": {"path": str(work / "notes.parquet")},
                           "output": {"path": str(work / "ours"), "format": "parquet"},
                           "quality": {"mode": "off", "report": False}})
    assert run_annotate(spark, config, run_id="interop-ours").status == "succeeded"
    status = spark.read.parquet(str(work / "ours" / "note_status"))
    notes = spark.read.parquet(str(work / "notes.parquet"))
    status.select("note_id", "ner_chunk").join(notes, "note_id").write.parquet(str(work / "ours.parquet"))
    sparknlp_env.run(work, "read-ours", "write-ner")
    return work


def pooled(chunk: str) -> list[float]:
    vectors = [vector(w) for w in re.findall(r"\w+", chunk)]
    return [round(sum(v[d] for v in vectors) / len(vectors), 4) for d in range(2)]


def test_sparknlp_annotators_read_our_chunk_column(spark, work):
    entities = spark.read.parquet(str(work / "ours" / "entities")).orderBy("note_id", "begin").collect()
    assert len(entities) >= 5
    got = {r["note_id"]: r for r in json.loads((work / "read_ours.json").read_text())}
    assert json.loads((work / "versions.json").read_text())["sparknlp"] == "5.5.3"
    assert set(got) == set(NOTES)
    for note_id in NOTES:
        ours = [e for e in entities if e["note_id"] == note_id]
        expected = [(e["begin"], e["end"], e["chunk"]) for e in ours]
        # Chunk2Doc: one document per chunk, same offsets (end inclusive on both sides) and text.
        assert [(a["begin"], a["end"], a["result"]) for a in got[note_id]["chunk_doc"]] == expected
        assert all(NOTES[note_id][b:e + 1] == c for b, e, c in expected)
        # ChunkEmbeddings pools the vectors of the tokens inside [begin, end]: the right tokens
        # only if our offsets mean what Spark NLP's mean.
        pooled_rows = got[note_id]["chunk_embeddings"]
        assert [(a["begin"], a["end"], a["result"]) for a in pooled_rows] == expected
        assert [a["embeddings"] for a in pooled_rows] == [pytest.approx(pooled(c), abs=1e-3) for _, _, c in expected]
        assert [a["metadata"]["entity"] for a in pooled_rows] == [e["label"] for e in ours]
        for annotation, entity in zip(got[note_id]["chunk_doc"], ours):
            assert CHUNK_KEYS <= set(annotation["metadata"]) and annotation["metadata"]["entity_id"] == entity["entity_id"]


EXPECTED = {  # (note, chunk, section, assertion) from the user's chunks through clinlake's engine
    ("t1", "chest pain", "history_of_present_illness", "absent"),
    ("t1", "diabetes", "history_of_present_illness", "present"),
    ("t2", "pneumonia", "assessment", "possible"),
    ("t2", "pulmonary embolism", "assessment", "absent"),
    ("t3", "breast cancer", "family_history", "associated_with_someone_else"),
    ("t4", "chest pain", "plan", "hypothetical"),
}


def test_clinlake_reads_a_sparknlp_ner_column(spark, work):
    theirs = pq.read_table(work / "theirs.parquet").to_pylist()
    found = {(r["note_id"], a["result"], dict(a["metadata"])["entity"]) for r in theirs for a in r["ner_chunk"]}
    assert found == {(n, c, "DISEASE") for n, c, _, _ in EXPECTED}  # the user's model learnt its chunks
    # Two broken rows: chunks shifted off their text, and no chunk array at all.
    t1 = next(r for r in theirs if r["note_id"] == "t1")
    shifted = [{**a, "begin": a["begin"] + 1, "end": a["end"] + 1} for a in t1["ner_chunk"]]
    theirs += [{**t1, "note_id": "shifted", "ner_chunk": shifted}, {**t1, "note_id": "no_chunks", "ner_chunk": None}]
    pq.write_table(pa.Table.from_pylist(theirs, schema=pq.read_schema(next((work / "theirs.parquet").glob("*.parquet")))),
                   work / "input.parquet")

    config = parse_config({
        "input": {"path": str(work / "input.parquet")},
        "output": {"path": str(work / "lake"), "format": "delta"},
        "pipeline": {"ner": [{"column": "ner_chunk", "labels": ["PROBLEM"], "label_map": {"DISEASE": "PROBLEM"}}]},
        "quality": {"mode": "enforce", "data_docs": False, "report": False}})
    summary = run_annotate(spark, config, run_id="interop-theirs")
    assert (summary.status, summary.gate_status) == ("succeeded", "passed"), summary.gate_summary
    assert (summary.notes_read, summary.notes_annotated, summary.notes_quarantined) == (7, 5, 2)
    assert summary.quarantine_reasons == {"invalid_ner_chunk": 2}

    lake = str(work / "lake")
    entities = read_delta(spark, f"{lake}/entities").collect()
    assert {(e["note_id"], e["chunk"], e["section"], e["assertion"]) for e in entities} == EXPECTED
    for e in entities:
        assert NOTES[e["note_id"]][e["begin"]:e["end"] + 1] == e["chunk"]
        assert (e["label"], e["ner_model"]) == ("PROBLEM", "column:ner_chunk") and 0 <= e["ner_confidence"] <= 1
    status = {r["note_id"]: r for r in read_delta(spark, f"{lake}/note_status").collect()}
    assert set(status) == set(NOTES) | {"shifted", "no_chunks"}
    assert status["t5"]["status"] == "annotated" and status["t5"]["entity_count"] == 0
    assert status["shifted"]["detail"].startswith("NER column 'ner_chunk', chunk 0 (DISEASE): its text differs")
    assert status["no_chunks"]["detail"] == "NER column 'ner_chunk' is null for this note"
    runs = read_delta(spark, f"{lake}/runs").where(F.col("run_id") == "interop-theirs").first()
    assert runs["ner_stages"] == "column:ner_chunk"

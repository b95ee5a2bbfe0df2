"""The Spark NLP side of the interop tests, run by the Spark NLP test environment's Python
(pyspark 3.5 + spark-nlp 5.5.3, the real JVM jar; see .ci/sparknlp-env.sh), never imported by
clinlake or its own test process.

  sparknlp_side.py JARS_DIR WORK COMMAND...   one Spark session runs the commands in order:
    read-ours   Spark NLP annotators take clinlake's chunk column (WORK/ours.parquet)
    write-ner   train a tiny NerCrf model, write its chunks as clinlake input (WORK/theirs.parquet)

WORK holds the inputs (notes.parquet, vectors.txt, pos.txt, ner.conll) and gets the outputs.
Everything is trained here from those files: nothing is downloaded.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pyspark.ml import Pipeline
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

DIM = 2  # the word vectors' dimension in WORK/vectors.txt


def session(jars_dir: Path) -> SparkSession:
    jars = ",".join(str(p) for p in sorted(jars_dir.glob("*.jar")))
    spark = (SparkSession.builder.master("local[1]").appName("sparknlp-interop").config("spark.jars", jars)
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
             .config("spark.driver.memory", "1g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def text_stages(work: Path) -> list:
    from sparknlp.annotator import SentenceDetector, Tokenizer, WordEmbeddings
    from sparknlp.base import DocumentAssembler

    return [DocumentAssembler().setInputCol("text").setOutputCol("document"),
            SentenceDetector().setInputCols(["document"]).setOutputCol("sentence"),
            Tokenizer().setInputCols(["sentence"]).setOutputCol("token"),
            WordEmbeddings().setStoragePath(str(work / "vectors.txt"), "TEXT").setDimension(DIM)
            .setStorageRef("interop_vectors").setInputCols(["sentence", "token"]).setOutputCol("embeddings")]


def read_ours(spark: SparkSession, work: Path) -> None:
    """clinlake's ``ner_chunk`` column as the ``chunk`` input of Chunk2Doc and ChunkEmbeddings."""
    from sparknlp.annotator import Chunk2Doc, ChunkEmbeddings

    notes = spark.read.parquet(str(work / "ours.parquet"))
    # Spark NLP finds an annotator's input by the column's annotatorType metadata.
    notes = notes.withColumn("ner_chunk", F.col("ner_chunk").alias("ner_chunk", metadata={"annotatorType": "chunk"}))
    # ChunkEmbeddings takes a chunk's tokens from the sentence its metadata "sentence" names; ours
    # counts clinlake's sentences, so the tokens here come from the whole note as sentence 0.
    whole_note = F.transform("ner_chunk", lambda a: a.withField("metadata", F.map_concat(
        F.map_filter(a["metadata"], lambda k, v: k != "sentence"), F.create_map(F.lit("sentence"), F.lit("0")))))
    notes = notes.withColumn("doc_chunk", whole_note.alias("doc_chunk", metadata={"annotatorType": "chunk"}))
    document, _, tokenizer, embeddings = text_stages(work)
    stages = [document, tokenizer.setInputCols(["document"]), embeddings.setInputCols(["document", "token"]),
              Chunk2Doc().setInputCols(["ner_chunk"]).setOutputCol("chunk_doc"),
              ChunkEmbeddings().setInputCols(["doc_chunk", "embeddings"]).setOutputCol("chunk_embeddings")
              .setPoolingStrategy("AVERAGE").setSkipOOV(True)]
    out = Pipeline(stages=stages).fit(notes).transform(notes)
    rows = out.select("note_id", "chunk_doc", "chunk_embeddings").orderBy("note_id").collect()
    (work / "read_ours.json").write_text(json.dumps([{
        "note_id": r["note_id"],
        "chunk_doc": [_plain(a) for a in r["chunk_doc"]],
        "chunk_embeddings": [_plain(a) | {"embeddings": [round(x, 4) for x in a["embeddings"]]}
                             for a in r["chunk_embeddings"]],
    } for r in rows], indent=1))


def write_ner(spark: SparkSession, work: Path) -> None:
    """A user's own Spark NLP NER model, trained here (POS perceptron + NerCrf on tiny local
    files); its NerConverter chunks go into the input table clinlake reads."""
    from sparknlp.annotator import NerConverter, NerCrfApproach, PerceptronApproach
    from sparknlp.training import CoNLL, POS

    texts = text_stages(work)
    pos_data = POS().readDataset(spark, str(work / "pos.txt"), delimiter="|", outputPosCol="tags",
                                 outputDocumentCol="pos_document")
    perceptron = (PerceptronApproach().setInputCols(["sentence", "token"]).setOutputCol("pos")
                  .setPosColumn("tags").setNIterations(5))
    pos = Pipeline(stages=[*texts[:3], perceptron]).fit(pos_data).stages[-1]
    conll = CoNLL().readDataset(spark, str(work / "ner.conll"))  # document, sentence, token, pos, label
    conll = Pipeline(stages=[texts[3]]).fit(conll).transform(conll)
    ner = (NerCrfApproach().setInputCols(["sentence", "token", "pos", "embeddings"]).setLabelColumn("label")
           .setOutputCol("ner").setMinEpochs(10).setMaxEpochs(30).setL2(0.001).setRandomSeed(7)  # tiny data: weak L2
           .setIncludeConfidence(True)
           .fit(conll))
    converter = NerConverter().setInputCols(["sentence", "token", "ner"]).setOutputCol("ner_chunk")
    notes = spark.read.parquet(str(work / "notes.parquet"))
    model = Pipeline(stages=[*texts, pos, ner, converter]).fit(notes)
    out = model.transform(notes).select("note_id", "text", "ner_chunk")
    out.write.mode("overwrite").parquet(str(work / "theirs.parquet"))
    rows = out.orderBy("note_id").collect()
    (work / "write_ner.json").write_text(json.dumps(
        [{"note_id": r["note_id"], "ner_chunk": [_plain(a) for a in r["ner_chunk"]]} for r in rows], indent=1))


def _plain(annotation) -> dict:
    return {"annotatorType": annotation["annotatorType"], "begin": annotation["begin"], "end": annotation["end"],
            "result": annotation["result"], "metadata": dict(annotation["metadata"])}


def main(argv: list[str]) -> int:
    jars_dir, work, commands = Path(argv[0]), Path(argv[1]), argv[2:]
    spark = session(jars_dir)
    try:
        for command in commands:
            {"read-ours": read_ours, "write-ner": write_ner}[command](spark, work)
        (work / "versions.json").write_text(json.dumps({"spark": spark.version, "sparknlp": _sparknlp_version()}))
    finally:
        spark.stop()
    return 0


def _sparknlp_version() -> str:
    import sparknlp

    return sparknlp.version()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

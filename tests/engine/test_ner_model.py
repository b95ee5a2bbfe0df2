"""The ONNX NER runtime: token pieces, IOB decoding, CRF maths, windowing, export parity,
shipped models and the pipeline stage."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from clinlake.pipelines.resources import package_resource
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.engine.ner.features import (CASES, Embeddings, WordFeatures, model_pieces, word_key)
from clinlake.pipelines.engine.ner.crf import iob_spans, marginals, viterbi
from clinlake.pipelines.engine.ner.model import load_model, windows
from clinlake.pipelines.engine.text import TextSplitter


def needs_model(name: str):
    return pytest.mark.skipif(not (package_resource(f"models/{name}") / "model.onnx").exists(),
                              reason=f"model {name} not trained")


@pytest.fixture(scope="module")
def splitter() -> TextSplitter:
    return TextSplitter.from_file()


# ----------------------------------------------------------------------------- tokens

def test_pipeline_tokens_are_split_like_the_corpora(splitter):
    text = "Parkinson's disease, 3.5 mg b.i.d. and IL-2 (COVID19)."
    tokens = splitter.tokenize(text)
    pieces = model_pieces((t.start, t.end, t.text) for t in tokens)
    assert [p[2] for p in pieces] == ["Parkinson", "'", "s", "disease", ",", "3", ".", "5", "mg", "b", ".", "i", ".",
                                      "d", ".", "and", "IL", "-", "2", "(", "COVID19", ")", "."]
    # Offsets stay exact slices of the original text.
    assert all(text[s:e] == piece for s, e, piece in pieces)


def test_word_keys_and_casing():
    assert word_key("IL-12") == "il-00"
    assert [CASES[i] for i in map(__import__("clinlake.pipelines.engine.ner.features", fromlist=["case_id"]).case_id,
                                  ["cancer", "Cancer", "BRCA", "mRNA", "12", "p53", ","])] == [
        "lower", "title", "upper", "mixed", "numeric", "has_digit", "punct"]


def test_word_features_memo_matches_direct_featurisation():
    from clinlake.pipelines.engine.ner.features import MAX_CHARS, UNK, case_id, encode_serving_batch

    vocab = {"<pad>": 0, "<unk>": 1, "il-00": 2, "cancer": 3}
    embeddings = Embeddings(vocab, np.arange(8, dtype=np.float16).reshape(4, 2))
    char_map = {"I": 2, "L": 3, "c": 4}
    features = WordFeatures(embeddings, char_map)
    rows = features.rows(["IL-12", "Cancer", "IL-12", "x" * 30])  # a repeat and an over-long word
    assert rows.tolist() == [0, 1, 0, 2]
    assert features.word_ids[rows].tolist() == [2, 3, 2, UNK]
    assert features.cases[rows].tolist() == [case_id("IL-12"), case_id("Cancer"), case_id("IL-12"), case_id("x")]
    assert features.chars[0].tolist() == [2, 3, UNK, UNK, UNK] + [0] * (MAX_CHARS - 5)
    assert features.chars[2].tolist() == [UNK] * MAX_CHARS  # cut at MAX_CHARS
    # The memo grows past its first allocation and keeps earlier rows.
    many = [f"w{i}" for i in range(3000)]
    assert features.rows(many).tolist() == list(range(3, 3003))
    assert features.rows(["IL-12"]).tolist() == [0] and features.chars[3002, :2].tolist() == [UNK, UNK]
    # Past ROWS_MAX it starts again instead of growing without bound.
    features.ROWS_MAX = 3005
    assert features.rows(["a", "b", "c", "d", "e", "f"]).tolist() == [0, 1, 2, 3, 4, 5]
    # Serving inputs: characters once per distinct word, every token pointing at its word's row.
    feeds = encode_serving_batch([["IL-12", "cancer", "IL-12"], ["cancer"]], features)
    assert feeds["word_chars"].shape == (3, 6)  # padding row + 2 distinct words, width = longest word
    chars_of = {tuple(r) for r in feeds["word_chars"][feeds["char_index"][0]].tolist()}
    assert len(chars_of) == 2 and feeds["char_index"][1].tolist() == [feeds["char_index"][0][1], 0, 0]
    assert feeds["words"].dtype == np.float32 and feeds["words"][0, 1].tolist() == [6.0, 7.0]
    assert feeds["lengths"].tolist() == [3, 1] and feeds["cases"][1, 1] == 0  # padding


# ----------------------------------------------------------------------------- IOB decoding

@pytest.mark.parametrize("tags, expected", [
    (["I-D", "I-D", "O"], [(0, 2, "D")]),  # I- without B- starts an entity
    (["O", "I-D"], [(1, 2, "D")]),
    (["B-D", "B-D", "I-D"], [(0, 1, "D"), (1, 3, "D")]),  # adjacent entities of one type
    (["B-C", "I-D"], [(0, 1, "C"), (1, 2, "D")]),  # type switch inside: two entities
    (["O", "B-D", "I-D"], [(1, 3, "D")]),  # entity at the sentence end
    (["B-D"], [(0, 1, "D")]),
    ([], []),
    (["O", "O"], []),
    (["B-D", "O", "I-D", "I-D", "O", "O"], [(0, 1, "D"), (2, 4, "D")]),  # an O closes; an I- after it opens
])
def test_iob_spans(tags, expected):
    assert iob_spans(tags) == expected


def _random_crf(rng, length=5, tags=4):
    return (rng.normal(size=(length, tags)), rng.normal(size=tags), rng.normal(size=tags), rng.normal(size=(tags, tags)))


def _path_score(path, emissions, start, end, trans):
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, k] for t, k in enumerate(path))
    return score + sum(trans[a, b] for a, b in zip(path, path[1:]))


def test_viterbi_and_marginals_match_brute_force():
    rng = np.random.default_rng(0)
    emissions, start, end, trans = _random_crf(rng)
    paths = list(itertools.product(range(4), repeat=5))
    scores = np.array([_path_score(p, emissions, start, end, trans) for p in paths])
    assert tuple(viterbi(emissions, start, end, trans)) == paths[int(scores.argmax())]
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    expected = np.zeros((5, 4))
    for p, prob in zip(paths, probs):
        for t, k in enumerate(p):
            expected[t, k] += prob
    np.testing.assert_allclose(marginals(emissions, start, end, trans), expected, atol=1e-9)
    assert viterbi(np.zeros((0, 4)), start, end, trans) == []


@pytest.mark.parametrize("tags", [3, 33])
def test_batched_decoding_equals_per_sentence_decoding(tags):
    from clinlake.pipelines.engine.ner.crf import marginals_batch, viterbi_batch

    rng = np.random.default_rng(tags)
    emissions, lengths = rng.normal(size=(4, 9, tags)) * 5, [9, 3, 1, 6]
    start, end, trans = rng.normal(size=tags), rng.normal(size=tags), rng.normal(size=(tags, tags)) * 2
    start[1], trans[0, 1] = -10000.0, -10000.0  # forbidden IOB moves, as in shipped models
    paths = viterbi_batch(emissions, lengths, start, end, trans)
    posteriors = marginals_batch(emissions, lengths, start, end, trans)
    for b, n in enumerate(lengths):
        assert paths[b] == viterbi(emissions[b, :n], start, end, trans)
        np.testing.assert_allclose(posteriors[b, :n], marginals(emissions[b, :n], start, end, trans), atol=1e-9)


@pytest.mark.parametrize("lengths, pieces, expected", [
    ([], 10, []),
    ([3, 3, 3, 3], 10, [(0, 3), (3, 4)]),  # 3 x 3 = 9 fits, a fourth would make 12
    ([2, 5, 1], 10, [(0, 2), (2, 3)]),  # unsorted: the run's longest counts (2 x 5 = 10 fits)
    ([50, 1], 10, [(0, 1), (1, 2)]),  # one item longer than the budget still gets its own run
])
def test_network_slices_stay_under_the_padded_budget(lengths, pieces, expected):
    from clinlake.pipelines.engine.batching import padded_runs

    assert padded_runs(lengths, max_pieces=pieces) == expected


def test_network_calls_of_a_short_note_are_cut_where_padding_costs_more_than_a_call():
    """A lone note's 22 sentences (2 to 22 pieces) fit one 1024-piece call, padded to 484 pieces
    for 204 real ones; cut where padding costs more than NETWORK_CALL_PIECES, they waste less."""
    from clinlake.pipelines.engine.batching import padded_runs
    from clinlake.pipelines.engine.ner.model import NETWORK_CALL_PIECES, NETWORK_PIECES

    lengths = [2, 3, 3, 3, 3, 4, 5, 6, 6, 7, 8, 8, 10, 12, 12, 14, 14, 14, 15, 15, 18, 22]
    runs = padded_runs(lengths, max_pieces=NETWORK_PIECES, call_cost=NETWORK_CALL_PIECES)
    assert padded_runs(lengths, max_pieces=NETWORK_PIECES) == [(0, 22)]
    assert runs[0][0] == 0 and runs[-1][1] == 22 and all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    padded = sum((hi - lo) * max(lengths[lo:hi]) for lo, hi in runs)
    assert padded + NETWORK_CALL_PIECES * len(runs) < 22 * 22  # padding plus call costs, below one call's
    for lo, hi in runs[1:]:  # each cut was worth a call: joining the run before would pad more
        assert (lo - runs[[r[1] for r in runs].index(lo)][0]) * (lengths[lo] - lengths[lo - 1]) > NETWORK_CALL_PIECES


def test_crf_decoder_uses_the_iob_pairs_and_decodes_like_the_full_max():
    from clinlake.pipelines.engine.ner.crf import CrfDecoder
    from clinlake.pipelines.training.ner.network import iob_mask

    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    rng = np.random.default_rng(1)
    start_mask, trans_mask = iob_mask(tags)
    start, end = rng.normal(size=5) + start_mask, rng.normal(size=5)
    trans = rng.normal(size=(5, 5)) * 2 + trans_mask
    decoder = CrfDecoder(start, end, trans, dtype=np.float64)
    assert decoder.pairs.tolist() == [2, 4] and decoder.dense.tolist() == [0, 1, 3]  # I-A, I-B: two predecessors
    emissions, lengths = rng.normal(size=(6, 12, 5)) * 4, [12, 1, 7, 12, 3, 9]
    paths = decoder.paths(emissions, lengths)
    float32 = CrfDecoder(start, end, trans).paths(emissions.astype(np.float32), lengths)
    for b, n in enumerate(lengths):
        assert paths[b, :n].tolist() == viterbi(emissions[b, :n], start, end, trans) == float32[b, :n].tolist()
        decoded = [tags[k] for k in paths[b, :n]]  # valid IOB2: I-X only right after B-X or I-X
        assert all(not t.startswith("I-") or (i > 0 and decoded[i - 1][2:] == t[2:]) for i, t in enumerate(decoded))


# ----------------------------------------------------------------------------- windows

@pytest.mark.parametrize("length", [1, 255, 256, 257, 1000, 5000])
def test_windows_tile_the_sentence_with_context(length):
    parts = windows(length, size=256, overlap=32)
    kept = [i for _, _, lo, hi in parts for i in range(lo, hi)]
    assert kept == list(range(length))
    for lo, hi, keep_lo, keep_hi in parts:
        assert 0 <= lo <= keep_lo < keep_hi <= hi <= length and hi - lo <= 256
        assert keep_lo - lo >= min(32, keep_lo) and hi - keep_hi >= min(32, length - keep_hi)


# ----------------------------------------------------------------------------- shipped models

SENTENCE = "The patient has breast cancer and diabetes mellitus."


def _find(stage, text, splitter):
    return [(e.text, e.label) for e in stage.find(text, splitter.split(text))]


@needs_model("ncbi_disease")
def test_ncbi_disease_tags_diseases(splitter):
    from clinlake.pipelines.engine.ner.stage import load_ner_stage

    stage = load_ner_stage(package_resource("models/ncbi_disease"))
    entities = stage.find(SENTENCE, splitter.split(SENTENCE))
    found = {(e.text, e.label) for e in entities}
    # NCBI-disease is mostly inherited diseases: "diabetes mellitus" is found, bare "type 2
    # diabetes" is not (see the model card's devel scores).
    assert found == {("breast cancer", "Disease"), ("diabetes mellitus", "Disease")}
    for e in entities:
        assert SENTENCE[e.start:e.end] == e.text and 0.0 <= e.confidence <= 1.0
        assert e.sentence_index == 0 and e.source == stage.name and stage.name.startswith("ncbi_disease@")
    # Label filter and map from the config.
    mapped = load_ner_stage(package_resource("models/ncbi_disease"), labels=["PROBLEM"],
                            label_map={"Disease": "PROBLEM"})
    assert {label for _, label in _find(mapped, SENTENCE, splitter)} == {"PROBLEM"}
    assert _find(load_ner_stage(package_resource("models/ncbi_disease"), labels=["Other"]), SENTENCE, splitter) == []


@needs_model("ncbi_disease")
def test_one_session_per_model_per_process():
    first = load_model(package_resource("models/ncbi_disease"))
    assert load_model(package_resource("models/ncbi_disease") / ".." / "ncbi_disease") is first


@needs_model("ncbi_disease")
def test_a_1000_token_sentence_is_windowed_not_refused(splitter):
    from clinlake.pipelines.engine.ner.stage import load_ner_stage

    text = " ".join(["The patient has breast cancer and no fever"] * 125)  # 1,000 tokens, no sentence end
    sentences = splitter.split(text)
    assert len(sentences) == 1 and len(sentences[0].tokens) == 1000
    entities = load_ner_stage(package_resource("models/ncbi_disease")).find(text, sentences)
    cancers = [e for e in entities if e.text == "breast cancer"]
    assert len(cancers) >= 120  # found in every window, including across window borders
    assert all(text[e.start:e.end] == e.text and 0.0 < e.confidence <= 1.0 for e in entities)


@needs_model("ncbi_disease")
def test_posteriors_are_computed_where_an_entity_was_found():
    model = load_model(package_resource("models/ncbi_disease"))
    (tags, probs), (none_tags, none_probs) = model.tag([["She", "has", "breast", "cancer", "."],
                                                         ["She", "walked", "home", "."]])
    assert tags == ["O", "O", "B-Disease", "I-Disease", "O"] and none_tags == ["O"] * 4
    assert all(0.5 < p <= 1.0 for p in probs)  # every token of a window with an entity
    assert all(np.isnan(p) for p in none_probs)  # all O: no confidence is needed, none computed
    # the label consistency vote weighs untagged occurrences by the confidence in O: every token's
    (same_tags, same_probs), (_, o_probs) = model.tag([["She", "has", "breast", "cancer", "."],
                                                       ["She", "walked", "home", "."]], every_confidence=True)
    assert same_tags == tags and same_probs == probs
    assert all(0.5 < p <= 1.0 for p in o_probs)


@needs_model("ncbi_disease")
def test_pipeline_runs_a_configured_model():
    from clinlake.pipelines.engine.pipeline import Pipeline

    config = parse_config({"input": {"path": "notes.parquet"},
                           "pipeline": {"ner": [{"model": "ncbi_disease", "label_map": {"Disease": "PROBLEM"}}]}})
    pipeline = Pipeline.from_config(config)
    assert pipeline.ner_stage_names[0].startswith("ncbi_disease@")
    entities = pipeline.annotate("HISTORY: The patient has breast cancer.\n\nThere is no evidence of colorectal cancer.")
    by_text = {e.text: e for e in entities}
    assert by_text["breast cancer"].label == "PROBLEM"
    assert by_text["breast cancer"].source.startswith("ncbi_disease@")
    assert (by_text["breast cancer"].section, by_text["breast cancer"].sentence_index) == ("history", 1)
    assert by_text["breast cancer"].assertion.assertion == "present"
    assert by_text["colorectal cancer"].assertion.assertion == "absent"


@pytest.mark.parametrize("name", ["ncbi_disease", "bc5cdr", "anatem", "bionlp13cg", "linnaeus"])
def test_shipped_model_metadata(name):
    directory = package_resource(f"models/{name}")
    if not (directory / "model.onnx").exists():
        pytest.skip(f"model {name} not trained")
    from clinlake.pipelines.engine.ner.model import model_version

    meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    assert meta["version"] == model_version(directory)
    assert (directory / "MODEL_CARD.md").exists()
    assert meta["tags"][0] == "O" and len(meta["crf"]["transitions"]) == len(meta["tags"])
    assert meta["embeddings"] == "../embeddings"  # the one shared file, found inside an installed package too
    if meta["training"]["refit_on_devel"]:  # the held-out scores come from the train-only selection run
        selection = meta["training"]["selection"]
        assert selection["train_sentences"] < meta["training"]["train_sentences"]
        # the refit trains the selected epochs, or the count given with --refit-epochs (the count its CV ran)
        refit_epochs = meta["training"].get("refit_epochs") or selection["best_epoch"]
        assert refit_epochs == meta["training"]["best_epoch"] == len(meta["training"]["history"])
        if meta["training"].get("refit_epochs"):
            assert meta["cv"]["epochs"] == refit_epochs
        assert selection["dev"]["tokens"]["overall"]["f1"] == selection["dev_f1"] or selection["quantization"]["kept"]
    # a network trained with gazetteer channels ships their list, as many terms as training learned
    if meta.get("gazetteer_features"):
        from clinlake.pipelines.engine.ner.gazetteer_channels import load_channels

        channels = load_channels(directory, meta)
        assert len(channels.terms) == meta["training"]["gazetteer_features"]["terms"] > 0
        assert list(channels.labels) == meta["training"]["gazetteer_features"]["labels"] == meta["labels"]
    # a stage that runs the gazetteer by default finds the very file model.json recorded
    if (meta.get("document_level") or {}).get("gazetteer"):
        import hashlib

        from clinlake.pipelines.engine.gazetteer import read_gazetteer

        path = directory / meta["gazetteer"]["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["gazetteer"]["sha256"]
        assert len(read_gazetteer(path)) == meta["gazetteer"]["terms"]
    else:
        assert not (directory / "gazetteer.tsv").exists() and "gazetteer" not in meta


@needs_model("ncbi_disease")
def test_spark_job_with_an_ner_model(spark, tmp_path):
    """The annotate job on a small table: model entities land in the entities table with the
    model's name and version, exactly where the pure-Python engine puts them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clinlake.pipelines.engine.pipeline import Pipeline
    from clinlake.pipelines.spark.job import run_annotate

    notes = {"a": "HISTORY: The patient has breast cancer.\n\nNo evidence of colorectal cancer.",
             "b": "Mutations in BRCA1 cause hereditary breast and ovarian cancer."}
    pq.write_table(pa.table({"id": list(notes), "body": list(notes.values())}), tmp_path / "notes.parquet")
    config = parse_config({
        "input": {"path": str(tmp_path / "notes.parquet"), "format": "parquet", "id_column": "id", "text_column": "body"},
        "output": {"path": str(tmp_path / "lake"), "format": "parquet"},
        "quality": {"mode": "off", "report": False},
        "pipeline": {"ner": [{"model": "ncbi_disease", "label_map": {"Disease": "PROBLEM"}}], "dictionary": []},
    })
    summary = run_annotate(spark, config, run_id="ner-test")
    assert summary.status == "succeeded" and summary.notes_annotated == 2
    rows = spark.read.parquet(str(tmp_path / "lake" / "entities")).select("note_id", "begin", "end", "chunk",
                                                                           "label", "ner_model").collect()
    got = sorted((r.note_id, r.begin, r.end, r.chunk, r.label) for r in rows)
    engine = Pipeline.from_config(config)
    expected = sorted((note_id, e.start, e.end - 1, e.text, e.label)
                      for note_id, text in notes.items() for e in engine.annotate(text))
    assert got == expected and ("a", 25, 37, "breast cancer", "PROBLEM") in got
    assert {r.ner_model for r in rows} == set(engine.ner_stage_names)


def test_pipeline_version_follows_model_and_shared_vectors_not_cards(tmp_path):
    import shutil

    from clinlake.pipelines.config import load_config
    from clinlake.pipelines.resources import package_resource
    from clinlake.pipelines.engine.fingerprint import model_files, pipeline_version
    from clinlake.pipelines.resources import Resolver

    models = tmp_path / "models"
    shutil.copytree(package_resource("models/clinical_core"), models / "clinical_core")
    shutil.copytree(package_resource("models/embeddings"), models / "embeddings")
    config = load_config(overrides={"pipeline.ner": [{"model": str(models / "clinical_core")}],
                                    "pipeline.assertion.engine": "rules"})
    assert {p.name for p in model_files(models / "clinical_core")} == {"model.onnx", "model.json", "vectors.npy",
                                                                      "vocab.txt", "gazetteer.tsv"}
    before = pipeline_version(config.pipeline, Resolver(config.base_dir))
    (models / "clinical_core" / "MODEL_CARD.md").write_text("edited card", encoding="utf-8")
    assert pipeline_version(config.pipeline, Resolver(config.base_dir)) == before  # documentation does not force re-annotation
    with open(models / "embeddings" / "vocab.txt", "a", encoding="utf-8") as vocab:
        vocab.write("newword\n")
    assert pipeline_version(config.pipeline, Resolver(config.base_dir)) != before  # the shared vectors decide the output too
    after_vectors = pipeline_version(config.pipeline, Resolver(config.base_dir))
    with open(models / "clinical_core" / "gazetteer.tsv", "a", encoding="utf-8") as gazetteer:
        gazetteer.write("new term\tPROBLEM\t1.0\n")
    assert pipeline_version(config.pipeline, Resolver(config.base_dir)) != after_vectors  # so does the gazetteer


@needs_model("ncbi_disease")
def test_the_vote_reads_every_tokens_confidence_from_the_tagger():
    """With the vote on, the stage's entities equal those of a tagger that always computes every
    token's confidence (none is left NaN for the vote to read)."""
    from clinlake.pipelines.corpora.conll import read_conll
    from clinlake.pipelines.engine.ner.stage import ModelNerStage
    from clinlake.pipelines.training.ner.corpus import split_path

    model = load_model(package_resource("models/ncbi_disease"))

    class EveryConfidence:
        name, batch_invariant = model.name, True

        def tag(self, sequences, every_confidence=False):
            return model.tag(sequences, every_confidence=True)

    splitter = TextSplitter.from_file()
    devel = read_conll(split_path("NCBI-disease", "devel"))
    notes = []
    for first in range(0, len(devel), 20):  # notes of 20 sentences
        text = " ".join(" ".join(tokens) for tokens, _ in devel[first:first + 20])
        notes.append((text, splitter.split(text)))
    lazy = ModelNerStage(model, label_consistency=True).find_many(notes)
    eager = ModelNerStage(EveryConfidence(), label_consistency=True).find_many(notes)
    assert lazy == eager
    assert any(e.source.endswith("+consistency") for note in lazy for e in note)  # the vote did something

"""Training of the NER taggers (pipelines/training/ner/): corpus pieces, export parity with
PyTorch, refit and selection, artefact folders, re-quantising, the shared word vectors.

Folders are passed as arguments (``tmp_path``), never patched into module globals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinlake.pipelines.engine.ner.features import Embeddings, WordFeatures, encode_batch, model_pieces, word_key
from clinlake.pipelines.engine.text import TextSplitter


@pytest.fixture(scope="module")
def splitter() -> TextSplitter:
    return TextSplitter.from_file()


def test_corpus_tokens_and_pipeline_tokens_give_the_same_pieces(splitter):
    from clinlake.pipelines.training.ner.corpus import to_pieces

    corpus_tokens = ["Selegiline", "-", "induced", "postural", "hypotension", "in", "Parkinson", "'", "s", "disease"]
    tags = ["B-Chemical", "O", "O", "B-Disease", "I-Disease", "O", "B-Disease", "I-Disease", "I-Disease", "I-Disease"]
    train_words, train_tags = to_pieces(corpus_tokens, tags)
    text = "Selegiline-induced postural hypotension in Parkinson's disease"
    runtime = [p[2] for p in model_pieces((t.start, t.end, t.text) for t in splitter.tokenize(text))]
    assert train_words == runtime
    assert train_tags == tags
    # A multi-piece corpus token: its later pieces continue the entity.
    assert to_pieces(["3.5"], ["B-X"]) == (["3", ".", "5"], ["B-X", "I-X", "I-X"])




def test_onnx_export_matches_pytorch_on_a_batch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from clinlake.pipelines.engine.ner import model as ner_model
    from clinlake.pipelines.training.ner.export import check_onnx, export
    from clinlake.pipelines.training.ner.network import build_crf, build_network

    torch.manual_seed(0)
    words = ["Aspirin", "induced", "asthma", "in", "a", "patient", "with", "BRCA1", "mutations", "."]
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *sorted({word_key(w) for w in words})])}
    vectors = np.random.default_rng(0).normal(size=(len(vocab), 100)).astype(np.float16)
    (tmp_path / "embeddings").mkdir()
    np.save(tmp_path / "embeddings" / "vectors.npy", vectors)
    (tmp_path / "embeddings" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    embeddings = Embeddings(vocab, vectors)
    tags = ["O", "B-Disease", "I-Disease"]
    chars = {ch: i for i, ch in enumerate(sorted({c for w in words for c in w}), start=2)}
    net, crf = build_network(len(chars) + 2, len(tags)), build_crf(tags)
    sample = [(words[:n], ["O"] * n) for n in (10, 3, 7, 1)]  # different lengths: padding must not leak
    export(net, crf, name="tiny", corpus="NCBI-disease", tags=tags, chars=chars, out_dir=tmp_path / "tiny",
           info={}, sample=sample, embeddings=embeddings, embeddings_dir=tmp_path / "embeddings",
           artifacts=tmp_path / "build")
    batch = [words[2:9], words[:2], ["aspirin", "unseen-word", "Aspirin"]]  # other shapes, widths, OOV
    assert check_onnx(net, tmp_path / "tiny" / "model.onnx", batch, embeddings, chars) < 1e-4
    # The runtime's own path (serving inputs, its caches) gives PyTorch's emissions.
    model = ner_model.NerModel(tmp_path / "tiny")
    got = model.emissions(batch)
    with torch.no_grad():
        expected = net(**{k: torch.from_numpy(v) for k, v in encode_batch(batch, WordFeatures(embeddings, chars)).items()}).numpy()
    for b, sentence in enumerate(batch):
        np.testing.assert_allclose(got[b], expected[b, : len(sentence)], atol=1e-4)
    # A sentence is tagged the same alone and in a padded batch.
    np.testing.assert_allclose(model.emissions([words[:2]])[0], got[1], atol=1e-5)
    # ... and when the network runs the batch in several slices (padded to each slice's longest).
    model.network_pieces = 8
    sliced = model.emissions(batch)
    for b in range(len(batch)):
        np.testing.assert_allclose(sliced[b], got[b], atol=1e-5)
    assert json.loads((tmp_path / "tiny" / "model.json").read_text())["version"]
    # Word vectors of another size than the model was trained on: a clear error at load time.
    (tmp_path / "vectors50").mkdir()
    np.save(tmp_path / "vectors50" / "vectors.npy", np.zeros((len(vocab), 50), dtype=np.float16))
    (tmp_path / "vectors50" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.onnx").write_bytes((tmp_path / "tiny" / "model.onnx").read_bytes())
    meta = json.loads((tmp_path / "tiny" / "model.json").read_text())
    (tmp_path / "other" / "model.json").write_text(json.dumps({**meta, "embeddings": "../vectors50"}))
    with pytest.raises(ValueError, match="trained on 100-d word vectors but .* holds 50-d"):
        ner_model.NerModel(tmp_path / "other")


def _tiny_embeddings(directory, words, dim=100):
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *sorted({word_key(w) for w in words})])}
    vectors = np.random.default_rng(0).normal(size=(len(vocab), dim)).astype(np.float16)
    directory.mkdir()
    np.save(directory / "vectors.npy", vectors)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return Embeddings(vocab, vectors)


def test_refit_runs_the_selected_epochs_on_train_and_devel_and_the_card_reports_the_selection(tmp_path):
    pytest.importorskip("torch")
    from clinlake.pipelines.training.cards import devel_estimate, ner_model_card, training_flags
    from clinlake.pipelines.training.ner.loop import fit

    sentence = (["Aspirin", "induced", "asthma", "in", "a", "patient", "."],
                ["O", "O", "B-Disease", "O", "O", "O", "O"])
    train_set, dev_set = [sentence] * 6, [sentence] * 2
    _tiny_embeddings(tmp_path / "embeddings", sentence[0])
    options = dict(max_minutes=2, patience=2, network={"hidden": 8, "char_filters": 4},
                   embeddings_dir=tmp_path / "embeddings")
    *_, selection = fit(train_set, {"tiny": dev_set}, epochs=3, **options)
    assert selection["refit_on_devel"] is False and selection["dev_f1"] is not None
    assert 1 <= selection["best_epoch"] <= len(selection["history"]) <= 3
    *_, refit = fit(train_set + dev_set, {}, epochs=selection["best_epoch"], **options)
    # No devel to select on: exactly the selected epoch count, the last one kept.
    assert refit["refit_on_devel"] is True and refit["dev_f1"] is None
    assert len(refit["history"]) == refit["best_epoch"] == selection["best_epoch"]
    assert refit["train_sentences"] == 8 and all(h["dev_f1"] is None for h in refit["history"])

    def scores(f1):
        overall = {"precision": f1, "recall": f1, "f1": f1, "correct": 1, "predicted": 1, "gold": 1}
        return {"tokens": {"overall": overall, "per_type": {"Disease": overall}}, "raw_text": {"overall": overall}}

    training = {"corpus": "NCBI-disease", **refit, "max_epochs": 80, "patience": 10,
                "selection": {**{k: selection[k] for k in ("best_epoch", "dev_f1", "history", "train_sentences")},
                              "dev": scores(0.8123), "quantization": {}}}
    meta = {"name": "tiny", "corpus": "NCBI-disease", "labels": ["Disease"], "version": "v", "training": training,
            "dev": scores(0.9876), "quantization": {"tried": "none", "kept": False},
            "embeddings": "../embeddings", "speed_pieces_per_s_1_thread": 1}
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "model.onnx").write_bytes(b"")
    (tmp_path / "tiny" / "model.json").write_text("{}")
    assert devel_estimate(meta) is training["selection"]["dev"]
    assert training_flags(training).endswith("--epochs 80 --patience 10 --refit")
    card = ner_model_card(tmp_path / "tiny", meta)
    # The held-out estimate is the selection run's; the refit's own devel score is named as seen data.
    assert "Overall F1 **81.23**" in card and "train and devel" in card
    assert "its own devel F1, 98.76, estimates nothing" in card


def test_training_artefacts_of_same_named_output_folders_never_collide(tmp_path):
    from clinlake.pipelines.resources import build_dir, models_dir
    from clinlake.pipelines.training.ner.artifacts import artifacts_dir, artifacts_root, selection_model_dir

    # The defaults: the shipped models/ and build/ner/ of the checkout.
    assert artifacts_root() == build_dir() / "ner"
    assert artifacts_dir(models_dir() / "ncbi_disease") == artifacts_root() / "ncbi_disease"
    models, artifacts = tmp_path / "models", tmp_path / "build" / "ner"
    folders = dict(models=models, artifacts=artifacts)
    # Shipped models and folders already under build/ner keep their plain names.
    assert artifacts_dir(models / "ncbi_disease", **folders) == artifacts / "ncbi_disease"
    assert selection_model_dir(models / "ncbi_disease", **folders) == artifacts / "ncbi_disease.selection"
    assert artifacts_dir(artifacts / "ncbi_disease.selection", **folders) == artifacts / "ncbi_disease.selection"
    # An experiment writing to another folder of the same name gets its own artefacts.
    a, b = (artifacts_dir(tmp_path / x / "ncbi_disease", **folders) for x in ("a", "b"))
    assert len({a, b, artifacts / "ncbi_disease"}) == 3 and a.parent == artifacts
    assert a.name.startswith("ncbi_disease-") and a == artifacts_dir(tmp_path / "a" / "x" / ".." / "ncbi_disease",
                                                                     **folders)
    assert selection_model_dir(tmp_path / "a" / "ncbi_disease", **folders) == artifacts / f"{a.name}.selection"


def test_rescoring_never_quantises_an_int8_model_twice(tmp_path):
    from clinlake.pipelines.training.ner.artifacts import artifacts_dir
    from clinlake.pipelines.training.ner.export import restore_full_precision

    build = tmp_path / "build"
    model_dir = tmp_path / "tiny"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(b"int8")
    int8 = {"tried": "int8 dynamic", "dev_f1_fp32": 0.9, "dev_f1_int8": 0.9, "kept": True}
    # No full-precision copy (a fresh clone: build/ is not shipped) and already int8: score it as it is.
    assert restore_full_precision(model_dir, {"quantization": int8}, artifacts=build) == int8
    assert (model_dir / "model.onnx").read_bytes() == b"int8"
    assert restore_full_precision(model_dir, {"quantization": {"tried": "none", "kept": False}},
                                  artifacts=build) is None
    # With the copy kept by training, the fp32 export comes back before quantising again.
    artifacts_dir(model_dir, artifacts=build).mkdir(parents=True)
    (artifacts_dir(model_dir, artifacts=build) / "model.fp32.onnx").write_bytes(b"fp32")
    assert restore_full_precision(model_dir, {"quantization": int8}, artifacts=build) is None
    assert (model_dir / "model.onnx").read_bytes() == b"fp32"


def _tiny_shared(tmp_path, text: str, *, train: str, devel: str) -> dict:
    """A made-up shared data folder: one text file and one CoNLL corpus "X"; returns the
    keyword arguments that point the embeddings code at it."""
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    (tmp_path / "ner" / "X").mkdir(parents=True)
    for split, conll in (("train", train), ("devel", devel)):
        (tmp_path / "ner" / "X" / f"{split}.tsv").write_text(conll, encoding="utf-8")
    return {"shared": tmp_path, "texts": ("corpus.txt",), "corpora": ("X",)}


def test_vectors_without_devel_leave_out_exactly_the_devel_sentences(tmp_path):
    from clinlake.pipelines.training.ner.corpus import devel_sentences
    from clinlake.pipelines.training.ner.embeddings import SentenceStream, embedding_sentences

    sources = _tiny_shared(tmp_path, "Aspirin 5 mg .\nthe devel sentence .\nthe devel sentence ok\n",
                           train="IL-2\tB-Gene\n\n", devel="the\tO\ndevel\tO\nsentence\tO\n.\tO\n\n")
    devel = devel_sentences(shared=sources["shared"], corpora=sources["corpora"])
    assert devel == {"the devel sentence ."}
    everything = [["aspirin", "0", "mg", "."], ["the", "devel", "sentence", "."], ["the", "devel", "sentence", "ok"],
                  ["il", "-", "0"]]
    assert list(embedding_sentences(**sources)) == everything
    # Only the exact devel line goes; a longer line sharing its words stays, and so does the train text.
    assert list(SentenceStream(devel, **sources)) == [everything[0], everything[2], everything[3]]


def test_word_vectors_are_the_same_on_every_run(tmp_path):
    pytest.importorskip("gensim")
    from clinlake.pipelines.training.ner.embeddings import build_embeddings

    lines = ["Aspirin 5 mg was given for the pain .", "The patient has breast cancer and diabetes mellitus ."]
    sentence = "IL-2\tB-Gene\ncancer\tO\n\n"
    sources = _tiny_shared(tmp_path, "\n".join(lines * 50) + "\n", train=sentence, devel=sentence)
    runs = []
    for run in ("a", "b"):
        assert build_embeddings(tmp_path / run, epochs=1, dim=8, **sources) == tmp_path / run
        runs.append(Embeddings.load(tmp_path / run))
    assert runs[0].vocab == runs[1].vocab
    assert {w for w, i in runs[0].vocab.items() if 2 <= i < 6} == {"il", "-", "0", "cancer"}  # NER words first
    assert np.array_equal(runs[0].vectors, runs[1].vectors)
    assert np.abs(runs[0].vectors[2]).sum() > 0 and not runs[0].vectors[0].any()  # real vectors; padding zeros

"""Gazetteer channels as network input (pipelines/training/ner/gazetteer_features.py): values, jackknife, fit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinlake.pipelines.engine.gazetteer import Term
from clinlake.pipelines.training.ner.corpus import entity_labels
from clinlake.pipelines.engine.ner.gazetteer_channels import GazetteerChannels
from clinlake.pipelines.training.ner.gazetteer_features import feature_terms, training_channels


def test_channels_mark_where_a_term_begins_and_continues_with_its_precision_per_type():
    terms = {("heart", "attack"): Term("Disease", 0.8), ("aspirin",): Term("Chemical", 1.0),
             ("heart",): Term("Disease", 0.6)}
    channels = GazetteerChannels(terms, ["Chemical", "Disease"])
    out = channels.match(["An", "Aspirin", "after", "a", "heart", "attack", "."])
    assert channels.width == 4 and out.shape == (7, 4) and out.dtype == np.float32
    expected = np.zeros((7, 4), dtype=np.float32)
    expected[1, 0] = 1.0  # Chemical begins (matched case-insensitively)
    expected[4, 2], expected[5, 3] = 0.8, 0.8  # the longest term wins: Disease begins, then continues
    assert np.array_equal(out, expected)
    assert not channels.match(["no", "term", "here"]).any()


def test_a_terms_label_outside_the_channels_types_adds_nothing():
    channels = GazetteerChannels({("aspirin",): Term("Chemical", 1.0)}, ["Disease"])
    assert channels.width == 2 and not channels.match(["aspirin"]).any()


def _examples():
    """Ten sentences: 'asthma' tagged in parts 0 and 3 of five, 'gout' only in part 1."""
    sentence = {0: (["asthma", "seen"], ["B-Disease", "O"]), 3: (["asthma", "again"], ["B-Disease", "O"]),
                1: (["gout", "seen"], ["B-Disease", "O"])}
    return [list(map(list, sentence.get(i // 2, (["nothing", "here"], ["O", "O"])))) for i in range(10)]


def test_training_sentences_see_the_list_of_the_other_parts_and_new_sentences_the_full_list():
    examples = [tuple(e) for e in _examples()]
    channels = training_channels(examples, ["Disease"], parts=5)
    assert set(channels.terms) == {("asthma",), ("gout",)} == set(feature_terms(examples))
    asthma, gout = examples[0][0], examples[2][0]
    assert channels.of(asthma)[0, 0] == 1.0  # also tagged in part 3: the other parts know it
    assert not channels.of(gout).any()  # tagged in its own part only: no feature from itself
    assert channels.match(gout)[0, 0] == 1.0  # ... but the full list (serving, held-out) has it
    assert channels.of(list(gout))[0, 0] == 1.0  # an equal sentence that is another object: the full list
    batch = channels.batch([gout, ["gout"]], steps=3)
    assert batch.shape == (2, 3, 2) and batch[1, 0, 0] == 1.0 and not batch[0].any() and not batch[1, 1:].any()
    with pytest.raises(ValueError, match="at least 5 training sentences"):
        training_channels(examples[:3], ["Disease"], parts=5)


def test_a_lexicons_names_join_the_channels_with_the_share_the_other_parts_give_them():
    from clinlake.pipelines.training.ner.gazetteer import LEXICON_PRIOR, Lexicon

    examples = [tuple(e) for e in _examples()]
    lexicon = Lexicon("Disease", ("gout", "hay fever"), "a test")
    channels = training_channels(examples, ["Disease"], lexicons=[lexicon], parts=5)
    assert {("asthma",), ("gout",), ("hay", "fever"), ("hay", "-", "fever")} <= set(channels.terms)
    assert channels.terms[("gout",)].precision == 1.0  # the examples' own string keeps their precision
    assert channels.terms[("hay", "fever")].precision == LEXICON_PRIOR  # a name no example shows
    assert channels.match(["hay", "fever"])[:, 0].tolist() == [LEXICON_PRIOR, 0.0]
    assert channels.match(["hay", "fever"])[:, 1].tolist() == [0.0, LEXICON_PRIOR]
    gout = examples[2][0]
    # its own part is the only one that tags it; the other parts never show it: the lexicon's prior
    assert channels.of(gout)[0, 0] == LEXICON_PRIOR
    assert channels.record()["lexicons"] == [{"file": "a test", "label": "Disease"}]
    assert "lexicons" not in training_channels(examples, ["Disease"], parts=5).record()


def test_entity_labels_keep_the_tag_sets_order():
    assert entity_labels(["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]) == ["Chemical", "Disease"]


def _fit_tiny(tmp_path, write_vectors, *, epochs: int, gazetteer_features: bool = True):
    """(examples, fit()'s six results) of a tiny network on :func:`_examples`."""
    from clinlake.pipelines.training.ner.loop import fit

    examples = [tuple(e) for e in _examples()]
    tmp_path.mkdir(parents=True, exist_ok=True)
    vectors = write_vectors(tmp_path, {w for words, _ in examples for w in words})
    return examples, fit(examples, {}, max_minutes=5, epochs=epochs, embeddings_dir=vectors,
                         network={"hidden": 8, "char_filters": 4}, gazetteer_features=gazetteer_features)


def test_a_network_fitted_with_gazetteer_features_reads_them_and_records_them(tmp_path, write_vectors):
    pytest.importorskip("torch")
    from clinlake.pipelines.training.ner.loop import predict_scored, tensors

    examples, (net, crf, tags, chars, embeddings, record) = _fit_tiny(tmp_path, write_vectors, epochs=2)
    width = int(embeddings.vectors.shape[1])
    assert record["word_dim"] == width + 2 == net.word_dim
    assert record["gazetteer_features"]["terms"] == 2 and record["gazetteer_features"]["labels"] == ["Disease"]
    inputs, _ = tensors([examples[2], (["gout"], ["O"])], embeddings, chars, {t: i for i, t in enumerate(tags)},
                        net.gazetteer)
    assert tuple(inputs["words"].shape) == (2, 2, width + 2)
    assert inputs["words"][0, :, width:].abs().sum() == 0 and inputs["words"][1, 0, width] == 1.0
    assert len(predict_scored(net, crf, examples[:2], embeddings, chars, tags)) == 2
    *_, plain = _fit_tiny(tmp_path / "plain", write_vectors, epochs=1, gazetteer_features=False)[1]
    assert plain["word_dim"] == width and "gazetteer_features" not in plain


def test_a_model_with_gazetteer_channels_ships_its_list_and_serves_what_pytorch_computes(tmp_path, write_vectors):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from clinlake.pipelines.engine.ner.features import WordFeatures, encode_batch
    from clinlake.pipelines.engine.ner.gazetteer_channels import FILE
    from clinlake.pipelines.engine.ner.model import NerModel, model_version
    from clinlake.pipelines.training.ner.export import export

    examples, (net, crf, tags, chars, embeddings, record) = _fit_tiny(tmp_path, write_vectors, epochs=1)
    vectors = tmp_path / "embeddings"
    out = tmp_path / "tiny"
    export(net, crf, name="tiny", corpus="NCBI-disease", tags=tags, chars=chars, out_dir=out, info=record,
           sample=examples[:4], embeddings=embeddings, embeddings_dir=vectors, artifacts=tmp_path / "build")
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert meta["gazetteer_features"] == {"file": FILE, "labels": ["Disease"]}
    shipped = [line for line in (out / FILE).read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert sorted(shipped) == ["asthma\tDisease\t1.0", "gout\tDisease\t1.0"]
    batch = [["gout", "seen"], ["asthma", "and", "gout"], ["nothing"]]
    model = NerModel(out)
    assert model.channels is not None and model.channels.width == 2
    with torch.no_grad():
        feeds = net.gazetteer.with_words(encode_batch(batch, WordFeatures(embeddings, chars)), batch)
        expected = net.eval()(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    for b, (got, sentence) in enumerate(zip(model.emissions(batch), batch)):
        np.testing.assert_allclose(got, expected[b, :len(sentence)], atol=1e-4)
    # the term list is part of the model: another list, another version
    version = model_version(out)
    (out / FILE).write_text("gout\tDisease\t0.5\n", encoding="utf-8")
    assert model_version(out) != version
    # the int8 candidate is tagged with its list too, and only the shipped folder keeps one
    from clinlake.pipelines.training.ner.export import quantize_if_it_holds

    (out / FILE).write_text("\n".join(shipped) + "\n", encoding="utf-8")
    record = quantize_if_it_holds(out, 0.0, 1.0, artifacts=tmp_path / "build")
    assert record["kept"] and record["batch_invariant"] and not (out / "_int8").exists()
    assert NerModel(out).emissions(batch)[1].shape == (3, len(tags))


def test_the_recipe_and_the_cards_command_are_what_the_shipped_network_trained_with(tmp_path):
    import shutil

    from clinlake.pipelines.resources import Resolver
    from clinlake.pipelines.training.cards import training_flags
    from clinlake.pipelines.training.ner.cv import Recipe

    model = tmp_path / "bc5cdr"
    shutil.copytree(Resolver().model_dir("bc5cdr"), model)
    meta = json.loads((model / "model.json").read_text(encoding="utf-8"))
    # a refit trained for the count its CV ran (26), though its selection run chose 18 on devel
    training = {**meta["training"], "best_epoch": 26, "refit_epochs": 26,
                "selection": {**meta["training"]["selection"], "best_epoch": 18},
                "gazetteer_features": {"labels": ["Chemical", "Disease"], "terms": 2}}
    (model / "model.json").write_text(json.dumps({**meta, "training": training}), encoding="utf-8")
    recipe = Recipe.of_model(model)
    assert recipe.epochs == 26 and recipe.gazetteer_features is True
    assert training_flags(training).endswith("--patience 10 --gazetteer-features --refit-epochs 26 --refit")
    assert Recipe.of_model(Resolver().model_dir("linnaeus")).gazetteer_features is False
    # lexicons in the channels are part of the recipe: read back from the training record
    wordnet = {"file": "conf/lexicons/wordnet_organisms.txt", "label": "Species"}
    training["gazetteer_features"]["lexicons"] = [wordnet]
    (model / "model.json").write_text(json.dumps({**meta, "training": training}), encoding="utf-8")
    (lexicon,) = Recipe.of_model(model).channel_lexicons
    assert (lexicon.source, lexicon.label) == (wordnet["file"], "Species") and len(lexicon.names) > 15000
    assert Recipe.of_model(model).fit_options()["channel_lexicons"] == (lexicon,)

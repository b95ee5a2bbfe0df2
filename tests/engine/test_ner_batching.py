"""NER across notes: batch invariance of the served graphs, the dequantiser, and find_many."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clinlake.pipelines.engine.ner.features import encode_serving_batch
from clinlake.pipelines.engine.ner.model import NerModel, load_model
from clinlake.pipelines.engine.ner.stage import ModelNerStage
from clinlake.pipelines.engine.text import TextSplitter
from clinlake.pipelines.resources import package_resource

NOTES = [
    "HISTORY: Type 2 diabetes mellitus and hypertension. No chest pain.\n\nMEDICATIONS: Metformin 500 mg b.i.d.",
    "Chest x-ray showed a right lower lobe pneumonia. She was started on ceftriaxone and azithromycin.",
    "The patient denies fever, chills or night sweats. Hemoglobin A1c was 9.2 %. MRI of the brain was normal.",
    "Mother with breast cancer. Father had a myocardial infarction at 54. " * 3,
    "Acute kidney injury (AKI) resolved. AKI was attributed to contrast nephropathy.",
]


@pytest.fixture(scope="module")
def splitter() -> TextSplitter:
    return TextSplitter.from_file()


@pytest.fixture(scope="module")
def clinical() -> NerModel:
    return load_model(package_resource("models/clinical_core"))


def test_shipped_models_are_batch_invariant_int8_graphs():
    import onnx

    for meta_path in sorted(Path(package_resource("models")).glob("*/model.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if "crf" not in meta:
            continue
        quantization = meta["quantization"]
        assert quantization["kept"] is True and quantization["tried"] == "int8 bounded", meta_path.parent.name
        assert quantization["batch_invariant"] is True
        assert quantization["dev_f1_int8"] >= quantization["dev_f1_fp32"] - 0.002
        ops = {node.op_type for node in onnx.load(str(meta_path.parent / "model.onnx")).graph.node}
        assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
        assert NerModel(meta_path.parent).batch_invariant


def test_a_sentence_scores_the_same_alone_and_in_any_batch(clinical, splitter):
    sentences = [[t.text for t in s.tokens] for text in NOTES for s in splitter.split(text)]
    together = clinical.network_emissions(sentences)
    for index, words in enumerate(sentences):
        alone = clinical.network_emissions([words])[0]
        assert np.array_equal(together[index, : len(words)], alone[: len(words)])  # bit for bit
    reversed_batch = clinical.network_emissions(sentences[::-1])
    assert np.array_equal(reversed_batch[::-1][0, : len(sentences[0])], together[0, : len(sentences[0])])


def test_find_many_equals_note_by_note(clinical, splitter):
    stage = ModelNerStage(clinical, label_map={})
    notes = [(text, splitter.split(text)) for text in NOTES]
    together = stage.find_many(notes)
    alone = [stage.find(text, sentences) for text, sentences in notes]
    assert together == alone
    assert sum(map(len, together)) >= 10


class BatchedPhraseTagger:
    """A batch-invariant stand-in tagger (each occurrence of a phrase), recording its calls."""

    name, batch_invariant = "phrases", True

    def __init__(self, phrase: str, label: str) -> None:
        self.phrase, self.label, self.calls = phrase.split(), label, []

    def tag(self, sequences, every_confidence=False):
        self.calls.append(len(sequences))
        out, n = [], len(self.phrase)
        for seq in sequences:
            tags = ["O"] * len(seq)
            for a in range(len(seq) - n + 1):
                if [w.lower() for w in seq[a:a + n]] == self.phrase:
                    tags[a:a + n] = ["B-" + self.label] + ["I-" + self.label] * (n - 1)
            out.append((tags, [0.9 if t != "O" else 0.2 for t in tags]))
        return out


def test_find_many_tags_notes_together_but_propagates_within_each_note(splitter):
    tagger = BatchedPhraseTagger("posterior cruciate ligament", "Anatomy")
    stage = ModelNerStage(tagger)
    texts = ["A tear of the posterior cruciate ligament (PCL). The PCL was repaired.",
             "The PCL graft was placed.",  # PCL defined in another note only: not an entity here
             "Posterior cruciate ligament intact."]
    found = stage.find_many([(t, splitter.split(t)) for t in texts])
    assert tagger.calls == [4]  # all four sentences of the three notes in one tagging call
    assert [[(e.text, e.source) for e in note] for note in found] == [
        [("posterior cruciate ligament", "phrases"), ("PCL", "phrases+abbreviation"),
         ("PCL", "phrases+abbreviation")],
        [],
        [("Posterior cruciate ligament", "phrases")],
    ]


def test_model_stages_of_one_pipeline_cut_each_notes_pieces_once(clinical, splitter, monkeypatch):
    """Every tagger reads the same model pieces, so the pipeline's model stages share them; the
    entities are those of each stage on its own."""
    from clinlake.pipelines.engine import pipeline as engine_pipeline
    from clinlake.pipelines.engine.ner import stage as stage_module
    from clinlake.pipelines.engine.sections import SectionDetector

    ncbi = load_model(package_resource("models/ncbi_disease"))
    stages = [ModelNerStage(ncbi), ModelNerStage(clinical)]  # the first wins overlaps: both keep entities
    texts = NOTES + ["Familial adenomatous polyposis was excluded."]
    alone = [[stage.find(t, splitter.split(t)) for t in texts] for stage in stages]
    cut: list[int] = []
    real = stage_module.model_pieces
    monkeypatch.setattr(stage_module, "model_pieces", lambda tokens: cut.append(len(tokens)) or real(tokens))
    pipe = engine_pipeline.Pipeline(splitter=splitter, sections=SectionDetector.from_file(), ner_stages=stages,
                                    assertion=None, version="test")
    results = pipe.annotate_many(texts)
    assert len(cut) == sum(len(splitter.split(t)) for t in texts)  # once per sentence, not once per stage
    for note, ncbi_found, clinical_found in zip(results, *alone, strict=True):
        assert not isinstance(note, Exception)
        assert sorted((e.start, e.end, e.label, e.source) for e in note) == sorted(
            (e.start, e.end, e.label, e.source) for e in engine_pipeline.merge_chunks([ncbi_found, clinical_found])
            if not e.text.isupper() or not pipe.sections.is_heading_label(e.text))
    assert {e.source.split("@")[0] for note in results for e in note} >= {"clinical_core", "ncbi_disease"}
    # a stage handed a shared dict by hand: the same entities as without it
    shared: dict = {}
    notes = [(t, splitter.split(t)) for t in texts]
    assert stages[0].find_many(notes, shared=shared) == stages[0].find_many(notes)
    assert len(shared) == len(texts)


@pytest.fixture(scope="module")
def int8_model_dir(tmp_path_factory, fp32_model_dir) -> Path:
    """clinical_core's fp32 graph quantised to plain int8 dynamic (as training used to ship it)."""
    from clinlake.pipelines.training.ner.export import quantize_dynamic_copy

    plain = fp32_model_dir("clinical_core")
    target = tmp_path_factory.mktemp("models") / "clinical_core"
    target.mkdir()
    quantize_dynamic_copy(plain / "model.onnx", target / "model.onnx")
    meta = json.loads((plain / "model.json").read_text(encoding="utf-8"))
    meta["quantization"] = {"tried": "int8 dynamic", "kept": True}
    (target / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return target


def test_an_int8_model_is_tagged_note_by_note(int8_model_dir, splitter, monkeypatch):
    model = NerModel(int8_model_dir)
    assert not model.batch_invariant
    calls: list[int] = []
    tag = model.tag
    monkeypatch.setattr(model, "tag", lambda sentences: calls.append(len(sentences)) or tag(sentences))
    notes = [(text, splitter.split(text)) for text in NOTES]
    together = ModelNerStage(model).find_many(notes)
    assert calls == [len(s) for _, s in notes]  # one tagging call per note
    assert together == [ModelNerStage(model).find(t, s) for t, s in notes]


def test_dequantize_rewrites_int8_as_a_batch_invariant_fp32_graph(int8_model_dir, fp32_model_dir, splitter, tmp_path):
    from clinlake.pipelines.training.ner.dequantize import NotDynamicInt8Error, dequantize_graph, is_dynamic_int8

    assert is_dynamic_int8(int8_model_dir / "model.onnx")
    target = tmp_path / "clinical_core"
    shutil.copytree(int8_model_dir, target)
    counts = dequantize_graph(int8_model_dir / "model.onnx", target / "model.onnx")
    assert counts == {"lstm": 1, "matmul": 1}
    assert not is_dynamic_int8(target / "model.onnx")
    with pytest.raises(NotDynamicInt8Error):
        dequantize_graph(target / "model.onnx", tmp_path / "again.onnx")
    meta = json.loads((target / "model.json").read_text(encoding="utf-8"))
    meta["quantization"] = {"kept": False}
    (target / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    rewritten = NerModel(target)
    sentences = [[t.text for t in s.tokens] for text in NOTES for s in splitter.split(text)]
    batch = rewritten.network_emissions(sentences)
    for index, words in enumerate(sentences):
        assert np.array_equal(batch[index, : len(words)], rewritten.network_emissions([words])[0][: len(words)])
    # The shipped weights are already int8-rounded, so quantising them again and rewriting the
    # result gives the shipped graph's scores back exactly: the rewrite loses nothing.
    assert np.array_equal(batch, NerModel(fp32_model_dir("clinical_core")).network_emissions(sentences))
    int8_scores = NerModel(int8_model_dir).network_emissions(sentences)
    assert 0 < np.abs(int8_scores - batch).max() < 1.0  # int8 activations: close, not equal
    feeds = encode_serving_batch(sentences, rewritten.features)
    assert set(feeds) == {i.name for i in rewritten.session.get_inputs()}

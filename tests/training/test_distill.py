"""Ensembles and distillation of an NER recipe (pipelines/training/ner/distill.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinlake.pipelines.engine.ner.crf import iob_spans
from clinlake.pipelines.resources import Resolver
from clinlake.pipelines.training.ner import cv as cv_module
from clinlake.pipelines.training.ner.cv import CrossValidationError, Recipe, cross_validate, read_fold_predictions
from clinlake.pipelines.training.ner.distill import Plan, decode_posteriors, silver_pool
from clinlake.pipelines.training.ner.gazetteer import Lexicon

TAGS = ["O", "B-Disease", "I-Disease"]


def test_max_marginal_decoding_keeps_iob2_valid_and_reports_the_averaged_posteriors():
    # I-Disease is the likeliest tag of the first token, which IOB2 forbids at a sentence start;
    # then a B-, an I- that follows it, and an O.
    marginals = np.array([[0.30, 0.10, 0.60], [0.10, 0.80, 0.10], [0.20, 0.10, 0.70], [0.90, 0.05, 0.05]])
    (tags, confidence), = decode_posteriors([marginals], TAGS)
    assert tags == ["O", "B-Disease", "I-Disease", "O"]
    assert confidence == [0.3, 0.8, 0.7, 0.9]
    # an I- after O is forbidden too: the path takes B- there (0.35) rather than the better I- (0.45)
    (tags, _), = decode_posteriors([np.array([[0.9, 0.05, 0.05], [0.20, 0.35, 0.45]])], TAGS)
    assert tags == ["O", "B-Disease"] and iob_spans(tags) == [(1, 2, "Disease")]
    assert decode_posteriors([np.zeros((0, 3))], TAGS) == [([], [])]


def _corpus(shared, write_vectors, *, train_rows, devel_rows, unlabelled):
    """A tiny NCBI-disease layout, its unlabelled text and word vectors for every word."""
    folder = shared / "ner" / "NCBI-disease"
    folder.mkdir(parents=True)
    for split, rows in (("train", train_rows), ("devel", devel_rows)):
        text = "".join("".join(f"{w}\t{t}\n" for w, t in zip(*row)) + "\n" for row in rows)
        (folder / f"{split}.tsv").write_text(text, encoding="utf-8")
    (shared / "corpus").mkdir()
    (shared / "corpus" / "biomedical_sentences.txt").write_text("\n".join(unlabelled) + "\n", encoding="utf-8")
    words = {w for tokens, _ in train_rows + devel_rows for w in tokens} | {w for s in unlabelled for w in s.split()}
    return write_vectors(shared, words)


ASTHMA = (["Aspirin", "induced", "asthma", "in", "a", "patient", "."], ["O", "O", "B-Disease", "O", "O", "O", "O"])
RENAL = (["No", "renal", "failure", "was", "seen", "."], ["O", "B-Disease", "I-Disease", "O", "O", "O"])
UNLABELLED = ["Aspirin induced asthma in a patient .",  # a train sentence: never silver
              "Severe asthma was seen .", "No renal failure in a patient .", "renal failure and asthma .",
              " ".join(["asthma"] * 30)]  # too long for max_pieces=20


def test_the_silver_pool_is_seeded_and_leaves_out_the_corpus_own_sentences_and_overlong_lines(tmp_path, write_vectors):
    _corpus(tmp_path, write_vectors, train_rows=[ASTHMA], devel_rows=[RENAL], unlabelled=UNLABELLED)
    plan = Plan(silver=10, max_pieces=20)
    pool = silver_pool("NCBI-disease", plan, shared=tmp_path)
    assert sorted(" ".join(p) for p in pool) == sorted(UNLABELLED[1:4])
    assert pool == silver_pool("NCBI-disease", plan, shared=tmp_path)  # deterministic
    assert len(silver_pool("NCBI-disease", Plan(silver=2, max_pieces=20), shared=tmp_path)) == 2
    with pytest.raises(CrossValidationError, match="members >= 1"):
        Plan(members=0)


@pytest.fixture
def tiny_cv(tmp_path, monkeypatch, write_vectors):
    """(word vectors, ncbi_disease's model folder) over a 12-sentence corpus, with a tiny recipe."""
    pytest.importorskip("torch")
    embeddings = _corpus(tmp_path, write_vectors, train_rows=[ASTHMA, RENAL] * 3, devel_rows=[RENAL, ASTHMA] * 3,
                         unlabelled=UNLABELLED)
    _tiny_recipe(monkeypatch)
    return embeddings, Resolver().model_dir("ncbi_disease")


def _tiny_recipe(monkeypatch, default_epochs=2, batch_pieces=1000, lexicons=()):
    monkeypatch.setattr(Recipe, "of_model", classmethod(lambda cls, d, epochs=None: cls(
        epochs=epochs or default_epochs, network={"hidden": 8, "char_filters": 4}, lr=1e-2, batch_pieces=batch_pieces,
        lexicons=lexicons)))


def test_distillation_cv_scores_today_ensemble_and_student_on_held_out_blocks(tmp_path, tiny_cv, monkeypatch):
    from clinlake.pipelines.training.ner.distill import distill_cv, format_distill_cv

    embeddings, model_dir = tiny_cv
    # the recipe names an open vocabulary: every gazetteer the folds score with must be learned with it
    lexicons = (Lexicon(label="Disease", names=("severe asthma",), source="test.txt"),)
    _tiny_recipe(monkeypatch, lexicons=lexicons)
    learned = cv_module.learn_gazetteer

    def learn_with_the_recipe_lexicons(examples, **options):
        assert options.get("lexicons") == lexicons, "a fold's gazetteer was learned without the recipe's lexicons"
        return learned(examples, **options)

    monkeypatch.setattr(cv_module, "learn_gazetteer", learn_with_the_recipe_lexicons)  # forked workers inherit it
    kept = tmp_path / "kept"
    report = distill_cv(None, model_dir, Plan(members=2, silver=3, ratio=0.5, max_pieces=20), k=3, epochs=2, jobs=2,
                        shared=tmp_path, embeddings_dir=embeddings, predictions_dir=kept)
    assert report["sentences"] == 12 and [f["held_out"] for f in report["folds"]] == [[0, 4], [4, 8], [8, 12]]
    assert all(f["train_sentences"] == 8 and f["silver_sentences"] == 3 for f in report["folds"])
    assert report["model_default_variant"] == "consistency+gazetteer"  # ncbi_disease's model.json choice
    assert report["consistency_entity_weight"] == 1.0  # scored with the model's vote weight (none recorded: 1)
    assert report["gazetteer_lexicons"] == [{"file": "test.txt", "label": "Disease", "names": 1}]
    assert set(report["summary"]) == {"network", "abbreviations", "consistency+gazetteer"}
    for rows in report["summary"].values():
        assert list(rows) == ["today", "ensemble", "student"]
        assert rows["today"]["gain"] == {"mean": 0.0, "sd": 0.0} and rows["today"]["folds_gaining"] == 0
    # member 0 is today's recipe exactly: the same held-out tags as plain CV's network
    plain = tmp_path / "plain"
    plain_report = cross_validate(None, model_dir, k=3, epochs=2, shared=tmp_path, embeddings_dir=embeddings,
                                  predictions_dir=plain)
    for fold in range(3):
        today = read_fold_predictions(kept / "today" / f"fold{fold}.json.gz")
        assert today == read_fold_predictions(plain / f"fold{fold}.json.gz")
        # and scored alike: the gazetteer variants with the recipe's lexicon, the vote with the model's weight
        scored = report["folds"][fold]["systems"]["today"]["variants"]
        assert scored == plain_report["folds"][fold]["variants"]
        for system in ("ensemble", "student"):
            saved = read_fold_predictions(kept / system / f"fold{fold}.json.gz")
            assert [len(t) for t in saved["tags"]] == [len(t) for t in today["tags"]]
            assert all(0.0 <= c <= 1.0 for row in saved["confidence"] for c in row)
    text = format_distill_cv(report)
    assert "3-fold distillation CV of ncbi_disease's recipe on NCBI-disease" in text and "2 members" in text


def test_fit_takes_tags_and_characters_from_gold_and_mixes_silver_into_each_epoch(tmp_path, write_vectors):
    pytest.importorskip("torch")
    from clinlake.pipelines.training.ner.loop import fit

    embeddings = _corpus(tmp_path, write_vectors, train_rows=[ASTHMA], devel_rows=[RENAL], unlabelled=UNLABELLED)
    silver = [(["Zyx", "renal", "failure"], ["O", "B-Disease", "I-Disease"])]  # characters gold lacks
    options = dict(max_minutes=5, epochs=2, network={"hidden": 8, "char_filters": 4}, embeddings_dir=embeddings)
    _, _, tags, chars, _, record = fit([ASTHMA, RENAL] * 2, {}, silver=silver, silver_ratio=0.25, **options)
    assert tags == TAGS and "Z" not in chars and "y" not in chars
    assert record["silver_sentences"] == 1 and record["silver_ratio"] == 0.25
    with pytest.raises(ValueError, match=r"silver examples carry tags the gold examples lack: \['B-Chemical'"):
        fit([ASTHMA, RENAL] * 2, {}, silver=[(["Zyx"], ["B-Chemical"])], silver_ratio=1.0, **options)
    _, _, _, _, _, plain = fit([ASTHMA, RENAL] * 2, {}, seed=14, **options)
    assert "silver_sentences" not in plain and plain["seed"] == 14


def test_a_distilled_student_is_exported_loaded_and_tags(tmp_path, monkeypatch, write_vectors):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from clinlake.pipelines.engine.ner.model import NerModel
    from clinlake.pipelines.training.ner import export
    from clinlake.pipelines.training.ner.distill import train_student

    embeddings = _corpus(tmp_path, write_vectors, train_rows=[ASTHMA, RENAL] * 4, devel_rows=[RENAL, ASTHMA], unlabelled=UNLABELLED)
    _tiny_recipe(monkeypatch, default_epochs=12, batch_pieces=8)  # a sentence per step
    monkeypatch.setattr(export, "tokens_per_second", lambda model, sequences, seconds=10.0: 1234.0)
    teacher = tmp_path / "models" / "ncbi_disease"
    teacher.mkdir(parents=True)
    meta = json.loads((Resolver().model_dir("ncbi_disease") / "model.json").read_text(encoding="utf-8"))
    (teacher / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    out = tmp_path / "student"
    plan = Plan(members=2, silver=3, ratio=1.0, max_pieces=20, student_hidden=6)  # members have 8 units
    info = train_student(teacher, plan, out_dir=out, shared=tmp_path,
                         embeddings_dir=embeddings, models=tmp_path / "models", artifacts=tmp_path / "build")
    distillation = info["distillation"]
    assert distillation["members"] == 2 and distillation["seeds"] == [13, 14] and distillation["silver_sentences"] == 3
    assert distillation["student_hidden"] == 6 and distillation["member_hidden"] == 8
    assert info["network"]["hidden"] == 6
    import onnx
    from clinlake.pipelines.training.ner.lstm_int8 import BOUND_UNITS

    lstm = next(n for n in onnx.load(str(out / "model.onnx")).graph.node if n.op_type.endswith("LSTM"))  # int8 or not
    bound_units = BOUND_UNITS if lstm.name.startswith("bounded_lstm") else 0  # int8: two units pin the ranges
    assert onnx.helper.get_attribute_value(next(a for a in lstm.attribute if a.name == "hidden_size")) == 6 + bound_units
    assert set(distillation["devel_f1_network_alone"]) == {"today", "ensemble", "student"}
    written = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert written["training"]["distillation"] == distillation and written["tags"] == TAGS
    assert written["training"]["refit_on_devel"] is False and written["training"]["train_sentences"] == 8
    assert written["speed_pieces_per_s_1_thread"] == 1234 and "dev" in written
    assert (tmp_path / "build").is_dir() and not (tmp_path / "models" / "README.md").exists()
    model = NerModel(out)
    tagged = model.tag([ASTHMA[0], RENAL[0]], every_confidence=True)
    assert [tags for tags, _ in tagged] == [ASTHMA[1], RENAL[1]]  # its training sentences, learned
    assert all(0.5 < c <= 1.0 for _, confidence in tagged for c in confidence)
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Distilled" in card and "an LSTM of 6 units per direction, the members' 8" in card
    assert "--student-hidden 6" in card  # the retrain command


def test_the_crf_posterior_loss_is_the_entropy_of_its_own_posteriors_and_has_no_gradient_there():
    torch = pytest.importorskip("torch")
    from clinlake.pipelines.engine.ner.crf import CrfDecoder
    from clinlake.pipelines.training.ner.network import build_crf

    torch.manual_seed(0)
    crf = build_crf(["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"])
    with torch.no_grad():
        for weights in (crf.start, crf.end, crf.trans):
            weights.normal_()
    emissions = torch.randn(3, 6, 5, requires_grad=True)
    lengths = [6, 3, 1]  # padding must not leak into a shorter sentence's posteriors
    mask = torch.arange(6).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    start, end, trans = (x.detach().double().numpy() for x in crf.scores())
    posteriors = CrfDecoder(start, end, trans, dtype=np.float64).posteriors(emissions.detach().double().numpy(), lengths)
    loss = crf.marginal_loss(emissions, torch.tensor(posteriors, dtype=torch.float32), mask)
    entropy = -np.mean([np.sum(p * np.log(np.where(p > 0, p, 1.0))) for p in
                        (posteriors[b, :n] for b, n in enumerate(lengths))])
    assert float(loss.detach()) == pytest.approx(entropy, abs=1e-4)
    loss.backward()  # the cross-entropy is smallest where the targets are the CRF's own posteriors
    assert float(emissions.grad.abs().max()) < 1e-5
    one_hot = torch.zeros(3, 6, 5)
    one_hot[:, :, 0] = 1.0  # all O: the loss is the sentences' -log P(O at every token) summed over tokens
    assert float(crf.marginal_loss(emissions, one_hot, mask).detach()) == pytest.approx(
        -np.mean([np.log(posteriors[b, :n, 0]).sum() for b, n in enumerate(lengths)]), abs=1e-4)


def test_a_soft_label_student_reuses_a_kept_teacher_and_refuses_another_pool(tmp_path, tiny_cv):
    from clinlake.pipelines.training.ner.distill import distill_cv, format_distill_cv

    embeddings, model_dir = tiny_cv
    hard, kept = Plan(members=2, silver=3, max_pieces=20), tmp_path / "kept"
    first = distill_cv(None, model_dir, hard, k=3, folds=[1], shared=tmp_path, embeddings_dir=embeddings,
                       predictions_dir=kept)
    assert (kept / "teacher" / "fold1.npz").is_file() and not first["folds"][0]["teacher_reused"]
    soft = Plan(members=2, silver=3, max_pieces=20, labels="soft", student_hidden=6)  # a smaller student
    again = distill_cv(None, model_dir, soft, k=3, folds=[1], shared=tmp_path, embeddings_dir=embeddings,
                       teacher_dir=kept, predictions_dir=tmp_path / "soft")
    fold = again["folds"][0]
    assert fold["teacher_reused"] and again["plan"]["labels"] == "soft"
    text = format_distill_cv(again)
    assert "a student of 6 LSTM units" in text and "(the student alone: a kept teacher)" in text
    assert "members, labelling, student" in format_distill_cv(first)
    for system in ("today", "ensemble"):  # reused, not retrained
        assert fold["systems"][system] == first["folds"][0]["systems"][system]
    assert read_fold_predictions(tmp_path / "soft" / "today" / "fold1.json.gz") == \
        read_fold_predictions(kept / "today" / "fold1.json.gz")
    with pytest.raises(CrossValidationError, match="another silver pool"):
        distill_cv(None, model_dir, Plan(members=2, silver=2, max_pieces=20, labels="soft"), k=3, folds=[1],
                   shared=tmp_path, embeddings_dir=embeddings, teacher_dir=kept)
    with pytest.raises(CrossValidationError, match="no kept teacher"):
        distill_cv(None, model_dir, soft, k=3, folds=[0], shared=tmp_path, embeddings_dir=embeddings,
                   teacher_dir=tmp_path / "soft")
    with pytest.raises(CrossValidationError, match="'hard' or 'soft'"):
        Plan(labels="warm")


def test_a_plan_gives_the_student_its_own_lstm_size_and_nothing_else():
    recipe = Recipe(epochs=5, network={"hidden": 150, "char_filters": 50, "dropout": 0.5}, lr=2e-3, batch_pieces=1000)
    assert Plan().student_recipe(recipe) is recipe
    smaller = Plan(student_hidden=100).student_recipe(recipe)
    assert smaller.network == {"hidden": 100, "char_filters": 50, "dropout": 0.5}
    assert (smaller.epochs, smaller.lr, smaller.batch_pieces) == (5, 2e-3, 1000)
    assert recipe.network["hidden"] == 150  # the members' recipe is untouched
    with pytest.raises(CrossValidationError, match="hidden size must be 1 or more"):
        Plan(student_hidden=0)

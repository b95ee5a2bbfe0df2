"""Training of the biomedical NER taggers: ``clinlake train ner`` (needs the ``train`` extra).

Model (Kocaman & Talby 2020 style BiLSTM-CNN-Char, with a CRF; :mod:`.network`):
    frozen shared fastText word vectors (200-d, trained here with gensim on the shared
    biomedical + health corpora and the NER train text; subword-composed vectors for every
    word of the NER corpora; :mod:`.embeddings`)
    + character CNN (25-d chars, 50 filters of width 3, max-pooled)
    + casing embedding (8-d)
    [+ gazetteer channels, with ``--gazetteer-features``: :mod:`.gazetteer_features`]
    → dropout → 1-layer BiLSTM (2 × 150) → dropout → linear emissions → linear-chain CRF
    with IOB2 constraints (O → I-X and X → I-Y forbidden), Viterbi decoding.

Adam, gradient clipping, batches of sentences of similar length, early stopping on strict
devel F1 with a wall-clock cap, fixed seeds (this module). Export: ONNX (opset 17, dynamic
batch and length) of the serving graph, built node by node from the trained weights — the
char CNN run once per distinct word of a batch, one bidirectional LSTM over
``sequence_lens`` — and checked against PyTorch before the model directory is written; then
devel evaluation, int8 dynamic quantisation of the LSTM/linear weights when devel F1
holds, timing, MODEL_CARD.md (:func:`~clinlake.pipelines.training.ner.export.finish`).

Featurisation (pieces, word keys, casing, characters) is imported from
:mod:`clinlake.pipelines.engine.ner.features`, the runtime's, so training and serving cannot
drift apart.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clinlake.pipelines.engine.ner.crf import CrfDecoder, iob_spans
from clinlake.pipelines.engine.ner.features import MAX_CHARS, Embeddings, WordFeatures, encode_batch
from clinlake.pipelines.engine.ner.gazetteer_channels import GazetteerChannels
from clinlake.pipelines.evaluation.ner import score_spans
from clinlake.pipelines.resources import models_dir
from clinlake.pipelines.training.cards import models_readme
from clinlake.pipelines.training.ner.artifacts import artifacts_dir, selection_model_dir
from clinlake.pipelines.training.ner.corpus import SEED, Example, entity_labels, load_split, tag_set
from clinlake.pipelines.training.ner.embeddings import build_embeddings, default_embeddings_dir
from clinlake.pipelines.training.ner.export import export, finish
from clinlake.pipelines.training.ner.gazetteer import Lexicon
from clinlake.pipelines.training.ner.gazetteer_features import training_channels
from clinlake.pipelines.training.ner.network import build_crf, build_network, torch_module

log = logging.getLogger("clinlake.train_ner")


def char_vocabulary(examples: Sequence[Example], min_count: int = 2) -> dict[str, int]:
    counts = Counter(ch for words, _ in examples for w in words for ch in w[:MAX_CHARS])
    chars = sorted(ch for ch, n in counts.items() if n >= min_count)
    return {ch: i for i, ch in enumerate(chars, start=2)}  # 0 pad, 1 unknown



def batches(examples: Sequence[Example], max_pieces: int, rng: random.Random | None) -> list[list[int]]:
    """Indices of examples grouped by similar length, at most ~max_pieces padded pieces each;
    shuffled (lengths jittered, batch order random) when rng is given."""
    def key(i: int) -> float:
        return len(examples[i][0]) + (rng.random() * 2 if rng else 0)

    order = sorted(range(len(examples)), key=key)
    groups: list[list[int]] = []
    group: list[int] = []
    for i in order:
        if group and len(examples[i][0]) * (len(group) + 1) > max_pieces:
            groups.append(group)
            group = []
        group.append(i)
    if group:
        groups.append(group)
    if rng:
        rng.shuffle(groups)
    return groups


# (id(char map), id(embeddings)) → (char map, the WordFeatures memo over it and the embeddings)
_FEATURES: dict[tuple[int, int], WordFeatures] = {}


def word_features(embeddings: Embeddings, chars: dict[str, int]) -> WordFeatures:
    """One feature memo per (embeddings, char map) for the whole training run."""
    # The memo holds the char map and the embeddings, so their ids cannot be reused while it lives.
    key = (id(chars), id(embeddings))
    if key not in _FEATURES:
        _FEATURES[key] = WordFeatures(embeddings, chars)
    return _FEATURES[key]


def tensors(examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int], tag_ids: dict[str, int],
            gazetteer: GazetteerChannels | None = None):
    """Training-graph inputs and gold tag ids of ``examples``; with ``gazetteer``, its channels join
    the word vectors (the network's word input is then that much wider)."""
    torch = torch_module()
    sentences = [w for w, _ in examples]
    feeds = encode_batch(sentences, word_features(embeddings, chars))
    if gazetteer is not None:
        feeds = gazetteer.with_words(feeds, sentences)
    inputs = {k: torch.from_numpy(v) for k, v in feeds.items()}
    gold = torch.zeros(inputs["cases"].shape, dtype=torch.long)
    for b, (_, tags) in enumerate(examples):
        gold[b, : len(tags)] = torch.tensor([tag_ids[t] for t in tags])
    return inputs, gold


def predict(net, crf, examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int],
            tags: Sequence[str]) -> list[list[str]]:
    """Viterbi tags (the runtime's NumPy decoder) for each example, with dropout off."""
    return [path for path, _ in predict_scored(net, crf, examples, embeddings, chars, tags)]


def predict_scored(net, crf, examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int],
                   tags: Sequence[str]) -> list[tuple[list[str], list[float]]]:
    """:func:`predict` with the CRF posterior of each chosen tag (for every token, O included),
    which document-level post-processing such as the label consistency vote weighs."""
    decoder = _decoder(crf)
    out: list[tuple[list[str], list[float]]] = [([], []) for _ in examples]
    for group, scores, lengths in _emissions(net, examples, embeddings, chars, tags):
        paths = decoder.paths(scores, lengths)
        chosen = decoder.confidences(scores, lengths, paths)
        for b, (i, n) in enumerate(zip(group, lengths)):
            out[i] = ([tags[k] for k in paths[b, :n].tolist()], [round(float(p), 4) for p in chosen[b, :n]])
    return out


def posteriors(net, crf, examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int],
               tags: Sequence[str]) -> list[np.ndarray]:
    """Per-token CRF tag posteriors [n, len(tags)] of each example (what an ensemble averages)."""
    decoder = _decoder(crf)
    out: list[np.ndarray] = [np.zeros((0, len(tags)))] * len(examples)
    for group, scores, lengths in _emissions(net, examples, embeddings, chars, tags):
        marginals = decoder.posteriors(scores, lengths)
        for b, (i, n) in enumerate(zip(group, lengths)):
            out[i] = marginals[b, :n].copy()
    return out


def _decoder(crf) -> CrfDecoder:
    start, end, trans = (s.detach().double().numpy() for s in crf.scores())
    return CrfDecoder(start, end, trans, dtype=np.float64)


def _emissions(net, examples: Sequence[Example], embeddings: Embeddings, chars: dict[str, int],
               tags: Sequence[str]):
    """(example indices, emission scores [B, T, K] as float64, lengths) of each batch, dropout off."""
    torch = torch_module()
    net.eval()
    tag_ids = {t: i for i, t in enumerate(tags)}
    with torch.no_grad():
        for group in batches(examples, 8192, None):
            inputs, _ = tensors([examples[i] for i in group], embeddings, chars, tag_ids, net.gazetteer)
            yield group, net(**inputs).double().numpy(), inputs["lengths"].tolist()


def strict_f1(examples: Sequence[Example], predicted: Sequence[Sequence[str]]) -> float:
    gold = [iob_spans(t) for _, t in examples]
    pred = [iob_spans(p) for p in predicted]
    return score_spans(gold, pred)["overall"]["f1"]


def fit(train_set: Sequence[Example], dev_sets: dict[str, Sequence[Example]], *, max_minutes: float, epochs: int,
        lr: float = 2e-3, batch_pieces: int = 1000, patience: int = 5, threads: int = 1, network: dict | None = None,
        embeddings_dir: Path | None = None, seed: int = SEED, silver: Sequence[Example] = (),
        silver_ratio: float = 0.0, silver_targets: Sequence[np.ndarray] | None = None,
        gazetteer_features: bool = False, channel_lexicons: Sequence[Lexicon] = ()):
    """Train a fresh network on ``train_set``; keep the epoch with the best mean (over the
    ``dev_sets``) strict devel F1. With no ``dev_sets`` (a refit on train+devel) run exactly
    ``epochs`` epochs and keep the last. ``network``: keyword arguments of :func:`build_network`
    (hidden, char_filters, dropout, ...). ``embeddings_dir``: the word vectors (default the
    shipped ``models/embeddings/``, trained first when missing). Returns (net, crf, tags, chars,
    embeddings, record).

    ``seed``: initialisation and batch order (ensemble members differ only in it). ``silver``:
    machine-labelled examples (distillation, :mod:`.distill`); each epoch adds a fresh sample of
    ``silver_ratio * len(train_set)`` of them to the gold ``train_set``. With ``silver_targets``
    (one [n, len(tags)] array of tag probabilities per silver example, in the tag order this run
    derives from the gold examples) silver batches train on the CRF posteriors' cross-entropy with
    them (posterior distillation) instead of the likelihood of their tags. The tag set and the
    character vocabulary come from the gold examples alone, so a student has its teacher's size.

    ``gazetteer_features``: the network also reads gazetteer channels learned from ``train_set``
    (jackknifed on it; :mod:`.gazetteer_features`), kept as ``net.gazetteer``; their list also holds
    the names of ``channel_lexicons``."""
    embeddings_dir = default_embeddings_dir() if embeddings_dir is None else embeddings_dir
    torch = torch_module()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    np.random.seed(seed)
    if not (embeddings_dir / "vocab.txt").exists():
        build_embeddings(embeddings_dir)
    embeddings = Embeddings.load(embeddings_dir)
    tags = tag_set(train_set)
    chars = char_vocabulary(train_set)
    unknown = sorted({t for _, ts in silver for t in ts} - set(tags))
    if unknown:
        raise ValueError(f"silver examples carry tags the gold examples lack: {unknown}")
    if silver_targets is not None and [len(w) for w, _ in silver] != [len(t) for t in silver_targets]:
        raise ValueError("silver_targets must hold one row of tag probabilities per token of each silver example")
    network = dict(network or {})
    if channel_lexicons and not gazetteer_features:
        raise ValueError("channel_lexicons go into gazetteer channels: they need gazetteer_features")
    gazetteer = (training_channels(train_set, entity_labels(tags), lexicons=channel_lexicons)
                 if gazetteer_features else None)
    word_dim = int(embeddings.vectors.shape[1]) + (gazetteer.width if gazetteer else 0)
    net, crf = build_network(len(chars) + 2, len(tags), word_dim=word_dim, **network), build_crf(tags)
    net.gazetteer = gazetteer
    optimizer = torch.optim.Adam(list(net.parameters()) + list(crf.parameters()), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0 / (1.0 + 0.05 * e))
    deadline = time.time() + max_minutes * 60
    best: dict = {"f1": -1.0, "epoch": 0, "state": None}
    history = []
    tag_ids = {t: i for i, t in enumerate(tags)}
    for epoch in range(1, epochs + 1):
        started = time.time()
        picked = silver_sample(range(len(silver)), round(silver_ratio * len(train_set)), rng)
        epoch_set = list(train_set) + [silver[i] for i in picked]
        groups = batches(epoch_set, batch_pieces, rng)
        soft = None
        if silver_targets is not None and picked:
            # gold and silver in separate batches: a batch trains on one loss. The mixed grouping above
            # is then unused, but it has drawn from rng, and the shipped soft-label student's batch
            # order depends on those draws, so it stays.
            groups = batches(train_set, batch_pieces, rng) + [
                [len(train_set) + i for i in group] for group in batches(epoch_set[len(train_set):], batch_pieces, rng)]
            rng.shuffle(groups)
            soft = {len(train_set) + j: silver_targets[i] for j, i in enumerate(picked)}
        loss = run_epoch(net, crf, optimizer, groups, epoch_set, embeddings, chars, tag_ids, deadline, soft=soft)
        scheduler.step()
        per_set = {name: strict_f1(dev, predict(net, crf, dev, embeddings, chars, tags))
                   for name, dev in dev_sets.items()}
        f1 = float(np.mean(list(per_set.values()))) if per_set else None
        history.append({"epoch": epoch, "loss": round(loss, 4), "dev_f1": None if f1 is None else round(f1, 4),
                        **({f"dev_f1_{k}": round(v, 4) for k, v in per_set.items()} if len(per_set) > 1 else {}),
                        "seconds": round(time.time() - started, 1)})
        log.info("epoch %d loss %.3f dev F1 %s (%.0f s)", epoch, loss, "-" if f1 is None else f"{f1:.4f}",
                 time.time() - started)
        if f1 is None:  # refit: nothing to select on, the last epoch is kept
            best = {"f1": None, "epoch": epoch, "state": None}
        elif f1 > best["f1"]:
            best = {"f1": f1, "epoch": epoch, "state": copy_state(net, crf)}
        if (f1 is not None and epoch - best["epoch"] >= patience) or time.time() > deadline:
            break
    if best["state"] is not None:
        net.load_state_dict(best["state"][0])
        crf.load_state_dict(best["state"][1])
    record = {"best_epoch": best["epoch"], "dev_f1": None if best["f1"] is None else round(best["f1"], 4),
              "history": history, "max_minutes": max_minutes, "lr": lr, "batch_pieces": batch_pieces, "seed": seed,
              "train_sentences": len(train_set), "refit_on_devel": not dev_sets, "network": network,
              "max_epochs": epochs, "patience": patience, "word_dim": word_dim,
              **({"gazetteer_features": gazetteer.record()} if gazetteer else {}),
              **({"silver_sentences": len(silver), "silver_ratio": silver_ratio,
                  "silver_labels": "soft" if silver_targets is not None else "hard"} if silver else {})}
    return net, crf, tags, chars, embeddings, record


def silver_sample(indices: Sequence[int], n: int, rng: random.Random) -> list[int]:
    """``n`` silver indices drawn without replacement (all of them when there are fewer)."""
    if not indices or n <= 0:
        return []
    return list(indices) if n >= len(indices) else rng.sample(list(indices), n)


def save_torch_state(model_dir: Path, net, crf, chars: dict[str, int], tags: Sequence[str], network: dict, *,
                     artifacts: Path | None = None) -> None:
    """PyTorch weights under :func:`~.artifacts.artifacts_dir` for benchmarks and re-export (not
    shipped), where :func:`~.export.load_torch` and :func:`~.export.finish` (the fp32 copy) look too."""
    torch = torch_module()
    artifacts = artifacts_dir(model_dir, artifacts=artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    torch.save({"net": net.state_dict(), "crf": crf.state_dict(), "n_chars": len(chars) + 2,
                "n_tags": len(tags), "network": network, "word_dim": int(net.word_dim)}, artifacts / "torch_state.pt")


def train(corpus: str, name: str, *, max_minutes: float, epochs: int, out_dir: Path, lr: float = 2e-3,
          batch_pieces: int = 1000, patience: int = 5, threads: int = 1, network: dict | None = None,
          embeddings_dir: Path | None = None, refit: bool = False, shared: Path | None = None,
          models: Path | None = None, artifacts: Path | None = None, gazetteer_features: bool = False,
          refit_epochs: int | None = None) -> dict:
    """Train on ``corpus`` train, keep the epoch with the best strict devel F1, export,
    evaluate and write the model card. Returns the training record.

    ``refit``: the train-only model is exported, evaluated on devel and kept under
    :func:`~.artifacts.selection_model_dir` (build/ner/<name>.selection/ for models/<name>; its
    devel scores are the held-out estimate the card reports);
    then a fresh network with the same seed and settings trains on train+devel for the
    selected number of epochs, and that one ships.

    ``shared``: the shared data folder (default :func:`~clinlake.pipelines.resources.shared_data`);
    ``models``, ``artifacts``, ``refit_epochs``: as :func:`train_and_ship`; ``gazetteer_features``: as
    :func:`fit`."""
    train_set, dev_set = load_split(corpus, "train", shared=shared), load_split(corpus, "devel", shared=shared)
    options = dict(max_minutes=max_minutes, lr=lr, batch_pieces=batch_pieces, patience=patience, threads=threads,
                   network=network, embeddings_dir=embeddings_dir, gazetteer_features=gazetteer_features)
    finish_model = functools.partial(finish, shared=shared, artifacts=artifacts)
    return train_and_ship(train_set, {corpus: dev_set}, name=name, corpus=corpus, out_dir=out_dir, epochs=epochs,
                          options=options, refit=refit, finish_model=finish_model, sample=dev_set[:64],
                          models=models, artifacts=artifacts, refit_epochs=refit_epochs)


def train_and_ship(train_set: Sequence[Example], dev_sets: dict[str, Sequence[Example]], *, name: str, corpus: str,
                   out_dir: Path, epochs: int, options: dict, refit: bool, finish_model: Callable[[Path], dict],
                   sample: Sequence[Example], extra: dict | None = None, info_extra: dict | None = None,
                   models: Path | None = None, artifacts: Path | None = None,
                   refit_epochs: int | None = None) -> dict:
    """What both trainers do once their data are loaded: :func:`fit` (epochs selected on
    ``dev_sets``), with ``refit`` the selection model exported and finished under
    :func:`~.artifacts.selection_model_dir` and a fresh network fitted on train+devel for the
    selected epoch count (or ``refit_epochs``, e.g. the count a cross-validation of the recipe ran);
    then export to ``out_dir``, PyTorch weights, ``finish_model`` (scores,
    int8, card) and, for a model under ``models`` (default the shipped ``models/``),
    models/README.md. ``info_extra`` joins the training record in model.json; ``artifacts``: the
    training artefacts' root (default ``build/ner/``)."""
    models = models_dir() if models is None else models
    embeddings_dir = options.get("embeddings_dir") or default_embeddings_dir()
    net, crf, tags, chars, embeddings, record = fit(train_set, dev_sets, epochs=epochs, **options)
    info = {"corpus": corpus, **record, **(info_extra or {})}
    if refit:
        selection_dir = selection_model_dir(out_dir, artifacts=artifacts)
        export(net, crf, name=name, corpus=corpus, tags=tags, chars=chars, out_dir=selection_dir, info=info,
               sample=sample, embeddings=embeddings, embeddings_dir=embeddings_dir, extra=extra, artifacts=artifacts)
        selected = finish_model(selection_dir)
        refit_set = list(train_set) + [ex for dev in dev_sets.values() for ex in dev]
        refit_count = refit_epochs or record["best_epoch"]
        net, crf, tags, chars, embeddings, refit_record = fit(refit_set, {}, epochs=refit_count, **options)
        info = {"corpus": corpus, **refit_record, "max_epochs": epochs, **(info_extra or {}),
                **({"refit_epochs": refit_epochs} if refit_epochs else {}),
                "selection": selection_record(record, selected)}
    export(net, crf, name=name, corpus=corpus, tags=tags, chars=chars, out_dir=out_dir, info=info,
           sample=sample, embeddings=embeddings, embeddings_dir=embeddings_dir, extra=extra, artifacts=artifacts)
    save_torch_state(out_dir, net, crf, chars, tags, record["network"], artifacts=artifacts)
    finish_model(out_dir)
    if out_dir.parent == models:
        (models / "README.md").write_text(models_readme(models), encoding="utf-8")
    return info


def selection_record(record: dict, selected: dict) -> dict:
    """What a refit model's model.json keeps of its train-only selection run (``record``: its
    training record; ``selected``: its finished model.json, with devel scores and quantisation)."""
    return {**{key: record[key] for key in ("best_epoch", "dev_f1", "history", "train_sentences")},
            "dev": selected["dev"], "quantization": selected["quantization"]}


def run_epoch(net, crf, optimizer, groups: list[list[int]], train_set: Sequence[Example], embeddings: Embeddings,
              chars: dict[str, int], tag_ids: dict[str, int], deadline: float,
              soft: dict[int, np.ndarray] | None = None) -> float:
    """One pass over the training batches (stops early at the deadline); mean loss. A batch of
    examples with ``soft`` targets (example index → [n, K] tag probabilities) trains on
    :meth:`marginal_loss`, any other on the CRF likelihood of its tags."""
    torch = torch_module()
    net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total, steps = 0.0, 0
    for group in groups:
        inputs, gold = tensors([train_set[i] for i in group], embeddings, chars, tag_ids, net.gazetteer)
        mask = torch.arange(gold.shape[1]).unsqueeze(0) < inputs["lengths"].unsqueeze(1)
        if soft and group[0] in soft:
            targets = np.zeros((*gold.shape, len(tag_ids)), dtype=np.float32)
            for b, i in enumerate(group):
                targets[b, : len(soft[i])] = soft[i]
            loss = crf.marginal_loss(net(**inputs), torch.from_numpy(targets), mask)
        else:
            loss = crf.nll(net(**inputs), gold, mask)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
        if time.time() > deadline:
            break
    return total / max(steps, 1)


def copy_state(net, crf) -> tuple[dict, dict]:
    return ({k: v.clone() for k, v in net.state_dict().items()}, {k: v.clone() for k, v in crf.state_dict().items()})


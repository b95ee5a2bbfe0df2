"""The clinical models' cards: the Markdown of ``MODEL_CARD.md`` written from a clinical (BRAT-trained)
model's ``model.json`` (devel scores on raw documents, type map, data counts, training record).

Plain text from plain data, as :mod:`clinlake.pipelines.training.cards` (the biomedical cards and
``models/README.md``) whose helpers it shares.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from clinlake.pipelines.corpora.clinical import BRAT_CORPORA
from clinlake.pipelines.corpora.label_maps import load_label_map
from clinlake.pipelines.resources import source_root
from clinlake.pipelines.training.cards import devel_estimate, served_note, size_mb, training_flags, weights_precision
from clinlake.pipelines.training.cv_card import cv_card_lines

CLINICAL_LICENCES = {
    "MACCROBAT": "CC BY 4.0 (Caufield et al. 2019, MACCROBAT2018, figshare 10.6084/m9.figshare.9764942)",
    "Chia": "CC BY 4.0 (Kury et al. 2020, Chia: a large annotated corpus of clinical trial eligibility criteria)",
    "PHEE": "MIT (Sun et al. 2022, PHEE: a dataset for pharmacovigilance event extraction from text; "
            "sentences of drug-safety case reports, one document each)",
}


def _micro_rows(result: dict) -> list[str]:
    rows = [("**micro**", result["micro"]), *sorted(result["per_type"].items())]
    return [f"| {name} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {100 * r['f1']:.2f} | {r['gold']} |"
            for name, r in rows]


def _type_map_rows(meta: dict, root: Path) -> list[str]:
    rows = []
    for corpus, path in meta["label_maps"].items():
        mapping = load_label_map(root / path)
        for label in sorted(set(mapping.values())):
            sources = sorted(k for k, v in mapping.items() if v == label)
            rows.append(f"| {label} | {corpus} | {', '.join(sources)} |")
    return rows


def _devel_location(corpus: str) -> str:
    return "build/brat/PHEE/devel" if corpus == "PHEE" else f"../shared/data/{BRAT_CORPORA[corpus]}/devel"


def _leading_comments(path: Path) -> list[str]:
    """The comment block at the top of a label map, as a Markdown code block."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return ["```text", *lines, "```", ""] if lines else []


def _own_strict(dev: dict) -> str:
    return ", ".join(f"{corpus} {100 * report['strict']['micro']['f1']:.2f}" for corpus, report in dev.items())


def _data_lines(name: str, corpora: Sequence[str], training: dict, own_dev: dict) -> list[str]:
    """Model-card lines on the training documents (and, for a refit, the devel ones)."""
    selection = training.get("selection")
    lines = []
    for c in corpora:
        train, devel = training["data"][c + "/train"], training["data"][c + "/devel"]
        lines.append(f"- {c}: **train** split (`../shared/data/{BRAT_CORPORA[c]}/{'train.json' if c == 'PHEE' else 'train/'}`), "
                     f"{train['documents']} documents, {train['sentences']} sentences of clinlake's splitter"
                     + (f"; refit: also the **devel** split, {devel['documents']} documents, {devel['sentences']} "
                        "sentences" if selection else "")
                     + f". Licence: {CLINICAL_LICENCES[c]}.")
    if selection:
        lines.append(
            f"- Refit on train+devel: the shipped network trained on both splits ({training['train_sentences']} "
            f"sentences) for {training['best_epoch']} epochs, the epoch count that a train-only run (same seed and "
            f"settings, {selection['train_sentences']} sentences) selected on **devel** (mean over the corpora of strict "
            "entity F1 on devel sentences). The devel scores below are that train-only model's, the held-out "
            f"estimate (training keeps it under `build/ner/{name}.selection/`); the shipped model has seen devel (its own "
            f"devel strict F1, {_own_strict(own_dev)}, estimates nothing). The test splits were never used.")
    else:
        lines.append("- Epochs selected on **devel** (mean over the corpora of strict entity F1 on devel sentences). "
                     "Not refit on train+devel. The test splits were never used.")
    return lines


def clinical_model_card(model_dir: Path, meta: dict, *, root: Path | None = None) -> str:
    """MODEL_CARD.md of a clinical model (trained on BRAT documents). ``root``: what the label-map
    paths of model.json are relative to (default the checkout, :func:`~clinlake.pipelines.resources.source_root`)."""
    root = source_root() if root is None else root
    training, quant = meta["training"], meta["quantization"]
    selection = training.get("selection")
    network = training.get("network") or {}
    corpora = list(meta["label_maps"])
    precision = weights_precision(quant)
    brat_flags = " ".join(f"--brat {c}={p}" for c, p in meta["label_maps"].items())
    lines = [
        f"# {meta['name']} — clinical NER on raw text (BiLSTM-CNN-Char-CRF, ONNX)",
        "",
        f"Version `{meta['version']}` · labels: {', '.join(meta['labels'])}",
        "",
        "## Data and licence",
        *_data_lines(meta["name"], corpora, training, meta["dev"]),
        "- Word vectors: the shared fastText vectors of `models/embeddings/` (see the biomedical model cards).",
        "",
        "## Type map",
        "Gold types → labels (label-map files named below; types not listed are not trained on and not scored):",
        "",
        "| label | corpus | gold types |",
        "|---|---|---|",
        *_type_map_rows(meta, root),
        "",
        "Label maps: " + ", ".join(f"`{p}`" for p in meta["label_maps"].values()) + ". What they leave out and why "
        "(from the files):",
        "",
        *[line for path in meta["label_maps"].values() for line in _leading_comments(root / path)],
        "",
        "## How documents become training data",
        "Each `.txt` is split by clinlake's own sentence splitter and tokenizer, exactly as at run time, and tokens "
        "are cut into model pieces; mapped gold entities become IOB2 tags. Left out of training (not of scoring): "
        "discontinuous entities, entities overlapping a longer kept one (outer mention wins), and entities our "
        "splitter cuts across two sentences:",
        "",
        "| split | documents | sentences | entities kept | discontinuous | overlapping | cross-sentence | widened to pieces |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {k} | {v['documents']} | {v['sentences']} | {sum(v['entities'].values())} | "
          f"{v['left_out'].get('discontinuous', 0)} | {v['left_out'].get('overlapping', 0)} | "
          f"{v['left_out'].get('cross_sentence', 0)} | {v['widened']} |" for k, v in training["data"].items()],
        "",
        "## Architecture",
        "As the biomedical models: frozen shared fastText vectors + character CNN "
        f"({network.get('char_filters', 50)} filters) + casing → dropout {network.get('dropout', 0.5)} → BiLSTM "
        f"2×{network.get('hidden', 150)} → CRF with IOB2 constraints. Weights: {precision} ({quant.get('tried')} tried: mean devel strict F1 fp32 "
        f"{100 * quant.get('dev_f1_fp32', 0):.2f}, int8 {100 * quant.get('dev_f1_int8', 0):.2f}"
        + ("; devel is in the refit's training data, so this checks only that int8 keeps its outputs)." if selection
           else ").") + served_note(quant),
        "",
        "## Devel scores on raw documents (`clinlake evaluate brat`, character offsets)",
        "Strict = exact start, end and type; lenient = overlap and type (see `pipelines/evaluation/brat.py`). "
        "The model runs alone (no dictionary stage) through the full engine, with document-level abbreviation "
        "propagation as by default (`pipelines/engine/short_forms.py`: \"long form (SF)\" with the long form tagged makes "
        "SF an entity of its label from the definition to the end of the document)."
        + (" Scores of the train-only selection model (the shipped refit has seen devel)." if selection else ""),
    ]
    for corpus, report in devel_estimate(meta).items():
        lines += [
            "",
            f"### {corpus} devel ({report['documents']} documents)",
            "",
            f"Strict micro F1 **{100 * report['strict']['micro']['f1']:.2f}**, lenient micro F1 "
            f"**{100 * report['lenient']['micro']['f1']:.2f}**"
            + (f" (without abbreviation propagation: strict {100 * report['model_alone']['strict']['micro']['f1']:.2f}, "
               f"lenient {100 * report['model_alone']['lenient']['micro']['f1']:.2f})." if "model_alone" in report
               else "."),
            "",
            "| strict | P | R | F1 | gold |",
            "|---|---|---|---|---|",
            *_micro_rows(report["strict"]),
            "",
            "| lenient | P | R | F1 | gold |",
            "|---|---|---|---|---|",
            *_micro_rows(report["lenient"]),
        ]
    lines += [
        "",
        f"Best epoch {(selection or training)['best_epoch']} of {len((selection or training)['history'])} (patience "
        f"{training.get('patience', 5)} or the {training['max_minutes']:g}-minute cap, one CPU thread on a shared 2-core "
        "machine). " + ("Selection run history" if selection else "History") + " (epoch: loss / mean devel F1): "
        + ", ".join(f"{h['epoch']}: {h['loss']:.2f} / {100 * h['dev_f1']:.2f}" for h in (selection or training)["history"])
        + ("" if not selection else ". Refit history (epoch: loss on train+devel): "
           + ", ".join(f"{h['epoch']}: {h['loss']:.2f}" for h in training["history"])),
        *cv_card_lines(meta["corpus"], meta.get("cv"), command=f"clinlake evaluate cv --model {meta['name']}",
                       unit="sentences of train+devel documents (in name order, corpus by corpus; scored on model "
                            "pieces, not on the character offsets above)"),
        "",
        "## Size and speed",
        f"- `model.onnx` {size_mb(model_dir / 'model.onnx'):.1f} MB; shared embeddings counted once for all models.",
        f"- {meta['speed_pieces_per_s_1_thread']:,} tokens/s on one core (onnxruntime, 1 thread, end to end; "
        "shared machine, so a lower bound). Side by side with spaCy: `benchmarks/clinical_peers.py`.",
        "",
        "## Retrain",
        "```bash",
        f"clinlake train clinical --name {meta['name']} {brat_flags} --max-minutes {training['max_minutes']:g}"
        f"{training_flags(training)}",
        "```",
        f"(`pip install -e '.[train]'`; seed {training['seed']}.) Score: "
        + " and ".join(f"`clinlake evaluate brat --model {meta['name']} --data {_devel_location(c)} "
                       f"--predictions OUT --label-map {p}`" for c, p in meta["label_maps"].items())
        + (" (PHEE as BRAT: `clinlake corpora phee-to-brat --out build/brat/PHEE`)." if "PHEE" in meta["label_maps"]
           else "."),
        "",
    ]
    return "\n".join(lines)

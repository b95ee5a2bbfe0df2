"""Does a refit on train+devel pay? A held-out check on halves of devel, per model.

    .venv/bin/python benchmarks/refit_check.py ncbi_disease clinical_core [--halves A B]
                                               [--work build/refit_check] [--out benchmarks/results/refit_check.json]

A refit model (``clinlake train … --refit``) has seen devel, so devel cannot score it. This script
repeats the refit procedure with half of devel standing in for devel and the other half held out:

1. cut devel in two halves, A and B (biomedical CoNLL files: the first and second half of the
   sentences, so documents mostly stay whole; clinical BRAT corpora: alternate documents);
2. with half S: a train-only run selects the epoch count on S (as training does on devel, same
   seed and settings as the shipped model's record), then a refit trains on train + S for that
   many epochs;
3. both networks (int8, as shipped) are scored on the other half, which neither saw: strict F1
   with abbreviation propagation (biomedical; conlleval semantics) or strict micro F1 on the
   documents (clinical; ``clinlake evaluate brat``, per corpus);
4. the same with the halves swapped.

It prints refit minus train-only per half and writes JSON. Training needs the ``train`` extra
(torch, onnx). Half of devel adds half the data of a real refit, so the check is conservative
for the refit; seed noise alone moves devel F1 by a few tenths. Only scores are printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one training thread, as the trainers default to

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_common import write_results  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "refit_check.json"


class Check:
    """One shipped model's data, cut into devel halves under ``work``."""

    def __init__(self, name: str, work: Path) -> None:
        from clinlake.pipelines.engine.ner.metadata import read_meta
        from clinlake.pipelines.resources import models_dir

        self.name, self.work = name, work / name
        self.meta = read_meta(models_dir() / name)
        self.clinical = self.meta.get("kind") == "brat"
        self.work.mkdir(parents=True, exist_ok=True)
        if self.clinical:
            self._clinical_halves()
        else:
            self._conll_halves()

    def _conll_halves(self) -> None:
        from clinlake.pipelines.training.ner.corpus import load_split, split_path

        corpus = self.meta["corpus"]
        text = split_path(corpus, "devel").read_text(encoding="utf-8")
        blocks = [b for b in text.split("\n\n") if b.strip()]
        middle = len(blocks) // 2
        self.halves = {}
        for half, part in (("A", blocks[:middle]), ("B", blocks[middle:])):
            path = self.work / f"devel_{half}.tsv"
            path.write_text("\n\n".join(part) + "\n\n", encoding="utf-8")
            self.halves[half] = path
        self.train_set = load_split(corpus, "train")

    def _clinical_halves(self) -> None:
        from clinlake.pipelines.corpora.clinical import load_brat_split
        from clinlake.pipelines.corpora.label_maps import load_label_map
        from clinlake.pipelines.engine.text import TextSplitter
        from clinlake.pipelines.resources import source_root
        from clinlake.pipelines.training.clinical import corpus_dir, default_abbreviations

        self.splitter = TextSplitter.from_file(default_abbreviations())
        self.maps = {c: load_label_map(source_root() / p) for c, p in self.meta["label_maps"].items()}
        self.halves = {}
        for corpus in self.maps:
            devel = corpus_dir(corpus, "devel")
            documents = sorted(p.stem for p in devel.glob("*.txt"))
            for half, part in (("A", documents[0::2]), ("B", documents[1::2])):
                target = self.work / "devel" / corpus / half
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                for stem in part:
                    for suffix in (".txt", ".ann"):
                        shutil.copyfile(devel / f"{stem}{suffix}", target / f"{stem}{suffix}")
                self.halves[corpus, half] = target
        self.train_set = [ex for c, m in self.maps.items()
                          for ex in load_brat_split(corpus_dir(c, "train"), m, self.splitter)]

    def dev_sets(self, half: str) -> dict[str, list]:
        from clinlake.pipelines.corpora.conll import read_conll
        from clinlake.pipelines.training.ner.corpus import to_pieces

        if self.clinical:
            from clinlake.pipelines.corpora.clinical import load_brat_split

            return {c: load_brat_split(self.halves[c, half], m, self.splitter) for c, m in self.maps.items()}
        return {self.meta["corpus"]: [to_pieces(t, g) for t, g in read_conll(self.halves[half])]}

    def run(self, selection_half: str) -> dict:
        """Train-only (selected on ``selection_half``) and refit, both scored on the other half."""
        from clinlake.pipelines.training.ner.loop import fit

        held_out = "B" if selection_half == "A" else "A"
        training = self.meta["training"]
        options = dict(max_minutes=120, lr=training["lr"], patience=training.get("patience", 5),
                       network=training.get("network"))
        dev_sets = self.dev_sets(selection_half)
        *trained, record = fit(self.train_set, dev_sets, epochs=training.get("max_epochs", 80), **options)
        train_only = self.export(trained, record, f"select_{selection_half}_train_only")
        refit_set = self.train_set + [ex for dev in dev_sets.values() for ex in dev]
        *trained, refit_record = fit(refit_set, {}, epochs=record["best_epoch"], **options)
        refit = self.export(trained, refit_record, f"select_{selection_half}_refit")
        return {"selection_half": selection_half, "held_out_half": held_out, "epochs": record["best_epoch"],
                "train_only": self.score(train_only, held_out), "refit": self.score(refit, held_out)}

    def export(self, trained: Sequence, record: dict, label: str) -> Path:
        """An int8 ONNX model of the network (as shipped), under the work folder."""
        from clinlake.pipelines.training.ner.export import export, quantize_dynamic_copy

        net, crf, tags, chars, embeddings = trained
        out = self.work / label
        extra = {"kind": "brat", "label_maps": self.meta["label_maps"]} if self.clinical else None
        export(net, crf, name=self.name, corpus=self.meta["corpus"], tags=tags, chars=chars, out_dir=out,
               info=record, sample=self.train_set[:64], embeddings=embeddings, extra=extra)
        full = self.work / f"{label}.fp32.onnx"
        shutil.copyfile(out / "model.onnx", full)
        quantize_dynamic_copy(full, out / "model.onnx")
        return out

    def score(self, model_dir: Path, half: str) -> dict[str, float]:
        if self.clinical:
            from clinlake.pipelines.evaluation.brat import brat_pipeline, evaluate

            pipeline = brat_pipeline(str(model_dir.resolve()))
            return {c: evaluate(self.halves[c, half], self.work / "predictions" / model_dir.name / c, label_map=m,
                                pipeline=pipeline)["strict"]["micro"]["f1"] for c, m in self.maps.items()}
        from clinlake.pipelines.evaluation.ner import evaluate_model
        from clinlake.pipelines.engine.ner.model import NerModel

        report = evaluate_model(NerModel(model_dir), self.halves[half], raw_text=False)
        return {self.meta["corpus"]: report["tokens"]["overall"]["f1"]}


def format_table(results: dict) -> str:
    lines = [f"{'model':<16} {'devel set':<12} {'select on':>9} {'epochs':>6} {'train-only':>10} {'refit':>7} {'refit - t.o.':>12}"]
    for name, runs in results.items():
        for run in runs:
            for corpus, train_only in run["train_only"].items():
                refit = run["refit"][corpus]
                lines.append(f"{name:<16} {corpus:<12} {run['selection_half']:>9} {run['epochs']:>6} "
                             f"{100 * train_only:>10.2f} {100 * refit:>7.2f} {100 * (refit - train_only):>+12.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="shipped model names (models/<name>), biomedical or clinical")
    parser.add_argument("--halves", nargs="+", choices=("A", "B"), default=["A", "B"],
                        help="the devel half(s) that select the epoch count (default both, one after the other)")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "refit_check")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = {}
    for name in args.models:
        check = Check(name, args.work)
        results[name] = [check.run(half) for half in args.halves]
    print(format_table(results))
    write_results(args.out, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

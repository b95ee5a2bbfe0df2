"""Engine cost of the NER stage's document-level steps, beside the tagging they follow.

    python -m benchmarks.document_level [--models ncbi_disease linnaeus] [--sentences 2000]
                                        [--stage-models clinical_core bc5cdr]
                                        [--out benchmarks/results/document_level.json]

Two measurements. **In the stage** (``--stage-models``): the NER stage of each model over the bundled
sample notes (sentences split first, untimed; ``find_many`` per group of 64 notes, as a Spark Arrow batch,
fastest of ``--repeat``), with the model's default steps (chosen by cross-validation), with
abbreviations only (the built-in default) and with no step: words/s and each against no step.

**By variant**: for each model, its corpus's devel sentences (the first ``--sentences``, consecutive, so a
"document" is a window of neighbouring sentences as in ``clinlake evaluate``) are tagged on ONE
thread, twice: as the stage tags by default (posteriors only for windows with an entity) and with
every token's confidence (what the label consistency vote needs). Then each variant of
:mod:`pipelines.evaluation.ner_variants` is applied to the same tags and timed alone. Reported:
seconds per 1,000 sentences and each step's cost as a share of the default tagging time. Ratios
from one run compare; absolute seconds move with the machine's load.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/onnxruntime start their pools

from benchmarks.bench_common import write_results  # noqa: E402
from clinlake.pipelines.corpora.conll import read_conll  # noqa: E402
from clinlake.pipelines.engine.ner.model import load_model  # noqa: E402
from clinlake.pipelines.engine.ner.metadata import read_meta  # noqa: E402
from clinlake.pipelines.evaluation.ner import tag_tokens_scored  # noqa: E402
from clinlake.pipelines.evaluation.ner_variants import VARIANTS, Tagged  # noqa: E402
from clinlake.pipelines.resources import Resolver  # noqa: E402
from clinlake.pipelines.training.ner.corpus import load_split, split_path  # noqa: E402
from clinlake.pipelines.training.ner.gazetteer import learn_gazetteer, read_lexicons  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = "model's defaults"
MODELS = {"ncbi_disease": "NCBI-disease", "bc5cdr": "BC5CDR", "anatem": "AnatEM", "bionlp13cg": "BioNLP13CG",
          "linnaeus": "LINNAEUS"}


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeat`` timed runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


class _EveryConfidence:
    """The model as the label consistency vote calls it: every token's confidence."""

    def __init__(self, model) -> None:
        self.model = model

    def tag(self, sequences, every_confidence: bool = False):
        return self.model.tag(sequences, every_confidence=True)


class _EntitiesOnly:
    """The model as the stage calls it by default: confidences only where an entity was found."""

    def __init__(self, model) -> None:
        self.model = model

    def tag(self, sequences, every_confidence: bool = False):
        return self.model.tag(sequences)


def measure(model_name: str, *, sentences: int, repeat: int) -> dict:
    corpus = MODELS[model_name]
    devel = read_conll(split_path(corpus, "devel"))[:sentences]
    model_dir = Resolver().model_dir(model_name)
    model = load_model(model_dir)
    tag_default = best_of(repeat, lambda: tag_tokens_scored(_EntitiesOnly(model), devel))
    tag_every = best_of(repeat, lambda: tag_tokens_scored(_EveryConfidence(model), devel))
    scored = tag_tokens_scored(model, devel)
    tagged = Tagged([tokens for tokens, _ in devel], [tags for tags, _ in scored], [conf for _, conf in scored],
                    gazetteer=learn_gazetteer(load_split(corpus, "train"), lexicons=read_lexicons(read_meta(model_dir))))
    per_1k = 1000 / len(devel)
    steps = {"tagging (entity confidences)": tag_default, "tagging (every confidence)": tag_every}
    steps.update({name: best_of(repeat, lambda v=variant: v(tagged)) for name, variant in VARIANTS.items()})
    return {"corpus": corpus, "sentences": len(devel),
            "seconds_per_1k_sentences": {k: round(v * per_1k, 4) for k, v in steps.items()},
            "share_of_tagging": {k: round(v / tag_default, 4) for k, v in steps.items()}}


def stage_cost(model_name: str, *, repeat: int, group: int = 64) -> dict:
    """The NER stage over the sample notes with the model's default steps, abbreviations only, none."""
    from benchmarks.corpus import sample_texts, words
    from clinlake.pipelines.engine.ner.metadata import ModelMeta
    from clinlake.pipelines.engine.ner.stage import load_ner_stage
    from clinlake.pipelines.engine.text import TextSplitter

    model_dir = Resolver().model_dir(model_name)
    texts = sample_texts()
    splitter = TextSplitter.from_file()
    notes = [(t, splitter.split(t)) for t in texts]
    settings = {DEFAULTS: {},
                "abbreviations only": dict(propagate_abbreviations=True, label_consistency=False,
                                           binomial_short_forms=False, gazetteer=False),
                "no step": dict(propagate_abbreviations=False, label_consistency=False, binomial_short_forms=False,
                                gazetteer=False)}
    out = {"model": model_name, "defaults": ModelMeta.load(model_dir).document_level, "notes": len(notes),
           "words": sum(map(words, texts))}
    for name, options in settings.items():
        stage = load_ner_stage(model_dir, **options)
        stage.find_many(notes[:20])  # warm-up
        entities = 0

        def run() -> None:
            nonlocal entities
            entities = sum(len(found) for lo in range(0, len(notes), group)
                           for found in stage.find_many(notes[lo:lo + group]))

        seconds = best_of(repeat, run)
        out[name] = {"seconds": round(seconds, 3), "words_per_s": round(out["words"] / seconds), "entities": entities}
    for name in settings:
        out[name]["time_vs_no_step"] = round(out[name]["seconds"] / out["no step"]["seconds"], 3)
    return out


def stage_table(results: Sequence[dict]) -> str:
    lines = ["| model | default steps | words/s, default steps | abbreviations only | no step | "
             "time, default / no step | entities (default / no step) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        steps = ", ".join(k for k, on in r["defaults"].items() if on) or "none"
        default, alone, none = r[DEFAULTS], r["abbreviations only"], r["no step"]
        lines.append(f"| `{r['model']}` | {steps} | {default['words_per_s']:,} | {alone['words_per_s']:,} | "
                     f"{none['words_per_s']:,} | {default['time_vs_no_step']:.3f} | "
                     f"{default['entities']:,} / {none['entities']:,} |")
    return "\n".join(lines)


def table(results: dict) -> str:
    names = list(next(iter(results.values()))["share_of_tagging"])
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for model, r in results.items():
        cells = [f"{r['seconds_per_1k_sentences'][n]:.3f} s ({100 * r['share_of_tagging'][n]:.1f} %)" for n in names]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sentences", type=int, default=2000, help="devel sentences per model (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per step; the fastest counts (default 3)")
    parser.add_argument("--stage-models", nargs="*", default=["clinical_core"],
                        help="models whose NER stage is timed on the sample notes (default clinical_core)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "document_level.json")
    args = parser.parse_args(argv)
    stages = [stage_cost(m, repeat=args.repeat) for m in args.stage_models]
    if stages:
        print("the NER stage on the bundled sample notes, one thread")
        print(stage_table(stages))
    results = {m: measure(m, sentences=args.sentences, repeat=args.repeat) for m in args.models}
    if results:
        print("seconds per 1,000 devel sentences, one thread (share of the default tagging time)")
        print(table(results))
    write_results(args.out, {"command": "python -m benchmarks.document_level " + " ".join(argv or []),
                             "stage": stages, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Engine cost of the NER stage's document-level steps, beside the tagging they follow.

    python -m benchmarks.document_level [--models ncbi_disease linnaeus] [--sentences 2000]
                                        [--out benchmarks/results/document_level.json]

For each model, its corpus's devel sentences (the first ``--sentences``, consecutive, so a
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
from clinlake.pipelines.evaluation.ner import tag_tokens_scored  # noqa: E402
from clinlake.pipelines.evaluation.ner_variants import VARIANTS, Tagged  # noqa: E402
from clinlake.pipelines.resources import Resolver  # noqa: E402
from clinlake.pipelines.training.ner.corpus import load_split, split_path  # noqa: E402
from clinlake.pipelines.training.ner.gazetteer import learn_gazetteer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
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
    model = load_model(Resolver().model_dir(model_name))
    tag_default = best_of(repeat, lambda: tag_tokens_scored(_EntitiesOnly(model), devel))
    tag_every = best_of(repeat, lambda: tag_tokens_scored(_EveryConfidence(model), devel))
    scored = tag_tokens_scored(model, devel)
    tagged = Tagged([tokens for tokens, _ in devel], [tags for tags, _ in scored], [conf for _, conf in scored],
                    gazetteer=learn_gazetteer(load_split(corpus, "train")))
    per_1k = 1000 / len(devel)
    steps = {"tagging (entity confidences)": tag_default, "tagging (every confidence)": tag_every}
    steps.update({name: best_of(repeat, lambda v=variant: v(tagged)) for name, variant in VARIANTS.items()})
    return {"corpus": corpus, "sentences": len(devel),
            "seconds_per_1k_sentences": {k: round(v * per_1k, 4) for k, v in steps.items()},
            "share_of_tagging": {k: round(v / tag_default, 4) for k, v in steps.items()}}


def table(results: dict) -> str:
    names = list(next(iter(results.values()))["share_of_tagging"])
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for model, r in results.items():
        cells = [f"{r['seconds_per_1k_sentences'][n]:.3f} s ({100 * r['share_of_tagging'][n]:.1f} %)" for n in names]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sentences", type=int, default=2000, help="devel sentences per model (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per step; the fastest counts (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "document_level.json")
    args = parser.parse_args(argv)
    results = {m: measure(m, sentences=args.sentences, repeat=args.repeat) for m in args.models}
    print("seconds per 1,000 devel sentences, one thread (share of the default tagging time)")
    print(table(results))
    write_results(args.out, {"command": "python -m benchmarks.document_level " + " ".join(argv or []),
                             "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

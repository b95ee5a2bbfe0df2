"""NER speed per core: each shipped model in onnxruntime vs the same network in PyTorch.

    python benchmarks/ner_speed.py [--models ncbi_disease bc5cdr] [--sentences 1000] [--seconds 3]
                                   [--out benchmarks/results/ner_speed.json]

Both run on ONE thread (onnxruntime intra/inter-op 1, torch.set_num_threads(1)) over the same
devel sentences, batched by length exactly as the runtime batches them. Two numbers each:

* network: the emission network alone on pre-built input arrays (ONNX: the serving graph,
  which runs the char CNN once per distinct word of a batch and both LSTM directions as one
  ONNX LSTM over the sentence lengths, int8 weights when the card says so, in the runtime's
  network batches of NETWORK_PIECES padded pieces; PyTorch: the training graph, fp32, eager,
  in whichever of NETWORK_PIECES or BATCH_PIECES batches is faster for it);
* end to end: ``NerModel.tag`` — features + network + batched CRF Viterbi + marginals, what a
  pipeline stage pays; the PyTorch run swaps only the emission network (at its faster batch size).

The PyTorch weights come from training (``build/ner/<name>/torch_state.pt``, not shipped);
a model without them is reported for onnxruntime only. The shipped ``model.onnx`` may be
int8 (see its card); the fp32 export is also timed when ``build/ner/<name>/model.fp32.onnx``
exists. Measurements run one after the other, so compare ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy/onnxruntime/torch start their pools


from clinlake.pipelines.resources import package_resource  # noqa: E402
from clinlake.pipelines.engine.batching import padded_runs
from clinlake.pipelines.engine.ner.model import BATCH_PIECES, NETWORK_PIECES, NerModel
from clinlake.pipelines.engine.ner.features import encode_batch, encode_serving_batch
from clinlake.pipelines.training.ner.artifacts import artifacts_dir  # noqa: E402

MODELS = ("ncbi_disease", "bc5cdr", "anatem", "bionlp13cg", "linnaeus")
REPO = Path(__file__).resolve().parents[1]


def devel_sentences(model: NerModel, limit: int) -> list[list[str]]:
    from clinlake.pipelines.training.ner.corpus import load_split

    return [words for words, _ in load_split(model.meta["corpus"], "devel")[:limit]]


def length_batches(sentences: Sequence[Sequence[str]], pieces: int = NETWORK_PIECES) -> list[list[Sequence[str]]]:
    """Sentences sorted by length in batches of at most ``pieces`` padded pieces (as the runtime)."""
    ordered = sorted(sentences, key=len)
    return [ordered[lo:hi] for lo, hi in padded_runs([len(s) for s in ordered], max_pieces=pieces)]


def rate(run: Callable[[], int], seconds: float, windows: int = 3) -> float:
    """Tokens per second of ``run`` (returns tokens done): the best of ``windows`` windows of at
    least ``seconds`` each (on a shared machine a neighbour's burst only slows a window down,
    so the fastest window is the least disturbed one; the same rule for every engine)."""
    run()  # warm-up
    best = 0.0
    for _ in range(windows):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            done += run()
        best = max(best, done / (time.perf_counter() - started))
    return best


def onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_model(name: str, sentences_limit: int, seconds: float) -> dict:
    directory = package_resource(f"models/{name}")
    model = NerModel(directory)
    sentences = devel_sentences(model, sentences_limit)
    batches = length_batches(sentences)
    feeds = [encode_serving_batch(b, model.features) for b in batches]
    tokens = sum(len(s) for s in sentences)
    result: dict = {"model": model.name, "sentences": len(sentences), "tokens": tokens,
                    "onnx_precision": "int8" if model.meta.get("quantization", {}).get("kept") else "fp32"}

    def onnx_network(session) -> Callable[[], int]:
        def run() -> int:
            for f in feeds:
                session.run(["emissions"], f)
            return tokens
        return run

    result["onnx_network"] = rate(onnx_network(model.session), seconds)
    result["onnx_end_to_end"] = rate(lambda: len(model.tag(sentences)) and tokens, seconds)
    artifacts = artifacts_dir(directory)
    if (artifacts / "model.fp32.onnx").exists():
        result["onnx_fp32_network"] = rate(onnx_network(onnx_session(artifacts / "model.fp32.onnx")), seconds)
    if (artifacts / "torch_state.pt").exists():
        result.update(bench_torch(directory, sentences, tokens, seconds))
    return result


def bench_torch(directory: Path, sentences, tokens: int, seconds: float) -> dict:
    """The same network in PyTorch eager (fp32, the training graph), through the same
    feature and decoding code: only the emission network is swapped. PyTorch gets the faster
    of the two batch sizes (network batches or whole decoding batches)."""
    import torch

    from clinlake.pipelines.training.ner.export import load_torch

    net, _ = load_torch(directory)
    model = NerModel(directory)

    def network(pieces: int) -> Callable[[], int]:
        inputs = [{k: torch.from_numpy(v) for k, v in encode_batch(b, model.features).items()}
                  for b in length_batches(sentences, pieces)]

        def run() -> int:
            with torch.inference_mode():
                for t in inputs:
                    net(**t)
            return tokens
        return run

    speeds = {pieces: rate(network(pieces), seconds) for pieces in (NETWORK_PIECES, BATCH_PIECES)}
    pieces = max(speeds, key=speeds.get)

    class TorchModel(NerModel):
        network_pieces = pieces

        def network_emissions(self, sequences):
            feeds = encode_batch(sequences, self.features)
            with torch.inference_mode():
                return net(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()

    model = TorchModel(directory)
    return {"torch_network": speeds[pieces], "torch_batch_pieces": pieces,
            "torch_end_to_end": rate(lambda: len(model.tag(sentences)) and tokens, seconds),
            "torch_version": torch.__version__}


def print_table(results: list[dict]) -> None:
    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:5.1f}x" if a and b else "     -"

    print("tokens/s on one thread; x = ONNX / PyTorch")
    print(f"{'model':<28} {'ONNX net':>9} {'fp32 net':>9} {'torch net':>9} {'x':>6} "
          f"{'ONNX e2e':>9} {'torch e2e':>9} {'x':>6}  shipped")
    for r in results:
        tn, te, fp = r.get("torch_network"), r.get("torch_end_to_end"), r.get("onnx_fp32_network")
        print(f"{r['model']:<28} {r['onnx_network']:>9,.0f} {fp or 0:>9,.0f} {tn or 0:>9,.0f} "
              f"{ratio(r['onnx_network'], tn)} {r['onnx_end_to_end']:>9,.0f} {te or 0:>9,.0f} "
              f"{ratio(r['onnx_end_to_end'], te)}  {r['onnx_precision']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sentences", type=int, default=1000, help="devel sentences per model")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement window "
                        "(three windows each; the fastest counts)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ner_speed.json")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)  # allowed once per process, before any torch work
    except ImportError:
        print("torch is not installed: onnxruntime only")
    results = [bench_model(name, args.sentences, args.seconds) for name in args.models
               if (package_resource(f"models/{name}") / "model.onnx").exists()]
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                                    "cpu_count": os.cpu_count(), "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

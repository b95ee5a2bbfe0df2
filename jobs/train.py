"""clinlake train: train models (needs the ``train`` extra: ``pip install 'clinlake[train]'``).

Subcommands, each a thin wrapper over a training module:
    clinlake train ner --corpus NCBI-disease --name ncbi_disease [--max-minutes 25] [--epochs 80] [--patience 10]
    clinlake train clinical --name clinical_core --brat MACCROBAT=MAP.yaml --brat Chia=MAP.yaml
    clinlake train embeddings [--dim 200] [--epochs 15]   (the shared word vectors under models/embeddings/;
                                                          every model must then be retrained on them)
    clinlake train card ncbi_disease ...     (devel scores, int8 if F1 holds, speed, MODEL_CARD.md)
"""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

#: subcommand → (module with the entry point, its function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "ner": ("clinlake.pipelines.training.ner.loop", "main", "train a BiLSTM-CNN-Char-CRF NER model and export it to ONNX"),
    "clinical": ("clinlake.pipelines.training.clinical", "main",
                 "train a clinical NER model on documents (MACCROBAT, Chia, PHEE) through clinlake's tokenizer"),
    "embeddings": ("clinlake.pipelines.training.ner.loop", "embeddings_main", "train the shared fastText word vectors"),
    "card": ("clinlake.pipelines.training.ner.loop", "card_main", "evaluate, quantise and write the model card of trained models"),
}


def _entry(name: str) -> Callable[..., int]:
    import importlib

    module, function, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str], prog: str = "clinlake train") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Train clinlake models.")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # The subcommand's own parser (in the training module) handles its options and --help.
    return _entry(args.command)(rest, prog=f"{prog} {args.command}")


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

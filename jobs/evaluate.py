"""clinlake evaluate: score models on annotated data.

Each subcommand is an ``add_<name>`` function that declares its options and a ``run_<name>``
that checks them, calls :mod:`clinlake.pipelines.evaluation` (which returns reports and formats
them, and never prints) and prints the report, as text or ``--json``; it returns the exit code:
    clinlake evaluate ner --model ncbi_disease --conll devel.tsv --predictions out.tsv [--json]
    clinlake evaluate assertion --data KIT.tsv [--engine rules|model|hybrid] [--predictions OUT.tsv] [--json]
    clinlake evaluate brat [--model NAME] --data DIR --predictions OUTDIR [--label-map FILE] [--json]
    clinlake evaluate assertion-brat --data DIR [--engine rules|model|hybrid] [--types T,T|all]
                                     [--label-map FILE|none] [--json]
    clinlake evaluate cv --corpus NCBI-disease [--model ncbi_disease] [--folds 5] [--jobs 2] [--out FILE] [--json]
    clinlake evaluate cv --model clinical_core [--predictions DIR | --rescore DIR] [--vote-weight W]
                         [--abbreviation-reach N] [--vote-reach N]
    clinlake evaluate distill-cv --model ncbi_disease [--members 3] [--silver 20000] [--ratio 1] [--labels soft] [--student-hidden N]
                                 [--jobs 2] [--predictions DIR | --teacher DIR]
    clinlake evaluate assertion-cv [--folds 5] [--members 1] [--maccrobat-history] [--window N] [--fp32] [--repeats R] [--jobs 2] [--out FILE] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from clinlake.pipelines.config import ConfigError
from clinlake.pipelines.corpora.label_maps import LabelMapError
from clinlake.pipelines.engine.assertion.rules import DEFAULT_RULES_PATH
from clinlake.pipelines.evaluation import assertion_brat, assertion_kit, brat, ner
from clinlake.pipelines.evaluation.ner import ABBREVIATION_REACH
from clinlake.pipelines.evaluation.ner_variants import CONSISTENCY_REACH, StageSteps
from clinlake.pipelines.resources import Resolver
from clinlake.pipelines.training.assertion_distill import SILVER_SOURCES, SilverSourceError, parse_silver_sources
from clinlake.jobs.subcommands import group_parser, run_group
from clinlake.jobs.train import add_plan_arguments, plan_from_args

EXIT_OK, EXIT_USAGE = 0, 2


def add_ner(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ner", help="strict entity-level P/R/F1 (conlleval semantics) of an NER model",
                                 description="Tag a token<TAB>IOB2 file with an NER model and score it "
                                             "(strict entity level, overall and per type). First on the file's "
                                             "tokens after the document-level steps the model's NER stage runs "
                                             "by default (what the pipeline does with this model; see "
                                             "--no-stage-steps); then on the file's tokens and on raw text "
                                             "through clinlake's own tokenizer with abbreviation propagation "
                                             "alone, as the pipeline does within "
                                             "a note: 'long form (SF)', with the long form tagged, makes SF an "
                                             "entity of its label from the definition on (see "
                                             "--abbreviation-reach); "
                                             "the model's sentence-by-sentence scores are printed too.")
    parser.add_argument("--model", required=True, help="model name under models/ (e.g. ncbi_disease) or a directory")
    parser.add_argument("--conll", required=True, type=Path, help="token<TAB>tag file, blank line between sentences")
    parser.add_argument("--predictions", type=Path, help="write token<TAB>gold<TAB>predicted here")
    parser.add_argument("--no-raw-text", action="store_true", help="skip the raw-text (own tokenizer) scoring")
    parser.add_argument("--abbreviation-reach", type=int, default=ABBREVIATION_REACH, metavar="N",
                        help="sentences after its own that an abbreviation definition reaches: a token<TAB>tag "
                        "file marks no document boundaries, so this stands in for 'the rest of the document' "
                        f"(default {ABBREVIATION_REACH}; corpus files keep each document's sentences in order)")
    parser.add_argument("--no-abbreviations", action="store_true", help="score the model alone, sentence by "
                        "sentence (no abbreviation propagation)")
    parser.add_argument("--label-consistency", type=int, metavar="N", dest="consistency_reach",
                        help="also apply the label consistency vote (a string tagged somewhere is settled by a "
                        "confidence-weighted vote over its occurrences, pipelines/engine/consistency.py) over N "
                        "neighbouring sentences to the abbreviation scores, in corpus-token scoring only "
                        "(the model's own steps, scored first, include the vote where the model runs it)")
    parser.add_argument("--no-stage-steps", action="store_true",
                        help="skip the first score: the document-level steps the model's NER stage runs by "
                        "default (model.json document_level: abbreviations, binomials, the consistency vote "
                        "with the model's weight, the model's gazetteer.tsv; over the model's windows, "
                        "document_level.conll_reach, else 20 sentences after a definition and 10 either side "
                        "for the vote), on "
                        "corpus tokens; with it --predictions holds those tags, without it the abbreviation "
                        "scores' tags")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(run=run_ner)


def run_ner(args: argparse.Namespace) -> int:
    if not args.conll.is_file():
        print(f"clinlake evaluate ner: no such file: {args.conll}")
        return EXIT_USAGE
    try:  # a directory path as given, else a shipped model name
        model_dir = Path(args.model) if Path(args.model).is_dir() else Resolver().model_dir(args.model)
    except ConfigError as exc:
        print(f"clinlake evaluate ner: {exc}")
        return EXIT_USAGE
    if args.abbreviation_reach < 0:
        print("clinlake evaluate ner: --abbreviation-reach must be 0 or more")
        return EXIT_USAGE
    if args.consistency_reach is not None and args.consistency_reach < 0:
        print("clinlake evaluate ner: --label-consistency must be 0 or more")
        return EXIT_USAGE
    reach = None if args.no_abbreviations else args.abbreviation_reach
    report = ner.evaluate(model_dir, args.conll, args.predictions, raw_text=not args.no_raw_text,
                          abbreviation_reach=reach, consistency_reach=args.consistency_reach,
                          stage_steps=None if args.no_stage_steps else StageSteps.of_model(model_dir))
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    how = "model alone" if reach is None else f"with abbreviation propagation, reach {reach} sentences"
    print(f"{report['model']} on {report['file']} ({report['sentences']} sentences)")
    if "stage_steps" in report:
        steps = report["stage_steps"]
        learned = (f", learned from {steps['gazetteer_learned_from']}: optimistic on those files"
                   if steps["gazetteer_learned_from"] else "")
        print(ner.format_report(steps["tokens"], f"corpus tokens, the model's stage steps ({steps['steps']}; "
                                                 f"windows: {steps['abbreviation_reach']} sentences after a "
                                                 f"definition, {steps['consistency_reach']} either side for the vote; "
                                                 f"vote weight {steps['consistency_entity_weight']:g}; "
                                                 f"{steps['gazetteer_terms']} gazetteer terms{learned}):"))
    if "label_consistency_reach" in report:
        how_tokens = f"{how}; label consistency vote over {report['label_consistency_reach']} sentences"
        print(ner.format_report(report["tokens"], f"corpus tokens (strict, entity level; {how_tokens}):"))
        print(f"before the vote: corpus tokens F1 {100 * report['before_label_consistency']['tokens']['overall']['f1']:.2f}")
    else:
        print(ner.format_report(report["tokens"], f"corpus tokens (strict, entity level; {how}):"))
    if "raw_text" in report:
        print(ner.format_report(report["raw_text"], f"raw text through clinlake's tokenizer (strict, entity level; "
                                                    f"{how}):"))
    if "model_alone" in report:
        alone = report["model_alone"]
        print("model alone, sentence by sentence: corpus tokens F1 "
              f"{100 * alone['tokens']['overall']['f1']:.2f}"
              + (f", raw text F1 {100 * alone['raw_text']['overall']['f1']:.2f}" if "raw_text" in alone else ""))
    return EXIT_OK


def add_assertion(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("assertion", help="assertion accuracy and per-class P/R/F1 on a NegEx kit TSV",
                                 description="Assess each kit row's phrase in its sentence and score negation, "
                                             "temporality and experiencer (see pipelines/evaluation/assertion_kit.py).")
    parser.add_argument("--data", required=True, type=Path, help="kit TSV (id, note, phrase, sentence, ...)")
    parser.add_argument("--predictions", type=Path, help="write id<TAB>negation<TAB>temporality<TAB>experiencer")
    parser.add_argument("--engine", choices=assertion_kit.ENGINES, default="rules")
    parser.add_argument("--rules", type=Path, help="ConText rules file of the rules and hybrid engines "
                                                   f"(default: {DEFAULT_RULES_PATH.name}, shipped)")
    parser.add_argument("--max-scope", type=int, default=12, metavar="N",
                        help="tokens a rules trigger reaches (default 12)")
    parser.add_argument("--show-errors", action="store_true",
                        help="list each mistake as id<TAB>attribute<TAB>gold<TAB>predicted (row ids, no text)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(run=run_assertion)


def run_assertion(args: argparse.Namespace) -> int:
    prog = "clinlake evaluate assertion"
    if not args.data.is_file():
        print(f"{prog}: no such file: {args.data}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run = assertion_kit.run_kit(args.data, args.engine, args.predictions, rules_path=args.rules,
                                    max_scope=args.max_scope)
    except assertion_kit.KitError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(run.to_dict(), indent=2) if args.json else assertion_kit.format_run(run, args.show_errors))
    return EXIT_OK


def add_brat(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("brat", help="strict and lenient P/R/F1 of the full engine on BRAT documents",
                                 description="Run the engine on each DIR/*.txt, write OUTDIR/<doc>.ann and score "
                                             "it against DIR/<doc>.ann (see pipelines/evaluation/brat.py).")
    parser.add_argument("--model", help="evaluate this NER model as the only NER stage (default: the configured "
                                        "pipeline: clinical_core and the assertion stage)")
    parser.add_argument("--config", type=Path, help="job config whose pipeline to run (default: conf/local.yaml)")
    parser.add_argument("--data", required=True, type=Path, help="directory of <doc>.txt and gold <doc>.ann")
    parser.add_argument("--predictions", required=True, type=Path, help="write <doc>.ann predictions here")
    parser.add_argument("--label-map", type=Path, help="YAML: gold type -> our label; unmapped gold types ignored")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(run=run_brat)


def run_brat(args: argparse.Namespace) -> int:
    prog = "clinlake evaluate brat"
    if not args.data.is_dir():
        print(f"{prog}: no such directory: {args.data}")
        return EXIT_USAGE
    if not any(args.data.glob("*.txt")):
        print(f"{prog}: no .txt files in {args.data}")
        return EXIT_USAGE
    try:
        report = brat.evaluate_files(args.data, args.predictions, model=args.model, config=args.config,
                                     label_map=args.label_map)
    except (LabelMapError, ConfigError) as exc:
        print(f"{prog}: {exc}")
        return EXIT_USAGE
    print(json.dumps(report, indent=2) if args.json else brat.format_report(report))
    return EXIT_OK


def add_assertion_brat(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("assertion-brat",
                                 help="absent / possible P/R/F1 of the assertion stage on BRAT event polarity",
                                 description="Assess every gold event trigger of DIR/*.ann (MACCROBAT: POLARITY NEG "
                                             "-> absent, UNCERTAIN -> possible, none/POS -> present, MAYBE_* left "
                                             "out) in its sentence, as the pipeline does, and score absent and "
                                             "possible (see pipelines/evaluation/assertion_brat.py).")
    parser.add_argument("--data", required=True, type=Path, help="directory of <doc>.txt and gold <doc>.ann")
    parser.add_argument("--engine", choices=assertion_brat.ENGINES, default="hybrid")
    parser.add_argument("--config", type=Path, help="job config whose text, sections and assertion settings to use "
                                                    "(default: conf/local.yaml)")
    parser.add_argument("--types", help="event types to score, comma-separated, or 'all' (default: Sign_symptom, "
                                        "Disease_disorder, Diagnostic_procedure, Therapeutic_procedure, Medication, "
                                        "Clinical_event)")
    parser.add_argument("--label-map", default=str(assertion_brat.DEFAULT_LABEL_MAP), metavar="FILE|none",
                        help="YAML mapping gold types to clinlake labels, so the config's allowed_by_label applies "
                             "to the triggers as to the pipeline's entities (default: the MACCROBAT -> "
                             "clinical_core map, conf/label_maps/maccrobat_clinical_core.yaml; 'none': no labels)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(run=run_assertion_brat)


def run_assertion_brat(args: argparse.Namespace) -> int:
    prog = "clinlake evaluate assertion-brat"
    if not args.data.is_dir():
        print(f"{prog}: no such directory: {args.data}")
        return EXIT_USAGE
    if not any(args.data.glob("*.ann")):
        print(f"{prog}: no .ann files in {args.data}")
        return EXIT_USAGE
    try:
        report = assertion_brat.evaluate(args.data, args.engine, config=args.config,
                                         types=assertion_brat.parse_types(args.types),
                                         label_map=None if args.label_map.lower() == "none" else args.label_map)
    except (ConfigError, OSError, ValueError) as exc:  # messages name files, lines and keys, never note text
        print(f"{prog}: {exc}")
        return EXIT_USAGE
    print(json.dumps(report, indent=2) if args.json else assertion_brat.format_report(report))
    return EXIT_OK


#: subcommand registrars; another evaluation = one add_<name> function appended here.
CV_MODELS = {"NCBI-disease": "ncbi_disease", "BC5CDR": "bc5cdr", "AnatEM": "anatem", "BioNLP13CG": "bionlp13cg",
             "LINNAEUS": "linnaeus"}


def add_fold_arguments(parser: argparse.ArgumentParser) -> None:
    """--folds and --only, as every cross-validation subcommand takes them."""
    parser.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default 5)")
    parser.add_argument("--only", type=int, action="append", metavar="FOLD", help="run only this fold (0-based; "
                        "repeatable), e.g. to spread folds over machines")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def add_cv(commands: argparse._SubParsersAction) -> None:
    from clinlake.pipelines.training.ner.corpus import CORPORA

    parser = commands.add_parser("cv", help="k-fold cross-validation of an NER model's training recipe "
                                 "(needs the train extra: torch)",
                                 description="Cross-validate an NER model's recipe on its corpus's train+devel "
                                             "(a clinical model: its BRAT corpora's train+devel documents): k "
                                             "contiguous blocks of consecutive sentences; for each, a fresh network "
                                             "trained on the other blocks for the model's selected epoch count with "
                                             "its settings and seed, scored strict on the held-out block with "
                                             "abbreviation propagation (and alone), and every document-level "
                                             "variant (binomials, label consistency, gazetteer) on the same "
                                             "predictions with its paired gain. Prints every fold, the mean and "
                                             "the sample standard deviation (pipelines/training/ner/cv.py).")
    parser.add_argument("--corpus", choices=CORPORA, help="a biomedical corpus (default: the model's)")
    parser.add_argument("--model", help="the model whose recipe is cross-validated: a name under models/ or a "
                        "directory (default: the corpus's shipped model); a clinical model (e.g. clinical_core) is "
                        "cross-validated on the train+devel documents of its BRAT corpora")
    add_fold_arguments(parser)
    parser.add_argument("--epochs", type=int, help="epochs per fold (default: the model's selected epoch count)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once, one process and one torch "
                        "thread each (default 1)")
    parser.add_argument("--abbreviation-reach", type=int, metavar="N",
                        help="sentences after its own that an abbreviation definition or a binomial reaches "
                        "(default: the model's, model.json document_level.conll_reach, else "
                        f"{ABBREVIATION_REACH})")
    parser.add_argument("--vote-reach", type=int, metavar="N", help="sentences either side the label consistency "
                        "vote reaches (default: the model's, model.json document_level.conll_reach, else "
                        f"{CONSISTENCY_REACH})")
    parser.add_argument("--predictions", type=Path, metavar="DIR", help="keep each fold's held-out tags and "
                        "confidences here (fold<k>.json.gz), for --rescore")
    parser.add_argument("--rescore", type=Path, metavar="DIR", help="train nothing: score every post-processing "
                        "variant again on the fold predictions a run kept in DIR")
    parser.add_argument("--vote-weight", type=float, metavar="W", help="the label consistency vote's weight on a "
                        "tagged occurrence against an untagged one (default: the model's, model.json "
                        "document_level.consistency_entity_weight, else 1)")
    parser.add_argument("--gazetteer-features", action=argparse.BooleanOptionalAction, default=None,
                        help="train each fold's network with gazetteer channels in its input (term lists learned "
                        "from the fold's training blocks, jackknifed on them) or without (default: as the "
                        "model was trained)")
    parser.add_argument("--channel-lexicons", action=argparse.BooleanOptionalAction, default=None,
                        help="with gazetteer channels: their term lists also hold the model's open vocabularies "
                        "(model.json gazetteer_lexicons, e.g. linnaeus's WordNet organism names), or not "
                        "(default: as the model was trained)")
    add_report_arguments(parser)
    parser.set_defaults(run=run_cv)


def run_cv(args: argparse.Namespace) -> int:
    from clinlake.pipelines.training.ner.cv import CrossValidationError, format_cv, write_report

    try:
        report = _cv_report(args)
    except (ConfigError, CrossValidationError) as exc:
        print(f"clinlake evaluate cv: {exc}")
        return EXIT_USAGE
    if args.out:
        write_report(report, args.out)
    print(json.dumps(report, indent=2) if args.json else format_cv(report))
    return EXIT_OK


def _cv_report(args: argparse.Namespace) -> dict:
    from clinlake.pipelines.training.ner.cv import CrossValidationError, cross_validate, rescore

    if args.jobs < 1:
        raise CrossValidationError("--jobs must be 1 or more")
    if not (args.corpus or args.model):
        raise CrossValidationError("name a --corpus or a --model")
    name = args.model or CV_MODELS[args.corpus]
    model_dir = Path(name) if Path(name).is_dir() else Resolver().model_dir(name)
    if args.rescore is not None:
        return rescore(args.corpus, args.rescore, k=args.folds, abbreviation_reach=args.abbreviation_reach,
                       model_dir=model_dir, consistency_weight=args.vote_weight, consistency_reach=args.vote_reach)
    return cross_validate(args.corpus, model_dir, k=args.folds, epochs=args.epochs, jobs=args.jobs,
                          folds=args.only, abbreviation_reach=args.abbreviation_reach,
                          predictions_dir=args.predictions, consistency_weight=args.vote_weight,
                          consistency_reach=args.vote_reach, gazetteer_features=args.gazetteer_features,
                          channel_lexicons=args.channel_lexicons)


def add_distill_cv(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("distill-cv", help="k-fold cross-validation of an ensemble of a biomedical NER "
                                 "recipe and of a student distilled from it (needs the train extra: torch)",
                                 description="For each fold of `clinlake evaluate cv`'s blocks: MEMBERS networks of "
                                             "the model's recipe (seeds 13, 14, ...) trained on the other blocks; "
                                             "their averaged CRF posteriors (the ensemble) label SILVER sentences of "
                                             "the shared unlabelled biomedical text (none from the corpus's own "
                                             "train+devel); one student of the same recipe (and size, unless "
                                             "--student-hidden) trains on the gold blocks plus RATIO silver "
                                             "sentences per gold sentence each epoch. "
                                             "Today's network (seed 13), the ensemble and the student are scored on "
                                             "the held-out block with the network alone, abbreviations and the "
                                             "model's default steps, with paired gains over today's "
                                             "(pipelines/training/ner/distill.py).")
    parser.add_argument("--model", required=True, help="a biomedical model under models/ or a directory")
    add_fold_arguments(parser)
    add_plan_arguments(parser)
    parser.add_argument("--epochs", type=int, help="epochs per network (default: the model's selected count)")
    parser.add_argument("--jobs", type=int, default=1, help="folds run at once, one process each (default 1)")
    parser.add_argument("--predictions", type=Path, metavar="DIR", help="keep each system's held-out tags and "
                        "confidences under DIR/<today|ensemble|student>/ (for `evaluate cv --rescore`) and the "
                        "ensemble's posteriors on the silver sentences under DIR/teacher/")
    parser.add_argument("--teacher", type=Path, metavar="DIR", help="reuse the members of an earlier run that kept "
                        "--predictions DIR (same folds, --members and --silver): only the student trains")
    add_report_arguments(parser)
    parser.set_defaults(run=run_distill_cv)


def run_distill_cv(args: argparse.Namespace) -> int:
    from clinlake.pipelines.training.ner.cv import CrossValidationError, write_report
    from clinlake.pipelines.training.ner.distill import distill_cv, format_distill_cv

    try:
        if args.jobs < 1:
            raise CrossValidationError("--jobs must be 1 or more")
        model_dir = Path(args.model) if Path(args.model).is_dir() else Resolver().model_dir(args.model)
        plan = plan_from_args(args)
        report = distill_cv(None, model_dir, plan, k=args.folds, jobs=args.jobs, folds=args.only, epochs=args.epochs,
                            predictions_dir=args.predictions, teacher_dir=args.teacher)
    except (ConfigError, CrossValidationError) as exc:
        print(f"clinlake evaluate distill-cv: {exc}")
        return EXIT_USAGE
    if args.out:
        write_report(report, args.out)
    print(json.dumps(report, indent=2) if args.json else format_distill_cv(report))
    return EXIT_OK


def add_assertion_cv(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("assertion-cv", help="k-fold cross-validation of the assertion recipe and the "
                                 "hybrid policy on the NegEx kit (needs the train extra: torch)",
                                 description="Cross-validate the assertion model's recipe on the NegEx kit's "
                                             "train+devel rows: k contiguous blocks; for each, a fresh network "
                                             "trained on the other blocks (plus MACCROBAT train, as clinlake train "
                                             "assertion does), scored on the held-out block as rules, model and "
                                             "hybrid under all 27 policies (and, where the historical flag heeds the model, with its "
                                             "P(historical) cut at 0.3 and 0.4); prints mean ± sd over folds and the "
                                             "policy chosen by CV (pipelines/training/assertion_cv.py).")
    add_fold_arguments(parser)
    parser.add_argument("--members", type=int, default=1, help="networks averaged per fold (default 1; the "
                        "shipped model averages 3)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per network (default 12, the shipped count)")
    parser.add_argument("--no-maccrobat", action="store_true", help="train on the kit rows only")
    parser.add_argument("--maccrobat-history", action="store_true", help="also label MACCROBAT triggers inside "
                        "History spans historical and inside Family_history spans as someone else's")
    parser.add_argument("--chia", action="store_true", help="also train on Chia's train conditions: negation from "
                        "Has_negation, historical / recent from linked Temporal or Observation words")
    parser.add_argument("--phee", action="store_true", help="also train on PHEE's train effects (adverse and "
                        "therapeutic): negation from the event's Negated attribute, other heads masked")
    parser.add_argument("--window", type=int, default=None, help="pieces of context kept each side of the target, "
                        "in training and serving (default: the shipped model's, 40)")
    parser.add_argument("--fp32", action="store_true", help="score the float graph only (default: each fold's "
                        "model is also quantised to static int8, as the shipped one is, and both are scored)")
    parser.add_argument("--cues", action="store_true", help="the networks also read the ConText rules' cues of the "
                        "target's sentence: each cue piece's category and whether it modifies the target "
                        "(pipelines/engine/assertion/model.py)")
    parser.add_argument("--cue-dropout", type=float, default=0.0, metavar="P", help="with --cues: show this share "
                        "of each batch's training rows without their cues, so the network also learns to judge from "
                        "the words alone (default 0, as in clinlake train assertion --cues)")
    parser.add_argument("--cue-model", action="store_true", help="also train one cue-reading network per fold "
                        "(as clinlake train assertion --cues --ensemble 1 --no-student) and score the policies "
                        "that take the not-particular flag from it, asked only where the rules see a hypothetical "
                        "or conditional cue in the sentence (pipelines/engine/assertion/hybrid.py, cue_model)")
    parser.add_argument("--student", action="store_true", help="also distil each fold's members into one network "
                        "(soft labels on masked heads and on unlabelled targets, --silver) and score it beside "
                        "the members' average and the first member alone (pipelines/training/assertion_distill.py)")
    parser.add_argument("--silver", default=",".join(SILVER_SOURCES), help="unlabelled targets the student learns "
                        "the teacher's answers on, comma-separated: notes (entities the default pipeline finds in "
                        "the bundled MTSamples notes), chia (Chia train conditions); default: %(default)s")
    parser.add_argument("--silver-weight", type=float, default=0.5, help="loss weight of a silver target "
                        "(default %(default)s, as shipped; a kit row weighs 1, a MACCROBAT row 0.5)")
    parser.add_argument("--teacher-mix", type=float, default=0.5, help="share of the teacher's probabilities in "
                        "the student's loss where a head has a gold label (default %(default)s, as shipped; "
                        "0: gold alone)")
    parser.add_argument("--repeats", type=int, default=1, help="run the whole CV this many times on the same folds "
                        "with other seeds (seed + 100 per repeat); means and the policy are then over every fold "
                        "run, and each repeat's mean is reported with their sd (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once, one process each (default 1)")
    add_report_arguments(parser)
    parser.set_defaults(run=run_assertion_cv)


def run_assertion_cv(args: argparse.Namespace) -> int:
    from clinlake.pipelines.engine.assertion.hybrid import HybridPolicy
    from clinlake.pipelines.training.assertion_cv import (AssertionRecipe, cross_validate_assertion,
                                                          format_assertion_cv)
    from clinlake.pipelines.training.ner.cv import CrossValidationError

    if args.members < 1 or args.epochs < 1 or args.jobs < 1 or args.repeats < 1 or \
            (args.window is not None and args.window < 1):
        print("clinlake evaluate assertion-cv: --members, --epochs, --jobs, --repeats and --window must be 1 or more")
        return EXIT_USAGE
    if not 0.0 <= args.cue_dropout <= 1.0 or (args.cue_dropout and not args.cues):
        print("clinlake evaluate assertion-cv: --cue-dropout takes a share from 0 to 1, and only with --cues")
        return EXIT_USAGE
    try:
        silver = parse_silver_sources(args.silver)
    except SilverSourceError as exc:
        print(f"clinlake evaluate assertion-cv: --silver: {exc}")
        return EXIT_USAGE
    recipe = AssertionRecipe(epochs=args.epochs, members=args.members, maccrobat=not args.no_maccrobat,
                             maccrobat_history=args.maccrobat_history, chia=args.chia, phee=args.phee,
                             int8=not args.fp32, cues=args.cues, cue_dropout=args.cue_dropout,
                             cue_model=args.cue_model, student=args.student, silver=silver, silver_weight=args.silver_weight,
                             teacher_mix=args.teacher_mix,
                             **({} if args.window is None else {"window": args.window}))
    try:
        report = cross_validate_assertion(recipe, k=args.folds, jobs=args.jobs, folds=args.only, repeats=args.repeats)
    except CrossValidationError as exc:
        print(f"clinlake evaluate assertion-cv: {exc}")
        return EXIT_USAGE
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    shipped = Resolver().model_dir("assertion") / "hybrid.json"
    print(json.dumps(report, indent=2) if args.json else
          format_assertion_cv(report, shipped=HybridPolicy.from_file(shipped) if shipped.is_file() else None))
    return EXIT_OK


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (add_ner, add_assertion, add_brat,
                                                                         add_assertion_brat, add_cv, add_distill_cv,
                                                                         add_assertion_cv)


def build_parser(prog: str = "clinlake evaluate") -> argparse.ArgumentParser:
    return group_parser(prog, "Evaluate clinlake models on annotated data.", SUBCOMMANDS)


def main(argv: Sequence[str], prog: str = "clinlake evaluate") -> int:
    return run_group(build_parser(prog), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""clinlake corpora: prepare the shared corpora for training and evaluation.

    clinlake corpora phee-to-brat [--shared ../shared] [--out build/brat/PHEE]
        PHEE's JSON lines (``<shared>/data/clinical/PHEE/{train,devel}.json``) as BRAT
        ``.txt``/``.ann`` pairs under ``<out>/{train,devel}`` (see pipelines/corpora/phee.py),
        which ``clinlake evaluate brat`` and ``clinlake train clinical`` then read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from clinlake.pipelines.corpora import phee
from clinlake.jobs.subcommands import group_parser, run_group

EXIT_OK, EXIT_USAGE = 0, 2


def add_phee_to_brat(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("phee-to-brat", help="write PHEE's JSON lines as BRAT .txt/.ann pairs",
                                 description="Write PHEE's JSON lines as BRAT .txt/.ann pairs, one document per "
                                             "sentence, for each split (converted again only when the JSON is "
                                             "newer than the last conversion).")
    parser.add_argument("--shared", type=Path, default=Path("../shared"),
                        help="the shared folder holding data/clinical/PHEE (default: ../shared)")
    parser.add_argument("--out", type=Path, default=Path("build/brat/PHEE"),
                        help="write <out>/train and <out>/devel here (default: build/brat/PHEE)")
    parser.set_defaults(run=run_phee_to_brat)


def run_phee_to_brat(args: argparse.Namespace) -> int:
    source = args.shared / "data" / "clinical" / "PHEE"
    missing = [name for name in phee.SPLITS.values() if not (source / name).is_file()]
    if missing:
        print(f"clinlake corpora phee-to-brat: no {', '.join(missing)} in {source}", file=sys.stderr)
        return EXIT_USAGE
    for converted in phee.convert(source, args.out):
        print(f"{converted.split}: {converted.documents} documents in {converted.path}")
    return EXIT_OK


#: subcommand registrars; another corpus preparation = one add_<name> function appended here.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (add_phee_to_brat,)


def build_parser(prog: str = "clinlake corpora") -> argparse.ArgumentParser:
    return group_parser(prog, "Prepare the shared corpora for training and evaluation.", SUBCOMMANDS)


def main(argv: Sequence[str], prog: str = "clinlake corpora") -> int:
    return run_group(build_parser(prog), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

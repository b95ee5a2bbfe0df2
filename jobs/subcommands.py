"""What every ``clinlake <command> <subcommand>`` group shares (``evaluate``, ``corpora``): each
subcommand is one registrar that adds its parser and sets ``run`` (args -> exit code)."""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

EXIT_USAGE = 2
Registrar = Callable[[argparse._SubParsersAction], None]


def group_parser(prog: str, description: str, registrars: Sequence[Registrar]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command")
    for register in registrars:
        register(commands)
    return parser


def run_group(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    """Parse ``argv`` and run the chosen subcommand; without one, print the help (exit 2)."""
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return args.run(args)

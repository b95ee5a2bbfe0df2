"""The ``clinlake`` command: ``clinlake <command> [options]``.

Each command is a module with ``main(argv, prog) -> int``; modules are imported only when
their command runs, so ``clinlake annotate`` never imports training code.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

#: command → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "annotate": ("clinlake.jobs.annotate", "annotate notes and write the entity tables"),
    "train": ("clinlake.jobs.train", "train models: NER, word vectors, assertion, lexicons (needs the train extra)"),
    "evaluate": ("clinlake.jobs.evaluate", "evaluate models on annotated data"),
    "corpora": ("clinlake.jobs.corpora", "prepare the shared corpora (PHEE JSON lines as BRAT documents)"),
    "quarantine": ("clinlake.jobs.quarantine", "list quarantined notes and export them for fixing and re-running"),
    "sql": ("clinlake.jobs.sql", "read-only SQL over the lake's tables, offline (DuckDB)"),
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<10} {doc} (clinlake {name} --help)" for name, (_, doc) in COMMANDS.items())
    return f"usage: clinlake <command> [options]\n\ncommands:\n{rows}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from clinlake import __version__

        print(f"clinlake {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"clinlake: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest, prog=f"clinlake {command}")


if __name__ == "__main__":
    sys.exit(main())

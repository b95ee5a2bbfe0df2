"""The ``clinlake`` command: ``clinlake <command> [options]``."""
from __future__ import annotations

import sys
from typing import Sequence

COMMANDS = {
    "annotate": "annotate notes and write the entity tables (see 'clinlake annotate --help')",
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<10} {doc}" for name, doc in COMMANDS.items())
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
    if command == "annotate":
        from clinlake.jobs.annotate import main as annotate

        return annotate(rest)
    print(f"clinlake: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

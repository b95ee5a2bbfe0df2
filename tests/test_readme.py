"""README stays true: its two commands, CI's test command, and the table reference."""
import re
from pathlib import Path

from clinlake.schemas.docs import reference_markdown

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


SETUP = "python3 -m venv .venv"  # what makes a block a set-up command: it starts from a fresh virtualenv


def quick_start_commands() -> list[str]:
    """The Quick start's set-up commands (its other bash blocks, such as the first query, run after them)."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]
    return [block for block in blocks if block.startswith(SETUP)]


def test_readme_has_exactly_two_setup_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert README.count(SETUP) == 2, "a set-up command outside the Quick start's two"
    run, test = commands
    assert "python3 -m venv .venv" in run and "clinlake annotate" in run
    assert "python3 -m venv .venv" in test and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert quick_start_commands()[1] in ci.splitlines()


def test_table_reference_is_generated_from_schemas():
    assert reference_markdown() in README


def test_help_documents_every_option(capsys):
    from clinlake.jobs.annotate import build_parser

    help_text = build_parser().format_help()
    for option in ("--config", "--input", "--input-format", "--id-column", "--text-column", "--output", "--mode",
                   "--master", "--run-id", "--json", "--quiet", "--log-level"):
        assert option in help_text

"""`clinlake evaluate assertion` on a NegEx-kit TSV: run_kit's report, its text and the error listing."""
from __future__ import annotations

import json

import pytest

from clinlake.jobs.evaluate import main as evaluate_main
from clinlake.pipelines.engine.pieces import word_pieces
from clinlake.pipelines.evaluation.assertion_kit import KitError, format_run, regex_tokenize, run_kit

HEADER = "id\tnote\tphrase\tsentence\tnegation\ttemporality\texperiencer\n"
ROWS = ("1\t \tchest  pain\tPatient denies CHEST PAIN.\tNegated\tRecent\tPatient\n"
        "2\t \tfever\tNo FEVER today.\tAffirmed\tRecent\tPatient\n")  # row 2: the rules say Negated


@pytest.fixture()
def kit(tmp_path):
    path = tmp_path / "kit.tsv"
    path.write_text(HEADER + ROWS, encoding="utf-8")
    return path


def test_kit_tokens_are_the_shared_word_pieces():
    text = "Hx: MI_2 (x3), can't."
    assert [t.text for t in regex_tokenize(text)] == word_pieces(text)
    assert all(text[t.start:t.end] == t.text for t in regex_tokenize(text))


def test_run_kit_reports_and_formats_without_text(kit):
    run = run_kit(kit, "rules")
    assert run.to_dict()["engine"] == "rules" and run.to_dict()["data"] == str(kit)
    assert run.evaluation.errors == [("2", "negation", "Affirmed", "Negated")]
    text = format_run(run)
    assert text.startswith("engine rules on kit.tsv\nrows scored: 2")
    assert "FEVER" not in format_run(run, show_errors=True)
    assert format_run(run, show_errors=True).endswith("2\tnegation\tgold=Affirmed\tpredicted=Negated")


def test_run_kit_errors_name_the_file_or_engine(tmp_path, kit):
    other = tmp_path / "other.tsv"
    other.write_text("id\tsentence\n1\tNo fever.\n", encoding="utf-8")
    with pytest.raises(KitError, match="lacks kit column"):
        run_kit(other)
    with pytest.raises(KitError, match="cannot load the rules engine"):
        run_kit(kit, "rules", rules_path=tmp_path / "missing.yaml")


def test_command_lists_errors_and_prints_usage_errors_on_stderr(kit, tmp_path, capsys):
    assert evaluate_main(["assertion", "--data", str(kit), "--show-errors"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2\tnegation\tgold=Affirmed\tpredicted=Negated"
    assert evaluate_main(["assertion", "--data", str(kit), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2
    assert evaluate_main(["assertion", "--data", str(kit), "--rules", str(tmp_path / "missing.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot load the rules engine" in captured.err

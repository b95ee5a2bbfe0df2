"""Progress lines of a long run: their format, their counts, no note text, and the Spark job names."""
from __future__ import annotations

import logging
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clinlake.jobs.annotate import main as annotate_main
from clinlake.pipelines.config import parse_config
from clinlake.pipelines.spark.job import run_annotate
from clinlake.pipelines.spark.progress import Progress, format_progress

LINE = re.compile(r"^progress: (?P<done>[\d,]+)/(?P<total>[\d,]+) notes \((?P<share>\d+) %\), "
                  r"(?P<rate>[\d,]+\.\d) notes/s, (?P<quarantined>[\d,]+) quarantined, ETA (?P<eta>–|\d.*)$")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_format_progress_fields():
    line = format_progress(Progress(done=1_250, total=5_000, quarantined=3, elapsed_s=10.0))
    assert line == "progress: 1,250/5,000 notes (25 %), 125.0 notes/s, 3 quarantined, ETA 30 s"
    assert LINE.match(line)
    assert format_progress(Progress(done=10, total=10_000, quarantined=0, elapsed_s=1.0)).endswith("ETA 16 min 39 s")
    assert format_progress(Progress(done=1, total=100_000, quarantined=0, elapsed_s=1.0)).endswith("ETA 27 h 46 min")
    assert format_progress(Progress(done=0, total=10, quarantined=0, elapsed_s=0.0)).endswith("0.0 notes/s, "
                                                                                             "0 quarantined, ETA –")


@pytest.fixture(scope="module")
def notes(sample_notes, tmp_path_factory):
    """30 sample notes over 3 input files (3 tasks), two of them empty (quarantined)."""
    texts = [n["transcription"] for n in sample_notes if n["transcription"].strip()][:28] + ["", "  "]
    folder = tmp_path_factory.mktemp("progress_in")
    for part in range(3):
        ids = range(part * 10, part * 10 + 10)
        pq.write_table(pa.table({"note_id": [f"p{i}" for i in ids], "text": [texts[i] for i in ids]}),
                       folder / f"part-{part}.parquet")
    return folder, texts


def _job_config(folder, tmp_path):
    return parse_config({"input": {"path": str(folder), "format": "parquet"},
                         "output": {"path": str(tmp_path / "lake"), "format": "parquet"},
                         "quality": {"mode": "off", "report": False}})


def test_run_logs_progress_without_note_text(spark, notes, tmp_path, caplog):
    folder, texts = notes
    config = _job_config(folder, tmp_path)
    with caplog.at_level(logging.INFO, logger="clinlake.progress"):
        summary = run_annotate(spark, config, run_id="progress-test", progress_interval=0.05)
    assert (summary.notes_annotated, summary.notes_quarantined) == (28, 2)

    lines = [r.getMessage() for r in caplog.records if r.name == "clinlake.progress"]
    assert lines, "no progress line"
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    done = [_number(m["done"]) for m in matches]
    assert done == sorted(done) and len(set(done)) == len(done)  # a line only when the count moved
    assert {_number(m["total"]) for m in matches} == {30}
    last = matches[-1]
    assert (_number(last["done"]), _number(last["quarantined"]), last["share"], last["eta"]) == (30, 2, "100", "0 s")
    # never note text: no word of any note that is not also a word of the line's own format
    words = {w for text in texts for w in re.findall(r"[A-Za-z]{4,}", text)} - {"notes", "quarantined"}
    assert not [line for line in lines if words & set(re.findall(r"[A-Za-z]{4,}", line))]

    # the run's Spark jobs carry the run's group and the pipeline step as their description
    tracker = spark.sparkContext.statusTracker()
    jobs = [tracker.getJobInfo(job) for job in tracker.getJobIdsForGroup("clinlake-progress-test")]
    assert jobs and all(job.status == "SUCCEEDED" for job in jobs)
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None  # cleared after the run


def test_no_progress_lines_when_logging_is_off(spark, notes, tmp_path, caplog):
    config = _job_config(notes[0], tmp_path)
    with caplog.at_level(logging.WARNING, logger="clinlake.progress"):
        run_annotate(spark, config, run_id="quiet-test", progress_interval=0.05)
    assert not [r for r in caplog.records if r.name == "clinlake.progress"]


def test_cli_quiet_prints_the_summary_but_no_progress(spark, notes, tmp_path, capsys):
    folder, _ = notes
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {{path: '{folder}', format: parquet}}\nquality: {{mode: 'off', report: false}}\n")
    args = ["--config", str(config), "--output", str(tmp_path / "lake"), "--output-format", "parquet"]
    assert annotate_main([*args, "--quiet", "--run-id", "quiet-cli"]) == 0
    out, err = capsys.readouterr()
    assert "notes read              30" in out and "progress:" not in err

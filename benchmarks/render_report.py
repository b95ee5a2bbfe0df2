"""Render a clinlake run report (static HTML) to PNG with headless Chromium, to look at it.

    python benchmarks/render_report.py lake/_reports/<run_id>/run_report.html [--out report.png]
    python benchmarks/render_report.py --demo /tmp/report_demo     # synthetic report, no Spark

Needs a Chromium binary (Debian: ``apt-get install -y chromium`` → /usr/bin/chromium; also
found as chromium-browser, google-chrome or $CHROMIUM). Chromium runs offline: no network,
no sync, no component updates, a throw-away profile directory.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit and Path(explicit).exists():
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def render_png(html_path: Path, png_path: Path, *, width: int = 1280, height: int = 2000,
               chromium: str | None = None, timeout_s: float = 120) -> Path:
    """Screenshot ``html_path`` (a local file) into ``png_path``; returns the PNG path."""
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium, or set $CHROMIUM)")
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clinlake-chromium-") as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--screenshot={png_path}",
               f"--window-size={width},{height}", html_path.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not png_path.exists():
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return png_path


def demo_report(directory: Path) -> Path:
    """A synthetic report (made-up note, no PHI) exercising every part of the page."""
    from clinlake.pipelines.quality.gate import GateResult
    from clinlake.pipelines.quality.types import Failure
    from clinlake.pipelines.report.html import write_run_report

    text = ("CHIEF COMPLAINT: Chest pain.\nHISTORY OF PRESENT ILLNESS: The patient denies fever. She may have "
            "pneumonia. Return if shortness of breath develops. <script>alert(1)</script> & co.\n"
            "FAMILY HISTORY: Mother had breast cancer.\nPAST MEDICAL HISTORY: Asthma.\n"
            "PLAN: Chest x-ray and start metformin if glucose is high.")

    def ent(chunk, label, assertion, historical=False, start=0):
        begin = text.index(chunk, start)
        return {"begin": begin, "end": begin + len(chunk) - 1, "label": label, "assertion": assertion,
                "is_historical": historical}

    entities = [ent("Chest pain", "PROBLEM", "present"), ent("fever", "PROBLEM", "absent"),
                ent("pneumonia", "PROBLEM", "possible"), ent("shortness of breath", "PROBLEM", "hypothetical"),
                ent("breast cancer", "PROBLEM", "associated_with_someone_else"),
                ent("Asthma", "PROBLEM", "present", historical=True), ent("Chest x-ray", "TEST", "present"),
                ent("metformin", "TREATMENT", "conditional"), ent("glucose", "TEST", "present")]
    gate = GateResult(passed=False, evaluated=40, duration_s=7.4, data_docs=None, failures=[
        Failure("entities", "substring_matches_text", {"mismatched": 412, "of": 6345},
                "0 entities whose chunk differs from substring(text, begin+1, end-begin+1)",
                detail="e.g. note_id/entity_id 17/3f2a…, 42/9bc1…"),
        Failure("note_status", "share_notes_without_entities", {"share": 0.61, "annotated_notes": 318},
                "share <= 0.5"),
        Failure("entities", "expect_column_values_to_be_between", {"unexpected": 3, "of": 6345, "percent": 0.05},
                "min_value=0, max_value=1", column="ner_confidence", severity="warning",
                source="great_expectations")])
    summary = {"run_id": "20261125T120000Z-demo", "pipeline_version": "0.1.0+demo", "status": "succeeded",
               "notes_read": 322, "notes_annotated": 318, "notes_quarantined": 4, "entities": 6345,
               "duration_s": 42.3, "quarantine_reasons": {"null_text": 3, "control_characters": 1},
               "timings": {"read": 1.2, "annotate": 30.5, "write": 3.1},
               "tables": {"entities": "lake/entities", "note_status": "lake/note_status"}}
    return write_run_report(
        Path(directory) / "run_report.html", summary,
        label_counts={"PROBLEM": 3408, "TREATMENT": 1790, "TEST": 1147},
        assertion_counts={"present": 5310, "absent": 791, "hypothetical": 122, "possible": 66,
                          "associated_with_someone_else": 43, "conditional": 13},
        entities_per_note_histogram=[("0", 0), ("1", 3), ("2–4", 20), ("5–9", 45), ("10–19", 98), ("20–49", 120),
                                     ("50–99", 28), ("100–199", 4), ("200+", 0)],
        gate=gate, samples=[{"note_id": "demo-1", "text": text, "entities": entities}])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", help="the run report (.html)")
    parser.add_argument("--out", help="PNG path (default: next to the HTML, .png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--demo", metavar="DIR", help="write a synthetic report into DIR and render it")
    args = parser.parse_args(argv)
    if args.demo:
        html_path = demo_report(Path(args.demo))
    elif args.html:
        html_path = Path(args.html)
    else:
        parser.error("give a report .html or --demo DIR")
    png = render_png(html_path, Path(args.out) if args.out else html_path.with_suffix(".png"),
                     width=args.width, height=args.height)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())

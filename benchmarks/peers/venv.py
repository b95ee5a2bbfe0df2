"""The peers' own virtual environment, under the repository's ``build/peers/``.

One venv holds spaCy and medspaCy (``medspacy==1.3.1`` brings spaCy 3.7; spaCy is pinned
beside it), so the project's environment is never touched. :func:`ensure_venv` creates it
when missing (``python -m venv`` + ``pip install`` of the pinned versions) and records
the pins, the resolved versions of the peers' packages and the install time in
``<venv>/clinlake-peers.json``; a venv whose record has the same pins is reused as is.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS_BUILD = REPO / "build" / "peers"
SPACY_VENV = Path(os.environ.get("CLINLAKE_SPACY_VENV", PEERS_BUILD / "spacy-venv"))
MEDSPACY_VERSION = "1.3.1"
SPACY_VERSION = "3.7.5"
SPACY_PINS = (f"medspacy=={MEDSPACY_VERSION}", f"spacy=={SPACY_VERSION}")
RECORD = "clinlake-peers.json"
# Limits every BLAS/OpenMP pool to one thread (the peers are measured on one core).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def ensure_venv(venv: Path = SPACY_VENV, pins: tuple[str, ...] = SPACY_PINS) -> tuple[Path, dict]:
    """The venv's python and its install record, creating the venv first when missing."""
    python, record_path = venv / "bin" / "python", venv / RECORD
    if python.exists() and record_path.exists():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("pins") == list(pins):
            return python, record
    if venv.exists():
        shutil.rmtree(venv)  # half-made or made with other pins
    print(f"creating {venv} with {' '.join(pins)} (one time)", file=sys.stderr)
    started = time.time()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
    seconds = time.time() - started
    versions = json.loads(subprocess.run(
        [str(python), "-c", "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
         "('spacy', 'medspacy', 'thinc', 'numpy', 'pyrush')}))"],
        check=True, capture_output=True, text=True).stdout)
    record = {"pins": list(pins), "install_seconds": round(seconds, 1), "versions": versions,
              "python": subprocess.run([str(python), "--version"], capture_output=True, text=True).stdout.strip(),
              "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return python, record

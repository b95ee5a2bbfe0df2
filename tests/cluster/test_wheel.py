"""The built wheel, installed alone in a fresh virtualenv outside the repository (pack_env.sh's
environment, the one the cluster tests ship to executors), runs the annotate job on the bundled notes."""
from __future__ import annotations

import os
import subprocess

from deltalake import DeltaTable

from standalone import REPO


def test_the_wheel_alone_runs_the_job_on_the_bundled_notes(packed_env, sample_notes, tmp_path):
    env_dir = packed_env / "clinlake-env"
    assert not (env_dir / "lib").resolve().is_relative_to(REPO / "src")
    installed = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import clinlake; print(clinlake.__file__)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert installed.startswith(str(env_dir)), installed  # the wheel's copy, not the checkout
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    run = subprocess.run([str(env_dir / "bin" / "clinlake"), "annotate", "--quiet"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"notes read        {len(sample_notes):>8}" in run.stdout
    assert "quality gate      passed" in run.stdout
    status = DeltaTable(str(tmp_path / "lake" / "note_status")).to_pyarrow_table()
    assert status.num_rows == len(sample_notes)
    entities = DeltaTable(str(tmp_path / "lake" / "entities")).to_pyarrow_table()
    assert entities.num_rows > 0 and set(entities.column("label").to_pylist()) == {"PROBLEM", "TEST", "TREATMENT"}

"""The Spark NLP test environment (``.ci/sparknlp-env.sh``) and a runner for its side script."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_ROOT = REPO / "build" / "sparknlp"
SIDE = Path(__file__).with_name("sparknlp_side.py")


@dataclass(frozen=True)
class SparkNlpEnv:
    python: Path
    jars: Path

    def run(self, work: Path, *commands: str, timeout: int = 400) -> None:
        """Run sparknlp_side.py's commands in the Spark NLP environment's own Python and Spark."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
        done = subprocess.run([str(self.python), str(SIDE), str(self.jars), str(work), *commands], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"sparknlp_side.py {' '.join(commands)} failed:\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def sparknlp_env() -> SparkNlpEnv:
    env = SparkNlpEnv(ENV_ROOT / "venv" / "bin" / "python", ENV_ROOT / "jars")
    ready = env.python.is_file() and any(env.jars.glob("spark-nlp_*.jar")) and any(ENV_ROOT.glob("READY-*"))
    if not ready:
        message = "no Spark NLP test environment: run bash .ci/sparknlp-env.sh"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run does)")
        pytest.skip(message)
    return env

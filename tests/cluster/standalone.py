"""Helpers of the cluster tests: the standalone cluster, a spark-submit of the job, the tables' state."""
from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[2]
STANDALONE = REPO / "infra" / "standalone"
SUBMIT = REPO / "infra" / "spark-submit" / "submit.sh"
PACK = REPO / "infra" / "spark-submit" / "pack_env.sh"
PACKAGE_SOURCES = ("setup.py", "src", "pipelines", "schemas", "jobs", "conf", "models")
FILES = 8  # input files, so tasks: enough for both executors and for a kill between two of them


def source_hash() -> str:
    digest = hashlib.sha256()
    for top in PACKAGE_SOURCES:
        root = REPO / top
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Cluster:
    state: Path
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def master_url(self) -> str:
        return self.settings["MASTER_URL"]

    def start(self) -> None:
        """Start it, or restart it when a worker is gone (start.sh reuses a healthy cluster)."""
        # the tests' own Spark; workers delete a stopped application's files within seconds, not a day, so
        # the runs of one test do not pile up on the disk
        env = {**os.environ, "PYTHON": sys.executable, "WORKER_CLEANUP_INTERVAL": "5", "WORKER_CLEANUP_TTL": "1"}
        run = subprocess.run(["bash", str(STANDALONE / "start.sh"), str(self.state)], capture_output=True, text=True,
                             timeout=180, env=env)
        assert run.returncode == 0, run.stderr
        out = run.stdout
        self.settings = dict(line.split("=", 1) for line in out.split() if "=" in line)

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in (self.state / "pids").glob("*.pid")}

    def processes(self, sessions: list[int] | None = None) -> list[int]:
        """Every live process in the daemons' sessions (executor JVMs and Python workers included)."""
        found = []
        for sid in sessions if sessions is not None else self.pids().values():
            out = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout
            found += [int(pid) for pid in out.split()]
        return found

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a worker with everything in its session: its executor JVM and Python workers."""
        sid = self.pids()[name]
        victims = self.processes([sid])
        subprocess.run(["pkill", "-KILL", "-s", str(sid)], check=False)
        return victims

    def stop(self) -> list[int]:
        sessions = list(self.pids().values())
        subprocess.run(["bash", str(STANDALONE / "stop.sh"), str(self.state)], capture_output=True, timeout=60)
        return self.processes(sessions)

    def remove_application_files(self) -> None:
        """Delete the finished applications' files: each executor's unpacked environment (about 1 GB
        per executor per run) and the scratch space of executors that were killed. The logs stay."""
        for folder in [*(self.state / "work").glob("*/app-*"), *(self.state / "local").glob("*/*")]:
            shutil.rmtree(folder, ignore_errors=True)

    def executor_errors(self, limit: int = 12) -> list[str]:
        """The distinct error lines of the executors' logs, most frequent first: why executors died."""
        counts: dict[str, int] = {}
        for log in (self.state / "work").glob("*/app-*/*/stderr"):
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                if re.search(r"ERROR|Exception|Error:", line) and not line.startswith("\tat "):
                    line = re.sub(r"/tmp/\S+|\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}", "…", line.strip())
                    counts[line] = counts.get(line, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:limit]
        return [f"{count}x {line}" for line, count in ranked]

    def executors_launched(self) -> int:
        return sum(1 for _ in (self.state / "work").glob("*/app-*/*/stderr"))


@dataclass
class Submission:
    """One spark-submit of the annotate job, its output read line by line as it comes (spark-submit
    copies the Python driver's stdout and stderr into its own stdout, so one stream holds them all)."""
    process: subprocess.Popen
    events: Path
    cluster: Cluster
    scratch: Path  # the driver's copies of the environment (about 1.3 GB): deleted when the run has ended
    lines: "queue.Queue[str]" = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def tail(self, lines: int = 60) -> str:
        return "".join(self.output[-lines:])

    def wait_for_line(self, pattern: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty() and not self._reader.is_alive():
                    break
                continue
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output tail:\n{self.tail(40)}")

    def kill(self) -> None:
        """SIGKILL the driver: spark-submit's JVM and the Python driver (one process group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        """The exit code and the output; a run still going after ``timeout`` is killed and fails the
        test with what the driver and the executors said (a job whose executors die at start-up,
        e.g. on a full disk, waits for executors for ever: standalone relaunches them without end)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            free_gb = shutil.disk_usage(self.cluster.state).free / 2**30
            raise AssertionError(
                f"the job did not end in {timeout:.0f} s; {self.cluster.executors_launched()} executors were "
                f"launched, {free_gb:.1f} GB free under {self.cluster.state}; executors' errors:\n"
                + "\n".join(self.cluster.executor_errors()) + f"\ndriver output tail:\n{self.tail(40)}") from None
        self._reader.join(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)
        return code, "".join(self.output)

    def tasks_by_executor(self) -> dict[str, int]:
        """Finished tasks per executor id, from the application's event log."""
        counts: dict[str, int] = {}
        for path in self.events.rglob("*"):
            if path.is_file() and not path.name.startswith("appstatus"):
                for line in path.read_text(encoding="utf-8").splitlines():
                    event = json.loads(line)
                    if event["Event"] == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "Success":
                        executor = event["Task Info"]["Executor ID"]
                        counts[executor] = counts.get(executor, 0) + 1
        return counts


def job_yaml(path: Path, notes: Path, lake: Path, *, gate: bool = False) -> Path:
    quality = "{mode: enforce, data_docs: false, report: false}" if gate else "{mode: 'off', report: false}"
    # 40 notes per engine task (9 tasks for the 322 notes): progress lines then come while tasks are still
    # running however fast the engine is (the accumulators behind them advance only as tasks finish), and
    # the tests that wait for one before killing something do not race the end of the run.
    path.write_text(f"input: {{path: '{notes}', format: parquet, id_column: note_id, text_column: text}}\n"
                    f"output: {{path: '{lake}', format: delta}}\nquality: {quality}\n"
                    "spark: {notes_per_partition: 40}\n")
    return path


def table_rows(lake: Path) -> dict[str, list[dict]]:
    """entities, note_status and quarantine at their current versions, without run ids and times,
    sorted: what two runs over the same notes must agree on."""
    keys = {"entities": "entity_id", "note_status": "note_id", "quarantine": "note_id"}
    volatile = {"run_id"}
    tables = {}
    for name, key in keys.items():
        rows = DeltaTable(str(lake / name)).to_pyarrow_table().to_pylist()
        rows = [{k: v for k, v in row.items() if k not in volatile} for row in rows]
        tables[name] = sorted(rows, key=lambda row: (str(row[key]), json.dumps(row, sort_keys=True, default=str)))
    return tables


def versions(lake: Path) -> dict[str, int | None]:
    found = {}
    for name in ("entities", "note_status", "quarantine", "runs"):
        found[name] = DeltaTable(str(lake / name)).version() if (lake / name / "_delta_log").exists() else None
    return found


def assert_nothing_lost_or_duplicated(lake: Path, reference: dict[str, list[dict]], notes_in: int) -> None:
    tables = table_rows(lake)
    status = tables["note_status"]
    assert len(status) == notes_in  # every input note: annotated or quarantined, once
    assert {row["status"] for row in status} <= {"annotated", "quarantined"}
    # the table's key: entity_id is content-addressed (version, text hash, offsets, label), so two notes
    # with the same text (the sample holds some) share entity ids; within a note they are unique
    keys = [(row["note_id"], row["entity_id"]) for row in tables["entities"]]
    assert len(keys) == len(set(keys))
    assert tables == reference

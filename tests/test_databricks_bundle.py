"""The Databricks bundle (infra/databricks) agrees with the CLI and the config loader it deploys for."""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import yaml

from clinlake.cli import COMMANDS
from clinlake.jobs.annotate import build_parser
from clinlake.pipelines.config import load_config

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "infra" / "databricks"
FILE_PATH = "${workspace.file_path}"


def bundle() -> dict:
    return yaml.safe_load((BUNDLE / "databricks.yml").read_text(encoding="utf-8"))


def resource_files() -> list[Path]:
    files = []
    for pattern in bundle()["include"]:
        files += sorted(p for p in BUNDLE.rglob("*") if fnmatch.fnmatch(str(p.relative_to(BUNDLE)), pattern))
    return files


def annotate_task() -> tuple[Path, dict, dict]:
    for path in resource_files():
        jobs = yaml.safe_load(path.read_text(encoding="utf-8"))["resources"]["jobs"]
        job = jobs["clinlake_annotate"]
        return path, job, next(t for t in job["tasks"] if t["task_key"] == "annotate")
    raise AssertionError("no job resource included by databricks.yml")


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict(s.replace(" ", "").split("=", 1) for s in scripts)
    raise AssertionError("setup.py declares no console_scripts")


def package_name() -> str:
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    return next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "name")


def test_the_job_runs_the_wheels_clinlake_annotate_entry_point():
    path, _job, task = annotate_task()
    wheel = task["python_wheel_task"]
    assert wheel["package_name"] == package_name() == "clinlake"
    assert console_scripts()[wheel["entry_point"]] == "clinlake.cli:main"
    assert wheel["parameters"][0] in COMMANDS and wheel["parameters"][0] == "annotate"
    # The library is the wheel the bundle's artifact builds (paths relative to the file that names them).
    artifact = bundle()["artifacts"]["clinlake_wheel"]
    built_into = (BUNDLE / artifact["path"]).resolve() / artifact["build"].split("-w ")[1].split()[0]
    libraries = [(path.parent / lib["whl"]).resolve() for lib in task["libraries"]]
    assert [lib.parent for lib in libraries] == [built_into] and libraries[0].name == "*.whl"


def test_the_parameters_parse_and_name_a_config_that_loads(tmp_path):
    _path, job, task = annotate_task()
    parameters = task["python_wheel_task"]["parameters"][1:]
    args = build_parser().parse_args([p.replace(FILE_PATH, str(BUNDLE)) for p in parameters])
    assert args.config == str(BUNDLE / "conf" / "annotate.yaml")
    assert args.run_id == "databricks-{{job.run_id}}"  # a retried or repaired job run keeps its clinlake run id
    assert not args.full_refresh and args.input is None and args.output is None
    config = load_config(args.config)  # strict: every key known, every value valid
    assert config.input.table and config.input.path is None
    assert config.output.format == "delta" and config.output.delta_writer in ("auto", "delta-spark")
    names = config.output.table_names()
    assert sorted(names) == ["entities", "note_status", "quarantine", "runs"]
    assert all(name.count(".") == 2 for name in names.values())  # catalog.schema.table
    assert config.output.path.startswith("/Volumes/")  # staging, Data Docs, reports: a volume
    cluster_conf = job["job_clusters"][0]["new_cluster"]["spark_conf"]
    assert cluster_conf["spark.sql.execution.arrow.maxRecordsPerBatch"] == str(config.spark.arrow_batch_rows)
    assert job["max_concurrent_runs"] == 1


def test_the_bundle_has_no_leftover_variables():
    declared = set(bundle().get("variables") or {})
    used = set()
    for path in [BUNDLE / "databricks.yml", *resource_files()]:
        text = path.read_text(encoding="utf-8")
        used |= {part.split("}")[0] for part in text.split("${var.")[1:]}
    assert used <= declared and declared <= used

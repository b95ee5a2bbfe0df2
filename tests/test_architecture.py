"""The layout's rules, checked on the source: the engine stays pure, no import cycles, small files.

See the README's "How it works" for the rooms: ``pipelines/engine`` (plain Python over plain
data), ``spark`` (the only home of delta-rs and of the Spark job), ``quality``, ``report``,
``corpora``, ``evaluation`` and ``training``.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# repository folder -> installed package (setup.py's package_dir)
ROOTS = {"src/clinlake": "clinlake", "pipelines": "clinlake.pipelines", "jobs": "clinlake.jobs",
         "schemas": "clinlake.schemas", "conf": "clinlake.conf", "models": "clinlake.models"}
HEAVY = ("pyspark", "deltalake", "great_expectations", "torch", "onnx", "gensim")
MAX_LINES = 500


def project_modules() -> dict[str, Path]:
    modules = {}
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = project_modules()


def _resolve(module: str, name: str | None = None) -> str | None:
    """The project module an import names (``from pkg import submodule`` names the submodule)."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def imports_of(module: str) -> set[str]:
    """Project modules ``module`` imports, at module level or inside functions (a lazy import
    is still an edge), relative imports included."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_resolve(a.name) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = _resolve(base, alias.name)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def test_the_module_map_sees_the_rooms():
    for room in ("engine", "engine.ner", "engine.assertion", "spark", "quality", "report", "corpora", "evaluation",
                 "training", "query"):
        assert f"clinlake.pipelines.{room}" in MODULES, room
    assert imports_of("clinlake.pipelines.engine.pipeline") >= {"clinlake.pipelines.config",
                                                                "clinlake.pipelines.resources",
                                                                "clinlake.pipelines.engine.text"}


def test_no_import_cycle_among_project_modules():
    graph = {module: imports_of(module) for module in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_engine_imports_no_other_room():
    forbidden = tuple(f"clinlake.pipelines.{room}" for room in ("spark", "quality", "report", "corpora", "evaluation",
                                                                "training", "query"))
    for module in MODULES:
        if module.startswith("clinlake.pipelines.engine"):
            bad = sorted(t for t in imports_of(module) if t.startswith(forbidden) or t.startswith("clinlake.jobs"))
            assert bad == [], f"{module} imports {bad}"


def _third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_heavy_libraries_stay_in_their_rooms():
    """delta-rs only in spark/ (the job's tables) and query/ (clinlake sql); torch, onnx and gensim
    only in training/; nothing heavy in the engine."""
    for module, path in MODULES.items():
        used = _third_party_imports(path)
        if module.startswith("clinlake.pipelines.engine"):
            assert not used & set(HEAVY), (module, used & set(HEAVY))
        if not module.startswith(("clinlake.pipelines.spark", "clinlake.pipelines.query")):
            assert "deltalake" not in used, module
        if not module.startswith("clinlake.pipelines.training"):
            assert not used & {"torch", "onnx", "gensim"}, module


def test_importing_and_running_the_engine_loads_no_spark_delta_gx_or_torch():
    """In a fresh interpreter: import every engine module, build the default pipeline and
    annotate a note; none of the heavy libraries may have been imported."""
    engine = sorted(m for m in MODULES if m.startswith("clinlake.pipelines.engine"))
    script = (
        "import importlib, json, sys\n"
        f"for name in {engine!r}: importlib.import_module(name)\n"
        "from clinlake.pipelines.engine.pipeline import Pipeline\n"
        "from clinlake.pipelines.config import load_config\n"
        "entities = Pipeline.from_config(load_config()).annotate('Denies chest pain. Takes aspirin daily.')\n"
        f"print(json.dumps([len(entities), sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    count, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert count >= 1  # the engine really ran (chest pain / aspirin)
    assert heavy == []


def test_no_file_under_pipelines_is_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "pipelines").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_no_path_is_derived_from_module_files_under_pipelines():
    """Paths come from clinlake.pipelines.resources (importlib.resources), never from __file__."""
    users = sorted(str(p.relative_to(REPO)) for p in (REPO / "pipelines").rglob("*.py")
                   if any(isinstance(n, ast.Name) and n.id == "__file__"
                          for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))))
    assert users == []

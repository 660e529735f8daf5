"""The import rules of docs/architecture.md, enforced: import-linter's contracts (pyproject.toml
[tool.importlinter]), no import cycle between modules counting imports inside functions, a top level that
says the architecture, and a `--help` that imports no heavy library."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import REPO

HEAVY = ("torch", "mlflow", "xgboost", "lightgbm", "optuna", "airflow", "plotly")


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "3 kept, 0 broken" in proc.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), module by module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_is_in_an_import_cycle_counting_imports_in_functions_and_for_annotations():
    # stricter than the acyclic_siblings contract: modules, not packages, and TYPE_CHECKING imports count too
    graph = grimp.build_graph("trainpipe", exclude_type_checking_imports=False, cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_the_top_level_holds_packages_and_a_few_modules():
    package = REPO / "trainpipe"
    modules = sorted(p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert modules == ["config.py", "errors.py", "files.py", "hashing.py", "packaging.py", "redaction.py", "store.py",
                       "yamlfile.py"]


def test_no_stage_module_branches_on_the_task():
    """What differs between tasks is asked of ctx.task (trainpipe/tasks), never decided in a stage."""
    branch = re.compile(r"""\btask\s*[!=]=|[!=]=\s*["'](ranking|binary|multiclass|regression)["']""")
    for path in (REPO / "trainpipe" / "stages").glob("*.py"):
        assert not branch.search(path.read_text()), path.name


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["models", "--help"], ["tune", "--help"]])
def test_help_imports_no_heavy_library(argv):
    code = ("import json, sys\n"
            f"sys.argv = ['trainpipe', *{argv!r}]\n"
            "from trainpipe.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Usage" in proc.stdout, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []

"""The layers: a core that does not import Prefect, and Prefect glue around it.

The core (client, run, ledger, tables, manifest, polling, estimate, report, the emulator,
...) is every module of the package except the glue named below, so a new module is core unless
it is added here on purpose. The check imports each core module in a fresh interpreter and
names the first one that brought Prefect in.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import voxlake

REPO = Path(__file__).resolve().parents[2]

# The modules that talk to Prefect (at import or when called), and the CLI that starts them.
GLUE = {
    "voxlake.cli",
    "voxlake.credentials",
    "voxlake.flows",
    "voxlake.flows.backfill",
    "voxlake.flows.progress",
    "voxlake.flows.transcribe",
    "voxlake.runner",
    "voxlake.serve",
    "voxlake.shared_budget",
    "voxlake.steps",
}


def package_modules() -> set[str]:
    return {m.name for m in pkgutil.walk_packages(voxlake.__path__, "voxlake.")}


def test_the_glue_list_names_real_modules() -> None:
    assert package_modules() >= GLUE


def test_the_core_imports_without_prefect() -> None:
    core = sorted(package_modules() - GLUE)
    assert "voxlake.run.transcription" in core and "voxlake.lake.ledger" in core
    script = textwrap.dedent(
        """
        import importlib, json, sys
        for name in json.loads(sys.argv[1]):
            importlib.import_module(name)
            if any(m == "prefect" or m.startswith("prefect.") for m in sys.modules):
                print(json.dumps(name))
                break
        else:
            print(json.dumps(None))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(core)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    culprit = json.loads(done.stdout.strip().splitlines()[-1])
    assert culprit is None, f"importing {culprit} imported prefect; the core must not"


# Modules over MAX_LINES, each doing one job (issue 20's rule), and why they stay whole. An
# entry whose module has shrunk below the limit must go.
MAX_LINES = 600
ONE_JOB = {
    "voxlake/client.py": "the AssemblyAI client: one method per endpoint, nothing else",
}


def module_imports(path: Path, modules: set[str], *, in_functions: bool) -> set[str]:
    """The package modules ``path`` imports: at module level (in ``try``/``if`` blocks and
    class bodies too), and with ``in_functions`` also inside functions (imported when called);
    never under ``if TYPE_CHECKING``. ``from a import b`` counts ``a.b`` when that is a
    module, else ``a``."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        found.add(full)
                    elif node.module in modules:
                        found.add(node.module)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if in_functions:
                    visit(node.body)
            elif isinstance(node, ast.If | ast.Try | ast.With | ast.ClassDef):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def package_files() -> dict[str, Path]:
    files = {}
    for path in (REPO / "voxlake").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


# Deferred imports that close a cycle, left to fix: (importer, imported) -> what to do.
CYCLES_TO_FIX: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(
    "in_functions", [False, True], ids=["module-level", "with-imports-in-functions"]
)
def test_the_import_graph_has_no_cycle(in_functions: bool) -> None:
    """No cycle among the modules' imports; counting the imports inside functions too (a
    deferred import is still a dependency), outside the emulator, whose engine selection
    defers importing the sphinx engine that implements its protocol."""
    files = package_files()
    if in_functions:
        files = {n: p for n, p in files.items() if not n.startswith("voxlake.emulator")}
    graph = {
        name: module_imports(path, set(files), in_functions=in_functions) - {name}
        for name, path in files.items()
    }
    if in_functions:
        for importer, imported in CYCLES_TO_FIX:
            assert imported in graph[importer], f"fixed? remove {importer} from CYCLES_TO_FIX"
            graph[importer].discard(imported)
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        for imported in sorted(graph[name]):
            walk(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])


def test_no_module_outside_the_emulator_is_over_the_limit() -> None:
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in (REPO / "voxlake").rglob("*.py")
        if "emulator" not in path.relative_to(REPO).parts
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in ONE_JOB}
    assert over == {}, f"split these modules (or say in ONE_JOB which one job they do): {over}"
    stale = sorted(name for name in ONE_JOB if sizes.get(name, 0) <= MAX_LINES)
    assert stale == [], f"no longer over {MAX_LINES} lines: remove from ONE_JOB: {stale}"

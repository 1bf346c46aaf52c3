"""The layers a reader relies on (issue 13): pure modules import no client, no import cycles, no
package imports the CLI, the task config is a leaf, command modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("labeltriage", "pipelines", "curation", "argilla_stack", "label_studio_stack")
CLIENTS = ("argilla", "argilla_server", "httpx", "openai", "llama_cpp", "datasets", "huggingface_hub", "distilabel")
PURE = (
    "curation.calibration",
    "curation.heldout",
    "curation.routing",
    "curation.agreement",
    "curation.consensus",
    "curation.active_learning",
    "curation.gold",
    "curation.student",
    "curation.estimation",
    "curation.certify",
    "curation.feedback",
    "curation.sequential",
    "curation.signals",
    "curation.cascade",
    "curation.student_labels",
    "pipelines.json_decoding",
    "pipelines.parsing",
    "pipelines.injection",
    "pipelines.prompt",
    "labeltriage.config",
    "labeltriage.errors",
    "labeltriage.jsonio",
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Absolute module names imported by a file (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _project_edges(module_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path, module_level_only) if m in modules and m != name}
            for name, path in modules.items()}  # fmt: skip


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    """pipelines/batch.py and pipelines/runner.py imported each other; none may now, at any level
    (a package's ``__init__`` re-exporting its own modules is not a cycle between modules)."""
    edges = _project_edges(module_level_only=False)
    packages = {name for name in edges if (ROOT / name.replace(".", "/") / "__init__.py").exists()}
    edges = {name: targets - packages for name, targets in edges.items() if name not in packages}
    assert _cycles(edges) == []


def test_cycle_detector_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_package_imports_the_cli() -> None:
    offenders = {
        name: sorted(m for m in _imports(path, False) if m.startswith(("labeltriage.cli", "labeltriage.commands")))
        for name, path in _modules().items()
        if not name.startswith(("labeltriage.cli", "labeltriage.commands"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_task_config_is_a_leaf() -> None:
    """labeltriage.config imports nothing of the project but the error tree (itself a leaf)."""
    edges = _project_edges(module_level_only=False)
    assert edges["labeltriage.config"] <= {"labeltriage.errors"}
    assert edges["labeltriage.errors"] == set()


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_name_no_client(module: str) -> None:
    """Not in their source, at any level (function-level imports included)."""
    named = {m.split(".")[0] for m in _imports(_modules()[module], module_level_only=False)}
    assert named.isdisjoint(CLIENTS), named & set(CLIENTS)


def test_pure_modules_import_no_client_transitively() -> None:
    """Nor at import, in a fresh interpreter: the pure modules one after the other, the clients
    loaded checked after each (one interpreter for all: a subprocess each cost 25 s of the fast tier)."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(PURE)!r}:\n"
        "    importlib.import_module(name)\n"
        f"    found = sorted({{m.split('.')[0] for m in sys.modules}} & set({CLIENTS!r}))\n"
        "    if found:\n"
        "        print(name, found)\n"
        "        break\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "", f"first pure module that loads a client: {loaded.stdout}"


def test_command_modules_only_wire() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in (ROOT / "labeltriage" / "commands").glob("*.py")}
    assert max(sizes.values()) <= 150, sizes


def test_curation_io_lives_in_adapters() -> None:
    """Every curation module that imports a client is under curation/adapters (the rest is pure)."""
    for name, path in _modules().items():
        if name.startswith("curation.") and not name.startswith("curation.adapters"):
            named = {m.split(".")[0] for m in _imports(path, module_level_only=False)}
            assert named.isdisjoint(CLIENTS), (name, named & set(CLIENTS))


def test_the_package_exports_load_lazily() -> None:
    """``import labeltriage`` loads no client and no data library; every exported name resolves and
    ``dir()`` lists it, including what push/pull/loop return and the run-directory error."""
    code = (
        "import sys, labeltriage as lt\n"
        "heavy = {'argilla', 'pandas', 'numpy', 'httpx', 'openai', 'llama_cpp', 'datasets', 'distilabel'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
        "print(sorted(set(lt.__all__) - set(dir(lt))))\n"
        "print(sorted(n for n in lt.__all__ if getattr(lt, n, None) is None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.splitlines() == ["[]", "[]", "[]"], out.stdout
    import labeltriage as lt
    from curation.adapters.argilla_io import PullReport, PushReport
    from curation.adapters.loop import RoundResult
    from labeltriage.errors import InputError
    from labeltriage.rundir import RunDirError

    assert (lt.PushReport, lt.PullReport, lt.RoundResult, lt.RunDirError) == (
        PushReport, PullReport, RoundResult, RunDirError
    )  # fmt: skip
    assert issubclass(lt.RunDirError, InputError)
    with pytest.raises(AttributeError):
        _ = lt.no_such_name

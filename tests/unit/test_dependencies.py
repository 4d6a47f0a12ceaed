"""Dependencies between folders run one way, and no import cycle hides in the tree.

Read from the source with `ast` (every import statement, also inside functions), so the rule
holds for code no test happens to run. docs/architecture.md draws the same arrows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("tasks", "flows", "samples", "deployments", "service", "tests", "bench")

# What each top-level folder may import, besides itself.
ALLOWED: dict[str, set[str]] = {
    "tasks": set(),
    "flows": {"tasks"},
    "samples": {"tasks"},
    "deployments": {"flows", "tasks", "samples"},
    "service": {"tasks", "deployments"},
    "tests": {"flows", "tasks", "samples", "deployments", "service"},
    "bench": {"flows", "tasks", "samples", "deployments", "service"},
}
# Inside tasks/: the shared base imports only itself; a job's subpackage imports the base and
# only the other subpackages named here.
BASE = {"tasks.common", "tasks.db", "tasks.errors"}
JOB_USES: dict[str, set[str]] = {
    "tasks.imports": set(),
    "tasks.exports": set(),
    "tasks.http": set(),
    "tasks.api": {"tasks.http"},
    "tasks.retention": {"tasks.exports"},
    "tasks.email": set(),
    "tasks.reports": {"tasks.email", "tasks.exports"},
}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every project module `path` imports, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in FOLDERS}


def _area(module: str) -> str:
    """`tasks.imports.plan` -> `tasks.imports`; `tasks` itself (the package) -> `tasks`."""
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("folder", FOLDERS)
def test_folders_import_only_the_folders_below_them(folder: str) -> None:
    wrong = {
        f"{_name(path)} -> {name}"
        for path in _modules(folder)
        for name in _imports(path)
        if name.split(".")[0] not in ALLOWED[folder] | {folder}
    }
    assert wrong == set()


def test_inside_tasks_jobs_build_on_the_shared_base_only() -> None:
    wrong = set()
    for path in _modules("tasks"):
        source = _area(_name(path))
        if source == "tasks":
            continue
        allowed = BASE if source in BASE else BASE | JOB_USES[source] | {source}
        wrong |= {
            f"{_name(path)} -> {name}"
            for name in _imports(path)
            if _area(name) not in allowed and name != "tasks"
        }
    assert wrong == set()


def _top_level_imports(path: Path) -> set[str]:
    """Project modules `path` imports while it loads (not those imported inside functions)."""
    found: set[str] = set()
    nodes: list[ast.stmt] = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If | ast.Try):
            nodes.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {name for name in found if name in MODULES}


MODULES = {_name(path): path for folder in FOLDERS for path in _modules(folder)}
# The capability packages whose `__init__` names what flows may use.
FACADES = {name for name, path in MODULES.items() if path.name == "__init__.py"} & {
    _area(name) for name in MODULES if name.startswith("tasks.")
}


def test_inside_tasks_no_module_imports_from_a_capability_package() -> None:
    """Flows import `tasks.imports`; tasks import the module itself, so a capability's
    `__init__` is never part of an import cycle."""
    wrong = {
        f"{name} -> {target}"
        for name, path in MODULES.items()
        if name.startswith("tasks.")
        for target in _top_level_imports(path)
        if target in FACADES
    }
    assert wrong == set()


def test_no_import_cycle_between_modules() -> None:
    graph = {name: _top_level_imports(path) - {name} for name, path in MODULES.items()}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []

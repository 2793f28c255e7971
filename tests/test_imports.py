"""accelwrap's import graph has no circles, and its layers depend one way.

The graph is read from the source (every ``import`` and ``from ... import`` of an accelwrap
module, at module level or inside functions), as import-graph tools such as grimp read
it; a package's ``__init__`` counts as a module of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "accelwrap"

# Local imports kept on purpose: the module is slow to import and rarely needed.
LAZY = {("accelwrap.optim.optimizer", "accelwrap.optim.optimizer.zero_optimizer")}

# Layers from the bottom up (ARCHITECTURE.md): a module may import its own layer or lower.
LAYERS = (
    ("accelwrap.errors", "accelwrap.arguments", "accelwrap.registry", "accelwrap.config"),
    ("accelwrap.optim",),
    ("accelwrap.checks",),
    ("accelwrap.runner",),
    ("accelwrap.tools", "accelwrap.cli", "accelwrap"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(node: ast.AST, here: str, is_package: bool) -> list[str]:
    """The accelwrap modules an import statement imports (submodules included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = here.split(".") if is_package else here.split(".")[:-1]
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    # ``from pkg import submodule`` depends on the submodule; ``from pkg import name``, on pkg.
    names = len(node.names) > len(submodules)
    return submodules + ([base] if names and base in MODULES else [])


def edges(local: bool) -> set[tuple[str, str]]:
    """``(importer, imported)`` pairs; ``local`` selects imports inside functions only."""
    out = set()
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        functions = [n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inner = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            if (id(node) in inner) == local:
                out |= {(name, target) for target in imported(node, name, path.stem == "__init__")
                        if target != name}
    return out


def circles(graph: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    succ: dict[str, list[str]] = {}
    for a, b in graph:
        succ.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(succ) | {b for _, b in graph}):
        if v not in index:
            visit(v)
    return found


def layer(name: str) -> int:
    best = max((p for level in LAYERS for p in level if name == p or name.startswith(p + ".")),
               key=len)
    return next(i for i, level in enumerate(LAYERS) if best in level)


def test_the_graph_is_read():
    graph = edges(local=False)
    assert ("accelwrap.runner.runner", "accelwrap.runner.loops") in graph
    assert ("accelwrap.tools.schedule", "accelwrap.tools.schedule_plot") in graph
    assert len(MODULES) > 40


def test_circles_are_found():
    assert circles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert circles(edges(local=False) | edges(local=True)) == []


def test_no_function_local_imports_of_accelwrap_modules():
    assert edges(local=True) <= LAZY


@pytest.mark.parametrize("importer,target", sorted(edges(local=False) | edges(local=True)))
def test_dependencies_flow_one_way(importer, target):
    assert layer(target) <= layer(importer), f"{importer} (a higher layer) imports {target}"

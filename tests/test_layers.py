"""Imports point downwards and close no cycle (ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "budgetsearch"
# Layer of each top-level module or package of budgetsearch (higher may import lower).
LAYERS = {
    "errors": 0, "files": 0, "data": 0, "models": 0,
    "cost": 1,
    "train_hooks": 2, "acceleration": 2, "train": 2,
    "pruners": 3,
    "pareto": 4, "search": 4, "testing": 4, "profiling": 4,
    "api": 5, "commands": 5, "cli": 5, "__main__": 6,
}
# Exceptions to the layering (none: the profiling code that builds networks lives above cost).
ALLOWED: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("budgetsearch."):
                names.add(node.module.removeprefix("budgetsearch."))
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("budgetsearch.") for a in node.names
                         if a.name.startswith("budgetsearch."))
    return names


def test_no_upward_imports() -> None:
    upward = []
    for name, path in _modules().items():
        top = name.split(".")[0]
        if top == "__init__":
            continue  # the package root re-exports the API lazily
        assert top in LAYERS, f"budgetsearch/{top} has no layer in this test (add it)"
        for target in _imports(path):
            other = target.split(".")[0]
            if other != top and LAYERS[other] > LAYERS[top] and (name, other) not in ALLOWED:
                upward.append(f"{name} -> {target}")
    assert not upward, upward


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: {t for t in _imports(path) if t in modules and t != name}
             for name, path in modules.items()}
    # Package __init__ files re-export their own submodules; follow module edges only.
    for name in list(graph):
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") or
                                                      t.startswith(name + "."))}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for start in graph:
        if start not in state and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)

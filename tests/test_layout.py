"""The layout's rules (docs/architecture.md): no import circle in any package, and the top level of `edge_models`
holds the plugin API and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for p in (REPO / "packages").glob("*/src") if p.is_dir())
PLUGIN_API = {"__init__", "config", "hookspecs", "plugins", "spec", "tensor_names", "testing"}


def _modules(src: Path) -> dict[str, Path]:
    modules = {}
    for path in src.rglob("*.py"):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `path` imports, at any depth, except inside a lazy module `__getattr__`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = {
        id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name in known}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.parent.name)
def test_no_import_circle(src):
    modules = _modules(src)
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_top_level_of_core_is_the_plugin_api():
    core = REPO / "packages" / "core" / "src" / "edge_models"
    top = {p.stem for p in core.glob("*.py")}
    assert top == PLUGIN_API, f"modules at the top level that are not plugin API: {sorted(top - PLUGIN_API)}"

"""The collector's shape, read from its source: its modules form no import cycle, the
engine does not import it, no function or class is too long, and no module reaches
into another object's private members."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import AbstractSet, Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "analytics"
COLLECTOR = PACKAGE / "collector"
#: The modules of analytics/ (outside the collector) that may import it: the tools.
TOOLS = {"analytics.cli", "analytics.demo", "analytics.__main__"}
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(name: str, is_package: bool, tree: ast.Module, known: AbstractSet[str] = frozenset()) -> Iterator[str]:
    """Every module ``name`` imports, anywhere in it (in functions too).  ``from pkg import x``
    counts as importing ``pkg.x`` when that is one of the ``known`` modules, else ``pkg``."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                yield f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module


def _graph(modules: Dict[str, ast.Module], paths: Dict[str, Path]) -> Dict[str, Set[str]]:
    known = set(modules)
    return {
        name: {m for m in _imports(name, paths[name].name == "__init__.py", tree, known) if m in known and m != name}
        for name, tree in modules.items()
    }


def _collector() -> Tuple[Dict[str, ast.Module], Dict[str, Path]]:
    paths = {_module_name(p): p for p in sorted(COLLECTOR.rglob("*.py"))}
    return {name: ast.parse(p.read_text(encoding="utf-8"), str(p)) for name, p in paths.items()}, paths


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle in ``graph`` (as a path that comes back to its start), or []."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycle_in_the_collector():
    """No two collector modules import each other, directly or through others, even inside functions."""
    modules, paths = _collector()
    assert _cycle(_graph(modules, paths)) == []


def test_only_the_tools_import_the_collector():
    """The engine and the API clients never import the collector (in functions either); only the tools do."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if COLLECTOR in path.parents:
            continue
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if any(m == "analytics.collector" or m.startswith("analytics.collector.")
               for m in _imports(name, path.name == "__init__.py", tree)) and name not in TOOLS:
            found.append(name)
    assert found == []


def _spans(tree: ast.Module, kinds: Tuple[type, ...]) -> Iterator[Tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            end = node.end_lineno or node.lineno
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            yield getattr(node, "name", "?"), end - start + 1


def test_no_long_functions_or_classes_in_the_collector():
    """No function of the collector is over 80 lines, no class over 450."""
    modules, _ = _collector()
    long_functions = [(m, n, size) for m, tree in modules.items()
                      for n, size in _spans(tree, (ast.FunctionDef, ast.AsyncFunctionDef)) if size > MAX_FUNCTION_LINES]
    long_classes = [(m, n, size) for m, tree in modules.items()
                    for n, size in _spans(tree, (ast.ClassDef,)) if size > MAX_CLASS_LINES]
    assert long_functions == [] and long_classes == []


def _private_reaches(tree: ast.Module) -> Iterator[Tuple[int, str]]:
    """``x._name`` where ``x`` is not ``self`` or ``cls`` (dunders aside)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        yield node.lineno, ast.unparse(node)


def test_no_reaching_into_private_members():
    """No collector module, and no other module of the library, reads or writes another object's
    private members in the collector (``obj._name`` with ``obj`` not self or cls)."""
    modules, _ = _collector()
    found = [(m, line, text) for m, tree in modules.items() for line, text in _private_reaches(tree)]
    for name in sorted(TOOLS):
        path = ROOT / (name.replace(".", "/") + ".py")
        if path.exists():
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            found += [(name, line, text) for line, text in _private_reaches(tree) if "collector" in text.lower()]
    assert found == []


def test_the_checks_see_a_cycle_and_a_reach():
    """The checks above find what they look for (a cycle through a deferred import, a private reach)."""
    graph = _graph(
        {"p.a": ast.parse("from . import b"), "p.b": ast.parse("def f():\n    from .a import x\n"), "p": ast.Module([], [])},
        {"p.a": Path("a.py"), "p.b": Path("b.py"), "p": Path("__init__.py")},
    )
    assert _cycle(graph) == ["p.a", "p.b", "p.a"]
    assert [text for _, text in _private_reaches(ast.parse("other._x = self._y + cls._z + a.__dict__"))] == ["other._x"]

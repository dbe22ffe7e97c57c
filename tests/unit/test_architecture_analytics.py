"""The shape of the ``analytics`` package, read from its source (no import): no import cycle,
no function over 80 lines, no class over 450 lines.

The collector (``analytics/collector/``) is checked on its own terms and left out here.
Imports count wherever they are written: at the top of a module, inside a function (a
deferred import still ties the two modules together), and under ``if TYPE_CHECKING:``.
Importing ``a.b.c`` from outside the package ``a.b`` also runs ``a/b/__init__.py``, so that
package counts as imported too (a module's own ancestors are already being imported).

``python -m tests.unit.test_architecture_analytics`` prints the measurements.  (The functions here are named for
``analytics``: the checks of ``customerio/`` may share this file.)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "analytics"
EXCLUDED = ("analytics.collector",)
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 450


def _analytics_modules() -> Dict[str, Path]:
    """Every module of the package outside EXCLUDED, by dotted name."""
    found: Dict[str, Path] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if not any(name == e or name.startswith(e + ".") for e in EXCLUDED):
            found[name] = path
    return found


def _analytics_is_package(name: str, modules: Dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _analytics_ancestors(name: str) -> Set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _analytics_imports(name: str, tree: ast.AST, modules: Dict[str, Path]) -> Iterator[Tuple[str, int]]:
    """(module of the package, line) for each import in ``tree``, the module ``name``."""
    package = name if _analytics_is_package(name, modules) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from x import y`: y is a submodule, or a name defined in x (then x is imported)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` runs a.b.c and the packages a.b, a that the importer is not inside
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if not target:
                continue
            for dotted in sorted(_analytics_ancestors(target) | {target}):
                if dotted in modules and dotted != name and dotted not in _analytics_ancestors(name):
                    yield dotted, node.lineno


def analytics_import_graph() -> Dict[str, Dict[str, int]]:
    """{module: {module it imports: first line of such an import}} within the package."""
    modules = _analytics_modules()
    graph: Dict[str, Dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in _analytics_imports(name, ast.parse(path.read_text(), str(path)), modules):
            edges.setdefault(target, line)
    return graph


def analytics_import_cycles(graph: Optional[Dict[str, Dict[str, int]]] = None) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    if graph is None:
        graph = analytics_import_graph()
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def _analytics_definitions(kind: type) -> Iterator[Tuple[str, str, int]]:
    """(file, qualified name, lines) of each definition of ``kind`` in the package."""
    for name, path in _analytics_modules().items():
        tree = ast.parse(path.read_text(), str(path))
        rel = str(path.relative_to(ROOT))

        def walk(node: ast.AST, prefix: str) -> Iterator[Tuple[str, str, int]]:
            for child in ast.iter_child_nodes(node):
                qual = prefix
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qual = f"{prefix}{child.name}"
                    if isinstance(child, kind):
                        end = child.end_lineno or child.lineno
                        yield rel, qual, end - child.lineno + 1
                    qual += "."
                yield from walk(child, qual)

        yield from walk(tree, "")


def analytics_long_functions() -> List[Tuple[str, str, int]]:
    return [d for d in _analytics_definitions((ast.FunctionDef, ast.AsyncFunctionDef)) if d[2] > MAX_FUNCTION_LINES]  # type: ignore[arg-type]


def analytics_long_classes() -> List[Tuple[str, str, int]]:
    return [d for d in _analytics_definitions(ast.ClassDef) if d[2] > MAX_CLASS_LINES]


def test_analytics_scan_sees_the_package() -> None:
    graph = analytics_import_graph()
    assert "analytics" in graph and "analytics.client" in graph and "analytics.engine.worker" in graph
    assert not any(name.startswith("analytics.collector") for name in graph)
    # the client's own imports are seen, deferred and package ones included
    assert "analytics.messages" in graph["analytics.client"]
    assert "analytics.engine" in graph["analytics.client"]
    assert "analytics.importer" in graph["analytics.cli"]  # imported inside a function
    # views imports analytics.engine.worker, which runs analytics/engine/__init__.py too
    assert {"analytics.engine", "analytics.engine.worker"} <= graph["analytics.views"].keys()


def test_analytics_import_cycle_detection_works() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1, "e": 1}, "e": {"d": 1}, "f": {}}
    assert analytics_import_cycles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_analytics_has_no_import_cycle() -> None:
    cycles = analytics_import_cycles()
    graph = analytics_import_graph()
    described = []
    for component in cycles:
        members = set(component)
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in component for b in graph[a] if b in members]
        described.append("; ".join(edges))
    assert not cycles, "import cycles: " + " | ".join(described)


def test_analytics_has_no_function_over_80_lines() -> None:
    assert not analytics_long_functions(), analytics_long_functions()


def test_analytics_has_no_class_over_450_lines() -> None:
    assert not analytics_long_classes(), analytics_long_classes()


if __name__ == "__main__":
    print("cycles:", analytics_import_cycles())
    print("functions over", MAX_FUNCTION_LINES, "lines:", analytics_long_functions())
    print("classes over", MAX_CLASS_LINES, "lines:", analytics_long_classes())

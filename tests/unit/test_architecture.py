"""The shape of the code, checked from its source: no import cycles, no imports hidden inside
functions, no overlong functions or classes.  Covers ``customerio/`` and ``analytics/clients/``."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The packages checked (dotted name -> directory).
PACKAGES = {"customerio": ROOT / "customerio", "analytics.clients": ROOT / "analytics" / "clients"}
#: Imports allowed inside a function: optional dependencies, imported when first needed.
DEFERRED_ALLOWED = {("analytics.clients.http", "httpx")}
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 450


def modules(packages: Dict[str, Path]) -> Dict[str, Path]:
    """Every module of the packages (not subpackages: customerio/analytics holds only stubs)."""
    found = {}
    for package, directory in packages.items():
        for path in sorted(directory.glob("*.py")):
            found[package if path.name == "__init__.py" else f"{package}.{path.stem}"] = path
    return found


def _canonical(name: str) -> str:
    """``customerio.analytics.X`` is ``analytics.X`` (the same module at run time)."""
    return "analytics" + name[len("customerio.analytics"):] if name.startswith("customerio.analytics") else name


def imports(module: str, path: Path, is_package: bool,
            known: Iterable[str] = ()) -> Iterator[Tuple[str, ast.stmt, bool]]:
    """Every module ``module`` imports, anywhere in its source (in functions too): (dotted name,
    the statement, whether it is inside a function).  ``from X import y`` yields ``X.y``, and ``X``
    too unless ``X.y`` is one of the ``known`` modules (then ``X`` is only its parent package)."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if is_package else module.rpartition(".")[0]
    for node, in_function in _walk(tree, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _canonical(alias.name), node, in_function
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [_canonical(f"{base}.{alias.name}") for alias in node.names]
            if not all(name in known for name in names):
                yield _canonical(base), node, in_function
            for name in names:
                yield name, node, in_function


def _walk(node: ast.AST, in_function: bool) -> Iterator[Tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, in_function
        inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, inside)


def import_graph(packages: Dict[str, Path]) -> Dict[str, Set[str]]:
    """Module -> the modules of the same packages it imports."""
    mods = modules(packages)
    graph: Dict[str, Set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        for target, _, _ in imports(name, path, path.name == "__init__.py", mods):
            if target in mods and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle (``[a, b, a]``), or None."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
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
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _sizes(tree: ast.AST) -> Iterable[Tuple[str, str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield kind, node.name, (node.end_lineno or node.lineno) - node.lineno + 1


def test_no_import_cycle_counting_imports_inside_functions():
    """No module of customerio/ or analytics/clients/ imports, even from inside a function, a module
    that imports it back (directly or through others)."""
    assert find_cycle(import_graph(PACKAGES)) is None


def test_the_cycle_finder_sees_an_import_hidden_in_a_function(tmp_path: Path):
    """Two modules that import each other, one of them inside a function, make a cycle."""
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    assert find_cycle(import_graph({"pkg": tmp_path})) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_no_import_inside_a_function_but_optional_dependencies():
    """Imports are at the top of each module, where a reader sees them; only an optional dependency
    (httpx, the async extra) is imported where it is first needed."""
    hidden = []
    for name, path in modules(PACKAGES).items():
        for target, node, in_function in imports(name, path, path.name == "__init__.py"):
            if in_function and (name, target) not in DEFERRED_ALLOWED:
                hidden.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert hidden == []


@pytest.mark.parametrize("name", sorted(modules(PACKAGES)))
def test_functions_and_classes_are_short(name: str):
    """No function over 80 lines and no class over 450 lines."""
    path = modules(PACKAGES)[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    limits = {"function": MAX_FUNCTION_LINES, "class": MAX_CLASS_LINES}
    long = [f"{kind} {what}: {lines} lines" for kind, what, lines in _sizes(tree) if lines > limits[kind]]
    assert long == []


def test_requests_is_imported_only_where_it_is_used():
    """``import requests`` appears only in modules that call it or name its types."""
    unused = []
    for name, path in modules(PACKAGES).items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        imported = any(isinstance(n, ast.Import) and any(a.name == "requests" for a in n.names) for n in ast.walk(tree))
        used = any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "requests"
                   for n in ast.walk(tree)) or "requests.Session" in source
        if imported and not used:
            unused.append(os.path.relpath(path, ROOT))
    assert unused == []


#: Small shared definitions that must be written once in the library (the collector, a separate product
#: inside the package, is left out): what each looks like where it is defined.
ONE_DEFINITION = {
    "the Basic auth header": r'b64encode\(f"\{\w+\}:',
    "the User-Agent": r"cdp-relay/\{VERSION\}",
    "the 32 KB limit": r"=\s*(32 \* 1024|32_?768)\b",
    "the 500 KB limit": r"=\s*500_?000\b",
    "the loopback check": r"ip_address\([^)]*\)\.is_loopback",
    "the loss reasons": r'\(\s*"rejected",\s*"retries_exhausted"',
}


def _library_sources() -> Iterator[Tuple[Path, str]]:
    for directory in (ROOT / "analytics", ROOT / "customerio"):
        for path in sorted(directory.rglob("*.py")):
            if "collector" not in path.relative_to(ROOT).parts:
                yield path, path.read_text(encoding="utf-8")


@pytest.mark.parametrize("what", sorted(ONE_DEFINITION))
def test_small_shared_definitions_are_written_once(what: str):
    """The Basic auth header, the User-Agent, the 32 KB / 500 KB limits, the loopback check and the
    loss-reason names are each written once in analytics/ and customerio/ (others import them)."""
    pattern = re.compile(ONE_DEFINITION[what])
    places = [f"{path.relative_to(ROOT)}:{source.count(chr(10), 0, m.start()) + 1}"
              for path, source in _library_sources() for m in pattern.finditer(source)]
    assert len(places) == 1, places

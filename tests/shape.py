"""Reading the library's shape from its source, without importing it: its modules, what each
imports (and where: at the top, inside a function, under ``if TYPE_CHECKING:``), the import
graph and its cycles, the sizes of functions and classes, and reaches into another object's
private members.  ``tests/unit/test_architecture.py`` states the rules; this module only measures.

Imports count wherever they are written.  A deferred import (inside a function) still ties two
modules together, and so does one under ``if TYPE_CHECKING:`` (a type checker follows it).
Importing ``a.b.c`` from outside the package ``a.b`` also runs ``a/b/__init__.py`` and
``a/__init__.py``, so those packages count as imported too (a module's own ancestors are
already being imported when it runs, so they do not).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]

FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class Import:
    """One module named by an import statement."""

    module: str
    """The importing module."""
    imported: str
    """The absolute dotted name imported: ``X`` for ``import X``; for ``from X import y``, the
    module ``X.y`` when it is one of the scanned modules, else ``X``."""
    line: int
    in_function: bool
    """Written inside a function (a deferred import)."""
    type_checking: bool
    """Written under ``if TYPE_CHECKING:``."""
    runs: Tuple[str, ...]
    """The scanned modules the import runs: the imported one and its parent packages, less the
    importer's own ancestors (sorted; empty for a module from outside)."""


@dataclass(frozen=True)
class Definition:
    """A function or class and its size (decorators included)."""

    module: str
    qualname: str
    kind: str
    """``"function"`` or ``"class"``."""
    line: int
    lines: int


@dataclass(frozen=True)
class Reach:
    """``x._name`` with ``x`` not ``self`` or ``cls``: a read or write of another object's private member."""

    module: str
    line: int
    text: str


class Library:
    """The modules found under some packages' directories, read once.

    ``packages`` maps a package's dotted name to its directory; every ``*.py`` below it is a
    module.  ``aliases`` maps a name prefix to the one it stands for at run time (the
    ``customerio.analytics`` package *is* ``analytics``), so that both names make one graph.
    """

    def __init__(self, packages: Mapping[str, Path], aliases: Optional[Mapping[str, str]] = None) -> None:
        self.aliases = dict(aliases or {})
        self.paths: Dict[str, Path] = {}
        for package, directory in packages.items():
            for path in sorted(Path(directory).rglob("*.py")):
                parts = list(path.relative_to(directory).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                self.paths[".".join([package] + parts)] = path
        self._trees: Dict[str, ast.Module] = {}
        self._imports: Dict[str, List[Import]] = {}

    # -- reading -----------------------------------------------------------------------------

    def tree(self, module: str) -> ast.Module:
        if module not in self._trees:
            path = self.paths[module]
            self._trees[module] = ast.parse(path.read_text(encoding="utf-8"), str(path))
        return self._trees[module]

    def where(self, module: str, line: int) -> str:
        """``path:line`` relative to the checkout."""
        path = self.paths[module]
        try:
            path = path.relative_to(ROOT)
        except ValueError:
            pass
        return f"{path}:{line}"

    def is_package(self, module: str) -> bool:
        return self.paths[module].name == "__init__.py"

    def canonical(self, name: str) -> str:
        for alias, real in self.aliases.items():
            if name == alias or name.startswith(alias + "."):
                return real + name[len(alias):]
        return name

    # -- imports -----------------------------------------------------------------------------

    def imports(self, module: str) -> List[Import]:
        """Every import written in ``module``, in the order of the source."""
        if module not in self._imports:
            self._imports[module] = list(self._scan(module))
        return self._imports[module]

    def _scan(self, module: str) -> Iterator[Import]:
        package = module if self.is_package(module) else module.rpartition(".")[0]
        own = ancestors(module)
        for node, in_function, type_checking in _walk(self.tree(module)):
            if isinstance(node, ast.Import):
                names = [self.canonical(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                base = self.canonical(base)
                # `from x import y`: y is a module of its own, or a name defined in x
                submodules = [self.canonical(f"{base}.{alias.name}") for alias in node.names]
                names = [name if name in self.paths else base for name in submodules]
            else:
                continue
            for name in dict.fromkeys(names):
                yield Import(module, name, node.lineno, in_function, type_checking, self._runs(name, module, own))

    def _runs(self, name: str, module: str, own: Set[str]) -> Tuple[str, ...]:
        target = name
        while target and target not in self.paths:  # `import a.b.c` where only a.b is scanned
            target = target.rpartition(".")[0]
        if not target:
            return ()
        return tuple(sorted(m for m in ancestors(target) | {target}
                            if m in self.paths and m != module and m not in own))

    def graph(self) -> Dict[str, Dict[str, Import]]:
        """{module: {module it runs by importing: the first import that does}}."""
        graph: Dict[str, Dict[str, Import]] = {}
        for module in self.paths:
            edges = graph.setdefault(module, {})
            for imp in self.imports(module):
                for target in imp.runs:
                    edges.setdefault(target, imp)
        return graph

    def cycles(self) -> List[List[str]]:
        return cycles({m: set(edges) for m, edges in self.graph().items()})

    def describe_cycle(self, component: Iterable[str]) -> str:
        """A shortest cycle through the first module of a strongly connected component, each
        step with the line of its import (and how many modules the component holds)."""
        members = sorted(component)
        graph = self.graph()
        start = members[0]
        previous: Dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for target in sorted(graph[node]):
                    if target in members and target not in previous:
                        previous[target] = node
                        following.append(target)
            frontier = following
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(previous[path[-1]])
        path.reverse()
        steps = " -> ".join(f"{a} ({self.where(a, graph[a][b].line)})" for a, b in zip(path, path[1:]))
        return f"{steps} -> {start}  [{len(members)} modules in the cycle]"

    # -- sizes and reaches -------------------------------------------------------------------

    def definitions(self) -> Iterator[Definition]:
        for module in self.paths:
            yield from definitions(self.tree(module), module)

    def private_reaches(self, modules: Optional[Iterable[str]] = None) -> List[Reach]:
        return [Reach(m, line, text) for m in (self.paths if modules is None else modules)
                for line, text in private_reaches(self.tree(m))]


def ancestors(module: str) -> Set[str]:
    """The packages above a dotted name: ``a.b.c`` -> ``{a, a.b}``."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False,
          type_checking: bool = False) -> Iterator[Tuple[ast.AST, bool, bool]]:
    """Every node under ``node``, with whether it is inside a function and under ``if TYPE_CHECKING:``."""
    guarded = {id(c) for c in node.body} if isinstance(node, ast.If) and _is_type_checking(node.test) else set()
    for child in ast.iter_child_nodes(node):
        under = type_checking or id(child) in guarded
        yield child, in_function, under
        yield from _walk(child, in_function or isinstance(child, FUNCTION_NODES), under)


def cycles(graph: Mapping[str, Iterable[str]]) -> List[List[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def definitions(tree: ast.AST, module: str, prefix: str = "") -> Iterator[Definition]:
    """Each function and class in ``tree``, nested ones too, by qualified name."""
    for child in ast.iter_child_nodes(tree):
        qual = prefix
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qual = f"{prefix}{child.name}"
            start = min([child.lineno] + [d.lineno for d in child.decorator_list])
            end = child.end_lineno or child.lineno
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            yield Definition(module, qual, kind, child.lineno, end - start + 1)
            qual += "."
        yield from definitions(child, module, qual)


def private_reaches(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    """(line, text) of each ``x._name`` where ``x`` is not ``self`` or ``cls`` (dunders aside), in
    the order of the source."""
    for node in sorted(ast.walk(tree), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        yield node.lineno, ast.unparse(node)

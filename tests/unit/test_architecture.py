"""The shape of the library, read from its source (nothing is imported): ``analytics/`` (the
collector included) and ``customerio/`` as one import graph.

* no import cycle, counting deferred imports (inside a function), imports under
  ``if TYPE_CHECKING:`` and the parent packages an import runs;
* no function over 80 lines, no class over 450 lines (decorators included);
* no import inside a function but those on :data:`DEFERRED_IMPORTS` (optional dependencies and
  deliberately lazy heavy modules), each with its reason;
* ``requests`` is imported only by modules that use it (that ``import analytics`` does not load
  it is checked in a fresh interpreter by
  ``tests/system/test_public_api.py::test_import_and_a_track_load_neither_requests_nor_dateutil``);
* small shared definitions (the Basic auth header, the User-Agent, the limits, the loopback
  check, the loss reasons) are written once;
* only the tools import the collector; neither the collector nor the tools reach into another
  object's private members, and elsewhere only the reaches on :data:`PRIVATE_REACHES` remain;
* each check is shown to fail on a small package that breaks its rule.

``customerio/analytics/`` holds only ``.pyi`` stubs: ``customerio.analytics.X`` is
``analytics.X`` at run time, so an import of one is read as an import of the other.
``python -m tests.unit.test_architecture`` prints the measurements.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import pytest

from ..shape import ROOT, Library

PACKAGES = {"analytics": ROOT / "analytics", "customerio": ROOT / "customerio"}
ALIASES = {"customerio.analytics": "analytics"}
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 450
COLLECTOR = "analytics.collector"
#: The modules outside the collector that may import it: the command line and the demo.
TOOLS = ("analytics.cli", "analytics.demo", "analytics.__main__")

_OPTIONAL = "an optional dependency"
_LAZY_IMPORTER = "the importer (csv, hashlib...) loads on use: a call or --help needs little of it"
_LAZY_REQUESTS = "requests serves a proxy's transport only: import analytics does not load it"

#: Imports written inside a function: (importing module, module imported) -> why it is deferred.
#: Any other import inside a function fails :func:`test_no_import_inside_a_function_but_the_allowed_ones`.
DEFERRED_IMPORTS: Dict[Tuple[str, str], str] = {
    ("analytics._fork", "multiprocessing.util"):
        "registers a multiprocessing child's exit drain: import analytics does not load multiprocessing",
    ("analytics.engine.hosts", "concurrent.futures.thread"):
        "loaded ahead only when gevent is imported but not yet patching (gevent's resolver imports it at "
        "exit, when its exit hook can no longer be registered)",
    ("analytics.cli", "analytics.importer"): _LAZY_IMPORTER,
    ("analytics.cli", "analytics.collector.__main__"): "the collector (a server) loads only for the collector command",
    ("analytics.cli", "analytics.demo"): "the demo (and the collector it runs) loads only for the demo command",
    ("analytics.clients.http", "httpx"): f"{_OPTIONAL} (the async extra): imported only by the async clients",
    ("analytics.integrations.celery", "celery"):
        f"{_OPTIONAL} (the celery extra): setup() and teardown() load it, importing the module does not",
    ("analytics.integrations.django", "django.conf"):
        f"{_OPTIONAL} (the django extra): its settings are read when the middleware is built, not at import",
    ("analytics.progress", "tqdm"): f"{_OPTIONAL} (the progress extra): a bar is drawn with it when installed",
    ("analytics.queues.redis", "redis"): f"{_OPTIONAL} (the redis extra): loaded by a Redis queue only",
    ("analytics.transport.http", "requests"): _LAZY_REQUESTS,
    ("analytics.transport.http", "requests.utils"):
        "only with a proxy: NO_PROXY is read as requests reads it (CIDR, ports)",
    ("analytics.transport.http", "certifi"): "requests' trust store, read when a TLS context is first built",
}

_CLIENT_INSIDE = "the package's own machinery driving a Client's internals (one component with analytics.client)"
_OWN_RESULT = "a result object filled in by the client that builds it (the class is defined beside it)"

#: Reaches into another object's private members outside the collector, as they stand:
#: (module, the expression as written) -> why.  Any other fails
#: :func:`test_no_other_private_reach_in_the_library`.  ``super()._name`` is the object's own.
PRIVATE_REACHES: Dict[Tuple[str, str], str] = {
    ("analytics", "client._closed"):
        "the module-level functions start a new shared client once theirs was shut down",
    ("analytics._fork", "client._mp_registered"): f"fork handling: {_CLIENT_INSIDE}",
    ("analytics._fork", "client._exit_drain"): f"fork handling: {_CLIENT_INSIDE}",
    ("analytics._fork", "client._check_pid"): f"fork handling: {_CLIENT_INSIDE}",
    ("analytics._fork", "client._leave_parent_engine"): f"fork handling: {_CLIENT_INSIDE}",
    ("analytics._fork", "client._engine_locks"): f"fork handling: {_CLIENT_INSIDE}",
    ("analytics._worker_loop", "client._engine"): f"a worker process starts its engine's consumer: {_CLIENT_INSIDE}",
    ("analytics.cli", "parser._actions"):
        "shell completion and the mistyped-flag hint list a parser's flags; argparse has no public list",
    ("analytics.cli", "argparse._AppendAction"): "shell completion marks a repeatable flag (action='append')",
    ("analytics.client", "obj._config"): "the _Setting descriptor reads and writes the Client it is set on",
    ("analytics.client", "obj._apply"): "the _Setting descriptor reads and writes the Client it is set on",
    ("analytics.clients.bloomreach", "result._add"): _OWN_RESULT,
    ("analytics.engine.worker", "aio._get_running_loop"):
        "asyncio's loop check that neither imports asyncio nor raises outside a loop",
    ("analytics.integrations.opentelemetry", "m._source"): "the registry prunes its own Instrumentation members",
    ("analytics.testing", "_client._captures"): "capture() registers with analytics.client's module-level list",
    ("analytics.transport.memory", "request._aborted"): "the transport aborts the Request records it creates",
    ("customerio.aio", "result._record"): _OWN_RESULT,
    ("customerio.app", "self._client._call"): "an API group sends through the client that owns it",
    ("customerio.retry", "strategy._clock"): "the async copy of a BackoffRetry keeps its clock",
    ("customerio.track", "result._record"): _OWN_RESULT,
}

#: Small shared definitions written once in the library: what each looks like where it is defined.
ONE_DEFINITION = {
    "the Basic auth header": r'b64encode\(f"\{\w+\}:',
    "the User-Agent": r"cdp-relay/\{VERSION\}",
    "the 32 KB limit": r"=\s*(32 \* 1024|32_?768)\b",
    "the 500 KB limit": r"=\s*500_?000\b",
    "the loopback check": r"ip_address\([^)]*\)\.is_loopback",
    "the loss reasons": r'\(\s*"rejected",\s*"retries_exhausted"',
}


def library() -> Library:
    return Library(PACKAGES, ALIASES)


_LIBRARY = library()


# -- the checks: each lists what breaks its rule in a Library --------------------------------------


def import_cycles(lib: Library) -> List[str]:
    return [lib.describe_cycle(component) for component in lib.cycles()]


def long_definitions(lib: Library, kind: str) -> List[str]:
    limit = {"function": MAX_FUNCTION_LINES, "class": MAX_CLASS_LINES}[kind]
    return [f"{lib.where(d.module, d.line)} {d.qualname}: {d.lines} lines"
            for d in lib.definitions() if d.kind == kind and d.lines > limit]


def hidden_imports(lib: Library, allowed: Mapping[Tuple[str, str], str]) -> List[str]:
    return [f"{lib.where(m, imp.line)} imports {imp.imported}"
            for m in lib.paths for imp in lib.imports(m)
            if imp.in_function and (m, imp.imported) not in allowed]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def collector_importers(lib: Library, collector: str = COLLECTOR, tools: Iterable[str] = TOOLS) -> List[str]:
    """Imports of the collector (or of a module in it) by modules outside it but the tools."""
    return [f"{lib.where(m, imp.line)} imports {imp.imported}"
            for m in lib.paths if not within(m, collector) and m not in tools
            for imp in lib.imports(m) if any(within(r, collector) for r in imp.runs)]


def collector_reaches(lib: Library, collector: str = COLLECTOR, tools: Iterable[str] = TOOLS) -> List[str]:
    """Every reach in the collector, and those of the tools that name the collector."""
    found = lib.private_reaches([m for m in lib.paths if within(m, collector)])
    found += [r for r in lib.private_reaches([t for t in tools if t in lib.paths]) if "collector" in r.text.lower()]
    return [f"{lib.where(r.module, r.line)} {r.text}" for r in found]


def other_reaches(lib: Library, allowed: Mapping[Tuple[str, str], str]) -> List[str]:
    """Reaches not on ``allowed`` (``super()._name`` is the object's own member)."""
    return [f"{lib.where(r.module, r.line)} {r.text}" for r in lib.private_reaches()
            if not r.text.startswith("super()") and (r.module, r.text) not in allowed]


def unused_requests(lib: Library) -> List[str]:
    """Modules that import ``requests`` (in any form) and never name what the import binds."""
    unused = []
    for m in lib.paths:
        tree = lib.tree(m)
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound |= {alias.asname or "requests" for alias in node.names if alias.name.split(".")[0] == "requests"}
            elif isinstance(node, ast.ImportFrom) and not node.level \
                    and (node.module or "").split(".")[0] == "requests":
                bound |= {alias.asname or alias.name for alias in node.names}
        if not bound:
            continue
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        quoted = " ".join(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
        if not any(name in named or re.search(rf"\b{re.escape(name)}\b", quoted) for name in bound):
            unused.append(m)
    return unused


def stale(allowed: Mapping[Tuple[str, str], str], found: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """Allowlist entries that no longer match anything (to be removed from the list)."""
    seen = set(found)
    return sorted(key for key in allowed if key not in seen)


# -- the rules, on the library -------------------------------------------------------------------


def test_the_scan_sees_the_whole_library() -> None:
    """The graph holds every module of both packages, under one name each, with the edges that
    deferred imports, package imports and the customerio.analytics alias make."""
    graph = _LIBRARY.graph()
    assert {"analytics", "analytics.client", "analytics.engine.worker", "analytics.collector.server",
            "customerio", "customerio.track"} <= graph.keys()
    assert not any(m.startswith("customerio.analytics") for m in graph)  # stubs only: not modules
    assert {"analytics.messages", "analytics.engine"} <= graph["analytics.client"].keys()
    assert "analytics.importer" in graph["analytics.cli"]  # imported inside a function
    assert graph["analytics.cli"]["analytics.importer"].in_function
    # views imports analytics.engine.worker, which runs analytics/engine/__init__.py too
    assert {"analytics.engine", "analytics.engine.worker"} <= graph["analytics.views"].keys()
    # `from .analytics.clients.http import ...` in customerio is analytics.clients.http (and its packages)
    assert {"analytics", "analytics.clients", "analytics.clients.http"} <= graph["customerio.aio"].keys()
    assert graph["customerio.aio"]["analytics.retry"].type_checking


def test_no_import_cycle() -> None:
    """No module imports, even from inside a function or under ``if TYPE_CHECKING:``, a module
    that imports it back (directly or through others, parent packages included)."""
    assert import_cycles(_LIBRARY) == []


def test_no_function_over_80_lines() -> None:
    """No function of analytics/ or customerio/ is over 80 lines."""
    assert long_definitions(_LIBRARY, "function") == []


def test_no_class_over_450_lines() -> None:
    """No class of analytics/ or customerio/ is over 450 lines."""
    assert long_definitions(_LIBRARY, "class") == []


def test_no_import_inside_a_function_but_the_allowed_ones() -> None:
    """Imports are at the top of each module, where a reader sees them; only an optional
    dependency or a deliberately lazy heavy module is imported where it is first needed, and
    each such import is on DEFERRED_IMPORTS with its reason."""
    assert hidden_imports(_LIBRARY, DEFERRED_IMPORTS) == []
    deferred = [(m, imp.imported) for m in _LIBRARY.paths for imp in _LIBRARY.imports(m) if imp.in_function]
    assert stale(DEFERRED_IMPORTS, deferred) == []


def test_requests_is_imported_only_where_it_is_used() -> None:
    """``requests`` is imported only by modules that call it or name its types."""
    assert unused_requests(_LIBRARY) == []


def _library_sources() -> Iterable[Tuple[Path, str]]:
    for path in _LIBRARY.paths.values():
        yield path, path.read_text(encoding="utf-8")


@pytest.mark.parametrize("what", sorted(ONE_DEFINITION))
def test_small_shared_definitions_are_written_once(what: str) -> None:
    """The Basic auth header, the User-Agent, the 32 KB / 500 KB limits, the loopback check and the
    loss-reason names are each written once in analytics/ (the collector included) and customerio/;
    the other modules import them."""
    pattern = re.compile(ONE_DEFINITION[what])
    places = [f"{path.relative_to(ROOT)}:{source.count(chr(10), 0, m.start()) + 1}"
              for path, source in _library_sources() for m in pattern.finditer(source)]
    assert len(places) == 1, places


def test_only_the_tools_import_the_collector() -> None:
    """The engine, the API clients and customerio never import the collector (not inside a
    function, not under TYPE_CHECKING either); only the tools (cli, demo, __main__) do."""
    assert collector_importers(_LIBRARY) == []


def test_the_collector_and_the_tools_do_not_reach_into_private_members() -> None:
    """No collector module reads or writes another object's private members (``obj._name``
    with ``obj`` not self or cls), and no tool reaches into the collector's."""
    assert collector_reaches(_LIBRARY) == []


def test_no_other_private_reach_in_the_library() -> None:
    """Outside the collector, a reach into another object's private members is one of the few on
    PRIVATE_REACHES, with its reason; a new one fails."""
    assert other_reaches(_LIBRARY, PRIVATE_REACHES) == []
    assert not any(within(m, COLLECTOR) for m, _ in PRIVATE_REACHES)
    assert stale(PRIVATE_REACHES, [(r.module, r.text) for r in _LIBRARY.private_reaches()]) == []


# -- each check fails on a package that breaks its rule ------------------------------------------


def _package(root: Path, files: Mapping[str, str]) -> Library:
    directory = root / "pkg"
    for name, source in {"__init__.py": "", **files}.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return Library({"pkg": directory})


def test_a_cycle_through_a_deferred_import_is_found(tmp_path: Path) -> None:
    """Two modules that import each other, one of them inside a function, make a cycle."""
    lib = _package(tmp_path, {"a.py": "from .b import f\n", "b.py": "def f():\n    from . import a\n    return a\n"})
    assert lib.cycles() == [["pkg.a", "pkg.b"]]
    assert import_cycles(lib) == [f"pkg.a ({lib.where('pkg.a', 1)}) -> pkg.b ({lib.where('pkg.b', 2)}) -> pkg.a"
                                  "  [2 modules in the cycle]"]


def test_a_cycle_through_type_checking_or_a_parent_package_is_found(tmp_path: Path) -> None:
    """An import under TYPE_CHECKING, and the package __init__ an import runs, close cycles too."""
    lib = _package(tmp_path, {
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "b.py": "from .a import x\n",
        # importing pkg.sub.c runs pkg/sub/__init__.py, which imports pkg.d back
        "sub/__init__.py": "from ..d import y\n", "sub/c.py": "", "d.py": "from .sub.c import z\n",
    })
    assert lib.cycles() == [["pkg.a", "pkg.b"], ["pkg.d", "pkg.sub"]]
    assert lib.imports("pkg.a")[-1].type_checking


def test_a_cycle_through_an_alias_is_found(tmp_path: Path) -> None:
    """``wrap.real.X`` is ``real.X``: an import under either name is one edge of one graph."""
    for name, source in {"real/__init__.py": "", "real/a.py": "from wrap import mod\n",
                         "real/b.py": "from wrap import real\n",
                         "wrap/__init__.py": "", "wrap/mod.py": "from .real.a import f\n"}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(source)
    lib = Library({"real": tmp_path / "real", "wrap": tmp_path / "wrap"}, {"wrap.real": "real"})
    assert lib.cycles() == [["real.a", "wrap.mod"]]
    assert [imp.imported for imp in lib.imports("real.b")] == ["real"]


def test_the_cycle_finder_returns_each_strongly_connected_component() -> None:
    """Tarjan's algorithm: every cycle, as the set of modules in it."""
    from ..shape import cycles

    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_a_long_function_and_a_long_class_are_found(tmp_path: Path) -> None:
    """A function of 82 lines (its decorator counted) and a class of 493 are over the limits."""
    body = "    x = 1\n" * MAX_FUNCTION_LINES
    methods = "".join(f"    def m{i}(self):\n" + "        x = 1\n" * 40 for i in range(12))
    lib = _package(tmp_path, {"long.py": f"@staticmethod\ndef f():\n{body}\n\nclass C:\n{methods}"})
    assert [line.split(" ", 1)[1] for line in long_definitions(lib, "function")] == \
        [f"f: {MAX_FUNCTION_LINES + 2} lines"]
    assert [line.split(" ", 1)[1] for line in long_definitions(lib, "class")] == ["C: 493 lines"]


def test_a_hidden_import_is_found(tmp_path: Path) -> None:
    """An import inside a function that is not on the allowlist is reported."""
    lib = _package(tmp_path, {"a.py": "import os\n\ndef f():\n    import json\n    from . import b\n", "b.py": ""})
    assert hidden_imports(lib, {("pkg.a", "json"): "allowed"}) == [f"{lib.where('pkg.a', 5)} imports pkg.b"]


def test_a_private_reach_is_found(tmp_path: Path) -> None:
    """A reach into another object's private member is reported (self, cls, super() and dunders
    aside), and so is an import of the collector by a module that is not a tool."""
    lib = _package(tmp_path, {
        "collector/__init__.py": "",
        "collector/server.py": "def f(other):\n    return other._x + self._y + cls._z + len(other.__dict__)\n",
        "cli.py": "def g(server):\n    return server._collector + server._other\n",
        "lib.py": "def h(o):\n    super()._p\n    return o._q\n",
        "tool.py": "from .collector import server\n",
        "engine.py": "def e():\n    from .collector.server import f\n",
    })
    assert [r.split(" ")[1] for r in collector_reaches(lib, "pkg.collector", ["pkg.cli"])] == \
        ["other._x", "server._collector"]
    assert [r.split(" ")[1] for r in other_reaches(lib, {("pkg.cli", "server._other"): "allowed"})] == \
        ["server._collector", "other._x", "o._q"]
    importers = collector_importers(lib, "pkg.collector", ["pkg.tool"])
    assert [r.split(" ")[2] for r in importers] == ["pkg.collector.server"]


def test_an_unused_requests_import_is_found(tmp_path: Path) -> None:
    """An import of requests whose name is never used (not even in a quoted annotation) is reported."""
    lib = _package(tmp_path, {
        "unused.py": "import requests\n",
        "used.py": "import requests.utils\nrequests.utils.x()\n",
        "annotated.py": "import requests\ndef f() -> 'requests.Session': ...\n",
        "named.py": "from requests import Session as S\nS()\n",
        "unnamed.py": "from requests import Session\n",
    })
    assert sorted(unused_requests(lib)) == ["pkg.unnamed", "pkg.unused"]


def test_a_stale_allowlist_entry_is_found() -> None:
    """An allowlist entry that matches nothing any more is reported (so the lists stay true)."""
    assert stale({("a", "x"): "", ("b", "y"): ""}, [("a", "x")]) == [("b", "y")]


def _report(lib: Optional[Library] = None) -> None:
    lib = lib or library()
    defs = sorted(lib.definitions(), key=lambda d: -d.lines)
    print("modules:", len(lib.paths))
    print("import cycles:", import_cycles(lib) or "none")
    for kind, plural in (("function", "functions"), ("class", "classes")):
        longest = [f"{d.qualname} ({lib.where(d.module, d.line)}) {d.lines}" for d in defs if d.kind == kind][:5]
        print(f"longest {plural}:", ", ".join(longest))
    print("imports inside functions:")
    for m in lib.paths:
        for imp in lib.imports(m):
            if imp.in_function:
                print(f"  {lib.where(m, imp.line)} {imp.imported}")
    print("private reaches:")
    for r in lib.private_reaches():
        print(f"  {lib.where(r.module, r.line)} {r.text}")


if __name__ == "__main__":
    _report()

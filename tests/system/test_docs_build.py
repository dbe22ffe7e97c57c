"""The documentation site builds offline with no warning, its API reference covers every public
name of ``analytics`` and ``customerio``, and the architecture page's module map names every module
file of the two packages and no module that does not exist."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Set

import pytest

import analytics
import customerio

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The site, built once for this module: sphinx-build -W --keep-going -b html, in a child
    process (autodoc imports the package there, not in the test process), fresh (-E)."""
    import sphinx  # noqa: F401  (in the test extra: a missing Sphinx fails here, never skips)
    out = tmp_path_factory.mktemp("html")
    doctrees = tmp_path_factory.mktemp("doctrees")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         "-d", str(doctrees), str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout}\n{done.stderr}"
    assert "WARNING" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    yield out


def _inventory(built: Path) -> Dict[str, Set[str]]:
    """The objects.inv of the build: {object type: {names}}."""
    from sphinx.util.inventory import InventoryFile

    with open(built / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", os.path.join)
    data = getattr(inv, "data", inv)  # a dict of dicts; an object holding it in later Sphinx versions
    return {kind: set(entries) for kind, entries in data.items()}


def test_the_site_builds_without_a_warning(built: Path) -> None:
    """The build (in the fixture) ended without warnings; every page of docs/ is in the site."""
    pages = sorted(p.relative_to(DOCS).with_suffix(".html").as_posix()
                   for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
    missing = [p for p in pages if not (built / p).is_file()]
    assert pages and missing == []


def test_the_build_needs_no_network() -> None:
    """No extension that fetches (intersphinx) is configured, and no inventory to fetch."""
    import runpy

    conf = runpy.run_path(str(DOCS / "conf.py"))
    assert all(ext.startswith("sphinx.ext.") for ext in conf["extensions"])
    assert "sphinx.ext.intersphinx" not in conf["extensions"] and not conf.get("intersphinx_mapping")


@pytest.mark.parametrize("package", [analytics, customerio], ids=["analytics", "customerio"])
def test_the_api_reference_covers_every_public_name(built: Path, package) -> None:
    """Each name of the package's __all__ is documented under that package's name."""
    documented = set().union(*_inventory(built).values())
    missing = [name for name in package.__all__ if f"{package.__name__}.{name}" not in documented]
    assert missing == []


#: Module paths as the architecture page writes them: analytics.engine.worker, or a path in the
#: module map (analytics/engine/worker.py, queues/, ...).
_DOTTED = re.compile(r"\b((?:analytics|customerio)(?:\.[a-z_][a-z0-9_]*)+)")
#: A row of the module map: its first cell, a module file or a package directory.
_ROW = re.compile(r"^   \* - ``((?:analytics|customerio)/[\w/]*?(?:\.py|/))``$", re.M)
#: A file named in a package row's text (``http.py``, ``__init__.py``).
_FILE = re.compile(r"(?<![\w/.])(\w+\.py)\b")


def _architecture() -> str:
    return (DOCS / "architecture.rst").read_text(encoding="utf-8")


def _module_map(text: str) -> Dict[str, str]:
    """The module map's rows: {first cell: the row's text after it}, for every list-table row whose
    first cell is a module file (``analytics/client.py``) or a package (``analytics/collector/``)."""
    rows = list(_ROW.finditer(text))
    found: Dict[str, str] = {}
    ends = [row.start() for row in rows[1:]] + [len(text)]
    for row, end in zip(rows, ends):
        body = text[row.end():end]
        body = re.split(r"\n(?!\n|     )", body, maxsplit=1)[0]  # the row ends where its indentation does
        found[row.group(1)] = body
    return found


def test_the_architecture_page_names_modules_that_exist() -> None:
    """Every ``analytics.x`` / ``customerio.x`` module named on the architecture page imports
    (a name ending in an attribute, analytics.Client.track, needs its module to import and the
    attribute to exist), every file or package of its module map exists, and every file a
    package's row names (``http.py`` in the ``analytics/collector/`` row) is in that package."""
    text = _architecture()
    names = sorted(set(_DOTTED.findall(text)))
    assert len(names) >= 15
    wrong = []
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            module = ".".join(parts[:cut])
            try:
                if importlib.util.find_spec(module) is None:
                    continue
            except (ImportError, AttributeError):  # a name inside a module, not a submodule
                continue
            obj = importlib.import_module(module)
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                wrong.append(name)
            break
        else:
            wrong.append(name)
    assert wrong == []
    rows = _module_map(text)
    assert len(rows) >= 15
    assert [f for f in rows if not (ROOT / f).exists()] == []
    named_in_packages = [f"{package}{name}" for package, body in rows.items() if package.endswith("/")
                         for name in _FILE.findall(body)]
    assert [f for f in named_in_packages if not (ROOT / f).is_file()] == []


def _module_files() -> Set[str]:
    """Every module file of analytics/ and customerio/, as paths from the repository's root."""
    return {p.relative_to(ROOT).as_posix() for package in ("analytics", "customerio")
            for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}


def test_the_architecture_page_names_every_module_file() -> None:
    """Every ``.py`` file of analytics/ and customerio/ is in the architecture page's module map, so
    the page cannot fall behind the code: a module added, moved or split fails here, named.

    A file is named by a row of its own (``analytics/engine/worker.py``) or in the text of its
    package's row (``http.py`` in the ``analytics/collector/`` row).  ``__init__.py`` and
    ``__main__.py`` files count like any other: several hold code a reader looks for (the module
    facade, ``open_queue``, the ``Destination`` base class, the collector's command line).  The
    ``.pyi`` stubs under customerio/analytics/ are left out: each repeats the analytics module of
    the same name (they type ``customerio.analytics.<module>``), which one row describes.
    """
    files = _module_files()
    assert "analytics/client.py" in files and "customerio/track.py" in files
    named: Set[str] = set()
    for key, body in _module_map(_architecture()).items():
        if key.endswith(".py"):
            named.add(key)
        else:
            named.update(f"{key}{name}" for name in _FILE.findall(body))
    missing = sorted(files - named)
    assert not missing, "module files not in docs/architecture.rst's module map:\n  " + "\n  ".join(missing)

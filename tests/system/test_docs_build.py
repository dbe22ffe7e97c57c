"""The documentation site builds offline with no warning, its API reference covers every public
name of ``analytics`` and ``customerio``, and the architecture page names modules that exist."""

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


def test_the_architecture_page_names_modules_that_exist() -> None:
    """Every ``analytics.x`` / ``customerio.x`` module named on the architecture page imports
    (a name ending in an attribute, analytics.Client.track, needs its module to import and the
    attribute to exist), and every file of its module map exists."""
    text = (DOCS / "architecture.rst").read_text(encoding="utf-8")
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
    files = re.findall(r"^   \* - ``((?:analytics|customerio)/[\w/]*?(?:\.py|/))``$", text, re.M)
    assert len(files) >= 15
    assert [f for f in files if not (ROOT / f).exists()] == []

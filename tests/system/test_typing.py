"""Typing (issue 16): ``mypy --strict`` passes on the package, and on a user's module using the
documented API (tests/typecheck/usage.py) with the editable install ``make`` sets up and with a
normal install of a wheel; the mistakes in tests/typecheck/usage_errors.py are reported.  These
tests are part of ``make test``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import analytics
from analytics import errors

from ..conftest import ROOT, wheel_venv

TYPING = Path(__file__).parent.parent / "typecheck"
sys.path.insert(0, str(TYPING))
import make_stubs  # noqa: E402

pytest.importorskip("mypy", reason="mypy is in the test extra")


def _mypy(args: List[str], cwd: str, python: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    extra = [] if python is None else ["--python-executable", python]
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", *extra, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """The user's modules in a directory of their own (nothing of this checkout beside them)."""
    for name in ("usage.py", "usage_errors.py"):
        shutil.copy(TYPING / name, tmp_path / name)
    return tmp_path


def test_the_package_passes_mypy_strict() -> None:
    """mypy --strict finds nothing in analytics and customerio (the stubs of customerio.analytics included)."""
    done = _mypy(["analytics", "customerio"], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_a_users_module_passes_mypy_strict_with_the_editable_install(user_dir: Path) -> None:
    """usage.py (settings, the six calls, errors, Client from customerio.analytics.client, an
    on_error(error: DeliveryError, items) handler, stats() as a TypedDict) checks clean against the
    editable install this virtualenv has."""
    done = _mypy(["usage.py"], cwd=str(user_dir))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_users_module_passes_mypy_strict_with_a_wheel_install(cdp_relay_wheel: Path, user_dir: Path,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same against a virtualenv holding only the installed wheel (py.typed and the stubs ship)."""
    with zipfile.ZipFile(cdp_relay_wheel) as wheel:
        names = set(wheel.namelist())
    assert {"analytics/py.typed", "customerio/py.typed", "customerio/analytics/client.pyi",
            "customerio/analytics/destinations/trackv2.pyi"} <= names
    python = wheel_venv(cdp_relay_wheel, tmp_path_factory.mktemp("typing-venv"), with_dependencies=False)
    done = _mypy(["usage.py"], cwd=str(user_dir), python=python)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = _mypy(["usage_errors.py"], cwd=str(user_dir), python=python)
    assert bad.returncode == 1 and "contxt" in bad.stdout, bad.stdout + bad.stderr


def _expected_errors(path: Path) -> Dict[int, str]:
    marks = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        found = re.search(r"# error: ([\w-]+)$", line)
        if found:
            marks[number] = found.group(1)
    return marks


def test_mistakes_in_a_users_module_are_reported(user_dir: Path) -> None:
    """``analytics.track('u', 'e', {}, contxt={})`` and the other marked lines of usage_errors.py are
    type errors with the marked codes; no other line is."""
    done = _mypy(["usage_errors.py"], cwd=str(user_dir))
    assert done.returncode == 1, done.stdout + done.stderr
    reported: Dict[int, List[str]] = {}
    for found in re.finditer(r"^usage_errors\.py:(\d+): error: .*\[([\w-]+)\]$", done.stdout, re.M):
        reported.setdefault(int(found.group(1)), []).append(found.group(2))
    expected = _expected_errors(TYPING / "usage_errors.py")
    assert len(expected) >= 8 and 15 in expected
    assert {line: codes for line, codes in reported.items()} == {line: [code] for line, code in expected.items()}


def test_the_stubs_of_customerio_analytics_cover_every_module() -> None:
    """customerio/analytics/*.pyi has one stub per module of the analytics package, as
    tests/typecheck/make_stubs.py writes them (run it after adding a module)."""
    base = Path(ROOT) / "customerio" / "analytics"
    on_disk = {str(p.relative_to(base)): p.read_text() for p in base.rglob("*.pyi")}
    assert on_disk == make_stubs.expected()
    assert set(make_stubs.modules()) >= {"", "client", "destinations.trackv2", "engine.worker", "collector.server"}


def test_every_exception_is_exported_by_name() -> None:
    """analytics.__all__ names each exception (a type checker cannot read a computed __all__)."""
    assert set(errors.__all__) <= set(analytics.__all__)
    assert "StatsSnapshot" in analytics.__all__


@pytest.mark.parametrize("name", ["identify", "track", "page", "screen", "group", "alias"])
def test_the_module_functions_have_the_client_methods_signatures(name: str) -> None:
    """analytics.track and the others take exactly Client.track's parameters, annotations and
    defaults (not ``*args, **kwargs``), so a type checker sees a misspelt keyword."""
    import inspect

    function = inspect.signature(getattr(analytics, name))
    method = inspect.signature(getattr(analytics.Client, name))
    expected = list(method.parameters.values())[1:]  # without self
    assert list(function.parameters.values()) == expected
    assert function.return_annotation == method.return_annotation

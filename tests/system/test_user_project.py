"""A user's own project around the SDK (issue 16): their top-level ``analytics`` package (a common
Django app name) first on ``sys.path`` must not break ``from customerio import analytics``.

Each test lays out a real project in a temporary directory (their ``analytics`` package beside their
script, so it comes first on ``sys.path``) and runs the script in a fresh interpreter against three
installs of this checkout: the editable one ``make`` sets up (this virtualenv), an editable install
in setuptools' default (import hook) mode, and a normal install of a wheel built from the checkout,
each of the last two in a virtualenv of its own.  The script sends a message to a collector on
127.0.0.1 through the SDK it got from ``customerio``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Tuple

import pytest

from analytics.collector import Collector

from ..conftest import ROOT, WRITE_KEY, editable_venv, wheel_venv

#: The user's script: imports in the order given, checks both names, sends one message.
APP = textwrap.dedent('''
    import json, sys
    order, url, key = sys.argv[1:4]
    if order == "theirs-first":
        import analytics as mine
        from customerio import analytics as sdk
    else:
        from customerio import analytics as sdk
        import analytics as mine
    import analytics.models            # their submodule still imports
    from customerio.analytics.client import Client
    from customerio.analytics.destinations.trackv2 import TrackV2
    from customerio import CustomerIO  # the Track API client imports too
    import customerio.app, customerio.aio, customerio.retry

    ok, msg = Client("k", send=False, destination=TrackV2("site", "key")).track("u1", "Viewed")
    sdk.write_key, sdk.host = key, url
    sent, returned = sdk.track("u1", "From The Project", {"n": 1})
    print(json.dumps({
        "mine": getattr(mine, "MINE", False), "models": analytics.models.X,
        "sdk": sdk.__name__, "sdk_file": sdk.__file__, "has_track": callable(getattr(sdk, "track", None)),
        "same_client": sdk.Client is Client, "trackv2_ok": ok, "sent": sent,
        "anonymousId": returned["anonymousId"], "pending": sdk.flush(timeout=10),
        "sdk_modules_under_their_name": sorted(m for m in sys.modules
                                              if m.startswith("analytics.") and m != "analytics.models"),
    }))
''')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: their own ``analytics`` package and the script, side by side."""
    (tmp_path / "analytics").mkdir()
    (tmp_path / "analytics" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "analytics" / "models.py").write_text("X = 1\n")
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def _run(python: str, project: Path, order: str, url: str) -> Dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([python, "app.py", order, url, WRITE_KEY], cwd=project, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _check(result: Dict[str, object], install_dir: str) -> None:
    assert result["mine"] is True and result["models"] == 1          # import analytics: theirs
    assert result["sdk"] == "customerio.analytics" and result["has_track"]   # customerio's: this SDK
    assert os.path.realpath(str(result["sdk_file"])).startswith(os.path.realpath(install_dir))
    assert result["same_client"] and result["trackv2_ok"] and result["sent"]
    assert result["anonymousId"] is None and result["pending"] == 0
    assert result["sdk_modules_under_their_name"] == []


@pytest.fixture(scope="module")
def wheel_python(cdp_relay_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A virtualenv with a normal install of the wheel, dependencies from this virtualenv."""
    return wheel_venv(cdp_relay_wheel, tmp_path_factory.mktemp("wheel-venv"), with_dependencies=True)


@pytest.mark.parametrize("order", ["sdk-first", "theirs-first"])
def test_their_analytics_package_with_the_editable_install(project: Path, order: str) -> None:
    """The editable install `make` sets up: `import analytics` gives theirs, `from customerio import
    analytics` gives this SDK (loaded as customerio.analytics), which delivers."""
    with Collector(write_keys={WRITE_KEY}) as collector:
        result = _run(sys.executable, project, order, collector.url)
        assert [m["event"] for m in collector.messages] == ["From The Project"]
    _check(result, ROOT)


@pytest.fixture(scope="module")
def hook_editable(tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, str]:
    """A virtualenv with an editable install in setuptools' default mode (an import hook placed
    after the path search): its python and the source directory it points at."""
    where = tmp_path_factory.mktemp("editable-hook")
    return editable_venv(where), str(where / "src")


@pytest.mark.parametrize("order", ["sdk-first", "theirs-first"])
def test_their_analytics_package_with_a_default_mode_editable_install(hook_editable: Tuple[str, str],
                                                                      project: Path, order: str) -> None:
    """An editable install made the usual way (pip install -e, an import hook): it used to return
    the user's module silently for customerio.analytics."""
    python, source = hook_editable
    with Collector(write_keys={WRITE_KEY}) as collector:
        result = _run(python, project, order, collector.url)
        assert [m["event"] for m in collector.messages] == ["From The Project"]
    _check(result, source)


@pytest.mark.parametrize("order", ["sdk-first", "theirs-first"])
def test_their_analytics_package_with_a_wheel_install(wheel_python: str, project: Path, order: str) -> None:
    """A normal install (a wheel in site-packages): the same, where it used to fail with
    ModuleNotFoundError: No module named 'analytics.client'."""
    site = os.path.dirname(os.path.dirname(wheel_python))  # the virtualenv
    with Collector(write_keys={WRITE_KEY}) as collector:
        result = _run(wheel_python, project, order, collector.url)
        assert [m["event"] for m in collector.messages] == ["From The Project"]
    _check(result, site)


def test_without_their_package_both_names_are_one_module(wheel_python: str, tmp_path: Path) -> None:
    """With no analytics package of the user's, `import analytics` and `from customerio import
    analytics` are the same module object (one set of settings, one shared client)."""
    code = ("import analytics, customerio.analytics.client as c; from customerio import analytics as a; "
            "print(a is analytics, c is analytics.client, analytics.__name__)")
    for python in (sys.executable, wheel_python):
        done = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.stdout.split() == ["True", "True", "analytics"], done.stderr

"""The public surface: exported names, signatures matching the peers, and the exception tree.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/unit/test_public_api.py``."""

from __future__ import annotations
import os

import pytest

from ..conftest import WRITE_KEY, run_python


def test_a_destination_imported_through_customerio_is_accepted(tmp_path):
    """In a fresh interpreter, TrackV2 imported as customerio.analytics.destinations.trackv2 is a
    Destination the Client takes (no second copy of the module is loaded)."""
    code = (
        "from customerio.analytics.destinations.trackv2 import TrackV2\n"
        "from customerio.analytics import Client\n"
        "import sys\n"
        "client = Client(destination=TrackV2('site', 'key', host='http://127.0.0.1:9'), send=False)\n"
        "assert sys.modules['customerio.analytics.destinations'] is sys.modules['analytics.destinations']\n"
        "print('ok')\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_importing_the_stats_module_keeps_the_facade_function(tmp_path):
    """analytics.stats stays the facade's function after customerio.analytics.stats is imported."""
    code = (
        "import importlib, analytics\n"
        "module = importlib.import_module('customerio.analytics.stats')\n"
        "assert callable(analytics.stats) and analytics.stats()['accepted'] == 0\n"
        "assert module.Stats is __import__('sys').modules['analytics.stats'].Stats\n"
        "print('ok')\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


_HEAVY_MODULES = r'''
import sys
heavy = ["requests"] + (["dateutil"] if sys.version_info >= (3, 11) else [])

def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in heavy)

import analytics
print("import:", loaded())
client = analytics.Client("{key}", host="{url}")
ok, _ = client.track("user-1", "Signed Up", {{"plan": "pro"}}, timestamp="2026-01-02T03:04:05Z")
assert ok and client.flush(timeout=10) == 0 and client.stats()["delivered"] == 1, client.stats()
client.shutdown()
print("track:", loaded())
'''


def test_import_and_a_track_load_neither_requests_nor_dateutil(collector, tmp_path):
    """Data Pipelines goes through http.client: ``requests`` is loaded only for a proxy (and by the
    customerio API clients), python-dateutil only before Python 3.11."""
    env_proxies = [name for name in os.environ if name.lower() in ("http_proxy", "https_proxy", "all_proxy")]
    if env_proxies:
        pytest.skip(f"a proxy is configured in the environment ({env_proxies}): requests decides NO_PROXY")
    done = run_python(_HEAVY_MODULES.format(key=WRITE_KEY, url=collector.url), cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["import: []", "track: []"], done.stdout
    assert len(collector.messages) == 1

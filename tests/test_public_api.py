"""The public surface: exported names, signatures matching the peers, and the exception tree."""

from __future__ import annotations

import inspect
import os

import pytest

import analytics
from analytics import errors

from .conftest import WRITE_KEY, run_python


def test_every_name_in_all_exists():
    """Each name in analytics.__all__ is defined."""
    for name in analytics.__all__:
        assert hasattr(analytics, name), name


def test_client_positional_order_matches_customerio_cdp_analytics():
    """Client's positional parameters are the peer library's, in the same order, with the same defaults."""
    params = list(inspect.signature(analytics.Client).parameters.values())
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [
        ("write_key", None),
        ("host", None),
        ("debug", False),
        ("max_queue_size", 10000),
        ("send", True),
        ("on_error", None),
        ("gzip", False),
        ("max_retries", 10),
        ("sync_mode", False),
        ("timeout", 15),
        ("proxies", None),
        ("thread", 1),
        ("upload_size", 100),
        ("upload_interval", 0.5),
    ]
    assert all(p.kind is p.KEYWORD_ONLY for p in params[len(positional):])


@pytest.mark.parametrize(
    "method, names",
    [
        ("identify", ["user_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"]),
        ("track", ["user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations", "message_id"]),
        ("alias", ["previous_id", "user_id", "context", "timestamp", "integrations", "message_id"]),
        ("group", ["user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"]),
        ("page", ["user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id", "integrations", "message_id"]),
        ("screen", ["user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id", "integrations", "message_id"]),
    ],
)
def test_call_signatures_match_the_peers(method, names):
    """Each call takes the peers' positional parameters in the peers' order."""
    params = inspect.signature(getattr(analytics.Client, method)).parameters.values()
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][1:] == names


def test_module_functions_and_settings_exist():
    """The facade has the peers' functions and every documented setting."""
    for fn in ("identify", "track", "page", "screen", "group", "alias", "flush", "join", "shutdown", "stats"):
        assert callable(getattr(analytics, fn))
    for setting in analytics._SETTINGS + ("endpoint", "thread", "default_client"):
        assert hasattr(analytics, setting), setting


def test_exception_tree_has_one_root():
    """Every exception derives from AnalyticsError; only the call-site errors are also AssertionErrors."""
    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, errors.AnalyticsError)
        assert issubclass(cls, AssertionError) == issubclass(cls, (errors.ConfigurationError,
                                                                   errors.InvalidMessageError))
    assert issubclass(errors.InvalidMessageError, ValueError)
    assert issubclass(errors.UnserializableValueError, TypeError)
    assert issubclass(errors.APIError, errors.DeliveryError)


def test_api_error_keeps_the_peers_attributes():
    """APIError has status, code and message like the peers' APIError, plus body and retry_after."""
    e = errors.APIError(400, "bad_request", "nope", body='{"x":1}', retry_after=2.0)
    assert (e.status, e.code, e.message, e.body, e.retry_after) == (400, "bad_request", "nope", '{"x":1}', 2.0)
    assert "400" in str(e) and "nope" in str(e)
    assert not e.retryable and errors.APIError(503).retryable


def test_package_is_typed():
    """Both packages ship a py.typed marker."""
    import os

    import customerio

    for pkg in (analytics, customerio):
        assert os.path.exists(os.path.join(os.path.dirname(pkg.__file__), "py.typed"))


def _submodules() -> list:
    import pkgutil

    return sorted(info.name[len("analytics."):] for info in pkgutil.walk_packages(analytics.__path__, "analytics."))


@pytest.mark.parametrize("name", _submodules())
def test_every_submodule_is_the_same_object_under_customerio_analytics(name):
    """customerio.analytics.<module> is analytics.<module> itself, for every module of the package (walked)."""
    import importlib

    try:
        real = importlib.import_module(f"analytics.{name}")
    except ImportError as exc:  # an optional extra that is not installed
        pytest.skip(f"analytics.{name} needs {exc.name}")
    assert importlib.import_module(f"customerio.analytics.{name}") is real


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

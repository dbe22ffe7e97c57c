"""The public surface: exported names, signatures matching the peers, and the exception tree."""

from __future__ import annotations

import inspect
import os

import pytest

import analytics
from analytics import errors


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

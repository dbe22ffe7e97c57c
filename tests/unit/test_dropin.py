"""The official SDK's public behaviours that users' own code and tests rely on (issue 16).

Written from the description of customerio-cdp-analytics' (and Segment's analytics-python's)
behaviour, not from their suites: the module functions create the shared client, the client's
settings as attributes, the keys of the returned message, the errors raised, and the read-only
``queue`` and ``consumers`` views.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import pytest

import analytics
from analytics import Client, ConfigurationError, InvalidMessageError, MessageTooLargeError

from ..conftest import OFFLINE_HOST, WRITE_KEY


_CALLS: Dict[str, Callable[[], Any]] = {
    "flush": lambda: analytics.flush(),
    "join": lambda: analytics.join(),
    "shutdown": lambda: analytics.shutdown(),
    "identify": lambda: analytics.identify("u1", {"plan": "pro"}),
    "track": lambda: analytics.track("u1", "Signed Up"),
    "page": lambda: analytics.page("u1", "Docs", "Intro"),
    "screen": lambda: analytics.screen("u1", "App", "Home"),
    "group": lambda: analytics.group("u1", "g1"),
    "alias": lambda: analytics.alias("anon-1", "u1"),
}


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_each_module_function_creates_the_shared_client(name: str) -> None:
    """flush(), join(), shutdown() and the six calls each create analytics.default_client when
    there is none, from the module settings."""
    analytics.write_key = WRITE_KEY
    analytics.host = OFFLINE_HOST
    analytics.send = False
    analytics.timeout = 2.5
    assert analytics.default_client is None
    _CALLS[name]()
    client = analytics.default_client
    assert isinstance(client, Client)
    assert (client.write_key, client.host, client.send, client.timeout) == (WRITE_KEY, OFFLINE_HOST, False, 2.5)


def test_setting_default_client_to_none_starts_over_with_the_current_settings() -> None:
    """analytics.default_client = None: the next flush() makes a new client with the settings of now."""
    analytics.write_key = WRITE_KEY
    analytics.send = False
    analytics.debug = True
    analytics.flush()
    first = analytics.default_client
    assert first is not None and first.debug is True
    analytics.default_client = None
    analytics.debug = False
    analytics.flush()
    second = analytics.default_client
    assert second is not None and second is not first and second.debug is False


def test_a_client_assigned_to_default_client_is_used_by_the_module_functions() -> None:
    """A Client of the user's own put in analytics.default_client receives the module calls."""
    mine = Client(WRITE_KEY, send=False)
    analytics.default_client = mine
    ok, msg = analytics.track("u1", "Mine")
    assert ok and msg["event"] == "Mine" and analytics.default_client is mine


def test_shutdown_keeps_the_client_and_the_next_call_starts_a_new_one() -> None:
    """After analytics.shutdown() default_client is the shut-down client; a later call replaces it."""
    analytics.write_key = WRITE_KEY
    analytics.send = False
    analytics.track("u1", "Before")
    first = analytics.default_client
    assert analytics.shutdown() == 0
    assert analytics.default_client is first
    assert analytics.shutdown() == 0  # again: the same client, idempotent
    assert analytics.default_client is first
    assert analytics.track("u1", "After")[0] is True
    assert analytics.default_client is not first


def test_the_client_exposes_the_official_settings_as_attributes() -> None:
    """write_key, host, debug, gzip, sync_mode, timeout, send, upload_size, upload_interval,
    max_retries, on_error and proxies read back as given."""

    def on_error(error: Exception, items: list) -> None:
        pass

    given: Dict[str, Any] = dict(
        write_key=WRITE_KEY, host="http://127.0.0.1:9", debug=True, gzip=True, sync_mode=True, timeout=3.5,
        send=False, upload_size=42, upload_interval=1.5, max_retries=3, on_error=on_error,
        proxies={"https": "http://127.0.0.1:3128"},
    )
    client = Client(**given)
    try:
        assert {name: getattr(client, name) for name in given} == given
    finally:
        client.shutdown()
    defaults = Client(WRITE_KEY, send=False)
    assert (defaults.debug, defaults.gzip, defaults.sync_mode, defaults.timeout, defaults.send,
            defaults.upload_size, defaults.upload_interval, defaults.max_retries, defaults.on_error,
            defaults.proxies) == (False, False, False, 15, False, 100, 0.5, 10, None, None)
    assert defaults.host == analytics.DEFAULT_HOST


def test_module_settings_read_back_on_the_shared_client() -> None:
    """A module setting assigned before flush() is the shared client's attribute afterwards."""
    analytics.write_key = WRITE_KEY
    analytics.send = False
    analytics.gzip = True
    analytics.max_retries = 42
    analytics.upload_interval = 2.0
    analytics.flush()
    client = analytics.default_client
    assert client is not None and (client.gzip, client.max_retries, client.upload_interval) == (True, 42, 2.0)


def test_a_missing_write_key_is_caught_as_an_assertion_error() -> None:
    """Code written for the official SDK (``except AssertionError``) catches a missing write key,
    from Client() and from the module's first call; it is this library's ConfigurationError."""
    with pytest.raises(AssertionError) as info:
        Client()
    assert isinstance(info.value, ConfigurationError) and isinstance(info.value, ValueError)
    assert analytics.write_key is None
    for call in (lambda: analytics.track("u1", "E"), analytics.flush):
        with pytest.raises(AssertionError) as info:
            call()
        assert isinstance(info.value, ConfigurationError) and "write_key" in str(info.value)
    assert analytics.default_client is None


@pytest.mark.parametrize("call", [
    lambda c: c.track(),                                   # no user id
    lambda c: c.track("u1"),                               # no event
    lambda c: c.track("u1", "E", properties=["not", "a", "dict"]),
    lambda c: c.identify("u1", traits="plan=pro"),
    lambda c: c.group("u1"),                               # no group id
    lambda c: c.alias(None, "u1"),                         # no previous id
    lambda c: c.page("u1", name=7),
    lambda c: c.track("u1", "E", timestamp="yesterday"),
    lambda c: c.track("u1", "E", {"x": object()}),        # not JSON
])
def test_invalid_arguments_are_caught_as_assertion_errors(call: Callable[[Client], Any]) -> None:
    """``except AssertionError`` catches bad arguments, as with the official SDK; the error is the
    library's InvalidMessageError (a ValueError too) and nothing is queued."""
    client = Client(WRITE_KEY, send=False)
    with pytest.raises(AssertionError) as info:
        call(client)
    assert isinstance(info.value, InvalidMessageError) and isinstance(info.value, ValueError)
    assert client.stats()["accepted"] == 0


def test_a_message_over_32_kb_is_caught_as_a_runtime_error() -> None:
    """``except RuntimeError`` catches a message over 32 KB, as with the official SDK; it is also a
    MessageTooLargeError and a ValueError."""
    client = Client(WRITE_KEY, send=False)
    with pytest.raises(RuntimeError) as info:
        client.track("u1", "Big", {"blob": "x" * 40_000})
    error = info.value
    assert isinstance(error, MessageTooLargeError) and isinstance(error, ValueError)
    assert error.size > error.limit == 32 * 1024
    assert client.track("u1", "Small", {"blob": "x" * 100})[0] is True


#: The keys of the message the official SDK returns, per call (its builders' dicts, plus the
#: ``userId`` and ``anonymousId`` its enqueue step adds to every message).
_OFFICIAL_KEYS = {
    "identify": {"integrations", "anonymousId", "timestamp", "context", "type", "userId", "traits", "messageId"},
    "track": {"integrations", "anonymousId", "properties", "timestamp", "context", "userId", "type", "event",
              "messageId"},
    "alias": {"integrations", "previousId", "timestamp", "context", "userId", "type", "messageId", "anonymousId"},
    "group": {"integrations", "anonymousId", "timestamp", "context", "userId", "type", "groupId", "traits",
              "messageId"},
    "page": {"integrations", "anonymousId", "properties", "timestamp", "category", "context", "userId", "type",
             "name", "messageId"},
    "screen": {"integrations", "anonymousId", "properties", "timestamp", "category", "context", "userId", "type",
               "name", "messageId"},
}


def test_a_user_id_only_track_returns_anonymous_id_none_and_the_reverse() -> None:
    """``ok, msg = client.track(user_id='u', event='e')`` gives ``msg['anonymousId'] is None``;
    ``track(anonymous_id='a', ...)`` gives ``msg['userId'] is None``."""
    client = Client(WRITE_KEY, send=False)
    ok, msg = client.track(user_id="u", event="e")
    assert ok and msg["userId"] == "u" and msg["anonymousId"] is None
    ok, msg = client.track(anonymous_id="a", event="e")
    assert ok and msg["anonymousId"] == "a" and msg["userId"] is None
    assert msg["integrations"] == {}


@pytest.mark.parametrize("call, args", [
    ("identify", ("u1",)), ("track", ("u1", "E")), ("alias", ("a1", "u1")), ("group", (None, "g1")),
    ("page", ("u1",)), ("screen", (None, "App", "Home", None, None, None, "anon-1")),
])
def test_the_returned_message_has_every_key_of_the_official_sdks(call: str, args: tuple) -> None:
    """Each call's returned dict has at least the keys the official SDK's has, with None (and
    ``integrations`` {}) where no value was given, so ``msg[key]`` never raises KeyError."""
    client = Client(WRITE_KEY, send=False)
    ok, msg = getattr(client, call)(*args)
    assert ok and _OFFICIAL_KEYS[call] <= set(msg), _OFFICIAL_KEYS[call] - set(msg)
    given = {"identify": {"userId"}, "track": {"userId"}, "alias": {"userId"}, "group": set(),
             "page": {"userId"}, "screen": {"anonymousId", "name", "category"}}[call]
    for key in {"userId", "anonymousId", "name", "category"} & _OFFICIAL_KEYS[call] - given:
        assert msg[key] is None, key
    assert msg["integrations"] == {}


def test_sync_mode_has_no_consumers() -> None:
    """In sync_mode the caller's thread delivers: client.consumers is empty, as in the official SDK."""
    client = Client(WRITE_KEY, host=OFFLINE_HOST, sync_mode=True, send=False)
    assert client.consumers == []
    assert client.track("u1", "Direct")[0] is True and client.queue.empty()
    client.sync_mode = False
    assert len(client.consumers) == 1


def test_the_shared_clients_queue_and_consumers_follow_the_module_settings() -> None:
    """analytics.max_queue_size and max_retries show on default_client.queue and .consumers after flush()."""
    analytics.write_key = WRITE_KEY
    analytics.host = OFFLINE_HOST
    analytics.max_queue_size = 1337
    analytics.max_retries = 42
    analytics.flush()
    client = analytics.default_client
    assert client is not None and client.queue.maxsize == 1337 and client.consumers[0].retries == 42
    analytics.default_client = None
    analytics.sync_mode = True
    analytics.flush()
    assert analytics.default_client is not None and analytics.default_client.consumers == []

"""analytics.testing.capture and the analytics_capture pytest fixture, as a user's own tests use them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import analytics
from analytics import Client, InvalidMessageError, MessageTooLargeError
from analytics.testing import capture

from ..conftest import WRITE_KEY, checkout_env


def test_capture_records_the_facades_and_clients_messages_and_sends_nothing(collector):
    """Inside the block every call is built and encoded as usual, recorded, and never reaches the server."""
    analytics.write_key, analytics.host = WRITE_KEY, collector.url
    client = Client(WRITE_KEY, host=collector.url, before_send=lambda m: {**m, "properties": {"shaped": True}})
    try:
        with capture() as captured:
            assert analytics.track("u1", "Signed Up", {"plan": "pro"})[0]
            analytics.identify("u1", {"name": "Ada"})
            assert client.track("u2", "Bought")[0]
            with pytest.raises(InvalidMessageError):
                analytics.track(event="no identity")
            with pytest.raises(MessageTooLargeError):
                analytics.track("u1", "huge", {"blob": "x" * 40_000})
        analytics.track("u3", "After")  # outside: sent for real
        analytics.flush()
        client.flush()
    finally:
        client.shutdown(timeout=5)
    assert captured.events() == ["Signed Up", "Bought"]
    assert [m["type"] for m in captured] == ["track", "identify", "track"]
    (bought,) = captured.find(event="Bought")
    assert bought["userId"] == "u2" and bought["properties"] == {"shaped": True}  # before_send ran
    assert captured.find(type="identify", user_id="u1")[0]["traits"] == {"name": "Ada"}
    assert captured.find(user_id="nobody") == []
    assert captured.messages[0]["context"]["library"]["name"] == "cdp-relay"  # as it would be sent
    assert [m["event"] for m in collector.messages] == ["After"]
    assert analytics.stats()["accepted"] == 1  # captured messages are not counted


def test_captures_nest_and_clear():
    """Each active block records what is sent while it is active; clear() forgets."""
    client = Client(WRITE_KEY, send=False)
    with capture() as outer:
        client.track("u", "one")
        with capture() as inner:
            client.track("u", "two")
        inner.clear()
        client.track("u", "three")
    assert outer.events() == ["one", "two", "three"] and len(inner) == 0


def test_the_fixture_works_in_a_users_own_project(tmp_path):
    """A user's test file asks for analytics_capture: pytest finds it through the entry point, nothing else set up."""
    (tmp_path / "signup.py").write_text(textwrap.dedent(
        """
        from customerio import analytics

        analytics.write_key = "their-key"

        def signup(user):
            analytics.track(user, "Signed Up", {"source": "web"})
        """
    ))
    (tmp_path / "test_signup.py").write_text(textwrap.dedent(
        """
        from signup import signup

        def test_signup_is_tracked(analytics_capture):
            signup("ada")
            (event,) = analytics_capture.find(event="Signed Up")
            assert event["userId"] == "ada" and event["properties"] == {"source": "web"}
        """
    ))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_signup.py")],
        cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

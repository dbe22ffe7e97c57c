"""The background engine delivering to other batch APIs (``Client(destination=...)``),
end to end against the collector's Track API v2 and Bloomreach routes on loopback."""

from __future__ import annotations

import os

import pytest

import analytics
from analytics import APIError, Client, ConfigurationError, RetryPolicy, UnsupportedCallError
from analytics.destinations.bloomreach import Bloomreach
from analytics.destinations.trackv2 import TrackV2

from ..conftest import FAST_RETRY, Errors

TOKEN = "project-token-1"


@pytest.fixture
def br(collector):
    """A Bloomreach destination pointed at the collector (Token auth)."""
    return Bloomreach(TOKEN, base_url=collector.url, api_token="public-token")


@pytest.fixture
def make_dest_client(errors):
    made = []

    def make(destination, **kw) -> Client:
        kw.setdefault("on_error", errors)
        kw.setdefault("retry_policy", RetryPolicy(max_retries=5, max_time=20, **FAST_RETRY))
        client = Client(destination=destination, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=5)


# --- Bloomreach -----------------------------------------------------------------------


def test_bloomreach_gets_commands_in_requests_of_at_most_50(make_dest_client, br, collector, errors):
    """120 calls arrive as 120 commands in requests of at most 50, no write key needed,
    each command's id the message's messageId."""
    client = make_dest_client(br)
    assert client.upload_size == 50  # capped at the API's limit
    sent = [client.track(f"user-{i}", "Purchase", {"i": i})[1] for i in range(120)]
    assert client.flush(timeout=10) == 0
    commands = collector.bloomreach.commands
    assert sorted(c.command_id for c in commands) == sorted(m["messageId"] for m in sent)
    assert all(c.name == "customers/events" and c.auth == "token" for c in commands)
    assert all(c.data["customer_ids"] == {"registered": f"user-{c.data['properties']['i']}"} for c in commands)
    assert sorted(r.commands for r in collector.bloomreach.requests) == [20, 50, 50]
    assert client.stats()["delivered"] == 120 and errors.calls == []


def test_bloomreach_refused_commands_go_to_on_error_and_are_not_retried(make_dest_client, br, collector, errors):
    """A 200 whose command says success:false: exactly that message is reported (reason
    'rejected', the API's text), the others count as delivered, and nothing is sent again."""
    collector.bloomreach.reject_when(lambda cmd: "bad customer" if cmd["data"]["properties"].get("i") in (3, 7) else None)
    client = make_dest_client(br)
    for i in range(10):
        client.track(f"user-{i}", "Purchase", {"i": i})
    assert client.flush(timeout=10) == 0
    failed = errors.items
    assert sorted(item["data"]["properties"]["i"] for item in failed) == [3, 7]
    error = errors.calls[0][0]
    assert isinstance(error, APIError) and error.reason == "rejected" and "bad customer" in str(error)
    stats = client.stats()
    assert stats["delivered"] == 8 and stats["failed"]["rejected"] == 2
    assert len(collector.bloomreach.requests) == 1  # not retried
    assert stats["accepted"] == stats["delivered"] + stats["failed"]["rejected"]


def test_bloomreach_429_is_retried_after_retry_after(make_dest_client, br, collector, errors):
    collector.fail_next(1, status=429, retry_after=1)
    client = make_dest_client(br)
    client.identify("user-1", {"plan": "pro"})
    assert client.flush(timeout=10) == 0
    assert [c.name for c in collector.bloomreach.commands] == ["customers"]
    assert collector.retry_after_violations() == []
    assert client.stats()["retries"] == 1 and errors.calls == []


def test_bloomreach_alias_raises_at_the_call_site(make_dest_client, br, collector):
    """alias cannot be expressed: UnsupportedCallError (an InvalidMessageError), nothing queued."""
    client = make_dest_client(br)
    with pytest.raises(UnsupportedCallError):
        client.alias("old-id", "new-id")
    assert client.stats()["accepted"] == 0


def test_every_call_type_a_destination_supports_is_delivered(make_dest_client, br, collector):
    client = make_dest_client(br)
    client.identify("u1", {"plan": "pro"})
    client.track("u1", "Signed Up", {"source": "ad"})
    client.page("u1", "Docs", "Pricing", {"url": "https://example.com/pricing"})
    client.screen("u1", "App", "Home")
    client.group("u1", "acme", {"name": "Acme"})
    assert client.flush(timeout=10) == 0
    names = sorted(c.name for c in collector.bloomreach.commands)
    assert names == ["customers", "customers", "customers/events", "customers/events", "customers/events"]
    events = {c.data["event_type"] for c in collector.bloomreach.commands if c.name == "customers/events"}
    assert events == {"Signed Up", "page_visit", "screen_visit"}


def test_a_destination_item_over_its_limit_raises_at_the_call_site(make_dest_client, br):
    client = make_dest_client(br)
    with pytest.raises(Exception) as info:
        client.track("u1", "Big", {"blob": "x" * 20_000})  # over 16 KB per property value
    assert isinstance(info.value, analytics.InvalidMessageError)
    assert client.stats()["accepted"] == 0


def test_destination_must_be_a_destination():
    with pytest.raises(ConfigurationError):
        Client(destination="https://api.exponea.com")
    with pytest.raises(ConfigurationError):
        analytics.destination = object()


def test_facade_delivers_to_a_destination(br, collector):
    analytics.destination = br
    analytics.on_error = Errors()
    analytics.track("user-1", "Facade Event", {"a": 1})
    assert analytics.flush(timeout=10) == 0
    assert [c.data["event_type"] for c in collector.bloomreach.commands] == ["Facade Event"]
    assert analytics.default_client.destination is br


def test_spool_file_is_per_destination(tmp_path, br, collector, errors):
    """With a destination the spool file gets the API's name, so a spool written in one
    API's format is never sent to another; the messages are delivered from it."""
    path = tmp_path / "events.db"
    client = Client(destination=br, spool_path=str(path), on_error=errors)
    try:
        assert client.spool_error is None
        client.track("user-1", "Spooled", {})
        assert client.flush(timeout=10) == 0
    finally:
        client.shutdown(timeout=5)
    assert os.path.exists(tmp_path / "events.bloomreach.db")
    assert not os.path.exists(path)
    assert [c.data["event_type"] for c in collector.bloomreach.commands] == ["Spooled"]


# --- Customer.io Track API v2 ------------------------------------------------------------


@pytest.fixture
def cio(collector):
    """A Track v2 destination pointed at the collector."""
    return TrackV2("site-1", "track-key-1", host=collector.url)


def test_track_v2_gets_every_call_as_a_batch_operation(make_dest_client, cio, collector, errors):
    """The six calls arrive in one /api/v2/batch request with Basic site_id:api_key,
    translated as documented (events carry the messageId as id)."""
    collector.track_api.allow("site-1", "track-key-1")
    client = make_dest_client(cio)
    client.identify("42", {"plan": "pro"})
    _, event = client.track("42", "Purchase", {"amount": 9.5})
    client.page("42", name="Pricing", properties={"url": "https://example.com/pricing"})
    client.screen("42", name="Home")
    client.group("42", "acme", {"name": "Acme"})
    client.alias("old-42", "42")
    assert client.flush(timeout=10) == 0
    ops = collector.track_api.operations
    assert [(op["type"], op["action"]) for op in ops] == [
        ("person", "identify"), ("person", "event"), ("person", "page"), ("person", "screen"),
        ("object", "identify"), ("person", "merge"),
    ]
    assert ops[1]["identifiers"] == {"id": "42"} and ops[1]["name"] == "Purchase"
    assert ops[1]["id"] == event["messageId"] and ops[1]["attributes"] == {"amount": 9.5}
    assert [r.endpoint for r in collector.track_api.requests] == ["batch"]
    assert errors.calls == [] and client.stats()["delivered"] == 6


def test_track_v2_207_item_errors_go_to_on_error_with_exactly_those_messages(make_dest_client, cio, collector, errors):
    """A 207 naming batch_index 2 and 5: those two operations are reported (with the API's
    reason), the other eight count as delivered, and nothing is sent again."""
    collector.track_api.reject_identifiers("user-2", "user-5", message="id is blocked")
    client = make_dest_client(cio)
    for i in range(10):
        client.track(f"user-{i}", "Purchase", {"i": i})
    assert client.flush(timeout=10) == 0
    assert sorted(item["identifiers"]["id"] for item in errors.items) == ["user-2", "user-5"]
    error = errors.calls[0][0]
    assert isinstance(error, APIError) and error.status == 207 and error.reason == "rejected"
    assert "id is blocked" in str(error)
    stats = client.stats()
    assert stats["delivered"] == 8 and stats["failed"]["rejected"] == 2
    assert len(collector.track_api.requests) == 1


def test_track_v2_batches_stay_under_500_kb_and_5xx_is_retried(make_dest_client, cio, collector, errors):
    """Items of ~20 KB: no request body over 500,000 bytes; a 503 is retried; all arrive once."""
    collector.fail_next(1, status=503)
    client = make_dest_client(cio)
    sent = [client.track(f"user-{i}", "Upload", {"blob": "y" * 20_000, "i": i})[1] for i in range(60)]
    assert client.flush(timeout=20) == 0
    requests = [r for r in collector.track_api.requests]
    assert len(requests) >= 3 and max(r.raw_size for r in requests) <= 500_000
    ids = [op["id"] for op in collector.track_api.operations]
    assert sorted(ids) == sorted(m["messageId"] for m in sent) and collector.track_api.duplicates == 0
    assert client.stats()["retries"] == 1 and errors.calls == []


def test_track_v2_wrong_credentials_are_reported_not_retried(make_dest_client, collector, errors):
    collector.track_api.allow("site-1", "track-key-1")
    client = make_dest_client(TrackV2("site-1", "wrong-key", host=collector.url))
    client.track("42", "Purchase")
    assert client.flush(timeout=10) == 0
    assert len(errors.calls) == 1 and errors.calls[0][0].status == 401
    assert client.stats()["failed"]["rejected"] == 1

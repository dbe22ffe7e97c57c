"""TrackV2: Segment-spec messages to Track API v2 operations, bodies and per-item results.

The tests of this subject that need the loopback collector, SQLite or Redis; the others are in ``tests/unit/test_trackv2_destination.py``."""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any, Iterator, List

import pytest
import requests

import analytics
from analytics.collector import Collector
from analytics.destinations.trackv2 import TrackV2
from ..unit.test_trackv2_destination import dest, msg  # shared with the tests there


SITE, KEY = "site-d", "key-d"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def test_translated_items_are_accepted_by_the_collector(collector: Collector) -> None:
    """The six calls, translated, encoded and posted as the engine would, are accepted; a hook refusal
    comes back through results() at the right position."""
    dest = TrackV2(SITE, KEY, host=collector.url)
    messages = [
        msg("identify", user_id="u1", traits={"plan": "pro"}),
        msg("track", user_id="u1", event="Purchased", properties={"price": 9}, message_id="m-2"),
        msg("page", user_id="u2", name="Home", message_id="m-3"),
        msg("screen", anonymous_id="a1", name="Main", message_id="m-4"),
        msg("group", user_id="u1", group_id="acme"),
        msg("alias", user_id="u1", previous_id="u0"),
    ]
    items = [analytics.encoding.dumps(dest.translate(m)) for m in messages]
    collector.track_api.reject_identifiers("u2")
    r = requests.post(dest.base_url() + dest.path, data=dest.body(items),
                      headers={**dest.headers(), "Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 207
    assert dest.results(r.status_code, r.content, len(items)) == [
        None, None, "invalid: identifiers.id: rejected by the collector's test hook", None, None, None]
    ops = collector.track_api.operations
    assert [f"{o['type']}/{o['action']}" for o in ops] == [
        "person/identify", "person/event", "person/screen", "object/identify", "person/merge"]
    assert collector.track_api.requests[0].site_id == SITE


@pytest.mark.skipif("destination" not in inspect.signature(analytics.Client).parameters,
                    reason="Client has no destination option yet")
def test_client_delivers_through_trackv2(collector: Collector) -> None:
    """Client(destination=TrackV2(...)) sends the calls to /api/v2/batch; refused items reach on_error."""
    failures: List[Any] = []
    client = analytics.Client(destination=TrackV2(SITE, KEY, host=collector.url),
                              on_error=lambda error, items: failures.append((error, items)))
    collector.track_api.reject_identifiers("u3")
    try:
        client.identify("u1", {"plan": "pro"})
        client.track("u2", "Purchased", {"price": 9})
        client.track("u3", "Purchased")
        client.flush()
    finally:
        client.shutdown(timeout=5)
    assert collector.track_api.wait_for(2, timeout=5)
    ops = collector.track_api.operations
    assert [o["identifiers"] for o in ops] == [{"id": "u1"}, {"id": "u2"}]
    assert all(r.path == "/api/v2/batch" for r in collector.track_api.requests)
    assert len(failures) == 1 and "rejected" in str(failures[0][0])
    assert dt.datetime.fromtimestamp(ops[1]["timestamp"], dt.timezone.utc).year >= 2024

"""The Bloomreach destination: Segment-spec messages to batch commands, bodies and per-item results.

The tests of this subject that need the loopback collector, SQLite or Redis; the others are in ``tests/unit/test_bloomreach_destination.py``."""

from __future__ import annotations
from typing import Iterator

import pytest
import requests

from analytics.collector import Collector
from analytics.destinations.bloomreach import Bloomreach
from analytics.encoding import dumps
from ..unit.test_bloomreach_destination import TS_UNIX, dest, msg  # shared with the tests there


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def test_round_trip_through_the_collector(collector):
    """Translated, encoded, posted with headers() to the collector, and results() read its real answer."""
    dest = Bloomreach("proj-1", base_url=collector.url, api_token="tok")
    collector.bloomreach.reject_when(lambda cmd: "refused on purpose" if cmd.get("command_id") == "m-2" else None)
    messages = [
        msg("identify", user_id="u-1", traits={"plan": "pro"}, message_id="m-0"),
        msg("track", user_id="u-1", event="Bought", properties={"sku": "a"}, message_id="m-1"),
        msg("page", anonymous_id="a-1", name="Home", message_id="m-2"),
        msg("group", user_id="u-1", group_id="acme", message_id="m-3"),
    ]
    items = [dumps(dest.translate(m)) for m in messages]
    headers = {"Content-Type": "application/json", **dest.headers()}
    resp = requests.post(dest.base_url() + dest.path, data=dest.body(items), headers=headers, timeout=5)
    assert resp.status_code == 200
    assert dest.results(resp.status_code, resp.content, len(items)) == [None, None, "refused on purpose", None]
    store = collector.bloomreach
    assert [c.command_id for c in store.commands] == ["m-0", "m-1", "m-3"]
    assert store.events[0] == {"customer_ids": {"registered": "u-1"}, "event_type": "Bought",
                               "timestamp": TS_UNIX, "properties": {"sku": "a"}}
    assert store.customers[1]["properties"] == {"group_id": "acme"}
    assert store.requests[0].auth == "token"

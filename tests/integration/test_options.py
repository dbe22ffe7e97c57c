"""Option checks: values that would make every send fail are refused at once, naming the option;

The tests of this subject that need the loopback collector, SQLite or Redis; the others are in ``tests/unit/test_options.py``."""

from __future__ import annotations

import decimal
import json
from pathlib import Path
from analytics import Client, encoding, messages
from analytics.collector import Collector

from ..conftest import WRITE_KEY
ROOT = Path(__file__).resolve().parents[2]


NAN, INF = float("nan"), float("inf")


def test_send_no_sends_nothing(collector: Collector) -> None:
    """``send='no'`` does not send (it used to be truthy); ``gzip='false'`` does not compress."""
    client = Client(WRITE_KEY, host=collector.url, send="no", gzip="false")
    assert client.track("u1", "Not sent")[0]
    assert client.flush(timeout=2) == 0
    client.gzip = "true"
    client.send = "yes"
    client.track("u1", "Sent")
    assert client.flush(timeout=5) == 0
    client.shutdown(timeout=2)
    assert [m["event"] for m in collector.messages] == ["Sent"]


def test_a_latin1_user_agent_is_sent(collector: Collector) -> None:
    """A one-line Latin-1 user agent is accepted and delivered with the messages."""
    client = Client(WRITE_KEY, host=collector.url, user_agent="caf\u00e9-app/1.0 (x)")
    client.track("u1", "Sent")
    assert client.flush(timeout=5) == 0
    client.shutdown(timeout=2)
    assert len(collector.messages) == 1


def test_the_returned_message_holds_the_callers_values_and_the_wire_their_json(collector: Collector) -> None:
    """As the getting-started page says: the returned dict keeps a set/Decimal/bytes/NaN as given; the server gets
    ``json.loads(encoding.dumps(messages.as_sent(message)))``."""
    client = Client(WRITE_KEY, host=collector.url)
    props = {"tags": {"b", "a"}, "price": decimal.Decimal("9.50"), "raw": b"bytes", "ratio": NAN}
    ok, message = client.track("u1", "Bought", props)
    assert ok and message["properties"] is props and message["properties"]["tags"] == {"a", "b"}
    assert client.flush(timeout=5) == 0
    client.shutdown(timeout=2)
    (received,) = collector.messages
    expected = json.loads(encoding.dumps(messages.as_sent(message)))
    assert expected["properties"] == {"tags": ["a", "b"], "price": 9.5, "raw": "bytes", "ratio": None}
    assert {k: received[k] for k in expected} == expected
    readme = (ROOT / "docs" / "getting-started.rst").read_text(encoding="utf-8")
    assert "exactly as it will be sent" not in readme
    assert "json.loads(analytics.encoding.dumps(analytics.messages.as_sent(message)))" in readme

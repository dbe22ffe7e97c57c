"""The official SDK's public behaviours that users' own code and tests rely on (issue 16).

The tests of this subject that need the loopback collector, SQLite or Redis; the others are in ``tests/unit/test_dropin.py``."""

from __future__ import annotations

import pytest
from analytics import Client

from ..conftest import WRITE_KEY, wait_until


def test_the_keys_without_value_are_not_sent(collector) -> None:
    """The null keys are in the returned dict only: the server receives the message without them
    (the wire bytes are what they were), and ``as_sent(msg)`` is exactly what it receives."""
    from analytics import messages

    client = Client(WRITE_KEY, host=collector.url)
    ok, track = client.track("u1", "Bought", {"sku": "a"})
    ok2, page = client.page(anonymous_id="anon-1", properties={"path": "/"})
    assert ok and ok2 and track["anonymousId"] is None and page["userId"] is None and page["name"] is None
    assert client.flush(timeout=10) == 0
    client.shutdown(timeout=2)
    received = {m["type"]: m for m in collector.messages}
    for sent in (track, page):
        wire = received[sent["type"]]
        assert None not in wire.values() and "integrations" not in wire
        assert wire == {k: v for k, v in messages.as_sent(sent).items()}


def test_on_error_gets_the_messages_as_the_calls_returned_them(collector) -> None:
    """The messages handed to on_error after a refused batch have the same keys (None included)
    as the ones the calls returned, though the request carried none of the null keys."""
    got: list = []
    client = Client(WRITE_KEY, host=collector.url, on_error=lambda error, items: got.extend(items), max_retries=0)
    collector.fail_next(1, status=400)
    returned = [client.track("u1", "Refused")[1], client.page(anonymous_id="a1")[1]]
    assert client.flush(timeout=10) == 0
    client.shutdown(timeout=2)
    assert got == returned
    assert got[0]["anonymousId"] is None and got[1]["userId"] is None and got[1]["category"] is None


def test_the_queue_view_reads_the_queue_and_cannot_change_it(collector) -> None:
    """client.queue has maxsize, qsize() and empty() as the official SDK's queue.Queue; it is
    read-only; maxsize follows the client's max_queue_size."""
    client = Client(WRITE_KEY, host=collector.url, max_queue_size=50, upload_interval=30)
    try:
        queue = client.queue
        assert (queue.maxsize, queue.qsize(), queue.empty(), queue.full()) == (50, 0, True, False)
        for i in range(3):
            client.track(f"u{i}", "Queued")
        assert queue.qsize() == 3 and not queue.empty()  # a partial batch waits upload_interval
        client.max_queue_size = 70
        assert queue.maxsize == 70
        with pytest.raises(AttributeError):
            queue.maxsize = 5  # type: ignore[misc]
        with pytest.raises(AttributeError):
            queue.put = None  # type: ignore[attr-defined]
        assert client.flush(timeout=10) == 0
        assert queue.empty() and queue.qsize() == 0 and len(collector.messages) == 3
    finally:
        client.shutdown(timeout=2)


def test_the_consumers_are_views_of_the_delivery_threads(collector) -> None:
    """client.consumers has one read-only view per thread, with the client's timeout, retries,
    upload_size and upload_interval; is_alive() is True once they run, False after shutdown(),
    when the queue is empty (the official SDK's shutdown behaviour)."""
    client = Client(WRITE_KEY, host=collector.url, thread=3, timeout=4.5, max_retries=42, upload_size=25,
                    upload_interval=0.2)
    consumers = client.consumers
    assert len(consumers) == 3
    for consumer in consumers:
        assert (consumer.timeout, consumer.retries, consumer.upload_size, consumer.upload_interval) == \
            (4.5, 42, 25, 0.2)
        assert consumer.is_alive() is False  # started by the first call
        with pytest.raises(AttributeError):
            consumer.retries = 1  # type: ignore[misc]
    for i in range(1000):
        client.identify(f"u{i}", {"trait": "value"})
    assert wait_until(lambda: all(c.is_alive() for c in client.consumers))
    client.max_retries = 7
    assert [c.retries for c in client.consumers] == [7, 7, 7]
    assert client.shutdown() == 0
    assert client.queue.empty()
    assert not any(c.is_alive() for c in client.consumers) and not any(c.is_alive() for c in consumers)
    assert len(collector.unique_ids) == 1000

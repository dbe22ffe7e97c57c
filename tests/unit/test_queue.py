"""MemoryQueue (bounded FIFO of encoded messages) and the CDP batch body format."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time

import pytest

from analytics.formats import CDPFormat
from analytics.queues import MemoryQueue

JOIN_S = 5.0  # upper bound for a thread that should finish at once


def queue_of(*items: bytes, maxsize: int = 100) -> MemoryQueue:
    q = MemoryQueue(maxsize)
    for item in items:
        q.put(item)
    return q


class SignallingCondition:
    """Wraps the queue's condition to set ``waiting`` when a producer starts waiting for room.

    The event is set while the producer still holds the queue lock, so once the test
    sees it, any take() (which needs that lock) runs only after the producer is waiting.
    """

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waiting.set()
        return self._cond.wait(timeout)

    def notify(self, n: int = 1) -> None:
        self._cond.notify(n)

    def notify_all(self) -> None:
        self._cond.notify_all()


class BlockedProducer:
    """A thread calling put(item, timeout=None) on a full queue; result holds put's return value."""

    def __init__(self, q: MemoryQueue, item: bytes) -> None:
        self.q = q
        self.result = None
        self.done = threading.Event()
        cond = q._not_full = SignallingCondition(q._not_full)
        self.thread = threading.Thread(target=self._run, args=(item,), daemon=True)
        self.thread.start()
        assert cond.waiting.wait(JOIN_S), "producer never blocked"
        assert not self.done.is_set()

    def _run(self, item: bytes) -> None:
        self.result = self.q.put(item, timeout=None)
        self.done.set()

    def join(self) -> None:
        self.thread.join(JOIN_S)
        assert not self.thread.is_alive(), "producer still blocked"


# --- MemoryQueue ----------------------------------------------------------------


def test_fifo_order():
    """Items come out in the order they were put."""
    items = [b"%d" % i for i in range(10)]
    q = queue_of(*items)
    assert q.take(4, 10_000) + q.take(100, 10_000) == items


def test_put_returns_new_length_and_zero_when_full():
    """put returns the length after appending, and 0 (item dropped) on a full queue with timeout 0."""
    q = MemoryQueue(2)
    assert q.put(b"a") == 1
    assert q.put(b"b") == 2
    assert q.put(b"c", timeout=0) == 0
    assert len(q) == 2
    assert q.take(10, 100) == [b"a", b"b"]


def test_put_and_taken_totals():
    """put_total counts accepted puts (not dropped ones); taken_total counts items removed."""
    q = queue_of(b"a", b"b", b"c", maxsize=3)
    q.put(b"dropped", timeout=0)
    assert (q.put_total, q.taken_total) == (3, 0)
    q.take(2, 100)
    assert (q.put_total, q.taken_total) == (3, 2)
    q.take_all()
    assert (q.put_total, q.taken_total) == (3, 3)


def test_take_respects_max_items():
    """take never returns more than max_items, leaving the rest queued."""
    q = queue_of(b"a", b"b", b"c")
    assert q.take(2, 10_000) == [b"a", b"b"]
    assert len(q) == 1


@pytest.mark.parametrize(
    "max_bytes, taken",
    [(8, [b"aaa", b"bb", b"c"]), (7, [b"aaa", b"bb"]), (6, [b"aaa", b"bb"]), (5, [b"aaa"])],
    ids=["exactly-met", "one-byte-short", "two-items-exact", "one-short-of-two"],
)
def test_take_byte_budget_counts_items_plus_commas(max_bytes, taken):
    """Items plus one comma between each stay within max_bytes: 3+2+1 bytes + 2 commas = 8 fits in 8, not 7."""
    q = queue_of(b"aaa", b"bb", b"c")
    assert q.take(10, max_bytes) == taken
    assert len(q) == 3 - len(taken)


def test_first_item_taken_even_if_over_budget():
    """The head item is always taken, even alone over max_bytes; the next one waits for another take."""
    big = b"x" * 100
    q = queue_of(big, b"y")
    assert q.take(10, 10) == [big]
    assert q.take(10, 10) == [b"y"]


def test_take_all():
    """take_all removes and returns everything in order."""
    q = queue_of(b"a", b"b", b"c")
    assert q.take_all() == [b"a", b"b", b"c"]
    assert len(q) == 0
    assert q.take_all() == []


def test_blocked_producer_released_by_take():
    """A producer blocked in put(timeout=None) on a full queue gets in once another thread takes an item."""
    q = queue_of(b"a", maxsize=1)
    producer = BlockedProducer(q, b"b")
    taker = threading.Thread(target=q.take, args=(1, 100))
    taker.start()
    taker.join(JOIN_S)
    assert producer.done.wait(JOIN_S)
    producer.join()
    assert producer.result == 1
    assert q.take_all() == [b"b"]


def test_blocked_producer_released_by_take_all():
    """take_all also wakes a producer waiting for room."""
    q = queue_of(b"a", maxsize=1)
    producer = BlockedProducer(q, b"b")
    assert q.take_all() == [b"a"]
    producer.join()
    assert producer.result == 1


def test_put_with_timeout_gives_up_after_timeout():
    """put(item, timeout=0.05) on a full queue returns 0 once about 0.05 s have passed."""
    q = queue_of(b"a", maxsize=1)
    start = time.monotonic()
    assert q.put(b"b", timeout=0.05) == 0
    elapsed = time.monotonic() - start
    assert 0.05 <= elapsed < 2.0
    assert q.put_total == 1


def test_close_releases_blocked_producer_with_zero():
    """close() makes a producer blocked in put(timeout=None) return 0 without adding its item."""
    q = queue_of(b"a", maxsize=1)
    producer = BlockedProducer(q, b"b")
    q.close()
    producer.join()
    assert producer.result == 0
    assert q.take_all() == [b"a"]


# --- CDP body format -----------------------------------------------------------------

ITEMS = [b'{"type":"track","event":"E"}', '{"name":"Zoë"}'.encode(), b'{"n":[1,2,3]}']


@pytest.mark.parametrize("items", [ITEMS[:1], ITEMS], ids=["one", "three"])
def test_cdp_body_is_batch_json_with_exact_length(items):
    """body() is {"batch":[...],"sentAt":...} and its length is overhead + items + commas, exactly."""
    fmt = CDPFormat()
    body = fmt.body(items)
    doc = json.loads(body)
    assert list(doc) == ["batch", "sentAt"]
    assert doc["batch"] == [json.loads(i) for i in items]
    assert len(body) == fmt.overhead() + sum(len(i) for i in items) + len(items) - 1


def test_cdp_sent_at_is_aware_iso_with_microseconds():
    """sentAt is the current UTC time as ISO-8601 with microseconds and an offset."""
    before = dt.datetime.now(dt.timezone.utc)
    sent_at = json.loads(CDPFormat().body(ITEMS[:1]))["sentAt"]
    after = dt.datetime.now(dt.timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", sent_at)
    parsed = dt.datetime.fromisoformat(sent_at)
    assert parsed.utcoffset() == dt.timedelta(0)
    assert before <= parsed <= after


def test_a_queued_message_costs_about_its_encoded_size():
    """Memory per queued message stays near its JSON size (orjson's bytes alone would hold 4 KB each)."""
    import tracemalloc

    from analytics import Client

    props = {"product_id": "sku-123", "name": "Widget", "price": 19.99, "quantity": 3,
             "tags": ["a", "b", "c"], "meta": {"color": "red", "size": "L"}}
    client = Client("k", host="http://127.0.0.1:9", max_queue_size=5000, upload_interval=3600, upload_size=10**6)
    try:
        from analytics import encoding, messages

        size = len(encoding.dumps(messages.as_sent(client.track("user-1", "Product Purchased", props)[1])))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            client.track(f"user-{i}", "Product Purchased", props)
        per_message = (tracemalloc.get_traced_memory()[0] - before) / 2000
        tracemalloc.stop()
        assert per_message < size + 200, (per_message, size)
    finally:
        client.shutdown(timeout=0)

"""The Redis Streams queue against a real Redis server and real worker processes.

``REDIS_URL`` names a server to use; without it a ``redis-server`` is started on a
free port.  The restart test always starts its own (it stops and restarts it).
On CI (``CI`` set) a missing Redis is an error, never a skip.
"""

from __future__ import annotations
import os
import time
import uuid
from typing import Iterator, List

import pytest

from analytics import Client, ConfigurationError, QueueFullError, ShutdownError
from analytics.collector import Collector

from ..conftest import WRITE_KEY, Errors
from ..redis_server import RedisServer


redis = pytest.importorskip("redis") if not os.environ.get("CI") else __import__("redis")


def _server_or_skip(persistent: bool = False) -> RedisServer:
    try:
        return RedisServer(persistent=persistent).start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = _server_or_skip()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def prefix(redis_url) -> Iterator[str]:
    """A stream prefix of this test's own; its keys are deleted afterwards."""
    p = f"test-{uuid.uuid4().hex[:10]}"
    yield p
    conn = redis.Redis.from_url(redis_url)
    for key in conn.scan_iter(f"{p}:*"):
        conn.delete(key)
    conn.close()


@pytest.fixture
def clients() -> Iterator[List[Client]]:
    made: List[Client] = []
    yield made
    for c in made:
        if isinstance(c, Collector):
            c.stop()
        else:
            c.shutdown(timeout=5)


def _client(made: List[Client], **kw) -> Client:
    kw.setdefault("on_error", Errors())
    c = Client(kw.pop("write_key", WRITE_KEY), **kw)
    made.append(c)
    return c


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_one_process_produces_and_delivers_through_redis(redis_url, prefix, clients, collector):
    c = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, upload_size=50)
    sent = [c.track(f"u{i}", "Ordered", {"i": i})[1] for i in range(500)]
    assert c.flush(timeout=20) == 0
    assert collector.unique_ids == {m["messageId"] for m in sent} and collector.duplicates == 0
    s = c.stats()
    assert s["redis"]["length"] == 0 and s["redis"]["pending"] == 0  # settled entries are deleted
    assert s["handed_off"] == 500 and s["received"] == 500 and s["delivered"] == 500
    lost = sum(s["failed"].values()) + sum(s["dropped"].values())
    assert s["accepted"] + s["received"] == s["handed_off"] + s["delivered"] + lost + s["pending"]


def test_streams_are_namespaced_per_write_key(redis_url, prefix, clients):
    """Two write keys on one Redis: every batch carries only its own key's messages."""
    collector = Collector().start()
    clients.append(collector)  # stopped with the clients (shutdown)
    a = _client(clients, write_key="key-a", host=collector.url, queue=redis_url, stream_prefix=prefix)
    b = _client(clients, write_key="key-b", host=collector.url, queue=redis_url, stream_prefix=prefix)
    assert a._engine.queue.stream != b._engine.queue.stream
    for i in range(200):
        a.track(f"a{i}", "E", {"key": "key-a"})
        b.track(f"b{i}", "E", {"key": "key-b"})
    assert a.flush(timeout=20) == 0 and b.flush(timeout=20) == 0
    assert len(collector.unique_ids) == 400
    for batch in collector.batches:
        assert {m["properties"]["key"] for m in batch.messages} == {batch.write_key}


def test_write_key_and_host_cannot_change_on_a_redis_client(redis_url, prefix, clients, collector):
    c = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix)
    with pytest.raises(ConfigurationError):
        c.write_key = "another"
    with pytest.raises(ConfigurationError):
        c.host = "http://127.0.0.1:1"
    with pytest.raises(ConfigurationError):
        Client("k", queue="http://127.0.0.1:6379")


def test_full_stream_refuses_and_reports_each_message(redis_url, prefix, clients, collector):
    """No consumer, a stream bounded at 50: the writer adds 50 and reports the other 30
    to on_error as QueueFullError (queue_full), with the messages."""
    errors = Errors()
    c = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, consume=False,
                max_queue_size=50, on_error=errors)
    for i in range(80):
        assert c.track(f"u{i}", "E", {"i": i})[0]
        if i % 40 == 39:
            assert c.wait_durable(10) == 0  # the local buffer is bounded by max_queue_size too
    assert len(errors.items) == 30 and all(isinstance(e, QueueFullError) for e, _ in errors.calls)
    assert sorted(m["properties"]["i"] for m in errors.items) == list(range(50, 80))
    s = c.stats()
    assert s["dropped"]["queue_full"] == 30 and s["redis"]["length"] == 50 and s["handed_off"] == 50


def test_redis_unreachable_calls_return_at_once_and_drops_are_counted(clients, collector):
    """Nothing listens on the Redis port: calls still return at once (they only buffer);
    past max_queue_size they drop with QueueFullError; at shutdown the unwritten buffer is
    reported as dropped (shutdown), so every message is accounted for."""
    errors = Errors()
    c = _client(clients, host=collector.url, queue="redis://127.0.0.1:1/0", max_queue_size=100, on_error=errors)
    results = [c.track(f"u{i}", "E")[0] for i in range(150)]
    assert results.count(True) == 100 and results.count(False) == 50
    _wait(lambda: c.stats()["redis"]["redis_down"] is not None, 10, "the writer to notice Redis is down")
    assert c.flush(timeout=0.2) > 0
    c.shutdown(timeout=1)
    s = c.stats()
    assert s["dropped"] == {"queue_full": 50, "shutdown": 100, "before_send": 0, "before_send_error": 0}
    assert [type(e) for e, _ in errors.calls].count(ShutdownError) == 1 and len(errors.items) == 150


def test_a_consume_only_client_delivers_what_others_produced(redis_url, prefix, clients, collector):
    """A client that never makes a call starts delivering at creation (consume=True)."""
    producer = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, consume=False)
    sent = {producer.track(f"u{i}", "E")[1]["messageId"] for i in range(120)}
    assert producer.wait_durable(10) == 0
    _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix)  # makes no call
    _wait(lambda: sent <= collector.unique_ids, 20, "the consume-only client to deliver")


def test_a_worker_retrying_for_long_keeps_its_entries(redis_url, prefix, clients, collector):
    """While the server is down for 3 s (3 x claim_after), the worker holding the batch keeps
    its entries fresh: the other worker takes none over, and nothing is sent twice."""
    from analytics import RetryPolicy

    policy = RetryPolicy(base=0.05, cap=0.2)
    collector.outage(3.0)
    holder = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, claim_after=1.0,
                     retry_policy=policy)
    sent = {holder.track(f"u{i}", "E")[1]["messageId"] for i in range(100)}
    _wait(lambda: holder.stats()["retries"] > 0, 10, "the first worker to fail a delivery")
    other = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, claim_after=1.0,
                    retry_policy=policy)
    _wait(lambda: sent <= collector.unique_ids, 30, "delivery once the server is back")
    assert collector.duplicates == 0
    assert other.stats()["redis"]["claimed"] == 0 and holder.stats()["redis"]["received"] == 100


def test_stats_do_not_wait_for_an_unreachable_redis(clients, collector):
    """Once the writer knows Redis is down, stats() answers from this process's counters
    (Redis figures None) without a round trip that would wait for the socket timeout."""
    c = _client(clients, host=collector.url, queue="redis://127.0.0.1:1/0")
    c.track("u1", "E")
    _wait(lambda: c._engine.queue.down is not None, 10, "the writer to notice Redis is down")
    def no_round_trip(*args, **kwargs):
        raise AssertionError("stats() tried Redis although it is known to be down")

    c._engine.queue._w.pipeline = no_round_trip
    s = c.stats()
    assert s["redis"]["length"] is None and s["redis"]["redis_down"]
    assert s["redis"]["buffered"] == 1

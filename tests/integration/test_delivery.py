"""Delivery against a real collector on loopback: payloads, batching, gzip, retries, errors."""

from __future__ import annotations

import base64
import email.utils
import logging
import threading
import time

import pytest

import analytics
from analytics import APIError, Client, QueueFullError, RetryPolicy, TransportError
from analytics.encoding import dumps
from analytics.messages import as_sent

from ..conftest import WRITE_KEY


def _track(client: Client, n: int, prefix: str = "u", **props) -> list:
    return [client.track(f"{prefix}{i}", "Product Purchased", {"i": i, **props})[1] for i in range(n)]


# --- wire format --------------------------------------------------------------


def test_auth_header_is_basic_with_write_key_and_empty_password(make_client, collector):
    """Requests carry Basic auth base64('<write_key>:') and a User-Agent naming the library."""
    client = make_client()
    client.track("u1", "Signed Up")
    assert client.flush(timeout=10) == 0
    headers = collector.batches[0].headers
    expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert headers["Authorization"] == expected
    assert headers["User-Agent"].startswith(f"cdp-relay/{analytics.VERSION}")
    assert headers["Content-Type"] == "application/json"


def test_every_call_type_arrives_as_returned(make_client, collector):
    """All six calls reach the server exactly as the call returned them (less the keys without a value),
    with sentAt on the body."""
    client = make_client()
    sent = [
        client.identify("u1", {"email": "a@example.com"})[1],
        client.track("u1", "Added", {"sku": "x"})[1],
        client.page("u1", "Docs", "Intro", {"url": "https://example.com"})[1],
        client.screen("u1", "App", "Home")[1],
        client.group("u1", "acme", {"name": "Acme"}, object_type_id=2)[1],
        client.alias("anon-1", "u1")[1],
    ]
    assert client.flush(timeout=10) == 0
    assert collector.messages == [as_sent(m) for m in sent]
    assert [m["type"] for m in collector.messages] == ["identify", "track", "page", "screen", "group", "alias"]
    assert collector.batches[0].sent_at.endswith("+00:00")


def test_gzip_compresses_the_body(make_client, collector):
    """gzip=True sends Content-Encoding: gzip and a smaller body that un-gzips to the messages."""
    client = make_client(gzip=True)
    sent = _track(client, 50, note="the same text compresses well " * 4)
    assert client.flush(timeout=10) == 0
    batch = collector.batches[0]
    assert batch.headers["Content-Encoding"] == "gzip"
    assert batch.compressed_size is not None and batch.compressed_size < batch.raw_size / 3
    assert collector.messages == [as_sent(m) for m in sent]
    stats = client.stats()
    assert stats["bytes_sent"] < stats["bytes_raw"]


def test_gzip_can_be_switched_on_for_a_live_client(make_client, collector):
    """Changing client.gzip after the first call applies to the next batch."""
    client = make_client()
    client.track("u1", "a")
    client.flush(timeout=10)
    client.gzip = True
    client.track("u1", "b")
    client.flush(timeout=10)
    assert [b.compressed_size is not None for b in collector.batches] == [False, True]


# --- batching -----------------------------------------------------------------


def test_batches_by_count(make_client, collector):
    """A full upload_size batch is sent without waiting for the interval."""
    client = make_client(upload_size=10, upload_interval=60)
    _track(client, 35)
    assert collector.wait_for(30, timeout=10)
    assert [len(b.messages) for b in collector.batches] == [10, 10, 10]
    assert client.flush(timeout=10) == 0
    assert [len(b.messages) for b in collector.batches] == [10, 10, 10, 5]


def test_no_wake_up_is_lost_between_a_put_and_a_worker_going_to_wait(make_client, collector):
    """wake() skips the lock while no worker is looking for work; a message put while the
    worker is between "nothing to do" and waiting must still wake it.  With a 60 s
    interval, a lost wake-up would leave a full batch waiting a minute: each of 300
    one-message batches, sent as soon as the previous one arrived (the worker is then
    on its way back to wait), must arrive within 5 s."""
    client = make_client(upload_size=1, upload_interval=60)
    for i in range(300):
        client.track(f"u{i}", "Tick", {"i": i})
        assert collector.wait_for(i + 1, timeout=5), f"message {i} was not sent: a wake-up was lost"
    assert len(collector.batches) == 300


def test_batches_by_interval(make_client, collector):
    """A partial batch is sent once upload_interval has passed, with no flush."""
    client = make_client(upload_size=100, upload_interval=0.2)
    _track(client, 3)
    assert collector.wait_for(3, timeout=10)
    assert [len(b.messages) for b in collector.batches] == [3]


def _big_message_client(make_client, size: int, n: int, upload_size: int = 100):
    client = make_client(upload_size=upload_size, upload_interval=60, max_in_flight=1)  # order kept
    pad = "x" * size
    sent = []
    for i in range(n):
        ok, msg = client.track(f"u{i}", "Big", {"pad": pad})
        assert ok
        sent.append(msg)
    assert client.flush(timeout=30) == 0
    return client, sent


@pytest.mark.parametrize("size, upload_size", [(31_000, 100), (4_000, 1000), (32_700, 100)])
def test_batches_by_bytes_never_exceed_500000(make_client, collector, size, upload_size):
    """Every request body stays at or under 500,000 bytes, and each batch is as full as the limit allows."""
    n = 70 if size > 10_000 else 400
    if size == 32_700:
        size = 32_768 - len(dumps(_probe_msg(""))) - 1  # the largest message the API takes
    _, sent = _big_message_client(make_client, size, n, upload_size)
    assert collector.messages == [as_sent(m) for m in sent]  # nothing lost, order kept
    sizes = {m["messageId"]: len(dumps(m)) for m in sent}
    start = 0
    for batch in collector.batches:
        assert batch.raw_size <= 500_000
        start += len(batch.messages)
        if start < len(sent):  # the next message would not have fitted
            nxt = sizes[sent[start]["messageId"]]
            assert batch.raw_size + nxt + 1 > 500_000 or len(batch.messages) == upload_size


def _probe_msg(pad: str) -> dict:
    client = Client(send=False)
    return as_sent(client.track("u0", "Big", {"pad": pad})[1])


def test_largest_allowed_message_is_delivered(make_client, collector):
    """A message of exactly 32,768 encoded bytes is accepted by the SDK and by the server."""
    base = len(dumps(_probe_msg("")))
    client = make_client()
    ok, msg = client.track("u0", "Big", {"pad": "y" * (32_768 - base)})
    sent = as_sent(msg)  # the returned message without the official SDK's null keys: what is sent
    assert ok and len(dumps(sent)) == 32_768
    assert client.flush(timeout=10) == 0
    assert collector.messages == [sent]


# --- retries ------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_retries_retryable_statuses(make_client, collector, errors, status):
    """408, 429 and 5xx are retried until the batch is accepted; on_error is not called."""
    collector.fail_next(2, status=status)
    client = make_client()
    sent = _track(client, 5)
    assert client.flush(timeout=10) == 0
    assert collector.messages == [as_sent(m) for m in sent]
    assert [r.status for r in collector.refused] == [status, status]
    assert client.stats()["retries"] == 2
    assert errors.calls == []


def test_retries_a_reset_connection(make_client, collector, errors):
    """A connection dropped without an answer is retried on a new connection."""
    collector.drop_next(2)
    client = make_client()
    sent = _track(client, 5)
    assert client.flush(timeout=10) == 0
    assert collector.messages == [as_sent(m) for m in sent]
    assert errors.calls == []


def test_retry_after_seconds_is_the_minimum_wait(make_client, collector):
    """A 429 with Retry-After: 1 delays the next attempt by at least one second."""
    collector.fail_next(1, status=429, retry_after=1)
    client = make_client()
    _track(client, 2)
    assert client.flush(timeout=10) == 0
    refused_at = collector.refused[0].received_at
    assert collector.batches[0].received_at - refused_at >= 0.95


def test_retry_after_http_date_is_honoured(make_client, collector):
    """Retry-After given as an HTTP date is honoured too."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    collector.fail_next(1, status=503, retry_after=when)
    client = make_client()
    _track(client, 1)
    assert client.flush(timeout=10) == 0
    # HTTP dates have one-second resolution: at least ~1 s remains of the 2.
    assert collector.batches[0].received_at - collector.refused[0].received_at >= 0.9


def test_retry_after_beyond_the_limit_gives_up(make_client, collector, errors):
    """A Retry-After longer than the policy's max_retry_after fails the batch at once, saying why."""
    collector.fail_next(1, status=429, retry_after=3600)
    client = make_client(retry_policy=RetryPolicy(max_retry_after=30, base=0.01, cap=0.05))
    sent = _track(client, 2)
    assert client.flush(timeout=10) == 0
    (error, items), = errors.calls
    assert isinstance(error, APIError) and error.status == 429 and error.retry_after == 3600
    assert error.reason == "retries_exhausted" and "3600" in str(error)
    assert items == sent


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(make_client, collector, errors, status):
    """Other 4xx answers fail the batch after one attempt; on_error gets every message and the status."""
    collector.fail_next(1, status=status, body={"code": "nope", "message": "bad thing"})
    client = make_client()
    sent = _track(client, 3)
    assert client.flush(timeout=10) == 0
    assert len(collector.refused) == 1
    (error, items), = errors.calls
    assert isinstance(error, APIError)
    assert (error.status, error.code, error.message, error.reason) == (status, "nope", "bad thing", "rejected")
    assert "bad thing" in error.body
    assert items == sent
    assert client.stats()["failed"]["rejected"] == 3


def test_wrong_write_key_is_reported_as_401(collector, make_client, errors):
    """The server's own 401 for an unknown write key reaches on_error, without the key in the text."""
    client = make_client(write_key="not-a-known-key")
    client.track("u1", "x")
    assert client.flush(timeout=10) == 0
    (error, _), = errors.calls
    assert error.status == 401 and "not-a-known-key" not in str(error)


def test_413_splits_the_batch_and_retries_the_halves(make_client, collector, errors):
    """A 413 splits the batch in two and sends each half; nothing is lost."""
    collector.fail_next(1, status=413)
    client = make_client()
    sent = _track(client, 10)
    assert client.flush(timeout=10) == 0
    assert [len(b.messages) for b in collector.batches] == [5, 5]
    assert collector.messages == [as_sent(m) for m in sent]
    assert errors.calls == []


def test_413_on_a_single_message_is_reported_too_large(make_client, collector, errors):
    """A message the server calls too large even alone goes to on_error with reason too_large."""
    collector.fail_next(1, status=413)
    client = make_client()
    sent = _track(client, 1)
    assert client.flush(timeout=10) == 0
    (error, items), = errors.calls
    assert error.reason == "too_large" and items == sent


def test_failed_batch_after_retries_goes_to_on_error(make_client, collector, errors):
    """When every attempt fails, on_error receives all the batch's messages and the last error."""
    collector.fail_next(10, status=500)
    client = make_client(max_retries=2)
    sent = _track(client, 4)
    assert client.flush(timeout=10) == 0
    (error, items), = errors.calls
    assert isinstance(error, APIError) and error.status == 500
    assert error.reason == "retries_exhausted" and error.attempts == 3
    assert items == sent
    assert len(collector.refused) == 3
    stats = client.stats()
    assert stats["failed"]["retries_exhausted"] == 4 and stats["delivered"] == 0


def test_retry_time_bounds_a_failing_batch(make_client, collector, errors):
    """max_retry_time stops retrying even when retries remain."""
    collector.fail_next(1000, status=503)
    client = make_client(retry_policy=RetryPolicy(max_retries=1000, max_time=0.3, base=0.05, cap=0.1))
    _track(client, 1)
    assert client.flush(timeout=10) == 0
    (error, _), = errors.calls
    assert "retry time is used up" in str(error)
    assert len(collector.refused) < 20


def test_timeout_is_a_transport_error(make_client, collector, errors):
    """A server slower than `timeout` counts as a failed attempt (TransportError)."""
    collector.delay = 1.0
    client = make_client(timeout=0.1, max_retries=0)
    _track(client, 1)
    assert client.flush(timeout=10) == 0
    (error, _), = errors.calls
    assert isinstance(error, TransportError) and "timed out" in str(error).lower()


# --- on_error -----------------------------------------------------------------


def test_on_error_raising_does_not_stop_the_consumer(make_client, collector):
    """An exception inside on_error is logged and delivery carries on."""
    calls = []

    def bad(error, items):
        calls.append(items)
        raise RuntimeError("user bug")

    collector.fail_next(1, status=400)
    client = make_client(on_error=bad)
    _track(client, 2)
    assert client.flush(timeout=10) == 0
    later = _track(client, 3, prefix="v")
    assert client.flush(timeout=10) == 0
    assert len(calls) == 1
    assert collector.messages == [as_sent(m) for m in later]


# --- queue full and backpressure ------------------------------------------------


def test_queue_full_drops_counts_reports_and_logs_once(make_client, collector, errors, caplog):
    """A full queue drops the message, returns False, tells on_error, and logs once per burst."""
    caplog.set_level(logging.WARNING, logger="customerio")
    client = make_client(max_queue_size=5, upload_size=100, upload_interval=60)
    results = [client.track(f"u{i}", "E") for i in range(8)]
    assert [ok for ok, _ in results] == [True] * 5 + [False] * 3
    assert [type(e) for e, _ in errors.calls] == [QueueFullError] * 3
    assert errors.items == [msg for _, msg in results[5:]]
    assert client.stats()["dropped"]["queue_full"] == 3
    full_logs = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(full_logs) == 1
    assert client.flush(timeout=10) == 0
    assert client.track("u9", "E")[0]
    assert any("3 were dropped" in r.getMessage() for r in caplog.records)
    assert client.flush(timeout=10) == 0
    assert len(collector.messages) == 6


def test_queue_full_logs_once_while_the_queue_hovers_at_full(make_client, caplog):
    """A queue that frees a little and fills again is still one burst: one warning, not one per batch."""
    caplog.set_level(logging.WARNING, logger="customerio")
    client = make_client(max_queue_size=10, upload_interval=60)  # the consumer waits; we take by hand
    for round_ in range(5):
        while client.track("u", "E")[0]:
            pass
        client._engine.queue.take(2, 10**6)  # a batch leaves; the queue is 8/10, still over half
    messages = [r.getMessage() for r in caplog.records]
    assert sum("queue is full" in m for m in messages) == 1
    assert not any("accepting messages again" in m for m in messages)
    client._engine.queue.take(10, 10**6)  # drained
    assert client.track("u", "E")[0]
    assert sum("accepting messages again" in r.getMessage() for r in caplog.records) == 1


def test_backpressure_waits_for_room_instead_of_dropping(make_client, collector, errors):
    """With max_queue_wait, a full queue makes the caller wait and nothing is dropped."""
    collector.delay = 0.02
    client = make_client(max_queue_size=5, upload_size=5, max_queue_wait=None)
    results = []
    t = threading.Thread(target=lambda: results.extend(client.track(f"u{i}", "E")[0] for i in range(60)))
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    assert results == [True] * 60
    assert client.flush(timeout=10) == 0
    assert len(collector.messages) == 60
    assert errors.calls == []


def test_bounded_backpressure_drops_after_the_wait(make_client, collector, errors):
    """A numeric max_queue_wait waits that long, then drops and reports."""
    client = make_client(max_queue_size=1, upload_interval=60, max_queue_wait=0.05)
    assert client.track("u1", "E")[0]
    ok, msg = client.track("u2", "E")
    assert not ok
    assert errors.items == [msg]

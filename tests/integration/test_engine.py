"""The engine against a server that is far away: requests in flight at once, batches that grow,
backpressure that follows the delivery rate.  A real collector on 127.0.0.1 delays each answer
(requests on different connections are answered in parallel, so the delay models a round trip);
every assertion is by counts, never by timing."""

from __future__ import annotations

import socket
import threading
import time
from typing import List

from analytics.collector import Collector
from analytics.transport import HTTPTransport

from ..conftest import wait_until
from .test_faults import assert_stats_sum


PROPS = {"sku": "sku-1", "price": 19.99, "qty": 3, "tags": ["a", "b"], "meta": {"color": "red"}}


def burst(client, n: int) -> List[dict]:
    """``n`` calls in a tight loop; the messages accepted."""
    sent = []
    for i in range(n):
        ok, msg = client.track(f"user-{i % 1000}", "Product Purchased", dict(PROPS, seq=i))
        if ok:
            sent.append(msg)
    return sent


def most_in_flight(collector: Collector) -> int:
    """The most batch requests the collector held at once."""
    return collector.stats()["max_in_flight"]


def test_a_burst_larger_than_the_queue_is_delivered_whole_through_a_slow_server(make_client, collector, errors):
    """With every answer 100 ms late, 20,000 calls in a tight loop into a 4,000-message queue lose
    nothing: several requests are in flight at once and batches grow past upload_size."""
    collector.delay = 0.1
    client = make_client(max_queue_size=4000, pace_wait=0.05)
    sent = burst(client, 20_000)
    assert len(sent) == 20_000
    assert client.flush(timeout=60) == 0
    stats = client.stats()
    assert stats["dropped"]["queue_full"] == 0 and stats["delivered"] == 20_000, stats
    assert collector.unique_ids == {m["messageId"] for m in sent}
    assert most_in_flight(collector) > 1
    assert max(len(b.messages) for b in collector.batches) > 100  # grew past the flush trigger
    assert all(b.raw_size <= 500_000 for b in collector.batches)
    assert errors.calls == []


def test_light_traffic_is_sent_in_small_prompt_batches(make_client, collector):
    """A few calls at a time go out at the flush trigger, one request at a time, never as one big batch."""
    client = make_client()
    for _ in range(5):
        burst(client, 30)
        assert client.flush(timeout=10) == 0
    assert [len(b.messages) for b in collector.batches] == [30] * 5
    assert most_in_flight(collector) == 1


class Recording(HTTPTransport):
    """The real HTTP transport, noting when each request left and when its answer came."""

    def __init__(self) -> None:
        super().__init__()
        self.log: List[tuple] = []  # (sent at, answered at, status, Retry-After)
        self._log_lock = threading.Lock()

    def post(self, url, body, headers, timeout, proxies):  # type: ignore[no-untyped-def]
        sent = time.monotonic()
        resp = super().post(url, body, headers, timeout, proxies)
        with self._log_lock:
            self.log.append((sent, time.monotonic(), resp.status, resp.headers.get("Retry-After")))
        return resp


def test_retry_after_from_one_request_holds_back_the_others(make_client, collector, errors):
    """A 429 with Retry-After on one connection: no request leaves on any connection before it is up."""
    collector.delay = 0.05
    collector.set_chaos(status=429, retry_after=1, fail_every=4)
    transport = Recording()
    client = make_client(max_queue_size=20_000, transport=transport)
    sent = burst(client, 8000)
    assert client.flush(timeout=60) == 0
    assert collector.unique_ids == {m["messageId"] for m in sent}
    log = sorted(transport.log)
    limits = [(answered, answered + float(ra)) for _, answered, status, ra in log if status == 429 and ra]
    assert limits
    early = [sent_at for sent_at, _, _, _ in log for start, end in limits if start < sent_at < end - 0.01]
    assert early == []
    assert most_in_flight(collector) > 1
    assert errors.calls == []


def test_a_server_that_is_down_does_not_slow_the_producer(make_client, errors):
    """Connections refused (the server is down): once that is known no call waits for delivery
    (pace_wait 0.5 s would otherwise hold thousands); the drop policy applies, every message counted."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    client = make_client(host=f"http://127.0.0.1:{port}", max_queue_size=2000, pace_wait=0.5)
    burst(client, 5000)
    stats = client.stats()
    # A call may wait (at most pace_wait) before the first attempt has failed; none after that.
    assert stats["paced_seconds"] <= 0.5 + 0.1, stats
    assert stats["dropped"]["queue_full"] > 0  # the queue's drop policy applied instead
    client.shutdown(timeout=0.2)
    assert_stats_sum(client.stats())


def test_a_server_that_never_answers_holds_calls_back_for_at_most_about_a_second(make_client, errors):
    """Requests that get no answer: once none was answered for a second, calls stop waiting for them."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts connections (backlog), never answers
    try:
        client = make_client(host=f"http://127.0.0.1:{hole.getsockname()[1]}", max_queue_size=2000, pace_wait=0.05)
        burst(client, 5000)
        stats = client.stats()
        # only calls past 90 % of the queue wait (for room), and only in the first second
        assert stats["paced"] <= 1.0 / 0.05 + 2, stats
        assert stats["dropped"]["queue_full"] > 0
        client.shutdown(timeout=0.2)
    finally:
        hole.close()


def test_extra_workers_end_when_idle(make_client, collector):
    """Workers added for a backlog end once they have had nothing to send for a while; one stays."""
    collector.delay = 0.1
    client = make_client(max_queue_size=10_000)
    client._engine.consumer.idle_exit_s = 0.3  # no public knob: how long an extra worker idles
    burst(client, 8000)
    assert client.flush(timeout=60) == 0
    assert most_in_flight(collector) > 1
    consumer = client._engine.consumer  # the extra workers too (client.consumers shows the first `thread`)
    assert wait_until(lambda: consumer.alive_threads() == 1, timeout=10)
    burst(client, 10)  # and the one left still delivers
    assert client.flush(timeout=10) == 0
    assert len(collector.unique_ids) == 8010


def test_an_explicit_upload_size_is_never_exceeded_with_a_backlog(make_client, collector, errors):
    """upload_size given (100): with a slow server and a backlog of thousands, no batch holds more,
    while requests still go out in parallel."""
    collector.delay = 0.1
    client = make_client(max_queue_size=20_000, upload_size=100)
    sent = burst(client, 6000)
    assert client.flush(timeout=60) == 0
    assert collector.unique_ids == {m["messageId"] for m in sent}
    assert max(len(b.messages) for b in collector.batches) == 100
    assert most_in_flight(collector) > 1
    assert errors.calls == []


def test_batches_grow_to_the_byte_limit_and_never_past_it(make_client, collector, errors):
    """With a backlog and no explicit upload_size, batches fill up to 500,000 bytes: the next
    message would not have fitted in any full batch."""
    collector.delay = 0.1
    client = make_client(max_queue_size=20_000)
    sent = burst(client, 12_000)
    assert client.flush(timeout=60) == 0
    assert len(collector.unique_ids) == len(sent)
    sizes = [b.raw_size for b in collector.batches]
    assert max(sizes) <= 500_000
    assert max(sizes) > 500_000 - 400  # one more ~320-byte message would not fit


def test_flush_returns_only_after_on_error_was_told(make_client, collector):
    """Messages the server refuses count as settled once on_error returned for them: a flush()
    made while on_error is still running waits for it."""
    entered, release = threading.Event(), threading.Event()
    told: List[dict] = []

    def on_error(error, items):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(10)
        told.extend(items)

    collector.fail_next(1, status=400)
    client = make_client(on_error=on_error)
    burst(client, 10)
    result: List[int] = []
    flusher = threading.Thread(target=lambda: result.append(client.flush(timeout=20)))
    flusher.start()
    assert entered.wait(10)
    flusher.join(0.6)  # past flush's 0.25 s re-check, when it used to return early
    assert flusher.is_alive()  # on_error has not returned: flush still waits
    release.set()
    flusher.join(10)
    assert result == [0] and len(told) == 10

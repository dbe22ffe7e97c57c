"""The worker pool in fake time: upload_interval, the pool growing and shrinking, batch sizes, the shutdown deadline."""

from __future__ import annotations

import threading
from typing import Dict

from analytics.destinations.cdp import DataPipelines
from analytics.testing import respond

from .conftest import ACT_S, balanced, until


def _blocked_until(release: threading.Event):
    """A handler whose requests all wait (a bounded real time) for ``release``, then answer 200."""
    def handler(request):
        release.wait(ACT_S)
        return respond(200)
    return handler


def test_a_partial_batch_waits_for_upload_interval_in_fake_time(make, clock):
    """Three messages and no flush: nothing is sent until the fake time passes upload_interval, then one request of three."""
    client, transport = make(upload_interval=0.5)
    for i in range(3):
        client.track("user-1", f"Event {i}")
    assert clock.wait_for_waiters(1)
    clock.advance(0.4)
    assert clock.wait_for_waiters(1) and transport.requests == []
    clock.advance(0.2)
    assert until(lambda: client.stats()["delivered"] == 3)
    assert [len(r.messages) for r in transport.requests] == [3]


def test_the_pool_grows_to_max_in_flight_and_shrinks_to_one_after_idle_exit(make, clock):
    """A backlog whose requests hang grows the pool to max_in_flight; idle_exit_s of fake time later one worker is left."""
    release = threading.Event()
    client, transport = make(_blocked_until(release), upload_size=10, max_in_flight=4)
    for i in range(80):
        client.track("user-1", f"Event {i}")
    consumer = client._engine.consumer  # the extra workers too (client.consumers shows the first `thread`)
    assert until(lambda: len(transport.requests) == 4)
    assert consumer.alive_threads() == 4
    release.set()
    assert until(lambda: client.stats()["delivered"] == 80)
    assert clock.wait_for_waiters(4)  # all idle
    clock.advance(consumer.idle_exit_s - 0.5)
    assert clock.wait_for_waiters(4) and consumer.alive_threads() == 4
    clock.advance(0.5)
    assert until(lambda: consumer.alive_threads() == 1)
    clock.advance(10 * consumer.idle_exit_s)
    assert clock.wait_for_waiters(1) and consumer.alive_threads() == 1


def test_an_explicit_upload_size_caps_every_batch_of_a_backlog(make):
    """upload_size=50 given explicitly: a backlog of 1,000 goes out in requests of 50, never more."""
    release = threading.Event()
    client, transport = make(_blocked_until(release), upload_size=50, max_in_flight=2)
    for i in range(1000):
        client.track("user-1", f"Event {i}")
    release.set()
    assert until(lambda: client.stats()["delivered"] == 1000)
    sizes = [len(r.messages) for r in transport.requests]
    assert sum(sizes) == 1000 and set(sizes) == {50}


def test_without_an_explicit_upload_size_a_backlog_fills_requests_to_the_byte_limit(make):
    """upload_size left at 100: a backlog's requests hold hundreds of messages, each body within one message of the byte limit."""
    release = threading.Event()
    client, transport = make(_blocked_until(release), max_in_flight=2)
    pad = "x" * 2000
    for i in range(2000):
        client.track("user-1", f"Event {i}", {"pad": pad})
    release.set()
    client.flush(timeout=0)  # the last partial batch need not wait for upload_interval
    assert until(lambda: client.stats()["delivered"] == 2000, timeout=3 * ACT_S)
    limit = DataPipelines.max_body_bytes
    one = max(len(r.content) // len(r.messages) for r in transport.requests) + 100
    bodies = [len(r.content) for r in transport.requests]
    assert max(bodies) <= limit
    full = [n for n in bodies if n > limit - one]
    assert len(full) >= 5 and max(len(r.messages) for r in transport.requests) > 200


def test_the_shutdown_deadline_reports_a_hung_batch_once_in_fake_time(make, clock, errors):
    """A request that gets no answer: shutdown(timeout=2) ends at fake +2 s and reports its 3 messages once, as dropped (shutdown)."""
    client, transport = make(lambda request: request.hang(), upload_size=3)
    for i in range(3):
        client.track("user-1", f"Event {i}")
    assert until(lambda: len(transport.requests) == 1)
    result: Dict[str, int] = {}
    stopper = threading.Thread(target=lambda: result.update(dropped=client.shutdown(timeout=2)), daemon=True)
    stopper.start()
    assert clock.wait_for_waiters(1)  # shutdown() waits for the deadline
    clock.advance(1.5)
    assert clock.wait_for_waiters(1) and stopper.is_alive() and errors.calls == []
    clock.advance(0.5)
    stopper.join(ACT_S)
    assert not stopper.is_alive() and result == {"dropped": 3}
    assert len(errors.calls) == 1
    error, items = errors.calls[0]
    assert error.reason == "shutdown" and [item["event"] for item in items] == ["Event 0", "Event 1", "Event 2"]
    stats = client.stats()
    assert stats["dropped"]["shutdown"] == 3 and stats["pending"] == 0 and balanced(stats)
    assert len(transport.requests) == 1  # nothing was tried after the deadline

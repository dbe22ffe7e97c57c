"""Retries, max_retry_time and Retry-After in fake time, on the in-memory transport."""

from __future__ import annotations

import threading
from typing import List

from analytics import RetryPolicy
from analytics.testing import respond

from .conftest import ACT_S, balanced, until

#: Every backoff wait is exactly 1 s (no jitter), so fake time tells when a retry is due.
ONE_SECOND = dict(base=1, cap=1, rng=lambda: 1.0)


def test_a_retry_goes_out_only_once_the_fake_time_passed_the_backoff(make, clock, errors):
    """500, 500, then 200: half the 1 s wait sends nothing, the whole wait sends the retry; delivered once."""
    answers = iter([500, 500])
    sent_at: List[float] = []

    def handler(request):
        sent_at.append(clock.now())
        return respond(next(answers, 200))

    client, _ = make(handler, upload_size=1, retry_policy=RetryPolicy(max_retries=5, max_time=60, **ONE_SECOND))
    client.track("user-1", "Signed Up")
    for attempts in (1, 2):
        assert until(lambda: len(sent_at) == attempts) and clock.wait_for_waiters(1)
        clock.advance(0.5)
        assert clock.wait_for_waiters(1) and len(sent_at) == attempts  # still waiting
        clock.advance(0.5)
    assert until(lambda: client.stats()["delivered"] == 1)
    assert sent_at == [0.0, 1.0, 2.0]
    stats = client.stats()
    assert stats["retries"] == 2 and stats["requests"] == 3 and errors.calls == [] and balanced(stats)


def test_max_retry_time_gives_up_in_fake_time(make, clock, errors):
    """A server that always answers 500, max_retry_time 3 s: attempts at 0, 1, 2 and 3 s, then on_error (retries_exhausted)."""
    sent_at: List[float] = []

    def handler(request):
        sent_at.append(clock.now())
        return respond(500)

    client, _ = make(handler, upload_size=1, retry_policy=RetryPolicy(max_retries=100, max_time=3, **ONE_SECOND))
    client.track("user-1", "Signed Up")
    for attempts in (1, 2, 3):
        assert until(lambda: len(sent_at) == attempts) and clock.wait_for_waiters(1)
        assert errors.calls == []
        clock.advance(1)
    assert until(lambda: len(errors.calls) == 1)
    assert sent_at == [0.0, 1.0, 2.0, 3.0]
    error, items = errors.calls[0]
    assert error.reason == "retries_exhausted" and "3 s retry time" in error.gave_up
    assert [item["event"] for item in items] == ["Signed Up"]
    stats = client.stats()
    assert stats["failed"]["retries_exhausted"] == 1 and stats["retries"] == 3 and stats["pending"] == 0
    assert balanced(stats)


def test_retry_after_holds_every_worker_until_the_fake_time_passed_it(make, clock, errors):
    """One of four requests in flight gets 429 Retry-After: 30: no worker sends before fake +30 s, then all resume."""
    first, others = threading.Event(), threading.Event()
    sent_at: List[float] = []
    lock = threading.Lock()

    def handler(request):
        with lock:
            index = len(sent_at)
            sent_at.append(clock.now())
        if index == 0:
            first.wait(ACT_S)
            return respond(429, headers={"Retry-After": "30"})
        if index < 4:
            others.wait(ACT_S)
        return respond(200)

    client, _ = make(handler, upload_size=10, max_in_flight=4,
                     retry_policy=RetryPolicy(max_retries=5, max_time=120, **ONE_SECOND))
    for i in range(80):
        client.track("user-1", f"Event {i}")
    assert until(lambda: len(sent_at) == 4)  # four requests in flight
    first.set()
    assert clock.wait_for_waiters(1)  # the worker told to wait (Retry-After is the floor of its retry wait)
    others.set()
    assert clock.wait_for_waiters(4)  # the three others, answered 200, hold their next batches
    clock.advance(29.5)
    assert clock.wait_for_waiters(4) and len(sent_at) == 4
    clock.advance(0.5)
    assert until(lambda: client.stats()["delivered"] == 80)
    assert sent_at[:4] == [0.0] * 4 and min(sent_at[4:]) == 30.0
    assert len(sent_at) == 9  # 8 batches of 10, one of them twice
    stats = client.stats()
    assert stats["retries"] == 1 and errors.calls == [] and balanced(stats)

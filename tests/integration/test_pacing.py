"""Pacing: a producer in a tight loop gives the consumer its turn instead of overflowing the queue."""

from __future__ import annotations

import threading

from analytics import RetryPolicy


PROPS = {"sku": "sku-1", "price": 19.99, "qty": 3, "tags": ["a", "b"], "meta": {"color": "red"}}


def burst(client, n: int, threads: int = 1) -> list:
    results: list = []

    def produce(k: int) -> None:
        out = [client.track(f"user-{i % 1000}", "Product Purchased", dict(PROPS, seq=k * n + i))[0] for i in range(n)]
        results.extend(out)

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return results


def test_tight_loop_burst_loses_nothing(make_client, collector, errors):
    """20,000 calls in a tight loop into a 2,000-message queue: paced, so none is dropped."""
    client = make_client(max_queue_size=2000, pace_wait=1.0)
    results = burst(client, 20_000)
    assert all(results)
    assert client.flush(timeout=30) == 0
    s = client.stats()
    assert s["dropped"]["queue_full"] == 0 and s["delivered"] == 20_000
    assert s["paced"] > 0
    assert collector.wait_for(20_000, timeout=10) and collector.duplicates == 0
    assert not errors.calls


def test_pacing_off_never_waits(make_client, collector):
    client = make_client(max_queue_size=2000, pace_wait=0)
    burst(client, 5_000)
    client.flush(timeout=30)
    s = client.stats()
    assert s["paced"] == 0
    lost = s["dropped"]["queue_full"]
    assert s["delivered"] + lost == 5_000


def test_no_pacing_while_the_consumer_backs_off(make_client, collector):
    """When the server fails, calls must not wait for a consumer that is sleeping before a retry."""
    collector.fail_next(1000, status=503)
    client = make_client(
        max_queue_size=400, upload_size=10, pace_wait=5.0, retry_policy=RetryPolicy(max_retries=1000, max_time=60, base=4, cap=4)
    )
    client.track("u1", "First")
    client.flush(timeout=0)
    settled = threading.Event()
    for _ in range(200):  # bounded: until the first attempt failed and the consumer sleeps (2-4 s)
        if client.stats()["requests"] >= 1 and client._engine.consumer._backing_off == 1:
            break
        settled.wait(0.01)
    assert client._engine.consumer._backing_off == 1
    burst(client, 300)
    assert client.stats()["paced"] == 0


def test_pace_wait_is_checked(make_client):
    import pytest

    from analytics import ConfigurationError

    with pytest.raises(ConfigurationError):
        make_client(pace_wait=-1)
    client = make_client()
    client.pace_wait = 0
    assert client._engine.pace_from > 10**9
    client.pace_wait = 0.01
    assert client._engine.pace_from == 2500

"""Pacing: a producer in a tight loop gives the consumer its turn instead of overflowing the queue.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_pacing.py``."""

from __future__ import annotations

from ..integration.test_pacing import burst  # shared with the tests there


def test_several_producer_threads_are_paced_together(make_client, collector):
    client = make_client(max_queue_size=2000, pace_wait=1.0)
    results = burst(client, 5_000, threads=4)
    assert len(results) == 20_000 and all(results)
    assert client.flush(timeout=30) == 0
    assert client.stats()["dropped"]["queue_full"] == 0
    assert len(collector.unique_ids) == 20_000

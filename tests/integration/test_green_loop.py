"""A live client when green threads move to a new loop (gunicorn green workers, after ``post_fork``); flush and its lock.

eventlet is stood in for by modules put in ``sys.modules``: :mod:`analytics.engine.hosts` only looks there.
(The loop checks themselves: tests/unit/test_green_loop.py; real gunicorn workers: tests/system/test_fork.py.)
"""

from __future__ import annotations

import threading
import time

from ..unit.test_green_loop import eventlet  # noqa: F401  (the fixture: a stand-in eventlet)


def test_a_client_moves_what_was_queued_to_the_new_hub_and_delivers_it_once(eventlet, make_client, collector):
    client = make_client(upload_interval=60)
    ids = [client.track("u", "before")[1]["messageId"] for _ in range(3)]
    old = client._engine
    eventlet.use_hub()  # the old engine's consumer "never runs again"
    ids.append(client.track("u", "after")[1]["messageId"])
    assert client._engine is not old
    assert client.flush(timeout=10) == 0
    assert collector.wait_for(4, 10)
    assert collector.unique_ids == set(ids) and collector.stats()["duplicates"] == 0
    assert collector.stats()["messages"] == 4


def test_the_exit_drain_moves_to_the_new_hub_when_no_call_came_after_it(eventlet, make_client, collector):
    client = make_client(upload_interval=60)
    ids = [client.track("u", "before")[1]["messageId"] for _ in range(2)]
    eventlet.use_hub()
    client._exit_drain()()  # the exit drain (atexit or garbage collection) with no call since
    assert collector.wait_for(2, 10)
    assert collector.unique_ids == set(ids) and collector.stats()["messages"] == 2


def test_flush_never_waits_past_its_timeout_for_the_lock(make_client):
    client = make_client(upload_interval=60)
    client.track("u", "e")
    lock = client._engine.consumer._lock
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        pending = client.flush(timeout=0.3)
        took = time.monotonic() - started
    finally:
        release.set()
        t.join(5)
    assert took < 2, took
    assert pending == 1
    assert client.flush(timeout=10) == 0

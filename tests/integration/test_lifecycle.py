"""Lifecycle: flush, shutdown, exit drain, send=False, sync_mode, threads, the facade's settings, logging."""

from __future__ import annotations

import base64
import logging
import threading

import pytest

import analytics
from analytics import ConfigurationError, ShutdownError
from analytics.collector import Collector

from ..conftest import WRITE_KEY, Errors, wait_until


def _alive(client: analytics.Client) -> int:
    """How many of the client's ``thread`` delivery threads run (client.consumers)."""
    return sum(consumer.is_alive() for consumer in client.consumers)


def test_flush_sends_a_partial_batch_at_once(make_client, collector):
    """flush() does not wait for upload_interval: 3 messages with a 60 s interval go out now."""
    client = make_client(upload_interval=60)
    for i in range(3):
        client.track(f"u{i}", "E")
    assert client.flush(timeout=5) == 0
    assert len(collector.messages) == 3


def test_flush_with_timeout_returns_the_pending_count(make_client, collector):
    """flush(timeout) returns at the deadline with how many are still pending; a later flush finishes."""
    collector.delay = 0.5
    client = make_client()
    for i in range(5):
        client.track(f"u{i}", "E")
    assert client.flush(timeout=0.05) == 5
    assert client.flush(timeout=10) == 0
    assert len(collector.messages) == 5


def test_flush_waits_only_for_what_was_queued_before_it(make_client, collector):
    """Messages queued by another thread during a flush do not keep it waiting."""
    client = make_client(upload_size=10)
    for i in range(25):
        client.track(f"u{i}", "E")
    stop = threading.Event()

    def produce():
        while not stop.is_set():
            client.track("bg", "E")

    t = threading.Thread(target=produce)
    t.start()
    try:
        assert client.flush(timeout=10) == 0
    finally:
        stop.set()
        t.join(5)
    assert {m["userId"] for m in collector.messages} >= {f"u{i}" for i in range(25)}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_flush_restarts_a_consumer_thread_that_died(make_client, collector):
    """If the consumer thread is gone, flush() starts a new one instead of hanging."""

    def deadly(error, items):
        raise KeyboardInterrupt  # not an Exception: ends the consumer thread

    collector.fail_next(1, status=400)
    client = make_client(on_error=deadly)
    client.track("u0", "E")
    assert wait_until(lambda: not client.consumers[0].is_alive(), 10)
    client.track("u1", "E")
    client.track("u2", "E")
    assert client.flush(timeout=10) == 0
    assert [m["userId"] for m in collector.messages] == ["u1", "u2"]


def test_flush_inside_on_error_does_not_deadlock(make_client, collector):
    """Calling flush() from on_error returns instead of waiting for itself."""
    seen = []

    def handler(error, items):
        seen.append(client.flush(timeout=None))

    collector.fail_next(1, status=400)
    client = make_client(on_error=handler)
    client.track("u0", "E")
    assert client.flush(timeout=10) == 0
    assert len(seen) == 1


def test_shutdown_drains_then_stops_every_thread(make_client, collector):
    """shutdown() delivers what is queued, joins all consumer threads, and closes the session."""
    client = make_client(thread=3, upload_interval=60)
    for i in range(250):
        client.track(f"u{i}", "E")
    assert _alive(client) == 3
    assert client.shutdown() == 0
    assert _alive(client) == 0
    assert len(collector.messages) == 250
    assert collector.duplicates == 0


def test_idle_shutdown_returns_at_once_and_join_is_the_same(make_client):
    """An idle client shuts down without waiting for an interval; join() does the same."""
    client = make_client(upload_interval=60)
    client.track("u", "E")
    client.flush(timeout=5)
    assert client.join() == 0
    assert _alive(client) == 0


def test_shutdown_deadline_reports_what_is_left(make_client, collector, errors):
    """shutdown(timeout) stops at the deadline and reports undelivered messages as dropped (shutdown)."""
    collector.fail_next(1000, status=503)
    client = make_client()
    for i in range(5):
        client.track(f"u{i}", "E")
    dropped = client.shutdown(timeout=0.3)
    assert _alive(client) == 0
    assert len(errors.items) == 5
    assert {e.reason for e, _ in errors.calls} <= {"shutdown", "retries_exhausted"}
    stats = client.stats()
    assert stats["pending"] == 0
    assert stats["dropped"]["shutdown"] + stats["failed"]["retries_exhausted"] == 5
    assert dropped == stats["dropped"]["shutdown"]


def test_calls_after_shutdown_are_refused_and_reported(make_client, errors):
    """After shutdown, a call returns (False, msg) and on_error gets a ShutdownError."""
    client = make_client()
    client.shutdown()
    ok, msg = client.track("u", "E")
    assert not ok
    (error, items), = errors.calls
    assert isinstance(error, ShutdownError) and items == [msg]
    stats = client.stats()
    assert stats["accepted"] == 1 and stats["dropped"]["shutdown"] == 1


def test_stats_sum_up_under_faults(make_client, collector, errors):
    """accepted == delivered + failed + dropped + pending, with rejections, retries and drops mixed."""
    collector.fail_next(1, status=400)
    client = make_client(max_queue_size=30, upload_interval=60)
    for i in range(40):
        client.track(f"u{i}", "E")  # 10 of these find the queue full
    assert client.flush(timeout=10) == 0  # the batch of 30 is rejected
    collector.fail_next(2, status=503)
    client.upload_size = 10
    for i in range(20):
        client.track(f"v{i}", "E")
    assert client.flush(timeout=10) == 0  # delivered after retries
    s = client.stats()
    lost = sum(s["failed"].values()) + sum(s["dropped"].values())
    assert s["accepted"] == 60 == s["delivered"] + lost + s["pending"]
    assert (s["delivered"], s["failed"]["rejected"], s["dropped"]["queue_full"]) == (20, 30, 10)
    assert s["retries"] == 2
    assert len(errors.items) == 40


def test_context_manager_drains_on_exit(collector):
    """`with Client(...)` delivers everything when the block ends."""
    with analytics.Client(WRITE_KEY, host=collector.url, upload_interval=60) as client:
        for i in range(7):
            client.track(f"u{i}", "E")
    assert len(collector.messages) == 7
    assert _alive(client) == 0


def test_thread_option_starts_and_tracks_every_thread(make_client, collector):
    """thread=4 runs four consumers that all deliver and are all joined (the peers kept only the last)."""
    collector.delay = 0.01
    client = make_client(thread=4, upload_size=5)
    for i in range(200):
        client.track(f"u{i}", "E")
    assert _alive(client) == 4
    assert client.flush(timeout=20) == 0
    assert len(collector.unique_ids) == 200
    client.shutdown()
    assert _alive(client) == 0


def test_send_false_validates_but_sends_nothing(make_client, collector):
    """send=False returns (True, msg) and nothing leaves the process."""
    client = make_client(send=False)
    ok, msg = client.track("u", "E")
    assert ok and msg["event"] == "E"
    with pytest.raises(analytics.InvalidMessageError):
        client.track("u")
    assert client.flush(timeout=5) == 0
    assert collector.stats()["requests"] == 0


def test_facade_send_false_needs_no_write_key(collector):
    """analytics.send = False works without a write key, as in the seed's testing advice."""
    analytics.send = False
    assert analytics.track("u", "E")[0]
    assert collector.stats()["requests"] == 0


def test_sync_mode_posts_in_the_callers_thread(make_client, collector):
    """sync_mode=True delivers before the call returns, with no consumer thread."""
    client = make_client(sync_mode=True)
    ok, msg = client.track("u", "E")
    assert ok
    assert collector.messages == [analytics.messages.as_sent(msg)]
    assert _alive(client) == 0


def test_sync_mode_retries_with_the_same_policy(make_client, collector, errors):
    """sync_mode retries 5xx like the consumer, and reports a 400 to on_error with (False, msg)."""
    collector.fail_next(2, status=503)
    client = make_client(sync_mode=True)
    assert client.track("u", "E")[0]
    assert len(collector.messages) == 1
    collector.fail_next(1, status=400)
    ok, msg = client.track("u", "F")
    assert not ok
    assert errors.items == [msg]


def test_both_import_paths_are_one_module():
    """customerio.analytics and analytics are the same module, with one Client class."""
    import customerio
    from customerio import analytics as a1
    from customerio.analytics import Client as C1
    from customerio.analytics.client import Client as C2

    import analytics as a2
    from analytics import Client as C3

    assert a1 is a2 is customerio.analytics
    assert C1 is C2 is C3


def test_facade_settings_take_effect_after_the_first_call(collector):
    """Module settings changed after the shared client exists apply to it at once."""
    errors = Errors()
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    analytics.track("u1", "first")
    assert analytics.flush(timeout=10) == 0
    client = analytics.default_client
    analytics.gzip = True
    analytics.upload_size = 7
    analytics.max_queue_size = 50
    analytics.on_error = errors
    analytics.timeout = 3
    analytics.max_retries = 0
    analytics.track("u1", "second")
    analytics.flush(timeout=10)
    assert analytics.default_client is client
    assert (client.gzip, client.upload_size, client.max_queue_size, client.timeout) == (True, 7, 50, 3)
    assert client.retry_policy.max_retries == 0
    assert collector.batches[-1].compressed_size is not None
    collector.fail_next(1, status=500)
    analytics.track("u1", "third")
    analytics.flush(timeout=10)
    assert [e.status for e, _ in errors.calls] == [500]


def test_facade_endpoint_is_an_alias_of_host():
    """analytics.endpoint = URL sets host (the seed's EU example), and reads back."""
    analytics.endpoint = analytics.EU_HOST
    assert analytics.host == analytics.endpoint == "https://cdp-eu.customer.io"


def test_facade_host_change_moves_the_next_batch(collector):
    """Changing analytics.host after the first call sends the next batch to the new host."""
    with Collector(write_keys={WRITE_KEY}) as other:
        analytics.write_key = WRITE_KEY
        analytics.host = collector.url
        analytics.track("u", "one")
        analytics.flush(timeout=10)
        analytics.host = other.url
        analytics.track("u", "two")
        analytics.flush(timeout=10)
        assert [m["event"] for m in collector.messages] == ["one"]
        assert [m["event"] for m in other.messages] == ["two"]


def test_facade_checks_settings_when_assigned():
    """A bad module setting raises ConfigurationError at assignment, not at the first call."""
    with pytest.raises(ConfigurationError):
        analytics.upload_size = 0
    with pytest.raises(ConfigurationError):
        analytics.on_error = "print"


def test_facade_stats_and_shutdown(collector):
    """analytics.stats() reports the shared client; shutdown() drains it (it stays in default_client,
    shut down) and the next call starts a new one."""
    assert analytics.stats()["accepted"] == 0
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    for i in range(3):
        analytics.identify(f"u{i}", {"plan": "pro"})
    first = analytics.default_client
    assert analytics.shutdown() == 0
    assert len(collector.messages) == 3
    assert analytics.default_client is first and first.track("u", "late")[0] is False
    analytics.track("u", "E")
    assert analytics.default_client is not first
    assert analytics.flush(timeout=10) == 0
    assert analytics.stats()["delivered"] == 1


def test_proxies_are_used(make_client, collector):
    """The proxies option routes requests through the given proxy."""
    # The target is a closed loopback port: only the proxy (the collector) can answer.
    client = make_client(host="http://127.0.0.1:9", proxies={"http": collector.url})
    client.track("u", "E")
    assert client.flush(timeout=10) == 0
    assert len(collector.messages) == 1


def test_debug_logs_at_debug_without_the_write_key(make_client, collector, caplog):
    """debug=True logs through the customerio logger at DEBUG; the write key never appears."""
    caplog.set_level(logging.NOTSET)
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    collector.fail_next(1, status=401)
    client = make_client(debug=True)
    assert logging.getLogger("customerio").level == logging.DEBUG
    client.track("u", "E")
    client.flush(timeout=10)
    records = [r for r in caplog.records if r.name.startswith("customerio")]
    assert any(r.levelno == logging.DEBUG for r in records)
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    for r in records:
        text = r.getMessage()
        assert WRITE_KEY not in text and token not in text
    assert root.handlers == handlers_before
    client.shutdown()
    assert logging.getLogger("customerio").level != logging.DEBUG


def test_library_does_not_change_the_log_level_without_debug(make_client):
    """Without debug, the customerio logger's level is left alone."""
    logger = logging.getLogger("customerio")
    before = logger.level
    make_client().track("u", "E")
    assert logger.level == before


def test_an_unreferenced_client_is_collected_and_drains(collector):
    """A client nobody references is garbage collected: its queue is delivered and its thread stops."""
    import gc
    import weakref

    client = analytics.Client(WRITE_KEY, host=collector.url, upload_interval=60)
    client.track("u", "E")
    consumer = client._engine.consumer  # the views of client.consumers would keep the client alive
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None
    assert consumer.stopped and consumer.alive_threads() == 0
    assert len(collector.messages) == 1


def _invariant(s: dict) -> bool:
    lost = sum(s["failed"].values()) + sum(s["dropped"].values())
    return s["accepted"] == s["delivered"] + lost + s["pending"]


@pytest.mark.parametrize(
    "count, callback_s, threads",
    [(500, 0.35, 1), (500, 0.35, 3), (50_000, 0.0, 1)],
    ids=["slow-on_error", "slow-on_error-3-threads", "big-queue"],
)
def test_the_shutdown_deadline_reports_each_message_once(collector, count, callback_s, threads):
    """With reporting slower than the deadline allows, each message goes to on_error once and the stats add up throughout."""
    import time

    reported: list = []

    def slow_on_error(error, items):
        reported.extend(item["messageId"] for item in items)
        time.sleep(callback_s)  # the callback itself is slow

    collector.down()
    client = analytics.Client(WRITE_KEY, host=collector.url, on_error=slow_on_error, thread=threads,
                              max_queue_size=count, upload_interval=0.01,
                              retry_policy=analytics.RetryPolicy(max_retries=1000, max_time=300, base=0.01, cap=0.02))
    for i in range(count):
        assert client.track("u1", "Deadline", {"seq": i})[0]
    broken: list = []
    stop = threading.Event()

    def sample() -> None:
        for _ in range(100_000):
            if stop.is_set():
                return
            s = client.stats()
            if not _invariant(s):
                broken.append(s)
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    dropped = client.shutdown(timeout=0.1)
    stop.set()
    sampler.join(timeout=10)
    assert wait_until(lambda: _alive(client) == 0, 10)
    s = client.stats()
    assert len(reported) == len(set(reported)) == count - s["delivered"]
    assert s["pending"] == 0 and _invariant(s), s
    assert dropped <= s["dropped"]["shutdown"]
    assert not broken, broken[0]

"""The clock seam: FakeClock's semantics, the system clock by default, and Client(clock=...) checked."""

from __future__ import annotations

import threading
import time

import pytest

from analytics import Client, ConfigurationError
from analytics.engine.clock import SYSTEM_CLOCK, Clock, SystemClock
from analytics.testing import FakeClock, MemoryTransport

from ..conftest import OFFLINE_HOST, WRITE_KEY
from .conftest import ACT_S


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_fake_time_moves_only_when_advanced(clock):
    """now() is the start time plus the advances, whatever real time passes."""
    assert clock.now() == 0.0
    clock.advance(1.5)
    clock.advance(0)
    assert clock.now() == 1.5
    assert FakeClock(start=100).now() == 100.0


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "1", None, True])
def test_advance_refuses_what_is_not_a_forward_step(clock, seconds):
    """advance() raises ConfigurationError naming seconds for a negative, infinite or non-number step."""
    with pytest.raises(ConfigurationError, match="seconds"):
        clock.advance(seconds)
    assert clock.now() == 0.0


def test_sleep_ends_when_the_fake_time_reaches_it(clock):
    """sleep(1) blocks through an advance of 0.5 and ends at the advance that reaches 1."""
    sleeper = _in_thread(lambda: clock.sleep(1))
    assert clock.wait_for_waiters(1)
    clock.advance(0.5)
    assert clock.wait_for_waiters(1) and sleeper.is_alive()
    clock.advance(0.5)
    sleeper.join(ACT_S)
    assert not sleeper.is_alive()


def test_wait_returns_true_when_notified_and_false_at_the_fake_timeout(clock):
    """wait(condition, 10) returns True on notify before the fake deadline, False once advanced past it."""
    condition = threading.Condition()
    results = []

    def waiter():
        with condition:
            results.append(clock.wait(condition, 10))

    first = _in_thread(waiter)
    assert clock.wait_for_waiters(1)
    with condition:
        condition.notify()
    first.join(ACT_S)
    second = _in_thread(waiter)
    assert clock.wait_for_waiters(1)
    clock.advance(9)
    assert clock.wait_for_waiters(1) and second.is_alive()
    clock.advance(1)
    second.join(ACT_S)
    assert results == [True, False]


def test_an_untimed_wait_ends_only_when_notified(clock):
    """wait(condition, None) is counted as waiting, outlasts any advance and returns True on notify."""
    condition = threading.Condition()
    results = []

    def waiter():
        with condition:
            results.append(clock.wait(condition, None))

    thread = _in_thread(waiter)
    assert clock.wait_for_waiters(1)
    clock.advance(1e6)
    assert clock.wait_for_waiters(1) and thread.is_alive()
    with condition:
        condition.notify()
    thread.join(ACT_S)
    assert results == [True]


def test_join_ends_at_the_fake_timeout_or_when_the_thread_ends(clock):
    """join(thread, 2) returns at fake +2 with the thread still running, and at once once it ended."""
    release = threading.Event()
    worker = _in_thread(lambda: release.wait(ACT_S))
    joiner = _in_thread(lambda: clock.join(worker, 2))
    assert clock.wait_for_waiters(1)
    clock.advance(2)
    joiner.join(ACT_S)
    assert not joiner.is_alive() and worker.is_alive()
    release.set()
    joiner = _in_thread(lambda: clock.join(worker, None))
    joiner.join(ACT_S)
    assert not joiner.is_alive() and not worker.is_alive()


def test_wait_for_waiters_gives_up_after_its_real_timeout(clock):
    """With nobody waiting on the clock, wait_for_waiters(1) returns False after its (real) timeout."""
    started = time.monotonic()
    assert clock.wait_for_waiters(1, timeout=0.05) is False
    assert time.monotonic() - started < ACT_S


def test_the_system_clock_is_the_default_and_both_clocks_are_clocks():
    """A Client without clock= runs on the system's monotonic clock; both clocks satisfy the Clock protocol."""
    client = Client(WRITE_KEY, host=OFFLINE_HOST, transport=MemoryTransport())
    try:
        assert client._engine.consumer.clock is SYSTEM_CLOCK
        assert client._engine.consumer.backpressure._clock is time.monotonic
    finally:
        client.shutdown(timeout=0)
    assert isinstance(SystemClock(), Clock) and isinstance(FakeClock(), Clock)
    condition = threading.Condition()
    with condition:
        assert SYSTEM_CLOCK.wait(condition, 0) is False


def test_a_client_refuses_a_clock_that_is_not_one():
    """Client(clock=...) with an object that lacks the Clock methods raises ConfigurationError naming clock."""
    with pytest.raises(ConfigurationError, match="clock"):
        Client(WRITE_KEY, host=OFFLINE_HOST, transport=MemoryTransport(), clock=time.monotonic)

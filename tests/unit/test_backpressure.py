"""Backpressure on a fake clock: the delivery rate of the last second, the spacing of producers' calls, a paced call."""

from __future__ import annotations

import threading

import pytest

from analytics.engine.backpressure import MAX_DEBT_S, MIN_SLEEP_S, WINDOW_S, Backpressure
from analytics.testing import FakeClock, respond

from .conftest import ACT_S, until


@pytest.fixture
def pressure(clock: FakeClock) -> Backpressure:
    return Backpressure(clock)


def _deliver(clock: FakeClock, pressure: Backpressure, count: int, seconds: float) -> None:
    """A request of ``count`` messages that took ``seconds`` from taking its batch to its answer."""
    taken = clock.now()
    clock.advance(seconds)
    pressure.delivered(count, taken)


def test_the_rate_is_messages_delivered_per_second_since_the_first_batch_was_taken(clock, pressure):
    """100 messages delivered 0.5 s after their batch was taken is 200 messages/s."""
    _deliver(clock, pressure, 100, 0.5)
    assert pressure.rate() == pytest.approx(200)


def test_overlapping_requests_add_up(clock, pressure):
    """Two batches taken at once and answered 0.5 s later: their messages add up over the same 0.5 s."""
    taken = clock.now()
    clock.advance(0.5)
    pressure.delivered(100, taken)
    pressure.delivered(100, taken)
    assert pressure.rate() == pytest.approx(400)


def test_the_rate_is_unknown_before_any_delivery_and_a_second_after_the_last(clock, pressure):
    """No delivery yet, or none in the last WINDOW_S: rate() and delay() are None."""
    assert pressure.rate() is None and pressure.delay(0.5) is None
    _deliver(clock, pressure, 100, 0.5)
    assert pressure.rate() is not None
    clock.advance(WINDOW_S)
    assert pressure.rate() is None and pressure.delay(0.5) is None


def test_deliveries_older_than_the_window_no_longer_count(clock, pressure):
    """The rate follows the last second: a slow delivery 2 s ago no longer weighs on a fast one now."""
    _deliver(clock, pressure, 10, 1.0)  # 10/s
    clock.advance(2 * WINDOW_S)
    _deliver(clock, pressure, 100, 0.1)  # 1000/s
    assert pressure.rate() == pytest.approx(1000)


@pytest.mark.parametrize("fill,speed", [(0.3, 1.25), (0.6, 1.0), (0.8, 0.8)])
def test_calls_are_spaced_to_the_rate_times_a_speed_factor_of_the_fill(clock, pressure, fill, speed):
    """At 200/s each call moves the bucket on by 1/(200 x speed): 1.25 below half full, 1 to 3/4, 0.8 beyond."""
    _deliver(clock, pressure, 100, 0.5)
    step = 1 / (200 * speed)
    assert pressure.delay(fill) == pytest.approx(step)
    assert pressure.delay(fill) == pytest.approx(2 * step)  # no time passed: the calls get ahead


def test_a_producer_that_sleeps_what_it_is_told_stays_one_step_ahead(clock, pressure):
    """Sleeping each delay (in fake time) keeps every later call's delay at one step."""
    _deliver(clock, pressure, 100, 0.5)
    for _ in range(20):
        wait = pressure.delay(0.6)
        assert wait == pytest.approx(0.005)
        clock.advance(wait)


def test_a_call_less_than_a_millisecond_ahead_does_not_sleep(clock, pressure):
    """At 10,000/s a call is 0.1 ms ahead: delay 0 until ten calls add up to MIN_SLEEP_S."""
    _deliver(clock, pressure, 1000, 0.1)
    delays = [pressure.delay(0.6) for _ in range(10)]
    assert delays[:9] == [0.0] * 9
    assert delays[9] == pytest.approx(MIN_SLEEP_S)


def test_the_debt_is_capped(clock, pressure):
    """However many calls come at once, none is told to sleep more than MAX_DEBT_S."""
    _deliver(clock, pressure, 100, 0.5)
    delays = [pressure.delay(0.8) for _ in range(1000)]
    assert max(delays) == pytest.approx(MAX_DEBT_S) and delays[-1] == pytest.approx(MAX_DEBT_S)


def test_reset_forgives_the_debt(clock, pressure):
    """After reset() (delivery became impossible) the next call is one step ahead again, not the old debt."""
    _deliver(clock, pressure, 100, 0.5)
    for _ in range(10):
        pressure.delay(0.6)
    pressure.reset()
    assert pressure.delay(0.6) == pytest.approx(0.005)


def test_a_producer_is_paced_in_fake_time(make, clock):
    """Past a quarter of the queue with a known delivery rate, a call sleeps on the client's clock until fake time moves."""
    release = threading.Event()
    release.set()

    def handler(request):
        release.wait(ACT_S)
        return respond(200)

    client, transport = make(handler, max_queue_size=100, upload_size=10, max_in_flight=1, pace_wait=0.004)
    for i in range(10):
        client.track("user-1", f"Event {i}")
    assert until(lambda: client.stats()["delivered"] == 10)  # the delivery rate is known now
    release.clear()
    for i in range(10):
        client.track("user-1", f"Held {i}")
    assert until(lambda: len(transport.requests) == 2)  # the worker waits for that answer, not on the clock
    producer = threading.Thread(target=lambda: [client.track("user-1", f"Paced {i}") for i in range(60)], daemon=True)
    producer.start()
    assert clock.wait_for_waiters(1) and producer.is_alive()  # the producer sleeps in fake time
    assert client.stats()["paced"] == 0
    for _ in range(1000):  # each step lets the producer's sleep end; it sleeps again a few calls later
        if not producer.is_alive():
            break
        clock.advance(0.002)
        assert until(lambda: not producer.is_alive() or clock.waiting() == 1)
    assert not producer.is_alive()
    stats = client.stats()
    assert stats["paced"] >= 1 and 0 < stats["paced_seconds"] <= stats["paced"] * 0.004
    release.set()
    assert until(lambda: client.stats()["delivered"] == 80)

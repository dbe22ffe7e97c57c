"""Backpressure: a producer that fills the queue faster than it drains is slowed to the delivery rate.

The consumer tells :class:`Backpressure` how many messages each request
delivered and when the request's batch was taken; from the last second of
those it knows the rate at which the server takes messages now (with every
connection in flight).  A producer past a quarter of the queue asks
:meth:`Backpressure.delay` before returning from its call: the calls are
spaced, as a leaky bucket, to that rate (somewhat faster while the queue is
less than half full, somewhat slower once it is three quarters full), and a
call sleeps only when the calls before it got at least a millisecond ahead.
So a burst far larger than the queue is delivered whole, with each call
slowed by microseconds on average and by at most ``pace_wait`` seconds.

Sleeping also hands the GIL to the consumer's threads, which a producer in a
tight loop otherwise keeps from them: on loopback this, not the server, is
what limits delivery.

When no request finished in the last second the rate is unknown and
:meth:`delay` says so (``None``); the consumer then decides (it waits for
the first answers of a new backlog, and never while the server is failing or
asked for a pause, when delivery is impossible: then the queue's drop policy
applies).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Optional, Tuple

from ..clock import SYSTEM_CLOCK, Clock

__all__ = ["Backpressure", "WINDOW_S"]

#: Deliveries of the last this many seconds give the rate.
WINDOW_S = 1.0
#: A call sleeps once the calls before it are this far ahead of the rate.
MIN_SLEEP_S = 0.001
#: Calls may get at most this far ahead of the rate (a longer debt is forgiven).
MAX_DEBT_S = 0.25


def _speed(fill: float) -> float:
    """How much faster than the delivery rate producers may go at this fill of the queue (0..1)."""
    if fill < 0.5:
        return 1.25
    if fill < 0.75:
        return 1.0
    return 0.8


class Backpressure:
    """The delivery rate of the last second and a leaky bucket that spaces producers' calls to it."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock.now
        self._lock = threading.Lock()
        self._done: Deque[Tuple[float, float, int]] = deque()  # (taken at, settled at, messages)
        self._rate: Optional[float] = None  # as of the last delivery (delay() is on the hot path)
        self._rate_until = 0.0  # ... and unknown again after this clock time
        self._due = 0.0  # the clock time by which the calls paced so far would have been made at the rate

    def delivered(self, count: int, taken_at: float) -> None:
        """A request delivered ``count`` messages of a batch taken from the queue at ``taken_at``."""
        now = self._clock()
        with self._lock:
            done = self._done
            done.append((taken_at, now, count))
            while done[0][1] < now - WINDOW_S:
                done.popleft()
            # From the moment the earliest of these batches was taken: batches sent at once overlap.
            since = min(taken for taken, _, _ in done)
            self._rate = sum(n for _, _, n in done) / max(now - since, 1e-3)
            self._rate_until = now + WINDOW_S

    def rate(self) -> Optional[float]:
        """Messages per second delivered in the last second, or None when none was."""
        with self._lock:
            return self._rate if self._clock() < self._rate_until else None

    def delay(self, fill: float) -> Optional[float]:
        """Seconds the calling producer should sleep now (often 0), or None when the rate is unknown.

        ``fill`` is the share of the queue in use (0..1).  Each call moves the
        bucket on by one message at the rate; the sleep is what the calls so
        far are ahead of it, once that reaches :data:`MIN_SLEEP_S`.
        """
        now = self._clock()
        with self._lock:
            rate = self._rate
            if rate is None or now >= self._rate_until:
                self._due = now
                return None
            due = max(self._due, now) + 1.0 / (rate * _speed(fill))
            self._due = min(due, now + MAX_DEBT_S)
            ahead = self._due - now
        return ahead if ahead >= MIN_SLEEP_S else 0.0

    def reset(self) -> None:
        """Forget the debt (delivery became impossible: producers must not wait)."""
        with self._lock:
            self._due = self._clock()

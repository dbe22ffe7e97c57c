"""Counters that account for every message a client was given.

Each message the client accepted (valid, ``send`` on) ends in exactly one of
``delivered``, ``failed`` (by reason), ``dropped`` (by reason) or ``pending``,
so ``accepted == delivered + sum(failed) + sum(dropped) + pending`` at any
quiet moment.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, TypedDict

from .errors import DROPPED_REASONS, FAILED_REASONS

__all__ = ["Stats", "StatsSnapshot"]


class _SharedQueueFigures(TypedDict, total=False):
    # present only with a Redis queue (see docs/guides/redis.rst)
    redis: Dict[str, Any]
    handed_off: int
    received: int


class StatsSnapshot(_SharedQueueFigures):
    """What ``stats()`` returns (see "Stats" in docs/guides/delivery.rst): every key is always
    there, except the shared queue's ``redis``, ``handed_off`` and ``received``."""

    accepted: int
    recovered: int
    enqueued: int
    delivered: int
    failed: Dict[str, int]
    dropped: Dict[str, int]
    pending: int
    queued: int
    in_flight: int
    requests_in_flight: int
    retries: int
    batches: int
    requests: int
    bytes_raw: int
    bytes_sent: int
    paced: int
    paced_seconds: float
    last_error: Optional[str]


# the reason names are defined once, with the exceptions that carry them


class Stats:
    """Thread-safe counters; updated per batch by the consumer, per drop by producers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.direct = 0  # messages sent in the caller's thread (sync_mode)
        self.refused_at_call = 0  # accepted but never queued: queue full, client shut down
        self.delivered = 0
        self.retries = 0
        self.batches = 0
        self.requests = 0
        self.bytes_raw = 0
        self.bytes_sent = 0
        self.failed: Dict[str, int] = dict.fromkeys(FAILED_REASONS, 0)
        self.dropped: Dict[str, int] = dict.fromkeys(DROPPED_REASONS, 0)
        self.last_error: Optional[str] = None
        self.paced = 0  # calls that waited for the consumer (pacing)
        self.paced_seconds = 0.0

    def count_request(self, raw: int, sent: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_raw += raw
            self.bytes_sent += sent

    def count_delivered(self, n: int) -> None:
        with self._lock:
            self.delivered += n
            self.batches += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def count_lost(self, reason: str, n: int, error: Optional[BaseException], at_call: bool = False) -> None:
        """``n`` messages failed or were dropped for ``reason``.

        ``at_call``: they were refused by the call itself (queue full, client
        shut down), so they never reached the queue's counters.
        """
        with self._lock:
            if at_call:
                self.refused_at_call += n
            if reason in self.dropped:
                self.dropped[reason] += n
            else:
                self.failed[reason] = self.failed.get(reason, 0) + n
            if error is not None:
                self.last_error = str(error)

    def count_paced(self, seconds: float) -> None:
        with self._lock:
            self.paced += 1
            self.paced_seconds += seconds

    def count_direct(self) -> None:
        with self._lock:
            self.direct += 1

    def snapshot(
        self, queued_total: int, queued_now: int, in_flight: int, recovered: int = 0, batches_in_flight: int = 0
    ) -> StatsSnapshot:
        """A plain dict of every counter (see "Stats" in docs/guides/delivery.rst).

        ``recovered`` messages were found in a spool at start (queued by an
        earlier process): they are not ``accepted`` here, but this process
        accounts for them, so ``accepted + recovered == delivered + failed +
        dropped + pending``.  ``batches_in_flight``: batches taken by the
        delivery threads and not settled yet (each is one request being sent,
        or waiting for its retry).
        """
        with self._lock:
            failed = dict(self.failed)
            dropped = dict(self.dropped)
            return {
                "accepted": queued_total - recovered + self.direct + self.refused_at_call,
                "recovered": recovered,
                "enqueued": queued_total - recovered + self.direct,
                "delivered": self.delivered,
                "failed": failed,
                "dropped": dropped,
                "pending": queued_now + in_flight,
                "queued": queued_now,
                "in_flight": in_flight,
                "requests_in_flight": batches_in_flight,
                "retries": self.retries,
                "batches": self.batches,
                "requests": self.requests,
                "bytes_raw": self.bytes_raw,
                "bytes_sent": self.bytes_sent,
                "paced": self.paced,
                "paced_seconds": self.paced_seconds,
                "last_error": self.last_error,
            }

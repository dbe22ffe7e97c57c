"""Retry policy: which failures to retry, how long to wait, when to give up.

One attempt is the transport's job; this module only decides.  Waits grow
exponentially (``backoff.expo``) with "equal jitter" (half fixed, half random),
a ``Retry-After`` from the server is honoured as the minimum wait, and the
whole time spent on one batch is bounded by ``max_time``.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from typing import Callable, Iterator, Optional, Tuple

import backoff

__all__ = ["RetryPolicy", "parse_retry_after", "retryable_status"]


def retryable_status(status: int) -> bool:
    """408, 429 and every 5xx may succeed if sent again; other statuses will not."""
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: Optional[str], now: Callable[[], float] = time.time) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # asctime form and "-0000": HTTP dates are always GMT
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class RetryPolicy:
    """How one batch is retried.

    ``max_retries``: retries after the first attempt (the peers' meaning).
    ``max_time``: seconds from the first attempt after which no new attempt is
    started; a wait that would end past it is not begun.
    ``base`` / ``cap``: the first wait and the largest backoff wait, in seconds.
    ``max_retry_after``: a ``Retry-After`` longer than this is treated as
    "give up now" rather than waited for.
    """

    def __init__(
        self,
        max_retries: int = 10,
        max_time: float = 60.0,
        base: float = 0.5,
        cap: float = 10.0,
        max_retry_after: float = 60.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.max_retries = max_retries
        self.max_time = max_time
        self.base = base
        self.cap = cap
        self.max_retry_after = max_retry_after
        self._rng = rng

    def waits(self) -> Iterator[float]:
        """The backoff waits for one batch, jittered, before Retry-After is applied.

        The steps are ``backoff.expo``'s; the jitter is "equal jitter" (half the
        step fixed, half random) rather than ``backoff.full_jitter``, which can
        draw a wait near zero and resend at once to a server that just said
        503, or ``backoff.random_jitter``, which adds up to a second to every
        wait whatever its size.
        """
        gen = backoff.expo(base=2, factor=self.base, max_value=self.cap)
        next(gen)  # backoff's generators yield once before the first value
        for value in gen:
            yield value / 2 + self._rng() * value / 2

    def next_wait(self, waits: Iterator[float], retry_after: Optional[float]) -> float:
        """The wait before the next attempt: the backoff step, at least ``retry_after``."""
        wait = next(waits)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def wait_or_give_up(
        self, waits: Iterator[float], attempt: int, retry_after: Optional[float], elapsed: float
    ) -> Tuple[Optional[float], str]:
        """After failed attempt number ``attempt`` (``elapsed`` seconds after the first began):
        ``(seconds to wait, "")`` before the next one, or ``(None, why)`` to give up.

        Gives up after ``max_retries`` retries, when a ``Retry-After`` asks for
        more than ``max_retry_after``, and when the wait would end past ``max_time``.
        """
        if attempt > self.max_retries:
            return None, f"after {attempt} attempt{'s' if attempt > 1 else ''}"
        if retry_after is not None and retry_after > self.max_retry_after:
            return None, (f"the server asked to wait {retry_after:.0f} s, "
                          f"over the {self.max_retry_after:.0f} s limit")
        wait = self.next_wait(waits, retry_after)
        if elapsed + wait > self.max_time:
            return None, f"the {self.max_time:g} s retry time is used up"
        return wait, ""

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_retries={self.max_retries}, max_time={self.max_time}, "
            f"base={self.base}, cap={self.cap}, max_retry_after={self.max_retry_after})"
        )

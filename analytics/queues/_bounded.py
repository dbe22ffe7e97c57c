"""What the queues share: waiting for room in a bounded buffer (backpressure)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple

__all__ = ["Bounded"]


class Bounded:
    """Mixin for a queue with ``_lock``, a ``_not_full`` condition on it, ``_waiting``
    (callers waiting for room), ``_closed`` (no more waiting) and ``put_total``."""

    _lock: threading.Lock
    _not_full: threading.Condition
    _waiting: int
    _closed: bool
    put_total: int

    def totals(self) -> Tuple[int, int]:
        """``put_total`` and the length, read at one moment (a put changes both under the lock)."""
        with self._lock:
            return self.put_total, len(self)  # type: ignore[arg-type]

    def _wait_while(self, full: Callable[[], bool], timeout: Optional[float]) -> bool:
        """With the lock held: wait until ``full()`` is false (True), or until ``timeout``
        seconds passed or the queue was closed (False).  ``timeout`` None waits as long as needed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._waiting += 1
        try:
            while full():
                if self._closed:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            return True
        finally:
            self._waiting -= 1

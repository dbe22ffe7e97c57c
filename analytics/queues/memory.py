"""A bounded in-memory FIFO of encoded messages (``bytes``).

Producers only ever take one short lock to append; the consumer takes a whole
batch under one lock.  Holding ``bytes`` instead of dicts keeps a queued
event to its encoded size plus ~40 bytes, and gives the garbage collector
nothing to scan.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, List, Optional, Tuple

from ..errors import SpoolError
from .base import QueueBase

__all__ = ["MemoryQueue"]


class MemoryQueue(QueueBase):
    """Bounded FIFO of ``bytes`` (a :class:`~analytics.queues.base.Queue`).

    ``put_total`` and ``taken_total`` count every item that went in and came
    out; since the queue is FIFO, item number *k* (from 0) is the *k*-th put,
    which lets the client tell when everything put before a moment was taken.
    ``degraded``: why a spool asked for could not be opened (this queue holds
    its messages instead).
    """

    def __init__(self, maxsize: int, degraded: Optional[SpoolError] = None) -> None:
        self._items: Deque[bytes] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._waiting = 0
        self._closed = False
        self.maxsize = maxsize
        self.put_total = 0
        self.taken_total = 0
        self.degraded = degraded

    def __len__(self) -> int:
        return len(self._items)

    def ready(self) -> int:
        """Messages the consumer can take now (all of them)."""
        return len(self._items)

    def put(self, item: bytes, timeout: Optional[float] = 0.0) -> int:
        """Append ``item``; return the new length, or 0 if the queue stayed full.

        ``timeout`` 0 never waits (drop when full); a positive number waits up
        to that many seconds for room; ``None`` waits until there is room or
        the queue is closed.
        """
        with self._lock:
            items = self._items
            if len(items) >= self.maxsize:
                if timeout == 0 or self._closed:
                    return 0
                if not self._wait_for_room(timeout):
                    return 0
            items.append(item)
            self.put_total += 1
            return len(items)

    def _wait_for_room(self, timeout: Optional[float]) -> bool:
        return self._wait_while(lambda: len(self._items) >= self.maxsize, timeout)

    def take(self, max_items: int, max_bytes: int) -> List[bytes]:
        """Remove and return up to ``max_items`` from the head.

        The items plus one comma between each stay within ``max_bytes``; the
        first item is always taken even if it alone is larger (the caller
        refuses such items before they are queued).
        """
        out: List[bytes] = []
        with self._lock:
            items = self._items
            size = -1
            while items and len(out) < max_items:
                head = items[0]
                size += len(head) + 1
                if size > max_bytes and out:
                    break
                out.append(items.popleft())
            self.taken_total += len(out)
            if self._waiting and out:
                self._not_full.notify(len(out))
        return out

    def take_batch(self, max_items: int, max_bytes: int) -> Tuple[List[bytes], None]:
        """:meth:`take`, in the shape a durable queue answers (no keys to settle)."""
        return self.take(max_items, max_bytes), None

    def take_all(self) -> List[bytes]:
        """Remove and return everything queued (used to account for drops at a deadline)."""
        with self._lock:
            out = list(self._items)
            self._items.clear()
            self.taken_total += len(out)
            if self._waiting:
                self._not_full.notify_all()
        return out

    def close(self, timeout: Optional[float] = None) -> None:
        """Refuse further waits: producers blocked in :meth:`put` return 0 at once (nothing to store)."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()

    def reopen(self) -> None:
        """Accept waits again (after a close that was undone, for example after a fork)."""
        with self._lock:
            self._closed = False

    def items_after_fork(self) -> List[bytes]:
        """Everything queued: without the at-fork hook the child cannot tell the parent's messages
        from its own, and a duplicate (same messageId) is better than a loss."""
        return list(self._items)

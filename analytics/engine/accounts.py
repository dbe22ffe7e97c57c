"""The accounts of one engine: the batches its workers hold, and the fate of every message taken.

Every message a worker takes from the queue is in one batch of :class:`Accounts`
until it is settled: delivered, failed, dropped or kept (a durable queue keeps
what is unsent at the shutdown deadline).  Each settlement is counted under the
engine's one lock at the moment the batch forgets it, so ``stats()`` adds up at
any moment and ``flush()`` and ``shutdown()`` know exactly what is pending.
:class:`~analytics.engine.worker.Consumer` (the worker pool) is made on these
accounts; :mod:`analytics.engine.delivery` reports to them.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..destinations import Destination
from ..errors import DeliveryError, ShutdownError
from ..options import Config, OnError
from ..queues.base import Queue
from ..stats import Stats, StatsSnapshot

__all__ = ["Accounts", "report"]

log = logging.getLogger("customerio.analytics")


class Accounts:
    """The batches in flight and the accounting of their messages, under the engine's lock."""

    def __init__(self, config: Config, queue: Queue, destination: Destination, stats: Stats) -> None:
        self.config = config
        self.queue = queue
        self.destination = destination
        self.stats = stats
        self.durable = queue.durable
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)  # flush() waits here for batches to finish
        self._inflight: Dict[int, _Batch] = {}  # token -> a batch a worker took
        self._abandoned: Set[Any] = set()  # tokens given up at the shutdown deadline while their request hung
        self._current = threading.local()  # the token the calling worker is sending
        self._next_token = 0

    def _open_batch(self, start: int, items: List[bytes], keys: Optional[List[Any]], now: float) -> int:
        # (lock held) a worker took ``items``, the messages from ``start`` in the queue's order
        token = self._next_token
        self._next_token += 1
        self._inflight[token] = _Batch(start, items, keys, now)
        self._progress.notify_all()  # room was made: producers waiting for it go on
        return token

    def _close_batch(self, token: int) -> None:
        # the worker is done with its batch (settled, or reported at the deadline)
        with self._lock:
            self._inflight.pop(token, None)
            self._progress.notify_all()

    def _abandon_in_flight(self) -> List[Tuple[List[bytes], DeliveryError]]:
        # (lock held) the shutdown deadline passed with requests unanswered: count what the workers
        # have not settled yet (a worker still reporting its batch settled it first: nothing is
        # reported twice); returns what to tell on_error once the lock is released
        lost: List[Tuple[List[bytes], DeliveryError]] = []
        for token, batch in list(self._inflight.items()):
            del self._inflight[token]
            self._abandoned.add(token)
            items, keys = batch.unsettled()
            if self.durable and keys is not None:
                items = self._keep_now(items, keys)
            if items:
                error = ShutdownError("no answer by the shutdown deadline; the server may or may not have stored these")
                self._count_lost(items, error, "shutdown")
                lost.append((items, error))
        self._progress.notify_all()
        return lost

    def in_flight(self) -> int:
        """Messages taken from the queue whose fate is not settled yet."""
        with self._lock:
            return sum(batch.left for batch in self._inflight.values())

    def snapshot(self, recovered: int = 0) -> StatsSnapshot:
        """The stats of one moment: messages move between the queue, the batches in flight and
        the counters under this lock, so ``accepted == delivered + failed + dropped + pending``
        holds in every snapshot, not only in quiet moments."""
        with self._lock:
            put_total, queued = self.queue.totals()
            in_flight = sum(batch.left for batch in self._inflight.values())
            return self.stats.snapshot(put_total, queued, in_flight, recovered, len(self._inflight))

    def _unsettled_before(self, target: int) -> int:
        # How many of the first ``target`` queued messages are not settled (lock held):
        # those still queued, and those in batches being sent (by any worker).
        n = max(0, target - self.queue.taken_total)
        for batch in self._inflight.values():
            if batch.start < target:
                n += min(batch.left, target - batch.start)
        return n

    def abandoned(self) -> bool:
        return bool(self._abandoned) and getattr(self._current, "token", None) in self._abandoned

    def account(self, part: List[bytes], count: Callable[[], Any]) -> bool:
        """Settle ``part`` of the calling worker's batch and ``count()`` it, at one moment.

        False (nothing counted) when stop() already reported the batch at the deadline.
        """
        with self._lock:
            token = getattr(self._current, "token", None)
            if token in self._abandoned:
                return False
            batch = None if token is None else self._inflight.get(token)
            if batch is not None:
                batch.settle(part)
            count()
            return True

    def keep(self, part: List[bytes], keys: Optional[List[Any]]) -> None:
        """A durable queue keeps ``part`` for later (unsent at the shutdown deadline)."""
        keys = keys if keys is not None else [None] * len(part)
        rows = [(item, key) for item, key in zip(part, keys) if key is not None]
        if rows:
            self.account([item for item, _ in rows], lambda: self.queue.keep([key for _, key in rows]))
        unkept = [item for item, key in zip(part, keys) if key is None]
        if unkept:  # kept in memory after a disk failure, or sent without a queue: cannot stay
            self.lose(unkept, ShutdownError("the shutdown deadline passed; not in the spool, so not kept"), "shutdown")

    def _keep_now(self, items: List[bytes], keys: Optional[List[Any]]) -> List[bytes]:
        # (lock held) give the rows back to the queue; returns the items that have no row
        keys = keys if keys is not None else [None] * len(items)
        self.queue.keep([k for k in keys if k is not None])
        return [item for item, key in zip(items, keys) if key is None]

    def settle(self, keys: List[Any], sizes: int) -> None:
        """The queue may forget these rows: their fate is known."""
        self.queue.settle(keys, sizes)

    def lose(self, items: List[bytes], error: DeliveryError, reason: str, attempts: int = 0) -> None:
        """Count ``items`` as failed or dropped for ``reason`` and tell ``on_error``."""
        if self.account(items, lambda: self._count_lost(items, error, reason, attempts)):
            self._tell(items, error)

    def _count_lost(self, items: List[bytes], error: DeliveryError, reason: str, attempts: int = 0) -> None:
        error.reason = reason
        if attempts:
            error.attempts = attempts
        self.stats.count_lost(reason, len(items), error)

    def _tell(self, items: List[bytes], error: DeliveryError) -> None:
        """Log and report to ``on_error`` items already counted as lost (outside the lock: it may be slow)."""
        reason = error.reason
        log.error("%d message(s) not delivered (%s): %s", len(items), reason, error)
        report(self.config.on_error, error, [self._decode(i) for i in items])

    def _decode(self, item: bytes) -> Any:
        # what on_error gets for an item: the destination's decoding of it (a Segment message with
        # the keys the call returned), or the bytes should they not decode
        try:
            return self.destination.decode(item)
        except ValueError:  # pragma: no cover - we wrote these bytes ourselves
            return item


class _Batch:
    """A batch a worker took: where it starts in the queue's order, and what is not settled yet."""

    __slots__ = ("start", "items", "keys", "left", "taken_at", "_settled")

    def __init__(self, start: int, items: List[bytes], keys: Optional[List[Any]], taken_at: float) -> None:
        self.start = start
        self.taken_at = taken_at
        self.items = items
        self.keys = keys
        self.left = len(items)
        self._settled: "collections.Counter[int]" = collections.Counter()  # id() of settled items (alive: in items)

    def settle(self, part: List[bytes]) -> None:
        self.left -= len(part)
        if self.left:  # the usual case, the whole batch at once, needs no record
            self._settled.update(map(id, part))

    def unsettled(self) -> Tuple[List[bytes], Optional[List[Any]]]:
        """The items (and keys) not settled yet, in order."""
        if not self.left:
            return [], (None if self.keys is None else [])
        done = collections.Counter(self._settled)
        items: List[bytes] = []
        keys: List[Any] = []
        for i, item in enumerate(self.items):
            if done[id(item)]:
                done[id(item)] -= 1
                continue
            items.append(item)
            keys.append(None if self.keys is None else self.keys[i])
        return items, (None if self.keys is None else keys)


def report(callback: Optional[OnError], error: DeliveryError, items: List[Dict[str, Any]]) -> None:
    """Call the user's ``on_error``; whatever it raises is logged, never propagated."""
    if callback is None:
        return
    try:
        callback(error, items)
    except Exception:
        log.exception("on_error raised an exception; ignored")
    except SystemExit:
        log.error("on_error raised SystemExit; ignored")

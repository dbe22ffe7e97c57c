"""The queue protocol: every call the engine and the client make on a queue, and what a queue can do.

Three queues implement :class:`Queue`: :class:`~analytics.queues.MemoryQueue`
(the default), :class:`~analytics.queues.SQLiteQueue` (the durable spool) and
:class:`~analytics.queues.redis.RedisQueue` (a stream shared by processes and
hosts, also a :class:`SharedQueue`).  :func:`analytics.queues.open_queue`
opens the one a client's options ask for.

What a queue can do is stated by typed attributes, read as they are (never
probed):

=========== ====== ===== ==============================
capability  memory spool Redis
=========== ====== ===== ==============================
``durable`` False  True  True
``shared``  False  False True
``consume`` True   True  the client's ``consume`` option
=========== ====== ===== ==============================

The engine learns of messages a queue stores from a thread of its own (the
spool's writer, the Redis reader), and the client of messages a full Redis
stream refused, through callbacks given to :meth:`Queue.listen`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from ..errors import SpoolError
from ._bounded import Bounded

__all__ = ["Queue", "SharedQueue", "QueueBase", "OnStored", "OnRefused"]

#: Told how many messages wait to be taken, after a queue's own thread stored some.
OnStored = Callable[[int], Any]
#: Given the messages a queue refused after ``put`` accepted them (a full Redis stream).
OnRefused = Callable[[List[bytes]], Any]


@runtime_checkable
class Queue(Protocol):
    """A bounded FIFO of encoded messages (``bytes``) that the engine drains.

    ``put_total`` and ``taken_total`` count every message put and taken;
    message number *k* (from 0) is the *k*-th put, so the client can tell
    when everything put before a moment was taken.
    """

    #: Keeps what is unsent at shutdown for later (a file, a stream); the engine then
    #: retries an outage without limit and never drops what the queue can keep.
    durable: bool
    #: Other processes consume it: what this process put may be delivered by another.
    shared: bool
    #: This process delivers from it (False: a shared queue's producer only).
    consume: bool
    #: The most messages it holds waiting (a live setting: the client changes it).
    maxsize: int
    put_total: int
    taken_total: int
    #: Messages found at open, left by an earlier process.
    recovered: int
    #: Why new messages are kept in memory instead of where asked (the spool failed), or None.
    degraded: Optional[SpoolError]

    @property
    def where(self) -> str:
        """Where the messages are, for a log line: ``"the spool /var/lib/app/events.db"``."""

    def __len__(self) -> int:
        """Messages not taken yet (including those a producer buffer holds)."""

    def ready(self) -> int:
        """Messages a worker can take now."""

    def totals(self) -> Tuple[int, int]:
        """``put_total`` and the length, read at one moment."""

    def put(self, item: bytes, timeout: Optional[float] = 0.0) -> int:
        """Append ``item``: the new length, or 0 when the queue stayed full for ``timeout``
        seconds (0: never wait; None: wait until there is room or the queue is closed)."""

    def take_batch(self, max_items: int, max_bytes: int) -> Tuple[List[bytes], Optional[List[Any]]]:
        """Up to ``max_items`` messages in order, within ``max_bytes`` with a comma between
        each (the first is always taken), and their keys for :meth:`settle` (None: no keys)."""

    def take_all(self) -> List[bytes]:
        """At shutdown: remove and return what the queue cannot keep (a durable queue keeps the rest)."""

    def settle(self, keys: Sequence[Any], sizes: int) -> None:
        """The fate of the messages with these keys (``sizes`` bytes in all) is known: forget them."""

    def keep(self, keys: Sequence[Any]) -> None:
        """Taken messages left unsent at the shutdown deadline stay in the queue for later."""

    def wait_durable(self, target: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Wait until the first ``target`` messages put (default: all so far) are safe from a
        crash of this process; how many are not (0: all are)."""

    def listen(self, on_stored: Optional[OnStored] = None, on_refused: Optional[OnRefused] = None) -> None:
        """Set the callbacks given (see :data:`OnStored`, :data:`OnRefused`); None leaves one as it is."""

    def stop_reading(self) -> None:
        """Take no more messages from other processes; what this process holds stays to be sent."""

    def close(self, timeout: Optional[float] = None) -> None:
        """No more waiting for room; store what is buffered (within ``timeout``) and stop the queue's threads."""

    def release(self) -> None:
        """After :meth:`close`: give back the files and connections.  Idempotent."""

    def forget_after_fork(self) -> None:
        """In a forked child, this queue is the parent's: never use its files or connections."""

    def items_after_fork(self) -> List[bytes]:
        """In a child forked without the at-fork hook: the parent's queued messages this process
        must deliver, read without the lock (a thread of the parent may have held it)."""


@runtime_checkable
class SharedQueue(Queue, Protocol):
    """A queue other processes consume (``shared`` is True): what the client's ``flush()``
    and ``stats()`` also read."""

    #: The id of the last message this process added, or None.
    last_id: Optional[str]

    def backlog_before(self, last_id: Optional[str]) -> Optional[int]:
        """Messages not settled by any consumer up to ``last_id``; None when that cannot be read now."""

    def info(self) -> Dict[str, Any]:
        """The shared queue's figures for ``stats()``."""


class QueueBase(Bounded):
    """What a queue does unless it says otherwise: what a queue in this process's memory does.

    A subclass states only what differs (``durable = True``, a ``settle`` that
    deletes rows...).  Callbacks given to :meth:`listen` are in
    ``_on_stored`` and ``_on_refused``, for the queue's threads to call.
    """

    durable = False
    shared = False
    consume = True
    recovered = 0
    degraded: Optional[SpoolError] = None
    taken_total: int
    _on_stored: Optional[OnStored] = None
    _on_refused: Optional[OnRefused] = None

    @property
    def where(self) -> str:
        """Where the messages are, for a log line."""
        return "memory"

    def settle(self, keys: Sequence[Any], sizes: int) -> None:
        """Nothing to do: a message taken from memory is gone already."""

    def keep(self, keys: Sequence[Any]) -> None:
        """Nothing to keep: messages in memory have no keys (the engine reports them instead)."""

    def wait_durable(self, target: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Returns at once: nothing in memory survives a crash.  How many of the first ``target``
        messages put are still queued (the client's ``wait_durable()`` flushes instead)."""
        return max(0, (self.put_total if target is None else target) - self.taken_total)

    def listen(self, on_stored: Optional[OnStored] = None, on_refused: Optional[OnRefused] = None) -> None:
        """Set the callbacks given; None leaves one as it is."""
        if on_stored is not None:
            self._on_stored = on_stored
        if on_refused is not None:
            self._on_refused = on_refused

    def stop_reading(self) -> None:
        """Nothing to stop: only this process puts messages here."""

    def release(self) -> None:
        """Nothing to give back."""

    def forget_after_fork(self) -> None:
        """Nothing to forget: memory is the child's own copy."""

    def items_after_fork(self) -> List[bytes]:
        """None: a durable queue's messages stay the parent's to deliver."""
        return []

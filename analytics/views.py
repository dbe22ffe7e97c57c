"""Read-only views of a client's queue and delivery threads: ``client.queue`` and ``client.consumers``.

The official SDK's client has a ``queue`` (a :class:`queue.Queue`) and a list of
``consumers`` (its delivery threads), and users' own tests read them:
``client.queue.empty()`` after a flush, ``client.consumers[0].retries``,
``consumer.is_alive()`` after a shutdown.  Here the queue holds encoded messages
and the engine's worker pool grows and shrinks, so these are views: they read
the client's current queue and workers (a forked child's own, once it has made
them) through the engine's public seams (:class:`~analytics.queues.base.Queue`'s
``maxsize`` and length, :class:`~analytics.engine.worker.Consumer`'s thread
count and :meth:`~analytics.engine.worker.Consumer.alive_threads`) and change
nothing.  Settings are changed on the client (``client.max_queue_size = 500``).

A view is given a function returning the client's current queue or consumer
(never the client itself), and the client's options.
"""

from __future__ import annotations

from typing import Callable

from .engine.worker import Consumer
from .options import Config
from .queues.base import Queue

__all__ = ["QueueView", "ConsumerView"]


class QueueView:
    """``client.queue``: how many messages wait, read-only (``maxsize``, ``qsize()``, ``empty()``, ``full()``)."""

    __slots__ = ("_queue",)

    def __init__(self, queue: Callable[[], Queue]) -> None:
        self._queue = queue  # the client's current queue (a forked child's own, once made)

    @property
    def maxsize(self) -> int:
        """The most messages the queue holds (the client's ``max_queue_size``)."""
        return self._queue().maxsize

    def qsize(self) -> int:
        """Messages waiting to be taken by a delivery thread."""
        return len(self._queue())

    def empty(self) -> bool:
        """True when no message waits."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True when the queue holds ``maxsize`` messages (the next call is dropped or waits)."""
        return self.qsize() >= self.maxsize

    def __repr__(self) -> str:
        return f"<QueueView qsize={self.qsize()} maxsize={self.maxsize}>"


class ConsumerView:
    """One of ``client.consumers``: delivery thread number ``index`` of the client's ``thread``, read-only.

    ``timeout``, ``retries`` (the client's ``max_retries``), ``upload_size`` and
    ``upload_interval`` are the client's current settings; :meth:`is_alive` says
    whether the thread runs.  The threads start at the client's first call (the
    official SDK starts them when the client is made) and stop at ``shutdown()``.
    """

    __slots__ = ("_config", "_consumer", "_index")

    def __init__(self, config: Config, consumer: Callable[[], Consumer], index: int) -> None:
        self._config = config
        self._consumer = consumer  # the client's current consumer (a forked child's own, once made)
        self._index = index

    @property
    def timeout(self) -> float:
        """Seconds a request waits to connect and for each read."""
        return self._config.timeout

    @property
    def retries(self) -> int:
        """Retries after a batch's first attempt (the client's ``max_retries``)."""
        return self._config.max_retries

    @property
    def upload_size(self) -> int:
        """Messages that make a batch go out."""
        return self._config.upload_size

    @property
    def upload_interval(self) -> float:
        """Seconds a partial batch waits for more messages."""
        return self._config.upload_interval

    def is_alive(self) -> bool:
        """True while this delivery thread runs: at least ``index + 1`` of the client's workers are alive."""
        return self._consumer().alive_threads() > self._index

    def __repr__(self) -> str:
        return f"<ConsumerView {self._index} alive={self.is_alive()}>"

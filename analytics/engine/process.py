"""One client's engine in one process: its counters, queue, consumer threads, transport and exit hook.

A :class:`~analytics.Client` validates and encodes each call in the caller's
thread and puts the bytes in its :class:`ProcessEngine`'s queue (inline: the
hot path); the engine reports a full queue, slows a producer that outruns
delivery (through its consumer), wakes the workers and answers
``flush()``, ``wait_durable()``, ``stats()`` and ``shutdown()``.  Everything
here belongs to one process: a forked child makes its own engine
(:meth:`ProcessEngine.for_child`) at its first call, and leaves the parent's
alone (:meth:`ProcessEngine.leave`).
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from typing import Any, List, Optional, cast

from ..destinations import Destination
from ..errors import QueueFullError, ShutdownError
from ..options import Config
from ..queues import Queue, SharedQueue, open_queue
from ..stats import Stats, StatsSnapshot
from ..transport import HTTPTransport, Transport
from .accounts import report
from .hosts import green_loop, loop_replaced
from .worker import Consumer

__all__ = ["ProcessEngine"]

log = logging.getLogger("customerio.analytics")

#: How long a call waits for a due batch where threads stall between calls (see deliver_if_due).
CALLER_DELIVERY_WAIT_S = 1.0
#: A forked child's copies of the parent's spools: never closed, never used.
_abandoned: List[Queue] = []


class _Drain:
    """The owner of an engine made only to drain at exit (see :func:`_finalize`)."""


def _finalize(engine: "ProcessEngine") -> None:
    # Runs when the Client is garbage collected, or at interpreter exit, unless
    # shutdown() released everything first (it detaches this finalizer).
    if engine.hub_moved():
        # no call since green threads moved to a new loop: an engine on it drains what was queued
        owner = _Drain()  # alive until its engine's exit drain, run here, returns
        engine.for_new_hub(owner).finalizer()
        return
    consumer, config, transport = engine.consumer, engine.config, engine.transport
    try:
        if not consumer.stopped and (consumer.started or consumer.durable):
            consumer.stop(config.exit_timeout)
    finally:
        transport.close()
        consumer.queue.release()


class ProcessEngine:
    """The per-process part of a client: made with it, and again in a forked child.

    ``owner`` is the client: its garbage collection (or the interpreter's exit)
    runs the exit drain, :attr:`finalizer`.  ``calls_deliver``: threads stall
    between calls here (uWSGI without threads), so a call that completes a
    batch waits for its delivery (:meth:`deliver_if_due`).
    """

    def __init__(self, owner: Any, config: Config, destination: Destination, transport: Transport,
                 own_transport: bool, calls_deliver: bool, inherited: Optional[List[bytes]] = None) -> None:
        self.pid = os.getpid()
        self.hub = green_loop()  # what runs green threads here, if gevent or eventlet is imported (see hub_moved)
        self.config = config
        self.destination = destination
        self.transport = transport
        self.own_transport = own_transport  # the client made it (a new one in a child), else the user's
        self.calls_deliver = calls_deliver
        self.stats = Stats()
        self.queue = queue = open_queue(config, on_refused=self._stream_full)
        for item in inherited or ():
            queue.put(item)
        threads = config.thread if queue.consume else 0
        self.consumer = Consumer(config, queue, transport, destination, self.stats, threads, clock=config.clock)
        self.dropping = False  # the queue was full: dropping until it drains to half
        self.burst_drops = 0
        self.waiting_since = 0.0  # when the oldest message waiting was queued (see deliver_if_due)
        self.set_pace_from()
        self.finalizer = weakref.finalize(owner, _finalize, self)
        if config.send and (len(queue) or (queue.shared and queue.consume)):
            # messages left in a spool by an earlier process, or a shared queue to deliver from
            self.consumer.ensure_started()

    # --- fork ---------------------------------------------------------------

    def leave(self) -> None:
        """In a forked child: let go of the parent's engine (its exit hook, its spool connection).

        The child's own is not built here, in the at-fork hook: the locks,
        conditions, thread-locals and session would be made with the
        ``threading`` of the moment of the fork, and gevent's worker
        (``gunicorn -k gevent --preload``) patches it later.  The child's
        first call builds it (:meth:`for_child`).
        """
        self.finalizer.detach()  # the parent's exit hook is the parent's business
        if self.queue.durable:
            # never touch the parent's SQLite connection; take a slot of our own (at the build)
            self.queue.forget_after_fork()
            _abandoned.append(self.queue)

    def for_child(self, owner: Any, hooked: bool) -> "ProcessEngine":
        """This (forked child) process's own engine, made after :meth:`leave`.

        Messages the parent had queued stay the parent's to deliver: the child
        starts empty.  If a fork bypassed the at-fork hook (``hooked`` False),
        the messages in the inherited queue cannot be told apart, so they are
        kept (a duplicate with the same messageId is better than a loss).
        """
        if self.own_transport:
            transport: Transport = HTTPTransport()  # never share a socket with the parent
        else:
            transport = self.transport
            transport.after_fork()
        inherited = None if hooked or self.queue.durable else self.queue.items_after_fork()
        engine = ProcessEngine(owner, self.config, self.destination, transport, self.own_transport,
                               self.calls_deliver, inherited)
        if inherited is not None:
            log.warning("a fork bypassed os.register_at_fork; %d queued message(s) may be sent twice",
                        len(engine.queue))
        if not hooked and len(engine.queue):
            engine.consumer.wake()
        return engine

    # --- a new green-thread loop ---------------------------------------------------

    def hub_moved(self) -> bool:
        """Whether this thread's green threads run on another loop than when this engine was built
        (see :func:`~analytics.engine.hosts.loop_replaced`: gunicorn's green workers, after ``post_fork``)."""
        return self.hub is not None and loop_replaced(self.hub)

    def for_new_hub(self, owner: Any) -> "ProcessEngine":
        """This process's engine on the loop now running, made after :meth:`hub_moved`; as after a fork.

        It takes over what was queued; the old workers take nothing more.
        Those on an old eventlet hub never run again: what they held is taken
        over too (a batch of theirs that was sent before the hub changed, and
        not yet acknowledged, may be sent twice: a duplicate with the same
        messageId is better than a loss).  Real threads (the engine was built
        before gevent's patching) finish the batches they hold.  A spool's or
        a Redis stream's messages stay where they are (see :meth:`leave`).
        """
        self.finalizer.detach()  # the new engine's exit drain replaces this one's
        assert self.hub is not None  # hub_moved()
        held = self.consumer.abandon_to_new_hub(on_dead_hub=self.hub[0] == "eventlet")
        inherited = None
        if not self.queue.durable:
            inherited = held + self.queue.items_after_fork()
        else:
            self.leave()
        if self.own_transport:
            transport: Transport = HTTPTransport()  # its connections waited on the old hub
        else:
            transport = self.transport
            transport.after_fork()
        engine = ProcessEngine(owner, self.config, self.destination, transport, self.own_transport,
                               self.calls_deliver, inherited)
        log.info("green threads run on a new loop here; delivery restarted on it with %d queued message(s)",
                 len(engine.queue))
        if len(engine.queue) and self.config.send:
            engine.wake()
        return engine

    # --- the hot path -------------------------------------------------------

    def refuse(self, msg: Any) -> None:
        """A call after the client's ``shutdown()``: ``msg`` is counted as dropped (``shutdown``) and reported."""
        error = ShutdownError("the client was shut down; message not sent")
        self.stats.count_lost("shutdown", 1, error, at_call=True)
        report(self.config.on_error, error, [msg])

    def send_now(self, data: bytes) -> bool:
        """``sync_mode``: deliver ``data`` in the caller's thread, with the usual retries; whether it was."""
        self.stats.count_direct()
        return self.consumer.deliver([data]) == 1

    def wake(self) -> None:
        """A batch may be due: start the workers if they are not running, and wake one."""
        consumer = self.consumer
        if not consumer.started:
            consumer.ensure_started()
        consumer.wake()

    def deliver_if_due(self, queued: int) -> None:
        """Threads stall between calls (uWSGI without ``--enable-threads``): the call that completes a
        batch, or comes ``upload_interval`` after the first message waiting, waits for the delivery
        (the workers run while it waits), unless delivery is on hold (a retry, ``Retry-After``)."""
        cfg = self.config
        now = self.consumer.now()
        earlier = queued - 1 + self.consumer.in_flight()  # pending before this call's message
        if not earlier:
            self.waiting_since = now
        if queued < cfg.upload_size and (not earlier or now - self.waiting_since < cfg.upload_interval):
            return
        if not self.consumer.on_hold():
            self.flush(timeout=min(cfg.timeout, CALLER_DELIVERY_WAIT_S))

    def apply(self, name: str, value: Any) -> None:
        """The engine's side of a setting changed on the live client (already in :attr:`config`)."""
        if name in ("max_queue_size", "upload_size", "pace_wait"):
            self.set_pace_from()
        if name == "max_queue_size":
            self.queue.maxsize = value
        elif name in ("write_key", "send") and self.config.send and self.config.write_key is None:
            log.warning("send is on but no write_key is set: requests will be refused as unauthorized")

    def set_pace_from(self) -> None:
        """Pacing starts once a quarter of the queue is used, and never with ``pace_wait`` 0 (nor with
        a Redis queue: the buffer drains to Redis, and the consumers may be other processes)."""
        cfg = self.config
        paced = cfg.pace_wait and not self.queue.shared
        self.pace_from = max(cfg.max_queue_size // 4, 2 * cfg.upload_size) if paced else 1 << 62

    def queue_full(self, msg: Any) -> None:
        """``msg`` was dropped: the queue is full (counted, logged once per burst, reported)."""
        error = QueueFullError(f"the queue is full ({self.queue.maxsize} messages); message dropped")
        self.stats.count_lost("queue_full", 1, error, at_call=True)
        self.burst_drops += 1
        if not self.dropping:
            self.dropping = True
            log.warning(
                "queue is full (max_queue_size=%d): dropping messages until the consumer catches up",
                self.queue.maxsize,
            )
        report(self.config.on_error, error, [msg])

    def end_burst(self) -> None:
        """The queue drained to half after a burst of drops: say how many were dropped."""
        # Only once the queue has drained to half: at the boundary it would
        # otherwise flip between full and not full with every batch taken.
        self.dropping = False
        dropped, self.burst_drops = self.burst_drops, 0
        log.warning("queue accepting messages again; %d were dropped while it was full", dropped)

    def _stream_full(self, items: List[bytes]) -> None:
        # the writer thread: the shared stream held max_queue_size entries
        error = QueueFullError(
            f"the Redis stream is full ({self.queue.maxsize} entries); {len(items)} message(s) dropped"
        )
        self.stats.count_lost("queue_full", len(items), error)
        log.warning("%s", error)
        report(self.config.on_error, error, [self.destination.decode(i) for i in items])

    # --- flush, stats, shutdown -----------------------------------------------

    def flush(self, timeout: Optional[float]) -> int:
        """See :meth:`analytics.Client.flush`."""
        target = self.queue.put_total
        if self.consumer.on_worker_thread():
            log.warning("flush() called from on_error does not wait; call it from another thread")
            timeout = 0
        if self.queue.shared:
            pending = self._flush_shared(timeout)
        else:
            pending = self.consumer.wait_settled(target, timeout)
        if pending:
            log.info("flush: %d message(s) still pending at the deadline", pending)
        return pending

    def _flush_shared(self, timeout: Optional[float]) -> int:
        # Everything this process put reaches Redis; then wait until no entry up to the last
        # one it added is left in the stream (consumers delete what they settle).
        deadline = None if timeout is None else time.monotonic() + timeout
        q = cast(SharedQueue, self.queue)  # shared: a SharedQueue
        unwritten = q.wait_durable(None, timeout)
        if unwritten:
            return unwritten
        last = q.last_id
        pause = 0.002
        while True:
            self.consumer.send_now()  # this process's workers: no waiting for a full batch
            left = q.backlog_before(last)  # None: the stream cannot be read now
            if left == 0:
                return 0
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return left or 1
            time.sleep(pause if deadline is None else min(pause, deadline - now))
            pause = min(pause * 2, 0.05)

    def wait_durable(self, timeout: Optional[float]) -> int:
        """See :meth:`analytics.Client.wait_durable`."""
        if not self.queue.durable:
            return self.flush(timeout)
        return self.queue.wait_durable(None, timeout)

    def snapshot(self) -> StatsSnapshot:
        """See :meth:`analytics.Client.stats`."""
        q = self.queue
        snap = self.consumer.snapshot(q.recovered)
        if q.shared:
            # accepted + received == handed_off + delivered + failed + dropped + pending
            snap["redis"] = info = cast(SharedQueue, q).info()
            snap["handed_off"] = info["handed_off"]
            snap["received"] = info["received"]
        return snap

    def shutdown(self, timeout: Optional[float]) -> int:
        """Stop the workers (see :meth:`analytics.Client.shutdown`); messages dropped at the deadline."""
        dropped = 0
        if not self.consumer.stopped:
            dropped = self.consumer.stop(timeout)
        # Release once (the first shutdown, else the finalizer): a second close of the
        # spool's lock descriptor would close whatever the app opened meanwhile under it.
        if not self.consumer.on_worker_thread() and self.finalizer.detach() is not None:
            self.transport.close()
            self.queue.release()
        return dropped

"""The worker pool: threads that take batches from the queue and deliver them, and the accounting.

One :class:`Consumer` per client owns its worker threads: ``thread`` of them
always, and more (up to ``max_in_flight``) while a backlog exists.  A worker
sleeps on a condition variable until one of these is true, then takes a
batch from the queue under one lock:

* ``upload_size`` messages are queued (a producer wakes it at that count);
* ``upload_interval`` seconds passed since it saw the first queued message;
* a ``flush()`` asked for everything queued before it;
* the client is shutting down.

The batch takes every message ready (an explicit ``upload_size`` caps it),
cut so that the whole request body stays at or under the destination's byte
limit *before* a message is added, never after.  When more is ready than the
workers are taking, another worker starts; one that has had nothing to send
for a while ends.  :mod:`analytics.engine.delivery` sends each batch;
:mod:`analytics.engine.backpressure` slows producers to the delivery rate.

Every message taken is accounted for under one lock (delivered, failed,
dropped, kept or still in flight: :mod:`analytics.engine.accounts`, on which
the consumer is made), so ``stats()`` adds up at any moment and ``flush()``
and ``shutdown()`` know exactly what is pending.  Nothing a callback or the
server does can stop a worker.

The consumer never holds a reference to the :class:`~analytics.Client`, so a
client that is no longer used can be garbage collected (its finalizer then
drains and stops the consumer).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from typing import Any, List, Optional, Set, Tuple

from ..clock import SYSTEM_CLOCK, Clock
from ..destinations import Destination
from ..errors import DeliveryError, ShutdownError
from ..options import Config
from ..queues.base import Queue
from ..stats import Stats
from ..transport import Transport
from .accounts import Accounts, report
from .backpressure import Backpressure
from .delivery import Delivery

__all__ = ["Consumer", "report"]  # report: see analytics.engine.accounts

log = logging.getLogger("customerio.analytics")

#: With no answer for this long to any request in flight, producers are not held back (the
#: server is slow or down: waiting would only slow the app, and the drop policy applies).
_STALL_S = 1.0
#: Past this share of the queue in use a producer waits for room rather than for the rate.
_NEARLY_FULL = 0.9
#: A worker beyond ``thread`` that found nothing to send for this long ends (the pool shrinks).
_IDLE_EXIT_S = 5.0
#: While a backlog exists a batch takes at most this many messages (the byte limit usually cuts
#: it first: about 1,600 events of 300 bytes fit in 500 KB); an explicit ``upload_size`` caps it.
_MAX_BATCH_ITEMS = 5000
#: How long stop() waits for workers to report after aborting their hung requests (real time:
#: the threads' scheduling, whatever the clock).
_ABORT_GRACE_S = 0.5
#: How often a waiting ``flush()`` re-checks that the worker threads are alive.
_LIVENESS_CHECK_S = 0.25


def _on_event_loop() -> bool:
    """Whether this thread is running an asyncio event loop (never imports asyncio)."""
    aio = sys.modules.get("asyncio")
    return aio is not None and aio._get_running_loop() is not None


class Consumer(Accounts):
    """Worker threads, the batching loop, delivery with retries, and progress tracking (on the accounts
    of :class:`~analytics.engine.accounts.Accounts`)."""

    def __init__(
        self,
        config: Config,
        queue: Queue,
        transport: Transport,
        destination: Destination,
        stats: Stats,
        threads: int = 1,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(config, queue, destination, stats)
        self.transport = transport
        self.thread_count = threads
        self.clock = clock  # every read of and wait on time (a fake clock in unit tests)
        self._clock = clock.now
        self.backpressure = Backpressure(clock)
        self._work = threading.Condition(self._lock)  # workers wait here for messages
        self._looking = 0  # workers choosing or waiting for a batch (see wake)
        self._interrupt = threading.Condition(self._lock)  # retry waits; woken by shutdown
        self._threads: List[threading.Thread] = []
        self._worker_ids: Set[Any] = set()
        self._abandoning = False  # stop() reported what was in flight: workers take no new batch
        self._flush_target = 0
        self._stopping = False
        self._give_up: Optional[BaseException] = None
        self._deadline: Optional[float] = None
        self.not_before = 0.0  # no request before this clock time (Retry-After, shared by the workers)
        self._backing_off = 0  # workers waiting before a retry: producers must not wait for them
        self._grow = False  # a worker saw more to send than the workers can take: start another
        self.idle_exit_s = _IDLE_EXIT_S
        self.started = False
        self.stopped = False
        self.delivery = Delivery(self, config, transport, destination, stats)
        queue.listen(on_stored=self._on_stored)

    def _on_stored(self, ready: int) -> None:
        # the spool's writer committed a group: the workers can take it
        with self._lock:
            self._work.notify()

    # --- producer side ------------------------------------------------------

    def send_now(self) -> None:
        """Let the workers send what they hold without waiting for a full batch (a shared
        queue's flush: its messages were not put by this process)."""
        with self._lock:
            target = self.queue.taken_total + self.queue.ready()
            if target > self._flush_target:
                self._flush_target = target
            self._work.notify_all()

    def wake(self) -> None:
        """Tell a waiting worker that there is work (called at the batch thresholds, after the put).

        Takes the lock only when a worker is choosing its next batch or
        waiting for one: a worker busy sending needs no signal, and taking
        the lock it may hold would hand it the GIL in the middle of the
        caller's ``track()``.  No signal is lost: a worker counts itself in
        ``_looking`` (under the lock) *before* it reads the queue, and the
        caller reads ``_looking`` *after* its put, so either the worker sees
        the message or the caller sees the worker.
        """
        if self._looking:
            with self._lock:
                self._work.notify()

    def ensure_started(self) -> None:
        """Start (or restart) worker threads up to ``thread``; idempotent and cheap when running."""
        with self._lock:
            if self._stopping:
                return
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.thread_count:
                self._start_worker()
            self.started = True

    def _start_worker(self) -> None:
        # (lock held) one more worker thread, with a connection of its own
        t = threading.Thread(target=self._run, name=f"cdp-relay-consumer-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()
        self._worker_ids.add(t.ident)

    def _max_workers(self) -> int:
        return max(self.thread_count, self.config.max_in_flight)

    def _add_worker(self) -> None:
        """A backlog exists and every worker is busy sending: one more request may be in flight."""
        with self._lock:
            self._grow = False
            if self._stopping or self._abandoning:
                return
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) < self._max_workers():
                self._start_worker()

    def alive_threads(self) -> int:
        """How many worker threads are running."""
        return sum(1 for t in self._threads if t.is_alive())

    def on_worker_thread(self) -> bool:
        """True when called from one of this consumer's workers (for example inside ``on_error``)."""
        return threading.get_ident() in self._worker_ids

    def pace(self, queued: int) -> None:
        """Slow a producer whose call found ``queued`` messages waiting (past a quarter of the queue).

        The calls are spaced to the rate at which the server takes messages
        now (see :mod:`analytics.engine.backpressure`); once the queue is
        :data:`_NEARLY_FULL`, a call waits for a worker to take a batch
        instead.  One call waits at most ``pace_wait`` seconds.  While a
        worker waits to retry or the server asked for a pause
        (``Retry-After``), or no request in flight was answered for
        :data:`_STALL_S`, delivery is impossible for now: the call does not
        wait at all and the queue's drop policy applies.  A call made on a
        running asyncio event loop never waits: it would hold up every task.
        """
        max_wait = self.config.pace_wait
        if not max_wait or self._stopping or not self.started or _on_event_loop():
            return
        if self._backing_off or self.not_before > self._clock():
            self.backpressure.reset()
            return
        fill = queued / max(1, self.queue.maxsize)
        if fill >= _NEARLY_FULL:
            self._wait_for_room(max_wait)
            return
        wait = self.backpressure.delay(fill)
        if wait:
            wait = min(wait, max_wait)
            self.clock.sleep(wait)
            self.stats.count_paced(wait)

    def on_hold(self) -> bool:
        """Delivery is on hold for now: a worker waits to retry, or the server asked for a pause."""
        return bool(self._backing_off) or self.not_before > self._clock()

    def _wait_for_room(self, max_wait: float) -> None:
        """The queue is nearly full: wait until a worker takes a batch (at most ``max_wait``), unless
        the requests in flight have had no answer for :data:`_STALL_S` (a slow or hanging server)."""
        q = self.queue
        with self._lock:
            started = self._clock()
            oldest = min((b.taken_at for b in self._inflight.values()), default=started)
            if started - oldest >= _STALL_S:
                return
            deadline = started + max_wait
            while len(q) >= _NEARLY_FULL * q.maxsize and not self._backing_off and not self._stopping:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self.clock.wait(self._progress, remaining)
            waited = self._clock() - started
        self.stats.count_paced(waited)

    # --- progress -------------------------------------------------------------

    def wait_settled(self, target: int, timeout: Optional[float]) -> int:
        """Send now, and wait until the first ``target`` queued messages are settled.

        Returns how many of those are still pending (0 when done).  Messages
        counted as lost are done once ``on_error`` returned for them (it is
        called after they are counted, outside the lock).  Restarts worker
        threads that are gone instead of waiting for them forever.
        """
        deadline = None if timeout is None else self._clock() + timeout
        # never past the timeout, even for the lock (held where it should not be: see abandon_to_new_hub)
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            try:
                return self._unsettled_before(target)  # an estimate, without the lock
            except RuntimeError:  # a worker changed the batches in flight meanwhile
                return max(1, target - self.queue.taken_total)
        try:
            if target > self._flush_target:
                self._flush_target = target
            self._work.notify_all()
            while True:
                pending = self._unsettled_before(target)
                if not pending and not any(b.start < target for b in self._inflight.values()):
                    return 0  # settled, and no worker is still telling on_error about them
                now = self._clock()
                if deadline is not None and now >= deadline:
                    return pending
                if not self._stopping and not any(t.is_alive() for t in self._threads):
                    self._lock.release()
                    try:
                        log.warning("consumer thread was gone; starting a new one")
                        self.ensure_started()
                    finally:
                        self._lock.acquire()
                    continue
                wait = _LIVENESS_CHECK_S if deadline is None else min(_LIVENESS_CHECK_S, deadline - now)
                self.clock.wait(self._progress, wait)
        finally:
            self._lock.release()

    # --- lifecycle ------------------------------------------------------------

    def stop(self, timeout: Optional[float]) -> int:
        """Drain and stop the workers.  Returns the number of messages dropped at the deadline.

        With ``timeout`` None, everything queued gets its normal delivery
        attempts, except that once one batch has used up its retries the rest
        are not sent: they go to ``on_error`` as dropped (reason ``shutdown``).
        A durable queue instead stops after the retry policy's ``max_time``,
        keeping what is unsent.
        With a number, whatever is still queued or retrying at the deadline is
        reported the same way.
        """
        dropped_before = self.stats.dropped["shutdown"]
        if timeout is None and self.durable and math.isfinite(self.config.retry.max_time):
            # A durable queue retries an outage without limit: bound the wait as a memory
            # queue's retries are bounded; what is not sent by then stays queued (file, stream).
            timeout = self.config.retry.max_time
        with self._lock:
            self._stopping = True
            if timeout is not None:
                deadline = self._clock() + max(0.0, timeout)
                if self._deadline is None or deadline < self._deadline:
                    self._deadline = deadline
            self._work.notify_all()
            self._interrupt.notify_all()
            threads = list(self._threads)
        current = threading.current_thread()
        if self.durable:
            # commit what is buffered first, so the workers can send it
            self.queue.close(None if self._deadline is None else max(0.0, self._deadline - self._clock()))
            with self._lock:
                self._work.notify_all()
        else:
            self.queue.close()
        others = [t for t in threads if t is not current]
        for t in others:
            if self._deadline is None:
                t.join()
            else:
                self.clock.join(t, max(0.0, self._deadline - self._clock()))
                t.join(0.05)  # real time: a worker that is just finishing at the deadline
        if any(t.is_alive() for t in others):
            self._abandon_hung_requests(others)
        if self.durable and len(self.queue):
            log.warning("%d message(s) not sent yet; kept in %s for %s", len(self.queue), self.queue.where,
                        "the other consumers" if self.queue.shared else "the next start")
        error = ShutdownError("the client was shut down before these were sent")
        with self._lock:  # taken and counted at one moment: see snapshot()
            leftover = self.queue.take_all()
            if leftover:
                self._count_lost(leftover, error, "shutdown")
        if leftover:
            self._tell(leftover, error)
        self.stopped = True
        return self.stats.dropped["shutdown"] - dropped_before

    def abandon_to_new_hub(self, on_dead_hub: bool) -> List[bytes]:
        """The loop these workers run on was replaced (see :mod:`analytics.engine.hosts`): they take no
        other batch, and what is queued is the caller's to move; returns the unsettled messages they
        hold that will never be sent (``on_dead_hub``), else none (real threads finish their batches).

        On a dead eventlet hub, without the lock: a worker waiting for it
        there may have been handed it, and would keep it forever; nothing
        runs on that hub any more, and a worker that the new hub ever wakes
        finds ``_abandoning`` and ends.  Real threads do run: the flag is set
        under the lock, so none is choosing a batch then, and none takes one after.
        """
        if on_dead_hub:
            self._abandoning = self._stopping = self.stopped = True
            return [item for batch in list(self._inflight.values()) for item in batch.unsettled()[0]]
        with self._lock:
            self._abandoning = self._stopping = self.stopped = True
            self._work.notify_all()
        return []

    def _abandon_hung_requests(self, workers: List[threading.Thread]) -> None:
        # Past the deadline a worker still waits for an answer: wake it by
        # aborting the connections (it then reports its batch itself), and
        # report for those that stay stuck (a transport that cannot abort).
        try:
            self.transport.abort()
        except Exception:  # pragma: no cover
            log.exception("could not abort the transport's connections")
        for t in workers:
            t.join(_ABORT_GRACE_S)
        with self._lock:
            self._abandoning = True
            lost = self._abandon_in_flight()
        for items, error in lost:
            self._tell(items, error)

    # --- the worker loop ------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                got = self._next_batch()
                if got is None:
                    return
                token, items, keys, drop = got
                self._current.token = token
                if self._grow:
                    self._add_worker()
                try:
                    if drop is not None:
                        self.lose(items, drop, "shutdown")
                    else:
                        self.deliver(items, keys)
                finally:
                    self._close_batch(token)
        except BaseException:  # pragma: no cover - only a bug in this library gets here
            log.exception("consumer thread stopped by an unexpected error")
            raise
        finally:
            with self._lock:
                self._worker_ids.discard(threading.get_ident())
                current = threading.current_thread()
                self._threads = [t for t in self._threads if t is not current]
                self._progress.notify_all()

    def _next_batch(self) -> Optional[Tuple[int, List[bytes], Optional[List[Any]], Optional[DeliveryError]]]:
        cfg = self.config
        q = self.queue
        with self._lock:
            self._looking += 1  # before reading the queue: see wake()
            try:
                return self._choose_batch(cfg, q)
            finally:
                self._looking -= 1

    def _choose_batch(self, cfg: Config, q: Queue) -> Optional[Tuple[int, List[bytes], Optional[List[Any]], Optional[DeliveryError]]]:
        """The body of :meth:`_next_batch`, under the lock."""
        first_seen: Optional[float] = None
        idle_since: Optional[float] = None
        drop: Optional[DeliveryError] = None
        while True:
            if self._abandoning:
                return None  # stop() accounts for what is left
            n = q.ready()
            if n == 0:
                if self._stopping and (not self.durable or not len(q) or self._past_deadline()):
                    return None
                first_seen = None
                if len(self._threads) > self.thread_count:
                    # a worker added for a backlog: it ends once it has had nothing to do for a while
                    now = self._clock()
                    idle_since = now if idle_since is None else idle_since
                    if now - idle_since >= self.idle_exit_s:
                        self._threads = [t for t in self._threads if t is not threading.current_thread()]
                        return None
                    self.clock.wait(self._work, self.idle_exit_s - (now - idle_since))
                    continue
                self.clock.wait(self._work, None if not len(q) else cfg.upload_interval)
                continue
            idle_since = None
            if self._stopping:
                if self._past_deadline():
                    if self.durable:
                        return None  # the rest stays in the spool for the next process
                    drop = ShutdownError("the shutdown deadline passed before these were sent")
                elif self._give_up is not None:
                    drop = ShutdownError(
                        f"not sent at shutdown: an earlier batch used up its retries ({self._give_up})"
                    )
                break
            now = self._clock()
            if first_seen is None:
                first_seen = now
            if n >= cfg.upload_size or self._flush_target > q.taken_total:
                break
            waited = now - first_seen
            if waited >= cfg.upload_interval:
                break
            self.clock.wait(self._work, cfg.upload_interval - waited)
        start = q.taken_total
        keys = None
        if drop is not None:
            items = q.take_all()
        else:
            items, keys = q.take_batch(self._batch_items(cfg), self.destination.max_body_bytes - self.destination.overhead())
        token = self._open_batch(start, items, keys, self._clock())
        ready = q.ready()
        if ready >= cfg.upload_size or (ready and self._flush_target > q.taken_total):
            # more ready: let another worker start on it, or add one (up to max_in_flight)
            if self._looking > 1:
                self._work.notify()
            elif not self._backing_off and not self._stopping and len(self._threads) < self._max_workers():
                self._grow = True
        return token, items, keys, drop

    def _batch_items(self, cfg: Config) -> int:
        """The most messages the next batch may hold: all that is ready up to the byte limit
        (a backlog makes batches grow), at most an explicit ``upload_size``."""
        limit = min(self.destination.max_items, _MAX_BATCH_ITEMS)
        return min(limit, cfg.upload_size) if "upload_size" in cfg.explicit else limit

    # --- delivery -------------------------------------------------------------

    def deliver(self, items: List[bytes], keys: Optional[List[Any]] = None) -> int:
        """Send ``items`` as one batch (see :meth:`Delivery.deliver`); how many were delivered."""
        return self.delivery.deliver(items, keys)

    # --- the ledger delivery reports to (see analytics.engine.delivery.Ledger) ----

    def now(self) -> float:
        """The engine's clock."""
        return self._clock()

    @property
    def deadline(self) -> Optional[float]:
        """The shutdown deadline, once shutdown() set one."""
        return self._deadline

    def hold_all(self, seconds: float) -> None:
        """No worker sends before ``seconds`` from now (the server's Retry-After)."""
        with self._lock:
            self.not_before = max(self.not_before, self._clock() + seconds)

    def gave_up(self, error: DeliveryError) -> None:
        """A batch used up its retries: at shutdown the rest is not tried (see stop())."""
        if self._stopping:
            with self._lock:
                self._give_up = error

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the shutdown deadline comes first.  False when cut short by it."""
        end = self._clock() + seconds
        with self._lock:
            self._backing_off += 1  # producers must not wait for us
            self._progress.notify_all()
            try:
                while True:
                    limit = end if self._deadline is None else min(end, self._deadline)
                    remaining = limit - self._clock()
                    if remaining <= 0:
                        break
                    self.clock.wait(self._interrupt, remaining)
                return self._deadline is None or self._clock() < self._deadline
            finally:
                self._backing_off -= 1

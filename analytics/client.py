"""The Client: validate a call, encode it once, queue the bytes, return at once."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from typing import Any, Dict, FrozenSet, List, Optional, Set, Union, cast

from . import _checks, messages
from . import options as _options
from .engine import Consumer, report
from .clock import Clock
from .engine.hosts import threads_stall_between_calls
from .errors import ConfigurationError, MessageTooLargeError, QueueFullError, ShutdownError, SpoolError
from .destinations import Destination
from .destinations.cdp import DataPipelines
from .messages import ID, Fields, Message, Result, Timestamp
from .options import DEFAULT_HOST, Config, OnError
from .queues import Queue, SharedQueue, open_queue
from .retry import RetryPolicy
from .stats import Stats, StatsSnapshot
from .transport import HTTPTransport, Transport
from .version import VERSION
from .views import ConsumerView, QueueView

__all__ = ["Client", "DEFAULT_HOST"]

log = logging.getLogger("customerio.analytics")
_root_log = logging.getLogger("customerio")


_number = _checks.number
_add_unsent_keys = messages.add_unsent_keys


class _Setting:
    """A Client attribute that is checked when set and read by the consumer per batch."""

    def __set_name__(self, owner: type, name: str) -> None:
        if not _options.BY_NAME[name].live:
            raise TypeError(f"{name} is not a live option (see analytics.options)")
        self.name = name

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._config, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        if self.name in ("write_key", "host") and obj._config.queue is not None:
            _options.BY_NAME[self.name].checked(value)  # a bad value is named first
            # the stream is named after them: another value would send one tenant's messages with another's key
            raise ConfigurationError(f"{self.name} cannot be changed on a client with a Redis queue")
        obj._apply(self.name, obj._config.set(self.name, value))


def _setting() -> Any:
    # typed Any so that the class body declares each setting's type: `timeout: float = _setting()`
    return _Setting()


# --- debug logging ------------------------------------------------------------

_debug_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()
_saved_level: Optional[int] = None
#: Ours, added while debug is on when the application configured no logging at all.
_debug_handler: Optional[logging.Handler] = None


#: How long a call waits for a due batch where threads stall between calls (see _deliver_if_due).
_CALLER_DELIVERY_WAIT_S = 1.0
_warned: Set[str] = set()


def _warn_once(text: str) -> None:
    """Log ``text`` as a warning once per process."""
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def _logging_configured() -> bool:
    """Whether the application set up logging that would show our records (a handler on the
    root logger or on ``customerio``)."""
    return bool(logging.getLogger().handlers or _root_log.handlers)


def _set_debug(client: "Client", on: bool) -> None:
    """``debug=True`` lowers the ``customerio`` logger to DEBUG; the last client to turn it off restores it.

    When the application configured no logging, Python would show nothing
    below WARNING, so a handler writing to stderr is added to the
    ``customerio`` logger (never to the root logger) while debug is on.
    """
    global _saved_level, _debug_handler
    if on:
        if not _debug_clients:
            _saved_level = _root_log.level
            if not _logging_configured():
                _debug_handler = logging.StreamHandler()
                _debug_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
                _root_log.addHandler(_debug_handler)
        _debug_clients.add(client)
        _root_log.setLevel(logging.DEBUG)
    elif client in _debug_clients:
        _debug_clients.discard(client)
        if not _debug_clients and _saved_level is not None:
            _root_log.setLevel(_saved_level)
            _saved_level = None
            if _debug_handler is not None:
                _root_log.removeHandler(_debug_handler)
                _debug_handler = None


# --- fork safety --------------------------------------------------------------

_live_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()
#: Active captures (analytics.testing.capture): while any is, calls record their message there
#: instead of queueing it.
_captures: List[Any] = []
_abandoned: List[Any] = []  # a forked child's copies of the parent's spools: never closed, never used


def _before_fork() -> None:
    # multiprocessing children leave with os._exit(), which skips atexit: ask
    # multiprocessing to run each client's exit drain in its own children too.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    for client in _clients():
        if not client._mp_registered:
            client._mp_registered = True
            mp_util.register_after_fork(client, _mp_child_exit_hook)


def _mp_child_exit_hook(client: "Client") -> None:
    # Runs in a multiprocessing child after its bootstrap (which clears the
    # finalizer registry); this finalizer runs from multiprocessing's exit
    # function before os._exit(), and only once (weakref.finalize is one-shot).
    import multiprocessing.util as mp_util

    client._check_pid()  # the finalizer of this process's engine, not the parent's
    mp_util.Finalize(client, client._finalizer, exitpriority=10)


def _register_mp_exit_if_in_child(client: "Client") -> None:
    # A client created inside a multiprocessing child (the shared client made
    # by the first call in a Pool task, say) missed _before_fork: register its
    # exit drain with multiprocessing now, or os._exit() skips it.
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        client._mp_registered = True
        _mp_child_exit_hook(client)


def _clients() -> List["Client"]:
    # A copy of the live clients; another thread may be creating one meanwhile.
    for _ in range(5):
        try:
            return list(_live_clients)
        except RuntimeError:  # the set changed size during iteration
            continue
    return []


def build_engines() -> None:
    """Give every client made before a fork its own queue, threads and connections in this process
    now (a pool process's start, Celery's ``worker_process_init``), not at its first call."""
    for client in _clients():
        client._check_pid()


def drain_clients(flush_only: bool = False, timeout: Optional[float] = None) -> int:
    """Deliver what every client of this process queued; how many messages are still pending.

    For process pools whose workers end without running ``atexit`` (Celery's
    prefork pool, say).  By default each client gets its exit drain: what it
    queued is delivered within its ``exit_timeout`` and the client is then
    closed, as at interpreter exit.  With ``flush_only`` each is flushed
    (waiting at most ``timeout`` seconds) and stays open.  Never raises.
    """
    pending = 0
    for client in _clients():
        try:
            if flush_only:
                pending += client.flush(timeout)
            else:
                client._check_pid()  # this process's engine, not a parent's
                client._finalizer()  # the exit drain (one-shot: interpreter exit then skips it)
                pending += client.stats()["pending"]
        except Exception:  # pragma: no cover - a drain must never break the caller's shutdown
            log.exception("draining a client failed")
    return pending


def _after_fork_in_child() -> None:
    for client in _clients():
        try:
            client._engine_locks.clear()  # the child makes its own at its first call
            client._leave_parent_engine()
        except Exception:  # pragma: no cover - never break the user's fork
            log.exception("could not reset an analytics client after fork")


def _process_lock(locks: Dict[int, Any]) -> Any:
    """This process's lock in ``locks``, made at its first use in the process.

    Not in an at-fork hook: gevent's worker (``gunicorn -k gevent``) patches
    ``threading`` after the fork, and a greenlet that waits for a real lock
    another greenlet holds stops the whole process.  Keyed by pid, so a lock
    that a thread of the parent held at the fork is never used, even after a
    fork that bypassed the at-fork hooks (which also clear ``locks``);
    ``setdefault`` is atomic, so threads racing to the first use share one.
    """
    return locks.setdefault(os.getpid(), threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _finalize(consumer: Consumer, config: Config, transport: Transport) -> None:
    # Runs when the Client is garbage collected, or at interpreter exit, unless
    # shutdown() released everything first (it detaches this finalizer).
    try:
        if not consumer.stopped and (consumer.started or consumer.durable):
            consumer.stop(config.exit_timeout)
    finally:
        transport.close()
        consumer.queue.release()


class Client:
    """A Data Pipelines client: one queue, one HTTP session, ``thread`` consumer threads.

    The positional parameters are those of ``customerio-cdp-analytics`` in the
    same order; the keyword-only ones are this library's additions:

    ``max_queue_wait``
        Seconds a call may wait for room when the queue is full (backpressure).
        0 (default) drops the message instead; ``None`` waits as long as needed.
    ``max_retry_time``
        Seconds after which a failing batch is given up, whatever
        ``max_retries`` says (default 60).
    ``exit_timeout``
        Seconds the interpreter-exit hook spends delivering what is still
        queued (default 5); ``None`` waits for every retry.
    ``pace_wait``
        The most one call is slowed while the queue fills faster than it
        drains (default 0.004 s; 0 turns pacing off): past a quarter of the
        queue, calls are spaced to the measured delivery rate (see
        :mod:`analytics.engine.backpressure`).  Never waits while delivery is
        impossible (a retry pending, ``Retry-After``, no answer for a second).
    ``max_in_flight``
        Requests sent at once while a backlog exists (default 8), each on a
        pooled keep-alive connection; 1 keeps batches in call order.
    ``retry_policy``
        A :class:`~analytics.retry.RetryPolicy` for full control of waits.
    ``transport``
        An object with ``post(url, body, headers, timeout, proxies)`` and
        ``close()``, instead of the built-in ``requests`` session.
    ``clock``
        The engine's time: every interval, retry wait, ``Retry-After`` and
        pacing sleep is read and waited through it (default: the system's
        monotonic clock).  Tests pass :class:`analytics.testing.FakeClock`
        to move time by hand.
    ``user_agent``
        The User-Agent header (default ``cdp-relay/<version> (python)``).
    ``queue``
        ``"redis://host:6379/0"``: a Redis stream shared by every process
        and host that uses the same URL and write key (needs the ``redis``
        extra); see README "Many processes and hosts: the Redis queue".
        ``consume`` (default True) delivers from it in this process too;
        ``consume=False`` only produces (web processes) while workers
        (``python -m analytics worker``) deliver.  ``claim_after`` (30 s):
        how long an entry read by a consumer that died stays unacknowledged
        before another takes it over.  ``stream_prefix`` names the keys.
    ``destination``
        Deliver to another batch API instead of Data Pipelines, for example
        ``TrackV2(site_id, api_key)`` or ``Bloomreach(project_token, ...)``
        (see :mod:`analytics.destinations`).  Each call is translated in the
        caller's thread; a call the API cannot express raises
        :class:`~analytics.errors.UnsupportedCallError`.  ``write_key`` and
        ``host`` are not used; ``upload_size`` is capped at the API's limit.

    Every setting can be changed on a live client (``client.gzip = True``);
    the change applies to the next batch.  Calls raise
    :class:`~analytics.errors.InvalidMessageError` for bad arguments and
    return ``(success, message)``.
    """

    log = logging.getLogger("customerio")

    # the options that can change on a live client (analytics.options: live=True)
    write_key: Optional[str] = _setting()
    host: str = _setting()
    debug: bool = _setting()
    max_queue_size: int = _setting()
    send: bool = _setting()
    on_error: Optional[OnError] = _setting()
    gzip: bool = _setting()
    max_retries: int = _setting()
    sync_mode: bool = _setting()
    timeout: float = _setting()
    proxies: Optional[Dict[str, Any]] = _setting()
    upload_size: int = _setting()
    upload_interval: float = _setting()
    max_queue_wait: Optional[float] = _setting()
    max_retry_time: float = _setting()
    exit_timeout: Optional[float] = _setting()
    pace_wait: float = _setting()
    max_in_flight: int = _setting()
    before_send: Optional[_options.BeforeSend] = _setting()
    global_context: Optional[Dict[str, Any]] = _setting()
    global_properties: Optional[Dict[str, Any]] = _setting()
    _given: FrozenSet[str]  # the names of the arguments passed to __init__ (see options.records_given)

    @_options.records_given
    def __init__(
        self,
        write_key: Optional[str] = None,
        host: Optional[str] = None,
        debug: bool = False,
        max_queue_size: int = 10000,
        send: bool = True,
        on_error: Optional[OnError] = None,
        gzip: bool = False,
        max_retries: int = 10,
        sync_mode: bool = False,
        timeout: float = 15,
        proxies: Optional[Dict[str, Any]] = None,
        thread: int = 1,
        upload_size: int = 100,
        upload_interval: float = 0.5,
        *,
        max_queue_wait: Optional[float] = 0.0,
        max_retry_time: float = 60.0,
        exit_timeout: Optional[float] = 5.0,
        pace_wait: float = 0.004,
        max_in_flight: int = 8,
        retry_policy: Optional[RetryPolicy] = None,
        transport: Optional[Transport] = None,
        clock: Optional[Clock] = None,
        user_agent: Optional[str] = None,
        spool_path: Optional[str] = None,
        spool_max_bytes: Optional[int] = None,
        spool_required: bool = False,
        spool_sync: str = "normal",
        destination: Optional[Destination] = None,
        queue: Optional[str] = None,
        consume: bool = True,
        claim_after: float = 30.0,
        stream_prefix: str = "cdp-relay",
        before_send: Optional[_options.BeforeSend] = None,
        global_context: Optional[Dict[str, Any]] = None,
        global_properties: Optional[Dict[str, Any]] = None,
    ) -> None:
        # every parameter is an option of analytics.options; Config checks them all, defaults included
        arguments = locals()
        cfg = self._config = Config(**{name: arguments[name] for name in self._given})
        if cfg.send and cfg.write_key is None and cfg.destination is None:
            raise ConfigurationError(
                "write_key is required: Client('YOUR_WRITE_KEY') or analytics.write_key = 'YOUR_WRITE_KEY' "
                "(or send=False to only validate)"
            )
        if cfg.spool_path is not None and cfg.queue is not None:
            raise ConfigurationError("use either spool_path or queue='redis://...', not both")
        self._own_transport = cfg.transport is None
        self._transport: Transport = HTTPTransport() if cfg.transport is None else cfg.transport
        self._closed = False
        self._mp_registered = False
        self._forked = False  # the at-fork hook left the parent's engine; the next call builds ours
        self._engine_locks: Dict[int, Any] = {}  # see _process_lock
        #: Where messages go: the destination given, or Data Pipelines (host and write_key, read per batch).
        self._dest: Destination = cfg.destination if cfg.destination is not None else DataPipelines(cfg)
        self._build_engine(self._make_queue())
        if cfg.debug:
            _set_debug(self, True)
        stall = threads_stall_between_calls() if cfg.send and not cfg.sync_mode else None
        self._calls_deliver = stall is not None  # see _deliver_if_due
        self._waiting_since = 0.0
        self._before_send_failures = 0  # failures of before_send since it last worked
        if stall is not None:
            _warn_once(stall)
        _live_clients.add(self)
        _register_mp_exit_if_in_child(self)

    @property
    def destination(self) -> Optional[Destination]:
        """The batch API this client delivers to (``None``: Data Pipelines)."""
        return self._config.destination

    def _stream_full(self, items: List[bytes]) -> None:
        # the writer thread: the shared stream held max_queue_size entries
        error = QueueFullError(
            f"the Redis stream is full ({self._queue.maxsize} entries); {len(items)} message(s) dropped"
        )
        self._stats.count_lost("queue_full", len(items), error)
        log.warning("%s", error)
        report(self._config.on_error, error, [self._dest.decode(i) for i in items])

    def _build_engine(self, queue: Queue) -> None:
        # Everything that is per process: counters, queue, consumer (threads,
        # locks) and the exit hook.  Rebuilt in a forked child.
        self._pid = os.getpid()
        self._stats = Stats()
        self._queue = queue
        fmt = self._dest
        threads = self._config.thread if queue.consume else 0
        self._consumer = Consumer(self._config, queue, self._transport, fmt, self._stats, threads,
                                  clock=self._config.clock)
        self._dropping = False
        self._burst_drops = 0
        self._set_pace_from()
        self._finalizer = weakref.finalize(self, _finalize, self._consumer, self._config, self._transport)
        if self._config.send and (len(queue) or (queue.shared and queue.consume)):
            # messages left in a spool by an earlier process, or a shared queue to deliver from
            self._consumer.ensure_started()

    def _make_queue(self) -> Queue:
        return open_queue(self._config, on_refused=self._stream_full)

    def _leave_parent_engine(self) -> None:
        """In a forked child (the at-fork hook): let go of the parent's engine; the next call builds ours.

        Not built here: the locks, conditions, thread-locals and session
        would be made with the ``threading`` of the moment of the fork, and
        gevent's worker (``gunicorn -k gevent --preload``) patches it later.
        """
        if self._forked or self._pid == os.getpid():
            return  # a child that forks before its first call has left the engine already
        self._finalizer.detach()  # the parent's exit hook is the parent's business
        old = self._queue
        if old.durable:
            # never touch the parent's SQLite connection; take a slot of our own (at the build)
            old.forget_after_fork()
            _abandoned.append(old)
        self._forked = True

    def _check_pid(self) -> None:
        # the hook marked a fork, or (the fallback) a fork bypassed the hook
        if self._forked or self._pid != os.getpid():
            with _process_lock(self._engine_locks):
                if self._forked or self._pid != os.getpid():
                    self._after_fork(hooked=self._forked)

    def _after_fork(self, hooked: bool) -> None:
        """Give this (forked child) process its own queue, consumer, locks, session and counters.

        Called by the first call in the child after the ``os.register_at_fork``
        hook.  Messages the parent had queued stay the parent's to deliver:
        the child starts empty.  If a fork bypassed the hook (a C extension
        calling ``fork()`` directly) the pid check at the next wake-up calls
        this with ``hooked=False``; the messages in the inherited queue cannot
        be told apart, so they are kept (a duplicate with the same messageId
        is better than a loss).
        """
        if not hooked:
            self._leave_parent_engine()
        if self._own_transport:
            self._transport = HTTPTransport()  # never share a socket with the parent
        else:
            self._transport.after_fork()
        old = self._queue
        queue = self._make_queue()
        if not hooked and not old.durable:
            for item in old.items_after_fork():
                queue.put(item)
            log.warning("a fork bypassed os.register_at_fork; %d queued message(s) may be sent twice", len(queue))
        self._build_engine(queue)
        self._forked = False  # last: other threads use the engine once this is False
        if not hooked and len(queue):
            self._consumer.wake()

    def _set_pace_from(self) -> None:
        # pacing starts once a quarter of the queue is used, and never with pace_wait 0 (nor with
        # a Redis queue: the buffer drains to Redis, and the consumers may be other processes)
        cfg = self._config
        paced = cfg.pace_wait and not self._queue.shared
        self._pace_from = max(cfg.max_queue_size // 4, 2 * cfg.upload_size) if paced else 1 << 62

    def _apply(self, name: str, value: Any) -> None:
        # side effects of changing a setting on a live client
        if name in ("max_queue_size", "upload_size", "pace_wait"):
            self._set_pace_from()
        if name == "max_queue_size":
            self._queue.maxsize = value
        elif name == "debug":
            _set_debug(self, value)
        elif name in ("write_key", "send") and self._config.send and self._config.write_key is None:
            log.warning("send is on but no write_key is set: requests will be refused as unauthorized")

    @property
    def spool_error(self) -> Optional[SpoolError]:
        """Why the spool is not in use (could not open it, or the disk failed later), or None.

        While this is set, new messages are kept in memory: not durable, but not lost.
        """
        return self._queue.degraded

    @property
    def queue(self) -> QueueView:
        """A read-only view of the queue: ``maxsize``, ``qsize()``, ``empty()``, ``full()`` (as the
        official SDK's ``client.queue`` is read; see :mod:`analytics.views`)."""
        return QueueView(self)

    @property
    def consumers(self) -> List[ConsumerView]:
        """Read-only views of the ``thread`` delivery threads (``timeout``, ``retries``,
        ``upload_size``, ``upload_interval``, ``is_alive()``); empty in ``sync_mode``, where the
        caller's thread delivers, and for a Redis queue this process only produces to."""
        if self._config.sync_mode:
            return []
        return [ConsumerView(self, i) for i in range(self._consumer.thread_count)]

    @property
    def thread(self) -> int:
        """Number of consumer threads (fixed at construction)."""
        return self._config.thread

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in use (``max_retries`` and ``max_retry_time`` write through to it)."""
        return self._config.retry

    # --- the six calls --------------------------------------------------------

    def identify(
        self,
        user_id: Optional[ID] = None,
        traits: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[ID] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[ID] = None,
    ) -> Result:
        """Say who the user is and set their traits.  Needs ``user_id`` or ``anonymous_id``."""
        return self._enqueue(
            messages.build(
                "identify",
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits=traits,
                context=context,
                base_context=self._config.global_context,
                timestamp=timestamp,
                integrations=integrations,
                message_id=message_id,
            )
        )

    def track(
        self,
        user_id: Optional[ID] = None,
        event: Optional[str] = None,
        properties: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[ID] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[ID] = None,
    ) -> Result:
        """Record that the user did ``event``.  Needs ``event`` and ``user_id`` or ``anonymous_id``."""
        return self._enqueue(
            messages.build(
                "track",
                user_id=user_id,
                anonymous_id=anonymous_id,
                event=event,
                properties=properties,
                base_properties=self._config.global_properties,
                context=context,
                base_context=self._config.global_context,
                timestamp=timestamp,
                integrations=integrations,
                message_id=message_id,
            )
        )

    def alias(
        self,
        previous_id: Optional[ID] = None,
        user_id: Optional[ID] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[ID] = None,
    ) -> Result:
        """Merge ``previous_id`` into ``user_id``.  Both are required."""
        return self._enqueue(
            messages.build(
                "alias",
                user_id=user_id,
                previous_id=previous_id,
                context=context,
                base_context=self._config.global_context,
                timestamp=timestamp,
                integrations=integrations,
                message_id=message_id,
            )
        )

    def group(
        self,
        user_id: Optional[ID] = None,
        group_id: Optional[ID] = None,
        traits: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[ID] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[ID] = None,
        *,
        object_type_id: Optional[Union[str, int]] = None,
    ) -> Result:
        """Associate the user with a group (a Customer.io object).  Needs ``group_id``.

        ``object_type_id`` (a whole number, sent as the string ``objectTypeId``)
        picks the Customer.io object type; ``traits['object_type_id']`` works too.
        """
        return self._enqueue(
            messages.build(
                "group",
                user_id=user_id,
                anonymous_id=anonymous_id,
                group_id=group_id,
                object_type_id=object_type_id,
                traits=traits,
                context=context,
                base_context=self._config.global_context,
                timestamp=timestamp,
                integrations=integrations,
                message_id=message_id,
            )
        )

    def page(
        self,
        user_id: Optional[ID] = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[ID] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[ID] = None,
    ) -> Result:
        """Record a page view.  Needs ``user_id`` or ``anonymous_id``."""
        return self._page_or_screen(
            "page", user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id
        )

    def screen(
        self,
        user_id: Optional[ID] = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[ID] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[ID] = None,
    ) -> Result:
        """Record a mobile screen view.  Needs ``user_id`` or ``anonymous_id``."""
        return self._page_or_screen(
            "screen", user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id
        )

    def _page_or_screen(
        self,
        type_: str,
        user_id: Any,
        category: Any,
        name: Any,
        properties: Any,
        context: Any,
        timestamp: Any,
        anonymous_id: Any,
        integrations: Any,
        message_id: Any,
    ) -> Result:
        return self._enqueue(
            messages.build(
                type_,
                user_id=user_id,
                anonymous_id=anonymous_id,
                category=category,
                name=name,
                properties=properties,
                base_properties=self._config.global_properties,
                context=context,
                base_context=self._config.global_context,
                timestamp=timestamp,
                integrations=integrations,
                message_id=message_id,
            )
        )

    # --- the hot path ---------------------------------------------------------

    def _enqueue(self, msg: Message) -> Result:
        cfg = self._config
        if cfg.before_send is not None:
            shaped = self._shape(msg, cfg.before_send)
            if shaped is None:
                _add_unsent_keys(msg)
                return False, msg
            msg = shaped
        destination = self._dest
        data = destination.encode(msg)
        if len(data) > destination.max_message_bytes:
            raise MessageTooLargeError(len(data), destination.max_message_bytes)
        _add_unsent_keys(msg)  # the official SDK's keys with no value, after encoding: never sent
        if _captures:
            for capture in _captures:
                capture.record(data)
            return True, msg
        if cfg.debug:
            log.debug("queueing %s %s", msg["type"], msg["messageId"])
        if not cfg.send:
            return True, msg
        if self._forked:
            self._check_pid()  # the first call after a fork builds this process's engine
        if self._closed:
            error = ShutdownError("the client was shut down; message not sent")
            self._stats.count_lost("shutdown", 1, error, at_call=True)
            report(cfg.on_error, error, [msg])
            return False, msg
        if cfg.sync_mode:
            self._stats.count_direct()
            return self._consumer.deliver([data]) == 1, msg
        n = self._queue.put(data, cfg.max_queue_wait)
        if n == 0:
            self._queue_full(msg)
            return False, msg
        if self._dropping and n <= self._queue.maxsize // 2:
            self._end_burst()
        if n >= self._pace_from:
            self._consumer.pace(n)
        if n == 1 or n == cfg.upload_size:
            self._check_pid()  # the fallback when a fork bypassed os.register_at_fork
            consumer = self._consumer
            if not consumer.started:
                consumer.ensure_started()
            consumer.wake()
        if self._calls_deliver:
            self._deliver_if_due(n)
        return True, msg

    def _deliver_if_due(self, queued: int) -> None:
        # Threads stall between calls (uWSGI without --enable-threads): the call that completes a
        # batch, or comes upload_interval after the first message waiting, waits for the delivery
        # (the workers run while it waits), unless delivery is on hold (a retry, Retry-After).
        cfg = self._config
        now = self._consumer.now()
        earlier = queued - 1 + self._consumer.in_flight()  # pending before this call's message
        if not earlier:
            self._waiting_since = now
        if queued < cfg.upload_size and (not earlier or now - self._waiting_since < cfg.upload_interval):
            return
        if not self._consumer.on_hold():
            self.flush(timeout=min(cfg.timeout, _CALLER_DELIVERY_WAIT_S))

    def _shape(self, msg: Message, before_send: Any) -> Optional[Message]:
        """``msg`` through the ``before_send`` function(s); ``None`` when one dropped it or failed.

        A drop is counted under ``dropped['before_send']``, a failure (an exception, or a
        result that is not a dict) under ``dropped['before_send_error']`` and logged once per
        run of failures; neither reaches the caller or ``on_error``.
        """
        for function in before_send if isinstance(before_send, tuple) else (before_send,):
            try:
                msg = function(msg)
                if msg is not None and not isinstance(msg, dict):
                    raise TypeError(f"before_send returned a {type(msg).__name__}, not a dict or None")
            except Exception as exc:
                self._before_send_failures += 1
                if self._before_send_failures == 1:
                    log.warning("before_send raised %s: %s; the message is dropped (and so are the next ones "
                                "it fails on, logged again when it works)", type(exc).__name__, exc)
                if self._config.send:
                    self._stats.count_lost("before_send_error", 1, None, at_call=True)
                return None
            if msg is None:
                if self._config.send:
                    self._stats.count_lost("before_send", 1, None, at_call=True)
                break
        if self._before_send_failures and msg is not None:
            log.warning("before_send works again; %d message(s) were dropped while it failed",
                        self._before_send_failures)
            self._before_send_failures = 0
        return msg

    def _queue_full(self, msg: Message) -> None:
        error = QueueFullError(f"the queue is full ({self._queue.maxsize} messages); message dropped")
        self._stats.count_lost("queue_full", 1, error, at_call=True)
        self._burst_drops += 1
        if not self._dropping:
            self._dropping = True
            log.warning(
                "queue is full (max_queue_size=%d): dropping messages until the consumer catches up",
                self._queue.maxsize,
            )
        report(self._config.on_error, error, [msg])

    def _end_burst(self) -> None:
        # Only once the queue has drained to half: at the boundary it would
        # otherwise flip between full and not full with every batch taken.
        self._dropping = False
        dropped, self._burst_drops = self._burst_drops, 0
        log.warning("queue accepting messages again; %d were dropped while it was full", dropped)

    # --- flush, stats, lifecycle ----------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> int:
        """Send what is queued now, without waiting for ``upload_interval``.

        Blocks until every message queued before the call was delivered or
        reported to ``on_error``, or until ``timeout`` seconds passed.
        Returns how many of those messages are still pending: 0 means done.
        Called from inside ``on_error`` it does not wait (it would wait for
        itself) and returns the pending count.
        """
        if timeout is not None:
            _number("timeout", timeout, 0)
        self._check_pid()
        target = self._queue.put_total
        if self._consumer.on_worker_thread():
            log.warning("flush() called from on_error does not wait; call it from another thread")
            timeout = 0
        if self._queue.shared:
            pending = self._flush_shared(timeout)
        else:
            pending = self._consumer.wait_settled(target, timeout)
        if pending:
            log.info("flush: %d message(s) still pending at the deadline", pending)
        return pending

    def _flush_shared(self, timeout: Optional[float]) -> int:
        # Everything this process put reaches Redis; then wait until no entry up to the last
        # one it added is left in the stream (consumers delete what they settle).
        deadline = None if timeout is None else time.monotonic() + timeout
        q = cast(SharedQueue, self._queue)  # shared: a SharedQueue
        unwritten = q.wait_durable(None, timeout)
        if unwritten:
            return unwritten
        last = q.last_id
        pause = 0.002
        while True:
            self._consumer.send_now()  # this process's workers: no waiting for a full batch
            left = q.backlog_before(last)  # None: the stream cannot be read now
            if left == 0:
                return 0
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return left or 1
            time.sleep(pause if deadline is None else min(pause, deadline - now))
            pause = min(pause * 2, 0.05)

    def wait_durable(self, timeout: Optional[float] = None) -> int:
        """Wait until every message accepted before the call is safe from a crash of this process.

        With a spool (``spool_path``) a message is safe once its group is
        committed to the file, a few milliseconds after the call; without
        one, only once it was delivered (this is then the same as
        :meth:`flush`).  Returns how many are not safe yet (0: all are).
        """
        if timeout is not None:
            _number("timeout", timeout, 0)
        self._check_pid()
        if not self._queue.durable:
            return self.flush(timeout)
        return self._queue.wait_durable(None, timeout)

    def stats(self) -> StatsSnapshot:
        """Counters accounting for every message (see README "Stats")."""
        self._check_pid()
        q = self._queue
        snap = self._consumer.snapshot(q.recovered)
        if q.shared:
            # accepted + received == handed_off + delivered + failed + dropped + pending
            snap["redis"] = info = cast(SharedQueue, q).info()
            snap["handed_off"] = info["handed_off"]
            snap["received"] = info["received"]
        return snap

    def shutdown(self, timeout: Optional[float] = None) -> int:
        """Deliver what is queued, stop the consumer threads and close the HTTP session.

        With ``timeout`` (seconds), whatever is not delivered by then is
        reported to ``on_error`` as dropped (reason ``shutdown``).  Returns the
        number of messages dropped that way.  With a spool (or a Redis queue)
        what is unsent by then, or after ``max_retry_time`` without a timeout,
        stays queued for the next start instead.  Idempotent (the transport and
        the spool are released once); calls made after it return
        ``(False, message)``.
        """
        if timeout is not None:
            _number("timeout", timeout, 0)
        self._check_pid()
        self._closed = True
        dropped = 0
        if not self._consumer.stopped:
            dropped = self._consumer.stop(timeout)
        # Release once (the first shutdown, else the finalizer): a second close of the
        # spool's lock descriptor would close whatever the app opened meanwhile under it.
        if not self._consumer.on_worker_thread() and self._finalizer.detach() is not None:
            self._transport.close()
            self._queue.release()
        _set_debug(self, False)
        return dropped

    def join(self, timeout: Optional[float] = None) -> int:
        """Same as :meth:`shutdown`: drain, then stop the consumer threads."""
        return self.shutdown(timeout)

    close = shutdown

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<Client host={self._config.host!r} queued={len(self._queue)} threads={self.thread}>"


__version__ = VERSION

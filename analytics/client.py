"""The Client: validate a call, encode it once, queue the bytes, return at once."""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Union

from . import _checks, messages
from . import options as _options
from ._fork import build_engines, drain_clients, process_lock, register
from ._shaping import BeforeSend
from .clock import Clock
from .destinations import Destination
from .destinations.cdp import DataPipelines
from .engine.hosts import threads_stall_between_calls
from .engine.process import ProcessEngine
from .errors import ConfigurationError, MessageTooLargeError, SpoolError
from .messages import ID, Fields, Message, Result, Timestamp
from .options import DEFAULT_HOST, Config, OnError
from .retry import RetryPolicy
from .stats import StatsSnapshot
from .transport import HTTPTransport, Transport
from .version import VERSION
from .views import ConsumerView, QueueView

__all__ = ["Client", "DEFAULT_HOST", "build_engines", "drain_clients"]

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


# --- calls recorded instead of queued -------------------------------------------

#: Active captures (analytics.testing.capture): while any is, calls record their message there
#: instead of queueing it.
_captures: List[Any] = []


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
        ``close()``, instead of the built-in HTTP transport (``http.client``).
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
        extra); see the Redis queue guide (docs/guides/redis.rst).
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
        # every parameter is an option of analytics.options; Config checks them all, defaults included,
        # and the rules between them
        arguments = locals()
        cfg = self._config = Config(**{name: arguments[name] for name in self._given})
        self._closed = False
        self._mp_registered = False
        self._forked = False  # the at-fork hook left the parent's engine; the next call builds ours
        self._engine_locks: Dict[int, Any] = {}  # see _fork.process_lock
        #: Where messages go: the destination given, or Data Pipelines (host and write_key, read per batch).
        self._dest: Destination = cfg.destination if cfg.destination is not None else DataPipelines(cfg)
        stall = threads_stall_between_calls() if cfg.send and not cfg.sync_mode else None
        transport = HTTPTransport() if cfg.transport is None else cfg.transport
        #: This process's queue, workers, counters and exit hook (a forked child makes its own).
        self._engine = ProcessEngine(self, cfg, self._dest, transport, own_transport=cfg.transport is None,
                                     calls_deliver=stall is not None)
        self._green = self._engine.hub is not None  # gevent or eventlet here: calls check their loop
        if cfg.debug:
            _set_debug(self, True)
        self._before_send = BeforeSend()
        if stall is not None:
            _warn_once(stall)
        register(self)

    @property
    def destination(self) -> Optional[Destination]:
        """The batch API this client delivers to (``None``: Data Pipelines)."""
        return self._config.destination

    def _leave_parent_engine(self) -> None:
        # in a forked child (the at-fork hook): let go of the parent's engine; the next call builds ours
        # (see ProcessEngine.leave: not here, where gevent may not have patched threading yet)
        if self._forked or self._engine.pid == os.getpid():
            return  # a child that forks before its first call has left the engine already
        self._engine.leave()
        self._forked = True

    def _check_pid(self) -> None:
        # the hook marked a fork, or (the fallback) a fork bypassed the hook: this process's engine
        # (see ProcessEngine.for_child); other threads use the engine once _forked is False again; or a new green loop
        if self._forked or self._engine.pid != os.getpid():
            with process_lock(self._engine_locks):
                hooked = self._forked
                if hooked or self._engine.pid != os.getpid():
                    if not hooked:
                        self._leave_parent_engine()
                    self._engine = self._engine.for_child(self, hooked)
                    self._green = self._engine.hub is not None
                    self._forked = False
        elif self._green and self._engine.hub_moved():
            with process_lock(self._engine_locks):
                if self._engine.hub_moved():
                    self._engine = self._engine.for_new_hub(self)

    def _exit_drain(self) -> Callable[[], Any]:
        # this process's exit drain (see analytics._fork)
        self._check_pid()
        return self._engine.finalizer

    def _apply(self, name: str, value: Any) -> None:
        # side effects of changing a setting on a live client
        if name == "debug":
            _set_debug(self, value)
        self._engine.apply(name, value)

    @property
    def spool_error(self) -> Optional[SpoolError]:
        """Why the spool is not in use (could not open it, or the disk failed later), or None.

        While this is set, new messages are kept in memory: not durable, but not lost.
        """
        return self._engine.queue.degraded

    @property
    def queue(self) -> QueueView:
        """A read-only view of the queue: ``maxsize``, ``qsize()``, ``empty()``, ``full()`` (as the
        official SDK's ``client.queue`` is read; see :mod:`analytics.views`)."""
        return QueueView(lambda: self._engine.queue)

    @property
    def consumers(self) -> List[ConsumerView]:
        """Read-only views of the ``thread`` delivery threads (``timeout``, ``retries``,
        ``upload_size``, ``upload_interval``, ``is_alive()``); empty in ``sync_mode``, where the
        caller's thread delivers, and for a Redis queue this process only produces to."""
        if self._config.sync_mode:
            return []
        config = self._config
        return [ConsumerView(config, lambda: self._engine.consumer, i) for i in range(self._engine.consumer.thread_count)]

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
        return self._enqueue(messages.build(
            "identify", user_id=user_id, anonymous_id=anonymous_id, traits=traits, context=context,
            base_context=self._config.global_context, timestamp=timestamp, integrations=integrations,
            message_id=message_id))

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
        cfg = self._config
        return self._enqueue(messages.build(
            "track", user_id=user_id, anonymous_id=anonymous_id, event=event, properties=properties,
            base_properties=cfg.global_properties, context=context, base_context=cfg.global_context,
            timestamp=timestamp, integrations=integrations, message_id=message_id))

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
        return self._enqueue(messages.build(
            "alias", user_id=user_id, previous_id=previous_id, context=context,
            base_context=self._config.global_context, timestamp=timestamp, integrations=integrations,
            message_id=message_id))

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
        return self._enqueue(messages.build(
            "group", user_id=user_id, anonymous_id=anonymous_id, group_id=group_id, object_type_id=object_type_id,
            traits=traits, context=context, base_context=self._config.global_context, timestamp=timestamp,
            integrations=integrations, message_id=message_id))

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
        cfg = self._config
        return self._enqueue(messages.build(
            "page", user_id=user_id, anonymous_id=anonymous_id, category=category, name=name, properties=properties,
            base_properties=cfg.global_properties, context=context, base_context=cfg.global_context,
            timestamp=timestamp, integrations=integrations, message_id=message_id))

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
        cfg = self._config
        return self._enqueue(messages.build(
            "screen", user_id=user_id, anonymous_id=anonymous_id, category=category, name=name, properties=properties,
            base_properties=cfg.global_properties, context=context, base_context=cfg.global_context,
            timestamp=timestamp, integrations=integrations, message_id=message_id))

    # --- the hot path ---------------------------------------------------------

    def _enqueue(self, msg: Message) -> Result:
        cfg = self._config
        if cfg.before_send is not None:
            shaped = self._before_send.shape(msg, cfg.before_send, self._engine.stats if cfg.send else None)
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
        if self._forked or self._green:
            self._check_pid()  # the first call after a fork (or on a new green loop) builds this process's engine
        engine = self._engine
        if self._closed:
            engine.refuse(msg)  # counted as dropped (shutdown) and reported
            return False, msg
        if cfg.sync_mode:
            return engine.send_now(data), msg
        n = engine.queue.put(data, cfg.max_queue_wait)  # the engine's queue, inline: this is the hot path
        if n == 0:
            engine.queue_full(msg)
            return False, msg
        if engine.dropping and n <= engine.queue.maxsize // 2:
            engine.end_burst()
        if n >= engine.pace_from:
            engine.consumer.pace(n)
        if n == 1 or n == cfg.upload_size:
            if engine.pid != os.getpid():
                self._check_pid()  # the fallback when a fork bypassed os.register_at_fork
                engine = self._engine
            engine.wake()
        if engine.calls_deliver:
            engine.deliver_if_due(n)
        return True, msg

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
        return self._engine.flush(timeout)

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
        return self._engine.wait_durable(timeout)

    def stats(self) -> StatsSnapshot:
        """Counters accounting for every message (see "Stats" in docs/guides/delivery.rst)."""
        self._check_pid()
        return self._engine.snapshot()

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
        dropped = self._engine.shutdown(timeout)
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
        return f"<Client host={self._config.host!r} queued={len(self._engine.queue)} threads={self.thread}>"


__version__ = VERSION

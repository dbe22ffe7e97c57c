"""A local stand-in for the Customer.io Data Pipelines batch API (Segment spec).

:class:`Collector` runs a real HTTP/1.1 server on 127.0.0.1 so tests, benchmarks
and demos can send to it exactly as they would to ``cdp.customer.io``, inspect
what arrived, and inject faults.  On the same port it also serves the
Customer.io Track API (:mod:`analytics.collector.trackapi`, records at
``collector.track_api``), Bloomreach's tracking routes
(:mod:`analytics.collector.bloomreach`, ``collector.bloomreach``), the
Customer.io App API (:mod:`analytics.collector.appapi`, ``collector.app_api``)
and the inspector page (``GET /``).

``POST /v1/batch`` checks auth (the write key as the Basic user name), the
encoding, the 500,000-byte body and 32,768-byte message limits and each
message, refusing a whole batch for one bad message: the contract, in its
order, is in :mod:`analytics.collector.cdp`.

Every response is written with a single ``write`` and carries Content-Length;
connections are kept alive (TCP_NODELAY).  Unknown paths get 404, other methods
405.  Nothing is logged but at DEBUG, on the ``customerio.collector`` logger.

Faults (queued with :meth:`Collector.fail_next`, :meth:`Collector.drop_next`,
:meth:`Collector.store_then_drop_next`, consumed in FIFO order, one per
request to ``POST /v1/batch`` or to an API route (Track API, Bloomreach, App
API: one shared queue), before auth; or drawn at random after
:meth:`Collector.set_chaos`), plus :attr:`Collector.delay`, simulate a
misbehaving server.  :meth:`Collector.outage` (or :meth:`Collector.down` and
:meth:`Collector.up`) takes the whole server away: connections to its port are
refused until it listens again, on the same port.

With ``keep_messages`` (the default) every request to an API route, or to a
path no route serves, is also kept as an :class:`Exchange`: the API it was
for, its headers with credentials redacted, its body as received (un-gzipped,
up to 256 KiB; for an accepted ``/v1/batch``, whose messages are kept anyway,
only the envelope), the status answered and, when refused, why (see
:meth:`Collector.exchanges`).  The inspector page shows them.

Every ``POST /v1/batch`` and every API-route request is also logged as a :class:`Request` (arrival time,
when and how it was answered, the Retry-After sent, whether the batch was
stored), see :attr:`Collector.request_log`, so a test can check timing:
:meth:`Collector.retry_after_violations` lists requests that came while a
Retry-After the collector sent was still running.

Every route first checks that the ``Host`` header (and an absolute request
target's authority) names this collector: ``localhost``, ``127.0.0.1``,
``[::1]``, the bound address or ``allowed_hosts``, any port; otherwise 421
``misdirected_request`` (DNS rebinding).  Bodies over ``max_body_bytes`` on the
wire (1 MiB; Bloomreach's routes: what 50 commands need) get 413 before they are
read; a bad chunk size line 400; a gzip body of more than 100 members 400.

Control routes under ``/_collector/`` (stats, messages, reset, faults; no
auth, so a collector in another process can be driven, but a ``POST`` only
from no other web page) are described in :mod:`analytics.collector.control`.

``python -m analytics.collector`` serves one from its own process.

How it is built: :mod:`.http` parses every request (head, body and its limits,
gzip, auth) and builds every answer; :mod:`.routing` gives each route a
:class:`~.routing.Call` (faults, refusals, answers, exchanges) and holds the
route table; the APIs are routes over those two (:mod:`.cdp`, :mod:`.trackapi`,
:mod:`.appapi`, :mod:`.bloomreach`), as are the control and inspector routes
(:mod:`.control`, :mod:`.inspector`); :mod:`.records` keeps what arrived (in
memory or in :mod:`.storage`'s SQLite file) and :mod:`.faults` what is to go
wrong.  This module serves them: the :class:`Collector` composes them, and
owns the listening socket, its threads and its outages.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import socket
import socketserver
import struct
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..errors import ConfigurationError
from .appapi import AppAPIRoutes, AppAPIStore
from .bloomreach import BloomreachRoutes, BloomreachStore
from .cdp import MAX_BODY_BYTES, MAX_MESSAGE_BYTES, MESSAGE_TYPES, DataPipelinesRoutes, message_problem
from .control import CONTROL_PREFIX, PAGE_PATHS, ControlRoutes, cross_site
from .faults import DROP, STORE_DROP, FaultQueue, RetryAfter, check_count, make_chaos, make_fail, parse_spec
from .http import (LOOPBACK_NAMES, MAX_WIRE_BYTES, BodyError, DeadlineReader, ParsedRequest, error_body,
                   host_name, read_body, read_head, response_bytes)
from .records import API_NAMES, Batch, Exchange, Records, Refusal, Request
from .routing import Call, Drop, Handler, RouteTable, Writer, fixed
from .storage import SQLiteStore, StoreError
from .trackapi import TrackAPIRoutes, TrackAPIStore

__all__ = [
    "Collector",
    "Batch",
    "Refusal",
    "Request",
    "Exchange",
    "API_NAMES",
    "message_problem",
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "StoreError",
]

logger = logging.getLogger("customerio.collector")

_INF = float("inf")
_BUSY_BODY = error_body("too_many_connections", "the collector is serving as many connections as it takes; retry")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
Body = Union[None, str, bytes, Mapping[str, Any], List[Any]]


def _close_store(store: SQLiteStore, pid: int) -> None:
    """Close ``store``, unless this is a forked child (the connection is the parent's)."""
    if os.getpid() == pid:
        store.close()


def _check_settings(max_body_bytes: int, max_connections: int, timeouts: Mapping[str, float],
                    allowed_hosts: Iterable[str]) -> List[str]:
    """The allowed host names, once every setting is checked; raises ConfigurationError."""
    for name, value in (("max_body_bytes", max_body_bytes), ("max_connections", max_connections)):
        if type(value) is not int or value < 1:
            raise ConfigurationError(f"{name} must be an integer >= 1, not {value!r}")
    for name, seconds in timeouts.items():
        if type(seconds) not in (int, float) or not 0 < seconds < _INF:
            raise ConfigurationError(f"{name} must be a finite number of seconds > 0, not {seconds!r}")
    if isinstance(allowed_hosts, (str, bytes)) or not isinstance(allowed_hosts, Iterable):
        raise ConfigurationError(f"allowed_hosts must be a list of host names, not {allowed_hosts!r}")
    hosts = list(allowed_hosts)
    bad = [h for h in hosts if type(h) is not str or host_name(h) is None]
    if bad:
        raise ConfigurationError(f"allowed_hosts must hold host names, not {bad[0]!r}")
    return hosts


class Collector:
    """A local Data Pipelines batch endpoint that records what it accepts.

    ``Collector(host="127.0.0.1", port=0, write_keys=None, keep_messages=True)``;
    :meth:`start` serves on a daemon thread (port 0 picks a free one, see
    :attr:`url`), :meth:`stop` shuts down and closes every connection; it is also
    a context manager.  :meth:`down` / :meth:`up` / :meth:`outage` take the server
    away and bring it back on the same port.  With ``write_keys`` only those keys are accepted.  With
    ``keep_messages=False`` only counters and message ids are kept (for runs with
    millions of events): :attr:`messages` and :attr:`batches` stay empty.

    With ``db_path`` the records live in an SQLite file instead of in memory
    (see :mod:`analytics.collector.storage`): a collector made again on the same
    file starts with what the last one received (messages, batches, refusals,
    counters); ``":memory:"`` gives an in-memory database.  Raises
    :class:`~analytics.collector.storage.StoreError` when the file cannot be
    used.  Without it (the default) nothing touches the disk.

    The same port serves the inspector page at ``/`` (see
    :mod:`analytics.collector.inspector`).  With ``keep_messages`` every request
    to an API it serves is also kept as received (:meth:`exchanges`,
    :meth:`exchange`; credentials redacted), and :meth:`batch` gives one
    batch's envelope and headers.

    Requests whose ``Host`` names another server get 421 (a web page cannot
    reach the collector through a DNS name of its own): accepted are
    ``localhost``, ``127.0.0.1``, ``[::1]``, ``host`` and the names in
    ``allowed_hosts``, with any port, and any IP address when ``host`` is a
    wildcard (``0.0.0.0``, ``::``).  ``POST`` control routes also need
    ``Content-Type: application/json`` and no ``Origin`` but the collector's
    own (403 otherwise), so no form or script on another site can drive it.
    Bodies over ``max_body_bytes`` on the wire get 413 (Bloomreach's routes
    allow what 50 commands need); a connection whose request stalls for
    ``read_timeout`` seconds, whose request takes more than ``request_timeout``
    seconds to arrive (a byte at a time, say), or that stays idle
    ``idle_timeout`` seconds between requests, is closed; past ``max_connections`` open connections a
    new one gets 503 and is closed.

    What arrives is kept in :attr:`records` (one lock; the accessors return
    copies), the faults to inject in :attr:`faults`, the routes in :attr:`routes`.
    """

    #: The APIs served, as :attr:`Exchange.api` names them.
    API_NAMES = API_NAMES

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        write_keys: Optional[Set[str]] = None,
        keep_messages: bool = True,
        db_path: Optional[str] = None,
        allowed_hosts: Iterable[str] = (),
        max_body_bytes: int = MAX_WIRE_BYTES,
        max_connections: int = 64,
        read_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        request_timeout: float = 30.0,
    ) -> None:
        hosts = _check_settings(max_body_bytes, max_connections, {
            "read_timeout": read_timeout, "idle_timeout": idle_timeout, "request_timeout": request_timeout,
        }, allowed_hosts)
        self.host = host
        #: Names the ``Host`` header may carry (lower case, IPv6 in brackets; any port).
        self.allowed_hosts: FrozenSet[str] = frozenset(
            {name for name in [host_name(h) for h in hosts] + [host_name(self._url_host)] if name is not None}
            | LOOPBACK_NAMES
        )
        self._any_address = host in ("", "0.0.0.0", "::")
        #: Largest request body accepted on the wire, in bytes (413 beyond).
        self.max_body_bytes = max_body_bytes
        #: Most connections served at once; one more gets 503 and is closed.
        self.max_connections = max_connections
        #: Seconds a request may stall (between reads) before its connection is closed.
        self.read_timeout = float(read_timeout)
        #: Seconds a kept-alive connection may wait for its next request.
        self.idle_timeout = float(idle_timeout)
        #: Seconds a whole request (head and body) may take to arrive, however it trickles in.
        self.request_timeout = float(request_timeout)
        self.write_keys: Optional[FrozenSet[str]] = frozenset(write_keys) if write_keys is not None else None
        #: Where the records are kept (None: in memory, the default).
        self.db_path = None if db_path is None else str(db_path)
        store = None if db_path is None else SQLiteStore(str(db_path))
        if store is not None:
            # the connection closes with the collector (or at exit), whoever forgets to
            weakref.finalize(self, _close_store, store, os.getpid())
        #: Everything received, and the counters.
        self.records = Records(keep_messages, store)
        #: The faults queued for the next API requests, and chaos.
        self.faults = FaultQueue()
        #: Seconds to sleep before answering each API request.
        self.delay: float = 0.0
        self._new_api_stores()
        #: The routes served, tried in order (see :meth:`add_route`).
        self.routes = RouteTable([
            *DataPipelinesRoutes(self).routes(), *TrackAPIRoutes(self).routes(), *BloomreachRoutes(self).routes(),
            *AppAPIRoutes(self).routes(), *ControlRoutes(self).routes(),
        ])
        self._listener = _Listener(self, port)

    @property
    def keep_messages(self) -> bool:
        """Messages, batches and requests as received are kept (else only counters and message ids)."""
        return self.records.keep_messages

    @keep_messages.setter
    def keep_messages(self, keep: bool) -> None:
        self.records.keep_messages = keep

    def _new_api_stores(self) -> None:
        #: What the Customer.io Track API routes received.
        self.track_api = TrackAPIStore()
        #: What the Bloomreach routes received.
        self.bloomreach = BloomreachStore()
        #: The App API's seeded workspace and what its routes received.
        self.app_api = AppAPIStore()

    def add_route(self, method: str, path: str, handle: Handler, api: Optional[str] = None) -> None:
        """Serve ``method path`` (a literal path) with ``handle(call, match)``, before every other route.

        For a test's or a benchmark's own API: ``call`` (:class:`~analytics.collector.routing.Call`)
        has the parsed request, applies faults (``call.begin()``), records
        refusals and answers; ``api`` names it in :meth:`exchanges`.
        """
        self.routes.add(fixed(method, path, handle, api))

    # -- lifecycle (see _Listener) ----------------------------------------

    def start(self) -> "Collector":
        """Bind and serve on a daemon thread; returns self.  No-op if running."""
        self._listener.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and open connections.  Idempotent.

        Also ends an outage for good: the port is released, nothing comes back.
        In a forked child (a finalizer or atexit hook of a process that forked)
        it returns at once: it only closes the child's copies of the sockets, and
        the parent's server goes on serving.
        """
        if self._listener.stop():
            self.records.save_counters()

    def down(self) -> None:
        """Stop listening: from now on connections to :attr:`port` are refused.

        The listening socket and every open connection are closed (a request
        being answered at that moment may lose its answer: see
        :attr:`Request.ambiguous`).  The port stays reserved for :meth:`up` by a
        bound, non-listening socket, so no other program is given it meanwhile.
        No-op when already down or not started.
        """
        self._listener.down(keep=None)

    def up(self) -> None:
        """Listen again on the same port after :meth:`down`.  No-op when listening or stopped."""
        self._listener.up()

    def outage(self, seconds: float) -> None:
        """Go :meth:`down` now and come back :meth:`up` on the same port ``seconds`` later.

        Returns once the server is down; a timer thread brings it back (check
        :attr:`listening`, or see :attr:`outages`).  Called during an outage, it
        restarts the countdown.
        """
        if type(seconds) not in (int, float) or not seconds >= 0 or seconds == _INF:
            raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
        self._listener.outage(float(seconds), keep=None)

    @property
    def listening(self) -> bool:
        """True while connections are accepted: started, not stopped, not down."""
        return self._listener.server is not None

    @property
    def outages(self) -> List[Tuple[float, Optional[float]]]:
        """(down_at, up_at) for each outage, ``time.time()``; ``up_at`` None while down."""
        return self.records.outages()

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (also while down)."""
        return self._listener.started

    @property
    def port(self) -> int:
        """The bound port (the configured one before :meth:`start`)."""
        return self._listener.port

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, to use as the SDK's host."""
        return f"http://{self._url_host}:{self._listener.port}"

    def serves_host(self, host_header: str) -> bool:
        """Whether a request's ``Host`` header names this collector."""
        name = host_name(host_header)
        if name in self.allowed_hosts:
            return True
        if not self._any_address or not name:
            return False
        try:
            ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
        except ValueError:
            return False
        return True  # bound to every address: an address literal cannot be a rebound DNS name

    # -- faults -----------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, body: Body = None, retry_after: Optional[RetryAfter] = None,
                  headers: Optional[Mapping[str, str]] = None) -> None:
        """Answer the next ``n`` batch requests with ``status``.

        The default body is ``{"code": "fault", "message": "injected <status>"}``;
        ``retry_after`` (seconds, or a string such as an HTTP date) is sent
        verbatim as a ``Retry-After`` header; ``headers`` adds more.
        """
        fault = make_fail(status, body, retry_after, headers)
        self.faults.queue(fault, check_count(n))

    def drop_next(self, n: int = 1) -> None:
        """Read the next ``n`` batch requests, then reset the connection without answering."""
        self.faults.queue(DROP, check_count(n))

    def store_then_drop_next(self, n: int = 1) -> None:
        """Process the next ``n`` batch requests normally (storing valid ones), then reset
        the connection instead of answering."""
        self.faults.queue(STORE_DROP, check_count(n))

    def set_chaos(self, fail_rate: float = 0.0, drop_rate: float = 0.0, status: int = 500,
                  seed: Optional[int] = None, retry_after: Optional[RetryAfter] = None, fail_every: int = 0) -> None:
        """Fault batch requests at random (after any queued faults).

        Each request independently fails with ``status`` (probability
        ``fail_rate``) or is stored-then-dropped (``drop_rate``), drawn from
        ``random.Random(seed)``.  ``fail_every=N`` also fails every Nth request
        deterministically.  All zero turns chaos off.
        """
        self.faults.set_chaos(make_chaos(fail_rate, drop_rate, status, seed, retry_after, fail_every))

    def apply_faults(self, spec: Mapping[str, Any], keep: Optional[socket.socket] = None) -> None:
        """Apply a fault spec as sent to ``POST /_collector/faults`` (see the module doc).

        Keys: ``fail_next``, ``drop_next``, ``store_then_drop_next`` (objects of
        the methods' keyword arguments), ``delay`` (seconds), ``chaos`` (keyword
        arguments of :meth:`set_chaos`, or null to turn it off), ``outage``
        (seconds, see :meth:`outage`; applied last, leaving the connection
        ``keep`` open).  Everything is checked before anything is applied;
        raises ValueError.
        """
        plan = parse_spec(spec)
        for fault, n in plan.queue:
            self.faults.queue(fault, n)
        if plan.delay is not None:
            self.delay = plan.delay
        if plan.set_chaos:
            self.faults.set_chaos(plan.chaos)
        if plan.outage is not None:
            self._listener.outage(plan.outage, keep)

    # -- records ----------------------------------------------------------

    @property
    def batches(self) -> List[Batch]:
        """Accepted batches, in arrival order (empty unless keep_messages).

        From a database (``db_path``), ``write_key`` is only a hint of the key
        (its first four characters) and ``Authorization`` is redacted in ``headers``.
        """
        return self.records.batches()

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """Every accepted message, in arrival order (empty unless keep_messages)."""
        return self.records.messages()

    @property
    def refused(self) -> List[Refusal]:
        """Every non-2xx answer and dropped connection, injected faults included."""
        return self.records.refused()

    def exchanges(self, api: Optional[str] = None, refused: Optional[bool] = None,
                  before: Optional[int] = None, limit: Optional[int] = None) -> Tuple[List[Exchange], int]:
        """Kept requests (see :class:`Exchange`), newest first, and how many match in all.

        ``api`` keeps one API's (one of :data:`API_NAMES`; ``""``: paths no API
        serves); ``refused`` True only the refused or dropped ones, False only
        the 2xx ones; ``before`` only ids below it; ``limit`` at most that many.
        From a database the summaries come without ``headers``, ``body`` and
        ``answer`` (:meth:`exchange` has them).  Empty without keep_messages.
        """
        return self.records.exchanges(api, refused, before, limit)

    def exchange(self, exchange_id: int) -> Optional[Exchange]:
        """One kept request in full, or None."""
        return self.records.exchange(exchange_id)

    def batch(self, batch_id: int) -> Optional[Batch]:
        """One accepted batch by its 1-based id, without its messages (see :attr:`batches`), or None."""
        return self.records.batch(batch_id)

    @property
    def store(self) -> Optional[SQLiteStore]:
        """The SQLite store when made with ``db_path``, else None."""
        return self.records.store

    @property
    def unique_ids(self) -> Set[str]:
        """The messageIds of every accepted message."""
        return self.records.unique_ids()

    @property
    def duplicates(self) -> int:
        """Accepted messages whose messageId had been accepted before."""
        return self.records.duplicates()

    @property
    def request_log(self) -> List[Request]:
        """Every ``POST /v1/batch`` (and API-route request), in arrival order (copies; kept even
        without keep_messages).

        A request is logged just before its answer is written, so once a client
        has its answer the entry is there.
        """
        return self.records.request_log()

    def retry_after_violations(self, slack: float = 0.02, grace: float = 0.0) -> List[Tuple[Request, Request]]:
        """Requests that arrived while a Retry-After this collector sent was still running.

        For each answer that carried a Retry-After, every request received more
        than ``grace`` seconds after that answer was written and more than
        ``slack`` seconds before the time the header pointed to is a violation.
        ``slack`` absorbs clock jitter; ``grace`` lets through requests that were
        already on their way when the answer left (a client's other threads or
        connections).  Returns ``(answer, request)`` pairs in arrival order.
        """
        log = self.request_log
        found: List[Tuple[Request, Request]] = []
        for answer in log:
            if answer.retry_until is None:
                continue
            start, end = answer.answered_at + grace, answer.retry_until - slack
            found.extend((answer, r) for r in log if start < r.received_at < end)
        found.sort(key=lambda pair: pair[1].received_at)
        return found

    @property
    def connections(self) -> int:
        """TCP connections accepted (since start or the last :meth:`reset`)."""
        return self.records.connections()

    def stats(self) -> Dict[str, Any]:
        """Counters as a JSON-ready dict.

        ``requests`` counts every request but the control routes; ``messages``
        every accepted message (``unique`` + ``duplicates``); byte figures are over
        accepted batches (``compressed_bytes`` over the gzipped ones); ``dropped``
        counts connections reset instead of answered; ``inside_retry_after``
        counts batch requests that arrived while a Retry-After the collector sent
        was still running (see :meth:`retry_after_violations` for the details);
        ``listening`` is False during an outage, ``outages`` counts them;
        ``in_flight`` is how many of those requests are being served now (from
        when the request is counted, before any ``delay``, until it is answered
        or dropped) and ``max_in_flight`` the most there were at once.
        """
        return self.records.stats(self.faults.pending(), self.listening)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` messages have been accepted; False on timeout."""
        return self.records.wait_for(count, timeout)

    def reset(self) -> None:
        """Forget every record and counter, pending faults, chaos and delay.

        An outage in progress goes on (:meth:`up` ends it); its record is forgotten.
        With ``db_path`` the database is emptied too.  The Track API, Bloomreach
        and App API stores are made new (their settings and hooks are forgotten).
        """
        self.records.reset()
        self.faults.clear()
        self.delay = 0.0
        self._new_api_stores()


class _Listener:
    """A collector's listening socket, the thread serving it, and its outages (``lifecycle`` guards them)."""

    def __init__(self, collector: Collector, port: int) -> None:
        self.collector = collector
        self.host = collector.host
        self.port = port
        self.pid = os.getpid()  # a forked child must not stop the parent's server (see stop)
        self.server: Optional[_Server] = None
        self.thread: Optional[threading.Thread] = None
        self.started = False
        self.lifecycle = threading.RLock()  # start/stop/down/up
        self.placeholder: Optional[socket.socket] = None  # holds the port while down
        self.up_timer: Optional[threading.Timer] = None

    def start(self) -> None:
        """Bind and serve on a daemon thread.  No-op if running."""
        with self.lifecycle:
            if self.started:
                return
            self.serve()
            self.started = True

    def serve(self) -> None:
        server = _Server((self.host, self.port), self.collector)
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"collector-{self.port}", daemon=True,
        )
        self.thread.start()
        logger.debug("collector listening on %s", self.collector.url)

    def stop(self) -> bool:
        """Stop serving (see :meth:`Collector.stop`); True when a running server was stopped here."""
        if os.getpid() != self.pid:
            self.abandon()
            return False
        with self.lifecycle:
            if not self.started:
                return False
            self.started = False
            self.cancel_up_timer()
            self.release_port()
            server, thread = self.server, self.thread
            self.server = self.thread = None
        if server is None:
            return False
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        logger.debug("collector on port %d stopped", self.port)
        return True

    def abandon(self) -> None:
        """Forget the server inherited through fork(), closing only this process's copies.

        No lock is taken (another thread of the parent may have held it at the
        fork) and no socket is shut down (that would end the parent's connections).
        """
        server, self.server, self.thread = self.server, None, None
        placeholder, self.placeholder = self.placeholder, None
        self.started, self.up_timer = False, None
        socks = [] if server is None else [server.socket, *server.open_sockets()]
        if placeholder is not None:
            socks.append(placeholder)
        for sock in socks:
            sock.close()

    def down(self, keep: Optional[socket.socket]) -> None:
        """Stop listening, holding the port, and close every connection but ``keep``."""
        with self.lifecycle:
            server, thread = self.server, self.thread
            if not self.started or server is None:
                return
            self.server = self.thread = None
            server.shutdown()  # serve_forever returns: nothing more is accepted
            server.server_close()  # connections to the port are refused from here
            self.placeholder = _hold_port(server.address_family, self.host, self.port)
            server.close_connections(keep)
            if thread is not None:
                thread.join(timeout=5.0)
            self.collector.records.outage_began()
        logger.debug("collector on port %d is down", self.port)

    def up(self) -> None:
        """Listen again on the same port after :meth:`down`.  No-op when listening or stopped."""
        with self.lifecycle:
            self.cancel_up_timer()
            if not self.started or self.server is not None:
                return
            placeholder, self.placeholder = self.placeholder, None
            try:
                try:
                    self.serve()
                except OSError:
                    if placeholder is None:
                        raise
                    # Where a bound socket blocks even SO_REUSEADDR binds (BSD), free the port first.
                    placeholder.close()
                    placeholder = None
                    self.serve()
            finally:
                if placeholder is not None:
                    placeholder.close()
            self.collector.records.outage_ended()

    def outage(self, seconds: float, keep: Optional[socket.socket]) -> None:
        """:meth:`down` now, :meth:`up` ``seconds`` later (on a timer thread)."""
        with self.lifecycle:
            if not self.started:
                raise RuntimeError("the collector is not running")
            self.down(keep)
            self.cancel_up_timer()
            timer = threading.Timer(seconds, self.up)
            timer.name = f"collector-{self.port}-up"
            timer.daemon = True
            self.up_timer = timer
            timer.start()

    def cancel_up_timer(self) -> None:
        timer, self.up_timer = self.up_timer, None
        if timer is not None:
            timer.cancel()

    def release_port(self) -> None:
        placeholder, self.placeholder = self.placeholder, None
        if placeholder is not None:
            placeholder.close()


class _Server(ThreadingHTTPServer):
    """The threaded HTTP server behind a :class:`Collector`; tracks open connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], collector: Collector) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.collector = collector
        self._open: Set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn): skip that.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[assignment]  # an (host, port)

    def get_request(self) -> Tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        with self._open_lock:
            self._open.add(sock)
        self.collector.records.count_connection()
        return sock, addr

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse a connection past ``max_connections`` with a 503 (then it is closed)."""
        with self._open_lock:
            crowded = len(self._open) > self.collector.max_connections
        if crowded:
            logger.debug("refused a connection from %s: %d open", client_address, self.collector.max_connections)
            try:
                request.setblocking(False)  # the accepting thread never waits on a refused client
                request.send(_BUSY)
            except OSError:
                pass
        return not crowded

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def open_sockets(self) -> List[socket.socket]:
        """The connections open now (no lock: also called in a forked child)."""
        return list(self._open)

    def close_connections(self, keep: Optional[socket.socket] = None) -> None:
        """Shut down every open connection but ``keep``."""
        with self._open_lock:
            open_now = [sock for sock in self._open if sock is not keep]
            self._open.difference_update(open_now)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


def _hold_port(family: int, host: str, port: int) -> Optional[socket.socket]:
    """A bound, non-listening socket on (host, port), or None if it cannot be had.

    Connections to the port are refused, and no one else is given the port (a
    bind without SO_REUSEADDR fails, ``bind(0)`` skips it), while a listener
    with SO_REUSEADDR can still bind it (Linux): what an outage needs.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection: reads each request (see :mod:`.http`), routes it, answers with one write."""

    protocol_version = "HTTP/1.1"
    server_version = "customerio-collector"
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted socket
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Reads through a reader that bounds each read and each whole request (see DeadlineReader);
        # the stdlib's file object is closed first, or it would keep the socket open after close().
        self.rfile.close()
        self._reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        """Read one request's head, then route it (``_route`` reads the body)."""
        self.close_connection = True  # until a whole head has been read
        collector = self.server.collector
        try:
            # Idle between requests up to idle_timeout; once one has begun, each read
            # may wait read_timeout and the whole request request_timeout: a stalled
            # or trickling request does not hold a thread forever.
            self._reader.limit(collector.idle_timeout, None)
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # a BufferedReader
                return
            self._reader.limit(collector.read_timeout, collector.request_timeout)
            head = read_head(self.rfile, self.wfile)  # type: ignore[arg-type]  # a BufferedReader
        except OSError:
            return
        if isinstance(head, str):
            if head:  # else the client closed the connection
                self.wfile.write(response_bytes(400, error_body("bad_request", head), close=True))
            return
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.close_connection = not head.keep_alive
        call = Call(head, collector.records, collector.faults, collector.delay, self._writer(head))
        call.connection = self.connection
        try:
            self._route(call)
        except Drop:
            self._reset_connection(call)
        except OSError:
            self.close_connection = True
        except Exception:  # a bug here must not kill the connection silently
            logger.exception("collector failed on %s %s", head.method, head.path)
            head.keep_alive = False
            call.send(500, error_body("internal", "the collector failed on this request"))
        finally:
            call.keep(0, b"")  # a request whose answer could not be written: kept as unanswered
            call.landed()

    def _writer(self, request: ParsedRequest) -> Writer:
        def write(status: int, body: bytes, headers: Sequence[Tuple[str, str]], content_type: str) -> None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s %s -> %d", request.method, request.path, status)
            self.close_connection = self.close_connection or not request.keep_alive
            self.connection.settimeout(self.server.collector.read_timeout)  # a late read left less
            self.wfile.write(response_bytes(status, body, headers, content_type, self.close_connection,
                                            request.version))
        return write

    def _reset_connection(self, call: Call) -> None:
        """Close with a TCP reset (SO_LINGER 0) so the client sees the connection aborted."""
        call.keep(0, b"")
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # then it closes with a FIN: still no answer
        self.connection.close()

    def _route(self, call: Call) -> None:
        collector, request = self.server.collector, call.request
        path = request.path
        control = path.startswith(CONTROL_PREFIX)
        # an API request answered with an error its route did not record as refused is recorded by the call
        call.api_request = not control and path not in PAGE_PATHS
        route, match, allowed = collector.routes.find(request.method, path)
        limit = collector.max_body_bytes if route is None else max(collector.max_body_bytes, route.max_wire_bytes)
        try:
            body = read_body(self.rfile, request.headers, limit)  # type: ignore[arg-type]  # a BufferedReader
        except BodyError as exc:
            request.keep_alive = False
            call.send(exc.status, error_body(exc.code, exc.reason))
            return
        if body is None:
            self.close_connection = True
            return
        request.body = body
        if collector.keep_messages and call.api_request:
            call.exchange = collector.records.open_exchange(
                collector.routes.api_of(path), request.method, path, request.query, request.header_items, body,
                request.encoding, time.time())
        refusal = self._refusal(request, control)
        if refusal is None and (route is None or match is None):
            status, code = (405, "method_not_allowed") if allowed else (404, "not_found")
            refusal = status, code, f"no route {request.method} {path}"
        if refusal is not None:
            status, code, reason = refusal
            if not control:
                collector.records.count_request()
                call.refuse(status, code, reason, len(body))
            call.send(status, error_body(code, reason), (("Allow", ", ".join(allowed)),) if status == 405 else ())
            return
        assert route is not None and match is not None
        route.handle(call, match)

    def _refusal(self, request: ParsedRequest, control: bool) -> Optional[Tuple[int, str, str]]:
        """Why a request is refused before any route sees it (421 or 403), or None."""
        collector = self.server.collector
        foreign = next((h for h in request.hosts if h is not None and not collector.serves_host(h)), None)
        if foreign is not None:
            return 421, "misdirected_request", f"host {foreign[:100]!r} is not an address this collector serves"
        if control and request.method not in ("GET", "HEAD"):
            return cross_site(request)
        return None

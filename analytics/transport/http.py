"""HTTP transports: one attempt per call, no retries, no knowledge of batches.

:class:`HTTPTransport`, the default, keeps a pool of ``http.client``
keep-alive connections per host, one for each request in flight: a request costs about a sixth of the CPU of a
``requests.Session`` post, and far fewer trips through the GIL, which is what
a busy application thread competes for.  Whenever a proxy applies (the
``proxies`` setting, or ``HTTPS_PROXY``/``HTTP_PROXY`` in the environment and
the host not in ``NO_PROXY``) it hands the request to
:class:`RequestsTransport`, which does proxies the way ``requests`` users
expect.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple
from urllib.parse import urlsplit

from ..errors import TransportError
from .base import BaseTransport, Headers, Response

__all__ = ["HTTPTransport", "RequestsTransport"]


class RequestsTransport(BaseTransport):
    """A keep-alive ``requests.Session`` owned by one client and closed with it.

    ``abort`` does nothing: ``requests`` cannot interrupt a request from
    another thread (at the shutdown deadline the engine reports such a batch
    without its answer).
    """

    def __init__(self) -> None:
        self.session = _session()

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[Dict[str, str]]
    ) -> Response:
        kwargs: Dict[str, Any] = {"data": body, "headers": headers, "timeout": timeout}
        if proxies is not None:
            kwargs["proxies"] = proxies
        import requests  # loaded with the first proxied request: import analytics does not need it

        try:
            r = self.session.post(url, **kwargs)
            content = r.content
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {_describe(exc)}", cause=exc) from exc
        return Response(r.status_code, r.headers, content)

    def close(self) -> None:
        """Close the session's pooled connections."""
        self.session.close()

    def after_fork(self) -> None:
        """In a forked child: a new session; the inherited one is left to the parent."""
        self.session = _session()


if TYPE_CHECKING:
    import requests


def _session() -> "requests.Session":
    import requests  # a proxy's transport only: import analytics does not load requests

    return requests.Session()


def _environ_proxy(url: str) -> bool:
    """Whether the environment (or the system's settings) sends ``url`` through a proxy, as ``requests`` decides."""
    if not urllib.request.getproxies():  # requests reads the same: no proxy at all, no need to load it
        return False
    import requests.utils  # only when a proxy is configured: NO_PROXY as requests reads it (CIDR, ports)

    return bool(requests.utils.get_environ_proxies(url))


def _tls_context() -> ssl.SSLContext:
    # The same trust store as requests: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's bundle.
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not cafile:
        try:
            import certifi  # requests' trust store, when installed (with requests)

            cafile = certifi.where()
        except ImportError:  # pragma: no cover - requests depends on certifi
            cafile = None
    return ssl.create_default_context(cafile=cafile)


#: An idle connection unused for this long is closed instead of reused (servers close theirs
#: sooner or later; a request on a socket the server just closed would fail).
IDLE_CLOSE_S = 30.0
#: Idle connections kept per host; more are closed when returned (the pool shrinks after a backlog).
MAX_IDLE = 8

_Key = Tuple[str, str]


class HTTPTransport(BaseTransport):
    """A pool of keep-alive ``http.client`` connections per host; ``requests`` for proxies.

    Each request takes the most recently used idle connection (or opens one)
    and gives it back when its answer is read, so as many connections exist as
    requests were in flight at once, and they are shared by whichever threads
    send.  Safe to call from several threads at once.
    """

    def __init__(self) -> None:
        self._tls: Optional[ssl.SSLContext] = None
        self._proxied: Dict[_Key, bool] = {}
        self._fallback: Optional[RequestsTransport] = None
        self._idle: Dict[_Key, List[Tuple[http.client.HTTPConnection, float]]] = {}  # LIFO, with when returned
        self._busy: Set[http.client.HTTPConnection] = set()  # in use now: for abort() and close()
        self._generation = 0  # close() moves it on: a connection taken before is not reused
        self._lock = threading.Lock()

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[Dict[str, str]]
    ) -> Response:
        parts = urlsplit(url)
        if proxies or self._env_proxy(parts.scheme, parts.netloc, url):
            return self._requests().post(url, body, headers, timeout, proxies)
        key = (parts.scheme, parts.netloc)
        conn, generation = self._take(key, timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._give_back(key, conn, generation, reuse=False)  # the next request opens a new one
            raise TransportError(f"{type(exc).__name__}: {str(exc)[:300] or 'connection lost'}", cause=exc) from exc
        self._give_back(key, conn, generation, reuse=not resp.will_close)
        return Response(resp.status, Headers(dict(resp.headers.items())), data)

    def _env_proxy(self, scheme: str, netloc: str, url: str) -> bool:
        key = (scheme, netloc)
        found = self._proxied.get(key)
        if found is None:
            found = self._proxied[key] = _environ_proxy(url)
        return found

    def _requests(self) -> "RequestsTransport":
        if self._fallback is None:
            self._fallback = RequestsTransport()
        return self._fallback

    def _take(self, key: _Key, timeout: float) -> Tuple[http.client.HTTPConnection, int]:
        """An idle connection to ``key`` that is still open, or a new one; marked busy."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                entry = idle.pop() if idle else None
                generation = self._generation
                if entry is None:
                    conn = self._new(key, timeout)
                    self._busy.add(conn)
                    return conn, generation
                conn, returned_at = entry
                self._busy.add(conn)
            if self._usable(conn, returned_at):
                conn.sock.settimeout(timeout)
                conn.timeout = timeout
                return conn, generation
            with self._lock:
                self._busy.discard(conn)
            conn.close()

    @staticmethod
    def _usable(conn: http.client.HTTPConnection, returned_at: float) -> bool:
        if conn.sock is None or time.monotonic() - returned_at > IDLE_CLOSE_S:
            return False
        # an idle keep-alive socket that is readable was closed by the server
        try:
            return not select.select([conn.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def _new(self, key: _Key, timeout: float) -> http.client.HTTPConnection:
        scheme, netloc = key
        if scheme == "https":
            if self._tls is None:
                self._tls = _tls_context()
            return http.client.HTTPSConnection(netloc, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(netloc, timeout=timeout)

    def _give_back(self, key: _Key, conn: http.client.HTTPConnection, generation: int, reuse: bool) -> None:
        surplus: List[http.client.HTTPConnection] = []
        with self._lock:
            self._busy.discard(conn)
            if reuse and generation == self._generation and conn.sock is not None:
                idle = self._idle.setdefault(key, [])
                idle.append((conn, time.monotonic()))
                if len(idle) > MAX_IDLE:
                    surplus = [c for c, _ in idle[:-MAX_IDLE]]
                    del idle[:-MAX_IDLE]
            else:
                surplus = [conn]
        for c in surplus:
            c.close()

    def connections(self) -> List[http.client.HTTPConnection]:
        """The connections the pool holds now, idle and in use (for diagnostics and tests)."""
        with self._lock:
            return [c for idle in self._idle.values() for c, _ in idle] + list(self._busy)

    def abort(self) -> None:
        """Wake any thread waiting for an answer: its request fails at once (used at a shutdown deadline)."""
        with self._lock:
            conns = list(self._busy)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def after_fork(self) -> None:
        """In a forked child: close this process's copies of the inherited sockets, never shut them down.

        No lock is taken (a thread of the parent may have held it at the
        fork); a shutdown would end the parent's connections, a close only
        releases the child's descriptors.  The next request connects anew.
        """
        conns = [c for idle in self._idle.values() for c, _ in idle] + list(self._busy)
        self._idle, self._busy = {}, set()
        self._lock = threading.Lock()
        self._generation += 1
        for conn in conns:
            conn.close()
        if self._fallback is not None:
            self._fallback.after_fork()

    def close(self) -> None:
        """Close every connection, idle or in use; idempotent (each socket is closed once).

        The transport stays usable: a later request opens a new connection.
        """
        with self._lock:
            conns = [c for idle in self._idle.values() for c, _ in idle] + list(self._busy)
            self._idle, self._busy = {}, set()
            self._generation += 1
            fallback, self._fallback = self._fallback, None
        for conn in conns:
            try:
                conn.close()
            except OSError:  # pragma: no cover
                pass
        if fallback is not None:
            fallback.close()


def _describe(exc: BaseException) -> str:
    # requests nests the reason a few levels down; the innermost is the useful part.
    inner: Optional[BaseException] = exc
    seen = 0
    while inner is not None and inner.__context__ is not None and seen < 5:
        inner = inner.__context__
        seen += 1
    text = str(inner or exc)
    return text[:300]

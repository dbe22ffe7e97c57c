"""HTTP transports: one attempt per call, no retries, no knowledge of batches.

:class:`HTTPTransport`, the default, keeps one ``http.client`` connection per
consumer thread and host: a request costs about a sixth of the CPU of a
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
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import requests
import requests.utils

from ..errors import TransportError
from .base import BaseTransport, Response

__all__ = ["HTTPTransport", "RequestsTransport"]


class RequestsTransport(BaseTransport):
    """A keep-alive ``requests.Session`` owned by one client and closed with it.

    ``abort`` does nothing: ``requests`` cannot interrupt a request from
    another thread (at the shutdown deadline the engine reports such a batch
    without its answer).
    """

    def __init__(self) -> None:
        self.session = requests.Session()

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[dict]
    ) -> Response:
        kwargs: Dict[str, Any] = {"data": body, "headers": headers, "timeout": timeout}
        if proxies is not None:
            kwargs["proxies"] = proxies
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
        self.session = requests.Session()


def _tls_context() -> ssl.SSLContext:
    # The same trust store as requests: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's bundle.
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # pragma: no cover - requests depends on certifi
            cafile = None
    return ssl.create_default_context(cafile=cafile)


class HTTPTransport(BaseTransport):
    """Keep-alive ``http.client`` connections, one per thread and host; ``requests`` for proxies."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._tls: Optional[ssl.SSLContext] = None
        self._proxied: Dict[Tuple[str, str], bool] = {}
        self._fallback: Optional[RequestsTransport] = None
        self._all: List[http.client.HTTPConnection] = []  # every connection made, for close() and abort()
        self._lock = threading.Lock()

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[dict]
    ) -> Response:
        parts = urlsplit(url)
        if proxies or self._env_proxy(parts.scheme, parts.netloc, url):
            return self._requests().post(url, body, headers, timeout, proxies)
        conn = self._connection(parts.scheme, parts.netloc, timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # the next request opens a new one
            raise TransportError(f"{type(exc).__name__}: {str(exc)[:300] or 'connection lost'}", cause=exc) from exc
        if resp.will_close:
            conn.close()
        return Response(resp.status, resp.headers, data)

    def _env_proxy(self, scheme: str, netloc: str, url: str) -> bool:
        key = (scheme, netloc)
        found = self._proxied.get(key)
        if found is None:
            found = self._proxied[key] = bool(requests.utils.get_environ_proxies(url))
        return found

    def _requests(self) -> "RequestsTransport":
        if self._fallback is None:
            self._fallback = RequestsTransport()
        return self._fallback

    def _connection(self, scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (scheme, netloc)
        conn = conns.get(key)
        if conn is not None and conn.sock is not None:
            # an idle keep-alive socket that is readable was closed by the server
            try:
                readable = select.select([conn.sock], [], [], 0)[0]
            except (OSError, ValueError):
                readable = True
            if readable:
                conn.close()
            else:
                conn.sock.settimeout(timeout)
                return conn
        if conn is None:
            if scheme == "https":
                if self._tls is None:
                    self._tls = _tls_context()
                conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=timeout)
            conns[key] = conn
        with self._lock:
            if conn not in self._all:  # again after a close(): it must reach the socket opened next
                self._all.append(conn)
        conn.timeout = timeout
        return conn

    def abort(self) -> None:
        """Wake any thread waiting for an answer: its request fails at once (used at a shutdown deadline)."""
        with self._lock:
            conns = list(self._all)
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
        conns, self._all = self._all, []
        self._local = threading.local()
        self._lock = threading.Lock()
        for conn in conns:
            conn.close()
        if self._fallback is not None:
            self._fallback.after_fork()

    def close(self) -> None:
        """Close every connection; idempotent (each socket is closed once)."""
        with self._lock:
            conns, self._all = self._all, []
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

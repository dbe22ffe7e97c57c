"""An in-memory transport: no sockets, a function answers each request.

For tests, the library's and its users'::

    from analytics import Client
    from analytics.transport import MemoryTransport, respond

    seen = []

    def handler(request):
        seen.extend(request.messages)
        return respond(200, json={})

    client = Client("KEY", transport=MemoryTransport(handler))
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Set

from .. import encoding
from ..errors import ConfigurationError, TransportError
from .base import BaseTransport, Headers, Response

__all__ = ["Request", "MemoryTransport", "Handler", "respond"]


@dataclass(frozen=True)
class Request:
    """One request as the engine sent it: ``body`` holds the bytes as sent (gzipped or not).

    ``headers`` is kept as a case-insensitive copy.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    timeout: float
    proxies: Optional[Dict[str, Any]] = None
    _aborted: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", Headers(self.headers))

    @property
    def content(self) -> bytes:
        """The body, un-gzipped when ``Content-Encoding`` is ``gzip``."""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def json(self) -> Any:
        """The body parsed as JSON (un-gzipped first when needed)."""
        return encoding.loads(self.content)

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """The items of a ``{"batch": [...]}`` body (Data Pipelines, Track v2); ValueError for any other body."""
        doc = self.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
            raise ValueError(f"not a batch body: {self.content[:100]!r}")
        batch: List[Dict[str, Any]] = doc["batch"]
        return batch

    def hang(self) -> NoReturn:
        """Give no answer, like a server that hangs: raise TransportError at ``abort()`` or after ``timeout``.

        Call it from a handler (``return request.hang()``) to test the shutdown
        deadline or timeouts without a slow server.
        """
        if self._aborted.wait(self.timeout):
            raise TransportError("aborted: the request was broken off")
        raise TransportError(f"timed out: no answer within {self.timeout:g} s")


#: What :class:`MemoryTransport` calls for each request.
Handler = Callable[[Request], Response]


def respond(
    status: int = 200,
    json: Any = None,
    body: bytes = b"",
    headers: Optional[Mapping[str, str]] = None,
) -> Response:
    """A :class:`Response` for a handler: ``json`` (encoded, with ``Content-Type: application/json``) or ``body``.

    ``headers`` (such as ``{"Retry-After": "2"}``) are looked up without regard to case.
    """
    if json is not None and body:
        raise ConfigurationError("respond() takes json or body, not both")
    if type(status) is not int or not 100 <= status <= 599:
        raise ConfigurationError(f"status must be an HTTP status code (100-599), got {status!r}")
    merged = Headers()
    if json is not None:
        body = encoding.dumps(json)
        merged["Content-Type"] = "application/json"
    merged.update(headers or {})
    return Response(status, merged, body)


def _accept(request: Request) -> Response:
    return respond(200, json={})


class MemoryTransport(BaseTransport):
    """Calls ``handler(request)`` for each request and returns its :class:`Response`; no sockets.

    The default handler answers 200 ``{}``.  Every request is recorded, in
    order, in :attr:`requests` (retries included), before the handler sees
    it.  A :class:`~analytics.TransportError` the handler raises is what the
    engine gets (a refused or reset connection); any other exception reaches
    the engine as a transport's bug would.  ``post`` may be called from
    several threads at once; the handler must then be thread-safe too.

    :meth:`abort` breaks off the requests in flight: those waiting in
    :meth:`Request.hang` at once, the others when their handler returns
    (their answer is lost, as on a connection that was shut down).  Later
    requests are not affected.
    """

    def __init__(self, handler: Optional[Handler] = None) -> None:
        if handler is not None and not callable(handler):
            raise ConfigurationError(f"handler must be a function of a Request, got {handler!r}")
        self.handler: Handler = handler if handler is not None else _accept
        #: True once :meth:`close` was called (requests after it still work).
        self.closed = False
        self._requests: List[Request] = []
        self._inflight: Set[threading.Event] = set()
        self._lock = threading.Lock()

    @property
    def requests(self) -> List[Request]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """The items of every batch request so far, in order; a retried batch's items appear again."""
        return [m for r in self.requests for m in r.messages]

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[Dict[str, str]]
    ) -> Response:
        """Record the request and return the handler's answer (see the class)."""
        request = Request("POST", url, headers, bytes(body), timeout, proxies)
        with self._lock:
            self._requests.append(request)
            self._inflight.add(request._aborted)
        try:
            response = self.handler(request)
        finally:
            with self._lock:
                self._inflight.discard(request._aborted)
        if request._aborted.is_set():
            raise TransportError("aborted: the request was broken off")
        if not isinstance(response, Response):
            raise ConfigurationError(
                f"handler must return an analytics.transport.Response (see respond()), got {type(response).__name__}"
            )
        return response

    def abort(self) -> None:
        """Break off the requests in flight now (see the class); later requests work as before."""
        with self._lock:
            inflight = list(self._inflight)
        for event in inflight:
            event.set()

    def after_fork(self) -> None:
        """In a forked child: a new lock (a parent's thread may have held the old one at the fork)."""
        self._lock = threading.Lock()
        self._inflight = set()

    def close(self) -> None:
        """Mark the transport closed; there is nothing to release."""
        self.closed = True

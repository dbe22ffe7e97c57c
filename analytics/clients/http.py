"""One HTTP attempt, per library: :class:`SyncHTTP` (``requests``) and :class:`AsyncHTTP` (``httpx``).

Each holds one connection pool for one API client and makes exactly one
request per :meth:`~SyncHTTP.attempt`: a 2xx answer comes back as a
:class:`JSONResponse`; anything else raises the exception the client's
:data:`~analytics.clients.retryable.ErrorFactory` makes, ``retryable`` set
from the API's row of :mod:`analytics.clients.retryable`.  Nothing here
waits or retries; that is :mod:`analytics.clients.retrying`'s job.

``httpx`` is the ``async`` extra (``pip install 'cdp-relay[async]'``): it is
imported when an :class:`AsyncHTTP` is made, so the sync clients never need it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Protocol, TypeVar

import requests

from ..errors import ConfigurationError
from .retryable import TRACK_V1, ErrorFactory, RetryRule, no_answer_error, service_error, status_error

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = ["JSONResponse", "SyncHTTP", "AsyncHTTP", "ConnectionOwner", "AsyncConnectionOwner", "h2_available",
           "requests_maybe_sent"]

log = logging.getLogger("customerio")

_Owner = TypeVar("_Owner", bound="ConnectionOwner")
_AsyncOwner = TypeVar("_AsyncOwner", bound="AsyncConnectionOwner")

#: The names urllib3 and httpcore give a failure to connect (nothing of the request was written).
_CONNECT_FAILURES = ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")


def _is_2xx(status: int) -> bool:
    return 200 <= status < 300


class JSONResponse:
    """One answer: ``status``, ``headers``, raw ``body`` bytes, ``attempts`` made, and :meth:`json`."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, attempts: int) -> None:
        self.status = status
        self.headers = dict(headers)
        self.body = body
        self.attempts = attempts

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self, default: Any = None) -> Any:
        """The body parsed as JSON; ``default`` when it is empty or not JSON."""
        if not self.body.strip():
            return default
        try:
            return json.loads(self.body)
        except ValueError:
            return default

    def __repr__(self) -> str:
        return f"JSONResponse(status={self.status}, body={self.body[:200]!r})"


def _answer(rule: RetryRule, error: ErrorFactory, method: str, url: str, status: int, headers: Mapping[str, str],
            content: bytes, ok: Callable[[int], bool]) -> JSONResponse:
    """The :class:`JSONResponse` of an ``ok`` answer; else raises the status error."""
    if ok(status):
        return JSONResponse(status, headers, content, 1)
    raise status_error(rule, error, status, method, url, content.decode("utf-8", "replace"),
                       headers.get("Retry-After"))


def requests_maybe_sent(exc: BaseException) -> bool:
    """False when ``requests`` failed before any byte of the request could have left."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.SSLError)):
        return False
    if not isinstance(exc, requests.ConnectionError):
        return True
    # urllib3 wraps "could not connect" as NewConnectionError (refused, DNS) inside MaxRetryError
    seen = set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        reason = getattr(cause, "reason", None)
        if type(cause).__name__ in _CONNECT_FAILURES or type(reason).__name__ in _CONNECT_FAILURES:
            return False
        cause = (exc.args[0] if cause is exc and exc.args and isinstance(exc.args[0], BaseException)
                 else cause.__cause__ or cause.__context__)
    return True


class SyncHTTP:
    """One ``requests.Session`` (one connection pool) for one API client, and one attempt per call.

    ``headers`` go on every request (plus the per-call ones); ``timeout`` is in
    seconds.  ``pooled=False`` opens and closes a session for every request.
    A ``session`` given is used and never closed here.
    """

    def __init__(self, headers: Mapping[str, str], *, timeout: float = 10.0, pooled: bool = True,
                 session: Optional[requests.Session] = None) -> None:
        self.headers: Dict[str, str] = dict(headers)
        self.timeout = timeout
        self.pooled = pooled
        self._own_session = session is None
        self._session = session

    @property
    def session(self) -> requests.Session:
        """The pooled session (created on first use)."""
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def attempt(self, method: str, url: str, *, body: Optional[bytes] = None,
                params: Optional[Mapping[str, Any]] = None, headers: Optional[Mapping[str, str]] = None,
                rule: RetryRule = TRACK_V1, error: ErrorFactory = service_error, idempotent: bool = True,
                ok: Callable[[int], bool] = _is_2xx) -> JSONResponse:
        """One request: the :class:`JSONResponse` of an ``ok`` (2xx) answer; else raises (see the module doc)."""
        sent = dict(self.headers)
        sent.update(headers or {})
        session = self.session if self.pooled else requests.Session()
        try:
            resp = session.request(method, url, data=body, params=params, headers=sent, timeout=self.timeout)
        except requests.RequestException as exc:
            raise no_answer_error(rule, error, method, url, exc, maybe_sent=requests_maybe_sent(exc),
                                  idempotent=idempotent) from None
        finally:
            if not self.pooled:
                session.close()
        return _answer(rule, error, method, url, resp.status_code, resp.headers, resp.content or b"", ok)

    def close(self) -> None:
        """Close the pooled connections (not a session given); the next request reconnects."""
        if self._own_session:
            session, self._session = self._session, None
            if session is not None:
                session.close()


class _Closable(Protocol):
    def close(self) -> None: ...


class ConnectionOwner:
    """A client that sends through its own pool, ``self._http`` (a :class:`SyncHTTP`, or a
    client that has one): :meth:`close`, and ``with client:`` closing it at the end."""

    _http: _Closable

    def close(self) -> None:
        """Close the pooled connections (not a ``session`` passed in); the client can still be used:
        the next request reconnects."""
        self._http.close()

    def __enter__(self: _Owner) -> _Owner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def h2_available() -> bool:
    """True when the ``h2`` package is installed, so httpx can speak HTTP/2."""
    return importlib.util.find_spec("h2") is not None


def _httpx() -> Any:
    try:
        import httpx  # an optional dependency (the async extra): imported only by the async clients
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError(
            "the asyncio clients need httpx: pip install 'cdp-relay[async]' (httpx, and h2 for HTTP/2)"
        ) from None
    return httpx


class AsyncHTTP:
    """One ``httpx.AsyncClient`` (one connection pool) for one API client, and one attempt per call.

    ``headers`` are sent on every request (plus the per-call ones);
    ``timeout`` is in seconds; ``http2``: ``None`` uses HTTP/2 when ``h2`` is
    installed, ``True`` requires it, ``False`` never.  ``pooled=False`` opens
    and closes a client for every request (``use_connection_pooling=False``).
    The pool is made on the first request, inside the running loop; used from
    another loop, a new pool is opened.
    """

    def __init__(self, headers: Mapping[str, str], *, timeout: float = 10.0, http2: Optional[bool] = None,
                 pooled: bool = True, limits: Any = None) -> None:
        hx = _httpx()
        if http2 and not h2_available():
            raise ConfigurationError("http2=True needs the h2 package: pip install 'cdp-relay[async]'")
        self.http2 = h2_available() if http2 is None else bool(http2)
        self.headers: Dict[str, str] = dict(headers)
        self.timeout = timeout
        self.pooled = pooled
        # async-customerio's pool numbers: 100 connections, 20 kept alive for 5 s
        self.limits = limits if limits is not None else hx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        self._client: Optional["httpx.AsyncClient"] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def _new(self) -> "httpx.AsyncClient":
        client: "httpx.AsyncClient" = _httpx().AsyncClient(http2=self.http2, timeout=self.timeout,
                                                           limits=self.limits, headers=self.headers)
        return client

    @property
    def client(self) -> Optional["httpx.AsyncClient"]:
        """The pooled ``httpx.AsyncClient``, or None before the first request / after ``aclose()``."""
        return self._client

    def _pool(self) -> "httpx.AsyncClient":
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            if self._client is not None and self._loop is not loop:
                log.debug("AsyncHTTP used from a new event loop: opening a new connection pool")
            self._client, self._loop = self._new(), loop
        return self._client

    async def attempt(self, method: str, url: str, *, body: Optional[bytes] = None,
                      params: Optional[Mapping[str, Any]] = None, headers: Optional[Mapping[str, str]] = None,
                      rule: RetryRule = TRACK_V1, error: ErrorFactory = service_error, idempotent: bool = True,
                      ok: Callable[[int], bool] = _is_2xx) -> JSONResponse:
        """One request: the :class:`JSONResponse` of an ``ok`` (2xx) answer; else raises (see the module doc)."""
        hx = _httpx()
        client = self._pool() if self.pooled else self._new()
        try:
            try:
                resp = await client.request(method, url, content=body, params=params, headers=headers)
            except (hx.ConnectError, hx.ConnectTimeout, hx.PoolTimeout) as exc:
                raise no_answer_error(rule, error, method, url, exc, maybe_sent=False, idempotent=idempotent) \
                    from None
            except hx.TransportError as exc:
                raise no_answer_error(rule, error, method, url, exc, maybe_sent=True, idempotent=idempotent) \
                    from None
        finally:
            if not self.pooled:
                await client.aclose()
        return _answer(rule, error, method, url, resp.status_code, resp.headers, resp.content or b"", ok)

    async def aclose(self) -> None:
        """Close the pool (the next request opens a new one)."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is None:
            return
        if loop is not asyncio.get_running_loop():
            # its connections belong to another (maybe closed) loop: they cannot be closed from here
            log.debug("AsyncHTTP.aclose: the pool was opened in another event loop; leaving it")
            return
        await client.aclose()


class AsyncConnectionOwner:
    """An async client that sends through its own :class:`AsyncHTTP`, ``self._http``:
    :meth:`aclose` (or ``close``), and ``async with client:`` closing it at the end."""

    _http: AsyncHTTP

    async def aclose(self) -> None:
        """Close the connection pool (the client can still be used: it reconnects)."""
        await self._http.aclose()

    async def close(self) -> None:
        """Same as :meth:`aclose`."""
        await self.aclose()

    async def __aenter__(self: _AsyncOwner) -> _AsyncOwner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

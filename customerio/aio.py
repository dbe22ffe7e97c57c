"""The Track API client for asyncio: :class:`AsyncCustomerIO`.

::

    from customerio import AsyncCustomerIO, Regions, v2

    async with AsyncCustomerIO(site_id, api_key, region=Regions.US) as cio:
        await cio.identify(id="5", email="jane@example.com", plan="premium")
        await cio.track("5", "purchase", {"price": 23.45}, id="01HB4HBDKTFWYZCK01DMRSWRFD")
        await cio.v2.track_person_event({"id": "5"}, "purchase", price=23.45)
        result = await cio.batch([v2.identify_person({"id": "5"}, plan="pro"), ...])

It is :class:`~customerio.CustomerIO` in async form: the same constructor
(plus ``retry_strategy`` and ``http2``), the same v1 methods, ``cio.v2``
helpers, ``send_entity()`` and ``batch()`` with the same checks, splitting
(32 KB per operation, 500 KB per request) and per-item
:class:`~customerio.BatchResult` — the code is shared
(:class:`customerio.track.TrackClientBase`), only the sending differs.  Calls
return the :class:`~analytics.apiclient.JSONResponse`.  Bad arguments raise
:class:`~customerio.CustomerIOValidationError` when the method is called,
before anything is awaited.

Sending uses httpx (the ``async`` extra: ``pip install 'cdp-relay[async]'``):
one ``httpx.AsyncClient``, so one connection pool, per client, created on the
first request and closed by ``aclose()`` or leaving ``async with``; HTTP/2 is
used for HTTPS when the ``h2`` package is installed (``http2=False`` turns it
off, ``http2=True`` requires it).  A client is tied to the event loop it first
sent from; used from another loop it opens a new pool.

Retries go through a strategy (:mod:`customerio.retry`): by default
:class:`~customerio.retry.AsyncBackoffRetry` built from ``retries`` and
``backoff_factor`` (or ``retry_policy``), which retries no answer, 408, 429,
502, 503 and 504 with jittered backoff and honours ``Retry-After``, within
60 s.  Any other status raises :class:`~customerio.CustomerIOException` at
once with ``status`` and ``body``.  Pass ``retry_strategy=`` for your own
(any object with ``async def execute(func, *args, **kwargs)``).

This module also holds :class:`AsyncHTTP`, the one-pool-per-client httpx
wrapper the async App API client (:mod:`customerio.app_aio`) uses too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Dict, Mapping, Optional, Sequence

from .analytics.apiclient import DEFAULT_USER_AGENT, JSONResponse
from .analytics.errors import ConfigurationError

from .retry import AsyncBackoffRetry, check_async_strategy, status_error, transport_error
from .track import (
    MAX_BATCH_BYTES,
    BatchResult,
    CustomerIOException,
    Region,
    Regions,
    TrackClientBase,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .analytics.retry import RetryPolicy

__all__ = ["AsyncCustomerIO", "AsyncHTTP", "h2_available"]

log = logging.getLogger("customerio")


def h2_available() -> bool:
    """True when the ``h2`` package is installed, so httpx can speak HTTP/2."""
    return importlib.util.find_spec("h2") is not None


def _httpx() -> Any:
    try:
        import httpx
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
    The pool is made on the first request, inside the running loop.
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
        hx = _httpx()
        client: "httpx.AsyncClient" = hx.AsyncClient(http2=self.http2, timeout=self.timeout, limits=self.limits,
                                                     headers=self.headers)
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
                      idempotent: bool = True) -> JSONResponse:
        """One request: the :class:`~analytics.apiclient.JSONResponse` of a 2xx answer; otherwise
        raises :class:`~customerio.retry.RetryableError` (no answer, 408/429/502/503/504) or
        :class:`~customerio.CustomerIOException` (see :mod:`customerio.retry`)."""
        hx = _httpx()
        client = self._pool() if self.pooled else self._new()
        try:
            try:
                resp = await client.request(method, url, content=body, params=params, headers=headers)
            except (hx.ConnectError, hx.ConnectTimeout, hx.PoolTimeout) as exc:
                raise transport_error(method, url, exc, connected=False, idempotent=idempotent) from None
            except hx.TransportError as exc:
                raise transport_error(method, url, exc, connected=True, idempotent=idempotent) from None
        finally:
            if not self.pooled:
                await client.aclose()
        content = resp.content or b""
        if 200 <= resp.status_code < 300:
            return JSONResponse(resp.status_code, resp.headers, content, 1)
        raise status_error(resp.status_code, method, url, content.decode("utf-8", "replace"),
                           resp.headers.get("Retry-After"))

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


class AsyncCustomerIO(TrackClientBase[Awaitable[JSONResponse]]):
    """A Track API client for asyncio (see the module doc).

    Parameters as :class:`~customerio.CustomerIO`, plus, keyword only:
    ``retry_strategy`` (an :class:`~customerio.retry.AsyncRetryStrategy`;
    default :class:`~customerio.retry.AsyncBackoffRetry` from ``retries``,
    ``backoff_factor`` or ``retry_policy``) and ``http2`` (``None``: when
    ``h2`` is installed).  ``user_agent`` replaces the default
    ``cdp-relay/<version> (python)``.

    Use ``async with AsyncCustomerIO(...) as cio:`` or ``await cio.aclose()``.
    """

    def __init__(
        self,
        site_id: Optional[str] = None,
        api_key: Optional[str] = None,
        host: Optional[str] = None,
        region: Region = Regions.US,
        port: Optional[int] = None,
        url_prefix: Optional[str] = None,
        json_encoder: Any = None,
        retries: int = 3,
        timeout: float = 10,
        backoff_factor: float = 0.02,
        use_connection_pooling: bool = True,
        user_agent: Optional[str] = None,
        *,
        retry_policy: Optional["RetryPolicy"] = None,
        retry_strategy: Any = None,
        http2: Optional[bool] = None,
    ) -> None:
        self.http2 = http2
        super().__init__(site_id, api_key, host, region, port, url_prefix, json_encoder, retries, timeout,
                         backoff_factor, use_connection_pooling, user_agent,
                         retry_policy=retry_policy, retry_strategy=retry_strategy)

    def _init_transport(self) -> None:
        self._strategy = (AsyncBackoffRetry(self.retry_policy) if self.retry_strategy is None
                          else check_async_strategy(self.retry_strategy))
        self._http = AsyncHTTP({"Content-Type": "application/json", "Accept": "application/json",
                                "User-Agent": self.user_agent or DEFAULT_USER_AGENT},
                               timeout=self.timeout, http2=self.http2, pooled=self.use_connection_pooling)

    @property
    def http(self) -> Optional["httpx.AsyncClient"]:
        """The pooled ``httpx.AsyncClient`` (None until the first request)."""
        return self._http.client

    async def _send_bytes(self, method: str, url: str, body: Optional[bytes]) -> JSONResponse:
        headers = {"Authorization": self._auth_header()}
        calls = 0

        async def attempt() -> JSONResponse:
            nonlocal calls
            calls += 1
            return await self._http.attempt(method, url, body=body, headers=headers)

        try:
            response: JSONResponse = await self._strategy.execute(attempt)
        except CustomerIOException as exc:
            exc.attempts = max(exc.attempts, calls)
            raise
        response.attempts = calls
        return response

    async def batch(self, operations: Optional[Sequence[Mapping[str, Any]]], *,
                    max_body_bytes: int = MAX_BATCH_BYTES) -> BatchResult:
        """:meth:`customerio.CustomerIO.batch`, awaited: the same checks (raised before anything
        is sent), the same split into requests of at most ``max_body_bytes``, sent one after
        another (in order), and the same :class:`~customerio.BatchResult`; a failure part-way
        carries the result so far as ``exc.result``."""
        result, bodies = self._plan_batch(operations, max_body_bytes)
        url = self.batch_url
        for number, body in enumerate(bodies):
            try:
                response = await self._send_bytes("POST", url, body)
            except CustomerIOException as exc:
                self._batch_failed(result, number, exc)
                raise
            result._record(response)
        return result

    async def send_batch(self, operations: Optional[Sequence[Mapping[str, Any]]]) -> BatchResult:
        """Same as :meth:`batch` (async-customerio's legacy name)."""
        return await self.batch(operations)

    async def aclose(self) -> None:
        """Close the connection pool (the client can still be used: it reconnects)."""
        await self._http.aclose()

    async def close(self) -> None:
        """Same as :meth:`aclose`."""
        await self.aclose()

    async def __aenter__(self) -> "AsyncCustomerIO":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

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
``backoff_factor`` (or ``retry_policy``), which retries what
:class:`~customerio.CustomerIO` retries (the ``Track v1`` and ``Track v2
batch`` rows of :mod:`analytics.clients.retryable`: no answer, 408, 429 and
5xx) with jittered backoff and honours ``Retry-After``, within 60 s.  Any
other status raises :class:`~customerio.CustomerIOException` at once with
``status`` and ``body``.  Pass ``retry_strategy=`` for your own (any object
with ``async def execute(func, *args, **kwargs)``).

:class:`AsyncHTTP` (the one-pool-per-client httpx wrapper, in
:mod:`analytics.clients.http`) and :func:`h2_available` are re-exported here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Mapping, Optional, Sequence

from .analytics.clients.http import AsyncHTTP, JSONResponse, h2_available
from .analytics.clients.retryable import TRACK_V1, TRACK_V2_BATCH, RetryRule
from .base import AsyncSending, Region, Regions
from .errors import CustomerIOException
from .track import MAX_BATCH_BYTES, BatchResult, TrackClientBase

if TYPE_CHECKING:  # pragma: no cover
    from .analytics.retry import RetryPolicy

__all__ = ["AsyncCustomerIO", "AsyncHTTP", "h2_available"]

log = logging.getLogger("customerio")


class AsyncCustomerIO(AsyncSending, TrackClientBase[Awaitable[JSONResponse]]):
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

    async def _send_bytes(self, method: str, url: str, body: Optional[bytes],
                          rule: RetryRule = TRACK_V1) -> JSONResponse:
        return await self._send(method, url, body, rule, headers={"Authorization": self._auth_header()})

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
                response = await self._send_bytes("POST", url, body, TRACK_V2_BATCH)
            except CustomerIOException as exc:
                self._batch_failed(result, number, exc)
                raise
            result._record(response)
        return result

    async def send_batch(self, operations: Optional[Sequence[Mapping[str, Any]]]) -> BatchResult:
        """Same as :meth:`batch` (async-customerio's legacy name)."""
        return await self.batch(operations)

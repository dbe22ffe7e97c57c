"""What the Customer.io clients share: the regions, the options every client takes, and sending.

:class:`ClientBase` checks and keeps the options of :class:`~customerio.CustomerIO`,
:class:`~customerio.APIClient` and their asyncio forms (timeout, retries and
backoff or a retry policy, a retry strategy, connection pooling) and makes the
headers every request carries.  A client class takes one of the two ways of
sending:

* :class:`SyncSending`: one :class:`~analytics.clients.http.SyncHTTP` pool
  (``requests``), the strategy given or :class:`~customerio.retry.BackoffRetry`,
  ``close()`` and ``with``;
* :class:`AsyncSending`: one :class:`~analytics.clients.http.AsyncHTTP` pool
  (``httpx``), the strategy given or :class:`~customerio.retry.AsyncBackoffRetry`,
  ``aclose()`` and ``async with``.

:class:`Region` and :class:`Regions` are re-exported by :mod:`customerio.track`
and :mod:`customerio`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, NamedTuple, Optional

import requests

from .analytics import _checks
from .analytics.clients.http import AsyncConnectionOwner, AsyncHTTP, ConnectionOwner, JSONResponse, SyncHTTP
from .analytics.clients.retryable import RetryRule
from .analytics.clients.retrying import arun, default_policy, run
from .analytics.version import DEFAULT_USER_AGENT
from .errors import CustomerIOException, customerio_error
from .retry import AsyncBackoffRetry, BackoffRetry, check_async_strategy, check_sync_strategy

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .analytics.retry import RetryPolicy

__all__ = ["Region", "Regions", "ClientBase", "SyncSending", "AsyncSending", "checked_region"]


class Region(NamedTuple):
    """A Customer.io data center: the Track API and App API hosts."""

    name: str
    track_host: str
    api_host: str


class Regions:
    """``Regions.US`` (the default) and ``Regions.EU``."""

    US = Region("us", "track.customer.io", "api.customer.io")
    EU = Region("eu", "track-eu.customer.io", "api-eu.customer.io")


def checked_region(region: Any) -> Region:
    """``region`` when it is a :class:`Region`; else raises :class:`~customerio.CustomerIOException`."""
    if not isinstance(region, Region):
        raise CustomerIOException("invalid region provided")
    return region


class ClientBase:
    """The options every client keeps, and the headers of its requests (see the module doc)."""

    user_agent: Optional[str]

    def _set_options(self, retries: int, timeout: float, backoff_factor: float, use_connection_pooling: bool,
                     retry_policy: Optional["RetryPolicy"], retry_strategy: Any) -> None:
        """Check and keep the sending options (``retry_policy`` None: made from ``retries`` and
        ``backoff_factor``)."""
        self.retries = retries
        self.timeout = _checks.number("timeout", timeout, 0.001)
        self.backoff_factor = backoff_factor
        self.use_connection_pooling = use_connection_pooling
        self.retry_policy = retry_policy if retry_policy is not None else default_policy(retries, backoff_factor)
        #: The retry strategy given (``None``: the client's built-in retries), see :mod:`customerio.retry`.
        self.retry_strategy = retry_strategy

    def _headers(self) -> Dict[str, str]:
        """The headers sent on every request."""
        return {"Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": self.user_agent or DEFAULT_USER_AGENT}

    def _init_transport(self) -> None:
        """Set up what the client sends with (called at the end of its ``__init__``)."""


class SyncSending(ClientBase, ConnectionOwner):
    """Sending with ``requests``: one pool per client, retried by the client's strategy."""

    _http: SyncHTTP

    def _init_transport(self) -> None:
        self._strategy = (BackoffRetry(self.retry_policy) if self.retry_strategy is None
                          else check_sync_strategy(self.retry_strategy))
        self._http = SyncHTTP(self._headers(), timeout=self.timeout, pooled=self.use_connection_pooling)

    @property
    def http(self) -> requests.Session:
        """The pooled ``requests.Session`` (created on first use)."""
        return self._http.session

    # AsyncSending._send is this method awaited: the two differ only in await.
    def _send(self, method: str, url: str, body: Optional[bytes], rule: RetryRule, *,
              headers: Optional[Mapping[str, str]] = None, params: Optional[Mapping[str, Any]] = None,
              idempotent: bool = True) -> JSONResponse:
        """Send one request through the strategy; the answer, or raises what the last attempt raised."""

        def attempt() -> JSONResponse:
            return self._http.attempt(method, url, body=body, params=params, headers=headers, rule=rule,
                                      error=customerio_error, idempotent=idempotent)

        return run(self._strategy, attempt)


class AsyncSending(ClientBase, AsyncConnectionOwner):
    """Sending with ``httpx``: one pool per client (HTTP/2 as ``http2`` says), retried by the
    client's strategy (an :class:`~customerio.retry.AsyncRetryStrategy`)."""

    #: ``None``: HTTP/2 when ``h2`` is installed; True requires it, False never.
    http2: Optional[bool] = None
    _http: AsyncHTTP

    def _init_transport(self) -> None:
        self._strategy = (AsyncBackoffRetry(self.retry_policy) if self.retry_strategy is None
                          else check_async_strategy(self.retry_strategy))
        self._http = AsyncHTTP(self._headers(), timeout=self.timeout, http2=self.http2,
                               pooled=self.use_connection_pooling)

    @property
    def http(self) -> Optional["httpx.AsyncClient"]:
        """The pooled ``httpx.AsyncClient`` (None until the first request)."""
        return self._http.client

    async def _send(self, method: str, url: str, body: Optional[bytes], rule: RetryRule, *,
                    headers: Optional[Mapping[str, str]] = None, params: Optional[Mapping[str, Any]] = None,
                    idempotent: bool = True) -> JSONResponse:
        """:meth:`SyncSending._send`, awaited."""

        async def attempt() -> JSONResponse:
            return await self._http.attempt(method, url, body=body, params=params, headers=headers, rule=rule,
                                            error=customerio_error, idempotent=idempotent)

        return await arun(self._strategy, attempt)

"""The Customer.io App API for asyncio: :class:`AsyncAPIClient`.

::

    from customerio import AsyncAPIClient, Regions, SendInboxMessageRequest

    async with AsyncAPIClient("YOUR_APP_API_KEY", region=Regions.US) as app:
        found = await app.customers.get_by_email("jane@example.com")
        async for person in app.segments.iter_membership(7, limit=1000):
            ...
        await app.send_inbox_message(SendInboxMessageRequest(
            transactional_message_id="3", identifiers={"id": "5"}, message_data={"order": "1234"}))

The same endpoints, arguments, checks and results as the sync
:class:`customerio.APIClient` (see :mod:`customerio.app` for the paths and
their sources), awaited: the namespaces are shared, only the sending differs.
The ``iter_*`` methods are async generators (``async for``).  Sending uses
httpx, one pool per client (HTTP/2 when ``h2`` is installed), through
:class:`analytics.clients.http.AsyncHTTP`; the default retry strategy is
:class:`~customerio.retry.AsyncBackoffRetry`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Dict, Mapping, Optional, Set, Union

from .analytics.clients.retryable import APP_API
from .app import (
    MAX_MEMBERSHIP_LIMIT,
    MAX_SEARCH_LIMIT,
    AppClientBase,
    Call,
    Customers,
    Segments,
    _filter,
    _positive,
    _segment_id,
    next_cursor,
    page_items,
)
from .base import AsyncSending, Region, Regions

if TYPE_CHECKING:  # pragma: no cover
    from .analytics.retry import RetryPolicy

__all__ = ["AsyncAPIClient", "AsyncCustomers", "AsyncSegments"]

log = logging.getLogger("customerio")

_Doc = Dict[str, Any]


async def _apages(fetch: Callable[[Optional[str]], Awaitable[Any]], key: str, start: Optional[str],
                  max_pages: Optional[int]) -> AsyncIterator[Any]:
    cursor, pages = start, 0
    seen: Set[Any] = set()
    while max_pages is None or pages < max_pages:
        doc = await fetch(cursor)
        pages += 1
        items = page_items(doc, key)
        for item in items:
            yield item
        cursor = next_cursor(doc, cursor, seen, items)
        if cursor is None:
            return


class AsyncCustomers(Customers[Awaitable[_Doc]]):
    """:class:`customerio.app.Customers` of the async client, plus async iterators over every page."""

    def iter_search(self, filter: Mapping[str, Any], *, limit: Optional[int] = None, start: Optional[str] = None,
                    max_pages: Optional[int] = None) -> AsyncIterator[_Doc]:
        """Every person matching ``filter``, following ``next`` (``async for``)."""
        _filter(filter, "iter_search")
        _positive(limit, "limit", "iter_search", MAX_SEARCH_LIMIT)
        return _apages(lambda cursor: self.search(filter, start=cursor, limit=limit), "identifiers", start,
                       max_pages)

    def iter_messages(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                      limit: Optional[int] = None, start_ts: Any = None, end_ts: Any = None,
                      max_pages: Optional[int] = None) -> AsyncIterator[_Doc]:
        """Every message sent to a person (``async for``)."""
        self._person(customer_id, "messages", "iter_messages")
        return _apages(lambda cursor: self.get_messages(customer_id, id_type=id_type, start=cursor, limit=limit,
                                                        start_ts=start_ts, end_ts=end_ts),
                       "messages", None, max_pages)

    def iter_activities(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                        limit: Optional[int] = None, type: Optional[str] = None, name: Optional[str] = None,
                        max_pages: Optional[int] = None) -> AsyncIterator[_Doc]:
        """Every activity of a person (``async for``)."""
        self._person(customer_id, "activities", "iter_activities")
        return _apages(lambda cursor: self.get_activities(customer_id, id_type=id_type, start=cursor, limit=limit,
                                                          type=type, name=name),
                       "activities", None, max_pages)

    def iter_relationships(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                           limit: Optional[int] = None, max_pages: Optional[int] = None) -> AsyncIterator[_Doc]:
        """Every relationship of a person (``async for``)."""
        self._person(customer_id, "relationships", "iter_relationships")
        return _apages(lambda cursor: self.get_relationships(customer_id, id_type=id_type, start=cursor,
                                                             limit=limit),
                       "cio_relationships", None, max_pages)


class AsyncSegments(Segments[Awaitable[_Doc]]):
    """:class:`customerio.app.Segments` of the async client, plus :meth:`iter_membership`."""

    def iter_membership(self, segment_id: int, *, limit: Optional[int] = None, start: Optional[str] = None,
                        max_pages: Optional[int] = None) -> AsyncIterator[_Doc]:
        """Every person in a segment, following ``next`` (``async for``)."""
        _segment_id(segment_id, "iter_membership")
        _positive(limit, "limit", "iter_membership", MAX_MEMBERSHIP_LIMIT)
        return _apages(lambda cursor: self.get_membership(segment_id, start=cursor, limit=limit),
                       "identifiers", start, max_pages)


class AsyncAPIClient(AsyncSending, AppClientBase[Awaitable[_Doc]]):
    """The App API for asyncio (see the module doc and :class:`customerio.APIClient`).

    Parameters as :class:`~customerio.APIClient`, plus ``http2`` (keyword
    only; ``None``: when ``h2`` is installed).  ``retry_strategy`` is an
    :class:`~customerio.retry.AsyncRetryStrategy` (``async def execute``).
    Use ``async with AsyncAPIClient(...) as app:`` or ``await app.aclose()``.
    """

    def __init__(
        self,
        key: str,
        url: Optional[str] = None,
        region: Region = Regions.US,
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
        super().__init__(key, url, region, retries, timeout, backoff_factor, use_connection_pooling, user_agent,
                         retry_policy=retry_policy, retry_strategy=retry_strategy)

    def _init_transport(self) -> None:
        super()._init_transport()
        self._customers = AsyncCustomers(self)
        self._segments = AsyncSegments(self)

    @property
    def customers(self) -> AsyncCustomers:
        """Customer endpoints (awaitable) and their async iterators."""
        return self._customers

    @property
    def segments(self) -> AsyncSegments:
        """Segment endpoints (awaitable) and :meth:`~AsyncSegments.iter_membership`."""
        return self._segments

    async def _call(self, call: Call) -> _Doc:
        url, body = self._prepare(call)
        response = await self._send(call.method, url, body, APP_API, params=call.params or None,
                                    idempotent=call.idempotent)
        return self._parse(response, call.method, url)

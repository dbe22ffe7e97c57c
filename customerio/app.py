"""The Customer.io App API: customers, segments and transactional sends (sync client).

::

    from customerio import APIClient, Regions, SendEmailRequest

    with APIClient("YOUR_APP_API_KEY", region=Regions.US) as app:
        app.customers.get_by_email("jane@example.com")
        for person in app.customers.iter_search({"segment": {"id": 7}}, limit=100):
            print(person["id"], person["email"])
        app.segments.create("VIP", description="High-value customers")
        app.send_email(SendEmailRequest(transactional_message_id=3, to="jane@example.com",
                                        identifiers={"id": "5"}, message_data={"code": "1234"}))

:class:`APIClient` is this module's sync client (``requests``, one session
per client); :class:`customerio.app_aio.AsyncAPIClient` is the same API for
asyncio (httpx).  Both take the official client's constructor
(``APIClient(key, url=None, region=Regions.US, retries=3, timeout=10,
backoff_factor=0.02, use_connection_pooling=True)``) plus ``user_agent``,
``retry_policy`` and ``retry_strategy`` (see :mod:`customerio.retry`), and
share everything but the sending: the namespaces :class:`Customers` and
:class:`Segments` (async-customerio's method names) build each request the
same way, and the request objects are validated before anything is sent.

Auth and hosts: ``Authorization: Bearer <App API key>``; ``Regions.US``
sends to ``https://api.customer.io``, ``Regions.EU`` to
``https://api-eu.customer.io``; ``url=`` overrides (``http://127.0.0.1:PORT``
for the local collector, see :mod:`analytics.collector.appapi`).

Every call returns the parsed JSON body (``{}`` for an empty one, as the 204
of a segment delete).  Errors are those of :mod:`customerio.retry`: the
default strategy retries no answer, 408, 429, 502, 503 and 504 (honouring
``Retry-After``; the ``App API`` row of :mod:`analytics.clients.retryable`,
the same for every strategy and in the async client); anything else raises
:class:`~customerio.CustomerIOException` at once with ``status`` and
``body``, the message carrying the API's reason (``errors[].detail``, or
``meta.error`` on the send endpoints).  The send calls are not idempotent:
a request that may have been delivered is not sent again.

Pagination: the API pages with a ``start`` cursor and a ``next`` token in
each answer.  The ``iter_*`` methods follow it and yield the items one by
one, stopping when ``next`` is empty, repeats, or a page is empty
(``max_pages`` bounds it further)::

    for person in app.segments.iter_membership(7, limit=1000): ...
    async for message in async_app.customers.iter_messages("5", limit=50): ...

Where the paths come from (Customer.io's App API reference at
docs.customer.io/integrations/api/app/, its published OpenAPI document, the
official ``customerio`` package's ``api.py`` and async-customerio's ``api``
package, read for this)::

    GET    /v1/customers?email=                      get_by_email        -> {"results": [...]}
    POST   /v1/customers?start=&limit=               search {"filter"}   -> {"identifiers", "ids", "next"}
    POST   /v1/customers/attributes?id_type=         get_by_ids {"ids"}  -> {"customers": [...]}
    GET    /v1/customers/{id}/attributes?id_type=    get_attributes      -> {"customer": {...}}
    GET    /v1/customers/{id}/segments?id_type=      get_segments        -> {"segments": [...]}
    GET    /v1/customers/{id}/messages?...           get_messages        -> {"messages", "next"}
    GET    /v1/customers/{id}/activities?...         get_activities      -> {"activities", "next"}
    GET    /v1/customers/{id}/relationships?...      get_relationships   -> {"cio_relationships", "next"}
    GET    /v1/customers/{id}/subscription_preferences?id_type=&language=
    GET    /v1/segments                              list                -> {"segments": [...]}
    POST   /v1/segments {"segment": {"name", "description"?}}  create -> {"segment": {...}}
    GET    /v1/segments/{id}                         get                 -> {"segment": {...}}
    DELETE /v1/segments/{id}                         delete              -> 204
    GET    /v1/segments/{id}/customer_count          get_customer_count  -> {"segment_id", "count"}
    GET    /v1/segments/{id}/used_by                 get_used_by         -> {"segment_id", "used_by"}
    GET    /v1/segments/{id}/membership?start=&limit=  get_membership    -> {"identifiers", "ids", "next"}
    POST   /v1/send/email | push | sms | inbox_message                   -> {"delivery_id", "queued_at"}

``id_type`` is ``id`` (the default), ``email``, ``cio_id`` or ``phone``
(the reference lists phone too; async-customerio does not).  The reference
also documents ``id_type`` on relationships (async-customerio leaves it
out; it is sent here when given).  Path ids are URL-encoded
(``quote(str(id), safe="")``: an email's ``+`` and ``@`` survive).

What had to be decided without a source:

* The required fields of the send calls: every send needs ``identifiers``
  (exactly one of ``id``, ``email``, ``cio_id``) and, but for email, a
  ``transactional_message_id``; an email needs ``to`` and either a
  ``transactional_message_id`` or ``body``, ``subject`` and ``from`` (the
  transactional examples say so; the exact server rules are not published
  in what was read).  These are checked before sending.
* Search ``limit`` is at most 1,000 and membership ``limit`` at most 30,000
  (the reference); ``get_by_ids`` takes 1 to 100 ids (the reference).
  Other limits are not checked beyond being positive integers.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Set,
    Generic,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import quote

from . import v2 as _v2
from .analytics import _checks
from .analytics._checks import quote as quote_value
from .analytics.clients.auth import bearer_auth
from .analytics.clients.http import JSONResponse
from .analytics.clients.retryable import APP_API
from .analytics.encoding import dumps
from .analytics.errors import ConfigurationError, UnserializableValueError
from .analytics.version import DEFAULT_USER_AGENT
from .base import ClientBase, Region, Regions, SyncSending, checked_region
from .errors import CustomerIOException, CustomerIOValidationError

if TYPE_CHECKING:  # pragma: no cover
    from .analytics.retry import RetryPolicy

__all__ = [
    "APIClient",
    "Customers",
    "Segments",
    "SyncCustomers",
    "SyncSegments",
    "SendEmailRequest",
    "SendPushRequest",
    "SendSMSRequest",
    "SendInboxMessageRequest",
    "ID_TYPES",
]

log = logging.getLogger("customerio")

#: What a call returns: a dict (APIClient) or an awaitable of one (AsyncAPIClient).
R = TypeVar("R")

#: The values of ``id_type``.
ID_TYPES = ("id", "email", "cio_id", "phone")
_PERSON_KEYS = ("id", "email", "cio_id")

#: Limits from the reference.
MAX_SEARCH_LIMIT = 1000
MAX_MEMBERSHIP_LIMIT = 30000
MAX_IDS = 100


class Call(NamedTuple):
    """One App API request, built and checked, not yet sent."""

    method: str
    path: str  #: after ``/v1``
    params: Dict[str, Any]
    body: Any = None  #: JSON-able, or None for no body
    idempotent: bool = True  #: False for the send endpoints (never re-sent after it may have arrived)


# -- argument checks ------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _path_id(value: Any, what: str, method: str) -> str:
    if _blank(value) or isinstance(value, bool):
        raise CustomerIOValidationError(f"{what} cannot be blank in {method}", field=what, reason="required")
    if not isinstance(value, (str, int)):
        raise CustomerIOValidationError(f"{what} must be a string or an integer in {method}, "
                                        f"got {type(value).__name__}", field=what)
    return quote(str(value), safe="")


def _id_type(value: Any, method: str) -> Optional[str]:
    if value is None:
        return None
    if value not in ID_TYPES:
        raise CustomerIOValidationError(f"id_type must be one of {', '.join(ID_TYPES)} in {method}, got {value!r}",
                                        field="id_type")
    return str(value)


def _positive(value: Any, what: str, method: str, maximum: Optional[int] = None) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CustomerIOValidationError(f"{what} must be a positive integer in {method}, got {value!r}", field=what)
    if maximum is not None and value > maximum:
        raise CustomerIOValidationError(f"{what} must be at most {maximum} in {method}, got {value}", field=what)
    return value


def _text(value: Any, what: str, method: str, required: bool = False) -> Optional[str]:
    if value is None and not required:
        return None
    if _blank(value):
        raise CustomerIOValidationError(f"{what} cannot be blank in {method}", field=what, reason="required")
    if not isinstance(value, str):
        raise CustomerIOValidationError(f"{what} must be a string in {method}, got {type(value).__name__}",
                                        field=what)
    return value


def _unix(value: Any, what: str, method: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return _v2.to_unix(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CustomerIOValidationError(f"{what} must be Unix seconds (an integer) or a datetime in {method}, "
                                        f"got {value!r}", field=what)
    return value


def _params(**values: Any) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _segment_id(value: Any, method: str) -> str:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CustomerIOValidationError(f"segment_id must be an integer in {method}, got {value!r}",
                                        field="segment_id", reason="required" if value is None else "invalid")
    return str(value)


def _filter(value: Any, method: str) -> Dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise CustomerIOValidationError(
            f"filter must be a non-empty dict such as {{'segment': {{'id': 7}}}} in {method}, got {value!r}",
            field="filter", reason="required" if not value else "invalid")
    return dict(value)


# -- pagination -----------------------------------------------------------------------


def page_items(doc: Any, key: str) -> List[Any]:
    """The items of one page: ``doc[key]`` (for people, ``identifiers``, else ``ids``)."""
    if not isinstance(doc, Mapping):
        return []
    items = doc.get(key)
    if items is None and key == "identifiers":
        items = doc.get("ids")
    return list(items) if isinstance(items, list) else []


def next_cursor(doc: Any, sent: Optional[str], seen: Set[Any], items: List[Any]) -> Optional[str]:
    """The ``start`` of the next page, or None to stop: no ``next``, an empty page, or a
    cursor seen before (a server that repeats itself must not loop a client forever)."""
    nxt = doc.get("next") if isinstance(doc, Mapping) else None
    if not nxt or not isinstance(nxt, str) or not items or nxt == sent or nxt in seen:
        return None
    seen.add(nxt)
    return nxt


def _pages(fetch: Callable[[Optional[str]], Any], key: str, start: Optional[str],
           max_pages: Optional[int]) -> Iterator[Any]:
    cursor, pages = start, 0
    seen: Set[Any] = set()
    while max_pages is None or pages < max_pages:
        doc = fetch(cursor)
        pages += 1
        items = page_items(doc, key)
        yield from items
        cursor = next_cursor(doc, cursor, seen, items)
        if cursor is None:
            return


# -- namespaces (shared by the sync and async clients) -----------------------------------


class Customers(Generic[R]):
    """Customer endpoints: ``client.customers.<method>(...)`` (async-customerio's names).

    Each method checks its arguments (raising
    :class:`~customerio.CustomerIOValidationError`) and returns what the client
    returns: the parsed body, or an awaitable of it.  ``id_type`` says what
    ``customer_id`` is: ``"id"`` (default), ``"email"``, ``"cio_id"`` or ``"phone"``.
    """

    def __init__(self, client: "AppClientBase[R]") -> None:
        self._client = client

    def _get(self, call: Call) -> R:
        return self._client._call(call)

    def get_by_email(self, email: str) -> R:
        """People with this email: ``GET /v1/customers?email=`` -> ``{"results": [{"id", "email", "cio_id"}]}``."""
        return self._get(Call("GET", "/customers", {"email": _text(email, "email", "get_by_email", True)}))

    def search(self, filter: Mapping[str, Any], *, start: Optional[str] = None,
               limit: Optional[int] = None) -> R:
        """One page of people matching an audience filter (``and``/``or``/``not``, ``segment``,
        ``attribute``): ``POST /v1/customers`` -> ``{"identifiers", "ids", "next"}``.
        ``limit`` is at most 1,000; see :meth:`SyncCustomers.iter_search` for all pages."""
        return self._get(Call("POST", "/customers",
                              _params(start=_text(start, "start", "search"),
                                      limit=_positive(limit, "limit", "search", MAX_SEARCH_LIMIT)),
                              {"filter": _filter(filter, "search")}))

    def get_by_ids(self, ids: Sequence[Union[str, int]], *, id_type: Optional[str] = None) -> R:
        """Attributes and devices of up to 100 people: ``POST /v1/customers/attributes``
        ``{"ids": [...]}`` -> ``{"customers": [...]}`` (unknown ids are left out)."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or not ids:
            raise CustomerIOValidationError("ids must be a non-empty list in get_by_ids", field="ids",
                                            reason="required" if not ids else "invalid")
        if len(ids) > MAX_IDS:
            raise CustomerIOValidationError(f"ids holds {len(ids)} ids in get_by_ids; at most {MAX_IDS}",
                                            field="ids")
        for i, value in enumerate(ids):
            _path_id(value, f"ids[{i}]", "get_by_ids")
        return self._get(Call("POST", "/customers/attributes", _params(id_type=_id_type(id_type, "get_by_ids")),
                              {"ids": [str(v) for v in ids]}))

    def _person(self, customer_id: Any, what: str, method: str, **params: Any) -> Call:
        path = f"/customers/{_path_id(customer_id, 'customer_id', method)}/{what}"
        return Call("GET", path, _params(**params))

    def get_attributes(self, customer_id: Union[str, int], *, id_type: Optional[str] = None) -> R:
        """One person's attributes: ``GET /v1/customers/{id}/attributes`` -> ``{"customer": {...}}``."""
        m = "get_attributes"
        return self._get(self._person(customer_id, "attributes", m, id_type=_id_type(id_type, m)))

    def get_segments(self, customer_id: Union[str, int], *, id_type: Optional[str] = None) -> R:
        """The segments a person is in: ``GET /v1/customers/{id}/segments`` -> ``{"segments": [...]}``."""
        m = "get_segments"
        return self._get(self._person(customer_id, "segments", m, id_type=_id_type(id_type, m)))

    def get_messages(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                     start: Optional[str] = None, limit: Optional[int] = None, start_ts: Any = None,
                     end_ts: Any = None) -> R:
        """One page of the messages sent to a person: ``GET /v1/customers/{id}/messages``
        -> ``{"messages", "next"}``; ``start_ts``/``end_ts`` are Unix seconds or datetimes."""
        m = "get_messages"
        return self._get(self._person(customer_id, "messages", m, id_type=_id_type(id_type, m),
                                      start=_text(start, "start", m), limit=_positive(limit, "limit", m),
                                      start_ts=_unix(start_ts, "start_ts", m), end_ts=_unix(end_ts, "end_ts", m)))

    def get_activities(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                       start: Optional[str] = None, limit: Optional[int] = None, type: Optional[str] = None,
                       name: Optional[str] = None) -> R:
        """One page of a person's activities: ``GET /v1/customers/{id}/activities``
        -> ``{"activities", "next"}``; ``type`` (``"event"``, ``"attribute_change"``...) and
        ``name`` filter them."""
        m = "get_activities"
        return self._get(self._person(customer_id, "activities", m, id_type=_id_type(id_type, m),
                                      start=_text(start, "start", m), limit=_positive(limit, "limit", m),
                                      type=_text(type, "type", m), name=_text(name, "name", m)))

    def get_relationships(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                          start: Optional[str] = None, limit: Optional[int] = None) -> R:
        """One page of the objects a person is related to: ``GET /v1/customers/{id}/relationships``
        -> ``{"cio_relationships", "next"}``."""
        m = "get_relationships"
        return self._get(self._person(customer_id, "relationships", m, id_type=_id_type(id_type, m),
                                      start=_text(start, "start", m), limit=_positive(limit, "limit", m)))

    def get_subscription_preferences(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                                     language: Optional[str] = None) -> R:
        """A person's subscription topic preferences: ``GET /v1/customers/{id}/subscription_preferences``
        (``language`` asks for the translated texts)."""
        m = "get_subscription_preferences"
        return self._get(self._person(customer_id, "subscription_preferences", m, id_type=_id_type(id_type, m),
                                      language=_text(language, "language", m)))


class Segments(Generic[R]):
    """Segment endpoints: ``client.segments.<method>(...)`` (async-customerio's names)."""

    def __init__(self, client: "AppClientBase[R]") -> None:
        self._client = client

    def list(self) -> R:
        """Every segment: ``GET /v1/segments`` -> ``{"segments": [...]}``."""
        return self._client._call(Call("GET", "/segments", {}))

    def create(self, name: str, *, description: Optional[str] = None) -> R:
        """Create an empty manual segment: ``POST /v1/segments`` -> ``{"segment": {"id", ...}}``."""
        segment = {"name": _text(name, "name", "create", True)}
        if description is not None:
            segment["description"] = _text(description, "description", "create") or ""
        return self._client._call(Call("POST", "/segments", {}, {"segment": segment}))

    def get(self, segment_id: int) -> R:
        """One segment: ``GET /v1/segments/{id}`` -> ``{"segment": {...}}`` (404 if unknown)."""
        return self._client._call(Call("GET", f"/segments/{_segment_id(segment_id, 'get')}", {}))

    def delete(self, segment_id: int) -> R:
        """Delete a manual segment: ``DELETE /v1/segments/{id}`` (204: returns ``{}``)."""
        return self._client._call(Call("DELETE", f"/segments/{_segment_id(segment_id, 'delete')}", {}))

    def get_customer_count(self, segment_id: int) -> R:
        """How many people are in it: ``GET /v1/segments/{id}/customer_count`` -> ``{"count", ...}``."""
        sid = _segment_id(segment_id, "get_customer_count")
        return self._client._call(Call("GET", f"/segments/{sid}/customer_count", {}))

    def get_used_by(self, segment_id: int) -> R:
        """What uses it: ``GET /v1/segments/{id}/used_by`` -> ``{"used_by": {"campaigns", ...}}``."""
        return self._client._call(Call("GET", f"/segments/{_segment_id(segment_id, 'get_used_by')}/used_by", {}))

    def get_membership(self, segment_id: int, *, start: Optional[str] = None, limit: Optional[int] = None) -> R:
        """One page of the people in it: ``GET /v1/segments/{id}/membership`` -> ``{"identifiers",
        "ids", "next"}``; ``limit`` at most 30,000; see :meth:`SyncSegments.iter_membership`."""
        m = "get_membership"
        return self._client._call(Call("GET", f"/segments/{_segment_id(segment_id, m)}/membership",
                                       _params(start=_text(start, "start", m),
                                               limit=_positive(limit, "limit", m, MAX_MEMBERSHIP_LIMIT))))


class SyncCustomers(Customers[Dict[str, Any]]):
    """:class:`Customers` of the sync client, plus iterators over every page."""

    def iter_search(self, filter: Mapping[str, Any], *, limit: Optional[int] = None, start: Optional[str] = None,
                    max_pages: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every person matching ``filter`` (the ``identifiers`` of each page: ``{"id", "email",
        "cio_id"}``), following ``next``; ``limit`` is the page size."""
        _filter(filter, "iter_search")
        _positive(limit, "limit", "iter_search", MAX_SEARCH_LIMIT)
        return _pages(lambda cursor: self.search(filter, start=cursor, limit=limit), "identifiers", start, max_pages)

    def iter_messages(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                      limit: Optional[int] = None, start_ts: Any = None, end_ts: Any = None,
                      max_pages: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every message sent to a person, page after page."""
        def fetch(cursor: Optional[str]) -> Any:
            return self.get_messages(customer_id, id_type=id_type, start=cursor, limit=limit,
                                     start_ts=start_ts, end_ts=end_ts)
        self._person(customer_id, "messages", "iter_messages")
        return _pages(fetch, "messages", None, max_pages)

    def iter_activities(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                        limit: Optional[int] = None, type: Optional[str] = None, name: Optional[str] = None,
                        max_pages: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every activity of a person, page after page."""
        def fetch(cursor: Optional[str]) -> Any:
            return self.get_activities(customer_id, id_type=id_type, start=cursor, limit=limit, type=type, name=name)
        self._person(customer_id, "activities", "iter_activities")
        return _pages(fetch, "activities", None, max_pages)

    def iter_relationships(self, customer_id: Union[str, int], *, id_type: Optional[str] = None,
                           limit: Optional[int] = None, max_pages: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every relationship of a person, page after page."""
        def fetch(cursor: Optional[str]) -> Any:
            return self.get_relationships(customer_id, id_type=id_type, start=cursor, limit=limit)
        self._person(customer_id, "relationships", "iter_relationships")
        return _pages(fetch, "cio_relationships", None, max_pages)


class SyncSegments(Segments[Dict[str, Any]]):
    """:class:`Segments` of the sync client, plus :meth:`iter_membership`."""

    def iter_membership(self, segment_id: int, *, limit: Optional[int] = None, start: Optional[str] = None,
                        max_pages: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every person in a segment (``{"id", "email", "cio_id"}`` each), following ``next``."""
        _segment_id(segment_id, "iter_membership")
        _positive(limit, "limit", "iter_membership", MAX_MEMBERSHIP_LIMIT)
        return _pages(lambda cursor: self.get_membership(segment_id, start=cursor, limit=limit),
                      "identifiers", start, max_pages)


# -- send request objects ---------------------------------------------------------------


def _person_identifiers(ids: Any, where: str) -> None:
    if ids is None or (isinstance(ids, Mapping) and not ids):
        raise CustomerIOValidationError(f"{where}: identifiers cannot be blank (one of id, email, cio_id)",
                                        field="identifiers", reason="required")
    if not isinstance(ids, Mapping):
        raise CustomerIOValidationError(f"{where}: identifiers must be a dict such as {{'id': '5'}}, "
                                        f"got {type(ids).__name__}", field="identifiers")
    if len(ids) != 1 or next(iter(ids)) not in _PERSON_KEYS:
        raise CustomerIOValidationError(f"{where}: identifiers must hold exactly one of id, email, cio_id, "
                                        f"got {', '.join(map(str, ids)) or 'none'}", field="identifiers")
    (key, value), = ids.items()
    if _blank(value) or isinstance(value, bool) or not isinstance(value, (str, int)) \
            or (key != "id" and not isinstance(value, str)):
        raise CustomerIOValidationError(f"{where}: identifiers.{key} must be a non-empty string"
                                        f"{' or an integer' if key == 'id' else ''}, got {value!r}",
                                        field=f"identifiers.{key}",
                                        reason="required" if _blank(value) else "invalid")


_BOOLS = ("disable_message_retention", "send_to_unsubscribed", "tracked", "queue_draft",
          "disable_css_preproceessing")
_DICTS = ("message_data", "headers", "custom_data", "custom_payload", "custom_device", "attachments")
_STRINGS = ("to", "from", "reply_to", "bcc", "subject", "preheader", "body", "body_amp", "body_plain", "fake_bcc",
            "language", "title", "message", "image_url", "link", "sound")

#: The send endpoints, by kind.
SEND_PATHS = {"email": "/send/email", "push": "/send/push", "sms": "/send/sms", "inbox_message": "/send/inbox_message"}


def check_send(kind: str, payload: Any, where: Optional[str] = None) -> Dict[str, Any]:
    """Check the body of a ``/v1/send/<kind>`` request; returns it sanitized (datetimes as
    Unix seconds).  Raises :class:`~customerio.CustomerIOValidationError` naming the field."""
    where = where or f"send_{kind}"
    if not isinstance(payload, Mapping):
        raise CustomerIOValidationError(f"{where}: the request must be a Send...Request or a dict, "
                                        f"got {type(payload).__name__}")
    data: Dict[str, Any] = _v2.sanitize({k: v for k, v in payload.items() if v is not None})
    _person_identifiers(data.get("identifiers"), where)
    tmid = data.get("transactional_message_id")
    if tmid is not None and (isinstance(tmid, bool) or not isinstance(tmid, (str, int)) or _blank(tmid)):
        raise CustomerIOValidationError(f"{where}: transactional_message_id must be a non-empty string or an "
                                        f"integer, got {tmid!r}", field="transactional_message_id")
    if kind == "email":
        if _blank(data.get("to")):
            raise CustomerIOValidationError(f"{where}: to cannot be blank", field="to", reason="required")
        if tmid is None:
            missing = [f for f in ("body", "subject", "from") if _blank(data.get(f))]
            if missing:
                raise CustomerIOValidationError(
                    f"{where}: without a transactional_message_id the email needs body, subject and from "
                    f"(missing {', '.join(missing)})", field=missing[0], reason="required")
    elif tmid is None:
        raise CustomerIOValidationError(f"{where}: transactional_message_id cannot be blank",
                                        field="transactional_message_id", reason="required")
    for name in _BOOLS:
        if name in data and not isinstance(data[name], bool):
            raise CustomerIOValidationError(f"{where}: {name} must be True or False, got {data[name]!r}", field=name)
    for name in _DICTS:
        if name in data and not isinstance(data[name], Mapping):
            raise CustomerIOValidationError(f"{where}: {name} must be a dict, got {type(data[name]).__name__}",
                                            field=name)
    for name in _STRINGS:
        if name in data and not isinstance(data[name], str):
            raise CustomerIOValidationError(f"{where}: {name} must be a string, got {type(data[name]).__name__}",
                                            field=name)
    for name, content in (data.get("attachments") or {}).items():
        if not isinstance(content, str):
            raise CustomerIOValidationError(f"{where}: attachments[{name!r}] must be base64 text "
                                            "(use attach() to encode bytes)", field="attachments")
    if "send_at" in data:
        _unix(data["send_at"], "send_at", where)
    return data


class _SendRequest:
    """Shared by the request objects: ``to_dict()`` leaves out what is None; :meth:`validate`."""

    _kind = ""
    #: attribute -> payload key
    _FIELDS: Dict[str, str] = {}

    def to_dict(self) -> Dict[str, Any]:
        """The request body (fields left as None are not sent)."""
        data = {}
        for attr, key in self._FIELDS.items():
            value = getattr(self, attr, None)
            if value is not None:
                data[key] = value
        return data

    def _to_dict(self) -> Dict[str, Any]:
        """Same as :meth:`to_dict` (the official client's name)."""
        return self.to_dict()

    def validate(self) -> Dict[str, Any]:
        """Check the request (see :func:`check_send`); returns the body to send."""
        return check_send(self._kind, self.to_dict(), type(self).__name__)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k not in ("body", "attachments"))
        return f"{type(self).__name__}({shown})"


class SendEmailRequest(_SendRequest):
    """A transactional email (``POST /v1/send/email``); the official client's fields.

    ``transactional_message_id`` picks a template; without one, ``body``,
    ``subject`` and ``_from`` (or ``from_``) compose the message.  ``to`` and
    ``identifiers`` (one of ``{"id"}``, ``{"email"}``, ``{"cio_id"}``) are
    required.  ``send_at`` is Unix seconds or a datetime.  :meth:`attach`
    adds a base64-encoded attachment.
    """

    _kind = "email"
    _FIELDS = {
        "transactional_message_id": "transactional_message_id", "to": "to", "identifiers": "identifiers",
        "_from": "from", "headers": "headers", "reply_to": "reply_to", "bcc": "bcc", "subject": "subject",
        "preheader": "preheader", "body": "body", "body_plain": "body_plain", "body_amp": "body_amp",
        "fake_bcc": "fake_bcc", "disable_message_retention": "disable_message_retention",
        "send_to_unsubscribed": "send_to_unsubscribed", "tracked": "tracked", "queue_draft": "queue_draft",
        "message_data": "message_data", "attachments": "attachments",
        "disable_css_preproceessing": "disable_css_preproceessing", "send_at": "send_at", "language": "language",
    }

    def __init__(self, transactional_message_id: Union[str, int, None] = None, to: Optional[str] = None,
                 identifiers: Optional[Mapping[str, Any]] = None, _from: Optional[str] = None,
                 headers: Optional[Mapping[str, str]] = None, reply_to: Optional[str] = None,
                 bcc: Optional[str] = None, subject: Optional[str] = None, preheader: Optional[str] = None,
                 body: Optional[str] = None, body_plain: Optional[str] = None, body_amp: Optional[str] = None,
                 fake_bcc: Optional[str] = None, disable_message_retention: Optional[bool] = None,
                 send_to_unsubscribed: Optional[bool] = None, tracked: Optional[bool] = None,
                 queue_draft: Optional[bool] = None, message_data: Optional[Mapping[str, Any]] = None,
                 attachments: Optional[Dict[str, str]] = None, disable_css_preproceessing: Optional[bool] = None,
                 send_at: Any = None, language: Optional[str] = None, *, from_: Optional[str] = None) -> None:
        self.transactional_message_id = transactional_message_id
        self.to = to
        self.identifiers = identifiers
        self._from = _from if _from is not None else from_
        self.headers = headers
        self.reply_to = reply_to
        self.bcc = bcc
        self.subject = subject
        self.preheader = preheader
        self.body = body
        self.body_plain = body_plain
        self.body_amp = body_amp
        self.fake_bcc = fake_bcc
        self.disable_message_retention = disable_message_retention
        self.send_to_unsubscribed = send_to_unsubscribed
        self.tracked = tracked
        self.queue_draft = queue_draft
        self.message_data = message_data
        self.attachments = attachments
        self.disable_css_preproceessing = disable_css_preproceessing
        self.send_at = send_at
        self.language = language

    def attach(self, name: str, content: Union[str, bytes], encode: bool = True) -> None:
        """Add an attachment; ``content`` is base64-encoded unless ``encode=False`` (already base64).
        A name used twice raises :class:`~customerio.CustomerIOValidationError`."""
        if not isinstance(name, str) or not name:
            raise CustomerIOValidationError("attachment name cannot be blank", field="attachments",
                                            reason="required")
        if self.attachments is None:
            self.attachments = {}
        if name in self.attachments:
            raise CustomerIOValidationError(f"attachment {name} already exists", field="attachments")
        if encode:
            raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
            content = base64.b64encode(raw).decode("ascii")
        elif isinstance(content, bytes):
            content = content.decode("ascii")
        self.attachments[name] = content


class SendPushRequest(_SendRequest):
    """A transactional push (``POST /v1/send/push``): ``transactional_message_id`` and
    ``identifiers`` required; ``to`` is ``"all"``, ``"last_used"`` or a device token;
    ``device`` (or ``custom_device``) is sent as ``custom_device``."""

    _kind = "push"
    _FIELDS = {
        "transactional_message_id": "transactional_message_id", "to": "to", "identifiers": "identifiers",
        "disable_message_retention": "disable_message_retention", "send_to_unsubscribed": "send_to_unsubscribed",
        "queue_draft": "queue_draft", "message_data": "message_data", "send_at": "send_at", "language": "language",
        "title": "title", "message": "message", "image_url": "image_url", "link": "link",
        "custom_data": "custom_data", "custom_payload": "custom_payload", "device": "custom_device",
        "sound": "sound",
    }

    def __init__(self, transactional_message_id: Union[str, int, None] = None, to: Optional[str] = None,
                 identifiers: Optional[Mapping[str, Any]] = None, title: Optional[str] = None,
                 message: Optional[str] = None, disable_message_retention: Optional[bool] = None,
                 send_to_unsubscribed: Optional[bool] = None, queue_draft: Optional[bool] = None,
                 message_data: Optional[Mapping[str, Any]] = None, send_at: Any = None,
                 language: Optional[str] = None, image_url: Optional[str] = None, link: Optional[str] = None,
                 custom_data: Optional[Mapping[str, Any]] = None, custom_payload: Optional[Mapping[str, Any]] = None,
                 device: Optional[Mapping[str, Any]] = None, sound: Optional[str] = None, *,
                 custom_device: Optional[Mapping[str, Any]] = None) -> None:
        self.transactional_message_id = transactional_message_id
        self.to = to
        self.identifiers = identifiers
        self.title = title
        self.message = message
        self.disable_message_retention = disable_message_retention
        self.send_to_unsubscribed = send_to_unsubscribed
        self.queue_draft = queue_draft
        self.message_data = message_data
        self.send_at = send_at
        self.language = language
        self.image_url = image_url
        self.link = link
        self.custom_data = custom_data
        self.custom_payload = custom_payload
        self.device = device if device is not None else custom_device
        self.sound = sound


class SendSMSRequest(_SendRequest):
    """A transactional SMS (``POST /v1/send/sms``): ``transactional_message_id`` and
    ``identifiers`` required; ``to`` a phone number (E.164), ``_from`` a sender."""

    _kind = "sms"
    _FIELDS = {
        "transactional_message_id": "transactional_message_id", "to": "to", "identifiers": "identifiers",
        "_from": "from", "disable_message_retention": "disable_message_retention",
        "send_to_unsubscribed": "send_to_unsubscribed", "queue_draft": "queue_draft",
        "message_data": "message_data", "send_at": "send_at", "language": "language",
    }

    def __init__(self, transactional_message_id: Union[str, int, None] = None, to: Optional[str] = None,
                 identifiers: Optional[Mapping[str, Any]] = None, disable_message_retention: Optional[bool] = None,
                 send_to_unsubscribed: Optional[bool] = None, queue_draft: Optional[bool] = None,
                 message_data: Optional[Mapping[str, Any]] = None, send_at: Any = None,
                 language: Optional[str] = None, *, _from: Optional[str] = None,
                 from_: Optional[str] = None) -> None:
        self.transactional_message_id = transactional_message_id
        self.to = to
        self.identifiers = identifiers
        self._from = _from if _from is not None else from_
        self.disable_message_retention = disable_message_retention
        self.send_to_unsubscribed = send_to_unsubscribed
        self.queue_draft = queue_draft
        self.message_data = message_data
        self.send_at = send_at
        self.language = language


class SendInboxMessageRequest(_SendRequest):
    """A transactional inbox message (``POST /v1/send/inbox_message``):
    ``transactional_message_id`` and ``identifiers`` required."""

    _kind = "inbox_message"
    _FIELDS = {
        "transactional_message_id": "transactional_message_id", "identifiers": "identifiers",
        "disable_message_retention": "disable_message_retention", "queue_draft": "queue_draft",
        "message_data": "message_data", "send_at": "send_at", "language": "language",
    }

    def __init__(self, transactional_message_id: Union[str, int, None] = None,
                 identifiers: Optional[Mapping[str, Any]] = None, disable_message_retention: Optional[bool] = None,
                 queue_draft: Optional[bool] = None, message_data: Optional[Mapping[str, Any]] = None,
                 send_at: Any = None, language: Optional[str] = None) -> None:
        self.transactional_message_id = transactional_message_id
        self.identifiers = identifiers
        self.disable_message_retention = disable_message_retention
        self.queue_draft = queue_draft
        self.message_data = message_data
        self.send_at = send_at
        self.language = language


_REQUEST_TYPES = {"email": SendEmailRequest, "push": SendPushRequest, "sms": SendSMSRequest,
                  "inbox_message": SendInboxMessageRequest}


def send_call(kind: str, request: Any) -> Call:
    """The checked :class:`Call` of ``send_<kind>(request)``: a request object of that kind,
    a dict, or anything with ``to_dict()``."""
    where = f"send_{kind}"
    expected = _REQUEST_TYPES[kind]
    if isinstance(request, _SendRequest) and not isinstance(request, expected):
        raise CustomerIOValidationError(f"{where} takes a {expected.__name__}, got {type(request).__name__}")
    if isinstance(request, Mapping):
        payload: Any = request
    elif callable(getattr(request, "to_dict", None)):
        payload = request.to_dict()
    else:
        raise CustomerIOValidationError(f"{where}: invalid request provided ({type(request).__name__}); "
                                        f"pass a {expected.__name__} or a dict")
    return Call("POST", SEND_PATHS[kind], {}, check_send(kind, payload, where), idempotent=False)


# -- the clients ---------------------------------------------------------------------------


def _base_url(url: Optional[str], region: Region) -> str:
    if url is None:
        return f"https://{region.api_host}"
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"url must be a base URL such as 'https://api.customer.io', got {quote_value(url)}")
    url, parts = _checks.http_url("url", url)
    if parts.path.rstrip("/").endswith("/v1"):
        url = url[: url.rstrip("/").rfind("/v1")]
    return url


class AppClientBase(ClientBase, Generic[R]):
    """What :class:`APIClient` and :class:`~customerio.app_aio.AsyncAPIClient` share: the
    constructor, the namespaces and the send calls; ``_call`` is the subclass's."""

    API_PREFIX = "/v1"

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
    ) -> None:
        self.region = checked_region(region)
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError("key must be your App API key (a non-empty string)")
        self.key = key
        self.url = _base_url(url, region)
        self._set_options(retries, timeout, backoff_factor, use_connection_pooling, retry_policy, retry_strategy)
        #: The User-Agent sent (default ``cdp-relay/<version> (python)``).
        self.user_agent: str = _checks.header_text("user_agent", user_agent) or DEFAULT_USER_AGENT
        self._init_transport()

    def _headers(self) -> Dict[str, str]:
        return {"Authorization": bearer_auth(self.key), **super()._headers()}

    def _url(self, call: Call) -> str:
        return f"{self.url}{self.API_PREFIX}{call.path}"

    def _prepare(self, call: Call) -> Tuple[str, Optional[bytes]]:
        """The URL and the encoded body of ``call``."""
        url = self._url(call)
        body = self._encode(call)
        log.debug("App API %s %s", call.method, url)
        return url, body

    def _encode(self, call: Call) -> Optional[bytes]:
        if call.body is None:
            return None
        try:
            return dumps(call.body)
        except UnserializableValueError as exc:
            raise CustomerIOValidationError(f"cannot encode {exc.path or 'the request'}: {exc}",
                                            field=exc.path or None) from exc

    @staticmethod
    def _parse(response: JSONResponse, method: str, url: str) -> Dict[str, Any]:
        if not response.body.strip():
            return {}
        doc = response.json(default=ValueError)
        if doc is ValueError:
            raise CustomerIOException(f"{response.status}: {method} {url}: the answer is not JSON",
                                      status=response.status, body=response.text, attempts=response.attempts)
        return doc if isinstance(doc, dict) else {"result": doc}

    def _call(self, call: Call) -> R:
        raise NotImplementedError

    def send_email(self, request: Union[SendEmailRequest, Mapping[str, Any]]) -> R:
        """Send a transactional email: ``POST /v1/send/email`` -> ``{"delivery_id", "queued_at"}``.
        The request is checked first (:func:`check_send`); never re-sent once it may have arrived."""
        return self._call(send_call("email", request))

    def send_push(self, request: Union[SendPushRequest, Mapping[str, Any]]) -> R:
        """Send a transactional push: ``POST /v1/send/push``."""
        return self._call(send_call("push", request))

    def send_sms(self, request: Union[SendSMSRequest, Mapping[str, Any]]) -> R:
        """Send a transactional SMS: ``POST /v1/send/sms``."""
        return self._call(send_call("sms", request))

    def send_inbox_message(self, request: Union[SendInboxMessageRequest, Mapping[str, Any]]) -> R:
        """Send a transactional inbox message: ``POST /v1/send/inbox_message``."""
        return self._call(send_call("inbox_message", request))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={self.url!r}>"


class APIClient(SyncSending, AppClientBase[Dict[str, Any]]):
    """The App API, synchronously (see the module doc): ``client.customers``,
    ``client.segments``, ``send_email``/``send_push``/``send_sms``/``send_inbox_message``.

    ``key`` is the App API key (bearer).  ``url`` overrides the region's base
    URL.  ``retries``/``backoff_factor`` (or ``retry_policy``) shape the
    default :class:`~customerio.retry.BackoffRetry`; ``retry_strategy`` replaces
    it with any :class:`~customerio.retry.RetryStrategy`.  ``timeout`` is per
    request, in seconds.  One ``requests`` session per client (or one per
    request with ``use_connection_pooling=False``); use it as a context
    manager or call :meth:`close`.
    """

    def _init_transport(self) -> None:
        super()._init_transport()
        self._customers = SyncCustomers(self)
        self._segments = SyncSegments(self)

    @property
    def customers(self) -> SyncCustomers:
        """Customer endpoints and their iterators."""
        return self._customers

    @property
    def segments(self) -> SyncSegments:
        """Segment endpoints and :meth:`~SyncSegments.iter_membership`."""
        return self._segments

    def _call(self, call: Call) -> Dict[str, Any]:
        url, body = self._prepare(call)
        response = self._send(call.method, url, body, APP_API, params=call.params or None,
                              idempotent=call.idempotent)
        return self._parse(response, call.method, url)


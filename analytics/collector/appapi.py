"""The collector's Customer.io App API routes (``/v1/customers``, ``/v1/segments``, ``/v1/send/...``).

:class:`AppAPIRoutes` gives the collector these routes (see
:mod:`.routing`), like :mod:`.trackapi`.  The data the routes serve
and what they receive live in an :class:`AppAPIStore` at
``collector.app_api``, seeded with a small, fixed workspace (see
:meth:`AppAPIStore.seed`) so clients can be tested end to end over real HTTP.

Routes (``{id}`` is URL-decoded; ``id_type`` is ``id``, ``email``,
``cio_id`` or ``phone``, default ``id``)::

    GET    /v1/customers?email=                     {"results": [{"email", "id", "cio_id"}]}
    POST   /v1/customers?start=&limit=              {"filter": ...} -> {"identifiers", "ids", "next"}
    POST   /v1/customers/attributes?id_type=        {"ids": [...]}  -> {"customers": [{"customer": ...}]}
    GET    /v1/customers/{id}/attributes            {"customer": {"id", "identifiers", "attributes",
                                                                  "timestamps", "unsubscribed", "devices"}}
    GET    /v1/customers/{id}/segments              {"segments": [...]}
    GET    /v1/customers/{id}/messages?start=&limit=&start_ts=&end_ts=   {"messages", "next"}
    GET    /v1/customers/{id}/activities?start=&limit=&type=&name=      {"activities", "next"}
    GET    /v1/customers/{id}/relationships?start=&limit=                {"cio_relationships", "next"}
    GET    /v1/customers/{id}/subscription_preferences?language=         {"customer": {..., "topics"}}
    GET    /v1/segments                             {"segments": [...]}
    POST   /v1/segments                             {"segment": {"name", "description"?}} -> {"segment"}
    GET    /v1/segments/{id}                        {"segment": {...}}
    DELETE /v1/segments/{id}                        204 (manual segments only)
    GET    /v1/segments/{id}/customer_count         {"segment_id", "count"}
    GET    /v1/segments/{id}/used_by                {"segment_id", "used_by": {"campaigns", ...}}
    GET    /v1/segments/{id}/membership?start=&limit=   {"segment_id", "identifiers", "ids", "next"}
    POST   /v1/send/email | push | sms | inbox_message  {"delivery_id", "queued_at"}

Checked in this order, after any injected fault (``collector.fail_next``,
``drop_next``, ``store_then_drop_next``, chaos and ``delay`` apply here as on
``/v1/batch``, and every request is logged in ``collector.request_log``, so
``retry_after_violations()`` covers these routes too):

1. ``Authorization: Bearer <key>`` with a non-empty key; when
   :attr:`AppAPIStore.keys` is set, the key must be in it.  Otherwise 401.
2. Query parameters: ``id_type`` one of the four; ``limit`` a positive
   integer (search at most 1,000, membership at most 30,000, as the
   reference says); ``start`` a cursor this collector handed out;
   ``start_ts``/``end_ts`` integers.  Otherwise 400.
3. A JSON body where one is expected (an object): 400 otherwise.
4. Unknown customer or segment: 404.

Error bodies follow the reference's two envelopes: ``{"errors": [{"detail",
"status"}]}`` everywhere, except the send endpoints' ``{"meta": {"error"}}``.

Pages: ``limit`` items (default 1,000 for membership, 50 elsewhere — the
latter a guess) from the ``start`` cursor; ``next`` is an opaque cursor, or
``""`` on the last page.

What is not documented and was decided here (a guess each): the shape of a
subscription preferences answer (``topics`` as a list of ``{"id", "name",
"description", "subscribed"}``); deleting a data-driven segment answers 400;
a send checks ``identifiers`` (exactly one of id, email, cio_id), a
``transactional_message_id`` (for email: that, or ``body``, ``subject`` and
``from``) and an email's ``to``, answering 400 with ``meta.error``; when
:attr:`AppAPIStore.transactional_ids` is set, an unknown template is 404.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Set, Tuple, TypeVar
from urllib.parse import parse_qs, unquote

from .records import Request, RouteLog
from .routing import Call, Route

__all__ = [
    "AppAPIRoutes",
    "AppAPIStore",
    "AppCustomer",
    "AppSegment",
    "SentMessage",
    "AppRequest",
]

ID_TYPES = ("id", "email", "cio_id", "phone")
MAX_SEARCH_LIMIT = 1000
MAX_MEMBERSHIP_LIMIT = 30000
MAX_IDS = 100
DEFAULT_MEMBERSHIP_LIMIT = 1000
DEFAULT_LIMIT = 50
_PERSON_KEYS = ("id", "email", "cio_id")
#: A fixed "now" for the seeded data, so answers do not change from run to run.
SEED_TIME = 1_700_000_000


@dataclass
class AppCustomer:
    """One person of the seeded (or added) workspace."""

    cio_id: str
    id: Optional[str]
    email: Optional[str]
    attributes: Dict[str, Any] = field(default_factory=dict)
    created_at: int = SEED_TIME
    unsubscribed: bool = False
    devices: List[Dict[str, Any]] = field(default_factory=list)
    messages: List[Dict[str, Any]] = field(default_factory=list)
    activities: List[Dict[str, Any]] = field(default_factory=list)
    relationships: List[Dict[str, Any]] = field(default_factory=list)
    topics: List[Dict[str, Any]] = field(default_factory=list)

    def identifiers(self) -> Dict[str, Any]:
        """``{"email", "id", "cio_id"}`` (unset ones are null), as the API answers them."""
        return {"email": self.email, "id": self.id, "cio_id": self.cio_id}

    def all_attributes(self) -> Dict[str, Any]:
        """The attributes with the identifiers in them, as the API shows them."""
        attrs = {k: v for k, v in self.attributes.items()}
        attrs["cio_id"] = self.cio_id
        if self.id is not None:
            attrs["id"] = self.id
        if self.email is not None:
            attrs["email"] = self.email
        attrs.setdefault("created_at", str(self.created_at))
        return attrs

    def profile(self) -> Dict[str, Any]:
        """The ``customer`` object of an attributes answer."""
        return {
            "id": self.id,
            "identifiers": self.identifiers(),
            "attributes": self.all_attributes(),
            "timestamps": {"cio_id": self.created_at, "created_at": self.created_at},
            "unsubscribed": self.unsubscribed,
            "devices": [dict(d) for d in self.devices],
        }


@dataclass
class AppSegment:
    """One segment; ``members`` are cio_ids, in order."""

    id: int
    name: str
    description: str = ""
    type: str = "manual"  #: "manual" or "dynamic"
    members: List[str] = field(default_factory=list)
    created_at: int = SEED_TIME
    updated_at: int = SEED_TIME
    used_by: Dict[str, List[int]] = field(default_factory=lambda: {
        "campaigns": [], "sent_newsletters": [], "draft_newsletters": []})

    def doc(self) -> Dict[str, Any]:
        """The segment object of the API's answers."""
        return {"id": self.id, "deduplicate_id": f"{self.id}:{self.updated_at}", "name": self.name,
                "description": self.description, "state": "finished", "progress": None, "type": self.type,
                "tags": None, "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass
class SentMessage:
    """One accepted send."""

    kind: str  #: "email", "push", "sms" or "inbox_message"
    body: Dict[str, Any]
    delivery_id: str
    queued_at: int
    key: str
    received_at: float


@dataclass
class AppRequest:
    """One request that reached an App API route (after injected faults)."""

    method: str
    path: str
    query: Dict[str, List[str]]
    status: int  #: what was answered (0: dropped by a store-then-drop fault)
    key: Optional[str]
    headers: Dict[str, str]
    body: Any
    received_at: float


class AppAPIStore(RouteLog[AppRequest]):
    """The App API routes' workspace, settings and records.

    Settings: :attr:`keys` (``None``: any non-empty bearer key; see
    :meth:`allow`), :attr:`transactional_ids` (``None``: any template id).

    Data: :attr:`customers` (list of :class:`AppCustomer`), :attr:`segments`
    (id -> :class:`AppSegment`); :meth:`seed` fills both (done at creation
    unless ``seed=False``), :meth:`add_customer` and :meth:`add_segment` add.

    Records (copies, under :attr:`lock`): :attr:`sent` (:class:`SentMessage`),
    :attr:`requests` (:class:`AppRequest`), :meth:`sent_of`.
    """

    def __init__(self, seed: bool = True) -> None:
        super().__init__(threading.RLock())
        #: Accepted App API keys; None accepts any non-empty key.
        self.keys: Optional[Set[str]] = None
        #: Known transactional message ids (as strings); None accepts any.
        self.transactional_ids: Optional[Set[str]] = None
        self.customers: List[AppCustomer] = []
        self.segments: Dict[int, AppSegment] = {}
        self._sent: List[SentMessage] = []
        self._next_segment = 1
        if seed:
            self.seed()

    # -- settings and data --------------------------------------------------------------

    def allow(self, key: str) -> None:
        """Accept this key; once one is allowed, only allowed keys are."""
        with self.lock:
            if self.keys is None:
                self.keys = set()
            self.keys.add(key)

    def add_customer(self, id: Optional[str] = None, email: Optional[str] = None, *,
                     cio_id: Optional[str] = None, **attributes: Any) -> AppCustomer:
        """Add a person (``cio_id`` made up when not given); returns it for further setup."""
        with self.lock:
            person = AppCustomer(cio_id or f"a{len(self.customers) + 1:07x}", id, email, dict(attributes))
            self.customers.append(person)
            return person

    def add_segment(self, name: str, members: Optional[List[AppCustomer]] = None, *, type: str = "manual",
                    description: str = "") -> AppSegment:
        """Add a segment with these members (in order)."""
        with self.lock:
            segment = AppSegment(self._next_segment, name, description, type,
                                 [m.cio_id for m in members or []])
            self.segments[segment.id] = segment
            self._next_segment += 1
            return segment

    def seed(self) -> None:
        """A fixed workspace: 25 people and 3 segments.

        * People ``1``..``25``: id ``"<n>"``, email ``user<n>@example.com``,
          cio_id ``"a000000<n in hex>"``, attributes ``first_name`` (``"User <n>"``),
          ``plan`` (``"pro"`` for every third, else ``"free"``) and ``phone``
          (``"+1555000<n:04>"``).  Person 24 has no id (email only); person 25 no
          email.  Person 2 is unsubscribed.
        * Person 1 has 2 devices, 5 messages (``created`` 1,700,000,100 to
          1,700,000,500), 7 activities (events ``purchase`` and ``login`` and an
          attribute change), 3 relationships (objects ``acme``, ``globex``,
          ``initech`` of type 1) and 2 subscription topics.
        * Segments: 1 ``"Pro plan"`` (dynamic: the pro people), 2 ``"Everyone"``
          (dynamic: all 25), 3 ``"VIP"`` (manual: people 1, 2 and 3).  Segment 1
          is used by campaign 4 and draft newsletter 9.
        """
        with self.lock:
            self.customers.clear()
            self.segments.clear()
            self._next_segment = 1
            people = []
            for n in range(1, 26):
                person = self.add_customer(
                    None if n == 24 else str(n), None if n == 25 else f"user{n}@example.com",
                    cio_id=f"a{n:07x}", first_name=f"User {n}", plan="pro" if n % 3 == 0 else "free",
                    phone=f"+1555000{n:04d}")
                person.created_at = SEED_TIME - 86400 * (30 - n)
                people.append(person)
            people[1].unsubscribed = True
            first = people[0]
            first.devices = [{"id": "tok-ios-1", "platform": "ios", "last_used": SEED_TIME},
                             {"id": "tok-android-1", "platform": "android", "last_used": SEED_TIME - 60}]
            first.messages = [
                {"id": f"msg-{i}", "deliveries_id": f"dlv-{i}", "type": "email",
                 "created": SEED_TIME + 100 * i, "campaign_id": 4 if i % 2 else None,
                 "metrics": {"sent": SEED_TIME + 100 * i}, "recipient": first.email}
                for i in range(1, 6)
            ]
            first.activities = [
                {"id": f"act-{i}", "type": "event", "name": "purchase" if i % 2 else "login",
                 "timestamp": SEED_TIME + 10 * i, "customer_id": first.id, "data": {"n": i}}
                for i in range(1, 7)
            ] + [{"id": "act-7", "type": "attribute_change", "name": "plan", "timestamp": SEED_TIME + 70,
                  "customer_id": first.id, "data": {"plan": {"from": "trial", "to": "free"}}}]
            first.relationships = [
                {"identifiers": {"object_type_id": "1", "object_id": name},
                 "relationship_attributes": {"role": role}}
                for name, role in (("acme", "admin"), ("globex", "member"), ("initech", "member"))
            ]
            first.topics = [
                {"id": 1, "name": "Newsletter", "description": "News, monthly", "subscribed": True},
                {"id": 2, "name": "Product updates", "description": "What changed", "subscribed": False},
            ]
            pro = self.add_segment("Pro plan", [p for p in people if p.attributes["plan"] == "pro"],
                                   type="dynamic", description="People on the pro plan")
            pro.used_by = {"campaigns": [4], "sent_newsletters": [], "draft_newsletters": [9]}
            self.add_segment("Everyone", people, type="dynamic", description="All people")
            self.add_segment("VIP", people[:3], description="Hand-picked")

    def find(self, value: str, id_type: str = "id") -> Optional[AppCustomer]:
        """The person whose ``id_type`` is ``value`` (phone: the ``phone`` attribute)."""
        with self.lock:
            for person in self.customers:
                if id_type == "phone":
                    if person.attributes.get("phone") == value:
                        return person
                elif getattr(person, id_type) == value:
                    return person
        return None

    def by_cio_id(self, cio_id: str) -> Optional[AppCustomer]:
        """The person with this cio_id."""
        return self.find(cio_id, "cio_id")

    # -- records ---------------------------------------------------------------------------

    @property
    def sent(self) -> List[SentMessage]:
        """Every accepted send, in arrival order."""
        return self._copy(self._sent)

    def sent_of(self, kind: str) -> List[SentMessage]:
        """The accepted sends of one kind (``"email"``, ``"push"``, ``"sms"``, ``"inbox_message"``)."""
        return [s for s in self.sent if s.kind == kind]

    def record_send(self, sent: SentMessage) -> None:
        """Record an accepted send."""
        with self.lock:
            self._sent.append(sent)


# -- the audience filter ---------------------------------------------------------------------


class _BadRequest(Exception):
    pass


def _matches(person: AppCustomer, flt: Any, segments: Dict[int, AppSegment]) -> bool:
    if not isinstance(flt, dict) or len(flt) != 1:
        raise _BadRequest("a filter is an object with exactly one of and, or, not, segment, attribute")
    (kind, value), = flt.items()
    if kind in ("and", "or"):
        if not isinstance(value, list) or not value:
            raise _BadRequest(f"{kind} must be a non-empty array of filters")
        results = [_matches(person, item, segments) for item in value]
        return all(results) if kind == "and" else any(results)
    if kind == "not":
        return not _matches(person, value, segments)
    if kind == "segment":
        sid = value.get("id") if isinstance(value, dict) else None
        if type(sid) is not int:
            raise _BadRequest("segment needs an integer id")
        segment = segments.get(sid)
        return segment is not None and person.cio_id in segment.members
    if kind == "attribute":
        if not isinstance(value, dict) or not isinstance(value.get("field"), str) \
                or value.get("operator") not in ("eq", "exists"):
            raise _BadRequest("attribute needs a field and an operator (eq or exists)")
        attrs = person.all_attributes()
        name = value["field"]
        if value["operator"] == "exists":
            return attrs.get(name) is not None
        if "value" not in value:
            raise _BadRequest("attribute with operator eq needs a value")
        return name in attrs and str(attrs[name]) == str(value["value"])
    raise _BadRequest(f"unknown filter {kind!r}")


# -- cursors ------------------------------------------------------------------------------------


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: Optional[str]) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _BadRequest(f"start {cursor!r} is not a cursor from a next field") from None
    kind, _, number = text.partition(":")
    if kind != "offset" or not number.isdigit():
        raise _BadRequest(f"start {cursor!r} is not a cursor from a next field")
    return int(number)


def _page(items: List[Any], start: Optional[str], limit: int) -> Tuple[List[Any], str]:
    offset = _offset(start)
    chunk = items[offset:offset + limit]
    end = offset + len(chunk)
    return chunk, (_cursor(end) if end < len(items) else "")


# -- the routes ----------------------------------------------------------------------------------


class _Ctx:
    """One App API request in progress."""

    def __init__(self, call: Call, record: Request, fault: Any, request: AppRequest) -> None:
        self.call = call
        self.record = record
        self.fault = fault
        self.request = request
        self.query: Dict[str, str] = {}
        self.doc: Any = None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_CUSTOMER = r"/v1/customers/([^/]+)"
_SEGMENT = r"/v1/segments/([^/]+)"


class _Owner(Protocol):
    """What the routes read of their collector."""

    app_api: AppAPIStore


#: (method, path, handler method name)
_ROUTES: List[Tuple[str, str, str]] = [
    ("GET", r"/v1/customers", "_app_get_by_email"),
    ("POST", r"/v1/customers", "_app_search"),
    ("POST", r"/v1/customers/attributes", "_app_by_ids"),
    ("GET", _CUSTOMER + "/attributes", "_app_attributes"),
    ("GET", _CUSTOMER + "/segments", "_app_customer_segments"),
    ("GET", _CUSTOMER + "/messages", "_app_messages"),
    ("GET", _CUSTOMER + "/activities", "_app_activities"),
    ("GET", _CUSTOMER + "/relationships", "_app_relationships"),
    ("GET", _CUSTOMER + "/subscription_preferences", "_app_preferences"),
    ("GET", r"/v1/segments", "_app_segments"),
    ("POST", r"/v1/segments", "_app_create_segment"),
    ("GET", _SEGMENT, "_app_segment"),
    ("DELETE", _SEGMENT, "_app_delete_segment"),
    ("GET", _SEGMENT + "/customer_count", "_app_segment_count"),
    ("GET", _SEGMENT + "/used_by", "_app_segment_used_by"),
    ("GET", _SEGMENT + "/membership", "_app_segment_membership"),
    ("POST", r"/v1/send/(email|push|sms|inbox_message)", "_app_send"),
]


_Found = TypeVar("_Found")
#: A route's handler, as the route table calls it.
_RouteMethod = Callable[["AppAPIRoutes", Call, "re.Match[str]"], None]


def _found(lookup: Callable[[AppAPIRoutes, _Ctx, "re.Match[str]"], Optional[_Found]]
           ) -> Callable[[Callable[[AppAPIRoutes, _Ctx, _Found], None]], _RouteMethod]:
    """Make a route of a handler about one thing the path names (a person, a segment): the
    request's common checks are made (:meth:`AppAPIRoutes._app_begin`) and ``lookup`` finds the
    thing, and the handler is called with it; a failed check or a thing not found is answered
    there (401, 400, 404) and the handler is not called."""

    def decorate(handler: Callable[[AppAPIRoutes, _Ctx, _Found], None]) -> _RouteMethod:
        @functools.wraps(handler)
        def route(self: AppAPIRoutes, call: Call, match: "re.Match[str]") -> None:
            ctx = self._app_begin(call)
            found = None if ctx is None else lookup(self, ctx, match)
            if ctx is not None and found is not None:
                handler(self, ctx, found)

        return route

    return decorate


class AppAPIRoutes:
    """The App API routes (see the module doc) of the collector ``owner`` (its ``app_api``)."""

    API = "App API"

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner

    def routes(self) -> List[Route]:
        return [Route(method, re.compile(path), getattr(self, name), self.API) for method, path, name in _ROUTES]

    # -- common steps -----------------------------------------------------------------------------

    def _app_store(self) -> AppAPIStore:
        return self.owner.app_api

    def _app_begin(self, call: Call, json_body: bool = False) -> Optional[_Ctx]:
        """Faults, auth, query and body checks.  Returns the context, or None when answered."""
        record, fault, answered = call.begin()
        if answered:
            return None
        incoming = call.request
        parsed = parse_qs(incoming.query, keep_blank_values=True)
        request = AppRequest(incoming.method, incoming.path, parsed, 0, None,
                             dict(incoming.header_items), None, record.received_at)
        ctx = _Ctx(call, record, fault, request)
        scheme, key = incoming.authorization()
        if scheme != "bearer" or not key:
            self._app_error(ctx, 401, "missing or malformed Authorization: Bearer <App API key>")
            return None
        store = self._app_store()
        with store.lock:
            known = store.keys is None or key in store.keys
        if not known:
            self._app_error(ctx, 401, "unknown App API key")
            return None
        request.key = key
        ctx.query = {k: v[-1] for k, v in parsed.items()}
        try:
            self._app_check_query(ctx.query)
        except _BadRequest as exc:
            self._app_error(ctx, 400, str(exc))
            return None
        if json_body:
            try:
                ctx.doc = request.body = json.loads(incoming.body or b"null")
            except (ValueError, RecursionError) as exc:
                self._app_error(ctx, 400, f"body is not valid JSON: {exc}")
                return None
            if type(ctx.doc) is not dict:
                self._app_error(ctx, 400, "body must be a JSON object")
                return None
        return ctx

    @staticmethod
    def _app_check_query(query: Dict[str, str]) -> None:
        if "id_type" in query and query["id_type"] not in ID_TYPES:
            raise _BadRequest(f"id_type must be one of {', '.join(ID_TYPES)}")
        for name in ("limit", "start_ts", "end_ts"):
            if name in query and not query[name].isdigit():
                raise _BadRequest(f"{name} must be a non-negative integer")
        if "limit" in query and int(query["limit"]) < 1:
            raise _BadRequest("limit must be at least 1")

    def _app_answer(self, ctx: _Ctx, status: int, doc: Any = None) -> None:
        """Log the request and answer (or drop, under a store-then-drop fault)."""
        ctx.request.status = 0 if ctx.fault is not None else status
        self._app_store().log(ctx.request)
        if ctx.fault is not None:
            ctx.call.drop_stored(ctx.record, str(status), 0)
        body = b"" if doc is None else _dumps(doc)
        if 200 <= status < 300 and ctx.call.request.method != "GET":
            ctx.record.stored = True  # a change was made (sent, created, deleted)
        ctx.call.answer(ctx.record, status, body)

    def _app_error(self, ctx: _Ctx, status: int, detail: str, envelope: str = "errors") -> None:
        code = {400: "bad_request", 401: "unauthorized", 404: "not_found"}.get(status, "error")
        ctx.call.refuse(status, code, detail, 0, ctx.record.received_at)
        doc = ({"meta": {"error": detail}} if envelope == "meta"
               else {"errors": [{"detail": detail, "status": status}]})
        self._app_answer(ctx, status, doc)

    def _app_limit(self, ctx: _Ctx, default: int, maximum: Optional[int] = None) -> Optional[int]:
        limit = int(ctx.query["limit"]) if "limit" in ctx.query else default
        if maximum is not None and limit > maximum:
            self._app_error(ctx, 400, f"limit must be at most {maximum}")
            return None
        return limit

    def _app_paged(self, ctx: _Ctx, key: str, items: List[Any], default: int,
                   maximum: Optional[int] = None, extra: Optional[Dict[str, Any]] = None) -> None:
        limit = self._app_limit(ctx, default, maximum)
        if limit is None:
            return
        try:
            chunk, nxt = _page(items, ctx.query.get("start"), limit)
        except _BadRequest as exc:
            self._app_error(ctx, 400, str(exc))
            return
        doc: Dict[str, Any] = dict(extra or {})
        if key == "identifiers":
            doc["identifiers"] = [p.identifiers() for p in chunk]
            doc["ids"] = [p.id or "" for p in chunk]
        else:
            doc[key] = chunk
        doc["next"] = nxt
        self._app_answer(ctx, 200, doc)

    def _app_person(self, ctx: _Ctx, match: "re.Match[str]") -> Optional[AppCustomer]:
        value = unquote(match.group(1))
        id_type = ctx.query.get("id_type", "id")
        person = self._app_store().find(value, id_type)
        if person is None:
            self._app_error(ctx, 404, f"customer {value!r} ({id_type}) does not exist")
        return person

    def _app_segment_of(self, ctx: _Ctx, match: "re.Match[str]") -> Optional[AppSegment]:
        raw = unquote(match.group(1))
        store = self._app_store()
        with store.lock:
            segment = store.segments.get(int(raw)) if raw.isdigit() else None
        if segment is None:
            self._app_error(ctx, 404, f"segment {raw!r} does not exist")
        return segment

    # -- customers ------------------------------------------------------------------------------

    def _app_get_by_email(self, call: Call, match: "re.Match[str]") -> None:
        ctx = self._app_begin(call)
        if ctx is None:
            return
        email = ctx.query.get("email")
        if not email:
            self._app_error(ctx, 400, "email is required")
            return
        store = self._app_store()
        with store.lock:
            found = [p.identifiers() for p in store.customers if p.email == email]
        self._app_answer(ctx, 200, {"results": found})

    def _app_search(self, call: Call, match: "re.Match[str]") -> None:
        ctx = self._app_begin(call, json_body=True)
        if ctx is None:
            return
        flt = ctx.doc.get("filter")
        if flt is None:
            self._app_error(ctx, 400, "filter is required")
            return
        store = self._app_store()
        try:
            with store.lock:
                people = [p for p in store.customers if _matches(p, flt, store.segments)]
        except _BadRequest as exc:
            self._app_error(ctx, 400, f"invalid filter: {exc}")
            return
        self._app_paged(ctx, "identifiers", people, DEFAULT_LIMIT, MAX_SEARCH_LIMIT)

    def _app_by_ids(self, call: Call, match: "re.Match[str]") -> None:
        ctx = self._app_begin(call, json_body=True)
        if ctx is None:
            return
        ids = ctx.doc.get("ids")
        if type(ids) is not list or not ids or len(ids) > MAX_IDS or any(type(i) is not str or not i for i in ids):
            self._app_error(ctx, 400, f"ids must be an array of 1 to {MAX_IDS} non-empty strings")
            return
        id_type = ctx.query.get("id_type", "id")
        store = self._app_store()
        found = [store.find(value, id_type) for value in ids]
        self._app_answer(ctx, 200, {"customers": [{"customer": p.profile()} for p in found if p is not None]})

    @_found(_app_person)
    def _app_attributes(self, ctx: _Ctx, person: AppCustomer) -> None:
        self._app_answer(ctx, 200, {"customer": person.profile()})

    @_found(_app_person)
    def _app_customer_segments(self, ctx: _Ctx, person: AppCustomer) -> None:
        store = self._app_store()
        with store.lock:
            docs = [s.doc() for s in store.segments.values() if person.cio_id in s.members]
        self._app_answer(ctx, 200, {"segments": docs})

    @_found(_app_person)
    def _app_messages(self, ctx: _Ctx, person: AppCustomer) -> None:
        low = int(ctx.query.get("start_ts") or 0)
        high = int(ctx.query["end_ts"]) if ctx.query.get("end_ts") else None
        items = [m for m in person.messages if m["created"] >= low and (high is None or m["created"] <= high)]
        self._app_paged(ctx, "messages", items, DEFAULT_LIMIT)

    @_found(_app_person)
    def _app_activities(self, ctx: _Ctx, person: AppCustomer) -> None:
        kind, name = ctx.query.get("type"), ctx.query.get("name")
        items = [a for a in person.activities
                 if (not kind or a["type"] == kind) and (not name or a.get("name") == name)]
        self._app_paged(ctx, "activities", items, DEFAULT_LIMIT)

    @_found(_app_person)
    def _app_relationships(self, ctx: _Ctx, person: AppCustomer) -> None:
        self._app_paged(ctx, "cio_relationships", list(person.relationships), DEFAULT_LIMIT)

    @_found(_app_person)
    def _app_preferences(self, ctx: _Ctx, person: AppCustomer) -> None:
        language = ctx.query.get("language") or ctx.call.request.headers.get("accept-language") or "en"
        self._app_answer(ctx, 200, {"customer": {"id": person.id, "identifiers": person.identifiers(),
                                                 "language": language,
                                                 "topics": [dict(t) for t in person.topics]}})

    # -- segments --------------------------------------------------------------------------------

    def _app_segments(self, call: Call, match: "re.Match[str]") -> None:
        ctx = self._app_begin(call)
        if ctx is None:
            return
        store = self._app_store()
        with store.lock:
            docs = [s.doc() for s in store.segments.values()]
        self._app_answer(ctx, 200, {"segments": docs})

    def _app_create_segment(self, call: Call, match: "re.Match[str]") -> None:
        ctx = self._app_begin(call, json_body=True)
        if ctx is None:
            return
        segment = ctx.doc.get("segment")
        name = segment.get("name") if type(segment) is dict else None
        description = segment.get("description", "") if type(segment) is dict else ""
        if type(name) is not str or not name.strip():
            self._app_error(ctx, 400, "segment.name is required")
            return
        if type(description) is not str:
            self._app_error(ctx, 400, "segment.description must be a string")
            return
        created = self._app_store().add_segment(name, description=description)
        created.created_at = created.updated_at = int(time.time())
        self._app_answer(ctx, 200, {"segment": created.doc()})

    @_found(_app_segment_of)
    def _app_segment(self, ctx: _Ctx, segment: AppSegment) -> None:
        self._app_answer(ctx, 200, {"segment": segment.doc()})

    @_found(_app_segment_of)
    def _app_delete_segment(self, ctx: _Ctx, segment: AppSegment) -> None:
        if segment.type != "manual":
            self._app_error(ctx, 400, "only manual segments can be deleted through the API")
            return
        store = self._app_store()
        with store.lock:
            store.segments.pop(segment.id, None)
        self._app_answer(ctx, 204)

    @_found(_app_segment_of)
    def _app_segment_count(self, ctx: _Ctx, segment: AppSegment) -> None:
        self._app_answer(ctx, 200, {"segment_id": segment.id, "count": len(segment.members)})

    @_found(_app_segment_of)
    def _app_segment_used_by(self, ctx: _Ctx, segment: AppSegment) -> None:
        self._app_answer(ctx, 200, {"segment_id": segment.id,
                                    "used_by": {k: list(v) for k, v in segment.used_by.items()}})

    @_found(_app_segment_of)
    def _app_segment_membership(self, ctx: _Ctx, segment: AppSegment) -> None:
        store = self._app_store()
        people = [p for p in (store.by_cio_id(c) for c in segment.members) if p is not None]
        self._app_paged(ctx, "identifiers", people, DEFAULT_MEMBERSHIP_LIMIT, MAX_MEMBERSHIP_LIMIT,
                        {"segment_id": segment.id})

    # -- sends -------------------------------------------------------------------------------------

    @staticmethod
    def _app_send_problem(kind: str, doc: Dict[str, Any], known: Optional[Set[str]]) -> Optional[Tuple[int, str]]:
        ids = doc.get("identifiers")
        if type(ids) is not dict or len(ids) != 1 or next(iter(ids)) not in _PERSON_KEYS:
            return 400, "identifiers must hold exactly one of id, email, cio_id"
        (key, value), = ids.items()
        if not ((type(value) is str and value) or (key == "id" and type(value) is int)):
            return 400, f"identifiers.{key} must be a non-empty string"
        tmid = doc.get("transactional_message_id")
        if tmid is not None and not ((type(tmid) is str and tmid) or type(tmid) is int):
            return 400, "transactional_message_id must be a string or an integer"
        if kind == "email":
            if type(doc.get("to")) is not str or not doc["to"]:
                return 400, "to is required"
            if tmid is None and any(type(doc.get(f)) is not str or not doc[f] for f in ("body", "subject", "from")):
                return 400, "without transactional_message_id, body, subject and from are required"
        elif tmid is None:
            return 400, "transactional_message_id is required"
        if "message_data" in doc and type(doc["message_data"]) is not dict:
            return 400, "message_data must be an object"
        if "send_at" in doc and type(doc["send_at"]) is not int:
            return 400, "send_at must be Unix seconds"
        if tmid is not None and known is not None and str(tmid) not in known:
            return 404, f"transactional message {tmid} does not exist"
        return None

    def _app_send(self, call: Call, match: "re.Match[str]") -> None:
        ctx = self._app_begin(call, json_body=True)
        if ctx is None:
            return
        kind = match.group(1)
        store = self._app_store()
        with store.lock:
            known = None if store.transactional_ids is None else set(store.transactional_ids)
        problem = self._app_send_problem(kind, ctx.doc, known)
        if problem is not None:
            self._app_error(ctx, problem[0], problem[1], envelope="meta")
            return
        sent = SentMessage(kind, ctx.doc, base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode(),
                           int(time.time()), ctx.request.key or "", ctx.record.received_at)
        store.record_send(sent)
        self._app_answer(ctx, 200, {"delivery_id": sent.delivery_id, "queued_at": sent.queued_at})

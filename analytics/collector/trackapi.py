"""The collector's Customer.io Track API routes (v1, ``/api/v2/entity`` and ``/api/v2/batch``).

:class:`TrackAPIRoutes` gives the collector these routes (see
:mod:`.routing`); what they accept is recorded
in a :class:`TrackAPIStore` at ``collector.track_api`` (a new one after
``collector.reset()``, which also forgets its credentials and hooks).

Routes (``{id}`` and ``{device_id}`` are URL-decoded before they are recorded)::

    PUT    /api/v1/customers/{id}                      identify (body: the attributes)
    DELETE /api/v1/customers/{id}                      delete
    POST   /api/v1/customers/{id}/events               track, or page with "type": "page"
    POST   /api/v1/events                              anonymous event
    PUT    /api/v1/customers/{id}/devices              add_device ({"device": {"id", "platform"}})
    DELETE /api/v1/customers/{id}/devices/{device_id}  delete_device
    POST   /api/v1/customers/{id}/suppress             suppress
    POST   /api/v1/customers/{id}/unsuppress           unsuppress
    POST   /api/v1/merge_customers                     merge ({"primary": {...}, "secondary": {...}})
    POST   /api/v2/entity                              one v2 operation
    POST   /api/v2/batch                               {"batch": [operation, ...]}

Checked in this order, after any injected fault (``fail_next``, ``drop_next``,
``store_then_drop_next``, chaos and ``delay`` apply to these routes as to
``/v1/batch``, and each request is logged in ``collector.request_log``):

1. HTTP Basic auth ``site_id:api_key``, both non-empty; when
   :attr:`TrackAPIStore.credentials` is set, the pair must be in it.
   Otherwise 401.
2. ``Content-Encoding: gzip`` is un-gzipped (bad stream: 400; an encoding
   other than gzip or identity: 415).
3. More than 500,000 bytes (after un-gzipping; the library's own limit,
   :attr:`analytics.destinations.trackv2.TrackV2.max_body_bytes`): 413.  The API only says a
   request "must be smaller than 500kb"; the status it answers is not known,
   413 is this collector's choice.
4. The body must be JSON (an empty body counts as ``{}`` on the v1 routes):
   400 otherwise.  v1 bodies are checked as the official clients send them
   (an event needs a ``name``, a device ``device.id`` and ``device.platform``,
   a merge one identifier in each of ``primary`` and ``secondary``): 400.
5. ``/api/v2/batch`` needs a non-empty ``batch`` list (400).  Each item is
   checked on its own: its shape (the rules of :mod:`customerio.v2`,
   re-implemented here independently), its size (at most 32,768 bytes as
   compact UTF-8 JSON) and the test hooks (:meth:`TrackAPIStore.reject_when`,
   :meth:`TrackAPIStore.reject_identifiers`).  Good items are stored; if any
   item failed the answer is **207** ``{"errors": [{"batch_index", "reason",
   "field", "message"}]}`` (or the status in
   :attr:`TrackAPIStore.partial_status`, e.g. 200), else 200 ``{}``.
   ``/api/v2/entity`` answers 400 with the same ``errors`` shape for a bad
   operation, else 200 ``{}``.

Every error body is ``{"errors": [{"reason", "field"?, "message"}]}``
(the shape of the 207 items; the real API's 400/401 bodies are not
documented).  Refusals are also recorded in ``collector.refused``.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Protocol, Set, Tuple
from urllib.parse import unquote

from ..destinations.trackv2 import TrackV2
from .http import BodyError
from .records import Request, RouteLog
from .routing import Call, Route

__all__ = ["TrackAPIRoutes", "TrackAPIStore", "TrackOperation", "TrackRequest", "V1Call"]

#: Largest accepted request body, after un-gzipping.
MAX_BODY_BYTES = TrackV2.max_body_bytes
#: Largest accepted v2 operation, as compact UTF-8 JSON.
MAX_ITEM_BYTES = TrackV2.max_message_bytes

_PERSON_KEYS = ("id", "email", "cio_id", "anonymous_id")
_V1_ID_TYPES = ("id", "email", "cio_id")
_ACTIONS: Dict[str, Set[str]] = {
    "person": {"identify", "delete", "event", "screen", "page", "add_relationships", "delete_relationships",
               "add_device", "delete_device", "merge", "suppress", "unsuppress"},
    "object": {"identify", "identify_anonymous", "delete", "event", "add_relationships", "delete_relationships"},
    "delivery": {"event"},
}

Problem = Tuple[str, str, str]  # (reason, field, message)


@dataclass
class TrackOperation:
    """One accepted v2 operation and the request it came in."""

    operation: Dict[str, Any]
    endpoint: str  #: ``"batch"`` or ``"entity"``
    batch_index: int  #: its index in the request's ``batch`` (0 for entity)
    request: int  #: index of the request in :attr:`TrackAPIStore.requests`
    site_id: str
    raw_size: int  #: the request body's size after un-gzipping
    gzipped: bool
    received_at: float
    duplicate: bool = False  #: an operation with the same ``id`` was accepted before


@dataclass
class V1Call:
    """One accepted v1 call."""

    action: str  #: identify, delete, track, page, track_anonymous, add_device, delete_device,
    #: suppress, unsuppress, merge
    method: str
    path: str
    customer_id: Optional[str]  #: URL-decoded path id (None for /events and /merge_customers)
    device_id: Optional[str]  #: URL-decoded device id of delete_device
    body: Any  #: the parsed JSON body (``{}`` when empty)
    site_id: str
    raw_size: int
    gzipped: bool
    received_at: float


@dataclass
class TrackRequest:
    """One request that reached a Track API route (after injected faults)."""

    method: str
    path: str
    endpoint: str  #: "v1", "entity" or "batch"
    status: int  #: what was answered (0: stored, then dropped by a fault)
    site_id: Optional[str]
    raw_size: int
    compressed_size: Optional[int]
    headers: Dict[str, str]
    received_at: float
    items: int = 0  #: operations in the body (batch) or 1
    stored: int = 0  #: operations or calls stored
    errors: List[Dict[str, Any]] = field(default_factory=list)  #: error items answered


@dataclass
class _Rule:
    predicate: Callable[[Dict[str, Any]], bool]
    reason: str
    field: str
    message: str


class TrackAPIStore(RouteLog[TrackRequest]):
    """What the Track API routes received, and their settings.

    Settings: :attr:`credentials` (``None``: any non-empty site id and API key;
    else a set of accepted ``(site_id, api_key)`` pairs, see :meth:`allow`),
    :attr:`partial_status` (207), and the rejection hooks :meth:`reject_when`
    and :meth:`reject_identifiers`.

    Records (copies, under :attr:`lock`): :attr:`operations` (the accepted v2
    operation dicts), :attr:`accepted` (:class:`TrackOperation` with their
    request), :attr:`v1_calls`, :attr:`requests`, :attr:`item_errors`,
    :attr:`duplicates`, :attr:`unique_ids`, :meth:`by_action`; :meth:`wait_for`
    blocks until enough operations arrived.
    """

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self._changed = threading.Condition(self.lock)
        #: Accepted (site_id, api_key) pairs; None accepts any non-empty pair.
        self.credentials: Optional[Set[Tuple[str, str]]] = None
        #: The status of a batch answer with item errors (207; set 200 to mimic a 200 with ``errors``).
        self.partial_status: int = 207
        self._rules: List[_Rule] = []
        self._accepted: List[TrackOperation] = []
        self._v1: List[V1Call] = []
        self._ids: Set[str] = set()
        self._duplicates = 0

    # -- settings ---------------------------------------------------------------

    def allow(self, site_id: str, api_key: str) -> None:
        """Accept this pair; once one pair is allowed, only allowed pairs are."""
        with self.lock:
            if self.credentials is None:
                self.credentials = set()
            self.credentials.add((site_id, api_key))

    def reject_when(self, predicate: Callable[[Dict[str, Any]], bool], reason: str = "invalid",
                    field: str = "", message: str = "rejected by the collector's test hook") -> None:
        """Refuse every otherwise valid v2 operation for which ``predicate(op)`` is true,
        with this error item (207 in a batch, 400 on /entity)."""
        with self.lock:
            self._rules.append(_Rule(predicate, reason, field, message))

    def reject_identifiers(self, *values: Any, reason: str = "invalid",
                           message: str = "rejected by the collector's test hook") -> None:
        """Refuse operations whose ``identifiers`` (or merge ``primary``/``secondary``) hold
        one of these values (compared as strings), naming the field (``identifiers.id``)."""
        wanted = {str(v) for v in values}
        for key in ("identifiers", "primary", "secondary"):
            for name in _PERSON_KEYS + ("object_id", "cio_object_id"):
                def hit(op: Dict[str, Any], key: str = key, name: str = name) -> bool:
                    ids = op.get(key)
                    return isinstance(ids, dict) and name in ids and str(ids[name]) in wanted
                self.reject_when(hit, reason, f"{key}.{name}", message)

    # -- records -----------------------------------------------------------------

    @property
    def operations(self) -> List[Dict[str, Any]]:
        """Every accepted v2 operation (batch items and entities), in arrival order."""
        with self.lock:
            return [a.operation for a in self._accepted]

    @property
    def accepted(self) -> List[TrackOperation]:
        """Every accepted v2 operation with the request it came in."""
        return self._copy(self._accepted)

    @property
    def v1_calls(self) -> List[V1Call]:
        """Every accepted v1 call, in arrival order."""
        return self._copy(self._v1)

    @property
    def item_errors(self) -> List[Dict[str, Any]]:
        """Every error item answered, with ``request`` (index into :attr:`requests`) added."""
        with self.lock:
            return [dict(e, request=n) for n, r in enumerate(self._requests) for e in r.errors]

    @property
    def duplicates(self) -> int:
        """Accepted operations whose ``id`` had been accepted before."""
        with self.lock:
            return self._duplicates

    @property
    def unique_ids(self) -> Set[str]:
        """The ``id`` of every accepted operation that had one."""
        with self.lock:
            return set(self._ids)

    def by_action(self) -> Dict[str, int]:
        """Accepted operations counted by ``"type/action"`` and v1 calls by ``"v1/action"``."""
        counts: Dict[str, int] = {}
        with self.lock:
            keys = [f"{a.operation['type']}/{a.operation['action']}" for a in self._accepted]
            keys += [f"v1/{c.action}" for c in self._v1]
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        return counts

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` v2 operations were accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._accepted) >= count, timeout)

    # -- called by the routes --------------------------------------------------------

    def allowed(self, site_id: str, api_key: str) -> bool:
        """Whether this pair may send (see :attr:`credentials`)."""
        with self.lock:
            return self.credentials is None or (site_id, api_key) in self.credentials

    def rules(self) -> List[_Rule]:
        """The rejection hooks, a copy."""
        return self._copy(self._rules)

    def add_operations(self, items: List[TrackOperation]) -> None:
        with self._changed:
            for item in items:
                op_id = item.operation.get("id")
                if isinstance(op_id, str):
                    if op_id in self._ids:
                        item.duplicate = True
                        self._duplicates += 1
                    else:
                        self._ids.add(op_id)
                self._accepted.append(item)
            self._changed.notify_all()

    def add_call(self, call: V1Call) -> None:
        with self.lock:
            self._v1.append(call)


# -- the independent v2 shape check -------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _value_problem(value: Any, where: str, ints: bool) -> Optional[Problem]:
    if _empty(value):
        return ("required", where, f"{where} is required")
    if type(value) is str or (ints and type(value) is int):
        return None
    return ("invalid", where, f"{where} must be a string{' or an integer' if ints else ''}")


def _identifiers_problem(ids: Any, kind: str, where: str) -> Optional[Problem]:
    if _empty(ids):
        return ("required", where, f"{where} is required")
    if type(ids) is not dict:
        return ("invalid", where, f"{where} must be an object")
    if kind == "person":
        keys = [k for k in ids if k in _PERSON_KEYS]
        if len(keys) != 1 or len(ids) != 1:
            return ("invalid", where, f"{where} must hold exactly one of {', '.join(_PERSON_KEYS)}")
        return _value_problem(ids[keys[0]], f"{where}.{keys[0]}", keys[0] == "id")
    if kind == "object":
        if set(ids) == {"cio_object_id"}:
            return _value_problem(ids["cio_object_id"], f"{where}.cio_object_id", False)
        if set(ids) != {"object_type_id", "object_id"}:
            return ("invalid", where, f"{where} must be object_type_id and object_id, or cio_object_id")
        return (_value_problem(ids["object_type_id"], f"{where}.object_type_id", True)
                or _value_problem(ids["object_id"], f"{where}.object_id", True))
    if set(ids) != {"id"}:
        return ("invalid", where, f"{where} of a delivery must be {{\"id\": ...}}")
    return _value_problem(ids["id"], f"{where}.id", False)


def operation_problem(op: Any) -> Optional[Problem]:
    """(reason, field, message) for a v2 operation this collector would refuse, or None."""
    if type(op) is not dict:
        return ("invalid", "", "operation must be an object")
    type_, action = op.get("type"), op.get("action")
    if type_ not in _ACTIONS:
        return ("required" if _empty(type_) else "invalid", "type", "type must be person, object or delivery")
    if action not in _ACTIONS[type_]:
        return ("required" if _empty(action) else "invalid", "action", f"action is not valid for a {type_}")
    if action == "merge":
        problem = (_identifiers_problem(op.get("primary"), "person", "primary")
                   or _identifiers_problem(op.get("secondary"), "person", "secondary"))
    else:
        problem = _identifiers_problem(op.get("identifiers"), type_, "identifiers")
    if problem:
        return problem
    if action in ("event", "page", "screen"):
        problem = _value_problem(op.get("name"), "name", False)
    elif action in ("add_device", "delete_device"):
        device = op.get("device")
        if type(device) is not dict:
            return ("required" if _empty(device) else "invalid", "device", "device must be an object")
        problem = _value_problem(device.get("token"), "device.token", False)
        if not problem and action == "add_device" and "platform" in device:
            problem = _value_problem(device["platform"], "device.platform", False)
    if problem:
        return problem
    rels = op.get("cio_relationships")
    if action in ("add_relationships", "delete_relationships", "identify_anonymous") or rels is not None:
        if _empty(rels):
            return ("required", "cio_relationships", "cio_relationships is required")
        if type(rels) is not list:
            return ("invalid", "cio_relationships", "cio_relationships must be a list")
        other = "object" if type_ == "person" else "person"
        for i, rel in enumerate(rels):
            where = f"cio_relationships[{i}]"
            if type(rel) is not dict:
                return ("invalid", where, f"{where} must be an object")
            problem = _identifiers_problem(rel.get("identifiers"), other, f"{where}.identifiers")
            if problem:
                return problem
            if action == "identify_anonymous" and "anonymous_id" not in rel["identifiers"]:
                return ("invalid", f"{where}.identifiers", "identify_anonymous relates an anonymous_id")
            if "relationship_attributes" in rel and type(rel["relationship_attributes"]) is not dict:
                return ("invalid", f"{where}.relationship_attributes", "relationship_attributes must be an object")
    if "attributes" in op and type(op["attributes"]) is not dict:
        return ("invalid", "attributes", "attributes must be an object")
    if "timestamp" in op:
        ts = op["timestamp"]
        if type(ts) not in (int, float) or not math.isfinite(ts) or ts < 0:
            return ("invalid", "timestamp", "timestamp must be Unix seconds")
    if "id" in op:
        return _value_problem(op["id"], "id", False)
    return None


def _item_size(op: Any) -> int:
    return len(json.dumps(op, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _errors_body(errors: List[Dict[str, Any]]) -> bytes:
    return json.dumps({"errors": errors}, separators=(",", ":")).encode()


def _error_item(problem: Problem, index: Optional[int] = None) -> Dict[str, Any]:
    reason, where, message = problem
    item: Dict[str, Any] = {} if index is None else {"batch_index": index}
    item["reason"] = reason
    if where:
        item["field"] = where
    item["message"] = message
    return item



def _event_problem(doc: Dict[str, Any]) -> Optional[Problem]:
    problem = _value_problem(doc.get("name"), "name", False)
    if problem:
        return problem
    if "data" in doc and type(doc["data"]) is not dict:
        return ("invalid", "data", "data must be an object")
    if "type" in doc and doc["type"] not in ("page", "event"):
        return ("invalid", "type", "type must be page or event")
    if "id" in doc:
        problem = _value_problem(doc["id"], "id", False)
        if problem:
            return problem
    ts = doc.get("timestamp")
    if "timestamp" in doc and (type(ts) is not int or ts < 0):
        return ("invalid", "timestamp", "timestamp must be Unix seconds (an integer)")
    return None


def _anonymous_event_problem(doc: Dict[str, Any]) -> Optional[Problem]:
    if "anonymous_id" in doc:
        problem = _value_problem(doc["anonymous_id"], "anonymous_id", False)
        if problem:
            return problem
    return _event_problem(doc)


def _device_problem(doc: Dict[str, Any]) -> Optional[Problem]:
    device = doc.get("device")
    if type(device) is not dict:
        return ("required" if _empty(device) else "invalid", "device", "device must be an object")
    return (_value_problem(device.get("id"), "device.id", False)
            or _value_problem(device.get("platform"), "device.platform", False))


def _merge_problem(doc: Dict[str, Any]) -> Optional[Problem]:
    for side in ("primary", "secondary"):
        ids = doc.get(side)
        if type(ids) is not dict or len(ids) != 1 or next(iter(ids)) not in _V1_ID_TYPES:
            return ("invalid", side, f"{side} must hold exactly one of id, email, cio_id")
        (key, value), = ids.items()
        problem = _value_problem(value, f"{side}.{key}", key == "id")
        if problem:
            return problem
    return None


class _Context:
    """One Track API request in progress."""

    def __init__(self, call: Call, record: Request, fault: Any, endpoint: str) -> None:
        self.call = call
        self.record = record
        self.fault = fault  # None, or the store-then-drop fault
        self.request = TrackRequest(call.request.method, call.request.path, endpoint, 0, None, len(call.request.body),
                                    None, dict(call.request.header_items), record.received_at)
        self.raw_size = len(call.request.body)
        self.gzipped = False


class _Owner(Protocol):
    """What the routes read of their collector."""

    track_api: TrackAPIStore


_V1_CUSTOMER = r"/api/v1/customers/([^/]+)"
Check = Optional[Callable[[Dict[str, Any]], Optional[Problem]]]
#: The v1 routes: (method, path, action, body check).
_V1_ROUTES: List[Tuple[str, str, str, Check]] = [
    ("PUT", _V1_CUSTOMER, "identify", None),
    ("DELETE", _V1_CUSTOMER, "delete", None),
    ("POST", _V1_CUSTOMER + "/events", "track", _event_problem),
    ("POST", r"/api/v1/events", "track_anonymous", _anonymous_event_problem),
    ("PUT", _V1_CUSTOMER + "/devices", "add_device", _device_problem),
    ("DELETE", _V1_CUSTOMER + r"/devices/([^/]+)", "delete_device", None),
    ("POST", _V1_CUSTOMER + "/suppress", "suppress", None),
    ("POST", _V1_CUSTOMER + "/unsuppress", "unsuppress", None),
    ("POST", r"/api/v1/merge_customers", "merge", _merge_problem),
]


class TrackAPIRoutes:
    """The Track API routes (see the module doc) of the collector ``owner`` (its ``track_api``)."""

    API = "Track API"

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner

    def routes(self) -> List[Route]:
        routes = [Route(method, re.compile(path), partial(self.v1, action=action, check=check), self.API)
                  for method, path, action, check in _V1_ROUTES]
        routes.append(Route("POST", re.compile(r"/api/v2/entity"), self.v2_entity, self.API))
        routes.append(Route("POST", re.compile(r"/api/v2/batch"), self.v2_batch, self.API))
        return routes

    # -- common steps ------------------------------------------------------------------

    def _begin(self, call: Call, endpoint: str) -> Tuple[Optional[_Context], Any]:
        """Faults, auth, gzip, size, JSON.  Returns (context, document) or (None, None) when answered."""
        record, fault, answered = call.begin()
        if answered:
            return None, None
        ctx = _Context(call, record, fault, endpoint)
        credentials = call.request.basic_auth()
        if credentials is None or not all(credentials):
            self._refuse(ctx, 401, ("unauthorized", "", "missing or malformed HTTP Basic authorization "
                                                        "(site id and API key)"))
            return None, None
        if not self.owner.track_api.allowed(*credentials):
            self._refuse(ctx, 401, ("unauthorized", "", "unknown site id or API key"))
            return None, None
        ctx.request.site_id = credentials[0]
        ctx.gzipped = call.request.encoding in ("gzip", "x-gzip")
        if ctx.gzipped:
            ctx.request.compressed_size = len(call.request.body)
        try:
            raw, size, _ = call.decoded_body(MAX_BODY_BYTES)
        except BodyError as exc:
            ctx.raw_size = ctx.request.raw_size = exc.raw_size
            self._refuse(ctx, exc.status, ("invalid", "", exc.reason))
            return None, None
        ctx.raw_size = ctx.request.raw_size = size
        if not raw.strip() and endpoint == "v1":
            return ctx, {}
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self._refuse(ctx, 400, ("invalid", "", f"body is not valid JSON: {exc}"))
            return None, None
        return ctx, doc

    def _refuse(self, ctx: _Context, status: int, problem: Problem) -> None:
        """Answer an error status (or drop, under a store-then-drop fault) and record it."""
        call = ctx.call
        call.refuse(status, problem[0], problem[2], ctx.raw_size, ctx.record.received_at)
        ctx.request.errors = [_error_item(problem)]
        ctx.request.status = 0 if ctx.fault is not None else status
        self.owner.track_api.log(ctx.request)
        if ctx.fault is not None:
            call.drop_stored(ctx.record, str(status), ctx.raw_size)
        call.answer(ctx.record, status, _errors_body(ctx.request.errors))

    def _done(self, ctx: _Context, status: int, body: bytes, stored: int, logged: bool = False) -> None:
        """Answer a request whose good part was stored (drop instead under a store-then-drop fault)."""
        ctx.record.stored, ctx.record.messages = stored > 0, stored
        ctx.request.stored = stored
        ctx.request.status = 0 if ctx.fault is not None else status
        if not logged:
            self.owner.track_api.log(ctx.request)
        ctx.call.answer(ctx.record, 0 if ctx.fault is not None else status, body)

    # -- v1 ------------------------------------------------------------------------------

    def v1(self, call: Call, match: "re.Match[str]", action: str, check: Check) -> None:
        """One v1 call: ``{id}`` and ``{device_id}`` are the path's groups, when it has them."""
        ctx, doc = self._begin(call, "v1")
        if ctx is None:
            return
        ctx.request.items = 1
        if type(doc) is not dict:
            self._refuse(ctx, 400, ("invalid", "", "body must be a JSON object"))
            return
        problem = check(doc) if check is not None else None
        if problem is not None:
            self._refuse(ctx, 400, problem)
            return
        if action == "track" and doc.get("type") == "page":
            action = "page"
        ids = [unquote(group) for group in match.groups()] + [None, None]
        self.owner.track_api.add_call(V1Call(
            action, call.request.method, ctx.request.path, ids[0], ids[1],
            doc, ctx.request.site_id or "", ctx.raw_size, ctx.gzipped, ctx.record.received_at,
        ))
        self._done(ctx, 200, b"{}", 1)

    # -- v2 ------------------------------------------------------------------------------

    @staticmethod
    def _item_problem(op: Any, rules: List[_Rule]) -> Optional[Problem]:
        problem = operation_problem(op)
        if problem is not None:
            return problem
        size = _item_size(op)
        if size > MAX_ITEM_BYTES:
            return ("invalid", "", f"operation is {size} bytes, over the {MAX_ITEM_BYTES}-byte limit")
        for rule in rules:
            try:
                hit = rule.predicate(op)
            except Exception:  # a broken test hook must not break the collector
                hit = False
            if hit:
                return (rule.reason, rule.field, rule.message)
        return None

    @staticmethod
    def _accepted(ctx: _Context, op: Dict[str, Any], index: int, number: int) -> TrackOperation:
        return TrackOperation(op, ctx.request.endpoint, index, number, ctx.request.site_id or "",
                              ctx.raw_size, ctx.gzipped, ctx.record.received_at)

    def v2_entity(self, call: Call, match: "re.Match[str]") -> None:
        ctx, doc = self._begin(call, "entity")
        if ctx is None:
            return
        store = self.owner.track_api
        ctx.request.items = 1
        problem = self._item_problem(doc, store.rules())
        if problem is not None:
            self._refuse(ctx, 400, problem)
            return
        number = store.log(ctx.request)
        store.add_operations([self._accepted(ctx, doc, 0, number)])
        self._done(ctx, 200, b"{}", 1, logged=True)

    def v2_batch(self, call: Call, match: "re.Match[str]") -> None:
        ctx, doc = self._begin(call, "batch")
        if ctx is None:
            return
        items = doc.get("batch") if type(doc) is dict else None
        if type(items) is not list:
            self._refuse(ctx, 400, ("required", "batch", "body must be an object with a batch list"))
            return
        if not items:
            self._refuse(ctx, 400, ("required", "batch", "batch cannot be empty"))
            return
        store = self.owner.track_api
        rules = store.rules()
        ctx.request.items = len(items)
        errors: List[Dict[str, Any]] = []
        good: List[Tuple[int, Dict[str, Any]]] = []
        for i, op in enumerate(items):
            problem = self._item_problem(op, rules)
            if problem is None:
                good.append((i, op))
            else:
                errors.append(_error_item(problem, i))
        ctx.request.errors = errors
        number = store.log(ctx.request)
        store.add_operations([self._accepted(ctx, op, i, number) for i, op in good])
        if errors:
            self._done(ctx, store.partial_status, _errors_body(errors), len(good), logged=True)
        else:
            self._done(ctx, 200, b"{}", len(good), logged=True)

"""The collector's Bloomreach Engagement tracking routes (``/track/v2/projects/{token}/...``).

:class:`BloomreachRoutes` gives the collector these routes (see
:mod:`.routing`); what they accept is recorded
in a :class:`BloomreachStore` at ``collector.bloomreach`` (a new, empty one
after ``collector.reset()``, which also forgets its settings).

Routes::

    POST /track/v2/projects/{token}/batch             {"commands": [...]}
    POST /track/v2/projects/{token}/customers         update customer properties
    POST /track/v2/projects/{token}/customers/events  add event
    GET  /track/v2/projects/{token}/system/time       {"success": true, "errors": [], "time": ...}

Checked in this order, as far as the public documentation describes the real API:

1. Faults queued with ``collector.fail_next`` / ``drop_next`` /
   ``store_then_drop_next`` or drawn by ``set_chaos`` apply first, as on
   ``/v1/batch`` (one per request, and ``collector.request_log`` logs every
   request, so ``collector.retry_after_violations()`` works).
2. Auth: ``Authorization: Basic base64(key_id:secret)`` (private access) or
   ``Authorization: Token <api token>`` (public access), or an
   ``access_token=`` URL parameter.  Missing or malformed, or not among the
   ones set with :meth:`BloomreachStore.require` (by default any non-empty
   credentials pass): **401** ``{"success": false, "message": ...}``.
3. The project token: by default any is accepted; after
   ``require(projects=...)`` another is answered **404** ``{"success":
   false, "message": "Project not found"}`` (this collector's choice: the
   documentation does not say what an unknown project gets).
4. ``Content-Encoding: gzip`` is un-gzipped (a bad stream: 400; other
   encodings but ``identity``: 415).
5. The body must be JSON: otherwise **400** ``{"success": false, "message":
   "Invalid JSON"}``.  A batch needs a ``commands`` list of 1 to 50 items,
   otherwise the whole request is refused with **400**.
6. Each batch command is checked on its own (:func:`command_problems`): a
   known ``name`` (``customers``, ``customers/events``, ``system/time``), a
   ``data`` object, non-empty ``customer_ids`` of string values,
   ``event_type`` for events, numbers (or ISO strings) as timestamps, the
   encoded command smaller than 800,000 bytes and each property value
   smaller than 16,000 bytes (compact UTF-8 JSON), then the test hooks
   added with :meth:`BloomreachStore.reject_when`.  A bad command gets
   ``{"success": false, "errors": [...]}`` in its place in ``results``, the
   others are stored and get ``{"success": true}`` (``system/time`` also
   ``"time"``); every result echoes the command's ``command_id`` when it has
   one.  The answer is **200** ``{"results": [...], "start_time": ...,
   "end_time": ..., "success": true}``.
7. The single routes check their body as a batch command's ``data``: a
   problem is answered **400** ``{"success": false, "errors": [...]}``; a
   :meth:`~BloomreachStore.reject_when` hook refusing it is answered
   **200** ``{"success": false, "errors": [...]}`` (the documented "200 with
   success false"); otherwise **200** ``{"success": true}``.

A request answered 4xx or 5xx is also recorded in ``collector.refused`` (by
the collector's handler, with the answer's message as the reason), and, with
``keep_messages``, as it was received in ``collector.exchanges()``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Protocol, Set, Tuple, Union
from urllib.parse import parse_qs, unquote

from .http import BodyError, json_bytes
from .records import RouteLog
from .routing import Call, Drop, Route

__all__ = [
    "BloomreachRoutes",
    "BloomreachStore",
    "BloomreachCommand",
    "BloomreachRejection",
    "BloomreachRequest",
    "command_problems",
    "MAX_COMMANDS",
    "MAX_COMMAND_BYTES",
    "MAX_PROPERTY_BYTES",
]

logger = logging.getLogger("customerio.collector")

#: The most commands in one batch request.
MAX_COMMANDS = 50
#: A command, as compact UTF-8 JSON, must be smaller than this.
MAX_COMMAND_BYTES = 800_000
#: A property value, as compact UTF-8 JSON, must be smaller than this.
MAX_PROPERTY_BYTES = 16_000
#: Un-gzipped bodies larger than this are refused with 413.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Bodies larger than this on the wire are refused with 413 (50 commands just under the limit fit).
MAX_WIRE_BYTES = MAX_COMMANDS * MAX_COMMAND_BYTES + 64 * 1024

_NAMES = ("customers", "customers/events", "system/time")
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

Verdict = Union[None, bool, str, Iterable[str]]
Predicate = Callable[[Dict[str, Any]], Verdict]


def _size(value: Any) -> int:
    return len(_compact(value).encode("utf-8", "surrogatepass"))


@dataclass
class BloomreachCommand:
    """One accepted command (from a batch, or a single route's body as ``data``)."""

    name: str  #: ``customers``, ``customers/events`` or ``system/time``
    data: Dict[str, Any]
    command_id: Optional[str]
    project: str  #: the project token of the URL
    auth: str  #: ``"basic"`` or ``"token"``
    principal: str  #: the API key id (basic) or the API token (never the secret)
    route: str  #: ``"batch"``, ``"customers"`` or ``"customers/events"``
    position: int  #: index in the request's ``commands`` (0 on a single route)
    request: int  #: index of the request in :attr:`BloomreachStore.requests`
    received_at: float


@dataclass
class BloomreachRejection:
    """A command answered ``success: false`` (the request itself was answered 200 or 400)."""

    command: Any  #: the command as received
    errors: List[str]
    position: int
    request: int
    by_hook: bool  #: refused by a :meth:`BloomreachStore.reject_when` hook


@dataclass
class BloomreachRequest:
    """One request to a Bloomreach route, as answered (``status`` 0: dropped)."""

    method: str
    path: str
    route: str  #: ``"batch"``, ``"customers"``, ``"customers/events"`` or ``"system/time"``
    project: str
    status: int
    received_at: float
    auth: Optional[str] = None  #: ``"basic"``, ``"token"`` or None when missing/malformed
    principal: Optional[str] = None
    commands: int = 0  #: commands in the body (1 on the single routes)
    accepted: int = 0
    rejected: int = 0
    fault: bool = False  #: an injected fault decided the answer (or dropped it after storing)
    gzipped: bool = False
    raw_size: int = 0  #: body bytes after un-gzipping
    headers: Dict[str, str] = field(default_factory=dict)  #: lower-cased names
    body: Any = None  #: the parsed JSON body, when it was JSON
    answer: Any = None  #: the JSON answered (None for a fault or a drop)


def command_problems(cmd: Any) -> List[str]:
    """What is wrong with one batch command (an empty list when it is valid); sizes included."""
    if not isinstance(cmd, dict):
        return ["Command must be an object."]
    name = cmd.get("name")
    if name not in _NAMES:
        return [f"Unknown command name {name!r}."]
    cid = cmd.get("command_id")
    if cid is not None and not isinstance(cid, str):
        return ["Field 'command_id' must be a string."]
    if name == "system/time":
        return []
    data = cmd.get("data")
    if not isinstance(data, dict):
        return ["Field 'data' is required and must be an object."]
    problems = data_problems(name, data)
    if not problems:
        problems = _size_problems(cmd, data)
    return problems


def data_problems(name: str, data: Any) -> List[str]:
    """What is wrong with the ``data`` of a ``customers`` or ``customers/events`` command (sizes aside)."""
    if not isinstance(data, dict):
        return ["Body must be a JSON object."]
    errors: List[str] = []
    ids = data.get("customer_ids")
    if not isinstance(ids, dict) or not ids:
        errors.append("At least one id should be specified.")
    else:
        for key, value in ids.items():
            if not isinstance(value, str) or not value:
                errors.append(f"Customer id '{key}' must be a non-empty string.")
    props = data.get("properties")
    if props is not None and not isinstance(props, dict):
        errors.append("Field 'properties' must be an object.")
    if name == "customers/events":
        event_type = data.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            errors.append("Field 'event_type' is required.")
        stamp_key = "timestamp"
    else:
        stamp_key = "update_timestamp"
    stamp = data.get(stamp_key)
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, float, str))):
        errors.append(f"Field '{stamp_key}' must be a number.")
    return errors


def _size_problems(whole: Any, data: Dict[str, Any]) -> List[str]:
    size = _size(whole)
    if size >= MAX_COMMAND_BYTES:
        return [f"Command is too large: {size} bytes (must be less than {MAX_COMMAND_BYTES})."]
    props = data.get("properties")
    if size >= MAX_PROPERTY_BYTES and isinstance(props, dict):
        for key, value in props.items():
            psize = _size(value)
            if psize >= MAX_PROPERTY_BYTES:
                return [f"Value of property '{key}' is too long: {psize} bytes (must be less than {MAX_PROPERTY_BYTES})."]
    return []


def _verdict_errors(verdict: Verdict) -> List[str]:
    if not verdict:
        return []
    if verdict is True:
        return ["Rejected by the collector's reject_when hook."]
    if isinstance(verdict, str):
        return [verdict]
    return [str(e) for e in verdict] or ["Rejected by the collector's reject_when hook."]


class BloomreachStore(RouteLog[BloomreachRequest]):
    """What the Bloomreach routes received, and how they should behave.

    Settings: :meth:`require` (accepted projects and credentials) and
    :meth:`reject_when` (make chosen commands fail).  Records (copies, safe
    to read from any thread): :attr:`commands`, :attr:`events`,
    :attr:`customers`, :attr:`rejected`, :attr:`requests` (injected faults
    included; each recorded just before its answer is written),
    :attr:`command_ids`, :attr:`duplicates`; :meth:`wait_for` blocks until
    commands have arrived.  Everything is guarded by :attr:`lock`.
    """

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self._changed = threading.Condition(self.lock)
        #: Accepted project tokens; None: any.
        self.projects: Optional[FrozenSet[str]] = None
        #: Accepted (key id, secret) pairs for Basic auth; None: any non-empty pair.
        self.credentials: Optional[FrozenSet[Tuple[str, str]]] = None
        #: Accepted API tokens for Token auth; None: any non-empty token.
        self.api_tokens: Optional[FrozenSet[str]] = None
        self._rules: List[Predicate] = []
        self._commands: List[BloomreachCommand] = []
        self._rejected: List[BloomreachRejection] = []
        self._ids: Set[str] = set()
        self._duplicates = 0

    # -- settings -----------------------------------------------------------------

    def require(
        self,
        *,
        projects: Optional[Iterable[str]] = None,
        credentials: Optional[Iterable[Tuple[str, str]]] = None,
        api_tokens: Optional[Iterable[str]] = None,
    ) -> None:
        """Accept only these project tokens / (key id, secret) pairs / API tokens.

        An argument left None keeps accepting anything of that kind; an empty
        one refuses every request of that kind (``api_tokens=()``: Basic only).
        """
        with self.lock:
            if projects is not None:
                self.projects = frozenset(projects)
            if credentials is not None:
                self.credentials = frozenset((str(k), str(s)) for k, s in credentials)
            if api_tokens is not None:
                self.api_tokens = frozenset(api_tokens)

    def reject_when(self, predicate: Predicate) -> None:
        """Make commands fail on purpose: ``predicate(command)`` is called for
        each command that passed the checks (a single route's body comes as
        ``{"name": route, "data": body}``).  A true value refuses it: a string
        or a list of strings are its error texts, ``True`` a default text.
        Hooks add up; :meth:`clear_rejections` removes them.
        """
        with self.lock:
            self._rules.append(predicate)

    def clear_rejections(self) -> None:
        """Remove every :meth:`reject_when` hook."""
        with self.lock:
            self._rules.clear()

    # -- records --------------------------------------------------------------------

    @property
    def commands(self) -> List[BloomreachCommand]:
        """Every accepted command, in arrival order."""
        return self._copy(self._commands)

    @property
    def events(self) -> List[Dict[str, Any]]:
        """The ``data`` of every accepted ``customers/events`` command, in arrival order."""
        with self.lock:
            return [c.data for c in self._commands if c.name == "customers/events"]

    @property
    def customers(self) -> List[Dict[str, Any]]:
        """The ``data`` of every accepted ``customers`` command, in arrival order."""
        with self.lock:
            return [c.data for c in self._commands if c.name == "customers"]

    @property
    def rejected(self) -> List[BloomreachRejection]:
        """Every command answered ``success: false``, in arrival order."""
        return self._copy(self._rejected)

    @property
    def command_ids(self) -> Set[str]:
        """The command_ids of the accepted commands that had one."""
        with self.lock:
            return set(self._ids)

    @property
    def duplicates(self) -> int:
        """Accepted commands whose command_id had been accepted before."""
        with self.lock:
            return self._duplicates

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` commands have been accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._commands) >= count, timeout)

    # -- called by the routes -------------------------------------------------------

    def allowed(self, kind: str, principal: str, secret: str) -> bool:
        """Whether these credentials may send (``kind`` "basic" or "token"; see :meth:`require`)."""
        with self.lock:
            if kind == "basic":
                return self.credentials is None or (principal, secret) in self.credentials
            return self.api_tokens is None or principal in self.api_tokens

    def known_project(self, project: str) -> bool:
        """Whether requests for this project token are accepted."""
        with self.lock:
            return self.projects is None or project in self.projects

    def hook_errors(self, command: Dict[str, Any]) -> List[str]:
        """The errors the first :meth:`reject_when` hook refusing ``command`` gives, or []."""
        for rule in self._copy(self._rules):
            errors = _verdict_errors(rule(command))
            if errors:
                return errors
        return []

    def record(
        self,
        request: BloomreachRequest,
        accepted: List[BloomreachCommand],
        rejected: List[BloomreachRejection],
    ) -> None:
        """Record a request and the commands it had accepted and rejected."""
        with self._changed:
            index = len(self._requests)
            self._requests.append(request)
            for cmd in accepted:
                cmd.request = index
                if cmd.command_id is not None:
                    if cmd.command_id in self._ids:
                        self._duplicates += 1
                    else:
                        self._ids.add(cmd.command_id)
            for rej in rejected:
                rej.request = index
            self._commands.extend(accepted)
            self._rejected.extend(rejected)
            if accepted:
                self._changed.notify_all()


_PROJECT = r"/track/v2/projects/(?P<token>[^/]+)"


class _Refused(Exception):
    """A whole request refused: status and JSON answer."""

    def __init__(self, status: int, answer: Dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer


def _message(text: str) -> Dict[str, Any]:
    return {"success": False, "message": text}


class _Owner(Protocol):
    """What the routes read of their collector."""

    bloomreach: BloomreachStore


#: The routes: (method, path under the project, route name).
_ROUTES = [
    ("POST", "/batch", "batch"),
    ("POST", "/customers", "customers"),
    ("POST", "/customers/events", "customers/events"),
    ("GET", "/system/time", "system/time"),
]


class _Work:
    """One request in progress: what it accepted and rejected so far."""

    def __init__(self, store: BloomreachStore, req: BloomreachRequest) -> None:
        self.store = store
        self.req = req
        self.accepted: List[BloomreachCommand] = []
        self.rejected: List[BloomreachRejection] = []
        self.kind = ""
        self.principal = ""

    def accept(self, name: str, data: Dict[str, Any], command_id: Optional[str], position: int) -> None:
        req = self.req
        self.accepted.append(BloomreachCommand(name, data, command_id, req.project, self.kind, self.principal,
                                               req.route, position, -1, req.received_at))


def _credentials(call: Call) -> Tuple[Optional[str], Optional[str], str]:
    """(kind, principal, secret) from the Authorization header or ``access_token``; kind None if absent."""
    scheme, value = call.request.authorization()
    if scheme:
        if scheme == "basic":
            pair = call.request.basic_auth()
            if pair is None or not all(pair):
                return None, None, ""
            return "basic", pair[0], pair[1]
        if scheme == "token" and value:
            return "token", value, ""
        return None, None, ""
    tokens = parse_qs(call.request.query).get("access_token")
    if tokens and tokens[-1]:
        return "token", tokens[-1], ""
    return None, None, ""


class BloomreachRoutes:
    """The Bloomreach routes (see the module docstring) of the collector ``owner`` (its ``bloomreach``)."""

    API = "Bloomreach"

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner

    def routes(self) -> List[Route]:
        return [Route(method, re.compile(_PROJECT + re.escape(tail)), partial(self.handle, route=name), self.API,
                      max_wire_bytes=MAX_WIRE_BYTES)
                for method, tail, name in _ROUTES]

    def handle(self, call: Call, match: "re.Match[str]", route: str) -> None:
        store = self.owner.bloomreach
        request = call.request
        req = BloomreachRequest(method=request.method, path=request.path, route=route,
                                project=unquote(match.group("token")), status=0, received_at=time.time(),
                                raw_size=len(request.body), headers=dict(request.headers))
        try:
            record, fault, answered = call.begin()
        except Drop:  # a "drop" fault: the connection is reset unanswered
            req.fault = True
            store.record(req, [], [])
            raise
        req.status, req.received_at, req.fault = record.status, record.received_at, fault is not None
        if answered:
            store.record(req, [], [])
            return
        work = _Work(store, req)
        try:
            status, answer = self._process(call, work)
        except _Refused as refusal:
            status, answer = refusal.status, refusal.answer
        req.accepted, req.rejected = len(work.accepted), len(work.rejected)
        record.stored, record.messages = bool(work.accepted), len(work.accepted)
        if fault is not None:  # store then drop
            req.status = 0
            store.record(req, work.accepted, work.rejected)
            call.answer(record, 0)
            return
        req.status, req.answer = status, answer
        store.record(req, work.accepted, work.rejected)
        if logger.isEnabledFor(logging.DEBUG) and status != 200:
            logger.debug("bloomreach %s refused: %d %s", route, status, answer)
        call.answer(record, status, json_bytes(answer))

    def _process(self, call: Call, work: _Work) -> Tuple[int, Dict[str, Any]]:
        """Auth, project, body; then the command(s).  Raises _Refused for a whole request refused."""
        req, store = work.req, work.store
        kind, principal, secret = _credentials(call)
        req.auth, req.principal = kind, principal
        if kind is None:
            raise _Refused(401, _message("Missing or malformed authorization: use Basic or Token."))
        if principal is None or not store.allowed(kind, principal, secret):
            raise _Refused(401, _message("Unauthorized: unknown credentials."))
        work.kind, work.principal = kind, principal
        if not store.known_project(req.project):
            raise _Refused(404, _message("Project not found."))
        if req.route == "system/time":
            return 200, {"success": True, "errors": [], "time": time.time()}
        req.gzipped = call.request.encoding in ("gzip", "x-gzip")
        try:
            raw, req.raw_size, _ = call.decoded_body(MAX_BODY_BYTES)
        except BodyError as exc:
            raise _Refused(exc.status, _message(exc.reason[:1].upper() + exc.reason[1:] + ".")) from None
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            raise _Refused(400, _message("Invalid JSON")) from None
        req.body = doc
        if req.route != "batch":  # a single route: the body is the command's data
            return self._single(work, doc)
        return self._batch(work, doc)

    @staticmethod
    def _single(work: _Work, doc: Any) -> Tuple[int, Dict[str, Any]]:
        route = work.req.route
        work.req.commands = 1
        errors = data_problems(route, doc)
        if not errors:
            errors = _size_problems(doc, doc)
        if errors:
            work.rejected.append(BloomreachRejection(doc, errors, 0, -1, False))
            return 400, {"success": False, "errors": errors}
        errors = work.store.hook_errors({"name": route, "data": doc})
        if errors:
            work.rejected.append(BloomreachRejection(doc, errors, 0, -1, True))
            return 200, {"success": False, "errors": errors}
        work.accept(route, doc, None, 0)
        return 200, {"success": True}

    @staticmethod
    def _batch(work: _Work, doc: Any) -> Tuple[int, Dict[str, Any]]:
        start_time = time.time()
        commands = doc.get("commands") if isinstance(doc, dict) else None
        if not isinstance(commands, list):
            raise _Refused(400, _message("Field 'commands' is required and must be a list."))
        work.req.commands = len(commands)
        if not commands:
            raise _Refused(400, _message("At least one command is required."))
        if len(commands) > MAX_COMMANDS:
            raise _Refused(400, _message(f"Too many commands: {len(commands)} (at most {MAX_COMMANDS})."))
        results: List[Dict[str, Any]] = []
        for position, cmd in enumerate(commands):
            by_hook = False
            errors = command_problems(cmd)
            if not errors:
                errors = work.store.hook_errors(cmd)
                by_hook = bool(errors)
            cid = cmd.get("command_id") if isinstance(cmd, dict) else None
            result: Dict[str, Any]
            if errors:
                work.rejected.append(BloomreachRejection(cmd, errors, position, -1, by_hook))
                result = {"success": False, "errors": errors}
            else:
                name = cmd["name"]
                data = cmd.get("data")
                work.accept(name, data if isinstance(data, dict) else {}, cid, position)
                result = {"success": True}
                if name == "system/time":
                    result["time"] = time.time()
            if isinstance(cid, str):
                result["command_id"] = cid
            results.append(result)
        return 200, {"results": results, "start_time": start_time, "end_time": time.time(), "success": True}

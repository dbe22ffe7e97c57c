"""What an API route is given: one :class:`Call` per request, and the :class:`Route` table.

A route is a function ``handle(call, match)``: ``call.request`` is the parsed
request (body as on the wire, see :mod:`.http`), ``match`` its path's match.
Through the call a route applies the injected faults (:meth:`Call.begin`),
records refusals (:meth:`Call.refuse`) and answers (:meth:`Call.answer`, one
write; status 0 resets the connection).  The call also keeps the request as an
:class:`~analytics.collector.records.Exchange` when it is answered.  The
server (:mod:`.server`) reads requests, finds routes and makes the calls.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Pattern, Sequence, Tuple

from .faults import Fault, FaultQueue, parse_retry_after
from .http import ParsedRequest, decode_body
from .records import MAX_KEPT_ANSWER, Exchange, Records, Refusal, Request, answer_reason

__all__ = ["Call", "Drop", "Route", "RouteTable", "Writer", "fixed"]

#: The code a refusal is recorded with when its answer names none.
_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                413: "payload_too_large", 415: "unsupported_encoding"}

#: Writes one answer: (status, body, headers, content type); raises OSError.
Writer = Callable[[int, bytes, Sequence[Tuple[str, str]], str], None]


class Drop(Exception):
    """Raised through a route to reset the connection without answering (an injected fault)."""


class Call:
    """One request being answered by a route."""

    def __init__(self, request: ParsedRequest, records: Records, faults: FaultQueue, delay: float,
                 write: Writer) -> None:
        self.request = request
        self.records = records
        self.faults = faults
        self.delay = delay
        self.write = write
        #: A request to an API (or to no route): a 4xx/5xx answer is recorded as a refusal.
        self.api_request = False
        #: A refusal was recorded for this request.
        self.refused = False
        #: Kept when answered (keep_messages only).
        self.exchange: Optional[Exchange] = None
        #: Counted in flight (see :meth:`landed`).
        self.in_flight = False
        #: The socket it arrived on, when there is one (an outage keeps it open until the answer is out).
        self.connection: Optional[socket.socket] = None

    # -- the steps of an API request ------------------------------------------------------

    def begin(self, faults: bool = True) -> Tuple[Request, Optional[Fault], bool]:
        """Count the request (in flight until :meth:`landed`), apply ``delay`` and the next fault.

        Returns ``(record, fault, answered)``.  ``answered`` is True when an
        injected failure was sent (the route must not answer again).  A "drop"
        fault resets the connection at once (raises :class:`Drop`); a "store
        then drop" fault is returned so the route can store the request and
        then call :meth:`drop_stored` instead of answering.
        """
        received_at = time.time()
        record = Request(received_at)
        self.records.begin(enter=not self.in_flight)
        self.in_flight = True
        fault = self.faults.next() if faults else None
        record.fault = fault is not None
        if self.delay > 0:
            time.sleep(self.delay)
        size = len(self.request.body)
        if fault is not None and fault.kind == "fail":
            self.refuse(fault.status, "fault", f"injected {fault.status}", size, received_at)
            if fault.retry_after is not None:  # noted before answering: the client may be quick
                record.retry_until = parse_retry_after(fault.retry_after)
                if record.retry_until is not None:
                    self.records.note_retry_after(record.retry_until)
                record.retry_after = str(fault.retry_after)
            self.answer(record, fault.status, fault.body, fault.headers, fault.content_type)
            return record, fault, True
        if fault is not None and fault.kind == "drop":
            self.refuse(0, "fault", "connection dropped", size, received_at)
            self.answer(record, 0)
        return record, fault, False

    def decoded_body(self, limit: int) -> Tuple[bytes, int, Optional[int]]:
        """The body un-gzipped (see :func:`.http.decode_body`); raises :class:`.http.BodyError`."""
        return decode_body(self.request.body, self.request.encoding, limit)

    def refuse(self, status: int, code: str, reason: str, raw_size: int, received_at: Optional[float] = None) -> None:
        """Record this request as refused (``status`` 0: dropped)."""
        self.refused = True
        exchange = self.exchange
        if exchange is not None and (exchange.reason is None or (exchange.code == "fault" and code != "fault")):
            exchange.code, exchange.reason = code, reason
        self.records.refuse(Refusal(status, code, reason, time.time() if received_at is None else received_at,
                                    raw_size, self.request.method, self.request.path,
                                    None if exchange is None else exchange.id))

    def answer(self, record: Request, status: int, body: bytes = b"", headers: Sequence[Tuple[str, str]] = (),
               content_type: str = "application/json") -> None:
        """Log ``record`` and answer with ``status``; status 0 resets the connection (raises :class:`Drop`)."""
        self.keep(status, body)  # first: between the log and the write as little as before
        record.answered_at = time.time()
        record.status = status
        self.records.log_request(record)
        # no longer in flight once the client can see the answer: its next request (say, for
        # /_collector/stats) must not find this one still counted
        self.landed()
        if status == 0:
            raise Drop
        try:
            self.write(status, body, headers, content_type)
        except OSError:
            self.records.unanswered(record)  # e.g. the collector went down meanwhile
            raise

    def drop_stored(self, record: Request, would: str, raw_size: int) -> None:
        """Under a store-then-drop fault: record the drop, then reset instead of answering ``would``."""
        self.refuse(0, "fault", f"connection dropped; would have answered {would}", raw_size, record.received_at)
        self.answer(record, 0)

    def send(self, status: int, body: bytes, headers: Sequence[Tuple[str, str]] = (),
             content_type: str = "application/json") -> None:
        """Answer without a request log entry (control routes, pages, refusals before any route)."""
        self.keep(status, body)
        self.landed()
        self.write(status, body, headers, content_type)

    def keep(self, status: int, answer: bytes) -> None:
        """Keep the request being answered (see Exchange), once, before its answer leaves.

        An API request answered 4xx or 5xx that its route did not record as refused
        (Bloomreach's routes answer their refusals themselves) is recorded here, so
        every API's refusals are in ``collector.refused``.
        """
        if status >= 400 and self.api_request and not self.refused:
            code = _ERROR_CODES.get(status, "error")
            try:
                doc = json.loads(answer[:MAX_KEPT_ANSWER]) if answer else None
                if isinstance(doc, dict) and isinstance(doc.get("code"), str):
                    code = doc["code"]
            except ValueError:
                pass
            self.refuse(status, code, answer_reason(status, answer) or f"answered {status}", len(self.request.body))
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            self.records.close_exchange(exchange, status, answer, self.request.body, self.request.encoding)

    def landed(self) -> None:
        """The request is answered, dropped or abandoned: it is no longer in flight."""
        if self.in_flight:
            self.in_flight = False
            self.records.landed()


#: A route's function.
Handler = Callable[[Call, "re.Match[str]"], None]


@dataclass(frozen=True)
class Route:
    """``method`` requests whose path matches ``path`` (in full) go to ``handle``."""

    method: str
    path: Pattern[str]
    handle: Handler
    api: Optional[str] = None  #: the API it belongs to (one of API_NAMES), None for control and page routes
    #: Bodies up to this size on the wire are read (0: the collector's ``max_body_bytes``; never less).
    max_wire_bytes: int = 0
    #: A fixed path: another method on it is answered 405 (else 404).
    exact: bool = False


def fixed(method: str, path: str, handle: Handler, api: Optional[str] = None) -> Route:
    """A route for one literal path."""
    return Route(method, re.compile(re.escape(path)), handle, api, exact=True)


class RouteTable:
    """The routes of one collector, tried in order."""

    def __init__(self, routes: Sequence[Route] = ()) -> None:
        self._routes: List[Route] = list(routes)

    def add(self, route: Route) -> None:
        self._routes.insert(0, route)

    def find(self, method: str, path: str) -> Tuple[Optional[Route], Optional["re.Match[str]"], List[str]]:
        """(route, match, []) or, when none serves ``method`` there, (None, None, methods allowed on the path)."""
        allowed: List[str] = []
        for route in self._routes:
            match = route.path.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match, []
            if route.exact:
                allowed.append(route.method)
        return None, None, allowed

    def api_of(self, path: str) -> Optional[str]:
        """Which API a request path belongs to, whatever its method; None for none."""
        for route in self._routes:
            if route.api is not None and route.path.fullmatch(path):
                return route.api
        return None


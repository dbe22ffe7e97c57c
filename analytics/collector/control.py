"""The collector's own routes: control (``/_collector/...``) and the inspector page.

No auth, so a collector in another process can be driven; a
``POST`` needs ``Content-Type: application/json`` and no ``Origin`` header but
the collector's own (403 ``forbidden`` otherwise: no web page can post to them)::

    GET  /_collector/stats              -> Collector.stats()
    GET  /_collector/messages?since=N   -> accepted messages from index N (409 unless keep_messages)
    POST /_collector/reset              -> Collector.reset()
    POST /_collector/faults             -> Collector.apply_faults(body), e.g.
         {"fail_next": {"n": 2, "status": 503, "retry_after": 1}}
         {"drop_next": {"n": 1}}  {"store_then_drop_next": {"n": 1}}  {"delay": 0.2}
         {"chaos": {"fail_rate": 0.2, "drop_rate": 0.05, "seed": 1}}
         {"outage": 5}   (seconds; answered first, then the port refuses connections)

The inspector page (``GET /``) and what it reads are answered by
:mod:`.inspector`.  None of these requests is counted or kept as an exchange.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any, Dict, List, Mapping, Optional, Protocol, Tuple
from urllib.parse import parse_qs

from . import inspector
from .http import OK_BODY, ParsedRequest, error_body, json_bytes
from .routing import Call, Route, fixed

__all__ = ["ControlRoutes", "CONTROL_PREFIX", "PAGE_PATHS", "cross_site"]

CONTROL_PREFIX = "/_collector/"
#: The inspector page's own paths (not API requests: not kept as exchanges).
PAGE_PATHS = frozenset({"/", "/inspector", "/favicon.ico"})
_INSPECTOR_DATA = ("events", "event", "batches", "refusals", "requests", "request", "batch")


class _Owner(Protocol):
    """What the control routes drive (a :class:`~analytics.collector.Collector`)."""

    def stats(self) -> Dict[str, Any]: ...

    def reset(self) -> None: ...

    def apply_faults(self, spec: Mapping[str, Any], keep: Optional[socket.socket] = None) -> None: ...


def cross_site(request: ParsedRequest) -> Optional[Tuple[int, str, str]]:
    """Why a state-changing control request may come from another site (403), or None.

    A browser sends a form or a script's "simple" request cross-site without
    asking, but never with ``Content-Type: application/json``, and always with
    its page's ``Origin``.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin.strip().lower() != "http://" + request.headers.get("host", "").strip().lower():
        return 403, "forbidden", f"Origin {origin[:100]!r} is not this collector's"
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        return 403, "forbidden", "control requests must be sent with Content-Type: application/json"
    return None


class ControlRoutes:
    """The control routes and the inspector's of the collector ``owner``."""

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner

    def routes(self) -> List[Route]:
        routes = [
            fixed("GET", CONTROL_PREFIX + "stats", self.get_stats),
            fixed("GET", CONTROL_PREFIX + "messages", self.get_messages),
            fixed("POST", CONTROL_PREFIX + "reset", self.post_reset),
            fixed("POST", CONTROL_PREFIX + "faults", self.post_faults),
            fixed("GET", "/", self.get_page),
            fixed("GET", "/inspector", self.get_page),
            fixed("GET", "/favicon.ico", self.get_favicon),  # browsers ask; not a refusal worth recording
            fixed("GET", CONTROL_PREFIX + "export", self.get_export),
        ]
        routes += [fixed("GET", CONTROL_PREFIX + what, self.get_data) for what in _INSPECTOR_DATA]
        routes += [fixed("GET", f"{CONTROL_PREFIX}static/{name}", self.get_static) for name in inspector.STATIC_FILES]
        return routes

    def get_stats(self, call: Call, match: "re.Match[str]") -> None:
        call.send(200, json_bytes(self.owner.stats()))

    def get_messages(self, call: Call, match: "re.Match[str]") -> None:
        if not call.records.keep_messages:
            call.send(409, error_body("not_kept", "this collector runs with keep_messages=False"))
            return
        values = parse_qs(call.request.query).get("since", ["0"])
        try:
            since = int(values[-1])
            if since < 0:
                raise ValueError
        except ValueError:
            call.send(400, error_body("bad_request", "since must be an integer >= 0"))
            return
        call.send(200, call.records.messages_json(since))

    def post_reset(self, call: Call, match: "re.Match[str]") -> None:
        self.owner.reset()
        call.send(200, OK_BODY)

    def post_faults(self, call: Call, match: "re.Match[str]") -> None:
        try:
            spec = json.loads(call.request.body or b"{}")
            # An outage keeps this connection open until the answer is out, then closes it.
            self.owner.apply_faults(spec, keep=call.connection)
        except (ValueError, TypeError) as exc:
            call.send(400, error_body("bad_request", str(exc)))
            return
        stats = self.owner.stats()
        if not stats["listening"]:
            call.request.keep_alive = False
        call.send(200, json_bytes({"success": True, "pending_faults": stats["pending_faults"],
                                   "listening": stats["listening"]}))

    def get_page(self, call: Call, match: "re.Match[str]") -> None:
        call.send(200, inspector.page(), inspector.PAGE_HEADERS, "text/html; charset=utf-8")

    def get_favicon(self, call: Call, match: "re.Match[str]") -> None:
        call.send(204, b"", (), "image/x-icon")

    def get_static(self, call: Call, match: "re.Match[str]") -> None:
        data, content_type = inspector.static_file(call.request.path.rsplit("/", 1)[-1])
        call.send(200, data, inspector.STATIC_HEADERS, content_type)

    def get_data(self, call: Call, match: "re.Match[str]") -> None:
        what = call.request.path.rsplit("/", 1)[-1]
        status, data = inspector.answer(self.owner, what, parse_qs(call.request.query))
        call.send(status, data, inspector.DATA_HEADERS)

    def get_export(self, call: Call, match: "re.Match[str]") -> None:
        status, data = inspector.export(self.owner, parse_qs(call.request.query))
        if status != 200:
            call.send(status, data, inspector.DATA_HEADERS)
            return
        call.send(200, data, inspector.EXPORT_HEADERS, "application/x-ndjson")

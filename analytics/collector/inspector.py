"""The collector's inspector page: what your app actually sent, in a browser.

Served by every :class:`~analytics.collector.Collector` on its own port (no
auth, like the control routes; the collector listens on 127.0.0.1 unless told
otherwise)::

    GET /  (or /inspector)              the page (static HTML; it reads the routes below)
    GET /_collector/static/NAME         its script and style sheet
    GET /_collector/events              message summaries, newest first:
        ?type=track&event=Signed&user=42&batch=7&q=plan&before=ID&limit=100
        -> {"events": [...], "matching": N, "latest": ID, "kept": bool, "stored": path|null}
    GET /_collector/event?id=ID         one message in full, with its batch
        -> {"summary": {...}, "message": {...}|null}   (404 when there is no such id)
    GET /_collector/export?type=&event=&user=&batch=&q=
        -> the matching messages, oldest first, one JSON object a line (application/x-ndjson;
           what ``cdp-relay import`` reads)
    GET /_collector/batches?before=ID&limit=100
        -> {"batches": [{"id", "received_at", "messages", "raw_size", "compressed_size",
                         "gzip_ratio", "key_hint", "sent_at", "user_agent"}...], "total": N}
    GET /_collector/batch?id=ID         one batch's envelope: {"batch": {..., "headers", "envelope",
                                        "sent_at" (null: the body had none)}}
    GET /_collector/refusals?before=ID&limit=100
        -> {"refusals": [{"id", "received_at", "status", "code", "reason", "method",
                          "path", "raw_size", "request_id"}...], "total": N}
    GET /_collector/requests?api=Track%20API&refused=1&before=ID&limit=100
        -> {"requests": [{"id", "received_at", "api", "method", "path", "query", "status",
                          "code", "reason", "body_size", "batch_id"}...], "matching": N,
            "apis": [the API names], "kept": bool}
    GET /_collector/request?id=ID       one request in full: {"request": {..., "headers"
                                        (credentials redacted), "body" (as received),
                                        "body_note", "answer"}}
    GET /_collector/stats               the counters (as before)

Message ids are 1-based positions in arrival order (``id`` N is
``collector.messages[N - 1]``).  ``event`` matches a substring of a track's
event or a page/screen's name, ``user`` a substring of ``userId`` or
``anonymousId`` (case-insensitive), ``type`` exactly, ``q`` a substring of
the whole message as JSON (properties, traits, context...; see
:func:`~analytics.collector.storage.payload_needle`).  Requests are every
call to any API the collector serves (Data Pipelines, Track API, App API,
Bloomreach) or to a path none serves, see :class:`~analytics.collector.server.Exchange`.

The page is plain HTML, CSS and JavaScript (package data under ``static/``,
no build step).  It polls these routes once a second and writes every value
with ``textContent``, never as HTML; the Content-Security-Policy allows only
its own script and style, so a message cannot run code in it.

A collector with a database (``db_path``) answers from SQLite; one without
answers from its in-memory lists (no ``duplicate`` marks there).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .storage import key_hint as _hint
from .storage import payload_needle, payload_text, redact_headers

__all__ = ["answer", "export", "page", "static_file", "STATIC_FILES", "EXPORT_HEADERS"]

_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: Files under ``/_collector/static/`` and their content types.
STATIC_FILES: Dict[str, str] = {
    "inspector.js": "text/javascript; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
}

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Headers on the HTML page.
PAGE_HEADERS: Tuple[Tuple[str, str], ...] = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
#: Headers on the script and style sheet.
STATIC_HEADERS: Tuple[Tuple[str, str], ...] = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-cache"))
#: Headers on the JSON routes.
DATA_HEADERS: Tuple[Tuple[str, str], ...] = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))
#: Headers on an export (its content type is ``application/x-ndjson``).
EXPORT_HEADERS: Tuple[Tuple[str, str], ...] = DATA_HEADERS + (
    ("Content-Disposition", 'attachment; filename="collector-messages.jsonl"'),
)

_MAX_LIMIT = 500
_DEFAULT_LIMIT = 100
_cache: Dict[str, bytes] = {}


def _read(name: str) -> bytes:
    data = _cache.get(name)
    if data is None:
        with open(os.path.join(_STATIC_DIR, name), "rb") as f:
            data = f.read()
        _cache[name] = data
    return data


def page() -> bytes:
    """The inspector's HTML."""
    return _read("inspector.html")


def static_file(name: str) -> Tuple[bytes, str]:
    """(content, content type) of one of :data:`STATIC_FILES`; raises KeyError for any other name."""
    content_type = STATIC_FILES[name]
    return _read(name), content_type


def _json(value: Any) -> bytes:
    # ASCII only: every character outside it is escaped, lone surrogates included
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _error(status: int, message: str) -> Tuple[int, bytes]:
    return status, _json({"code": "bad_request" if status == 400 else "not_found", "message": message})


class _BadParameter(ValueError):
    pass


def _param(params: Mapping[str, Sequence[str]], name: str) -> Optional[str]:
    values = params.get(name)
    if not values:
        return None
    value = values[-1].strip()
    return value or None


def _int_param(params: Mapping[str, Sequence[str]], name: str, default: Optional[int] = None,
               low: int = 1, high: int = 1 << 62) -> Optional[int]:
    text = _param(params, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadParameter(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise _BadParameter(f"{name} must be from {low} to {high}")
    return value


def answer(collector: Any, what: str, params: Mapping[str, Sequence[str]]) -> Tuple[int, bytes]:
    """Answer one of the inspector's JSON routes: (status, body)."""
    try:
        if what == "events":
            return 200, _json(_events(collector, params))
        if what == "event":
            message_id = _int_param(params, "id")
            if message_id is None:
                raise _BadParameter("id is required")
            found = _event(collector, message_id)
            if found is None:
                return _error(404, f"no message with id {message_id}")
            return 200, _json(found)
        if what == "batches":
            return 200, _json(_batches(collector, params))
        if what == "refusals":
            return 200, _json(_refusals(collector, params))
        if what == "requests":
            return 200, _json(_requests(collector, params))
        if what in ("request", "batch"):
            number = _int_param(params, "id")
            if number is None:
                raise _BadParameter("id is required")
            if what == "request":
                exchange = collector.exchange(number)
                if exchange is None:
                    return _error(404, f"no request with id {number}")
                return 200, _json({"request": _exchange_row(exchange, full=True)})
            batch = collector.batch(number)
            if batch is None:
                return _error(404, f"no batch with id {number}")
            return 200, _json({"batch": _batch_row(number, batch, full=True, hinted=collector.store is not None)})
    except _BadParameter as exc:
        return _error(400, str(exc))
    return _error(404, f"no inspector route {what!r}")


# -- events -------------------------------------------------------------------


def _label(m: Mapping[str, Any]) -> Any:
    return m.get("event") if m.get("type") == "track" else m.get("name")


def _summary(index: int, batch_id: int, received_at: float, m: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        "id": index,
        "batch_id": batch_id,
        "received_at": received_at,
        "type": m.get("type"),
        "event": _label(m),
        "user_id": m.get("userId"),
        "anonymous_id": m.get("anonymousId"),
        "message_id": m.get("messageId"),
        "timestamp": m.get("timestamp"),
        "duplicate": None,
    }


def _contains(value: Any, needle: str) -> bool:
    return value is not None and needle in str(value).casefold()


def _snapshot(collector: Any) -> Tuple[List[Any], List[Any]]:
    """(batches, their messages in order), read at one moment."""
    batches = collector.batches
    return batches, [m for b in batches for m in b.messages]


def _newest_first(batches: List[Any], total: int) -> Iterator[Tuple[int, int, Any, Mapping[str, Any]]]:
    """(1-based message id, 1-based batch id, batch, message) from the newest message back."""
    end = total
    for batch_no in range(len(batches), 0, -1):
        batch = batches[batch_no - 1]
        start = end - len(batch.messages)
        for offset in range(len(batch.messages) - 1, -1, -1):
            yield start + offset + 1, batch_no, batch, batch.messages[offset]
        end = start


def _filters(params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    return {"type_": _param(params, "type"), "event": _param(params, "event"), "user": _param(params, "user"),
            "batch": _int_param(params, "batch"), "text": _param(params, "q")}


def _matching(collector: Any, type_: Optional[str], event: Optional[str], user: Optional[str],
              batch: Optional[int], text: Optional[str]) -> Iterator[Tuple[int, int, Any, Mapping[str, Any]]]:
    """The in-memory messages that match, newest first (as _newest_first yields them)."""
    batches, messages = _snapshot(collector)
    event_key = event.casefold() if event else None
    user_key = user.casefold() if user else None
    needle = payload_needle(text) if text else None
    for index, batch_no, b, m in _newest_first(batches, len(messages)):
        if type_ and m.get("type") != type_:
            continue
        if event_key and not _contains(_label(m), event_key):
            continue
        if user_key and not (_contains(m.get("userId"), user_key) or _contains(m.get("anonymousId"), user_key)):
            continue
        if batch is not None and batch_no != batch:
            continue
        if needle is not None and needle not in payload_text(m):
            continue
        yield index, batch_no, b, m


def _events(collector: Any, params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    filters = _filters(params)
    before = _int_param(params, "before")
    limit = _int_param(params, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    assert limit is not None
    store = collector.store
    info = {"kept": bool(collector.keep_messages), "stored": collector.db_path}
    if store is not None:
        f = filters
        rows, matching = store.find_messages(f["type_"], f["event"], f["user"], f["batch"], before, limit, f["text"])
        latest = store.message_count()
        return {"events": rows, "matching": matching, "latest": latest, **info}
    found: List[Dict[str, Any]] = []
    matching = 0
    for index, batch_no, b, m in _matching(collector, **filters):
        matching += 1
        if len(found) < limit and (before is None or index < before):
            found.append(_summary(index, batch_no, b.received_at, m))
    return {"events": found, "matching": matching, "latest": collector.stats()["messages"]
            if collector.keep_messages else 0, **info}


def export(collector: Any, params: Mapping[str, Sequence[str]]) -> Tuple[int, bytes]:
    """The matching messages (the events route's filters), oldest first, as JSON lines: (status, body)."""
    try:
        filters = _filters(params)
    except _BadParameter as exc:
        return _error(400, str(exc))
    store = collector.store
    lines: List[str] = []
    if store is not None:
        lines = store.message_bodies(**filters)  # compact ASCII JSON already
    else:
        found_messages = [m for _, _, _, m in _matching(collector, **filters)]
        lines = [json.dumps(m, separators=(",", ":"), ensure_ascii=True) for m in reversed(found_messages)]
    return 200, "".join(line + "\n" for line in lines).encode("ascii")


def _event(collector: Any, message_id: int) -> Optional[Dict[str, Any]]:
    store = collector.store
    if store is not None:
        found = store.message(message_id)
        if found is None:
            return None
        summary, message = found
        summary["gzip_ratio"] = _ratio(summary["compressed_size"], summary["raw_size"])
        return {"summary": summary, "message": message}
    batches, messages = _snapshot(collector)
    if not 1 <= message_id <= len(messages):
        return None
    start = 0
    for batch_no, b in enumerate(batches, 1):
        if message_id <= start + len(b.messages):
            m = messages[message_id - 1]
            summary = _summary(message_id, batch_no, b.received_at, m)
            summary.update(sent_at=b.sent_at, key_hint=_hint(b.write_key), raw_size=b.raw_size,
                           compressed_size=b.compressed_size, batch_messages=len(b.messages),
                           gzip_ratio=_ratio(b.compressed_size, b.raw_size))
            return {"summary": summary, "message": m}
        start += len(b.messages)
    return None  # pragma: no cover - the lists are appended together


# -- batches and refusals -------------------------------------------------------


def _ratio(compressed: Optional[int], raw: int) -> Optional[float]:
    """Gzipped size over raw size (0.25: a quarter the size), or None when not gzipped."""
    if compressed is None or not raw:
        return None
    return round(compressed / raw, 4)


def _user_agent(headers: Mapping[str, str]) -> Optional[str]:
    for name, value in headers.items():
        if name.lower() == "user-agent":
            return value
    return None


def _batches(collector: Any, params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    before = _int_param(params, "before")
    limit = _int_param(params, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    assert limit is not None
    store = collector.store
    out: List[Dict[str, Any]] = []
    if store is not None:
        rows, total = store.find_batches(before, limit)
        for r in rows:
            headers = r.pop("headers")
            r["user_agent"] = _user_agent(headers)
            r["gzip_ratio"] = _ratio(r["compressed_size"], r["raw_size"])
            out.append(r)
        return {"batches": out, "total": total}
    batches, _ = _snapshot(collector)
    top = len(batches) if before is None else min(len(batches), before - 1)
    for batch_no in range(top, max(0, top - limit), -1):
        out.append(_batch_row(batch_no, batches[batch_no - 1], full=False, hinted=False))
    return {"batches": out, "total": len(batches)}


def _batch_row(batch_no: int, b: Any, full: bool, hinted: bool) -> Dict[str, Any]:
    """A batch as the page reads it; ``full`` adds its headers (redacted) and envelope.
    ``hinted``: ``b.write_key`` is already only a hint (a batch read from a database)."""
    row = {
        "id": batch_no,
        "received_at": b.received_at,
        "sent_at": b.sent_at,
        "key_hint": b.write_key if hinted else _hint(b.write_key),
        "raw_size": b.raw_size,
        "compressed_size": b.compressed_size,
        "gzip_ratio": _ratio(b.compressed_size, b.raw_size),
        "messages": len(b.messages),
        "user_agent": _user_agent(b.headers),
    }
    if full:
        row["headers"] = redact_headers(b.headers)
        row["envelope"] = b.envelope
        row.pop("messages")  # collector.batch() leaves them out; the batch's count is in the list
    return row


def _exchange_row(e: Any, full: bool) -> Dict[str, Any]:
    row = {
        "id": e.id, "received_at": e.received_at, "api": e.api, "method": e.method, "path": e.path,
        "query": e.query, "status": e.status, "code": e.code, "reason": e.reason, "body_size": e.body_size,
        "batch_id": e.batch_id,
    }
    if full:
        row.update(headers=e.headers, body=e.body, body_note=e.body_note, answer=e.answer)
    return row


def _requests(collector: Any, params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    api = _param(params, "api")
    names = list(collector.API_NAMES)
    if api is not None and api not in names and api != "other":
        raise _BadParameter(f"api must be one of {', '.join(names)} or other")
    refused_text = _param(params, "refused")
    if refused_text not in (None, "0", "1"):
        raise _BadParameter("refused must be 0 or 1")
    before = _int_param(params, "before")
    limit = _int_param(params, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    refused = None if refused_text is None else refused_text == "1"
    rows, matching = collector.exchanges("" if api == "other" else api, refused, before, limit)
    return {"requests": [_exchange_row(e, full=False) for e in rows], "matching": matching,
            "apis": names, "kept": bool(collector.keep_messages)}


def _refusals(collector: Any, params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    before = _int_param(params, "before")
    limit = _int_param(params, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    assert limit is not None
    store = collector.store
    if store is not None:
        return {"refusals": store.refusals(limit, before), "total": store.refusal_count()}
    refused = collector.refused
    top = len(refused) if before is None else min(len(refused), before - 1)
    out = [
        {
            "id": n,
            "received_at": r.received_at,
            "status": r.status,
            "code": r.code,
            "reason": r.reason,
            "method": r.method,
            "path": r.path,
            "raw_size": r.raw_size,
            "request_id": r.request_id,
        }
        for n, r in ((n, refused[n - 1]) for n in range(top, max(0, top - limit), -1))
    ]
    return {"refusals": out, "total": len(refused)}

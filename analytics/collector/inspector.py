"""The collector's inspector page: what your app actually sent, in a browser.

Served by every :class:`~analytics.collector.Collector` on its own port (no
auth, like the control routes; the collector listens on 127.0.0.1 unless told
otherwise)::

    GET /  (or /inspector)              the page (static HTML; it reads the routes below)
    GET /_collector/static/NAME         its script and style sheet
    GET /_collector/events              message summaries, newest first:
        ?type=track&event=Signed&user=42&batch=7&before=ID&limit=100
        -> {"events": [...], "matching": N, "latest": ID, "kept": bool, "stored": path|null}
    GET /_collector/event?id=ID         one message in full, with its batch
        -> {"summary": {...}, "message": {...}|null}   (404 when there is no such id)
    GET /_collector/batches?before=ID&limit=100
        -> {"batches": [{"id", "received_at", "messages", "raw_size", "compressed_size",
                         "gzip_ratio", "key_hint", "sent_at", "user_agent"}...], "total": N}
    GET /_collector/refusals?before=ID&limit=100
        -> {"refusals": [{"id", "received_at", "status", "code", "reason", "method",
                          "path", "raw_size"}...], "total": N}
    GET /_collector/stats               the counters (as before)

Message ids are 1-based positions in arrival order (``id`` N is
``collector.messages[N - 1]``).  ``event`` matches a substring of a track's
event or a page/screen's name, ``user`` a substring of ``userId`` or
``anonymousId`` (case-insensitive), ``type`` exactly.

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

__all__ = ["answer", "page", "static_file", "STATIC_FILES"]

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
    with collector._lock:
        return list(collector._batches), list(collector._messages)


def _newest_first(batches: List[Any], total: int) -> Iterator[Tuple[int, int, Any, Mapping[str, Any]]]:
    """(1-based message id, 1-based batch id, batch, message) from the newest message back."""
    end = total
    for batch_no in range(len(batches), 0, -1):
        batch = batches[batch_no - 1]
        start = end - len(batch.messages)
        for offset in range(len(batch.messages) - 1, -1, -1):
            yield start + offset + 1, batch_no, batch, batch.messages[offset]
        end = start


def _events(collector: Any, params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    type_ = _param(params, "type")
    event = _param(params, "event")
    user = _param(params, "user")
    batch = _int_param(params, "batch")
    before = _int_param(params, "before")
    limit = _int_param(params, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    assert limit is not None
    store = collector.store
    info = {"kept": bool(collector.keep_messages), "stored": collector.db_path}
    if store is not None:
        rows, matching = store.find_messages(type_, event, user, batch, before, limit)
        latest = store.message_count()
        return {"events": rows, "matching": matching, "latest": latest, **info}
    batches, messages = _snapshot(collector)
    event_key = event.casefold() if event else None
    user_key = user.casefold() if user else None
    rows = []
    matching = 0
    for index, batch_no, b, m in _newest_first(batches, len(messages)):
        if type_ and m.get("type") != type_:
            continue
        if event_key and not _contains(_label(m), event_key):
            continue
        if user_key and not (_contains(m.get("userId"), user_key) or _contains(m.get("anonymousId"), user_key)):
            continue
        if batch is not None and batch_no != batch:
            continue
        matching += 1
        if len(rows) < limit and (before is None or index < before):
            rows.append(_summary(index, batch_no, b.received_at, m))
    return {"events": rows, "matching": matching, "latest": len(messages), **info}


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
        b = batches[batch_no - 1]
        out.append({
            "id": batch_no,
            "received_at": b.received_at,
            "sent_at": b.sent_at,
            "key_hint": _hint(b.write_key),
            "raw_size": b.raw_size,
            "compressed_size": b.compressed_size,
            "gzip_ratio": _ratio(b.compressed_size, b.raw_size),
            "messages": len(b.messages),
            "user_agent": _user_agent(b.headers),
        })
    return {"batches": out, "total": len(batches)}


def _refusals(collector: Any, params: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    before = _int_param(params, "before")
    limit = _int_param(params, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    assert limit is not None
    store = collector.store
    if store is not None:
        return {"refusals": store.refusals(limit, before), "total": store.refusal_count()}
    with collector._lock:
        refused = list(collector._refused)
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
        }
        for n, r in ((n, refused[n - 1]) for n in range(top, max(0, top - limit), -1))
    ]
    return {"refusals": out, "total": len(refused)}

"""A local stand-in for the Customer.io Data Pipelines batch API (Segment spec).

:class:`Collector` runs a real HTTP/1.1 server on 127.0.0.1 so tests, benchmarks
and demos can send to it exactly as they would to ``cdp.customer.io``, inspect
what arrived, and inject faults.  On the same port it also serves the
Customer.io Track API (:mod:`analytics.collector.trackapi`, records at
``collector.track_api``), Bloomreach's tracking routes
(:mod:`analytics.collector.bloomreach`, ``collector.bloomreach``), the
Customer.io App API (:mod:`analytics.collector.appapi`, ``collector.app_api``)
and the inspector page (``GET /``).

Contract of ``POST /v1/batch``, checked in this order:

1. HTTP Basic auth, the write key as the user name (password ignored).  Missing
   or malformed, or a key outside ``write_keys`` when that set is given: 401
   ``{"code": "unauthorized"}``.  The key is never echoed or logged.
2. ``Content-Encoding: gzip`` is un-gzipped (a bad stream: 400 ``bad_request``;
   any other encoding but ``identity``: 415 ``unsupported_encoding``).
3. More than 500,000 bytes after un-gzipping: 413 ``payload_too_large``.
4. The body must be a JSON object with a ``batch`` list (otherwise 400
   ``bad_request``).  ``sentAt`` is optional, as in the Data Pipelines API; when
   present it must be a string (400 otherwise).  A batch without one is recorded
   with ``Batch.sent_at`` None (its ``envelope`` has no ``sentAt``).  Every message must be valid (see
   :func:`message_problem`) and at most 32,768 bytes as compact UTF-8 JSON
   (``json.dumps(m, separators=(",", ":"), ensure_ascii=False)``; measured
   exactly, though a message is only re-encoded when its length in the body
   says it might be over).  One bad message refuses the whole request with 400
   ``invalid_message`` naming it, e.g. ``batch[3]: track needs an event``.
5. Otherwise 200 ``{"success": true}`` and the batch is recorded.

Every response is written with a single ``write`` and carries Content-Length;
connections are kept alive (TCP_NODELAY).  Unknown paths get 404, other methods
405.  Nothing is logged but at DEBUG, on the ``customerio.collector`` logger.

Faults (queued with :meth:`Collector.fail_next`, :meth:`Collector.drop_next`,
:meth:`Collector.store_then_drop_next`, consumed in FIFO order, one per
request to ``POST /v1/batch`` or to an API route (Track API, Bloomreach, App
API: one shared queue), before auth; or drawn at random after
:meth:`Collector.set_chaos`), plus :attr:`Collector.delay`, simulate a
misbehaving server.  :meth:`Collector.outage` (or :meth:`Collector.down` and
:meth:`Collector.up`) takes the whole server away: connections to its port are
refused until it listens again, on the same port.

With ``keep_messages`` (the default) every request to an API route, or to a
path no route serves, is also kept as an :class:`Exchange`: the API it was
for, its headers with credentials redacted, its body as received (un-gzipped,
up to 256 KiB; for an accepted ``/v1/batch``, whose messages are kept anyway,
only the envelope), the status answered and, when refused, why (see
:meth:`Collector.exchanges`).  The inspector page shows them.

Every ``POST /v1/batch`` and every API-route request is also logged as a :class:`Request` (arrival time,
when and how it was answered, the Retry-After sent, whether the batch was
stored), see :attr:`Collector.request_log`, so a test can check timing:
:meth:`Collector.retry_after_violations` lists requests that came while a
Retry-After the collector sent was still running.

Every route first checks that the ``Host`` header (and an absolute request
target's authority) names this collector: ``localhost``, ``127.0.0.1``,
``[::1]``, the bound address or ``allowed_hosts``, any port; otherwise 421
``misdirected_request`` (DNS rebinding).  Bodies over ``max_body_bytes`` on the
wire (1 MiB; Bloomreach's routes: what 50 commands need) get 413 before they are
read; a bad chunk size line 400; a gzip body of more than 100 members 400.

Control routes, no auth, so a collector in another process can be driven; a
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

``python -m analytics.collector`` serves one from its own process.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
import logging
import os
import random
import re
import socket
import socketserver
import struct
import threading
import time
import weakref
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union
from urllib.parse import parse_qs

from ..errors import ConfigurationError
from . import bloomreach as _bloomreach
from . import inspector as _inspector
from .appapi import AppAPIRoutes, AppAPIStore
from .bloomreach import BloomreachRoutes, BloomreachStore
from .storage import SQLiteStore, StoreError, redact_headers, redact_query
from .trackapi import TrackAPIRoutes, TrackAPIStore

__all__ = [
    "Collector",
    "Batch",
    "Refusal",
    "Request",
    "Exchange",
    "API_NAMES",
    "message_problem",
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "StoreError",
]

logger = logging.getLogger("customerio.collector")

#: Largest accepted request body, counted after un-gzipping.
MAX_BODY_BYTES = 500_000
#: Largest accepted message, as compact UTF-8 JSON.
MAX_MESSAGE_BYTES = 32_768
#: Default for ``Collector(max_body_bytes=...)``: bodies larger than this on the wire
#: are refused unread (413) and the connection closed.
MAX_WIRE_BYTES = 1024 * 1024
#: Un-gzipping stops counting past this many bytes (the figure in a 413 is then a floor).
_MAX_COUNTED_BYTES = 16 * 1024 * 1024
#: A gzip body of more members than this is refused (clients send one).
_MAX_GZIP_MEMBERS = 100
#: Most bytes inflated in one step.
_INFLATE_STEP = 1 << 20

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_NEEDS_USER = frozenset({"identify", "track", "page", "screen"})
_OBJECT_FIELDS = ("traits", "properties", "context", "integrations")

RetryAfter = Union[int, float, str]

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _error(code: str, message: str) -> bytes:
    return _json({"code": code, "message": message})


@dataclass
class Batch:
    """One accepted ``POST /v1/batch``."""

    messages: List[Dict[str, Any]]
    sent_at: Optional[str]  #: the body's ``sentAt``; None when it had none
    write_key: str
    raw_size: int  #: body bytes after un-gzipping
    compressed_size: Optional[int]  #: body bytes on the wire when gzipped, else None
    headers: Dict[str, str]
    received_at: float  #: time.time() when the body had been read
    #: The body's other members (``sentAt``, ``context``...) but ``batch``; a ``writeKey`` redacted.
    envelope: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Refusal:
    """A request answered with a non-2xx status, or dropped (``status`` 0).

    Injected faults are recorded with ``code="fault"``.
    """

    status: int
    code: str
    reason: str
    received_at: float
    raw_size: int  #: body bytes after un-gzipping when that got that far, else as received
    method: str = ""  #: the request's method, when known
    path: str = ""  #: the request's path (no query), when known
    request_id: Optional[int] = None  #: the :class:`Exchange` that keeps the request (keep_messages only)


#: The APIs the collector serves, as :attr:`Exchange.api` names them.
API_NAMES = ("Data Pipelines", "Track API", "App API", "Bloomreach")
#: The most body text an :class:`Exchange` keeps (the rest is cut, and said to be).
MAX_KEPT_BODY = 256 * 1024
#: The most answer text an :class:`Exchange` keeps.
MAX_KEPT_ANSWER = 16 * 1024


@dataclass
class Exchange:
    """One request to an API route (or to a path none serves) and what was answered.

    Kept with ``keep_messages`` (see :meth:`Collector.exchanges`); ids count up from 1
    in arrival order (a reset does not start them again).  ``headers`` have credentials redacted (``Authorization``,
    ``Cookie``) and ``query`` credential parameters (``access_token``...).
    ``body`` is the body as received, as text (un-gzipped when it was gzip; at
    most :data:`MAX_KEPT_BODY` characters), or None when not kept: an accepted
    ``/v1/batch`` keeps its messages and envelope in its :class:`Batch` instead
    (``batch_id``).  ``body_note`` says what was done to it.
    """

    id: int
    received_at: float
    api: Optional[str]  #: one of :data:`API_NAMES`, or None for a path no API serves
    method: str
    path: str
    query: str
    headers: Dict[str, str]
    body: Optional[str]
    body_size: int  #: bytes on the wire
    body_note: Optional[str] = None
    status: int = 0  #: what was answered; 0: no answer (the connection was dropped)
    code: Optional[str] = None  #: the refusal's code, when refused
    reason: Optional[str] = None  #: why it was refused (the answer's message when no reason was recorded)
    answer: Optional[str] = None  #: the answer's body, as text (at most MAX_KEPT_ANSWER characters)
    batch_id: Optional[int] = None  #: the accepted Data Pipelines batch, 1-based

    @property
    def refused(self) -> bool:
        """Answered outside 2xx, or not answered at all."""
        return not 200 <= self.status <= 299


#: A ``"writeKey": "..."`` member in a Data Pipelines body (some clients send the key there too).
_WRITE_KEY_MEMBER = re.compile(r'("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"')


def _body_text(body: bytes, encoding: str) -> Tuple[str, Optional[str]]:
    """(text to show, note) for a request body as received: un-gzipped when it is gzip,
    decoded as UTF-8 (bad bytes replaced), cut at :data:`MAX_KEPT_BODY` characters."""
    note: Optional[str] = None
    raw = body
    if encoding in ("gzip", "x-gzip"):
        try:
            raw, size = _gunzip(body, MAX_KEPT_BODY * 4)
            note = f"gzip: {len(body):,} bytes on the wire, {size:,} un-gzipped"
        except zlib.error as exc:
            return "", f"{len(body):,} bytes labelled gzip that are not valid gzip ({exc})"
    elif encoding not in ("", "identity"):
        return "", f"{len(body):,} bytes in Content-Encoding {encoding!r} (not shown)"
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_KEPT_BODY:
        text = text[:MAX_KEPT_BODY]
        note = (note + "; " if note else "") + f"cut at {MAX_KEPT_BODY:,} characters"
    return text, note


def _answer_reason(status: int, body: bytes) -> Optional[str]:
    """The reason an error answer gives (its ``message``, ``errors`` or ``meta.error``), if any."""
    if 200 <= status <= 299 or not body:
        return None
    try:
        doc = json.loads(body[:MAX_KEPT_ANSWER])
    except ValueError:
        return body[:300].decode("utf-8", "replace")
    if isinstance(doc, dict):
        message = doc.get("message")
        if isinstance(message, str):
            return message
        errors = doc.get("errors")
        if isinstance(errors, list) and errors:
            texts = [e.get("message") or e.get("detail") if isinstance(e, dict) else e for e in errors]
            return "; ".join(str(t) for t in texts if t is not None) or None
        meta = doc.get("meta")
        error = meta.get("error") if isinstance(meta, dict) else None
        if isinstance(error, str):
            return error
    return None


@dataclass
class Request:
    """One ``POST /v1/batch`` (or API-route request) as the collector saw it (see :attr:`Collector.request_log`).

    Times are ``time.time()``.  ``status`` is what was answered, 0 when no answer
    left (a dropped connection, or the answer could not be written).  ``stored``
    says the batch was recorded as accepted: with ``status`` 0 that is the
    ambiguous outcome (the batch arrived, the client cannot know it did).
    """

    received_at: float  #: when the body had been read
    answered_at: float = 0.0  #: just before the answer was written or the connection reset
    status: int = 0
    stored: bool = False
    messages: int = 0  #: messages stored by this request (0 unless stored)
    retry_after: Optional[str] = None  #: the Retry-After header sent, verbatim
    retry_until: Optional[float] = None  #: the time that Retry-After pointed to
    fault: bool = False  #: an injected fault decided the answer

    @property
    def ambiguous(self) -> bool:
        """Stored, but the client got no answer: it will send the batch again."""
        return self.stored and self.status == 0


_ABSENT: Dict[str, Any] = {}  # what message_problem reads for a missing object field
_NO_TIMESTAMP = "2000-01-01T00:00:00"


def message_problem(m: Any) -> Optional[str]:
    """What is wrong with one batch message, or None when it is valid.

    A message is a dict whose ``type`` is one of :data:`MESSAGE_TYPES`, with a
    non-empty string ``messageId``; identify/track/page/screen need a non-empty
    string ``userId`` or ``anonymousId``; track a non-empty string ``event``;
    group a ``groupId``; alias a ``previousId`` and a ``userId``.  ``traits``,
    ``properties``, ``context`` and ``integrations`` must be objects when present,
    and ``timestamp`` an ISO-8601 string (``datetime.fromisoformat``, a trailing
    ``Z`` allowed).  Size is checked separately.
    """
    if type(m) is not dict:
        return "message is not an object"
    get = m.get
    t = get("type")
    if type(t) is not str or t not in MESSAGE_TYPES:
        return "type must be one of alias/group/identify/page/screen/track"
    value = get("messageId")
    if type(value) is not str or not value:
        return "messageId must be a non-empty string"
    if t in _NEEDS_USER:
        value = get("userId")
        if type(value) is not str or not value:
            value = get("anonymousId")
            if type(value) is not str or not value:
                return f"{t} needs a userId or an anonymousId"
        if t == "track":
            value = get("event")
            if type(value) is not str or not value:
                return "track needs an event"
    elif t == "group":
        value = get("groupId")
        if type(value) is not str or not value:
            return "group needs a groupId"
    else:
        value, other = get("previousId"), get("userId")
        if type(value) is not str or not value or type(other) is not str or not other:
            return "alias needs a previousId and a userId"
    for name in _OBJECT_FIELDS:
        if type(get(name, _ABSENT)) is not dict:
            return f"{name} must be an object"
    ts = get("timestamp", _NO_TIMESTAMP)
    if type(ts) is not str:
        return "timestamp must be an ISO-8601 string"
    try:
        datetime.fromisoformat(ts[:-1] + "+00:00" if ts.endswith("Z") else ts)
    except ValueError:
        return "timestamp is not ISO-8601"
    return None


def _encoded_size(m: Any) -> int:
    """Bytes of ``m`` as compact UTF-8 JSON (a lower bound, still under the limit,
    when it is plainly under)."""
    text = _compact(m)
    if len(text) * 4 <= MAX_MESSAGE_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


_INF = float("inf")
_WS_RE = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, i: int = 0) -> int:
    """The index of the first character at or after ``i`` that is not JSON whitespace."""
    found = _WS_RE.match(text, i)
    return i if found is None else found.end()  # (the pattern matches the empty string)
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_MEMBER_END = re.compile(r"[ \t\n\r]*([,}])[ \t\n\r]*")
_ITEM_END = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")


class _BodyParser:
    """Parses a JSON body like ``json.loads``, and also measures, for the 32 KB check,
    each ``batch`` element's length in the text and how much longer than written the
    body's numbers get when re-encoded.

    Compact re-encoding never lengthens strings (escapes only shrink), keys, ints or
    constants, and drops whitespace; only a float written with an exponent or 17+
    digits can come out longer (``1e5`` -> ``100000.0``).  So a message's compact
    UTF-8 size is at most its length in the body (x4 when the body is not ASCII)
    plus that growth, and only messages for which that bound passes 32,768 bytes
    need encoding.  One parser per connection (it is not thread-safe).
    """

    def __init__(self) -> None:
        self.growth = 0
        decoder = json.JSONDecoder(parse_float=self._float)
        self._decode, self._decode_all = decoder.raw_decode, decoder.decode

    def _float(self, text: str) -> float:
        value = float(text)
        if len(text) > 17 or "e" in text or "E" in text:
            if value != value:
                out = 3  # NaN
            elif value in (_INF, -_INF):
                out = 8 if value > 0 else 9
            else:
                out = len(repr(value))
            if out > len(text):
                self.growth += out - len(text)
        return value

    def loads(self, raw: bytes) -> Any:
        """The document (as ``json.loads``), measuring only the growth; raises ValueError."""
        self.growth = 0
        return self._decode_all(raw.decode(json.detect_encoding(raw), "surrogatepass"))

    def parse(self, raw: bytes) -> Tuple[Any, str, List[int]]:
        """(document, text, lengths of the ``batch`` elements in text); raises ValueError."""
        self.growth = 0
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        decode = self._decode
        spans: List[int] = []
        i = _skip_ws(text)
        if not text.startswith("{", i):
            doc, i = decode(text, i)  # not an object: parsed only to say what it is
        else:
            doc = {}
            i = _skip_ws(text, i + 1)
            closed = text.startswith("}", i)
            if closed:
                i += 1
            while not closed:
                if not text.startswith('"', i):
                    raise ValueError(f"expected a property name at char {i}")
                key, i = decode(text, i)
                m = _COLON.match(text, i)
                if m is None:
                    raise ValueError(f"expected ':' at char {i}")
                i = m.end()
                if key == "batch" and text.startswith("[", i):
                    doc[key], spans, i = self._array(text, i)
                else:
                    doc[key], i = decode(text, i)
                m = _MEMBER_END.match(text, i)
                if m is None:
                    raise ValueError(f"expected ',' or '}}' at char {i}")
                i, closed = m.end(), m.group(1) == "}"
        if _skip_ws(text, i) != len(text):
            raise ValueError(f"extra data at char {i}")
        return doc, text, spans

    def _array(self, text: str, i: int) -> Tuple[List[Any], List[int], int]:
        decode, item_end = self._decode, _ITEM_END.match
        items: List[Any] = []
        spans: List[int] = []
        i = _skip_ws(text, i + 1)
        if text.startswith("]", i):
            return items, spans, i + 1
        while True:
            item, j = decode(text, i)
            items.append(item)
            spans.append(j - i)
            m = item_end(text, j)
            if m is None:
                raise ValueError(f"expected ',' or ']' at char {j}")
            i = m.end()
            if m.group(1) == "]":
                return items, spans, i



def _gunzip(data: bytes, limit: int) -> Tuple[bytes, int]:
    """Un-gzip ``data`` (at most ``_MAX_GZIP_MEMBERS`` members), in time linear in its size.

    Returns the output, kept only up to ``limit + 1`` bytes, and its full size
    (counted up to ``max(limit + 1, _MAX_COUNTED_BYTES)``, then a floor).  Raises
    ``zlib.error`` on a bad stream or too many members.
    """
    # The input is fed a slice at a time, small at each member's start and then
    # doubling: what zlib copies out after a member ends (unused_data) is never much
    # more than what the member took, so many tiny members cost no more than one big one.
    view = memoryview(data)
    parts: List[bytes] = []
    size = kept = pos = members = 0
    cap = max(limit + 1, _MAX_COUNTED_BYTES)
    while True:
        members += 1
        if members > _MAX_GZIP_MEMBERS:
            raise zlib.error(f"more than {_MAX_GZIP_MEMBERS} gzip members")
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        feed = 64
        while not d.eof:
            if pos >= len(data):
                raise zlib.error("truncated gzip stream")
            tail = view[pos:pos + feed]
            pos += len(tail)
            feed = min(feed * 2, 1 << 16)
            while True:  # a slice can inflate to 1,000 times its size: in bounded steps
                out = d.decompress(tail, _INFLATE_STEP)
                size += len(out)
                if kept <= limit:
                    parts.append(out[:limit + 1 - kept])
                    kept += len(parts[-1])
                if size >= cap:
                    return b"".join(parts), size
                tail = memoryview(d.unconsumed_tail)
                if not tail and len(out) < _INFLATE_STEP:
                    break
        pos -= len(d.unused_data)
        if pos >= len(data):
            return b"".join(parts), size


def _parse_retry_after(value: RetryAfter) -> Optional[float]:
    """The wall-clock time a Retry-After value points to, or None if it is not understood."""
    try:
        return time.time() + float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(str(value)).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


@dataclass
class _Fault:
    kind: str  # "fail", "drop" or "store_drop"
    status: int = 500
    body: bytes = b""
    content_type: str = "application/json"
    headers: Tuple[Tuple[str, str], ...] = ()
    retry_after: Optional[RetryAfter] = None


@dataclass
class _Chaos:
    fail: _Fault
    fail_rate: float
    drop_rate: float
    fail_every: int
    rng: random.Random
    seen: int = 0


_STORE_DROP = _Fault("store_drop")
_DROP = _Fault("drop")


def _check_count(n: Any) -> int:
    if type(n) is not int or n < 1:
        raise ValueError(f"n must be an integer >= 1, not {n!r}")
    return n


def _check_rate(name: str, value: Any) -> float:
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")
    return float(value)


def _make_fail(
    status: int,
    body: Union[None, str, bytes, Mapping[str, Any], List[Any]],
    retry_after: Optional[RetryAfter],
    headers: Optional[Mapping[str, str]],
) -> _Fault:
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"status must be an HTTP status from 200 to 599, not {status!r}")
    content_type = "application/json"
    if body is None:
        data = _error("fault", f"injected {status}")
    elif isinstance(body, (dict, list)):
        data = _json(body)
    elif isinstance(body, (str, bytes)):
        data = body.encode() if isinstance(body, str) else bytes(body)
        try:
            json.loads(data)
        except ValueError:
            content_type = "text/plain; charset=utf-8"
    else:
        raise ValueError(f"body must be None, str, bytes, dict or list, not {type(body).__name__}")
    extra: List[Tuple[str, str]] = []
    if retry_after is not None:
        if not isinstance(retry_after, (int, float, str)) or isinstance(retry_after, bool):
            raise ValueError(f"retry_after must be seconds or a string, not {retry_after!r}")
        extra.append(("Retry-After", str(retry_after)))
    for name, value in (headers or {}).items():
        extra.append((str(name), str(value)))
    for name, value in extra:
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"bad header {name!r}")
    return _Fault("fail", status, data, content_type, tuple(extra), retry_after)


def _make_chaos(
    fail_rate: float = 0.0,
    drop_rate: float = 0.0,
    status: int = 500,
    seed: Optional[int] = None,
    retry_after: Optional[RetryAfter] = None,
    fail_every: int = 0,
) -> Optional[_Chaos]:
    fail_rate = _check_rate("fail_rate", fail_rate)
    drop_rate = _check_rate("drop_rate", drop_rate)
    if fail_rate + drop_rate > 1.0:
        raise ValueError("fail_rate + drop_rate must be at most 1")
    if type(fail_every) is not int or fail_every < 0:
        raise ValueError(f"fail_every must be an integer >= 0, not {fail_every!r}")
    if seed is not None and type(seed) is not int:
        raise ValueError(f"seed must be an integer, not {seed!r}")
    fault = _make_fail(status, None, retry_after, None)
    if not (fail_rate or drop_rate or fail_every):
        return None
    return _Chaos(fault, fail_rate, drop_rate, fail_every, random.Random(seed))


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_HOST_RE = re.compile(r"(\[[0-9a-f:.]+\]|[^\s\[\]:/@,;]+)(?::[0-9]{0,5})?")


def _host_name(value: str) -> Optional[str]:
    """The name in a ``Host`` header (lower case, an IPv6 address in brackets, no port), or
    None when it is not a host name."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address, as in Collector(host="::1")
    m = _HOST_RE.fullmatch(value)
    return m.group(1) if m else None


def _close_store(store: SQLiteStore, pid: int) -> None:
    """Close ``store``, unless this is a forked child (the connection is the parent's)."""
    if os.getpid() == pid:
        store.close()


class Collector:
    """A local Data Pipelines batch endpoint that records what it accepts.

    ``Collector(host="127.0.0.1", port=0, write_keys=None, keep_messages=True)``;
    :meth:`start` serves on a daemon thread (port 0 picks a free one, see
    :attr:`url`), :meth:`stop` shuts down and closes every connection; it is also
    a context manager.  :meth:`down` / :meth:`up` / :meth:`outage` take the server
    away and bring it back on the same port.  With ``write_keys`` only those keys are accepted.  With
    ``keep_messages=False`` only counters and message ids are kept (for runs with
    millions of events): :attr:`messages` and :attr:`batches` stay empty.

    With ``db_path`` the records live in an SQLite file instead of in memory
    (see :mod:`analytics.collector.storage`): a collector made again on the same
    file starts with what the last one received (messages, batches, refusals,
    counters); ``":memory:"`` gives an in-memory database.  Raises
    :class:`~analytics.collector.storage.StoreError` when the file cannot be
    used.  Without it (the default) nothing touches the disk.

    The same port serves the inspector page at ``/`` (see
    :mod:`analytics.collector.inspector`).  With ``keep_messages`` every request
    to an API it serves is also kept as received (:meth:`exchanges`,
    :meth:`exchange`; credentials redacted), and :meth:`batch` gives one
    batch's envelope and headers.

    Requests whose ``Host`` names another server get 421 (a web page cannot
    reach the collector through a DNS name of its own): accepted are
    ``localhost``, ``127.0.0.1``, ``[::1]``, ``host`` and the names in
    ``allowed_hosts``, with any port, and any IP address when ``host`` is a
    wildcard (``0.0.0.0``, ``::``).  ``POST`` control routes also need
    ``Content-Type: application/json`` and no ``Origin`` but the collector's
    own (403 otherwise), so no form or script on another site can drive it.
    Bodies over ``max_body_bytes`` on the wire get 413 (Bloomreach's routes
    allow what 50 commands need); a connection whose request stalls for
    ``read_timeout`` seconds, whose request takes more than ``request_timeout``
    seconds to arrive (a byte at a time, say), or that stays idle
    ``idle_timeout`` seconds between requests, is closed; past ``max_connections`` open connections a
    new one gets 503 and is closed.

    All records are guarded by one lock; the accessors return copies.
    """

    #: The APIs served, as :attr:`Exchange.api` names them.
    API_NAMES = API_NAMES

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        write_keys: Optional[Set[str]] = None,
        keep_messages: bool = True,
        db_path: Optional[str] = None,
        allowed_hosts: Iterable[str] = (),
        max_body_bytes: int = MAX_WIRE_BYTES,
        max_connections: int = 64,
        read_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        request_timeout: float = 30.0,
    ) -> None:
        for name, value in (("max_body_bytes", max_body_bytes), ("max_connections", max_connections)):
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, not {value!r}")
        for name, seconds in (("read_timeout", read_timeout), ("idle_timeout", idle_timeout),
                              ("request_timeout", request_timeout)):
            if type(seconds) not in (int, float) or not 0 < seconds < _INF:
                raise ConfigurationError(f"{name} must be a finite number of seconds > 0, not {seconds!r}")
        if isinstance(allowed_hosts, (str, bytes)) or not isinstance(allowed_hosts, Iterable):
            raise ConfigurationError(f"allowed_hosts must be a list of host names, not {allowed_hosts!r}")
        hosts = list(allowed_hosts)
        bad = [h for h in hosts if type(h) is not str or _host_name(h) is None]
        if bad:
            raise ConfigurationError(f"allowed_hosts must hold host names, not {bad[0]!r}")
        self.host = host
        #: Names the ``Host`` header may carry (lower case, IPv6 in brackets; any port).
        self.allowed_hosts: FrozenSet[str] = frozenset(
            {name for name in [_host_name(h) for h in hosts] + [_host_name(self._url_host)] if name is not None}
            | _LOOPBACK_NAMES
        )
        self._any_address = host in ("", "0.0.0.0", "::")
        #: Largest request body accepted on the wire, in bytes (413 beyond).
        self.max_body_bytes = max_body_bytes
        #: Most connections served at once; one more gets 503 and is closed.
        self.max_connections = max_connections
        #: Seconds a request may stall (between reads) before its connection is closed.
        self.read_timeout = float(read_timeout)
        #: Seconds a kept-alive connection may wait for its next request.
        self.idle_timeout = float(idle_timeout)
        #: Seconds a whole request (head and body) may take to arrive, however it trickles in.
        self.request_timeout = float(request_timeout)
        self._pid = os.getpid()  # a forked child must not stop the parent's server (see stop)
        self._port = port
        self.write_keys: Optional[FrozenSet[str]] = frozenset(write_keys) if write_keys is not None else None
        self.keep_messages = keep_messages
        #: Where the records are kept (None: in memory, the default).
        self.db_path = None if db_path is None else str(db_path)
        self._store: Optional[SQLiteStore] = None if db_path is None else SQLiteStore(str(db_path))
        if self._store is not None:
            # the connection closes with the collector (or at exit), whoever forgets to
            weakref.finalize(self, _close_store, self._store, self._pid)
        #: Seconds to sleep before answering each ``POST /v1/batch``.
        self.delay: float = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._started = False
        self._lifecycle = threading.RLock()  # start/stop/down/up
        self._placeholder: Optional[socket.socket] = None  # holds the port while down
        self._up_timer: Optional[threading.Timer] = None
        self._clear()
        if self._store is not None:
            self._restore()

    # -- lifecycle --------------------------------------------------------

    def start(self) -> "Collector":
        """Bind and serve on a daemon thread; returns self.  No-op if running."""
        with self._lifecycle:
            if self._started:
                return self
            self._serve()
            self._started = True
        return self

    def _serve(self) -> None:
        server = _Server((self.host, self._port), self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"collector-{self._port}", daemon=True,
        )
        self._thread.start()
        logger.debug("collector listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the listening socket and open connections.  Idempotent.

        Also ends an outage for good: the port is released, nothing comes back.
        In a forked child (a finalizer or atexit hook of a process that forked)
        it returns at once: it only closes the child's copies of the sockets, and
        the parent's server goes on serving.
        """
        if os.getpid() != self._pid:
            self._abandon()
            return
        with self._lifecycle:
            if not self._started:
                return
            self._started = False
            self._cancel_up_timer()
            self._release_port()
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        if self._store is not None:
            with self._lock:
                self._store.save_counters(self._counter_state())
        logger.debug("collector on port %d stopped", self._port)

    def _abandon(self) -> None:
        """Forget the server inherited through fork(), closing only this process's copies.

        No lock is taken (another thread of the parent may have held it at the
        fork) and no socket is shut down (that would end the parent's connections).
        """
        server, self._server, self._thread = self._server, None, None
        placeholder, self._placeholder = self._placeholder, None
        self._started, self._up_timer = False, None
        socks = [] if server is None else [server.socket, *list(server._open)]
        if placeholder is not None:
            socks.append(placeholder)
        for sock in socks:
            sock.close()

    # -- outages ----------------------------------------------------------

    def down(self) -> None:
        """Stop listening: from now on connections to :attr:`port` are refused.

        The listening socket and every open connection are closed (a request
        being answered at that moment may lose its answer: see
        :attr:`Request.ambiguous`).  The port stays reserved for :meth:`up` by a
        bound, non-listening socket, so no other program is given it meanwhile.
        No-op when already down or not started.
        """
        self._down(keep=None)

    def _down(self, keep: Optional[socket.socket]) -> None:
        with self._lifecycle:
            server, thread = self._server, self._thread
            if not self._started or server is None:
                return
            self._server = self._thread = None
            server.shutdown()  # serve_forever returns: nothing more is accepted
            server.server_close()  # connections to the port are refused from here
            self._placeholder = _hold_port(server.address_family, self.host, self._port)
            server.close_connections(keep)
            if thread is not None:
                thread.join(timeout=5.0)
            with self._lock:
                self._outages.append([time.time(), None])
        logger.debug("collector on port %d is down", self._port)

    def up(self) -> None:
        """Listen again on the same port after :meth:`down`.  No-op when listening or stopped."""
        with self._lifecycle:
            self._cancel_up_timer()
            if not self._started or self._server is not None:
                return
            placeholder, self._placeholder = self._placeholder, None
            try:
                try:
                    self._serve()
                except OSError:
                    if placeholder is None:
                        raise
                    # Where a bound socket blocks even SO_REUSEADDR binds (BSD), free the port first.
                    placeholder.close()
                    placeholder = None
                    self._serve()
            finally:
                if placeholder is not None:
                    placeholder.close()
            with self._lock:
                if self._outages and self._outages[-1][1] is None:
                    self._outages[-1][1] = time.time()

    def outage(self, seconds: float) -> None:
        """Go :meth:`down` now and come back :meth:`up` on the same port ``seconds`` later.

        Returns once the server is down; a timer thread brings it back (check
        :attr:`listening`, or see :attr:`outages`).  Called during an outage, it
        restarts the countdown.
        """
        if type(seconds) not in (int, float) or not seconds >= 0 or seconds == _INF:
            raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
        self._outage(float(seconds), keep=None)

    def _outage(self, seconds: float, keep: Optional[socket.socket]) -> None:
        with self._lifecycle:
            if not self._started:
                raise RuntimeError("the collector is not running")
            self._down(keep)
            self._cancel_up_timer()
            timer = threading.Timer(seconds, self.up)
            timer.name = f"collector-{self._port}-up"
            timer.daemon = True
            self._up_timer = timer
            timer.start()

    def _cancel_up_timer(self) -> None:
        timer, self._up_timer = self._up_timer, None
        if timer is not None:
            timer.cancel()

    def _release_port(self) -> None:
        placeholder, self._placeholder = self._placeholder, None
        if placeholder is not None:
            placeholder.close()

    @property
    def listening(self) -> bool:
        """True while connections are accepted: started, not stopped, not down."""
        return self._server is not None

    @property
    def outages(self) -> List[Tuple[float, Optional[float]]]:
        """(down_at, up_at) for each outage, ``time.time()``; ``up_at`` None while down."""
        with self._lock:
            return [(start, end) for start, end in self._outages]

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (also while down)."""
        return self._started

    @property
    def port(self) -> int:
        """The bound port (the configured one before :meth:`start`)."""
        return self._port

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, to use as the SDK's host."""
        return f"http://{self._url_host}:{self._port}"

    def _serves(self, host_header: str) -> bool:
        """Whether a request's ``Host`` header names this collector."""
        name = _host_name(host_header)
        if name in self.allowed_hosts:
            return True
        if not self._any_address or not name:
            return False
        try:
            ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
        except ValueError:
            return False
        return True  # bound to every address: an address literal cannot be a rebound DNS name

    # -- faults -----------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: Union[None, str, bytes, Mapping[str, Any], List[Any]] = None,
        retry_after: Optional[RetryAfter] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Answer the next ``n`` batch requests with ``status``.

        The default body is ``{"code": "fault", "message": "injected <status>"}``;
        ``retry_after`` (seconds, or a string such as an HTTP date) is sent
        verbatim as a ``Retry-After`` header; ``headers`` adds more.
        """
        fault = _make_fail(status, body, retry_after, headers)
        self._queue(fault, _check_count(n))

    def drop_next(self, n: int = 1) -> None:
        """Read the next ``n`` batch requests, then reset the connection without answering."""
        self._queue(_DROP, _check_count(n))

    def store_then_drop_next(self, n: int = 1) -> None:
        """Process the next ``n`` batch requests normally (storing valid ones), then reset
        the connection instead of answering."""
        self._queue(_STORE_DROP, _check_count(n))

    def set_chaos(
        self,
        fail_rate: float = 0.0,
        drop_rate: float = 0.0,
        status: int = 500,
        seed: Optional[int] = None,
        retry_after: Optional[RetryAfter] = None,
        fail_every: int = 0,
    ) -> None:
        """Fault batch requests at random (after any queued faults).

        Each request independently fails with ``status`` (probability
        ``fail_rate``) or is stored-then-dropped (``drop_rate``), drawn from
        ``random.Random(seed)``.  ``fail_every=N`` also fails every Nth request
        deterministically.  All zero turns chaos off.
        """
        self._set_chaos(_make_chaos(fail_rate, drop_rate, status, seed, retry_after, fail_every))

    def apply_faults(self, spec: Mapping[str, Any]) -> None:
        """Apply a fault spec as sent to ``POST /_collector/faults`` (see the module doc).

        Keys: ``fail_next``, ``drop_next``, ``store_then_drop_next`` (objects of
        the methods' keyword arguments), ``delay`` (seconds), ``chaos`` (keyword
        arguments of :meth:`set_chaos`, or null to turn it off), ``outage``
        (seconds, see :meth:`outage`; applied last).  Everything is checked before
        anything is applied; raises ValueError.
        """
        self._apply_faults(spec, keep=None)

    def _apply_faults(self, spec: Mapping[str, Any], keep: Optional[socket.socket]) -> None:
        if not isinstance(spec, Mapping):
            raise ValueError("the fault spec must be an object")
        actions: List[Any] = []

        def kwargs(key: str, allowed: Sequence[str]) -> Dict[str, Any]:
            value = spec[key]
            if value is None:
                return {}
            if not isinstance(value, Mapping):
                raise ValueError(f"{key} must be an object")
            unknown = set(value) - set(allowed)
            if unknown:
                raise ValueError(f"{key}: unknown option(s) {', '.join(sorted(unknown))}")
            return dict(value)

        for key in spec:
            if key == "fail_next":
                kw = kwargs(key, ("n", "status", "body", "retry_after", "headers"))
                fault = _make_fail(kw.get("status", 500), kw.get("body"), kw.get("retry_after"), kw.get("headers"))
                actions.append((self._queue, fault, _check_count(kw.get("n", 1))))
            elif key in ("drop_next", "store_then_drop_next"):
                kw = kwargs(key, ("n",))
                actions.append((self._queue, _DROP if key == "drop_next" else _STORE_DROP, _check_count(kw.get("n", 1))))
            elif key == "delay":
                delay = spec[key]
                if type(delay) not in (int, float) or delay < 0:
                    raise ValueError(f"delay must be a number of seconds >= 0, not {delay!r}")
                actions.append((setattr, self, "delay", float(delay)))
            elif key == "chaos":
                kw = kwargs(key, ("fail_rate", "drop_rate", "status", "seed", "retry_after", "fail_every"))
                actions.append((self._set_chaos, _make_chaos(**kw)))
            elif key == "outage":
                seconds = spec[key]
                if type(seconds) not in (int, float) or not 0 <= seconds < _INF:
                    raise ValueError(f"outage must be a finite number of seconds >= 0, not {seconds!r}")
                outage = (self._outage, float(seconds), keep)
            else:
                raise ValueError(f"unknown fault {key!r}")
        for func, *args in actions:
            func(*args)
        if "outage" in spec:
            outage[0](*outage[1:])

    def _set_chaos(self, chaos: Optional[_Chaos]) -> None:
        with self._lock:
            self._chaos = chaos

    def _queue(self, fault: _Fault, n: int) -> None:
        with self._lock:
            self._faults.append([fault, n])

    # -- records ----------------------------------------------------------

    @property
    def batches(self) -> List[Batch]:
        """Accepted batches, in arrival order (empty unless keep_messages).

        From a database (``db_path``), ``write_key`` is only a hint of the key
        (its first four characters) and ``Authorization`` is redacted in ``headers``.
        """
        if self._store is not None:
            if not self.keep_messages:
                return []
            return [
                Batch(messages, row["sent_at"], row["key_hint"], row["raw_size"], row["compressed_size"],
                      row["headers"], row["received_at"], row["envelope"] or {})
                for row, messages in self._store.batches()
            ]
        with self._lock:
            return list(self._batches)

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """Every accepted message, in arrival order (empty unless keep_messages)."""
        if self._store is not None:
            return self._store.messages() if self.keep_messages else []
        with self._lock:
            return list(self._messages)

    @property
    def refused(self) -> List[Refusal]:
        """Every non-2xx answer and dropped connection, injected faults included."""
        if self._store is not None:
            return [
                Refusal(r["status"], r["code"], r["reason"], r["received_at"], r["raw_size"], r["method"], r["path"],
                        r["request_id"])
                for r in self._store.refusals()
            ]
        with self._lock:
            return list(self._refused)

    def exchanges(self, api: Optional[str] = None, refused: Optional[bool] = None,
                  before: Optional[int] = None, limit: Optional[int] = None) -> Tuple[List[Exchange], int]:
        """Kept requests (see :class:`Exchange`), newest first, and how many match in all.

        ``api`` keeps one API's (one of :data:`API_NAMES`; ``""``: paths no API
        serves); ``refused`` True only the refused or dropped ones, False only
        the 2xx ones; ``before`` only ids below it; ``limit`` at most that many.
        From a database the summaries come without ``headers``, ``body`` and
        ``answer`` (:meth:`exchange` has them).  Empty without keep_messages.
        """
        if self._store is not None:
            rows, total = self._store.find_requests(api, refused, before, limit if limit is not None else 1 << 30)
            return [Exchange(headers={}, body=None, body_note=None, answer=None, **r) for r in rows], total
        with self._lock:
            kept = list(self._exchanges.values())
        wanted = [
            e for e in kept
            if (api is None or (e.api or "") == api) and (refused is None or e.refused == refused)
        ]
        wanted.sort(key=lambda e: e.id, reverse=True)
        total = len(wanted)
        if before is not None:
            wanted = [e for e in wanted if e.id < before]
        return [replace(e) for e in wanted[:limit]], total

    def exchange(self, exchange_id: int) -> Optional[Exchange]:
        """One kept request in full, or None."""
        if self._store is not None:
            row = self._store.request(exchange_id)
            return None if row is None else Exchange(**row)
        with self._lock:
            found = self._exchanges.get(exchange_id)
        return None if found is None else replace(found, headers=dict(found.headers))

    def batch(self, batch_id: int) -> Optional[Batch]:
        """One accepted batch by its 1-based id, without its messages (see :attr:`batches`), or None."""
        if self._store is not None:
            row = self._store.batch(batch_id)
            if row is None:
                return None
            return Batch([], row["sent_at"], row["key_hint"], row["raw_size"], row["compressed_size"],
                         row["headers"], row["received_at"], row["envelope"] or {})
        with self._lock:
            if not 1 <= batch_id <= len(self._batches):
                return None
            return replace(self._batches[batch_id - 1], messages=[])

    @property
    def store(self) -> Optional[SQLiteStore]:
        """The SQLite store when made with ``db_path``, else None."""
        return self._store

    @property
    def unique_ids(self) -> Set[str]:
        """The messageIds of every accepted message."""
        with self._lock:
            return set(self._ids)

    @property
    def duplicates(self) -> int:
        """Accepted messages whose messageId had been accepted before."""
        with self._lock:
            return self._duplicates

    @property
    def request_log(self) -> List[Request]:
        """Every ``POST /v1/batch``, in arrival order (copies; kept even without keep_messages).

        A request is logged just before its answer is written, so once a client
        has its answer the entry is there.
        """
        with self._lock:
            return [replace(r) for r in self._request_log]

    def retry_after_violations(self, slack: float = 0.02, grace: float = 0.0) -> List[Tuple[Request, Request]]:
        """Requests that arrived while a Retry-After this collector sent was still running.

        For each answer that carried a Retry-After, every request received more
        than ``grace`` seconds after that answer was written and more than
        ``slack`` seconds before the time the header pointed to is a violation.
        ``slack`` absorbs clock jitter; ``grace`` lets through requests that were
        already on their way when the answer left (a client's other threads or
        connections).  Returns ``(answer, request)`` pairs in arrival order.
        """
        log = self.request_log
        found: List[Tuple[Any, Any]] = []
        for answer in log:
            if answer.retry_until is None:
                continue
            start, end = answer.answered_at + grace, answer.retry_until - slack
            found.extend((answer, r) for r in log if start < r.received_at < end)
        found.sort(key=lambda pair: pair[1].received_at)
        return found

    @property
    def connections(self) -> int:
        """TCP connections accepted (since start or the last :meth:`reset`)."""
        with self._lock:
            return self._connections

    def stats(self) -> Dict[str, Any]:
        """Counters as a JSON-ready dict.

        ``requests`` counts every request but the control routes; ``messages``
        every accepted message (``unique`` + ``duplicates``); byte figures are over
        accepted batches (``compressed_bytes`` over the gzipped ones); ``dropped``
        counts connections reset instead of answered; ``inside_retry_after``
        counts batch requests that arrived while a Retry-After the collector sent
        was still running (see :meth:`retry_after_violations` for the details);
        ``listening`` is False during an outage, ``outages`` counts them;
        ``in_flight`` is how many of those requests are being served now (from
        when the request is counted, before any ``delay``, until it is answered
        or dropped) and ``max_in_flight`` the most there were at once.
        """
        with self._lock:
            return {
                "requests": self._requests,
                "accepted_batches": self._accepted_batches,
                "refused": self._refusal_count,
                "messages": self._message_count,
                "unique": len(self._ids),
                "duplicates": self._duplicates,
                "by_type": dict(self._by_type),
                "raw_bytes": self._raw_bytes,
                "compressed_bytes": self._compressed_bytes,
                "gzipped_batches": self._gzipped_batches,
                "largest_batch_bytes": self._largest_bytes,
                "largest_batch_messages": self._largest_messages,
                "refusals_by_code": dict(self._refusals_by_code),
                "dropped": self._dropped,
                "inside_retry_after": self._inside_retry_after,
                "connections": self._connections,
                "pending_faults": sum(n for _, n in self._faults),
                "listening": self._server is not None,
                "outages": len(self._outages),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
            }

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` messages have been accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._message_count >= count, timeout)

    def reset(self) -> None:
        """Forget every record and counter, pending faults, chaos and delay.

        An outage in progress goes on (:meth:`up` ends it); its record is forgotten.
        With ``db_path`` the database is emptied too.
        """
        with self._lock:
            self._clear()
            self.delay = 0.0
            if self._store is not None:
                self._store.clear()

    #: The counters a database keeps across restarts (see _restore).
    _PERSISTED = (
        "_requests", "_accepted_batches", "_message_count", "_duplicates", "_raw_bytes", "_compressed_bytes",
        "_gzipped_batches", "_largest_bytes", "_largest_messages", "_dropped", "_inside_retry_after",
        "_connections", "_refusal_count", "_by_type", "_refusals_by_code",
    )

    def _counter_state(self) -> Dict[str, Any]:
        """The counters to save (lock held)."""
        return {name: getattr(self, name) for name in self._PERSISTED}

    def _restore(self) -> None:
        """Start from what the database holds: counters and the set of messageIds."""
        store = self._store
        assert store is not None
        saved = store.counters()
        for name in self._PERSISTED:
            if name in saved:
                value = saved[name]
                setattr(self, name, dict(value) if isinstance(value, dict) else value)
        self._ids = set(store.message_ids())
        # what the rows say wins over counters saved a moment earlier
        self._message_count = store.message_count()
        self._refusal_count = store.refusal_count()

    def _clear(self) -> None:
        self._batches: List[Batch] = []
        self._messages: List[Dict[str, Any]] = []
        self._refused: List[Refusal] = []
        self._ids = set()
        self._by_type: Dict[str, int] = {}
        self._refusals_by_code: Dict[str, int] = {}
        self._faults: Deque[List[Any]] = deque()
        self._chaos = None
        self._requests = self._accepted_batches = self._message_count = self._duplicates = 0
        self._raw_bytes = self._compressed_bytes = self._gzipped_batches = 0
        self._largest_bytes = self._largest_messages = 0
        self._dropped = self._inside_retry_after = self._connections = 0
        self._refusal_count = 0
        # requests being served now: a reset does not end them, so their ends must still count
        self._in_flight = getattr(self, "_in_flight", 0)
        self._max_in_flight = self._in_flight
        self._retry_until = 0.0
        self._request_log: List[Request] = []
        self._outages: List[List[Any]] = []
        self._exchanges: Dict[int, Exchange] = {}  # in memory (without db_path), by id
        # ids go on counting after a reset: a request in flight across it keeps an id of its own
        self._next_exchange: int = getattr(self, "_next_exchange", 1)
        #: What the Customer.io Track API routes received.
        self.track_api = TrackAPIStore()
        #: What the Bloomreach routes received.
        self.bloomreach = BloomreachStore()
        #: The App API's seeded workspace and what its routes received.
        self.app_api = AppAPIStore()

    # -- called by the handler --------------------------------------------

    def _begin(self) -> Optional[_Fault]:
        """Count a batch request, in flight until its handler returns, and pick its fault, if any."""
        with self._lock:
            self._requests += 1
            if not getattr(_current, "in_flight", True):
                _current.in_flight = True
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if self._retry_until and time.time() < self._retry_until:
                self._inside_retry_after += 1
            if self._faults:
                entry = self._faults[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    self._faults.popleft()
                fault: _Fault = entry[0]
                return fault
            chaos = self._chaos
            if chaos is None:
                return None
            chaos.seen += 1
            if chaos.fail_every and chaos.seen % chaos.fail_every == 0:
                return chaos.fail
            draw = chaos.rng.random()
            if draw < chaos.fail_rate:
                return chaos.fail
            if draw < chaos.fail_rate + chaos.drop_rate:
                return _STORE_DROP
            return None

    def _landed(self) -> None:
        """The request this handler thread counted in :meth:`_begin` is answered (or dropped)."""
        if getattr(_current, "in_flight", False):
            _current.in_flight = False
            with self._lock:
                self._in_flight -= 1

    def _count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _refuse(self, status: int, code: str, reason: str, raw_size: int, received_at: float) -> None:
        method = getattr(_current, "method", "")
        path = getattr(_current, "path", "")
        _current.refused = True
        exchange: Optional[Exchange] = getattr(_current, "exchange", None)
        request_id = None
        if exchange is not None:
            request_id = exchange.id
            if exchange.reason is None or (exchange.code == "fault" and code != "fault"):
                exchange.code, exchange.reason = code, reason
        with self._lock:
            self._refusal_count += 1
            self._refusals_by_code[code] = self._refusals_by_code.get(code, 0) + 1
            if status == 0:
                self._dropped += 1
            if self._store is not None:
                self._store.add_refusal(received_at, status, code, reason, raw_size, method, path,
                                        self._counter_state(), request_id)
            else:
                self._refused.append(Refusal(status, code, reason, received_at, raw_size, method, path, request_id))

    def _open_exchange(self, api: Optional[str], method: str, path: str, query: str,
                       headers: Sequence[Tuple[str, str]], body: bytes, encoding: str,
                       received_at: float) -> Exchange:
        """Begin keeping one request (its id is taken now; it is kept by :meth:`_close_exchange`)."""
        if self._store is not None:
            number = self._store.next_request_id()
        else:
            with self._lock:
                number = self._next_exchange
                self._next_exchange += 1
        if api == "Data Pipelines" and method == "POST":
            text: Optional[str] = None  # parsed later: an accepted batch keeps its envelope, a refused one this
            note: Optional[str] = None
        else:
            text, note = _body_text(body, encoding)
        return Exchange(number, received_at, api, method, path, redact_query(query),
                        redact_headers(dict(headers)), text, len(body), note)

    def _close_exchange(self, exchange: Exchange, status: int, answer: bytes, body: bytes, encoding: str) -> None:
        """Keep ``exchange`` as answered with ``status`` (0: dropped) and ``answer``;
        ``body`` and ``encoding`` are the request's, as received."""
        exchange.status = status
        if answer:
            exchange.answer = answer[:MAX_KEPT_ANSWER].decode("utf-8", "replace")
        if exchange.reason is None:
            exchange.reason = _answer_reason(status, answer)
        if exchange.body is None and exchange.batch_id is None:
            exchange.body, exchange.body_note = _body_text(body, encoding)  # a /v1/batch that was not accepted
            if exchange.body and _WRITE_KEY_MEMBER.search(exchange.body):
                exchange.body = _WRITE_KEY_MEMBER.sub(r'\1"<redacted>"', exchange.body)
                exchange.body_note = (exchange.body_note + "; " if exchange.body_note else "") + "writeKey redacted"
        elif exchange.batch_id is not None:
            exchange.body_note = "accepted: its messages and envelope are kept with its batch"
        if self._store is not None:
            row = dict(exchange.__dict__)
            self._store.add_request(row)
            return
        with self._lock:
            self._exchanges[exchange.id] = exchange

    def _open_retry_window(self, fault: _Fault) -> Optional[float]:
        """Note until when the Retry-After this fault is about to send asks clients to wait."""
        if fault.retry_after is None:
            return None
        until = _parse_retry_after(fault.retry_after)
        if until is not None:
            with self._lock:
                self._retry_until = until
        return until

    def _log_request(self, record: Request) -> None:
        with self._lock:
            self._request_log.append(record)

    def _unanswered(self, record: Request) -> None:
        with self._lock:
            record.status = 0

    def _accept(self, batch: Batch, stored_then_dropped: bool) -> int:
        """Record an accepted batch; returns its 1-based id."""
        messages = batch.messages
        store = self._store
        with self._changed:
            ids, by_type = self._ids, self._by_type
            duplicates = 0
            flags: List[bool] = []
            for m in messages:
                mid = m["messageId"]
                if mid in ids:
                    duplicates += 1
                    if store is not None:
                        flags.append(True)
                else:
                    ids.add(mid)
                    if store is not None:
                        flags.append(False)
                t = m["type"]
                by_type[t] = by_type.get(t, 0) + 1
            self._duplicates += duplicates
            self._accepted_batches += 1
            self._message_count += len(messages)
            self._raw_bytes += batch.raw_size
            if batch.compressed_size is not None:
                self._compressed_bytes += batch.compressed_size
                self._gzipped_batches += 1
            if batch.raw_size > self._largest_bytes:
                self._largest_bytes = batch.raw_size
            if len(messages) > self._largest_messages:
                self._largest_messages = len(messages)
            if stored_then_dropped:
                self._dropped += 1
            batch_id = self._accepted_batches
            if store is not None:
                batch_id = store.add_batch(batch.received_at, batch.sent_at, batch.write_key, batch.raw_size,
                                           batch.compressed_size, batch.headers, messages, flags,
                                           self.keep_messages, self._counter_state(), batch.envelope)
            elif self.keep_messages:
                self._batches.append(batch)
                self._messages.extend(messages)
                batch_id = len(self._batches)
            self._changed.notify_all()
        return batch_id

    def _messages_since(self, since: int) -> bytes:
        if self._store is not None:
            return self._store.messages_json(since) if self.keep_messages else b"[]"
        with self._lock:
            return _json(self._messages[since:])


class _Server(ThreadingHTTPServer):
    """The threaded HTTP server behind a :class:`Collector`; tracks open connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], collector: Collector) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.collector = collector
        self._open: Set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn): skip that.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[assignment]  # an (host, port)

    def get_request(self) -> Tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        with self._open_lock:
            self._open.add(sock)
        self.collector._count_connection()
        return sock, addr

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse a connection past ``max_connections`` with a 503 (then it is closed)."""
        with self._open_lock:
            crowded = len(self._open) > self.collector.max_connections
        if crowded:
            logger.debug("refused a connection from %s: %d open", client_address, self.collector.max_connections)
            try:
                request.setblocking(False)  # the accepting thread never waits on a refused client
                request.send(_BUSY)
            except OSError:
                pass
        return not crowded

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self, keep: Optional[socket.socket] = None) -> None:
        """Shut down every open connection but ``keep``."""
        with self._open_lock:
            open_now = [sock for sock in self._open if sock is not keep]
            self._open.difference_update(open_now)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


def _hold_port(family: int, host: str, port: int) -> Optional[socket.socket]:
    """A bound, non-listening socket on (host, port), or None if it cannot be had.

    Connections to the port are refused, and no one else is given the port (a
    bind without SO_REUSEADDR fails, ``bind(0)`` skips it), while a listener
    with SO_REUSEADDR can still bind it (Linux): what an outage needs.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, each one bounded by a timeout and all of them by a deadline.

    A socket timeout alone bounds each read: a client sending one byte just
    inside it holds the connection for ever.  The deadline bounds the request.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._per_read: Optional[float] = None
        self._deadline: Optional[float] = None

    def limit(self, per_read: float, total: Optional[float]) -> None:
        """From now on each read waits at most ``per_read`` s, all of them ``total`` s (None: no bound)."""
        self._per_read = per_read
        self._deadline = None if total is None else time.monotonic() + total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._per_read
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("the request took longer than request_timeout to arrive")
            timeout = remaining if timeout is None else min(timeout, remaining)
        self._sock.settimeout(timeout)
        return self._sock.recv_into(buffer)


class _Drop(Exception):
    """Raised by a handler to reset the connection without answering (an injected fault)."""


#: The request each handler thread is serving (method, path), for the records.
_current = threading.local()


_CONTROL = "/_collector/"
#: The code a refusal is recorded with when its answer names none.
_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                413: "payload_too_large", 415: "unsupported_encoding"}
#: The inspector page's own paths (not API requests: not kept as exchanges).
_PAGE_PATHS = frozenset({"/", "/inspector", "/favicon.ico"})
_ROUTES: Dict[str, Dict[str, str]] = {
    "/v1/batch": {"POST": "_post_batch"},
    "/_collector/stats": {"GET": "_get_stats"},
    "/_collector/messages": {"GET": "_get_messages"},
    "/_collector/reset": {"POST": "_post_reset"},
    "/_collector/faults": {"POST": "_post_faults"},
    # the inspector page and what it reads (see inspector.py)
    "/": {"GET": "_get_inspector"},
    "/inspector": {"GET": "_get_inspector"},
    "/favicon.ico": {"GET": "_get_favicon"},  # browsers ask; not a refusal worth recording
    "/_collector/events": {"GET": "_get_inspector_data"},
    "/_collector/event": {"GET": "_get_inspector_data"},
    "/_collector/batches": {"GET": "_get_inspector_data"},
    "/_collector/refusals": {"GET": "_get_inspector_data"},
    "/_collector/requests": {"GET": "_get_inspector_data"},
    "/_collector/request": {"GET": "_get_inspector_data"},
    "/_collector/batch": {"GET": "_get_inspector_data"},
    "/_collector/export": {"GET": "_get_export"},
    **{f"/_collector/static/{name}": {"GET": "_get_static"} for name in _inspector.STATIC_FILES},
}
_MAX_LINE = 65536
_MAX_HEADERS = 100
#: A chunk size line: at most 16 hex digits, then extensions (bounded by the line length).
_MAX_CHUNK_LINE = 1024
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")
_OK_BODY = b'{"success":true}'
_BUSY_BODY = _error("too_many_connections", "the collector is serving as many connections as it takes; retry")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
#: The handlers of Bloomreach's routes, whose bodies may be larger (see _Handler._route).
_BLOOMREACH_HANDLERS = frozenset(handler for _, _, handler in BloomreachRoutes.ROUTES)
_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_OK_BODY), _OK_BODY)
)


def _api_of(path: str) -> Optional[str]:
    """Which API a request path belongs to (one of API_NAMES), whatever its method; None for none."""
    if path == "/v1/batch":
        return "Data Pipelines"
    for routes, name in ((TrackAPIRoutes, "Track API"), (BloomreachRoutes, "Bloomreach"), (AppAPIRoutes, "App API")):
        for _, pattern, _ in routes.ROUTES:
            if pattern.fullmatch(path):
                return name
    return None


class _Handler(TrackAPIRoutes, BloomreachRoutes, AppAPIRoutes, BaseHTTPRequestHandler):
    """Serves one connection: reads each request fully, answers with one write."""

    #: Routes with path parameters, from the API mixins: (method, pattern, handler name).
    _API_ROUTES = TrackAPIRoutes.ROUTES + BloomreachRoutes.ROUTES + AppAPIRoutes.ROUTES

    protocol_version = "HTTP/1.1"
    server_version = "customerio-collector"
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted socket
    server: _Server

    # -- plumbing -----------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self._parser = _BodyParser()
        # Reads through a reader that bounds each read and each whole request (see _DeadlineReader);
        # the stdlib's file object is closed first, or it would keep the socket open after close().
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        """Read one request's head, then route it (``_route`` reads the body)."""
        self.close_connection = True  # until a whole head has been read
        _current.exchange, _current.api_request = None, False
        collector = self.server.collector
        try:
            # Idle between requests up to idle_timeout; once one has begun, each read
            # may wait read_timeout and the whole request request_timeout: a stalled
            # or trickling request does not hold a thread forever.
            self._reader.limit(collector.idle_timeout, None)
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # a BufferedReader
                return
            self._reader.limit(collector.read_timeout, collector.request_timeout)
            problem = self._read_head()
        except OSError:
            return
        if problem == "":
            return  # the client closed the connection
        if problem is not None:
            self.request_version = "HTTP/1.1"
            self._send(400, _error("bad_request", problem))
            return
        _current.in_flight = False  # set by collector._begin, cleared by collector._landed
        try:
            self._route()
        except _Drop:
            self._reset_connection()
        except OSError:
            self.close_connection = True
        except Exception:  # a bug here must not kill the connection silently
            logger.exception("collector failed on %s %s", self.command, self.path.partition("?")[0])
            self.close_connection = True
            self._send(500, _error("internal", "the collector failed on this request"))
        finally:
            self._keep_exchange(0, b"")  # a request whose answer could not be written: kept as unanswered
            collector._landed()

    def _read_head(self) -> Optional[str]:
        """Parse the request line and headers (the stdlib's email parser is slow).

        Sets command, path, request_version, _fields (lower-case names), and
        close_connection; answers ``Expect: 100-continue``.  Returns None, ""
        when the connection closed first, or what is wrong with the request.
        """
        self.command = self.path = ""
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return ""
        if len(line) > _MAX_LINE:
            return "request line too long"
        self.requestline = line.decode("latin-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return "malformed request line"
        self.command, self.path, self.request_version = words
        headers: Dict[str, str] = {}
        items: List[Tuple[str, str]] = []
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                return ""
            if len(line) > _MAX_LINE or len(items) >= _MAX_HEADERS:
                return "request head too large"
            text = line.decode("latin-1")
            name, colon, value = text.partition(":")
            name, value = name.strip(), value.strip()
            if not colon or not name:
                return "malformed header line"
            lower = name.lower()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
            items.append((name, value))
        self._fields = headers
        self._header_items = items
        connection = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.0":
            self.close_connection = "keep-alive" not in connection
        else:
            self.close_connection = "close" in connection
            if headers.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def _keep_exchange(self, status: int, answer: bytes) -> None:
        """Keep the request being answered (see Exchange), once, before its answer leaves.

        An API request answered 4xx or 5xx that its route did not record as refused
        (Bloomreach's routes answer their refusals themselves) is recorded here, so
        every API's refusals are in ``collector.refused``.
        """
        if status >= 400 and getattr(_current, "api_request", False) and not getattr(_current, "refused", True):
            code = _ERROR_CODES.get(status, "error")
            try:
                doc = json.loads(answer[:MAX_KEPT_ANSWER]) if answer else None
                if isinstance(doc, dict) and isinstance(doc.get("code"), str):
                    code = doc["code"]
            except ValueError:
                pass
            body = getattr(_current, "request_body", (b"", ""))[0]
            self.server.collector._refuse(status, code, _answer_reason(status, answer) or f"answered {status}",
                                          len(body), time.time())
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            _current.exchange = None
            self.server.collector._close_exchange(exchange, status, answer, *_current.request_body)

    def _send(self, status: int, body: bytes, headers: Sequence[Tuple[str, str]] = (),
              content_type: str = "application/json") -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %d", self.command, self.path.partition("?")[0], status)
        self._keep_exchange(status, body)
        self.connection.settimeout(self.server.collector.read_timeout)  # a late read left less
        if status == 200 and body is _OK_BODY and not headers and not self.close_connection \
                and self.request_version == "HTTP/1.1":
            self.wfile.write(_OK)
            return
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _reset_connection(self) -> None:
        """Close with a TCP reset (SO_LINGER 0) so the client sees the connection aborted."""
        self._keep_exchange(0, b"")
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # then it closes with a FIN: still no answer
        self.connection.close()

    def _read_body(self, limit: Optional[int] = None) -> Optional[bytes]:
        """The whole request body, or None when it cannot be read (then the connection
        closes, after an answer when there is one to give).  Over ``limit`` bytes
        (default ``max_body_bytes``): 413."""
        if limit is None:
            limit = self.server.collector.max_body_bytes
        if self._fields.get("transfer-encoding", "").strip().lower() == "chunked":
            return self._read_chunked(limit)
        length_header = self._fields.get("content-length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._send(400, _error("bad_request", "bad Content-Length"))
            return None
        if length > limit:
            return self._too_large(f"body is {length} bytes on the wire, over the {limit}-byte limit")
        body = self.rfile.read(length)
        return body if len(body) == length else None  # short: the client went away

    def _too_large(self, reason: str) -> Optional[bytes]:
        self.close_connection = True
        self._send(413, _error("payload_too_large", reason))
        return None

    def _bad_chunking(self, reason: str) -> Optional[bytes]:
        self.close_connection = True
        self._send(400, _error("bad_request", reason))
        return None

    def _read_chunked(self, limit: int) -> Optional[bytes]:
        parts: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
            if not line:
                return None  # the client went away
            m = _CHUNK_SIZE.fullmatch(line)
            if m is None:
                return self._bad_chunking("bad chunk size line")
            size = int(m.group(1), 16)
            if size == 0:
                break
            total += size
            if total > limit:
                return self._too_large(f"chunked body is over the {limit}-byte limit")
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                return None
            if chunk[size:] != b"\r\n":
                return self._bad_chunking("chunk data not followed by CRLF")
            parts.append(chunk[:size])
        for _ in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return b"".join(parts)
        return self._bad_chunking("too many trailer lines")

    def _route(self) -> None:
        target = self.path
        hosts = [self._fields.get("host")]
        if "://" in target.split("?", 1)[0]:  # absolute form, as sent to a proxy
            authority, _, rest = target.split("://", 1)[1].partition("/")
            target = "/" + rest
            hosts.append(authority)
        path, _, query = target.partition("?")
        _current.method, _current.path = self.command, path
        _current.exchange = None
        # an API request answered with an error its route did not record as refused is recorded in _send
        _current.api_request, _current.refused = not path.startswith(_CONTROL) and path not in _PAGE_PATHS, False
        collector = self.server.collector
        methods = _ROUTES.get(path)
        api = None
        if methods is None:
            for api_method, pattern, handler in self._API_ROUTES:
                match = pattern.fullmatch(path)
                if match is not None and api_method == self.command:
                    api = handler, match
                    break
        limit = collector.max_body_bytes
        if api is not None and api[0] in _BLOOMREACH_HANDLERS:
            limit = max(limit, _bloomreach.MAX_WIRE_BYTES)
        body = self._read_body(limit)
        if body is None:
            self.close_connection = True
            return
        control = path.startswith(_CONTROL)
        encoding = (self._fields.get("content-encoding") or "identity").strip().lower()
        _current.request_body = (body, encoding)
        if collector.keep_messages and _current.api_request:
            _current.exchange = collector._open_exchange(
                _api_of(path), self.command, path, query, self._header_items, body, encoding, time.time())
        refusal: Optional[Tuple[int, str, str]] = None
        foreign = next((h for h in hosts if h is not None and not collector._serves(h)), None)
        if foreign is not None:
            refusal = 421, "misdirected_request", f"host {foreign[:100]!r} is not an address this collector serves"
        elif control and self.command not in ("GET", "HEAD"):
            refusal = self._cross_site()
        if refusal is not None:
            status, code, reason = refusal
            if not control:
                collector._count_request()
                collector._refuse(status, code, reason, len(body), time.time())
            self._send(status, _error(code, reason))
            return
        if api is not None:
            getattr(self, api[0])(body, query, api[1])
            return
        if methods is None or self.command not in methods:
            status, code = (404, "not_found") if methods is None else (405, "method_not_allowed")
            reason = f"no route {self.command} {path}"
            if not control:
                collector._count_request()
                collector._refuse(status, code, reason, len(body), time.time())
            self._send(status, _error(code, reason), () if methods is None else (("Allow", ", ".join(methods)),))
            return
        getattr(self, methods[self.command])(body, query)

    def _cross_site(self) -> Optional[Tuple[int, str, str]]:
        """Why a state-changing control request may come from another site (403), or None.

        A browser sends a form or a script's "simple" request cross-site without
        asking, but never with ``Content-Type: application/json``, and always with
        its page's ``Origin``.
        """
        origin = self._fields.get("origin")
        if origin is not None and origin.strip().lower() != "http://" + self._fields.get("host", "").strip().lower():
            return 403, "forbidden", f"Origin {origin[:100]!r} is not this collector's"
        if self._fields.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            return 403, "forbidden", "control requests must be sent with Content-Type: application/json"
        return None

    # -- /v1/batch --------------------------------------------------------

    def _injected(self, body: bytes) -> Tuple[Request, Optional[_Fault], bool]:
        """Begin a request on an API route: count it, apply ``delay`` and the next fault.

        Returns ``(record, fault, answered)``.  ``answered`` is True when an
        injected failure was sent (the route must not answer again).  A "drop"
        fault resets the connection at once (raises ``_Drop``); a
        "store then drop" fault is returned so the route can store the request
        and then call ``self._answer(record, 0)`` instead of answering.
        """
        collector = self.server.collector
        received_at = time.time()
        record = Request(received_at)
        fault = collector._begin()
        record.fault = fault is not None
        if collector.delay > 0:
            time.sleep(collector.delay)
        if fault is not None and fault.kind == "fail":
            collector._refuse(fault.status, "fault", f"injected {fault.status}", len(body), received_at)
            # before answering: the client may be quick
            record.retry_until = collector._open_retry_window(fault)
            if fault.retry_after is not None:
                record.retry_after = str(fault.retry_after)
            self._answer(record, fault.status, fault.body, fault.headers, fault.content_type)
            return record, fault, True
        if fault is not None and fault.kind == "drop":
            collector._refuse(0, "fault", "connection dropped", len(body), received_at)
            self._answer(record, 0)
        return record, fault, False

    def _post_batch(self, body: bytes, query: str) -> None:
        collector = self.server.collector
        record, fault, answered = self._injected(body)
        if answered:
            return
        received_at = record.received_at
        outcome = self._check_batch(body, received_at)
        if isinstance(outcome, Batch):
            batch_id = collector._accept(outcome, stored_then_dropped=fault is not None)
            exchange = getattr(_current, "exchange", None)
            if exchange is not None:
                exchange.batch_id = batch_id
            record.stored, record.messages = True, len(outcome.messages)
            self._answer(record, 0 if fault is not None else 200, _OK_BODY)
            return
        status, code, reason, raw_size = outcome
        if fault is not None:  # store-then-drop of a batch that could not be stored
            collector._refuse(0, "fault", f"connection dropped; would have answered {status} {code}",
                              raw_size, received_at)
            self._answer(record, 0)
        collector._refuse(status, code, reason, raw_size, received_at)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("refused batch: %d %s: %s", status, code, reason)
        self._answer(record, status, _error(code, reason))

    def _answer(self, record: Request, status: int, body: bytes = b"",
                headers: Sequence[Tuple[str, str]] = (), content_type: str = "application/json") -> None:
        """Log ``record`` and answer with ``status``; status 0 resets the connection (raises _Drop)."""
        collector = self.server.collector
        self._keep_exchange(status, body)  # first: between the log and the write as little as before
        record.answered_at = time.time()
        record.status = status
        collector._log_request(record)
        if status == 0:
            raise _Drop
        try:
            self._send(status, body, headers, content_type)
        except OSError:
            collector._unanswered(record)  # e.g. the collector went down meanwhile
            raise

    def _check_batch(self, body: bytes, received_at: float) -> Union[Batch, Tuple[int, str, str, int]]:
        """The Batch to record, or (status, code, reason, raw_size) to refuse it."""
        collector = self.server.collector
        key = self._write_key()
        if key is None:
            return 401, "unauthorized", "missing or malformed HTTP Basic authorization", len(body)
        if collector.write_keys is not None and key not in collector.write_keys:
            return 401, "unauthorized", "unknown write key", len(body)

        encoding = (self._fields.get("content-encoding") or "identity").strip().lower()
        compressed_size: Optional[int] = None
        raw = body
        raw_size = len(body)
        if encoding in ("gzip", "x-gzip"):
            compressed_size = len(body)
            try:
                raw, raw_size = _gunzip(body, MAX_BODY_BYTES)
            except zlib.error as exc:
                return 400, "bad_request", f"body is not valid gzip: {exc}", len(body)
        elif encoding != "identity":
            return 415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported", len(body)
        if raw_size > MAX_BODY_BYTES:
            return (413, "payload_too_large",
                    f"body is {raw_size} bytes, over the {MAX_BODY_BYTES}-byte limit", raw_size)

        parser = self._parser
        spans: Optional[List[int]] = None
        try:
            if raw_size > MAX_MESSAGE_BYTES:
                doc, text, spans = parser.parse(raw)
            else:
                doc = parser.loads(raw)
        except (ValueError, RecursionError) as exc:
            return 400, "bad_request", f"body is not valid JSON: {exc}", raw_size
        if type(doc) is not dict:
            return 400, "bad_request", "body must be a JSON object", raw_size
        messages = doc.get("batch")
        if type(messages) is not list:
            return 400, "bad_request", "body needs a batch list", raw_size
        sent_at = doc.get("sentAt")
        if sent_at is not None and type(sent_at) is not str:
            return 400, "bad_request", "sentAt must be a string (an ISO-8601 time) when present", raw_size
        for i, m in enumerate(messages):
            problem = message_problem(m)
            if problem is not None:
                return 400, "invalid_message", f"batch[{i}]: {problem}", raw_size
        if spans is None and raw_size + parser.growth > MAX_MESSAGE_BYTES:
            _, text, spans = parser.parse(raw)  # small, but with numbers that grow re-encoded
        if spans is not None:
            # Encode only the messages whose bound (see _BodyParser) passes the limit.
            room = MAX_MESSAGE_BYTES - parser.growth
            if not text.isascii():
                room //= 4
            for i, span in enumerate(spans):
                if span > room:
                    size = _encoded_size(messages[i])
                    if size > MAX_MESSAGE_BYTES:
                        return (400, "invalid_message",
                                f"batch[{i}]: message is {size} bytes encoded, "
                                f"over the {MAX_MESSAGE_BYTES}-byte limit", raw_size)
        headers = dict(self._header_items) if collector.keep_messages else {}
        envelope = {k: ("<redacted>" if k == "writeKey" else v) for k, v in doc.items() if k != "batch"}
        return Batch(messages, sent_at, key, raw_size, compressed_size, headers, received_at, envelope)

    def _write_key(self) -> Optional[str]:
        header = self._fields.get("authorization")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(":")[0] or None

    # -- control routes -------------------------------------------------------

    def _get_stats(self, body: bytes, query: str) -> None:
        self._send(200, _json(self.server.collector.stats()))

    def _get_messages(self, body: bytes, query: str) -> None:
        collector = self.server.collector
        if not collector.keep_messages:
            self._send(409, _error("not_kept", "this collector runs with keep_messages=False"))
            return
        values = parse_qs(query).get("since", ["0"])
        try:
            since = int(values[-1])
            if since < 0:
                raise ValueError
        except ValueError:
            self._send(400, _error("bad_request", "since must be an integer >= 0"))
            return
        self._send(200, collector._messages_since(since))

    def _get_inspector(self, body: bytes, query: str) -> None:
        self._send(200, _inspector.page(), _inspector.PAGE_HEADERS, "text/html; charset=utf-8")

    def _get_favicon(self, body: bytes, query: str) -> None:
        self._send(204, b"", (), "image/x-icon")

    def _get_static(self, body: bytes, query: str) -> None:
        name = self.path.partition("?")[0].rsplit("/", 1)[-1]
        data, content_type = _inspector.static_file(name)
        self._send(200, data, _inspector.STATIC_HEADERS, content_type)

    def _get_inspector_data(self, body: bytes, query: str) -> None:
        what = self.path.partition("?")[0].rsplit("/", 1)[-1]
        status, data = _inspector.answer(self.server.collector, what, parse_qs(query))
        self._send(status, data, _inspector.DATA_HEADERS)

    def _get_export(self, body: bytes, query: str) -> None:
        status, data = _inspector.export(self.server.collector, parse_qs(query))
        if status != 200:
            self._send(status, data, _inspector.DATA_HEADERS)
            return
        self._send(200, data, _inspector.EXPORT_HEADERS, "application/x-ndjson")

    def _post_reset(self, body: bytes, query: str) -> None:
        self.server.collector.reset()
        self._send(200, _OK_BODY)

    def _post_faults(self, body: bytes, query: str) -> None:
        collector = self.server.collector
        try:
            spec = json.loads(body or b"{}")
            # An outage keeps this connection open until the answer is out, then closes it.
            collector._apply_faults(spec, keep=self.connection)
        except (ValueError, TypeError) as exc:
            self._send(400, _error("bad_request", str(exc)))
            return
        stats = collector.stats()
        if not stats["listening"]:
            self.close_connection = True
        self._send(200, _json({"success": True, "pending_faults": stats["pending_faults"],
                               "listening": stats["listening"]}))

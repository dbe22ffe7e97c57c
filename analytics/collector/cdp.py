"""The collector's Customer.io Data Pipelines route: ``POST /v1/batch`` (Segment spec).

Checked in this order (after any injected fault):

1. HTTP Basic auth, the write key as the user name (password ignored).  Missing
   or malformed, or a key outside ``write_keys`` when that set is given: 401
   ``{"code": "unauthorized"}``.  The key is never echoed or logged.
2. ``Content-Encoding: gzip`` is un-gzipped (a bad stream: 400 ``bad_request``;
   any other encoding but ``identity``: 415 ``unsupported_encoding``).
3. More than :data:`MAX_BODY_BYTES` (500,000) bytes after un-gzipping: 413 ``payload_too_large``.
4. The body must be a JSON object with a ``batch`` list (otherwise 400
   ``bad_request``).  ``sentAt`` is optional, as in the Data Pipelines API; when
   present it must be a string (400 otherwise).  A batch without one is recorded
   with ``Batch.sent_at`` None (its ``envelope`` has no ``sentAt``).  Every message must be valid (see
   :func:`message_problem`) and at most :data:`MAX_MESSAGE_BYTES` (32,768) bytes as compact UTF-8 JSON
   (``json.dumps(m, separators=(",", ":"), ensure_ascii=False)``; measured
   exactly, though a message is only re-encoded when its length in the body
   says it might be over).  One bad message refuses the whole request with 400
   ``invalid_message`` naming it, e.g. ``batch[3]: track needs an event``.
5. Otherwise 200 ``{"success": true}`` and the batch is recorded.

The limits are the library's own (:mod:`analytics.formats.cdp`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime
from typing import Any, Dict, FrozenSet, List, Optional, Protocol, Tuple, Union

from ..formats.cdp import MAX_BODY_BYTES, MAX_MESSAGE_BYTES
from .http import OK_BODY, BodyError, error_body
from .records import Batch
from .routing import Call, Route, fixed

__all__ = ["DataPipelinesRoutes", "message_problem", "MAX_BODY_BYTES", "MAX_MESSAGE_BYTES", "MESSAGE_TYPES"]

logger = logging.getLogger("customerio.collector")

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_NEEDS_USER = frozenset({"identify", "track", "page", "screen"})
_OBJECT_FIELDS = ("traits", "properties", "context", "integrations")
_ABSENT: Dict[str, Any] = {}  # what message_problem reads for a missing object field
_NO_TIMESTAMP = "2000-01-01T00:00:00"
_INF = float("inf")
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


def _nonempty(value: Any) -> bool:
    return type(value) is str and bool(value)


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
    if not _nonempty(get("messageId")):
        return "messageId must be a non-empty string"
    if t in _NEEDS_USER:
        if not _nonempty(get("userId")) and not _nonempty(get("anonymousId")):
            return f"{t} needs a userId or an anonymousId"
        if t == "track" and not _nonempty(get("event")):
            return "track needs an event"
    elif t == "group":
        if not _nonempty(get("groupId")):
            return "group needs a groupId"
    elif not _nonempty(get("previousId")) or not _nonempty(get("userId")):
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


_WS_RE = re.compile(r"[ \t\n\r]*")
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_MEMBER_END = re.compile(r"[ \t\n\r]*([,}])[ \t\n\r]*")
_ITEM_END = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")


def _skip_ws(text: str, i: int = 0) -> int:
    """The index of the first character at or after ``i`` that is not JSON whitespace."""
    found = _WS_RE.match(text, i)
    return i if found is None else found.end()  # (the pattern matches the empty string)


class _BodyParser:
    """Parses a JSON body like ``json.loads``, and also measures, for the 32 KB check,
    each ``batch`` element's length in the text and how much longer than written the
    body's numbers get when re-encoded.

    Compact re-encoding never lengthens strings (escapes only shrink), keys, ints or
    constants, and drops whitespace; only a float written with an exponent or 17+
    digits can come out longer (``1e5`` -> ``100000.0``).  So a message's compact
    UTF-8 size is at most its length in the body (x4 when the body is not ASCII)
    plus that growth, and only messages for which that bound passes 32,768 bytes
    need encoding.  One parser per thread (it is not thread-safe).
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
        spans: List[int] = []
        i = _skip_ws(text)
        if not text.startswith("{", i):
            doc, i = self._decode(text, i)  # not an object: parsed only to say what it is
        else:
            doc = {}
            i = _skip_ws(text, i + 1)
            closed = text.startswith("}", i)
            if closed:
                i += 1
            while not closed:
                if not text.startswith('"', i):
                    raise ValueError(f"expected a property name at char {i}")
                key, i = self._decode(text, i)
                m = _COLON.match(text, i)
                if m is None:
                    raise ValueError(f"expected ':' at char {i}")
                i = m.end()
                if key == "batch" and text.startswith("[", i):
                    doc[key], spans, i = self._array(text, i)
                else:
                    doc[key], i = self._decode(text, i)
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


class _Settings(Protocol):
    """What the route reads of its collector."""

    write_keys: Optional[FrozenSet[str]]

    @property
    def keep_messages(self) -> bool: ...


#: (status, code, reason, raw_size) of a refused batch.
Refused = Tuple[int, str, str, int]


class DataPipelinesRoutes:
    """``POST /v1/batch`` for the collector ``owner`` (its ``write_keys`` and ``keep_messages``)."""

    def __init__(self, owner: _Settings) -> None:
        self.owner = owner
        self._local = threading.local()  # one body parser per handler thread

    def routes(self) -> List[Route]:
        return [fixed("POST", "/v1/batch", self.post_batch, "Data Pipelines")]

    def _parser(self) -> _BodyParser:
        parser: Optional[_BodyParser] = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = _BodyParser()
        return parser

    def post_batch(self, call: Call, match: "re.Match[str]") -> None:
        record, fault, answered = call.begin()
        if answered:
            return
        outcome = self.check(call, record.received_at)
        if isinstance(outcome, Batch):
            batch_id = call.records.accept(outcome, stored_then_dropped=fault is not None)
            if call.exchange is not None:
                call.exchange.batch_id = batch_id
            record.stored, record.messages = True, len(outcome.messages)
            call.answer(record, 0 if fault is not None else 200, OK_BODY)
            return
        status, code, reason, raw_size = outcome
        if fault is not None:  # store-then-drop of a batch that could not be stored
            call.drop_stored(record, f"{status} {code}", raw_size)
        call.refuse(status, code, reason, raw_size, record.received_at)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("refused batch: %d %s: %s", status, code, reason)
        call.answer(record, status, error_body(code, reason))

    def check(self, call: Call, received_at: float) -> Union[Batch, Refused]:
        """The Batch to record, or (status, code, reason, raw_size) to refuse it."""
        request = call.request
        credentials = request.basic_auth()
        key = credentials[0] if credentials is not None else ""
        if not key:
            return 401, "unauthorized", "missing or malformed HTTP Basic authorization", len(request.body)
        write_keys = self.owner.write_keys
        if write_keys is not None and key not in write_keys:
            return 401, "unauthorized", "unknown write key", len(request.body)
        try:
            raw, raw_size, compressed_size = call.decoded_body(MAX_BODY_BYTES)
        except BodyError as exc:
            return exc.status, exc.code, exc.reason, exc.raw_size
        parsed = self._parse(raw, raw_size)
        if not isinstance(parsed, dict):
            return parsed[0], parsed[1], parsed[2], raw_size
        headers = dict(request.header_items) if self.owner.keep_messages else {}
        envelope = {k: ("<redacted>" if k == "writeKey" else v) for k, v in parsed.items() if k != "batch"}
        return Batch(parsed["batch"], parsed.get("sentAt"), key, raw_size, compressed_size, headers, received_at,
                     envelope)

    def _parse(self, raw: bytes, raw_size: int) -> Union[Dict[str, Any], Tuple[int, str, str]]:
        """The body's document when it is a valid batch, else (status, code, reason)."""
        parser = self._parser()
        spans: Optional[List[int]] = None
        text = ""
        try:
            if raw_size > MAX_MESSAGE_BYTES:
                doc, text, spans = parser.parse(raw)
            else:
                doc = parser.loads(raw)
        except (ValueError, RecursionError) as exc:
            return 400, "bad_request", f"body is not valid JSON: {exc}"
        if type(doc) is not dict:
            return 400, "bad_request", "body must be a JSON object"
        messages = doc.get("batch")
        if type(messages) is not list:
            return 400, "bad_request", "body needs a batch list"
        sent_at = doc.get("sentAt")
        if sent_at is not None and type(sent_at) is not str:
            return 400, "bad_request", "sentAt must be a string (an ISO-8601 time) when present"
        for i, m in enumerate(messages):
            problem = message_problem(m)
            if problem is not None:
                return 400, "invalid_message", f"batch[{i}]: {problem}"
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
                                f"batch[{i}]: message is {size} bytes encoded, over the {MAX_MESSAGE_BYTES}-byte limit")
        return doc

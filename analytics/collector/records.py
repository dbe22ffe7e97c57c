"""What the collector keeps: accepted batches, refusals, requests as received, counters.

:class:`Records` holds them all under one lock, in memory or (with a
:class:`~analytics.collector.storage.SQLiteStore`) in an SQLite file, and
hands out copies.  The record types (:class:`Batch`, :class:`Refusal`,
:class:`Exchange`, :class:`Request`) are what :class:`~analytics.collector.Collector`
returns.  The API routes write here through
:class:`~analytics.collector.routing.Call`; nothing here parses HTTP.
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Sequence, Set, Tuple, TypeVar, Union

from .http import gunzip, json_bytes
from .storage import SQLiteStore, redact_headers, redact_query

__all__ = [
    "API_NAMES",
    "Batch",
    "Exchange",
    "MAX_KEPT_ANSWER",
    "MAX_KEPT_BODY",
    "Records",
    "Refusal",
    "Request",
    "RouteLog",
    "answer_reason",
]

T = TypeVar("T")
R = TypeVar("R")

#: The APIs the collector serves, as :attr:`Exchange.api` names them.
API_NAMES = ("Data Pipelines", "Track API", "App API", "Bloomreach")
#: The most body text an :class:`Exchange` keeps (the rest is cut, and said to be).
MAX_KEPT_BODY = 256 * 1024
#: The most answer text an :class:`Exchange` keeps.
MAX_KEPT_ANSWER = 16 * 1024


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


#: A ``"writeKey": "..."`` member in a Data Pipelines body (some clients send the key there too).
_WRITE_KEY_MEMBER = re.compile(r'("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"')


def _add_note(note: Optional[str], more: str) -> str:
    return (note + "; " if note else "") + more


def body_text(body: bytes, encoding: str) -> Tuple[str, Optional[str]]:
    """(text to show, note) for a request body as received: un-gzipped when it is gzip,
    decoded as UTF-8 (bad bytes replaced), cut at :data:`MAX_KEPT_BODY` characters."""
    note: Optional[str] = None
    raw = body
    if encoding in ("gzip", "x-gzip"):
        try:
            raw, size = gunzip(body, MAX_KEPT_BODY * 4)
            note = f"gzip: {len(body):,} bytes on the wire, {size:,} un-gzipped"
        except zlib.error as exc:
            return "", f"{len(body):,} bytes labelled gzip that are not valid gzip ({exc})"
    elif encoding not in ("", "identity"):
        return "", f"{len(body):,} bytes in Content-Encoding {encoding!r} (not shown)"
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_KEPT_BODY:
        text = text[:MAX_KEPT_BODY]
        note = _add_note(note, f"cut at {MAX_KEPT_BODY:,} characters")
    return text, note


def answer_reason(status: int, body: bytes) -> Optional[str]:
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


def _batch_of(row: Dict[str, Any], messages: List[Dict[str, Any]]) -> Batch:
    return Batch(messages, row["sent_at"], row["key_hint"], row["raw_size"], row["compressed_size"],
                 row["headers"], row["received_at"], row["envelope"] or {})


#: Called with each accepted batch and how many of its messageIds were new.
AcceptListener = Callable[[Batch, int], None]


class RouteLog(Generic[R]):
    """What the store of each API's routes (Track API, App API, Bloomreach) keeps alike: its
    :attr:`lock`, the requests that reached a route in arrival order (:attr:`requests`,
    :meth:`log`), and copies of its lists taken under the lock."""

    def __init__(self, lock: Union["threading.Lock", "threading.RLock"]) -> None:
        self.lock = lock
        self._requests: List[R] = []

    @property
    def requests(self) -> List[R]:
        """Every request that reached a route (refused ones too), in arrival order."""
        return self._copy(self._requests)

    def log(self, request: R) -> int:
        """Record a request that reached a route; returns its index in :attr:`requests`."""
        with self.lock:
            self._requests.append(request)
            return len(self._requests) - 1

    def _copy(self, items: Iterable[T]) -> List[T]:
        """``list(items)``, taken under :attr:`lock`."""
        with self.lock:
            return list(items)


class Records:
    """Every record and counter of one collector, guarded by :attr:`lock`; accessors return copies.

    With ``store`` the batches, refusals and requests as received live in that
    SQLite store (and the counters are saved with each write); without it, in memory.
    """

    #: The counters a database keeps across restarts (saved under these names).
    _PERSISTED = (
        "_requests", "_accepted_batches", "_message_count", "_duplicates", "_raw_bytes", "_compressed_bytes",
        "_gzipped_batches", "_largest_bytes", "_largest_messages", "_dropped", "_inside_retry_after",
        "_connections", "_refusal_count", "_by_type", "_refusals_by_code",
    )

    def __init__(self, keep_messages: bool, store: Optional[SQLiteStore]) -> None:
        self.keep_messages = keep_messages
        #: The SQLite store, or None (in memory).
        self.store = store
        self.lock = threading.Lock()
        self._changed = threading.Condition(self.lock)
        self._listeners: List[AcceptListener] = []
        # requests being served now: a reset does not end them, so their ends must still count
        self._in_flight = 0
        # ids go on counting after a reset: a request in flight across it keeps an id of its own
        self._next_exchange = 1
        self.clear()
        if store is not None:
            self._restore(store)

    def clear(self) -> None:
        """Forget every record and counter (the database's rows too, with a store)."""
        self._batches: List[Batch] = []
        self._messages: List[Dict[str, Any]] = []
        self._refused: List[Refusal] = []
        self._ids: Set[str] = set()
        self._by_type: Dict[str, int] = {}
        self._refusals_by_code: Dict[str, int] = {}
        self._requests = self._accepted_batches = self._message_count = self._duplicates = 0
        self._raw_bytes = self._compressed_bytes = self._gzipped_batches = 0
        self._largest_bytes = self._largest_messages = 0
        self._dropped = self._inside_retry_after = self._connections = 0
        self._refusal_count = 0
        self._max_in_flight = self._in_flight
        self._retry_until = 0.0
        self._request_log: List[Request] = []
        self._outages: List[List[Any]] = []
        self._exchanges: Dict[int, Exchange] = {}  # in memory (without a store), by id

    def reset(self) -> None:
        """:meth:`clear`, under the lock, the database included."""
        with self.lock:
            self.clear()
            if self.store is not None:
                self.store.clear()

    def _counter_state(self) -> Dict[str, Any]:
        """The counters to save (lock held)."""
        return {name: getattr(self, name) for name in self._PERSISTED}

    def save_counters(self) -> None:
        """Write the counters to the store (no-op without one)."""
        if self.store is not None:
            with self.lock:
                self.store.save_counters(self._counter_state())

    def _restore(self, store: SQLiteStore) -> None:
        """Start from what the database holds: counters and the set of messageIds."""
        saved = store.counters()
        for name in self._PERSISTED:
            if name in saved:
                value = saved[name]
                setattr(self, name, dict(value) if isinstance(value, dict) else value)
        self._ids = set(store.message_ids())
        # what the rows say wins over counters saved a moment earlier
        self._message_count = store.message_count()
        self._refusal_count = store.refusal_count()

    def on_accept(self, listener: AcceptListener) -> None:
        """Call ``listener(batch, new_ids)`` after each accepted batch (outside the lock)."""
        with self.lock:
            self._listeners.append(listener)

    # -- written while serving -------------------------------------------------

    def begin(self, enter: bool) -> None:
        """Count a request to an API route; ``enter``: it is in flight from now on (see :meth:`landed`)."""
        with self.lock:
            self._requests += 1
            if enter:
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if self._retry_until and time.time() < self._retry_until:
                self._inside_retry_after += 1

    def landed(self) -> None:
        """A request counted in flight by :meth:`begin` is answered (or dropped)."""
        with self.lock:
            self._in_flight -= 1

    def count_request(self) -> None:
        with self.lock:
            self._requests += 1

    def count_connection(self) -> None:
        with self.lock:
            self._connections += 1

    def note_retry_after(self, until: float) -> None:
        """A Retry-After pointing to ``until`` is about to be sent."""
        with self.lock:
            self._retry_until = until

    def log_request(self, record: Request) -> None:
        with self.lock:
            self._request_log.append(record)

    def unanswered(self, record: Request) -> None:
        """The answer to ``record`` could not be written."""
        with self.lock:
            record.status = 0

    def outage_began(self) -> None:
        with self.lock:
            self._outages.append([time.time(), None])

    def outage_ended(self) -> None:
        with self.lock:
            if self._outages and self._outages[-1][1] is None:
                self._outages[-1][1] = time.time()

    def refuse(self, refusal: Refusal) -> None:
        """Record a refusal (``status`` 0: a dropped connection)."""
        with self.lock:
            self._refusal_count += 1
            self._refusals_by_code[refusal.code] = self._refusals_by_code.get(refusal.code, 0) + 1
            if refusal.status == 0:
                self._dropped += 1
            if self.store is not None:
                r = refusal
                self.store.add_refusal(r.received_at, r.status, r.code, r.reason, r.raw_size, r.method, r.path,
                                       self._counter_state(), r.request_id)
            else:
                self._refused.append(refusal)

    def open_exchange(self, api: Optional[str], method: str, path: str, query: str,
                      headers: Sequence[Tuple[str, str]], body: bytes, encoding: str,
                      received_at: float) -> Exchange:
        """Begin keeping one request (its id is taken now; it is kept by :meth:`close_exchange`)."""
        if self.store is not None:
            number = self.store.next_request_id()
        else:
            with self.lock:
                number = self._next_exchange
                self._next_exchange += 1
        if api == "Data Pipelines" and method == "POST":
            text: Optional[str] = None  # parsed later: an accepted batch keeps its envelope, a refused one this
            note: Optional[str] = None
        else:
            text, note = body_text(body, encoding)
        return Exchange(number, received_at, api, method, path, redact_query(query),
                        redact_headers(dict(headers)), text, len(body), note)

    def close_exchange(self, exchange: Exchange, status: int, answer: bytes, body: bytes, encoding: str) -> None:
        """Keep ``exchange`` as answered with ``status`` (0: dropped) and ``answer``;
        ``body`` and ``encoding`` are the request's, as received."""
        exchange.status = status
        if answer:
            exchange.answer = answer[:MAX_KEPT_ANSWER].decode("utf-8", "replace")
        if exchange.reason is None:
            exchange.reason = answer_reason(status, answer)
        if exchange.body is None and exchange.batch_id is None:
            exchange.body, exchange.body_note = body_text(body, encoding)  # a /v1/batch that was not accepted
            if exchange.body and _WRITE_KEY_MEMBER.search(exchange.body):
                exchange.body = _WRITE_KEY_MEMBER.sub(r'\1"<redacted>"', exchange.body)
                exchange.body_note = _add_note(exchange.body_note, "writeKey redacted")
        elif exchange.batch_id is not None:
            exchange.body_note = "accepted: its messages and envelope are kept with its batch"
        if self.store is not None:
            self.store.add_request(dict(exchange.__dict__))
            return
        with self.lock:
            self._exchanges[exchange.id] = exchange

    def accept(self, batch: Batch, stored_then_dropped: bool = False) -> int:
        """Record an accepted batch; returns its 1-based id."""
        messages = batch.messages
        store = self.store
        with self._changed:
            ids, by_type = self._ids, self._by_type
            before = len(ids)
            flags: List[bool] = []
            for m in messages:
                mid = m["messageId"]
                if store is not None:
                    flags.append(mid in ids)
                ids.add(mid)
                t = m["type"]
                by_type[t] = by_type.get(t, 0) + 1
            new_ids = len(ids) - before
            self._duplicates += len(messages) - new_ids
            self._accepted_batches += 1
            self._message_count += len(messages)
            self._raw_bytes += batch.raw_size
            if batch.compressed_size is not None:
                self._compressed_bytes += batch.compressed_size
                self._gzipped_batches += 1
            self._largest_bytes = max(self._largest_bytes, batch.raw_size)
            self._largest_messages = max(self._largest_messages, len(messages))
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
            listeners = list(self._listeners)
        for listener in listeners:
            listener(batch, new_ids)
        return batch_id

    # -- read ------------------------------------------------------------------------

    def batches(self) -> List[Batch]:
        if self.store is not None:
            if not self.keep_messages:
                return []
            return [_batch_of(row, messages) for row, messages in self.store.batches()]
        with self.lock:
            return list(self._batches)

    def messages(self) -> List[Dict[str, Any]]:
        if self.store is not None:
            return self.store.messages() if self.keep_messages else []
        with self.lock:
            return list(self._messages)

    def messages_json(self, since: int) -> bytes:
        """Accepted messages from index ``since``, as a JSON array."""
        if self.store is not None:
            return self.store.messages_json(since) if self.keep_messages else b"[]"
        with self.lock:
            return json_bytes(self._messages[since:])

    def refused(self) -> List[Refusal]:
        if self.store is not None:
            return [
                Refusal(r["status"], r["code"], r["reason"], r["received_at"], r["raw_size"], r["method"], r["path"],
                        r["request_id"])
                for r in self.store.refusals()
            ]
        with self.lock:
            return list(self._refused)

    def exchanges(self, api: Optional[str], refused: Optional[bool], before: Optional[int],
                  limit: Optional[int]) -> Tuple[List[Exchange], int]:
        if self.store is not None:
            rows, total = self.store.find_requests(api, refused, before, limit if limit is not None else 1 << 30)
            return [Exchange(headers={}, body=None, body_note=None, answer=None, **r) for r in rows], total
        with self.lock:
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
        if self.store is not None:
            row = self.store.request(exchange_id)
            return None if row is None else Exchange(**row)
        with self.lock:
            found = self._exchanges.get(exchange_id)
        return None if found is None else replace(found, headers=dict(found.headers))

    def batch(self, batch_id: int) -> Optional[Batch]:
        if self.store is not None:
            row = self.store.batch(batch_id)
            return None if row is None else _batch_of(row, [])
        with self.lock:
            if not 1 <= batch_id <= len(self._batches):
                return None
            return replace(self._batches[batch_id - 1], messages=[])

    def unique_ids(self) -> Set[str]:
        with self.lock:
            return set(self._ids)

    def duplicates(self) -> int:
        with self.lock:
            return self._duplicates

    def connections(self) -> int:
        with self.lock:
            return self._connections

    def request_log(self) -> List[Request]:
        with self.lock:
            return [replace(r) for r in self._request_log]

    def outages(self) -> List[Tuple[float, Optional[float]]]:
        with self.lock:
            return [(start, end) for start, end in self._outages]

    def stats(self, pending_faults: int, listening: bool) -> Dict[str, Any]:
        """The counters as :meth:`Collector.stats` gives them."""
        with self.lock:
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
                "pending_faults": pending_faults,
                "listening": listening,
                "outages": len(self._outages),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
            }

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._message_count >= count, timeout)

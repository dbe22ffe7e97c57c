"""SQLite storage for the local collector: what it received survives a restart.

A :class:`~analytics.collector.Collector` made with ``db_path`` keeps its
records (accepted batches and their messages, refused requests, counters) in
one SQLite file instead of in memory; ``db_path=":memory:"`` keeps them in an
in-memory SQLite database (queryable by the inspector, gone at exit).  The
default ``Collector()`` has no store and is not slowed down at all.

Writes happen on the request path, one transaction per accepted batch or
refused request, in WAL mode with ``synchronous=NORMAL`` (a commit does not
wait for the disk; a crash of the machine, not of the process, may lose the
last few).  Reads (the collector's accessors, the inspector) share the one
connection under a lock: every statement is short.

What is stored about a batch never includes the write key: only a hint (its
first four characters) and the request headers with ``Authorization``
redacted.

Schema version 2 (``PRAGMA user_version``; a version 1 file is brought up to
date when opened)::

    batches   (id, received_at, sent_at, key_hint, raw_size, compressed_size,
               messages, first_message, headers, envelope)
                                                -- sent_at '' and no sentAt in the
                                                   envelope: the body had none
    messages  (id, batch_id, type, event, user_id, anonymous_id, message_id,
               timestamp, duplicate, body)      -- body NULL unless keep_messages
    refusals  (id, received_at, status, code, reason, raw_size, method, path,
               request_id)                      -- request_id: the row in requests
    requests  (id, received_at, api, method, path, query, status, code, reason,
               headers, body, body_size, body_note, answer, batch_id)
                                                -- every API request, answered or
                                                   not (only with keep_messages)
    meta      (name, value)                     -- the counters, as JSON
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["SQLiteStore", "StoreError", "SCHEMA_VERSION", "key_hint", "redact_headers", "redact_query",
           "payload_needle", "payload_text"]

logger = logging.getLogger("customerio.collector")

#: Bumped when the tables change in a way an older file cannot be read.
SCHEMA_VERSION = 2
#: Versions this one opens (and brings up to date).
_READABLE = (1, SCHEMA_VERSION)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    sent_at TEXT NOT NULL,
    key_hint TEXT NOT NULL,
    raw_size INTEGER NOT NULL,
    compressed_size INTEGER,
    messages INTEGER NOT NULL,
    first_message INTEGER NOT NULL,
    headers TEXT NOT NULL,
    envelope TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    batch_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    message_id TEXT NOT NULL,
    timestamp TEXT,
    duplicate INTEGER NOT NULL,
    body TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_batch ON messages (batch_id);
CREATE INDEX IF NOT EXISTS messages_by_type ON messages (type, id);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw_size INTEGER NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_id INTEGER
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    api TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    status INTEGER NOT NULL,
    code TEXT,
    reason TEXT,
    headers TEXT NOT NULL,
    body TEXT,
    body_size INTEGER NOT NULL,
    body_note TEXT,
    answer TEXT,
    batch_id INTEGER
);
CREATE INDEX IF NOT EXISTS requests_by_api ON requests (api, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# ASCII out: a message may hold a lone surrogate (the collector reads bodies with
# "surrogatepass"), which SQLite cannot take as text; escaped, it round-trips.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, check_circular=False).encode

Row = Dict[str, Any]


class StoreError(Exception):
    """The database cannot be opened or is not a collector database of this version."""


def key_hint(key: str) -> str:
    """What is kept of a write key: its first four characters (all of a short key is hidden)."""
    return key[:4] + "…" if len(key) >= 8 else "…"


def redact_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """A copy of ``headers`` with credentials (``Authorization``, ``Cookie``) replaced by ``<redacted>``."""
    return {
        name: ("<redacted>" if name.lower() in ("authorization", "proxy-authorization", "cookie") else value)
        for name, value in headers.items()
    }


_SECRET_PARAMS = ("access_token", "api_key", "apikey", "key", "token", "write_key", "writekey", "secret")


def redact_query(query: str) -> str:
    """``query`` (a URL's part after ``?``) with the values of credential parameters
    (``access_token``, ``api_key``, ``token``...) replaced by ``<redacted>``."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and name.strip().lower() in _SECRET_PARAMS:
            value = "<redacted>"
        parts.append(name + eq + value)
    return "&".join(parts)


def _text(value: Any) -> Optional[str]:
    """A value for an indexed text column (lone surrogates become U+FFFD: SQLite needs UTF-8)."""
    if value is None:
        return None
    if type(value) is not str:
        value = str(value)
    if not value.isascii():
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return str(value)


def _create_private(path: str) -> None:
    """Create ``path`` empty with mode 0600, whatever the umask, unless it exists.

    SQLite gives the -wal and -shm files it makes the mode of the database file,
    so they are private too.  An existing file keeps its mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits off 0600 (never added any)
    finally:
        os.close(fd)


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere (``%``, ``_`` and ``\\`` taken literally)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def payload_needle(text: str) -> str:
    """``text`` as it appears in a stored message body: ASCII, anything else escaped as JSON
    writes it (``é`` is ``\\u00e9``), lower case (the search ignores ASCII case).

    The search looks for it in the compact, ASCII-escaped JSON of each whole message,
    so it finds values and keys of ``properties``, ``traits``, ``context``...
    (``plan":"pro`` matches a ``plan`` of ``pro``).
    """
    return "".join(c if c < "\x80" else json.dumps(c)[1:-1] for c in text).lower()


def payload_text(message: Any) -> str:
    """A message as the payload search reads it (see :func:`payload_needle`)."""
    return _compact(message).lower()


class SQLiteStore:
    """The collector's records in one SQLite database (see the module doc).

    ``SQLiteStore(path)`` opens or creates the file (``":memory:"`` for none);
    raises :class:`StoreError` when it cannot be opened, is not a database, or
    was written by an incompatible version.  Thread-safe: one connection, one
    lock.  Row ids are 1-based and contiguous until :meth:`clear`, so message
    ``id`` ``N`` is the collector's message index ``N - 1``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if path != ":memory:":
                parent = os.path.dirname(os.path.abspath(path))
                if not os.path.isdir(parent):
                    raise StoreError(f"cannot open the database {path}: no directory {parent}")
                _create_private(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot create the database {path}: {exc.strerror or exc}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == 0 and tables and not {"batches", "messages"} <= tables:
                raise StoreError(f"{path} is an SQLite database of something else; give another --db path")
            if version not in (0,) + _READABLE:
                raise StoreError(
                    f"{path} was written by another version of the collector (schema {version}, "
                    f"this one reads {SCHEMA_VERSION}); give another --db path or delete the file"
                )
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            # version 1 files: the columns added since (CREATE TABLE IF NOT EXISTS made the new table)
            for table, column, kind in (("batches", "envelope", "TEXT"), ("refusals", "request_id", "INTEGER")):
                if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"cannot use the database {path}: {exc}") from None
        except StoreError:
            conn.close()
            raise
        self._conn = conn
        self._next_message = self._scalar("SELECT COALESCE(MAX(id), 0) FROM messages") + 1
        #: The id the next recorded request gets (the collector allocates them, see next_request_id).
        self._next_request = int(self._scalar("SELECT COALESCE(MAX(id), 0) FROM requests")) + 1

    # -- plumbing ---------------------------------------------------------------

    def _scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, args).fetchone()[0]

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> List[Row]:
        cur = self._conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def _row(self, table: str, row_id: int) -> Optional[Row]:
        """The row of ``table`` (a name of this module's schema, never a caller's) with this id, or None."""
        with self._lock:
            rows = self._rows(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        return rows[0] if rows else None

    def close(self) -> None:
        """Close the connection; idempotent (further reads and writes raise ``sqlite3.ProgrammingError``)."""
        with self._lock:
            self._conn.close()

    # -- writes (called by the collector, under its lock) -----------------------

    def add_batch(
        self,
        received_at: float,
        sent_at: Optional[str],
        write_key: str,
        raw_size: int,
        compressed_size: Optional[int],
        headers: Mapping[str, str],
        messages: Sequence[Mapping[str, Any]],
        duplicates: Sequence[bool],
        keep_bodies: bool,
        counters: Mapping[str, Any],
        envelope: Optional[Mapping[str, Any]] = None,
    ) -> int:
        """Record one accepted batch and its messages, and the counters, in one transaction;
        returns the batch's id.  ``sent_at`` None: the body had no ``sentAt``."""
        with self._lock:
            conn = self._conn
            first = self._next_message
            conn.execute("BEGIN")
            try:
                cur = conn.execute(
                    "INSERT INTO batches (received_at, sent_at, key_hint, raw_size, compressed_size, messages,"
                    " first_message, headers, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (received_at, _text(sent_at) or "", key_hint(write_key), raw_size, compressed_size,
                     len(messages), first, _compact(redact_headers(headers)),
                     None if envelope is None else _compact(dict(envelope))),
                )
                batch_id = cur.lastrowid
                rows = []
                for i, m in enumerate(messages):
                    get = m.get
                    t = get("type")
                    label = get("event") if t == "track" else get("name")
                    rows.append((
                        first + i, batch_id, t, _text(label), _text(get("userId")), _text(get("anonymousId")),
                        _text(get("messageId")), _text(get("timestamp")), 1 if duplicates[i] else 0,
                        _compact(m) if keep_bodies else None,
                    ))
                conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._put_counters(counters)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._next_message = first + len(messages)
            return int(batch_id or 0)

    def add_refusal(self, received_at: float, status: int, code: str, reason: str, raw_size: int,
                    method: str, path: str, counters: Mapping[str, Any], request_id: Optional[int] = None) -> None:
        """Record one refused (or dropped) request, and the counters."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                conn.execute(
                    "INSERT INTO refusals (received_at, status, code, reason, raw_size, method, path, request_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (received_at, status, code, _text(reason), raw_size, method, _text(path), request_id),
                )
                self._put_counters(counters)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def next_request_id(self) -> int:
        """Allocate the id of a request about to be recorded with :meth:`add_request`."""
        with self._lock:
            number = self._next_request
            self._next_request += 1
            return number

    def add_request(self, row: Mapping[str, Any]) -> None:
        """Record one API request and its answer (the fields of the ``requests`` table)."""
        values = dict(row)
        values["headers"] = _compact(dict(values["headers"]))
        for name in ("path", "query", "reason", "body", "answer", "body_note"):
            values[name] = _text(values.get(name))
        columns = ("id", "received_at", "api", "method", "path", "query", "status", "code", "reason", "headers",
                   "body", "body_size", "body_note", "answer", "batch_id")
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO requests ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [values.get(c) for c in columns],
            )

    def save_counters(self, counters: Mapping[str, Any]) -> None:
        """Record the counters alone (at stop, so per-run figures such as connections are kept)."""
        with self._lock:
            self._put_counters(counters)

    def _put_counters(self, counters: Mapping[str, Any]) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('counters', ?)",
                           (_compact(dict(counters)),))

    def clear(self) -> None:
        """Forget everything (the collector's ``reset()``)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            for table in ("messages", "batches", "refusals", "requests", "meta"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("COMMIT")
            self._next_message = 1  # (request ids go on: a request in flight across the reset keeps its own)

    # -- reads ------------------------------------------------------------------

    def counters(self) -> Dict[str, Any]:
        """The counters saved last ({} for a new database)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name = 'counters'").fetchone()
        return json.loads(row[0]) if row else {}

    def message_ids(self) -> List[str]:
        """Every stored messageId, in arrival order (duplicates included)."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT message_id FROM messages ORDER BY id")]

    def message_count(self) -> int:
        """How many messages are stored."""
        with self._lock:
            return int(self._next_message - 1)

    def messages_json(self, since: int = 0) -> bytes:
        """The stored messages from index ``since`` on, as one JSON array (bodies are JSON already)."""
        with self._lock:
            bodies = [r[0] or "null" for r in
                      self._conn.execute("SELECT body FROM messages WHERE id > ? ORDER BY id", (since,))]
        return ("[" + ",".join(bodies) + "]").encode("utf-8", "surrogatepass")

    def messages(self) -> List[Dict[str, Any]]:
        """Every stored message, in arrival order (empty when bodies were not kept)."""
        with self._lock:
            bodies = [r[0] for r in self._conn.execute("SELECT body FROM messages ORDER BY id")]
        return [json.loads(b) for b in bodies if b is not None]

    def batches(self) -> List[Tuple[Row, List[Dict[str, Any]]]]:
        """Every stored batch, in arrival order, with its messages (bodies that were kept)."""
        with self._lock:
            batches = self._rows("SELECT * FROM batches ORDER BY id")
            grouped: Dict[int, List[Dict[str, Any]]] = {}
            for batch_id, body in self._conn.execute("SELECT batch_id, body FROM messages ORDER BY id"):
                if body is not None:
                    grouped.setdefault(batch_id, []).append(json.loads(body))
        for b in batches:
            _decode_batch(b)
        return [(b, grouped.get(b["id"], [])) for b in batches]

    def refusals(self, limit: Optional[int] = None, before: Optional[int] = None) -> List[Row]:
        """Stored refusals: all in arrival order, or the ``limit`` newest (below id ``before``) newest first."""
        with self._lock:
            if limit is None:
                return self._rows("SELECT * FROM refusals ORDER BY id")
            return self._rows("SELECT * FROM refusals WHERE id < ? ORDER BY id DESC LIMIT ?",
                              (before or (1 << 62), limit))

    def refusal_count(self) -> int:
        """How many refusals are stored."""
        with self._lock:
            return int(self._scalar("SELECT COUNT(*) FROM refusals"))

    # -- the inspector's queries -----------------------------------------------

    def find_messages(
        self,
        type_: Optional[str] = None,
        event: Optional[str] = None,
        user: Optional[str] = None,
        batch: Optional[int] = None,
        before: Optional[int] = None,
        limit: int = 100,
        text: Optional[str] = None,
    ) -> Tuple[List[Row], int]:
        """Message summaries, newest first, and how many match in all.

        ``type_`` matches exactly; ``event`` is a substring of the track event
        or the page/screen name; ``user`` a substring of ``userId`` or
        ``anonymousId`` (both case-insensitive for ASCII); ``batch`` a batch id;
        ``text`` a substring of the whole message's JSON (see :func:`payload_needle`:
        properties, traits, context...).  ``before`` pages back: only ids below it.
        """
        where, args = self._message_filter(type_, event, user, batch, text)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        page_clause = clause + (" AND " if where else " WHERE ") + "m.id < ?"
        with self._lock:
            total = self._scalar(f"SELECT COUNT(*) FROM messages m{clause}", args)
            rows = self._rows(
                "SELECT m.id, m.batch_id, b.received_at, m.type, m.event, m.user_id, m.anonymous_id,"
                " m.message_id, m.timestamp, m.duplicate"
                f" FROM messages m JOIN batches b ON b.id = m.batch_id{page_clause}"
                " ORDER BY m.id DESC LIMIT ?",
                args + [before or (1 << 62), limit],
            )
        for r in rows:
            r["duplicate"] = bool(r["duplicate"])
        return rows, total

    def message_bodies(self, type_: Optional[str] = None, event: Optional[str] = None, user: Optional[str] = None,
                       batch: Optional[int] = None, text: Optional[str] = None) -> List[str]:
        """The kept bodies (compact JSON text) of the messages :meth:`find_messages` would
        match, oldest first."""
        where, args = self._message_filter(type_, event, user, batch, text)
        where.append("m.body IS NOT NULL")
        with self._lock:
            return [r[0] for r in self._conn.execute(
                f"SELECT m.body FROM messages m WHERE {' AND '.join(where)} ORDER BY m.id", args)]

    @staticmethod
    def _message_filter(type_: Optional[str], event: Optional[str], user: Optional[str], batch: Optional[int],
                        text: Optional[str]) -> Tuple[List[str], List[Any]]:
        where: List[str] = []
        args: List[Any] = []
        if type_:
            where.append("m.type = ?")
            args.append(type_)
        if event:
            where.append("m.event LIKE ? ESCAPE '\\'")
            args.append(_like(event))
        if user:
            where.append("(m.user_id LIKE ? ESCAPE '\\' OR m.anonymous_id LIKE ? ESCAPE '\\')")
            args.extend([_like(user)] * 2)
        if batch is not None:
            where.append("m.batch_id = ?")
            args.append(batch)
        if text:
            where.append("m.body LIKE ? ESCAPE '\\'")
            args.append(_like(payload_needle(text)))
        return where, args

    def message(self, message_id: int) -> Optional[Tuple[Row, Optional[Dict[str, Any]]]]:
        """(summary with its batch's fields, the message or None when not kept) for one id, or None."""
        with self._lock:
            rows = self._rows(
                "SELECT m.id, m.batch_id, b.received_at, m.type, m.event, m.user_id, m.anonymous_id,"
                " m.message_id, m.timestamp, m.duplicate, m.body, b.sent_at, b.key_hint, b.raw_size,"
                " b.compressed_size, b.messages AS batch_messages, b.envelope"
                " FROM messages m JOIN batches b ON b.id = m.batch_id WHERE m.id = ?",
                (message_id,),
            )
        if not rows:
            return None
        row = rows[0]
        body = row.pop("body")
        envelope = row.pop("envelope")
        if envelope is not None and "sentAt" not in json.loads(envelope):
            row["sent_at"] = None
        row["duplicate"] = bool(row["duplicate"])
        return row, (json.loads(body) if body is not None else None)

    def find_batches(self, before: Optional[int] = None, limit: int = 100) -> Tuple[List[Row], int]:
        """Batch summaries, newest first, and how many there are."""
        with self._lock:
            total = self._scalar("SELECT COUNT(*) FROM batches")
            rows = self._rows(
                "SELECT id, received_at, sent_at, key_hint, raw_size, compressed_size, messages, headers, envelope"
                " FROM batches WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before or (1 << 62), limit),
            )
        for r in rows:
            _decode_batch(r)
        return rows, total

    def batch(self, batch_id: int) -> Optional[Row]:
        """One batch's row (headers and envelope decoded, no messages), or None."""
        row = self._row("batches", batch_id)
        return None if row is None else _decode_batch(row)

    def find_requests(self, api: Optional[str] = None, refused: Optional[bool] = None,
                      before: Optional[int] = None, limit: int = 100) -> Tuple[List[Row], int]:
        """Request summaries (no headers, body or answer), newest first, and how many match.

        ``api`` matches exactly (``""``: requests to no known API); ``refused``
        True keeps only the answers outside 2xx (and dropped ones), False only 2xx.
        """
        where: List[str] = []
        args: List[Any] = []
        if api is not None:
            where.append("api IS NULL" if api == "" else "api = ?")
            if api:
                args.append(api)
        if refused is not None:
            where.append(("NOT " if refused else "") + "(status BETWEEN 200 AND 299)")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        page_clause = clause + (" AND " if where else " WHERE ") + "id < ?"
        with self._lock:
            total = self._scalar(f"SELECT COUNT(*) FROM requests{clause}", args)
            rows = self._rows(
                "SELECT id, received_at, api, method, path, query, status, code, reason, body_size, batch_id"
                f" FROM requests{page_clause} ORDER BY id DESC LIMIT ?",
                args + [before or (1 << 62), limit],
            )
        return rows, total

    def request(self, request_id: int) -> Optional[Row]:
        """One recorded request in full (headers decoded), or None."""
        row = self._row("requests", request_id)
        if row is not None:
            row["headers"] = json.loads(row["headers"])
        return row


def _decode_batch(row: Row) -> Row:
    """A batches row with its JSON columns decoded; ``sent_at`` None when the body had no ``sentAt``."""
    row["headers"] = json.loads(row["headers"])
    envelope = row.get("envelope")
    if envelope is not None:
        row["envelope"] = json.loads(envelope)
        if "sentAt" not in row["envelope"]:
            row["sent_at"] = None
    return row


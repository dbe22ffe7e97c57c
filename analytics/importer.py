"""``cdp-relay import``: send a file of Segment-spec messages, resumably.

The file
    JSON lines (one message object per line; blank lines are skipped) or CSV
    (a header row, then one message per row), UTF-8, optionally gzipped
    (``.gz``); ``-`` reads standard input.  The format comes from the name
    (``.csv``/``.tsv`` or anything else), or from ``--format``.

A message
    The Segment spec: ``type`` (or ``--type`` for files without one),
    ``userId``, ``anonymousId``, ``event``, ``name``, ``category``,
    ``properties``, ``traits``, ``context``, ``integrations``, ``timestamp``,
    ``messageId``, ``groupId``, ``objectTypeId``, ``previousId``.  Fields that
    servers add (``sentAt``, ``receivedAt``, ``originalTimestamp``,
    ``writeKey``, ``version``, ``channel``, ``projectId``, ``_metadata``...) are
    ignored silently; any other unknown field is ignored and counted in the
    report.  Each message goes through the same checks as a call to
    ``Client.track()`` etc.; a message that fails them is a bad line.

    ``timestamp`` is kept (a backfill records when things happened); without
    one the message is stamped with the time of the import.  ``messageId`` is
    kept; a message without one gets an id derived from the file, its line
    number and its content, so a rerun sends the same id and the server drops
    the repeat, while the same line in another file gets another id.  "The
    file" is its first 64 KiB (after gunzipping): a file moved, renamed or
    grown by appending keeps its ids, a file that begins differently gets
    others.  The checkpoint records this namespace, so a resumed run keeps
    it even for a small file that has grown since.  ``--id-namespace NAME``
    sets it instead: the same name gives the same ids, whatever the file.

CSV columns
    ``type``, ``userId``, ``event``, ``timestamp``... are the top-level fields
    (always text).  A dotted column sets a nested field: ``properties.plan``,
    ``traits.address.city``, ``context.ip``.  A column named ``properties``,
    ``traits``, ``context`` or ``integrations`` holds a JSON object (dotted
    columns are merged into it).  In dotted columns a cell that is a JSON
    number, ``true``, ``false``, ``null``, object, array or quoted string is
    taken as that JSON value; anything else is text (``02134`` stays text,
    ``42`` becomes a number).  Add ``:string`` to a column name to keep its
    cells as text (``properties.zip:string``), ``:json`` to require JSON.
    An empty cell leaves the field out.

Delivery and the checkpoint
    Messages go through the SDK's background engine with backpressure
    (``max_queue_wait=None``: a full queue waits, nothing is dropped).  The
    checkpoint (``FILE.checkpoint`` unless ``--checkpoint`` says otherwise) is a
    small JSON file rewritten atomically at most twice a second while the
    import runs, and at the end.  Its ``line`` is a line number at or below
    which every message was delivered (confirmed by a flush of the engine),
    except the messages listed in ``retry`` (bad lines, or lines the server
    refused): a rerun of the same command skips the delivered ones, and sends
    the listed lines and everything after ``line``.  The checkpoint never
    runs ahead of what the server confirmed, so a run killed at any moment
    (even with SIGKILL) resumes with no loss; at worst some messages are sent
    twice, with the same messageId.  A rerun checks that the line at the
    checkpoint is unchanged, and refuses to resume a different file.

Stopping
    The first SIGINT (Ctrl-C) or SIGTERM stops reading, waits up to
    ``--drain-timeout`` seconds for what is queued, writes the checkpoint and
    exits 130 (SIGINT) or 143 (SIGTERM).  A second signal stops at once.
    When the server cannot be reached or refuses the write key, the import
    stops reading at once and reports it (rerun to resume).

Exit status: 0 when every line was delivered (or, with ``--dry-run``, is
valid); 1 when a line was bad or could not be delivered; 2 for a usage
problem (missing file, unreadable checkpoint); 128 + signal when interrupted.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set, TextIO, Tuple
from urllib.parse import urlsplit

from ._checks import is_loopback
from .client import Client
from .errors import APIError, ConfigurationError, InvalidMessageError, QueueFullError, ShutdownError, TransportError
from .messages import TYPES
from .progress import make_progress
from .retry import RetryPolicy

__all__ = [
    "ImportOptions",
    "ImportReport",
    "ImportProblem",
    "run_import",
    "format_report",
    "send_message",
    "describe_delivery_error",
    "call_arguments",
    "checkpoint_path_for",
    "rename_fields",
]

log = logging.getLogger("customerio.importer")

CHECKPOINT_FORMAT = "cdp-relay-import-checkpoint"
CHECKPOINT_VERSION = 1
#: Namespace of the messageIds derived for lines without one (uuid5).
ID_NAMESPACE = uuid.UUID("6f0c5e1e-5d0b-4c8e-9a43-2b1f6f8f3c2a")
#: How much of the start of a file names it for the derived messageIds.
ID_HEAD_BYTES = 64 * 1024

# --- the message -> call mapping ---------------------------------------------------

#: Segment-spec field -> keyword argument of the Client calls.
FIELDS: Dict[str, str] = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "event": "event",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "timestamp": "timestamp",
    "integrations": "integrations",
    "messageId": "message_id",
    "name": "name",
    "category": "category",
    "groupId": "group_id",
    "objectTypeId": "object_type_id",
    "previousId": "previous_id",
}
_COMMON = ("context", "timestamp", "integrations", "messageId")
#: Which fields each call type reads.
ACCEPTS: Dict[str, Tuple[str, ...]] = {
    "identify": ("userId", "anonymousId", "traits") + _COMMON,
    "track": ("userId", "anonymousId", "event", "properties") + _COMMON,
    "page": ("userId", "anonymousId", "name", "category", "properties") + _COMMON,
    "screen": ("userId", "anonymousId", "name", "category", "properties") + _COMMON,
    "group": ("userId", "anonymousId", "groupId", "objectTypeId", "traits") + _COMMON,
    "alias": ("userId", "previousId") + _COMMON,
}
#: Fields a server or an export adds: ignored without a word.
SERVER_FIELDS = frozenset({
    "type", "sentAt", "receivedAt", "originalTimestamp", "writeKey", "version", "channel", "projectId",
    "_metadata", "request_id", "requestId", "messageIdHash", "library",
})
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


def call_arguments(message: Any, default_type: Optional[str] = None) -> Tuple[str, Dict[str, Any], List[str]]:
    """Map a Segment-spec message to ``(call type, Client keyword arguments, unused field names)``.

    Raises :class:`~analytics.errors.InvalidMessageError` when it is not an
    object or has no usable ``type``.  The values are checked by the call itself.
    """
    if not isinstance(message, dict):
        raise InvalidMessageError(f"a message must be a JSON object, not {_kind(message)}")
    type_ = message.get("type", default_type)
    if type_ is None or type_ == "":
        raise InvalidMessageError("type is missing (one of identify, track, page, screen, group, alias)", "type")
    if not isinstance(type_, str) or type_ not in TYPES:
        raise InvalidMessageError(
            f"type must be one of identify, track, page, screen, group, alias, not {type_!r}", "type"
        )
    accepts = ACCEPTS[type_]
    kwargs: Dict[str, Any] = {}
    unused: List[str] = []
    for key, value in message.items():
        if key in accepts:
            kwargs[FIELDS[key]] = value
        elif key not in SERVER_FIELDS:
            unused.append(key)
    return type_, kwargs, unused


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false",
            type(None): "null"}.get(type(value), type(value).__name__)


_QUOTED = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_WORD = re.compile(r"(?<![\w./'\"-])([A-Za-z_]+)(?![\w.\['\"-])")


def rename_fields(text: str, names: Dict[str, str]) -> str:
    """``text`` (an :class:`~analytics.errors.InvalidMessageError`'s message) with each field named
    as ``names`` says: ``track needs user_id or anonymous_id`` becomes ``track needs userId or
    anonymousId`` in an import, and names the flags in the command line.  Quoted values are kept."""
    parts = _QUOTED.split(text)
    for i in range(0, len(parts), 2):  # the text outside quotes
        parts[i] = _WORD.sub(lambda m: names.get(m.group(1), m.group(1)), parts[i])
    return "".join(parts)


#: The library's parameter names as the file's field names (for the import's bad-line reasons).
SPEC_NAMES = {python: spec for spec, python in FIELDS.items() if python != spec}


def send_message(client: Client, message: Any, default_type: Optional[str] = None) -> Tuple[bool, Dict[str, Any], List[str]]:
    """Validate and queue (or, in sync mode, send) one Segment-spec message through ``client``.

    Returns ``(queued, message as built, unused field names)``; raises
    :class:`~analytics.errors.InvalidMessageError` (naming the field) when invalid.
    """
    type_, kwargs, unused = call_arguments(message, default_type)
    ok, built = getattr(client, type_)(**kwargs)
    return ok, built, unused


# --- errors and results ------------------------------------------------------------------


class ImportProblem(Exception):
    """A problem that stops the import before it starts (exit status 2): the message is for people."""


@dataclass
class ImportOptions:
    """What to import and how (the ``cdp-relay import`` flags; see the module doc).

    ``path`` is a file or ``-`` (stdin).  ``checkpoint``: ``""`` for the default
    ``FILE.checkpoint`` (none for stdin), a path, or None for no checkpoint.
    ``format``: ``auto``, ``jsonl``, ``csv`` or ``tsv``.  ``default_type`` is the
    type of messages without one.  ``progress``: ``auto``, ``bar``, ``plain`` or
    ``none`` (see :func:`analytics.progress.make_progress`).  ``max_bad``: stop
    reading past this many bad lines.  ``drain_timeout``: seconds to wait for
    queued messages after SIGINT/SIGTERM.  ``retry_policy`` overrides
    ``max_retries`` and ``max_retry_time``.  ``id_namespace`` names the file in
    the messageIds derived for lines without one (default: its first 64 KiB;
    see the module doc).  ``bad_lines``: a file where the bad lines (and the
    lines the server refused) are written, one JSON object per line with the
    line number, the reason and the text as read; ``accept_bad`` (which needs
    ``bad_lines``) makes a run with bad lines a success: exit status 0, and
    the checkpoint forgets them, so a rerun does not read them again.
    """

    path: str
    write_key: Optional[str] = None
    host: Optional[str] = None
    format: str = "auto"
    default_type: Optional[str] = None
    dry_run: bool = False
    checkpoint: Optional[str] = ""
    restart: bool = False
    gzip: bool = True
    timeout: float = 15.0
    max_retries: int = 10
    max_retry_time: float = 120.0
    batch_size: int = 100
    progress: str = "auto"
    progress_every: float = 5.0  #: seconds between plain progress lines
    max_bad: int = 1000
    drain_timeout: float = 10.0
    checkpoint_every: float = 0.5  #: seconds between checkpoint writes (at most)
    retry_policy: Optional[RetryPolicy] = None
    #: names the file for the messageIds derived for lines without one (default: its first 64 KiB)
    id_namespace: Optional[str] = None
    #: a JSON-lines file where each bad line is written with its reason (``{"line", "reason", "text"}``)
    bad_lines: Optional[str] = None
    #: bad lines (kept in ``bad_lines``) do not fail the run: exit status 0, and the checkpoint
    #: does not keep them to send again
    accept_bad: bool = False


@dataclass
class ImportReport:
    """What happened, for the summary and the exit status."""

    source: str
    dry_run: bool = False
    records: int = 0  #: messages read and considered (not skipped)
    skipped: int = 0  #: messages read and skipped: delivered by an earlier run
    queued: int = 0
    delivered: int = 0
    bad: List[Tuple[int, str]] = field(default_factory=list)  #: (line, why), the first few hundred
    bad_count: int = 0
    undelivered: int = 0  #: queued but not confirmed delivered
    delivery_error: Optional[str] = None  #: why delivery stopped, for people
    interrupted: Optional[int] = None  #: the signal that stopped the run
    stopped_early: Optional[str] = None  #: why reading stopped before the end
    checkpoint: Optional[str] = None
    resumed_from: int = 0  #: the checkpoint's line when the run started (0: from the top)
    resumed_retry: int = 0  #: lines at or below it to send again
    checkpoint_line: int = 0
    retry_lines: int = 0
    unused_fields: Dict[str, Tuple[int, int]] = field(default_factory=dict)  #: name -> (count, first line)
    seconds: float = 0.0
    lines_read: int = 0
    retried_sent: int = 0  #: of the ``resumed_retry`` lines: sent by this run
    retried_bad: int = 0  #: of the ``resumed_retry`` lines: still bad (or refused again)
    bad_lines_file: Optional[str] = None  #: where the bad lines were written
    bad_written: int = 0  #: bad lines written there by this run
    bad_accepted: bool = False  #: bad lines do not fail the run (``accept_bad``)

    @property
    def exit_code(self) -> int:
        """0, 1 (bad lines unless accepted, undelivered lines, reading stopped early) or 128 + the signal."""
        if self.interrupted:
            return 128 + self.interrupted
        if (self.bad_count and not self.bad_accepted) or self.undelivered or self.delivery_error \
                or self.stopped_early:
            return 1
        return 0


# --- reading ------------------------------------------------------------------------------


@dataclass
class _Record:
    first_line: int
    last_line: int
    start: int  #: byte offset of the record's first line
    end: int  #: byte offset just past the record
    digest: str
    message: Any = None
    problem: Optional[str] = None
    raw: bytes = b""  #: the record as read (for the --bad-lines file)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class _LineSource:
    """Raw lines of a file (or stdin) with their numbers and byte offsets; gunzips ``.gz``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stdin = path == "-"
        self.gzipped = not self.stdin and path.endswith(".gz")
        if self.stdin:
            raw: IO[bytes] = sys.stdin.buffer
        else:
            try:
                raw = open(path, "rb")
            except FileNotFoundError:
                raise ImportProblem(f"no such file: {path}") from None
            except IsADirectoryError:
                raise ImportProblem(f"{path} is a directory, not a file") from None
            except OSError as exc:
                raise ImportProblem(f"cannot read {path}: {exc.strerror or exc}") from None
        self._raw = raw
        self.file: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzipped else raw  # type: ignore[assignment]
        self.line = 0  #: number of the last line read
        self.offset = 0  #: byte offset just past it

    @property
    def seekable(self) -> bool:
        """A plain file: the reader can jump to a checkpoint instead of reading up to it."""
        return not self.stdin and not self.gzipped

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes of the content (all of it if shorter); reading still starts at the top."""
        chunks: List[bytes] = []
        got = 0
        try:
            while got < size:
                chunk = self.file.read(size - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            data = b"".join(chunks)
            if self.stdin:
                self.file = _Prefixed(data, self.file)  # type: ignore[assignment]
            else:
                self.file.seek(0)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ImportProblem(f"cannot read {self.path}: {exc}") from None
        return data

    def seek(self, offset: int, line: int) -> None:
        """Continue reading at ``offset``, where line ``line + 1`` starts."""
        self.file.seek(offset)
        self.offset, self.line = offset, line

    def at_line_start(self) -> bool:
        """After :meth:`seek`: whether a line starts here (the byte before is a newline)."""
        if self.offset == 0:
            return True
        self.file.seek(self.offset - 1)
        ok = self.file.read(1) == b"\n"
        self.file.seek(self.offset)
        return ok

    def readline(self) -> bytes:
        """The next line with its newline (b"" at the end)."""
        try:
            data = self.file.readline()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ImportProblem(f"cannot read {self.path} after line {self.line}: {exc}") from None
        if data:
            self.line += 1
            self.offset += len(data)
        return data

    def count_lines(self) -> Optional[int]:
        """How many lines a plain file has (for the ETA), or None (stdin, gzip)."""
        if not self.seekable:
            return None
        try:
            size = os.fstat(self._raw.fileno()).st_size
            if size > 4 << 30:
                return None  # counting would take a while; go without an ETA
            with open(self.path, "rb") as f:
                count = 0
                last = b"\n"
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    count += chunk.count(b"\n")
                    last = chunk[-1:]
                return count + (0 if last == b"\n" else 1)
        except OSError:
            return None

    def close(self) -> None:
        if not self.stdin:
            self.file.close()
            self._raw.close()


class _Prefixed:
    """Lines of ``head`` (already read from ``rest``), then those of ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readline(self) -> bytes:
        if not self._head:
            return self._rest.readline()
        end = self._head.find(b"\n") + 1
        if end:
            line, self._head = self._head[:end], self._head[end:]
            return line
        line, self._head = self._head, b""
        return line + self._rest.readline()


def _decode(data: bytes, line: int) -> str:
    if line == 1 and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return data.decode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_loads = json.JSONDecoder(parse_constant=_reject_constant).decode


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (column {exc.colno})"
    return f"not valid JSON: {exc}"


class _JSONLinesReader:
    """One record per non-blank line."""

    def __init__(self, source: _LineSource) -> None:
        self.source = source

    header_digest = ""

    def header(self) -> None:
        """JSON lines have no header."""

    def records(self, wanted: Callable[[int, int], bool]) -> Iterator[_Record]:
        """Records in file order; those not ``wanted(first_line, last_line)`` come unparsed."""
        src = self.source
        while True:
            start = src.offset
            data = src.readline()
            if not data:
                return
            line = src.line
            if not data.strip():
                continue
            record = _Record(line, line, start, src.offset, _digest(data), raw=data)
            if not wanted(line, line):
                yield record
                continue
            try:
                text = _decode(data, line)
            except UnicodeDecodeError as exc:
                record.problem = f"not UTF-8 text (byte {exc.start + 1})"
                yield record
                continue
            try:
                record.message = _loads(text)
            except (ValueError, RecursionError) as exc:
                record.problem = _json_problem(exc) if isinstance(exc, ValueError) else "nested too deeply"
            yield record


_SCALAR_COLUMNS = frozenset(k for k in FIELDS if k not in _OBJECT_FIELDS) | {"type"}


@dataclass
class _Column:
    name: str
    path: Tuple[str, ...]
    kind: str  # "text", "infer", "json", "object", "ignored"


def _parse_header(names: Sequence[str]) -> List[_Column]:
    columns: List[_Column] = []
    seen = set()
    for raw in names:
        name = raw.strip()
        kind_suffix = None
        if ":" in name:
            name, _, kind_suffix = name.rpartition(":")
            if kind_suffix not in ("string", "json"):
                raise ImportProblem(f"column {raw!r}: the type after ':' must be 'string' or 'json'")
        if not name:
            raise ImportProblem("the CSV header has an empty column name")
        if name in seen:
            raise ImportProblem(f"the CSV header names column {name!r} twice")
        seen.add(name)
        path = tuple(name.split("."))
        if any(not part for part in path):
            raise ImportProblem(f"column {raw!r} is not a field path such as properties.plan")
        top = path[0]
        if len(path) == 1 and top in SERVER_FIELDS - {"type"}:
            columns.append(_Column(name, path, "ignored"))
            continue
        if top in _OBJECT_FIELDS:
            if len(path) == 1:
                kind = "object"
            else:
                kind = {"string": "text", "json": "json", None: "infer"}[kind_suffix]
        elif len(path) == 1 and top in _SCALAR_COLUMNS:
            kind = "json" if kind_suffix == "json" else "text"
        else:
            hint = f" (did you mean properties.{name} or traits.{name}?)" if len(path) == 1 else ""
            raise ImportProblem(
                f"unknown CSV column {raw!r}{hint}; columns are message fields (type, userId, event, "
                "timestamp...) or dotted paths under properties, traits, context or integrations"
            )
        columns.append(_Column(name, path, kind))
    return columns


def _json_cell(column: str, cell: str) -> Any:
    """A cell of a JSON column, parsed; a ValueError naming the column when it is not JSON."""
    try:
        return _loads(cell)
    except ValueError as exc:
        raise ValueError(f"column {column}: {_json_problem(exc)}") from None


def _infer(cell: str) -> Any:
    text = cell.strip()
    if text and (text[0] in '{["-' or text[0].isdigit() or text in ("true", "false", "null")):
        try:
            return _loads(text)
        except ValueError:
            return cell
    return cell


def _put(target: Dict[str, Any], path: Tuple[str, ...], value: Any, column: str) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"column {column}: {part} is already a value, not an object")
        node = child
    if isinstance(node.get(path[-1]), dict) and not isinstance(value, dict):
        raise ValueError(f"column {column}: {'.'.join(path)} is already an object")
    node[path[-1]] = value


class _CSVReader:
    """A header row, then one record per row (a quoted cell may span lines)."""

    def __init__(self, source: _LineSource, delimiter: str = ",") -> None:
        self.source = source
        self.delimiter = delimiter
        self.columns: List[_Column] = []
        self.header_digest = ""
        self._pending: List[bytes] = []
        self._bad_text: Optional[Tuple[int, str]] = None
        self._reader = csv.reader(self._text_lines(), delimiter=delimiter, strict=True)

    def _text_lines(self) -> Iterator[str]:
        src = self.source
        while True:
            data = src.readline()
            if not data:
                return
            self._pending.append(data)
            try:
                yield _decode(data, src.line)
            except UnicodeDecodeError as exc:
                if self._bad_text is None:
                    self._bad_text = (src.line, f"not UTF-8 text (byte {exc.start + 1})")
                yield data.decode("utf-8", "replace")

    def header(self) -> None:
        """Read the header row (line 1); raises ImportProblem when there is none or it is wrong."""
        try:
            names = next(self._reader)
        except StopIteration:
            raise ImportProblem(f"{self.source.path} is empty: a CSV file needs a header row") from None
        except csv.Error as exc:
            raise ImportProblem(f"the CSV header cannot be read: {exc}") from None
        self.header_digest = _digest(b"".join(self._pending))
        self._pending = []
        self.columns = _parse_header(names)

    def records(self, wanted: Callable[[int, int], bool]) -> Iterator[_Record]:
        """Records in file order; those not ``wanted(first_line, last_line)`` come unconverted."""
        src = self.source
        while True:
            start = src.offset - sum(len(p) for p in self._pending)
            first = src.line - len(self._pending) + 1
            self._bad_text = None
            try:
                row = next(self._reader)
                error = None
            except StopIteration:
                return
            except csv.Error as exc:
                row, error = None, f"not valid CSV: {exc}"
            data = b"".join(self._pending)
            self._pending = []
            if row is not None and not any(cell.strip() for cell in row):
                continue  # a blank line
            record = _Record(first, src.line, start, src.offset, _digest(data), raw=data)
            if not wanted(first, src.line):
                pass
            elif self._bad_text is not None:
                record.problem = self._bad_text[1]
            elif error is not None:
                record.problem = error
            else:
                try:
                    record.message = self._message(row or [])  # (a row: no error was found)
                except ValueError as exc:
                    record.problem = str(exc)
            yield record

    def _message(self, row: List[str]) -> Dict[str, Any]:
        if len(row) != len(self.columns):
            raise ValueError(f"the row has {len(row)} cells, the header {len(self.columns)}")
        message: Dict[str, Any] = {}
        for column, cell in zip(self.columns, row):
            if cell == "" or column.kind == "ignored":
                continue
            if column.kind == "object":
                value = _json_cell(column.name, cell)
                if not isinstance(value, dict):
                    raise ValueError(f"column {column.name} must hold a JSON object, not {_kind(value)}")
                existing = message.get(column.name)
                message[column.name] = {**value, **existing} if isinstance(existing, dict) else value
                continue
            if column.kind == "json":
                value = _json_cell(column.name, cell)
            elif column.kind == "infer":
                value = _infer(cell)
            else:
                value = cell
            if len(column.path) > 1 and isinstance(message.get(column.path[0]), dict):
                message[column.path[0]] = dict(message[column.path[0]])  # do not change a shared object
            _put(message, column.path, value, column.name)
        return message


def _reader_for(source: _LineSource, fmt: str) -> Any:
    if fmt == "auto":
        name = source.path[:-3] if source.gzipped else source.path
        lower = name.lower()
        fmt = "csv" if lower.endswith(".csv") else "tsv" if lower.endswith(".tsv") else "jsonl"
    if fmt == "csv":
        return _CSVReader(source)
    if fmt == "tsv":
        return _CSVReader(source, delimiter="\t")
    return _JSONLinesReader(source)


# --- the checkpoint ------------------------------------------------------------------------


def checkpoint_path_for(path: str) -> Optional[str]:
    """The default checkpoint of a file (``FILE.checkpoint``); None for stdin."""
    return None if path == "-" else path + ".checkpoint"


@dataclass
class _Checkpoint:
    """Every message on a line at or below ``line`` was delivered, but those in ``retry``.

    The anchor (``first``, ``start``, ``offset``, ``digest``) is the record that
    ends on ``line``: a rerun checks it is unchanged before skipping anything.
    """

    line: int = 0
    first: int = 0  #: first line of the anchor record
    start: int = 0  #: byte offset where it starts
    offset: int = 0  #: byte offset just past it
    digest: str = ""
    header_digest: str = ""
    retry: Dict[int, int] = field(default_factory=dict)  #: first line -> start offset, to send again
    delivered: int = 0  #: messages delivered by all runs together (informational)
    #: names the file in the derived messageIds ("": a checkpoint of a version that had none)
    id_namespace: str = ""

    def copy(self) -> "_Checkpoint":
        return _Checkpoint(self.line, self.first, self.start, self.offset, self.digest, self.header_digest,
                           dict(self.retry), self.delivered, self.id_namespace)

    def to_json(self, source: str) -> Dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "source": source,
            "line": self.line,
            "first": self.first,
            "start": self.start,
            "offset": self.offset,
            "digest": self.digest,
            "header_digest": self.header_digest,
            "retry": sorted([line, off] for line, off in self.retry.items()),
            "delivered": self.delivered,
            "id_namespace": self.id_namespace,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def _load_checkpoint(path: str) -> Optional[_Checkpoint]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImportProblem(f"cannot read the checkpoint {path}: {exc}; delete it or pass --restart") from None
    try:
        if data.get("format") != CHECKPOINT_FORMAT or data.get("version") != CHECKPOINT_VERSION:
            raise ValueError("not a checkpoint of this version")
        retry = {int(line): int(offset) for line, offset in data.get("retry", [])}
        cp = _Checkpoint(int(data["line"]), int(data["first"]), int(data["start"]), int(data["offset"]),
                         str(data["digest"]), str(data.get("header_digest", "")), retry,
                         int(data.get("delivered", 0)), str(data.get("id_namespace", "")))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ImportProblem(f"{path} is not an import checkpoint ({exc}); delete it or pass --restart") from None
    if cp.line < 0 or any(line > cp.line for line in cp.retry):
        raise ImportProblem(f"{path} is not a consistent import checkpoint; delete it or pass --restart")
    return cp


def _write_checkpoint(path: str, checkpoint: _Checkpoint, source: str) -> None:
    """Replace the checkpoint file atomically (write a temporary file, fsync it, rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    data = json.dumps(checkpoint.to_json(source), indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- tracking what was delivered ------------------------------------------------------------


_SENT, _BAD, _UNSENT = "sent", "bad", "unsent"


class _Entry:
    __slots__ = ("kind", "record", "put_index", "message_id")

    def __init__(self, kind: str, record: _Record, put_index: int, message_id: str) -> None:
        self.kind = kind
        self.record = record
        self.put_index = put_index
        self.message_id = message_id


def _retry_later(error: Exception) -> bool:
    """True when the server refused these very messages (send them again once fixed); False when
    delivery itself failed (unreachable, a bad write key, an outage, our own stop)."""
    return isinstance(error, APIError) and error.reason in ("rejected", "too_large") and error.status not in (401, 403)


def _connection_refused(error: BaseException) -> bool:
    """Whether a delivery failed because nothing listens at the host (the cause chain, or the text)."""
    cause: Optional[BaseException] = error
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "connection refused" in str(error).lower()


def describe_delivery_error(error: Exception, host: str) -> str:
    """A delivery failure as one sentence for people."""
    if isinstance(error, APIError):
        if error.status in (401, 403):
            return f"{host} refused the write key ({error.status} {error.code}); check --write-key or CDP_WRITE_KEY"
        detail = error.message or error.body or ""
        return f"{host} answered {error.status} {error.code}" + (f": {detail}" if detail else "")
    text = Exception.__str__(error)  # without the "(gave up ...)" tail
    attempts = getattr(error, "attempts", 0)
    tail = f" ({attempts} attempt{'s' if attempts != 1 else ''})" if attempts else ""
    if isinstance(error, TransportError):
        if _connection_refused(error):
            where = urlsplit(host).netloc or host
            hint = "; is the collector running? (cdp-relay collector --port N)" if is_loopback(
                urlsplit(host).hostname) else ""
            return f"cannot reach {host}: connection refused, nothing listens at {where}{tail}{hint}"
        return f"cannot reach {host}: {text}{tail}"
    return f"could not deliver to {host}: {text}{tail}"


class _BadLines:
    """The ``--bad-lines`` file: one JSON object per bad line, ``{"line", "reason", "text"}``.

    A run that starts at the top rewrites it; a resumed run adds to it the
    lines not already there (a bad line read again is not written twice), and
    drops the lines it delivered (fixed in place since).  Written from the
    reader and the checkpoint threads.
    """

    def __init__(self, path: str, resumed: bool) -> None:
        self.path = path
        self.written = 0
        self._lock = threading.Lock()
        self._seen: Set[int] = set()
        self._resolved: Set[int] = set()
        if resumed:
            try:
                with open(path, encoding="utf-8") as f:
                    for text in f:
                        line = _entry_line(text)
                        if line is not None:
                            self._seen.add(line)
            except FileNotFoundError:
                pass
            except (OSError, UnicodeDecodeError) as exc:
                raise ImportProblem(f"cannot read the bad-lines file {path}: {exc}") from None
        try:
            self._file: IO[str] = open(path, "a" if resumed else "w", encoding="utf-8")
        except OSError as exc:
            raise ImportProblem(f"cannot write the bad-lines file {path}: {exc.strerror or exc}") from None

    def write(self, line: int, reason: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        with self._lock:
            if line in self._seen:
                return
            self._seen.add(line)
            self._file.write(json.dumps({"line": line, "reason": reason, "text": text}, ensure_ascii=False) + "\n")
            self._file.flush()
            self.written += 1

    def resolve(self, line: int) -> None:
        """Line ``line`` was delivered: drop it from the file (at :meth:`close`) if it is there."""
        if line in self._seen:
            with self._lock:
                self._resolved.add(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()
            if not self._resolved:
                return
            try:
                with open(self.path, encoding="utf-8") as f:
                    kept = [text for text in f if _entry_line(text) not in self._resolved]
                tmp = f"{self.path}.tmp-{os.getpid()}"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.writelines(kept)
                os.replace(tmp, self.path)
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("cannot drop the delivered lines from %s: %s", self.path, exc)


def _entry_line(text: str) -> Optional[int]:
    try:
        return int(json.loads(text)["line"])
    except (ValueError, KeyError, TypeError):
        return None


class _Tracker:
    """Which records are settled, in file order, and the checkpoint that follows.

    The reader adds the records it considered (sent, bad, or not sent because
    the client had stopped), in file order.  :meth:`confirm` is told that the
    first ``n`` queued messages are settled (a flush returned); their failures
    came through :meth:`on_error`, by messageId.  The checkpoint advances over
    settled records, and stops for good at the first one whose delivery
    failed for another reason than the message itself.
    """

    def __init__(self, base: _Checkpoint, host: str, max_refused: int, bad_lines: Optional[_BadLines] = None,
                 accept_bad: bool = False) -> None:
        self._bad_lines = bad_lines
        self._accept_bad = accept_bad  #: bad and refused lines are not kept to send again
        self._lock = threading.Lock()
        self._entries: Deque[_Entry] = deque()
        self._failed: Dict[str, Exception] = {}
        self._host = host
        self._max_refused = max_refused
        self._refused_seen = 0
        self.queued = 0  #: messages queued (their put indexes are 0 .. queued - 1)
        self.confirmed = 0  #: the first ``confirmed`` queued messages are settled
        self.checkpoint = base.copy()
        self._base_delivered = base.delivered
        self.delivered = 0  #: confirmed delivered by this run
        self.refused: List[Tuple[int, str]] = []  #: (line, why) for messages the server refused
        self.refused_count = 0
        self.blocked: Optional[Exception] = None  #: the failure the checkpoint stopped at
        self.stop_reading = threading.Event()  #: delivery is failing: reading more is pointless
        self.stop_reason: Optional[str] = None

    def add(self, kind: str, record: _Record, message_id: str = "") -> None:
        """Append a record the reader considered (file order)."""
        with self._lock:
            put_index = -1
            if kind == _SENT:
                put_index = self.queued
                self.queued += 1
            self._entries.append(_Entry(kind, record, put_index, message_id))
        if kind != _SENT:
            self.advance()

    def on_error(self, error: Exception, items: List[Any]) -> None:
        """The client's ``on_error``: remember which messages failed, and why."""
        with self._lock:
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("messageId"), str):
                    self._failed.setdefault(item["messageId"], error)
            if _retry_later(error):
                self._refused_seen += len(items)
                if self._refused_seen > self._max_refused:
                    self.stop_reason = (f"the server refused more than {self._max_refused} messages: "
                                        f"{describe_delivery_error(error, self._host)}")
                    self.stop_reading.set()
                return
            if not isinstance(error, (ShutdownError, QueueFullError)) and self.stop_reason is None:
                self.stop_reason = describe_delivery_error(error, self._host)
        self.stop_reading.set()  # the next messages would fail the same way

    def confirm(self, settled: int) -> None:
        """The first ``settled`` queued messages have their fate decided (delivered or reported)."""
        with self._lock:
            if settled > self.confirmed:
                self.confirmed = settled
        self.advance()

    def advance(self) -> None:
        """Move the checkpoint over every settled record at the head."""
        with self._lock:
            entries, cp = self._entries, self.checkpoint
            while entries and self.blocked is None:
                e = entries[0]
                r = e.record
                if e.kind == _SENT:
                    if e.put_index >= self.confirmed:
                        break
                    error = self._failed.get(e.message_id)
                    if error is None:
                        self.delivered += 1
                        if cp.retry.pop(r.first_line, None) is not None and self._bad_lines is not None:
                            self._bad_lines.resolve(r.first_line)
                    elif _retry_later(error):
                        why = "refused by the server: " + describe_delivery_error(error, self._host)
                        if not self._accept_bad:
                            cp.retry[r.first_line] = r.start
                        else:
                            cp.retry.pop(r.first_line, None)
                        self.refused_count += 1
                        if len(self.refused) < 1000:
                            self.refused.append((r.first_line, why))
                        if self._bad_lines is not None:
                            self._bad_lines.write(r.first_line, why, r.raw)
                    else:
                        self.blocked = error
                        break
                elif e.kind == _BAD:
                    if self._accept_bad:
                        cp.retry.pop(r.first_line, None)  # accepted: skipped for good
                    else:
                        cp.retry[r.first_line] = r.start
                else:  # _UNSENT: the client stopped before it could be queued
                    self.blocked = ShutdownError("stopped before this message was queued")
                    break
                if r.last_line > cp.line:
                    cp.line, cp.first, cp.start, cp.offset, cp.digest = (
                        r.last_line, r.first_line, r.start, r.end, r.digest)
                entries.popleft()
            cp.delivered = self._base_delivered + self.delivered

    def reanchor(self, record: _Record) -> None:
        """The checkpoint's anchor line was found again: record where it is now (a bad line fixed
        before it may have changed its length, and so its offset)."""
        with self._lock:
            cp = self.checkpoint
            if cp.line == record.last_line:
                cp.first, cp.start, cp.offset = record.first_line, record.start, record.end

    def unconfirmed(self) -> int:
        """Queued messages the checkpoint has not passed (not confirmed, or at or after a failure)."""
        with self._lock:
            return sum(1 for e in self._entries if e.kind == _SENT)

    def snapshot(self) -> _Checkpoint:
        """A copy of the checkpoint as it stands."""
        with self._lock:
            return self.checkpoint.copy()


# --- the run ------------------------------------------------------------------------------


class _Signals:
    """SIGINT/SIGTERM during an import: the first asks to stop, the second to stop now.

    Installed only on the main thread; the previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.first: Optional[int] = None
        self.first_at = 0.0
        self.stop = threading.Event()
        self.now = threading.Event()
        self._saved: Dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.first is None:
            self.first, self.first_at = signum, time.monotonic()
            self.stop.set()
        else:
            self.now.set()

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)


def run_import(options: ImportOptions, stderr: Optional[TextIO] = None) -> ImportReport:
    """Import ``options.path``; returns the report (see :attr:`ImportReport.exit_code`).

    Progress goes to ``stderr`` (default ``sys.stderr``).  Raises
    :class:`ImportProblem` for what stops the import before anything is sent:
    no such file, a bad CSV header, an unreadable or mismatched checkpoint, a
    checkpoint that cannot be written.
    """
    err = sys.stderr if stderr is None else stderr
    source = _LineSource(options.path)
    try:
        return _Import(options, source, err).run()
    finally:
        source.close()


class _Import:
    """One run of ``cdp-relay import`` (see the module doc)."""

    def __init__(self, options: ImportOptions, source: _LineSource, err: TextIO) -> None:
        self.options = options
        self.source = source
        self.err = err
        self.name = "stdin" if source.stdin else options.path
        self.report = ImportReport(source=self.name, dry_run=options.dry_run)
        self.host = (options.host or "https://cdp.customer.io").rstrip("/")
        self.signals = _Signals()
        self.finished = threading.Event()
        self.error: Optional[BaseException] = None
        self.lines = 0  #: the last line read
        self.unused: Dict[str, List[int]] = {}
        self.verified = True
        self.bad_lines: Optional[_BadLines] = None

    # -- set-up --------------------------------------------------------------------

    def _start_point(self) -> None:
        """Read the checkpoint, and jump to the first line that may need sending."""
        opts, reader = self.options, self.reader
        self.cp_path: Optional[str] = None
        if not opts.dry_run and opts.checkpoint is not None:
            self.cp_path = opts.checkpoint or checkpoint_path_for(opts.path)
        base = _Checkpoint(header_digest=reader.header_digest, id_namespace=self.head_namespace)
        if self.cp_path is not None and not opts.restart:
            loaded = _load_checkpoint(self.cp_path)
            if loaded is not None:
                if loaded.header_digest != reader.header_digest:
                    raise ImportProblem(f"the header of {self.name} changed since the checkpoint {self.cp_path} "
                                        "was written; pass --restart to send the whole file again")
                base = loaded
        if opts.id_namespace is not None:
            base.id_namespace = "name:" + opts.id_namespace
        self.base = base
        self.report.checkpoint = self.cp_path
        self.report.resumed_from, self.report.resumed_retry = base.line, len(base.retry)
        self.verified = base.line == 0
        if base.line and self.source.seekable:
            starts = dict(base.retry)
            starts[base.first] = base.start
            first_line = min(starts)
            if starts[first_line] > os.path.getsize(opts.path):
                raise ImportProblem(f"{self.name} is shorter than when the checkpoint {self.cp_path} was "
                                    "written; pass --restart to send the whole file again")
            self.source.seek(starts[first_line], first_line - 1)
            if not self.source.at_line_start():
                raise ImportProblem(f"{self.name} changed since the checkpoint {self.cp_path} was written; "
                                    "pass --restart to send the whole file again")

    def _wanted(self, first: int, last: int) -> bool:
        return last > self.base.line or first in self.base.retry

    # -- the reader thread --------------------------------------------------------------

    def _read(self) -> None:
        try:
            self._read_records()
        except ImportProblem as exc:
            self.error = exc
        except Exception as exc:  # a bug: say so, and keep the checkpoint as it is
            log.exception("import failed")
            self.error = exc

    def _read_records(self) -> None:
        opts, report, tracker, base = self.options, self.report, self.tracker, self.base
        for record in self.reader.records(self._wanted):
            self.lines = record.last_line
            if self.signals.stop.is_set() or tracker.stop_reading.is_set():
                return
            if not self.verified:
                # the anchor is found by its line number and content: a fixed bad line
                # before it may have changed length
                if record.last_line > base.line or (record.last_line == base.line and (
                        record.digest != base.digest or record.first_line != base.first)):
                    raise ImportProblem(
                        f"{self.name} changed since the checkpoint {self.cp_path} was written (line {base.line} "
                        "differs); pass --restart to send the whole file again")
                self.verified = record.last_line == base.line
                if self.verified:
                    tracker.reanchor(record)
            if not self._wanted(record.first_line, record.last_line):
                report.skipped += 1
                continue
            report.records += 1
            retried = record.first_line in base.retry and record.last_line <= base.line
            problem = record.problem
            if problem is None:
                message = record.message
                if isinstance(message, dict) and "messageId" not in message:
                    message = dict(message)
                    message["messageId"] = self._derived_id(record)
                try:
                    ok, built, unused = send_message(self.client, message, opts.default_type)
                except InvalidMessageError as exc:
                    problem = rename_fields(str(exc), SPEC_NAMES)
                else:
                    for name in unused:
                        self.unused.setdefault(name, [0, record.first_line])[0] += 1
                    if opts.dry_run:
                        continue
                    if not ok:
                        tracker.add(_UNSENT, record)
                        return  # the client was stopped
                    report.queued += 1
                    report.retried_sent += retried
                    tracker.add(_SENT, record, built["messageId"])
                    record.message = None  # the tracker keeps the record until it is settled
                    continue
            report.bad_count += 1
            report.retried_bad += retried
            if len(report.bad) < 1000:
                report.bad.append((record.first_line, problem))
            if self.bad_lines is not None:
                self.bad_lines.write(record.first_line, problem, record.raw)
            if not opts.dry_run:
                tracker.add(_BAD, record)
            if report.bad_count > opts.max_bad:
                report.stopped_early = (f"more than {opts.max_bad} bad lines: is this the right file and "
                                        "format? (--max-bad-lines N)")
                return
        if not self.verified:
            raise ImportProblem(f"{self.name} is shorter than when the checkpoint {self.cp_path} was written; "
                                "pass --restart to send the whole file again")

    def _derived_id(self, record: _Record) -> str:
        """The messageId of a line without one: the same line of the same file always gets the same."""
        name = f"{self.reader.header_digest}:{record.first_line}:{record.digest}"
        if self.base.id_namespace:  # "": resuming a checkpoint written before ids were namespaced
            name = f"{self.base.id_namespace}:{name}"
        return str(uuid.uuid5(ID_NAMESPACE, name))

    # -- the checkpoint thread ---------------------------------------------------------

    def _keep_checkpoint(self) -> None:
        last_written: Any = None
        while not self.finished.is_set():
            queued = self.tracker.queued
            if queued > self.tracker.confirmed and self.client.flush() == 0:
                self.tracker.confirm(queued)  # every message queued before the flush is settled
            if self.cp_path is not None:
                snap = self.tracker.snapshot()
                key = (snap.line, len(snap.retry))
                if key != last_written:
                    try:
                        _write_checkpoint(self.cp_path, snap, self.name)
                        last_written = key
                    except OSError as exc:
                        log.warning("cannot write the checkpoint %s: %s", self.cp_path, exc)
            self.finished.wait(self.options.checkpoint_every)

    # -- the run ---------------------------------------------------------------------------

    def _show(self) -> None:
        report = self.report
        if self.options.dry_run:
            counts = {"valid": report.records - report.bad_count}
        else:
            counts = {"delivered": self.tracker.delivered}
        if report.bad_count:
            counts["bad"] = report.bad_count
        if report.skipped:
            counts["skipped"] = report.skipped
        self.progress.update(max(0, self.lines - self.header_lines), **counts)

    def run(self) -> ImportReport:
        opts, report = self.options, self.report
        started = time.monotonic()
        self.head_namespace = "head:" + _digest(self.source.head(ID_HEAD_BYTES))
        self.reader = _reader_for(self.source, opts.format)
        self.reader.header()
        self.header_lines = self.source.line
        self._start_point()
        total = self.source.count_lines()
        if total is not None:
            total -= self.header_lines
        if opts.accept_bad and not opts.bad_lines:
            raise ImportProblem("--accept-bad-lines needs --bad-lines FILE (where the skipped lines are kept)")
        if opts.bad_lines:
            self.bad_lines = _BadLines(opts.bad_lines, resumed=self.base.line > 0)
            self.report.bad_lines_file = opts.bad_lines
        self.report.bad_accepted = opts.accept_bad
        self.tracker = _Tracker(self.base, self.host, opts.max_bad, self.bad_lines, opts.accept_bad)
        if self.cp_path is not None:
            try:
                _write_checkpoint(self.cp_path, self.base, self.name)
            except OSError as exc:
                raise ImportProblem(f"cannot write the checkpoint {self.cp_path}: {exc.strerror or exc}; "
                                    "pass --checkpoint PATH or --no-checkpoint") from None
        try:
            self.client = self._make_client()
        except ConfigurationError as exc:
            raise ImportProblem(str(exc)) from exc  # the cause names the option
        verb = "checking " if opts.dry_run else "importing "
        self.progress = make_progress(total, initial=max(0, self.source.line - self.header_lines), mode=opts.progress,
                                      stream=self.err, prefix=verb + os.path.basename(self.name) + ": ",
                                      every=opts.progress_every)
        try:
            with self.signals:
                self._drive()
        finally:
            self.finished.set()
            self.progress.close()
            self.client.shutdown(timeout=0)
            if self.bad_lines is not None:
                self.bad_lines.close()
        if self.error is not None:
            if isinstance(self.error, ImportProblem):
                raise self.error
            raise ImportProblem(f"the import failed near line {self.lines}: {self.error!r}")
        self._finish_report(time.monotonic() - started)
        return report

    def _make_client(self) -> Client:
        opts = self.options
        return Client(
            opts.write_key,
            host=self.host,
            send=not opts.dry_run,
            on_error=self.tracker.on_error,
            gzip=opts.gzip,
            timeout=opts.timeout,
            upload_size=opts.batch_size,
            max_queue_size=max(1000, 4 * opts.batch_size),
            max_queue_wait=None,  # backpressure: a full queue waits, nothing is dropped
            exit_timeout=0,
            retry_policy=opts.retry_policy or RetryPolicy(max_retries=opts.max_retries, max_time=opts.max_retry_time),
        )

    def _drive(self) -> None:
        opts, signals, client, tracker = self.options, self.signals, self.client, self.tracker
        reader = threading.Thread(target=self._read, name="import-reader", daemon=True)
        keeper = threading.Thread(target=self._keep_checkpoint, name="import-checkpoint", daemon=True)
        reader.start()
        if not opts.dry_run:
            keeper.start()
        while reader.is_alive():
            reader.join(0.1)
            self._show()
            if signals.now.is_set() or (signals.stop.is_set()
                                        and time.monotonic() - signals.first_at > opts.drain_timeout):
                client.shutdown(timeout=0)  # the reader waits for room in the queue: give up on the rest
        if opts.dry_run:
            self._show()
            return
        # Reading is over: let what is queued arrive, unless delivery is failing
        # (the checkpoint cannot pass the first failure anyway) or a signal says hurry.
        deadline: Optional[float] = None
        while not tracker.stop_reading.is_set() and not signals.now.is_set():
            if signals.stop.is_set() and deadline is None:
                deadline = time.monotonic() + opts.drain_timeout
            if deadline is not None and time.monotonic() > deadline:
                break
            if client.flush(timeout=0.1) == 0:
                break
            self._show()
        client.shutdown(timeout=0)  # what is left is reported to on_error: not delivered
        self.finished.set()
        keeper.join(10.0)
        if client.stats()["pending"] == 0:
            tracker.confirm(tracker.queued)
        self._show()

    def _finish_report(self, seconds: float) -> None:
        report, tracker = self.report, self.tracker
        report.seconds = seconds
        report.interrupted = self.signals.first
        report.lines_read = max(0, self.lines - self.header_lines)
        report.unused_fields = {name: (v[0], v[1]) for name, v in self.unused.items()}
        if self.bad_lines is not None:
            report.bad_written = self.bad_lines.written
        if self.options.dry_run:
            return
        report.delivered = tracker.delivered
        report.bad.extend(tracker.refused)
        report.bad.sort()
        report.bad_count += tracker.refused_count
        report.undelivered = tracker.unconfirmed()
        if tracker.stop_reason is not None:
            report.delivery_error = tracker.stop_reason
        elif tracker.blocked is not None and not isinstance(tracker.blocked, (ShutdownError, QueueFullError)):
            report.delivery_error = describe_delivery_error(tracker.blocked, self.host)
        elif report.undelivered and not report.interrupted:
            report.delivery_error = "the import stopped before every message was confirmed"
        final = tracker.snapshot()
        report.checkpoint_line = final.line
        report.retry_lines = len(final.retry)
        if self.cp_path is not None:
            try:
                _write_checkpoint(self.cp_path, final, self.name)
            except OSError as exc:
                print(f"warning: cannot write the checkpoint {self.cp_path}: {exc.strerror or exc}", file=self.err)


def format_report(report: ImportReport, show_bad: int = 20) -> List[str]:
    """The summary printed at the end of an import, as lines for people."""
    lines: List[str] = []
    rate = report.records / report.seconds if report.seconds > 0 else 0.0
    if report.dry_run:
        valid = report.records - report.bad_count
        lines.append(f"checked {report.source}: {valid:,} of {report.records:,} messages valid "
                     f"in {report.seconds:.1f} s; nothing was sent (--dry-run)")
    else:
        head = f"{report.source}: {report.delivered:,} of {report.records:,} messages delivered"
        lines.append(f"{head} in {report.seconds:.1f} s ({rate:,.0f}/s)")
        if report.resumed_from:
            again = ""
            if report.resumed_retry:
                left = report.resumed_retry
                outcome = [f"{report.retried_sent:,} sent now", f"{report.retried_bad:,} still bad"]
                unread = left - report.retried_sent - report.retried_bad
                if unread > 0:
                    outcome.append(f"{unread:,} not read")
                again = (f", but {left:,} line{'s' if left != 1 else ''} it could not send: "
                         + ", ".join(outcome))
            lines.append(f"resumed: lines up to {report.resumed_from:,} were delivered by an earlier run{again}")
        if report.records == 0 and report.resumed_from and not report.bad_count and not report.interrupted:
            lines.append("nothing to send: every line was delivered before (--restart sends the file again)")
    if report.bad_count:
        lines.append(f"{report.bad_count:,} bad line{'s' if report.bad_count != 1 else ''}:")
        for line, why in report.bad[:show_bad]:
            lines.append(f"  line {line}: {why}")
        if report.bad_count > show_bad:
            lines.append(f"  ... and {report.bad_count - show_bad:,} more")
    if report.bad_lines_file is not None and (report.bad_count or report.bad_written):
        lines.append(f"bad lines written to {report.bad_lines_file} ({report.bad_written:,} new; one JSON object "
                     "per line: line, reason, text)")
    if report.bad_count and report.bad_accepted:
        lines.append("bad lines accepted (--accept-bad-lines): skipped, not sent again by a rerun")
    for name, (count, first) in sorted(report.unused_fields.items()):
        lines.append(f"warning: field {name!r} is not part of these messages and was ignored "
                     f"({count:,} line{'s' if count != 1 else ''}, first on line {first})")
    if report.stopped_early:
        lines.append(f"error: stopped reading: {report.stopped_early}")
    if report.interrupted:
        lines.append(f"interrupted by {signal.Signals(report.interrupted).name}: "
                     f"{report.undelivered:,} queued message(s) not confirmed delivered")
    elif report.delivery_error:
        lines.append(f"error: {report.delivery_error}")
        if report.undelivered:
            lines.append(f"{report.undelivered:,} message(s) not confirmed delivered")
    if report.checkpoint and not report.dry_run:
        more = f"; {report.retry_lines:,} line(s) to send again" if report.retry_lines else ""
        lines.append(f"checkpoint: {report.checkpoint} (delivered through line {report.checkpoint_line:,}{more})")
        if report.exit_code:
            lines.append("run the same command again to resume" +
                         (" once the bad lines are fixed (or add --bad-lines FILE --accept-bad-lines to set them "
                          "aside)" if report.bad_count and not report.undelivered else ""))
    return lines

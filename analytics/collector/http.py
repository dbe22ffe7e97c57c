"""The collector's one request-parsing layer: HTTP/1.1 off a socket, and answers onto it.

Every API the collector serves reads its requests through this module: the
request head (:func:`read_head`), the body on the wire with its limit, chunked
or not (:func:`read_body`), the body un-gzipped and measured
(:func:`decode_body`), the ``Authorization`` header (:meth:`ParsedRequest.basic_auth`,
:meth:`ParsedRequest.authorization`) and the ``Host`` names
(:func:`host_name`).  Answers are built by :func:`response_bytes` (one write,
with Content-Length).  Nothing here knows an API; standard library only.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import socket
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    "BodyError",
    "DeadlineReader",
    "ParsedRequest",
    "decode_body",
    "error_body",
    "gunzip",
    "host_name",
    "json_bytes",
    "read_body",
    "read_head",
    "response_bytes",
    "LOOPBACK_NAMES",
    "MAX_WIRE_BYTES",
    "OK_BODY",
]

#: Default for ``Collector(max_body_bytes=...)``: bodies larger than this on the wire
#: are refused unread (413) and the connection closed.
MAX_WIRE_BYTES = 1024 * 1024
#: Un-gzipping stops counting past this many bytes (the figure in a 413 is then a floor).
MAX_COUNTED_BYTES = 16 * 1024 * 1024
#: A gzip body of more members than this is refused (clients send one).
MAX_GZIP_MEMBERS = 100
#: Most bytes inflated in one step.
_INFLATE_STEP = 1 << 20
_MAX_LINE = 65536
_MAX_HEADERS = 100
#: A chunk size line: at most 16 hex digits, then extensions (bounded by the line length).
_MAX_CHUNK_LINE = 1024
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_HOST_RE = re.compile(r"(\[[0-9a-f:.]+\]|[^\s\[\]:/@,;]+)(?::[0-9]{0,5})?")

OK_BODY = b'{"success":true}'
_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(OK_BODY), OK_BODY)
)
_REASONS = {status: texts[0] for status, texts in BaseHTTPRequestHandler.responses.items()}


def json_bytes(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def error_body(code: str, message: str) -> bytes:
    """The collector's own error body: ``{"code": ..., "message": ...}``."""
    return json_bytes({"code": code, "message": message})


class BodyError(Exception):
    """A request body that cannot be taken: the status, code and reason to refuse it with."""

    def __init__(self, status: int, code: str, reason: str, raw_size: int = 0) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.raw_size = status, code, reason, raw_size


def host_name(value: str) -> Optional[str]:
    """The name in a ``Host`` header (lower case, an IPv6 address in brackets, no port), or
    None when it is not a host name."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address, as in Collector(host="::1")
    m = _HOST_RE.fullmatch(value)
    return m.group(1) if m else None


@dataclass
class ParsedRequest:
    """One request's head (and, once read, its body as received on the wire)."""

    method: str
    target: str  #: the request target as sent (origin or absolute form)
    version: str
    headers: Dict[str, str]  #: lower-case names; repeated ones joined with ", "
    header_items: List[Tuple[str, str]]  #: as sent, in order
    keep_alive: bool
    body: bytes = b""
    path: str = ""  #: the target's path (no query; absolute form reduced)
    query: str = ""
    hosts: List[Optional[str]] = field(default_factory=list)  #: Host header, then an absolute target's authority

    def __post_init__(self) -> None:
        target = self.target
        self.hosts = [self.headers.get("host")]
        if "://" in target.split("?", 1)[0]:  # absolute form, as sent to a proxy
            authority, _, rest = target.split("://", 1)[1].partition("/")
            target = "/" + rest
            self.hosts.append(authority)
        self.path, _, self.query = target.partition("?")

    @property
    def encoding(self) -> str:
        """``Content-Encoding``, lower case (``identity`` when absent)."""
        return (self.headers.get("content-encoding") or "identity").strip().lower()

    def authorization(self) -> Tuple[str, str]:
        """(scheme in lower case, credentials) of the ``Authorization`` header; ("", "") if absent."""
        scheme, _, value = (self.headers.get("authorization") or "").strip().partition(" ")
        return scheme.lower(), value.strip()

    def basic_auth(self) -> Optional[Tuple[str, str]]:
        """(user, password) of HTTP Basic auth (password "" when none is given), or None
        when the header is missing, another scheme, or not base64 of UTF-8."""
        scheme, token = self.authorization()
        if scheme != "basic":
            return None
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        user, _, password = decoded.partition(":")
        return user, password


def gunzip(data: bytes, limit: int) -> Tuple[bytes, int]:
    """Un-gzip ``data`` (at most ``MAX_GZIP_MEMBERS`` members), in time linear in its size.

    Returns the output, kept only up to ``limit + 1`` bytes, and its full size
    (counted up to ``max(limit + 1, MAX_COUNTED_BYTES)``, then a floor).  Raises
    ``zlib.error`` on a bad stream or too many members.
    """
    # The input is fed a slice at a time, small at each member's start and then
    # doubling: what zlib copies out after a member ends (unused_data) is never much
    # more than what the member took, so many tiny members cost no more than one big one.
    view = memoryview(data)
    parts: List[bytes] = []
    size = kept = pos = members = 0
    cap = max(limit + 1, MAX_COUNTED_BYTES)
    while True:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise zlib.error(f"more than {MAX_GZIP_MEMBERS} gzip members")
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


def decode_body(body: bytes, encoding: str, limit: int) -> Tuple[bytes, int, Optional[int]]:
    """(body un-gzipped, its size, its size on the wire when it was gzip else None).

    Raises :class:`BodyError`: 400 ``bad_request`` for a bad gzip stream, 415
    ``unsupported_encoding`` for an encoding but gzip and identity, 413
    ``payload_too_large`` past ``limit`` bytes after un-gzipping.
    """
    raw, size, compressed = body, len(body), None
    if encoding in ("gzip", "x-gzip"):
        compressed = len(body)
        try:
            raw, size = gunzip(body, limit)
        except zlib.error as exc:
            raise BodyError(400, "bad_request", f"body is not valid gzip: {exc}", len(body)) from None
    elif encoding != "identity":
        raise BodyError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported", len(body))
    if size > limit:
        raise BodyError(413, "payload_too_large", f"body is {size} bytes, over the {limit}-byte limit", size)
    return raw, size, compressed


class DeadlineReader(io.RawIOBase):
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


def read_head(rfile: BinaryIO, wfile: BinaryIO) -> Union[ParsedRequest, str]:
    """Parse the request line and headers (the stdlib's email parser is slow).

    Answers ``Expect: 100-continue``.  Returns the request, ``""`` when the
    connection closed first, or what is wrong with the request.
    """
    line = rfile.readline(_MAX_LINE + 1)
    if not line:
        return ""
    if len(line) > _MAX_LINE:
        return "request line too long"
    words = line.decode("latin-1").rstrip("\r\n").split()
    if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
        return "malformed request line"
    headers: Dict[str, str] = {}
    items: List[Tuple[str, str]] = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            return ""
        if len(line) > _MAX_LINE or len(items) >= _MAX_HEADERS:
            return "request head too large"
        name, colon, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            return "malformed header line"
        lower = name.lower()
        headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        items.append((name, value))
    connection = headers.get("connection", "").lower()
    if words[2] == "HTTP/1.0":
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
        if headers.get("expect", "").lower() == "100-continue":
            wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return ParsedRequest(words[0], words[1], words[2], headers, items, keep_alive)


def read_body(rfile: BinaryIO, headers: Dict[str, str], limit: int) -> Optional[bytes]:
    """The whole request body as on the wire, or None when the client went away.

    Raises :class:`BodyError` (the connection must then close after the
    answer): 400 for a bad Content-Length or chunking, 413 past ``limit`` bytes.
    """
    if headers.get("transfer-encoding", "").strip().lower() == "chunked":
        return _read_chunked(rfile, limit)
    length_header = headers.get("content-length")
    if length_header is None:
        return b""
    try:
        length = int(length_header)
        if length < 0:
            raise ValueError
    except ValueError:
        raise BodyError(400, "bad_request", "bad Content-Length") from None
    if length > limit:
        raise BodyError(413, "payload_too_large", f"body is {length} bytes on the wire, over the {limit}-byte limit")
    body = rfile.read(length)
    return body if len(body) == length else None  # short: the client went away


def _read_chunked(rfile: BinaryIO, limit: int) -> Optional[bytes]:
    parts: List[bytes] = []
    total = 0
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if not line:
            return None  # the client went away
        m = _CHUNK_SIZE.fullmatch(line)
        if m is None:
            raise BodyError(400, "bad_request", "bad chunk size line")
        size = int(m.group(1), 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise BodyError(413, "payload_too_large", f"chunked body is over the {limit}-byte limit")
        chunk = rfile.read(size + 2)
        if len(chunk) < size + 2:
            return None
        if chunk[size:] != b"\r\n":
            raise BodyError(400, "bad_request", "chunk data not followed by CRLF")
        parts.append(chunk[:size])
    for _ in range(_MAX_HEADERS + 1):
        line = rfile.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            return b"".join(parts)
    raise BodyError(400, "bad_request", "too many trailer lines")


def response_bytes(status: int, body: bytes, headers: Sequence[Tuple[str, str]] = (),
                   content_type: str = "application/json", close: bool = False,
                   version: str = "HTTP/1.1") -> bytes:
    """One whole answer, head and body, to write at once."""
    if status == 200 and body is OK_BODY and not headers and not close and version == "HTTP/1.1":
        return _OK
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if close:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

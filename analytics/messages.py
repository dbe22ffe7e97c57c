"""Build and validate the six Segment-spec messages.

Each public call on :class:`analytics.Client` lands in :func:`build`, which
checks the arguments, fills in ``messageId``, ``timestamp`` and
``context.library``, and returns the message as a plain ``dict`` ready for
:func:`analytics.encoding.dumps`.  Invalid arguments raise
:class:`~analytics.errors.InvalidMessageError` naming the field.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Dict, Optional

from dateutil.parser import isoparse
from dateutil.tz import tzlocal, tzutc

from .errors import InvalidMessageError
from .version import VERSION

__all__ = ["build", "LIBRARY", "TYPES", "now_iso", "format_timestamp", "new_message_id"]

#: Sent as ``context.library`` on every message.
LIBRARY = {"name": "cdp-relay", "version": VERSION}

#: The six call types and which identity they need: ``"user"`` means userId or
#: anonymousId, ``None`` means none is required.
TYPES = ("identify", "track", "page", "screen", "group", "alias")

_UTC = tzutc()
_NAIVE_LOCAL_WINDOW_S = 5.0


# --- ids ----------------------------------------------------------------------

_id_local = threading.local()


# The hex digit at the UUID's variant position maps to one of 8, 9, a, b (RFC 4122).
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_IDS_PER_READ = 256


def new_message_id() -> str:
    """A random (version 4) UUID as a string.

    Reads the OS random source 4 KB at a time per thread (256 ids) instead of
    16 bytes per call, and formats from its hex text (no ``uuid.UUID``
    object); after a fork the child's buffer is refilled (the pid is checked),
    so parent and child never hand out the same ids.
    """
    local = _id_local
    pid = os.getpid()
    hexes = getattr(local, "hex", None)
    if hexes is None or local.pos >= len(hexes) or local.pid != pid:
        hexes = local.hex = os.urandom(16 * _IDS_PER_READ).hex()
        local.pos = 0
        local.pid = pid
    pos = local.pos
    local.pos = pos + 32
    h = hexes[pos : pos + 32]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# --- timestamps ---------------------------------------------------------------

_second_cache: tuple = (-1, "")


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds (``2026-11-22T16:02:03.123+00:00``)."""
    global _second_cache
    t = time.time()
    sec = int(t)
    cached_sec, prefix = _second_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second_cache = (sec, prefix)
    return "%s.%03d+00:00" % (prefix, int((t - sec) * 1000))


def format_timestamp(value: Any, field: str = "timestamp") -> str:
    """Normalise a caller's timestamp to ISO-8601 with milliseconds.

    Accepts an aware ``datetime`` (kept in its own offset), a naive
    ``datetime`` (taken as local time when within 5 s of now, as the peers do,
    otherwise as UTC), a ``date`` (midnight UTC), or an ISO-8601 string.
    """
    if isinstance(value, str):
        try:
            value = isoparse(value)
        except (ValueError, OverflowError):
            raise InvalidMessageError(f"{field} must be an ISO-8601 date-time, got {value!r}", field) from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            if abs((value - _dt.datetime.now()).total_seconds()) < _NAIVE_LOCAL_WINDOW_S:
                value = value.replace(tzinfo=tzlocal())
            else:
                value = value.replace(tzinfo=_UTC)
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC).isoformat(timespec="milliseconds")
    raise InvalidMessageError(
        f"{field} must be a datetime, a date or an ISO-8601 string, got {type(value).__name__}", field
    )


# --- validation helpers -------------------------------------------------------


def _id(value: Any, field: str) -> Optional[str]:
    """An id may be a non-empty string, a finite number or a UUID; it is sent as a string.

    Numbers are written as ``repr`` writes the plain ``int``/``float`` (an
    ``IntEnum`` member gives ``'1'`` on every Python version).  NaN, infinities
    and integers too long for Python to print raise :class:`InvalidMessageError`.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise InvalidMessageError(f"{field} must not be empty", field)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, uuid.UUID)):
        raise InvalidMessageError(f"{field} must be a string or a number, got {type(value).__name__}", field)
    if isinstance(value, int):
        try:
            return int.__repr__(value)
        except ValueError:  # over sys.get_int_max_str_digits()
            raise InvalidMessageError(
                f"{field} is an integer of {value.bit_length()} bits, too long to send as an id", field
            ) from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMessageError(f"{field} must be a finite number, got {value!r}", field)
        return float.__repr__(value)
    return str(value)


def _mapping(value: Any, field: str) -> Optional[dict]:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        try:
            return dict(value)
        except Exception as exc:  # a Mapping that cannot be read: report the field, keep the cause
            raise InvalidMessageError(f"{field}: reading the {type(value).__name__} failed: {exc!r}", field) from exc
    raise InvalidMessageError(f"{field} must be a dict, got {type(value).__name__}", field)


def _text(value: Any, field: str, required: bool = False) -> Optional[str]:
    if value is None:
        if required:
            raise InvalidMessageError(f"{field} is required", field)
        return None
    if not isinstance(value, str):
        raise InvalidMessageError(f"{field} must be a string, got {type(value).__name__}", field)
    if not value:
        if required:
            raise InvalidMessageError(f"{field} must not be empty", field)
        return None
    return value


# --- the builder --------------------------------------------------------------


def build(
    type_: str,
    *,
    user_id: Any = None,
    anonymous_id: Any = None,
    context: Any = None,
    timestamp: Any = None,
    integrations: Any = None,
    message_id: Any = None,
    **fields: Any,
) -> Dict[str, Any]:
    """Validate one call's arguments and return the message dict.

    ``fields`` holds the call-specific arguments: ``traits``, ``properties``,
    ``event``, ``name``, ``category``, ``group_id``, ``object_type_id``,
    ``previous_id``.
    """
    msg: Dict[str, Any] = {"type": type_}
    uid = _id(user_id, "userId")
    aid = _id(anonymous_id, "anonymousId")

    if type_ == "alias":
        previous = _id(fields.get("previous_id"), "previousId")
        if previous is None:
            raise InvalidMessageError("alias needs previous_id", "previousId")
        if uid is None:
            raise InvalidMessageError("alias needs user_id", "userId")
        msg["previousId"] = previous
    elif type_ == "group":
        gid = _id(fields.get("group_id"), "groupId")
        if gid is None:
            raise InvalidMessageError("group needs group_id", "groupId")
        msg["groupId"] = gid
        otid = fields.get("object_type_id")
        if otid is not None:
            otid = _id(otid, "objectTypeId")
            if not (otid.isascii() and otid.isdigit()):
                raise InvalidMessageError(
                    f"objectTypeId must be a whole number such as '1', got {otid!r}", "objectTypeId"
                )
            msg["objectTypeId"] = otid
    elif uid is None and aid is None:
        raise InvalidMessageError(f"{type_} needs user_id or anonymous_id", "userId")

    if uid is not None:
        msg["userId"] = uid
    if aid is not None:
        msg["anonymousId"] = aid

    if type_ == "track":
        msg["event"] = _text(fields.get("event"), "event", required=True)
        msg["properties"] = _mapping(fields.get("properties"), "properties") or {}
    elif type_ in ("page", "screen"):
        name = _text(fields.get("name"), "name")
        category = _text(fields.get("category"), "category")
        if name is not None:
            msg["name"] = name
        if category is not None:
            msg["category"] = category
        msg["properties"] = _mapping(fields.get("properties"), "properties") or {}
    elif type_ in ("identify", "group"):
        msg["traits"] = _mapping(fields.get("traits"), "traits") or {}

    ctx = dict(_mapping(context, "context") or ())  # a copy: the caller's dict is not changed
    ctx["library"] = LIBRARY
    msg["context"] = ctx

    integrations = _mapping(integrations, "integrations")
    if integrations:
        msg["integrations"] = integrations

    msg["timestamp"] = now_iso() if timestamp is None else format_timestamp(timestamp)
    if message_id is None:
        msg["messageId"] = new_message_id()
    else:
        msg["messageId"] = _id(message_id, "messageId")
    return msg

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
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Dict, Mapping as _Mapping, Optional, Tuple, Union

from ._checks import quote
from .context import current as _current_scope
from .errors import InvalidMessageError
from .version import VERSION

__all__ = ["build", "add_unsent_keys", "as_sent", "LIBRARY", "TYPES", "now_iso", "format_timestamp",
           "new_message_id", "ID", "Timestamp", "Fields", "Message", "Result"]

#: An id argument (``user_id``, ``anonymous_id``, ``group_id``...): sent as a string.
ID = Union[str, int, float, uuid.UUID]
#: A ``timestamp`` argument: a datetime (naive: local if within 5 s of now, else UTC), a date or ISO-8601 text.
Timestamp = Union[_dt.datetime, _dt.date, str]
#: ``traits``, ``properties``, ``context``, ``integrations``: a dict (any mapping) of JSON-able values.
Fields = _Mapping[str, Any]
#: The message a call returns.
Message = Dict[str, Any]
#: What a call returns: ``(success, message)``.
Result = Tuple[bool, Message]

#: Sent as ``context.library`` on every message.
LIBRARY = {"name": "cdp-relay", "version": VERSION}

#: The six call types and which identity they need: ``"user"`` means userId or
#: anonymousId, ``None`` means none is required.
TYPES = ("identify", "track", "page", "screen", "group", "alias")

_UTC = _dt.timezone.utc
_NAIVE_LOCAL_WINDOW_S = 5.0


# --- ids ----------------------------------------------------------------------

# A private generator (Mersenne Twister, seeded from os.urandom), not the OS
# source per call: ids must be unique, not secret, and one getrandbits(128)
# costs a tenth of a read of /dev/urandom, with no refill every few hundred
# calls.  A forked child reseeds before its first id (at-fork hook, and a pid
# check for a fork that bypassed the hook), so parent and child never repeat.
_rng = random.Random()
_rng_pid = os.getpid()
_rng_lock = threading.Lock()
# version 4 in bits 76-79, variant 10 in bits 62-63
_UUID_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET = (0x4 << 76) | (0x2 << 62)


def _reseed() -> None:
    global _rng_pid
    with _rng_lock:
        if _rng_pid != os.getpid():
            _rng.seed(os.urandom(32))
            _rng_pid = os.getpid()


def new_message_id() -> str:
    """A random (version 4) UUID as a string, such as ``1b4e28ba-2fa1-41d2-883f-0016d3cca427``."""
    if _rng_pid != os.getpid():
        _reseed()
    h = "%032x" % ((_rng.getrandbits(128) & _UUID_KEEP) | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reseed)


# --- timestamps ---------------------------------------------------------------

_ms_cache: Tuple[int, str] = (-1, "")


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds (``2026-11-22T16:02:03.123+00:00``).

    The text is made once per millisecond (a busy caller asks many times in one).
    """
    global _ms_cache
    ms = int(time.time() * 1000)
    cached = _ms_cache
    if cached[0] == ms:
        return cached[1]
    sec = ms // 1000
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%03d+00:00" % (ms - sec * 1000)
    _ms_cache = (ms, text)
    return text


if sys.version_info >= (3, 11):
    # datetime.fromisoformat reads ISO 8601 from 3.11 on; _isoparse adds the forms dateutil's
    # isoparse also took: a year or a year and month alone, an ordinal date, 24:00, a lowercase z.
    _REDUCED = re.compile(r"(\d{4})(?:-(\d{2}))?")
    _ORDINAL = re.compile(r"(\d{4})-?(\d{3})(?=$|[^\d])")
    _HOUR_24 = re.compile(r"(?<=[^\d])24(:?00(:?00([.,]0+)?)?)?(?=$|[zZ+-])")

    def _isoparse(text: str) -> _dt.datetime:
        try:
            return _dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        reduced = _REDUCED.fullmatch(text)
        if reduced:
            return _dt.datetime(int(reduced[1]), int(reduced[2] or 1), 1)
        ordinal = _ORDINAL.match(text)
        if ordinal:
            day = _dt.date(int(ordinal[1]), 1, 1) + _dt.timedelta(days=int(ordinal[2]) - 1)
            if day.year != int(ordinal[1]) or int(ordinal[2]) < 1:
                raise ValueError(f"no day {ordinal[2]} in {ordinal[1]}")
            return _isoparse(day.isoformat() + text[ordinal.end():])
        if _HOUR_24.search(text):
            return _isoparse(_HOUR_24.sub("00:00", text, count=1)) + _dt.timedelta(days=1)
        if text[-1:] == "z":
            return _dt.datetime.fromisoformat(text[:-1] + "Z")
        raise ValueError(f"not an ISO-8601 date-time: {text!r}")
else:  # pragma: no cover - before 3.11 fromisoformat reads only its own output's forms
    from dateutil.parser import isoparse as _isoparse  # python-dateutil is required before 3.11 only


def parse_iso8601(text: str, field: str = "timestamp") -> _dt.datetime:
    """An ISO-8601 date-time string as a ``datetime``; :class:`InvalidMessageError` naming ``field`` if it is not one."""
    try:
        return _isoparse(text)
    except (ValueError, OverflowError):
        raise InvalidMessageError(f"{field} must be an ISO-8601 date-time, got {quote(text)}", field) from None


def format_timestamp(value: Any, field: str = "timestamp") -> str:
    """Normalise a caller's timestamp to ISO-8601 with milliseconds.

    Accepts an aware ``datetime`` (kept in its own offset), a naive
    ``datetime`` (taken as local time when within 5 s of now, as the peers do,
    otherwise as UTC), a ``date`` (midnight UTC), or an ISO-8601 string.
    """
    if isinstance(value, str):
        value = parse_iso8601(value, field)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            if abs((value - _dt.datetime.now()).total_seconds()) < _NAIVE_LOCAL_WINDOW_S:
                value = value.astimezone()  # local time: the same wall time, with the local offset then
            else:
                value = value.replace(tzinfo=_UTC)
        text: str = value.isoformat(timespec="milliseconds")
        return text
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
            raise InvalidMessageError(f"{field} must be a finite number, got {quote(value)}", field)
        return float.__repr__(value)
    return str(value)


def _mapping(value: Any, field: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        try:
            return dict(value)
        except Exception as exc:  # a Mapping that cannot be read: report the field, keep the cause
            raise InvalidMessageError(
                f"{field}: reading the {type(value).__name__} failed: {quote(exc)}", field) from exc
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
    event: Any = None,
    properties: Any = None,
    traits: Any = None,
    name: Any = None,
    category: Any = None,
    group_id: Any = None,
    object_type_id: Any = None,
    previous_id: Any = None,
    base_context: Optional[Dict[str, Any]] = None,
    base_properties: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Validate one call's arguments and return the message dict.

    ``event``, ``properties``, ``traits``, ``name``, ``category``,
    ``group_id``, ``object_type_id`` and ``previous_id`` are read only by the
    call types that have them.  ``context`` is merged over the enclosing
    :func:`analytics.context.request_context` blocks, which are merged over
    ``base_context`` (a client's ``global_context``); ``properties`` over
    ``base_properties`` (``global_properties``); a call without ``user_id`` and
    ``anonymous_id`` takes the blocks' identity (alias excepted).  (The common cases, a non-empty string id and
    a plain dict, are checked inline: this runs on the caller's hot path.)
    """
    msg: Dict[str, Any] = {"type": type_}
    uid = user_id if type(user_id) is str and user_id else _id(user_id, "userId")
    aid = _id(anonymous_id, "anonymousId") if anonymous_id is not None else None
    scope = _current_scope()
    if scope is not None and uid is None and aid is None and type_ != "alias":
        uid, aid = scope.identity()
    if type_ == "alias" or type_ == "group":
        _add_target(msg, type_, uid, previous_id, group_id, object_type_id)
    elif uid is None and aid is None:
        raise InvalidMessageError(f"{type_} needs user_id or anonymous_id", "userId")
    if uid is not None:
        msg["userId"] = uid
    if aid is not None:
        msg["anonymousId"] = aid

    if type_ == "track":  # the most frequent call, inline
        msg["event"] = event if type(event) is str and event else _text(event, "event", required=True)
        props = properties if type(properties) is dict else _mapping(properties, "properties") or {}
        msg["properties"] = props if base_properties is None else {**base_properties, **props}
    else:
        _add_fields(msg, type_, properties, base_properties, traits, name, category)

    if context is None and scope is None and base_context is None:
        msg["context"] = {"library": LIBRARY}
    else:
        msg["context"] = _merged_context(context, scope, base_context)
    if integrations is not None:
        integrations = _mapping(integrations, "integrations")
        if integrations:
            msg["integrations"] = integrations
    msg["timestamp"] = now_iso() if timestamp is None else format_timestamp(timestamp)
    msg["messageId"] = new_message_id() if message_id is None else _id(message_id, "messageId")
    return msg


def _add_target(msg: Dict[str, Any], type_: str, uid: Optional[str], previous_id: Any, group_id: Any,
                object_type_id: Any) -> None:
    """What an alias or a group call is about: ``previousId`` (and the user it becomes), or ``groupId``
    (and its ``objectTypeId``)."""
    if type_ == "alias":
        previous = _id(previous_id, "previousId")
        if previous is None:
            raise InvalidMessageError("alias needs previous_id", "previousId")
        if uid is None:
            raise InvalidMessageError("alias needs user_id", "userId")
        msg["previousId"] = previous
        return
    gid = _id(group_id, "groupId")
    if gid is None:
        raise InvalidMessageError("group needs group_id", "groupId")
    msg["groupId"] = gid
    if object_type_id is not None:
        otid = _id(object_type_id, "objectTypeId") or ""
        if not (otid.isascii() and otid.isdigit()):
            raise InvalidMessageError(
                f"objectTypeId must be a whole number such as '1', got {quote(otid)}", "objectTypeId"
            )
        msg["objectTypeId"] = otid


def _add_fields(msg: Dict[str, Any], type_: str, properties: Any, base_properties: Optional[Dict[str, Any]],
                traits: Any, name: Any, category: Any) -> None:
    """The fields of a page or screen (``name``, ``category``, ``properties``), an identify or a group
    (``traits``); an alias has none."""
    if type_ == "page" or type_ == "screen":
        name = _text(name, "name")
        category = _text(category, "category")
        if name is not None:
            msg["name"] = name
        if category is not None:
            msg["category"] = category
        props = properties if type(properties) is dict else _mapping(properties, "properties") or {}
        msg["properties"] = props if base_properties is None else {**base_properties, **props}
    elif type_ == "identify" or type_ == "group":
        msg["traits"] = traits if type(traits) is dict else _mapping(traits, "traits") or {}


def _merged_context(context: Any, scope: Any, base_context: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``context``, weakest first: the client's global_context, the request_context blocks, the call's own."""
    ctx = {} if base_context is None else dict(base_context)
    if scope is not None:
        ctx.update(scope.context)
    if context is not None:
        ctx.update(_mapping(context, "context") or ())  # a copy: the caller's dict is not changed
    ctx["library"] = LIBRARY
    return ctx


# --- the returned message -----------------------------------------------------


def add_unsent_keys(msg: Dict[str, Any]) -> None:
    """Give an encoded message the keys the official SDK's returned message has and this one lacks.

    Run on the message a call returns, after it was encoded: ``userId`` and
    ``anonymousId`` (``None`` when not given), ``integrations`` (``{}``) and, for
    page and screen, ``name`` and ``category`` (``None``).  So
    ``msg['anonymousId'] is None`` for a call with only a user id, as with the
    official SDK.  They are not sent: the bytes were made before, without them
    (:func:`as_sent` removes them again).
    """
    if "userId" not in msg:
        msg["userId"] = None
    if "anonymousId" not in msg:
        msg["anonymousId"] = None
    if "integrations" not in msg:
        msg["integrations"] = {}
    type_ = msg["type"]
    if type_ == "page" or type_ == "screen":
        if "name" not in msg:
            msg["name"] = None
        if "category" not in msg:
            msg["category"] = None


def as_sent(msg: Dict[str, Any]) -> Dict[str, Any]:
    """A returned message without the keys :func:`add_unsent_keys` gave it: the fields that are sent."""
    return {k: v for k, v in msg.items() if not (v is None or (k == "integrations" and v == {}))}

"""Customer.io Track API v2 operations: typed builders and the shape check.

An *operation* is one dict of the v2 API, the body of ``POST /api/v2/entity``
or one item of ``POST /api/v2/batch``'s ``{"batch": [...]}``::

    {"type": "person", "action": "event", "identifiers": {"id": "42"},
     "name": "purchase", "attributes": {"amount": 99}}

The builders here (``identify_person``, ``track_person_event``,
``add_object_relationships``...) follow async-customerio's ``cio.v2`` methods
(same names, same arguments) but only *build and validate* the dict, so the
result can be passed to :meth:`customerio.CustomerIO.batch` or sent alone with
:meth:`customerio.CustomerIO.send_entity` (``cio.v2.<builder>(...)`` does
both).  Every builder raises :class:`~customerio.CustomerIOValidationError`
(a :class:`~customerio.CustomerIOException` *and* an
:class:`analytics.errors.InvalidMessageError`) naming the builder and the
field: ``track_person_event: name cannot be blank``.

:func:`operation_problem` is the shape check used by the builders and by
``batch()``; it returns a :class:`Problem` (``reason``, ``field``,
``message``, in the style of the API's 207 errors) or ``None``.  The rules:

* ``type`` is ``person``, ``object`` or ``delivery``; ``action`` is one of
  :data:`ACTIONS` for that type.
* ``identifiers`` (every action but ``merge``): for a person exactly one of
  ``id`` (a non-empty string or an integer), ``email``, ``cio_id`` or
  ``anonymous_id`` (non-empty strings); for an object ``object_type_id`` and
  ``object_id`` (non-empty strings or integers), or ``cio_object_id`` alone;
  for a delivery ``id``.
* ``merge``: ``primary`` and ``secondary``, person identifiers each.
* ``event``, ``page`` and ``screen``: a non-empty string ``name``.
* ``add_device``: ``device.token`` (and ``device.platform``, when present)
  non-empty strings; ``delete_device``: ``device.token``.
* ``add_relationships``, ``delete_relationships`` and (objects)
  ``identify_anonymous``: a non-empty ``cio_relationships`` list.  Each
  relationship is an object with ``identifiers`` of the *other* kind (a person
  relates to objects, an object to people; ``identify_anonymous`` to
  ``{"anonymous_id": ...}``) and optional ``relationship_attributes`` (an
  object).
* When present: ``attributes`` is an object, ``timestamp`` a number of Unix
  seconds (not a bool, finite, >= 0), ``id`` a non-empty string.
* Other keys are left alone.

Delivery operations are not described in the sources this was written from
beyond their type; ``{"type": "delivery", "action": "event", "identifiers":
{"id": <delivery id>}, "name": <metric>}`` is accepted as a best guess.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any, Callable, Dict, FrozenSet, NamedTuple, Optional, Sequence

from .errors import CustomerIOValidationError

__all__ = [
    "ACTIONS",
    "TYPES",
    "Problem",
    "operation_problem",
    "check_operation",
    "person_identifiers_problem",
    "object_identifiers_problem",
    "sanitize",
    "to_unix",
    "identify_person",
    "delete_person",
    "suppress_person",
    "unsuppress_person",
    "track_person_event",
    "person_pageview",
    "person_screen",
    "add_person_device",
    "delete_person_device",
    "merge_persons",
    "add_person_relationships",
    "delete_person_relationships",
    "identify_object",
    "delete_object",
    "track_object_event",
    "add_object_relationships",
    "delete_object_relationships",
    "BUILDERS",
]

#: The valid actions of each operation type.
ACTIONS: Dict[str, FrozenSet[str]] = {
    "person": frozenset({
        "identify", "delete", "event", "screen", "page", "add_relationships", "delete_relationships",
        "add_device", "delete_device", "merge", "suppress", "unsuppress",
    }),
    "object": frozenset({
        "identify", "identify_anonymous", "delete", "event", "add_relationships", "delete_relationships",
    }),
    "delivery": frozenset({"event"}),
}
#: The operation types.
TYPES = tuple(ACTIONS)

_PERSON_KEYS = ("id", "email", "cio_id", "anonymous_id")
_NAMED = frozenset({"event", "page", "screen"})
_RELATING = frozenset({"add_relationships", "delete_relationships", "identify_anonymous"})


class Problem(NamedTuple):
    """What is wrong with one operation, in the shape of a 207 error item."""

    reason: str  #: ``"required"`` (missing or blank) or ``"invalid"``
    field: str  #: dotted path of the offending field, ``""`` for the operation itself
    message: str

    def __str__(self) -> str:
        return self.message


# -- values -------------------------------------------------------------------


def to_unix(value: _dt.datetime) -> int:
    """Unix seconds of a datetime; a naive one is taken as UTC (as the official client does)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return int(value.timestamp())


def sanitize(value: Any) -> Any:
    """``value`` with every ``datetime`` turned into Unix seconds and every NaN or
    infinite float into ``None``, recursively through dicts, lists and tuples.

    The official client does this for the top level of a call's data only (and
    reads an aware datetime's wall time as UTC); here it goes all the way down
    and an aware datetime keeps its instant.  Dicts and lists are copied, the
    caller's are never changed; other values are returned as they are.
    """
    if isinstance(value, Mapping):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    if isinstance(value, _dt.datetime):
        return to_unix(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- the shape check ------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (Mapping, list, tuple)) and not value)


def _id_value(value: Any, field: str, ints: bool) -> Optional[Problem]:
    if _blank(value):
        return Problem("required", field, f"{field} cannot be blank")
    if isinstance(value, str) or (ints and isinstance(value, int) and not isinstance(value, bool)):
        return None
    kind = "a string or an integer" if ints else "a string"
    return Problem("invalid", field, f"{field} must be {kind}, got {type(value).__name__}")


def person_identifiers_problem(ids: Any, field: str = "identifiers") -> Optional[Problem]:
    """What is wrong with person identifiers (exactly one of id/email/cio_id/anonymous_id), or None."""
    if _blank(ids):
        return Problem("required", field, f"{field} cannot be blank")
    if not isinstance(ids, Mapping):
        return Problem("invalid", field, f"{field} must be an object, got {type(ids).__name__}")
    unknown = [k for k in ids if k not in _PERSON_KEYS]
    if unknown:
        return Problem("invalid", f"{field}.{unknown[0]}",
                       f"{field}.{unknown[0]} is not a person identifier (use one of id, email, cio_id, anonymous_id)")
    if len(ids) != 1:
        return Problem("invalid", field, f"{field} must have exactly one of id, email, cio_id, anonymous_id, "
                                         f"got {', '.join(ids)}")
    (key, value), = ids.items()
    return _id_value(value, f"{field}.{key}", ints=key == "id")


def object_identifiers_problem(ids: Any, field: str = "identifiers") -> Optional[Problem]:
    """What is wrong with object identifiers (object_type_id + object_id, or cio_object_id), or None."""
    if _blank(ids):
        return Problem("required", field, f"{field} cannot be blank")
    if not isinstance(ids, Mapping):
        return Problem("invalid", field, f"{field} must be an object, got {type(ids).__name__}")
    if "cio_object_id" in ids:
        if len(ids) != 1:
            return Problem("invalid", field, f"{field}: cio_object_id must be given alone")
        return _id_value(ids["cio_object_id"], f"{field}.cio_object_id", ints=False)
    unknown = [k for k in ids if k not in ("object_type_id", "object_id")]
    if unknown:
        return Problem("invalid", f"{field}.{unknown[0]}",
                       f"{field}.{unknown[0]} is not an object identifier "
                       "(use object_type_id and object_id, or cio_object_id)")
    for key in ("object_type_id", "object_id"):
        problem = _id_value(ids.get(key), f"{field}.{key}", ints=True)
        if problem is not None:
            return problem
    return None


def _delivery_identifiers_problem(ids: Any, field: str = "identifiers") -> Optional[Problem]:
    if _blank(ids):
        return Problem("required", field, f"{field} cannot be blank")
    if not isinstance(ids, Mapping):
        return Problem("invalid", field, f"{field} must be an object, got {type(ids).__name__}")
    if set(ids) != {"id"}:
        return Problem("invalid", field, f"{field} of a delivery must be {{\"id\": <delivery id>}}")
    return _id_value(ids["id"], f"{field}.id", ints=False)


def _relationships_problem(rels: Any, type_: str, action: str) -> Optional[Problem]:
    field = "cio_relationships"
    if _blank(rels):
        return Problem("required", field, f"{field} cannot be blank")
    if not isinstance(rels, (list, tuple)):
        return Problem("invalid", field, f"{field} must be a list, got {type(rels).__name__}")
    for i, rel in enumerate(rels):
        here = f"{field}[{i}]"
        if not isinstance(rel, Mapping):
            return Problem("invalid", here, f"{here} must be an object, got {type(rel).__name__}")
        ids = rel.get("identifiers")
        if action == "identify_anonymous":
            problem = person_identifiers_problem(ids, f"{here}.identifiers")
            if problem is None and "anonymous_id" not in (ids or {}):
                problem = Problem("invalid", f"{here}.identifiers",
                                  f"{here}.identifiers must be {{\"anonymous_id\": ...}} for identify_anonymous")
        elif type_ == "person":
            problem = object_identifiers_problem(ids, f"{here}.identifiers")
        else:
            problem = person_identifiers_problem(ids, f"{here}.identifiers")
        if problem is not None:
            return problem
        attrs = rel.get("relationship_attributes")
        if attrs is not None and not isinstance(attrs, Mapping):
            return Problem("invalid", f"{here}.relationship_attributes",
                           f"{here}.relationship_attributes must be an object, got {type(attrs).__name__}")
    return None


def operation_problem(op: Any) -> Optional[Problem]:
    """What is wrong with one v2 operation, or ``None`` when its shape is valid (see the module doc)."""
    if not isinstance(op, Mapping):
        return Problem("invalid", "", f"an operation must be an object (dict), got {type(op).__name__}")
    type_ = op.get("type")
    if _blank(type_):
        return Problem("required", "type", "type cannot be blank (person, object or delivery)")
    if not isinstance(type_, str) or type_ not in ACTIONS:
        return Problem("invalid", "type", f"type must be person, object or delivery, got {type_!r}")
    action = op.get("action")
    if _blank(action):
        return Problem("required", "action", "action cannot be blank")
    if not isinstance(action, str) or action not in ACTIONS[type_]:
        return Problem("invalid", "action", f"action {action!r} is not valid for type {type_!r} "
                                            f"(one of {', '.join(sorted(ACTIONS[type_]))})")
    if action == "merge":
        for side in ("primary", "secondary"):
            problem = person_identifiers_problem(op.get(side), side)
            if problem is not None:
                return problem
    else:
        check = {"person": person_identifiers_problem, "object": object_identifiers_problem,
                 "delivery": _delivery_identifiers_problem}[type_]
        problem = check(op.get("identifiers"))
        if problem is not None:
            return problem
    if action in _NAMED:
        name = op.get("name")
        if _blank(name):
            return Problem("required", "name", f"name cannot be blank for action {action!r}")
        if not isinstance(name, str):
            return Problem("invalid", "name", f"name must be a string, got {type(name).__name__}")
    if action in ("add_device", "delete_device"):
        device = op.get("device")
        if _blank(device):
            return Problem("required", "device", "device cannot be blank")
        if not isinstance(device, Mapping):
            return Problem("invalid", "device", f"device must be an object, got {type(device).__name__}")
        problem = _id_value(device.get("token"), "device.token", ints=False)
        if problem is not None:
            return problem
        if action == "add_device" and "platform" in device:
            problem = _id_value(device.get("platform"), "device.platform", ints=False)
            if problem is not None:
                return problem
    if action in _RELATING or "cio_relationships" in op:
        problem = _relationships_problem(op.get("cio_relationships"), type_, action)
        if problem is not None:
            return problem
    attrs = op.get("attributes")
    if attrs is not None and not isinstance(attrs, Mapping):
        return Problem("invalid", "attributes", f"attributes must be an object, got {type(attrs).__name__}")
    if "timestamp" in op:
        ts = op["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
            return Problem("invalid", "timestamp", f"timestamp must be Unix seconds (a number >= 0), got {ts!r}")
    if "id" in op:
        problem = _id_value(op["id"], "id", ints=False)
        if problem is not None:
            return problem
    return None


def check_operation(op: Any, where: str = "operation") -> None:
    """Raise :class:`~customerio.CustomerIOValidationError` (``"<where>: <message>"``)
    when :func:`operation_problem` finds something wrong."""
    problem = operation_problem(op)
    if problem is not None:
        raise CustomerIOValidationError(f"{where}: {problem}", field=problem.field or None,
                                        reason=problem.reason)


# -- builders -------------------------------------------------------------------


def _built(op: Dict[str, Any], builder: str) -> Dict[str, Any]:
    check_operation(op, builder)
    return op


def _attributes(attributes: Optional[Mapping[str, Any]], attrs: Mapping[str, Any], builder: str) -> Dict[str, Any]:
    if attributes is not None and not isinstance(attributes, Mapping):
        raise CustomerIOValidationError(
            f"{builder}: attributes must be a dict, got {type(attributes).__name__}", field="attributes")
    merged = dict(attributes or {})
    merged.update(attrs)
    clean: Dict[str, Any] = sanitize(merged)
    return clean


def _timestamp(value: Any) -> Any:
    return to_unix(value) if isinstance(value, _dt.datetime) else value


def _relationships(relationships: Any) -> Any:
    return sanitize(relationships) if isinstance(relationships, (list, tuple)) else relationships


def _named(type_: str, action: str, builder: str, identifiers: Any, name: Any, id: Optional[str],
           timestamp: Any, attributes: Optional[Mapping[str, Any]], attrs: Mapping[str, Any]) -> Dict[str, Any]:
    op: Dict[str, Any] = {"type": type_, "action": action, "identifiers": identifiers, "name": name,
                          "attributes": _attributes(attributes, attrs, builder)}
    if id is not None:
        op["id"] = id
    if timestamp is not None:
        op["timestamp"] = _timestamp(timestamp)
    return _built(op, builder)


def identify_person(identifiers: Mapping[str, Any], *, attributes: Optional[Mapping[str, Any]] = None,
                    timestamp: Any = None, relationships: Optional[Sequence[Mapping[str, Any]]] = None,
                    **attrs: Any) -> Dict[str, Any]:
    """Create or update a person: ``identifiers`` is one of ``{"id"}``, ``{"email"}``, ``{"cio_id"}``.

    Attributes come from ``attributes`` and the other keyword arguments (so
    ``attributes={...}`` is how to set one named ``timestamp`` or
    ``relationships``); ``timestamp`` (Unix seconds or a datetime) is sent
    top-level; ``relationships`` become ``cio_relationships`` (objects).
    """
    op: Dict[str, Any] = {"type": "person", "action": "identify", "identifiers": identifiers,
                          "attributes": _attributes(attributes, attrs, "identify_person")}
    if timestamp is not None:
        op["timestamp"] = _timestamp(timestamp)
    if relationships is not None:
        op["cio_relationships"] = _relationships(relationships)
    return _built(op, "identify_person")


def delete_person(identifiers: Mapping[str, Any]) -> Dict[str, Any]:
    """Delete a person."""
    return _built({"type": "person", "action": "delete", "identifiers": identifiers}, "delete_person")


def suppress_person(identifiers: Mapping[str, Any]) -> Dict[str, Any]:
    """Suppress a person: delete the profile and keep the identifier from being added again."""
    return _built({"type": "person", "action": "suppress", "identifiers": identifiers}, "suppress_person")


def unsuppress_person(identifiers: Mapping[str, Any]) -> Dict[str, Any]:
    """Unsuppress a person, so a new profile can be made with the identifier."""
    return _built({"type": "person", "action": "unsuppress", "identifiers": identifiers}, "unsuppress_person")


def track_person_event(identifiers: Mapping[str, Any], name: str, *, id: Optional[str] = None,
                       timestamp: Any = None, attributes: Optional[Mapping[str, Any]] = None,
                       **attrs: Any) -> Dict[str, Any]:
    """An event for a person.  Event data goes under ``attributes`` (from ``attributes`` and
    the other keyword arguments); ``id`` (deduplication, e.g. a ULID) and ``timestamp``
    (Unix seconds or a datetime) are sent top-level."""
    return _named("person", "event", "track_person_event", identifiers, name, id, timestamp, attributes, attrs)


def person_pageview(identifiers: Mapping[str, Any], name: str, *, id: Optional[str] = None,
                    timestamp: Any = None, attributes: Optional[Mapping[str, Any]] = None,
                    **attrs: Any) -> Dict[str, Any]:
    """A page view for a person; ``name`` is the page URL.  Other arguments as :func:`track_person_event`."""
    return _named("person", "page", "person_pageview", identifiers, name, id, timestamp, attributes, attrs)


def person_screen(identifiers: Mapping[str, Any], name: str, *, id: Optional[str] = None,
                  timestamp: Any = None, attributes: Optional[Mapping[str, Any]] = None,
                  **attrs: Any) -> Dict[str, Any]:
    """A (mobile) screen view for a person; ``name`` is the screen.  Other arguments as :func:`track_person_event`."""
    return _named("person", "screen", "person_screen", identifiers, name, id, timestamp, attributes, attrs)


def add_person_device(identifiers: Mapping[str, Any], device_id: str, platform: str,
                      **device_attrs: Any) -> Dict[str, Any]:
    """Add or update a person's device: ``device_id`` is the push token, ``platform``
    ``"ios"`` or ``"android"``; other keyword arguments (``last_used``...) go into ``device``."""
    if _blank(platform):
        raise CustomerIOValidationError("add_person_device: platform cannot be blank", field="device.platform",
                                        reason="required")
    device: Dict[str, Any] = {"token": device_id, "platform": platform}
    device.update(sanitize(device_attrs))
    return _built({"type": "person", "action": "add_device", "identifiers": identifiers, "device": device},
                  "add_person_device")


def delete_person_device(identifiers: Mapping[str, Any], device_id: str) -> Dict[str, Any]:
    """Remove a device (by token) from a person."""
    return _built({"type": "person", "action": "delete_device", "identifiers": identifiers,
                   "device": {"token": device_id}}, "delete_person_device")


def merge_persons(primary: Mapping[str, Any], secondary: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``secondary`` into ``primary``; the secondary person is deleted (not reversible)."""
    return _built({"type": "person", "action": "merge", "primary": primary, "secondary": secondary},
                  "merge_persons")


def _relate(type_: str, action: str, builder: str, identifiers: Any, relationships: Any) -> Dict[str, Any]:
    return _built({"type": type_, "action": action, "identifiers": identifiers,
                   "cio_relationships": _relationships(relationships)}, builder)


def add_person_relationships(identifiers: Mapping[str, Any],
                             relationships: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Relate a person to objects: ``relationships=[{"identifiers": {"object_type_id": "1",
    "object_id": "acme"}, "relationship_attributes": {...}}]``."""
    return _relate("person", "add_relationships", "add_person_relationships", identifiers, relationships)


def delete_person_relationships(identifiers: Mapping[str, Any],
                                relationships: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Remove a person's relationships to objects."""
    return _relate("person", "delete_relationships", "delete_person_relationships", identifiers, relationships)


def identify_object(identifiers: Mapping[str, Any], *, attributes: Optional[Mapping[str, Any]] = None,
                    relationships: Optional[Sequence[Mapping[str, Any]]] = None, **attrs: Any) -> Dict[str, Any]:
    """Create or update an object (``{"object_type_id": "1", "object_id": "acme"}``);
    ``relationships`` (people) become ``cio_relationships``."""
    op: Dict[str, Any] = {"type": "object", "action": "identify", "identifiers": identifiers,
                          "attributes": _attributes(attributes, attrs, "identify_object")}
    if relationships is not None:
        op["cio_relationships"] = _relationships(relationships)
    return _built(op, "identify_object")


def delete_object(identifiers: Mapping[str, Any]) -> Dict[str, Any]:
    """Delete an object."""
    return _built({"type": "object", "action": "delete", "identifiers": identifiers}, "delete_object")


def track_object_event(identifiers: Mapping[str, Any], name: str, *, id: Optional[str] = None,
                       timestamp: Any = None, attributes: Optional[Mapping[str, Any]] = None,
                       **attrs: Any) -> Dict[str, Any]:
    """An event on an object.  Arguments as :func:`track_person_event`."""
    return _named("object", "event", "track_object_event", identifiers, name, id, timestamp, attributes, attrs)


def add_object_relationships(identifiers: Mapping[str, Any],
                             relationships: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Relate an object to people: ``relationships=[{"identifiers": {"id": "42"}}]``."""
    return _relate("object", "add_relationships", "add_object_relationships", identifiers, relationships)


def delete_object_relationships(identifiers: Mapping[str, Any],
                                relationships: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Remove an object's relationships to people."""
    return _relate("object", "delete_relationships", "delete_object_relationships", identifiers, relationships)


#: Every builder by name (what ``cio.v2.<name>(...)`` builds and sends).
BUILDERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    f.__name__: f
    for f in (
        identify_person, delete_person, suppress_person, unsuppress_person, track_person_event,
        person_pageview, person_screen, add_person_device, delete_person_device, merge_persons,
        add_person_relationships, delete_person_relationships, identify_object, delete_object,
        track_object_event, add_object_relationships, delete_object_relationships,
    )
}

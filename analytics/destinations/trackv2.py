"""Deliver to the Customer.io Track API v2 batch endpoint (``POST /api/v2/batch``)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

from .. import _checks
from ..errors import ConfigurationError, InvalidMessageError, UnsupportedCallError
from ..limits import MAX_BODY_BYTES, MAX_MESSAGE_BYTES
from . import Destination, basic_auth

__all__ = ["TrackV2", "resolve_identifiers", "RESERVED_EVENTS"]

log = logging.getLogger("customerio")

_HOSTS = {"us": "track.customer.io", "eu": "track-eu.customer.io"}
_OPEN = b'{"batch":['
_CLOSE = b"]}"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: Track event names sent as another operation than ``event`` (Segment's
#: Customer.io destination conventions), see :class:`TrackV2`.
RESERVED_EVENTS = {
    "Application Installed": "add_device",
    "Application Opened": "add_device",
    "Device Created or Updated": "add_device",
    "Application Uninstalled": "delete_device",
    "Device Deleted": "delete_device",
    "User Deleted": "delete",
    "User Suppressed": "suppress",
    "User Unsuppressed": "unsuppress",
    "Object Deleted": "object_delete",
    "Relationship Deleted": "delete_relationships",
}


def resolve_identifiers(value: str) -> Dict[str, str]:
    """Person identifiers for a user id: ``cio_<x>`` → ``{"cio_id": x}``, an e-mail
    address → ``{"email"}``, anything else → ``{"id"}`` (Segment's rule)."""
    if value.startswith("cio_") and len(value) > 4:
        return {"cio_id": value[4:]}
    if _EMAIL.match(value):
        return {"email": value}
    return {"id": value}


def _unix(iso: Any) -> Optional[int]:
    """Unix seconds of an ISO-8601 string (naive: UTC), or None when it is not one."""
    if not isinstance(iso, str) or not iso:
        return None
    text = iso[:-1] + "+00:00" if iso.endswith(("Z", "z")) else iso
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return int(when.timestamp())


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?)?$")


def _convert_dates(value: Any) -> Any:
    """ISO-8601 date strings inside dicts (recursively) → Unix seconds (Segment's default)."""
    if isinstance(value, dict):
        return {k: _convert_dates(v) for k, v in value.items()}
    if isinstance(value, str) and _ISO_DATE.match(value):
        seconds = _unix(value if "T" in value else value + "T00:00:00")
        return value if seconds is None else seconds
    return value


_loopback = _checks.is_loopback  # a Track API host given as http:// keeps http only for this machine


class TrackV2(Destination):
    """The Track API v2 batch endpoint as a :class:`~analytics.destinations.Destination`.

    ``TrackV2(site_id, api_key, region="us", host=None, *, reserved_events=True,
    convert_timestamps=False, object_type_id="1", gzip=False)``.  ``region``
    is ``"us"``/``"eu"`` (any case) or a :class:`customerio.Region`; ``host``
    overrides it: a bare host name or ``https://host[:port]`` is sent over
    HTTPS, ``http://`` is kept only for a loopback host (``http://127.0.0.1:PORT``
    for tests).  Items are at most 32 KB and a request at most 500,000 bytes;
    gzip is off by default (the API's support for ``Content-Encoding: gzip``
    is not documented).

    How :meth:`translate` maps a Segment-spec message (the choices, all of them):

    * **Identity.**  ``userId`` → :func:`resolve_identifiers` (``cio_`` prefix
      → ``cio_id``, e-mail → ``email``, else ``id``).  Without a userId:
      ``traits.email`` (or ``context.traits.email``) → ``{"email"}``, else
      ``{"anonymous_id": anonymousId}``.  When both a userId (or e-mail) and an
      anonymousId are known, ``attributes.anonymous_id`` carries the
      anonymousId (as Segment does, so CIO can merge the anonymous activity).
    * **Timestamps** (``timestamp``, ``traits.createdAt``) → Unix seconds.
      With ``convert_timestamps=True`` every ISO-8601 string in attributes is
      converted too (Segment's default; off here because it changes values the
      caller may want as text).
    * **identify** → person ``identify``: ``attributes`` = traits (plus
      ``created_at`` from ``traits.createdAt``, which is removed, when no
      ``created_at`` is given), ``timestamp``.  ``traits.objectId`` adds
      ``cio_relationships`` to that object (type ``traits.objectTypeId`` or
      ``object_type_id``).
    * **track** → person ``event``: ``name`` = event, ``id`` = messageId,
      ``timestamp``, ``attributes`` = properties.  With ``reserved_events``
      (default) these names become other operations (:data:`RESERVED_EVENTS`):
      "Application Installed"/"Application Opened"/"Device Created or
      Updated" → ``add_device`` (token from ``context.device.token`` or
      ``properties.device_token``, platform from ``context.device.type`` or
      ``properties.platform``, lower-cased, ``last_used`` = timestamp; without a
      token it stays a plain event); "Application Uninstalled"/"Device Deleted"
      → ``delete_device`` (same fallback); "User Deleted" → ``delete``; "User
      Suppressed"/"User Unsuppressed" → ``suppress``/``unsuppress`` (these three
      need a userId or e-mail: an anonymous one raises
      :class:`~analytics.errors.InvalidMessageError`); "Object Deleted" → object
      ``delete`` and "Relationship Deleted" → person ``delete_relationships``,
      the object from ``properties.objectId`` (or ``properties.groupId``,
      ``context.groupId``) and ``properties.objectTypeId`` (raise when there is
      no object id).
    * **page** → person ``page``: ``name`` = ``properties.url``, else the page
      name (raise when neither), ``id``, ``timestamp``, ``attributes``.
    * **screen** → person ``screen``: ``name`` = screen name (raise when
      none), ``id``, ``timestamp``, ``attributes``.
    * **group** → object ``identify``: identifiers ``{"object_type_id":
      objectTypeId or traits.objectTypeId or object_type_id, "object_id":
      groupId}``, ``attributes`` = traits without ``objectTypeId`` and
      ``relationshipAttributes``; with a userId, ``cio_relationships`` to that
      person (``relationship_attributes`` from ``traits.relationshipAttributes``).
      With only an anonymousId: ``identify_anonymous`` related to
      ``{"anonymous_id"}``.  With neither: the object alone.
    * **alias** → person ``merge``: ``primary`` from userId, ``secondary`` from
      previousId, both by :func:`resolve_identifiers`.  Irreversible: the
      secondary person is deleted.  A previousId that was an *anonymous* id
      names no person (``{"id": <anonymous id>}``), so such a merge does
      nothing useful; alias only known user ids.
    * Any other ``type`` raises :class:`~analytics.errors.UnsupportedCallError`.

    :meth:`results` reads a 207 (or a 200 with an ``errors`` array): each
    error's ``batch_index`` names the item, reported as
    ``"<reason>: <field>: <message>"``; errors without a usable index are
    logged and ignored.
    """

    name = "trackv2"
    path = "/api/v2/batch"
    max_message_bytes = MAX_MESSAGE_BYTES
    max_body_bytes = MAX_BODY_BYTES
    gzip = False

    def __init__(
        self,
        site_id: str,
        api_key: str,
        region: Any = "us",
        host: Optional[str] = None,
        *,
        reserved_events: bool = True,
        convert_timestamps: bool = False,
        object_type_id: str = "1",
        gzip: bool = False,
    ) -> None:
        if not site_id or not api_key:
            raise ConfigurationError("TrackV2 needs a site_id and an api_key")
        self.site_id = site_id
        self.api_key = api_key
        self.reserved_events = reserved_events
        self.convert_timestamps = convert_timestamps
        self.object_type_id = str(object_type_id)
        self.gzip = gzip
        self._base = self._resolve_base(region, host)

    @staticmethod
    def _resolve_base(region: Any, host: Optional[str]) -> str:
        if host:
            text = host.strip().rstrip("/")
            scheme = "https"
            if "://" in text:
                given, text = text.split("://", 1)
                if given.lower() == "http" and _loopback(urlsplit("//" + text).hostname):
                    scheme = "http"
            if not text or "/" in text:
                shown = _checks.quote(_checks.redact_url(host))
                raise ConfigurationError(f"host must be a host name with an optional port, not {shown}")
            return _checks.http_url("host", f"{scheme}://{text}")[0]
        key = getattr(region, "name", region)
        if not isinstance(key, str) or key.lower() not in _HOSTS:
            raise ConfigurationError(f"region must be 'us' or 'eu' (or Regions.US/EU), not {region!r}")
        return f"https://{_HOSTS[key.lower()]}"

    # -- Destination -------------------------------------------------------------------

    def base_url(self) -> str:
        """``https://track.customer.io``, ``https://track-eu.customer.io`` or the host given."""
        return self._base

    def headers(self) -> Dict[str, str]:
        """HTTP Basic auth with the site id and the Track API key."""
        return {"Authorization": basic_auth(self.site_id, self.api_key)}

    def overhead(self) -> int:
        """``{"batch":[`` and ``]}``: 12 bytes."""
        return len(_OPEN) + len(_CLOSE)

    def body(self, items: Sequence[bytes]) -> bytes:
        """``{"batch":[item,item,...]}``, the items as they are."""
        return _OPEN + b",".join(items) + _CLOSE

    def results(self, status: int, body: bytes, count: int) -> List[Optional[str]]:
        """Per-item outcome: None, or ``"reason: field: message"`` for an item named in ``errors``."""
        outcome: List[Optional[str]] = [None] * count
        try:
            doc = json.loads(body) if body and body.strip() else None
        except ValueError:
            doc = None
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list):
            return outcome
        for entry in errors:
            index = entry.get("batch_index") if isinstance(entry, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
                log.warning("trackv2: an error without a usable batch_index in a %d answer: %r", status, entry)
                continue
            parts = [str(entry[k]) for k in ("reason", "field", "message") if entry.get(k) not in (None, "")]
            text = ": ".join(parts) or "refused"
            outcome[index] = text if outcome[index] is None else f"{outcome[index]}; {text}"
        return outcome

    def item_id(self, item: Dict[str, Any]) -> Optional[str]:
        """The operation's ``id`` (the messageId of events, pages and screens)."""
        value = item.get("id")
        return value if isinstance(value, str) else None

    # -- translate ---------------------------------------------------------------------

    def translate(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """The v2 operation for one Segment-spec message (see the class doc)."""
        kind = message.get("type")
        method = getattr(self, f"_translate_{kind}", None) if isinstance(kind, str) else None
        if method is None:
            raise UnsupportedCallError(f"the Track API v2 has no operation for a {kind!r} call", "type")
        operation: Dict[str, Any] = method(message)
        return operation

    def _attrs(self, value: Any) -> Dict[str, Any]:
        attrs = dict(value) if isinstance(value, dict) else {}
        return _convert_dates(attrs) if self.convert_timestamps else attrs

    def _person(self, message: Dict[str, Any], traits: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
        user_id = message.get("userId")
        if user_id:
            return resolve_identifiers(str(user_id))
        for source in (traits, (message.get("context") or {}).get("traits")):
            email = source.get("email") if isinstance(source, dict) else None
            if isinstance(email, str) and email:
                return {"email": email}
        anonymous_id = message.get("anonymousId")
        if anonymous_id:
            return {"anonymous_id": str(anonymous_id)}
        raise InvalidMessageError(f"{message.get('type')} needs a userId or an anonymousId", "userId")

    @staticmethod
    def _link_anonymous(op: Dict[str, Any], message: Dict[str, Any]) -> None:
        anonymous_id = message.get("anonymousId")
        if anonymous_id and "anonymous_id" not in op["identifiers"]:
            op.setdefault("attributes", {})["anonymous_id"] = anonymous_id

    @staticmethod
    def _stamp(op: Dict[str, Any], message: Dict[str, Any]) -> None:
        seconds = _unix(message.get("timestamp"))
        if seconds is not None:
            op["timestamp"] = seconds

    def _translate_identify(self, message: Dict[str, Any]) -> Dict[str, Any]:
        traits = self._attrs(message.get("traits"))
        ids = self._person(message, traits)
        if "createdAt" in traits and "created_at" not in traits:
            created = _unix(traits["createdAt"])
            if created is not None:
                del traits["createdAt"]
                traits["created_at"] = created
        op: Dict[str, Any] = {"type": "person", "action": "identify", "identifiers": ids, "attributes": traits}
        self._link_anonymous(op, message)
        object_id = traits.get("objectId")
        if object_id not in (None, ""):
            type_id = traits.get("objectTypeId") or self.object_type_id
            op["cio_relationships"] = [{"identifiers": {"object_type_id": str(type_id),
                                                        "object_id": str(object_id)}}]
        self._stamp(op, message)
        return op

    def _named(self, message: Dict[str, Any], action: str, name: str) -> Dict[str, Any]:
        op: Dict[str, Any] = {"type": "person", "action": action, "identifiers": self._person(message),
                              "name": name, "attributes": self._attrs(message.get("properties"))}
        self._link_anonymous(op, message)
        if message.get("messageId"):
            op["id"] = message["messageId"]
        self._stamp(op, message)
        return op

    def _translate_track(self, message: Dict[str, Any]) -> Dict[str, Any]:
        event = message.get("event")
        if not isinstance(event, str) or not event:
            raise InvalidMessageError("track needs an event", "event")
        route = RESERVED_EVENTS.get(event) if self.reserved_events else None
        if route is not None:
            op = self._reserved(message, route)
            if op is not None:
                return op
        return self._named(message, "event", event)

    def _reserved(self, message: Dict[str, Any], route: str) -> Optional[Dict[str, Any]]:
        props = message.get("properties") or {}
        context = message.get("context") or {}
        found = context.get("device")
        device: Dict[str, Any] = found if isinstance(found, dict) else {}
        if route in ("add_device", "delete_device"):
            token = device.get("token") or props.get("device_token")
            if not isinstance(token, str) or not token:
                return None  # no device to act on: keep it as a plain event
            entry: Dict[str, Any] = {"token": token}
            if route == "add_device":
                platform = device.get("type") or props.get("platform")
                if isinstance(platform, str) and platform:
                    entry["platform"] = platform.lower()
                last_used = _unix(message.get("timestamp"))
                if last_used is not None:
                    entry["last_used"] = last_used
            return {"type": "person", "action": route, "identifiers": self._person(message), "device": entry}
        if route in ("delete", "suppress", "unsuppress"):
            ids = self._person(message)
            if "anonymous_id" in ids:
                raise InvalidMessageError(f"{message.get('event')!r} needs a userId (or an e-mail)", "userId")
            return {"type": "person", "action": route, "identifiers": ids}
        object_id = props.get("objectId") or props.get("groupId") or context.get("groupId")
        if object_id in (None, ""):
            raise InvalidMessageError(f"{message.get('event')!r} needs properties.objectId", "properties")
        object_ids = {"object_type_id": str(props.get("objectTypeId") or self.object_type_id),
                      "object_id": str(object_id)}
        if route == "object_delete":
            return {"type": "object", "action": "delete", "identifiers": object_ids}
        return {"type": "person", "action": "delete_relationships", "identifiers": self._person(message),
                "cio_relationships": [{"identifiers": object_ids}]}

    def _translate_page(self, message: Dict[str, Any]) -> Dict[str, Any]:
        props = message.get("properties") or {}
        name = props.get("url") or message.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidMessageError("page needs properties.url or a name", "properties")
        return self._named(message, "page", name)

    def _translate_screen(self, message: Dict[str, Any]) -> Dict[str, Any]:
        name = message.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidMessageError("screen needs a name", "name")
        return self._named(message, "screen", name)

    def _translate_group(self, message: Dict[str, Any]) -> Dict[str, Any]:
        group_id = message.get("groupId")
        if not group_id:
            raise InvalidMessageError("group needs a groupId", "groupId")
        traits = self._attrs(message.get("traits"))
        trait_type = traits.pop("objectTypeId", None)
        type_id = message.get("objectTypeId") or trait_type or self.object_type_id
        rel_attrs = traits.pop("relationshipAttributes", None)
        op: Dict[str, Any] = {"type": "object", "action": "identify",
                              "identifiers": {"object_type_id": str(type_id), "object_id": str(group_id)},
                              "attributes": traits}
        relationship: Dict[str, Any]
        if message.get("userId"):
            relationship = {"identifiers": resolve_identifiers(str(message["userId"]))}
        elif message.get("anonymousId"):
            op["action"] = "identify_anonymous"
            relationship = {"identifiers": {"anonymous_id": str(message["anonymousId"])}}
        else:
            return op
        if isinstance(rel_attrs, dict) and rel_attrs:
            relationship["relationship_attributes"] = rel_attrs
        op["cio_relationships"] = [relationship]
        return op

    def _translate_alias(self, message: Dict[str, Any]) -> Dict[str, Any]:
        user_id, previous_id = message.get("userId"), message.get("previousId")
        if not user_id or not previous_id:
            raise InvalidMessageError("alias needs a userId and a previousId", "previousId")
        return {"type": "person", "action": "merge", "primary": resolve_identifiers(str(user_id)),
                "secondary": resolve_identifiers(str(previous_id))}


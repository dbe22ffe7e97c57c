"""Deliver the Segment-spec calls to Bloomreach Engagement's batch route (see :class:`Bloomreach`)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from ..clients.bloomreach import (
    DEFAULT_BASE_URL,
    MAX_COMMAND_BYTES,
    MAX_COMMANDS,
    auth_header,
    batch_body,
    check_properties,
    error_texts,
    project_route,
    unix_time,
)
from ..errors import ConfigurationError, InvalidMessageError, UnsupportedCallError
from . import Destination

__all__ = ["Bloomreach"]

#: Bytes of a batch body outside its commands and the commas between them.
_OVERHEAD = len(batch_body([]))


class Bloomreach(Destination):
    """Bloomreach Engagement (Exponea): ``POST {base_url}/track/v2/projects/{project_token}/batch``.

    ``Bloomreach(project_token, base_url="https://api.exponea.com",
    api_key_id=..., api_secret=... | api_token=..., hard_id="registered",
    soft_id="cookie")``.  Auth is HTTP Basic with the API key id and secret
    (private access) or ``Authorization: Token`` (public access), exactly one
    (:class:`~analytics.errors.ConfigurationError` otherwise).

    **Translation** (one batch command per call; ``command_id`` is the
    message's ``messageId``, so a command sent twice is recognisable):

    * ids: ``customer_ids`` is ``{hard_id: userId, soft_id: anonymousId}``,
      with the ones the message has (at least one is needed, else
      :class:`~analytics.errors.InvalidMessageError`).
    * ``identify`` -> ``customers`` with ``properties`` = traits and
      ``update_timestamp`` = the message's timestamp.
    * ``track`` -> ``customers/events`` with ``event_type`` = event,
      ``timestamp`` = the message's timestamp and ``properties``.
    * ``page`` -> ``customers/events`` ``page_visit`` with the properties
      plus ``page_name`` (the page's name) and, this library's addition,
      ``page_category``; ``screen`` -> ``screen_visit`` with ``screen_name``
      and ``screen_category`` (Bloomreach's own Segment destination's names).
    * ``group`` -> ``customers`` with ``properties`` ``{"group_id": groupId,
      "group_<trait>": value, ...}``: Bloomreach has no groups, this is the
      convention of Bloomreach's own Segment destination.
    * ``alias`` raises :class:`~analytics.errors.UnsupportedCallError`:
      Bloomreach cannot merge two profiles on request (see the message).
    * Timestamps are Unix seconds (float).  Traits and properties go as they
      are (nested objects stay nested, nothing is renamed); ``context`` and
      ``integrations`` are not sent.

    **Limits.**  ``max_items`` = 50 (Bloomreach's batch limit).
    ``max_message_bytes`` = 799,999: a command must be smaller than
    800,000 bytes encoded (the stricter reading of "less than 800 KBytes");
    the engine refuses a larger one at the call site.  Each property value
    must be smaller than 16,000 bytes encoded: :meth:`translate` raises
    :class:`~analytics.errors.InvalidMessageError` naming the property
    (``properties.note``).  ``max_body_bytes`` = 4,000,000: Bloomreach
    documents no request size limit; 4 MB holds one command of the largest
    size and keeps a request of 50 typical commands well under what proxies
    commonly take.  ``gzip`` = False: Bloomreach does not document
    ``Content-Encoding: gzip`` for the Tracking API.

    **Answers.**  Bloomreach answers a batch with 200 and one result per
    command, in order; :meth:`results` turns a ``success: false`` result
    into its error texts (the engine reports that item to ``on_error`` and
    does not retry it: Bloomreach says retrying cannot help).  A 200 whose
    top-level ``success`` is false fails every item; a result missing from
    the list fails its item; so does every item of a 2xx without a readable
    ``results`` list (not Bloomreach's answer: a proxy's page, say).
    """

    name = "bloomreach"
    max_items = MAX_COMMANDS
    max_message_bytes = MAX_COMMAND_BYTES - 1
    max_body_bytes = 4_000_000
    gzip = False

    def __init__(
        self,
        project_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key_id: Optional[str] = None,
        api_secret: Optional[str] = None,
        api_token: Optional[str] = None,
        hard_id: str = "registered",
        soft_id: str = "cookie",
    ) -> None:
        self.project_token, self._base_url, prefix = project_route(project_token, base_url)
        for option, value in (("hard_id", hard_id), ("soft_id", soft_id)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{option} must be a non-empty string, got {value!r}")
        if hard_id == soft_id:
            raise ConfigurationError("hard_id and soft_id must differ")
        self.hard_id = hard_id
        self.soft_id = soft_id
        self._headers = {"Authorization": auth_header(api_key_id, api_secret, api_token)}
        self.path = f"{prefix}/batch"

    def __repr__(self) -> str:
        return f"Bloomreach({self.project_token!r}, base_url={self._base_url!r})"

    # -- the Destination interface ------------------------------------------------------

    def base_url(self) -> str:
        return self._base_url

    def headers(self) -> Dict[str, str]:
        return dict(self._headers)

    def translate(self, message: Dict[str, Any]) -> Dict[str, Any]:
        kind = message.get("type")
        if kind == "alias":
            raise UnsupportedCallError(
                "Bloomreach Engagement cannot merge two customer profiles on request, so alias is not sent. "
                "Bloomreach merges profiles itself when one command carries ids of both: send an identify "
                f"(or track) with user_id and anonymous_id (the previous anonymous id) instead; it goes out with "
                f"customer_ids {{{self.hard_id!r}: user_id, {self.soft_id!r}: anonymous_id}}. "
                "Merging two registered ids is not possible.",
                "previousId",
            )
        ids = self._customer_ids(message, kind)
        stamp = self._timestamp(message)
        data: Dict[str, Any] = {"customer_ids": ids}
        if kind == "identify":
            name = "customers"
            traits = self._props(message, "traits")
            check_properties(traits, "traits")
            data["properties"] = traits
            data["update_timestamp"] = stamp
        elif kind == "group":
            name = "customers"
            group_id = message.get("groupId")
            if not isinstance(group_id, str) or not group_id:
                raise InvalidMessageError("group needs a groupId", "groupId")
            traits = self._props(message, "traits")
            check_properties(traits, "traits")
            props = {"group_id": group_id}
            for key, value in traits.items():
                props[f"group_{key}"] = value
            data["properties"] = props
            data["update_timestamp"] = stamp
        elif kind in ("track", "page", "screen"):
            name = "customers/events"
            props = self._props(message, "properties")
            if kind == "track":
                event_type = message.get("event")
                if not isinstance(event_type, str) or not event_type:
                    raise InvalidMessageError("track needs an event", "event")
            else:
                event_type = f"{kind}_visit"
                for key in ("name", "category"):
                    value = message.get(key)
                    if value is not None:
                        props[f"{kind}_{key}"] = value
            check_properties(props, "properties")
            data["event_type"] = event_type
            data["timestamp"] = stamp
            data["properties"] = props
        else:
            raise UnsupportedCallError(f"Bloomreach cannot express a {kind!r} call", "type")
        command: Dict[str, Any] = {"name": name, "data": data}
        message_id = message.get("messageId")
        if isinstance(message_id, str) and message_id:
            command["command_id"] = message_id
        return command

    def overhead(self) -> int:
        return _OVERHEAD

    def body(self, items: Sequence[bytes]) -> bytes:
        return batch_body(items)

    def results(self, status: int, body: bytes, count: int) -> List[Optional[str]]:
        try:
            doc = json.loads(body) if body.strip() else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            text = body[:200].decode("utf-8", "replace")
            return [f"HTTP {status} without a readable Bloomreach answer: {text!r}"] * count
        if doc.get("success") is False:
            return [_text(doc, "the request was refused")] * count
        results = doc.get("results")
        if not isinstance(results, list):
            return [f"HTTP {status}: the Bloomreach answer has no results list"] * count
        out: List[Optional[str]] = []
        for i in range(count):
            result = results[i] if i < len(results) else None
            if not isinstance(result, dict):
                out.append("Bloomreach sent no result for this command")
            elif result.get("success") is True:
                out.append(None)
            else:
                out.append(_text(result, "refused without a reason"))
        return out

    def item_id(self, item: Dict[str, Any]) -> Optional[str]:
        value = item.get("command_id")
        return value if isinstance(value, str) else None

    # -- helpers -------------------------------------------------------------------------

    def _customer_ids(self, message: Dict[str, Any], kind: Any) -> Dict[str, str]:
        ids: Dict[str, str] = {}
        user_id, anonymous_id = message.get("userId"), message.get("anonymousId")
        if isinstance(user_id, str) and user_id:
            ids[self.hard_id] = user_id
        if isinstance(anonymous_id, str) and anonymous_id:
            ids[self.soft_id] = anonymous_id
        if not ids:
            raise InvalidMessageError(
                f"Bloomreach needs a customer id: give {kind} a user_id or an anonymous_id", "userId"
            )
        return ids

    @staticmethod
    def _timestamp(message: Dict[str, Any]) -> float:
        stamp = message.get("timestamp")
        if stamp is None:
            raise InvalidMessageError("the message has no timestamp", "timestamp")
        return unix_time(stamp, "timestamp")

    @staticmethod
    def _props(message: Dict[str, Any], key: str) -> Dict[str, Any]:
        value = message.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidMessageError(f"{key} must be a dict, got {type(value).__name__}", key)
        return dict(value)


def _text(doc: Dict[str, Any], default: str) -> str:
    return "; ".join(error_texts(doc)) or default

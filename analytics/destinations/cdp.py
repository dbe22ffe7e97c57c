"""The default destination: Customer.io Data Pipelines' ``POST /v1/batch`` (Segment's tracking API)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import encoding
from ..messages import add_unsent_keys
from ..formats.cdp import CDPFormat, MAX_BODY_BYTES, MAX_MESSAGE_BYTES
from ..clients.auth import basic_auth
from . import Destination

__all__ = ["DataPipelines"]


class DataPipelines(Destination):
    """Segment-spec messages as they are, in ``{"batch":[...],"sentAt":"..."}`` bodies.

    ``settings`` is anything with ``host`` and ``write_key`` attributes (the
    client's live options): they are read per request, so changing
    ``client.host`` or ``client.write_key`` applies to the next batch.
    """

    name = "cdp"
    path = CDPFormat.path
    max_message_bytes = MAX_MESSAGE_BYTES
    max_body_bytes = MAX_BODY_BYTES
    max_items = CDPFormat.max_items
    gzip = True
    item_results = False  # a 2xx answer takes the whole batch

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._format = CDPFormat()
        self._auth: Optional[Tuple[str, Dict[str, str]]] = None  # (write key, header), made once per key

    def base_url(self) -> str:
        return str(self._settings.host).rstrip("/")

    def headers(self) -> Dict[str, str]:
        key = self._settings.write_key or ""
        auth = self._auth
        if auth is None or auth[0] != key:
            auth = self._auth = (key, {"Authorization": basic_auth(key, "")})
        return dict(auth[1])

    def translate(self, message: Dict[str, Any]) -> Dict[str, Any]:
        return message

    def encode(self, message: Dict[str, Any]) -> bytes:
        return encoding.dumps_message(message)

    def decode(self, item: bytes) -> Any:
        """The message as the call returned it: with the official SDK's keys that are not sent
        (``anonymousId`` None...; see :func:`analytics.messages.add_unsent_keys`)."""
        message = encoding.loads(item)
        if isinstance(message, dict) and "type" in message:
            add_unsent_keys(message)
        return message

    def overhead(self) -> int:
        return self._format.overhead()

    def body(self, items: Sequence[bytes]) -> bytes:
        return self._format.body(items)

    def results(self, status: int, body: bytes, count: int) -> List[Optional[str]]:
        return [None] * count

    def item_id(self, item: Dict[str, Any]) -> Optional[str]:
        value = item.get("messageId")
        return value if isinstance(value, str) else None

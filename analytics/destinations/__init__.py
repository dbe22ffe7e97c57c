"""Batch APIs the background engine can deliver to instead of Data Pipelines.

``Client(destination=TrackV2(site_id, api_key))`` or
``Client(destination=Bloomreach(...))``: the same queue, consumer, limits,
retries, backpressure, spool and counters; only the wire format changes.
Each call (``identify``, ``track``...) is first built as a Segment-spec
message, then :meth:`Destination.translate` turns it into the API's item,
in the caller's thread, and that item is what is queued, sent and, if it
fails, handed to ``on_error``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ..clients.auth import basic_auth
from ..encoding import dumps, loads
from ..limits import MAX_BODY_BYTES, MAX_MESSAGE_BYTES

__all__ = ["Destination", "basic_auth"]


class Destination:
    """What the engine needs to know about one batch API.

    Subclasses set the class attributes and implement the methods.  All of
    them are pure (no I/O); the consumer does the sending and the retries
    (408, 429 and 5xx are retried, other statuses refuse the whole request).
    """

    #: Short name, used in logs and in the spool's file name.
    name: str = "destination"
    #: The request path, joined to :meth:`base_url`.
    path: str = "/"
    #: The largest single item, encoded, in bytes (refused at the call site above it).
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: The largest request body, in bytes before compression.
    max_body_bytes: int = MAX_BODY_BYTES
    #: The most items in one request.
    max_items: int = 1_000_000
    #: Whether the API accepts ``Content-Encoding: gzip``.
    gzip: bool = True
    #: Whether a 2xx answer says which items were refused (then :meth:`results` is read).
    item_results: bool = True

    def base_url(self) -> str:
        """Scheme, host and port the requests go to (no trailing slash)."""
        raise NotImplementedError

    def headers(self) -> Dict[str, str]:
        """Headers of every request besides Content-Type and User-Agent (Authorization...)."""
        raise NotImplementedError

    def translate(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """The API item for one Segment-spec message built by :func:`analytics.messages.build`.

        Raises :class:`~analytics.errors.UnsupportedCallError` for a call the
        API cannot express and :class:`~analytics.errors.InvalidMessageError`
        for one it cannot take as given (the call site gets the error;
        nothing is queued).
        """
        raise NotImplementedError

    def encode(self, message: Dict[str, Any]) -> bytes:
        """The queued bytes of one message: the item :meth:`translate` makes of it, encoded once."""
        return dumps(self.translate(message))

    def decode(self, item: bytes) -> Any:
        """What ``on_error`` gets for one queued item that was not delivered: the item, decoded."""
        return loads(item)

    def overhead(self) -> int:
        """Bytes of the body outside the items and the commas between them."""
        raise NotImplementedError

    def body(self, items: Sequence[bytes]) -> bytes:
        """The request body for these already encoded items."""
        raise NotImplementedError

    def results(self, status: int, body: bytes, count: int) -> List[Optional[str]]:
        """Per-item outcome of a 2xx answer to a request of ``count`` items.

        A list of ``count`` entries: ``None`` for an item the API accepted,
        otherwise a short text saying why it refused it (those items are
        reported to ``on_error`` and not retried).
        """
        raise NotImplementedError

    def item_id(self, item: Dict[str, Any]) -> Optional[str]:
        """The message id an item carries, if any (for logs and dedupe checks)."""
        return None

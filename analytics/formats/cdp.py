"""The Data Pipelines (Segment-spec) batch body: ``{"batch":[...],"sentAt":"..."}``."""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8 is not supported anyway
    from typing_extensions import Protocol  # type: ignore

__all__ = ["BatchFormat", "CDPFormat", "MAX_MESSAGE_BYTES", "MAX_BODY_BYTES"]

#: The Data Pipelines API refuses a single message over 32 KB.
MAX_MESSAGE_BYTES = 32 * 1024
#: ... and a request body over 500 KB (decimal, before compression).
MAX_BODY_BYTES = 500_000


class BatchFormat(Protocol):
    """What the consumer needs to know about a batch API."""

    path: str
    max_message_bytes: int
    max_body_bytes: int
    max_items: int

    def overhead(self) -> int:
        """Bytes of the body outside the items and the commas between them."""

    def body(self, items: Sequence[bytes]) -> bytes:
        """The request body for these already encoded items."""


def _sent_at() -> bytes:
    # Always microseconds, so the length is fixed and the overhead exact.
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").encode("ascii")


class CDPFormat:
    """``POST /v1/batch`` of Customer.io Data Pipelines (and Segment's tracking API)."""

    path = "/v1/batch"
    max_message_bytes = MAX_MESSAGE_BYTES
    max_body_bytes = MAX_BODY_BYTES
    max_items = 1_000_000

    _PREFIX = b'{"batch":['
    _MIDDLE = b'],"sentAt":"'
    _SUFFIX = b'"}'
    _SENT_AT_LEN = len(_sent_at())

    def overhead(self) -> int:
        return len(self._PREFIX) + len(self._MIDDLE) + self._SENT_AT_LEN + len(self._SUFFIX)

    def body(self, items: Sequence[bytes]) -> bytes:
        return b"".join((self._PREFIX, b",".join(items), self._MIDDLE, _sent_at(), self._SUFFIX))

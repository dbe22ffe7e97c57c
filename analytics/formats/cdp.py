"""The Data Pipelines (Segment-spec) batch body: ``{"batch":[...],"sentAt":"..."}``."""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

from ..limits import MAX_BODY_BYTES, MAX_MESSAGE_BYTES  # the Data Pipelines API's limits

__all__ = ["CDPFormat", "MAX_MESSAGE_BYTES", "MAX_BODY_BYTES"]


def _sent_at() -> bytes:
    # Always microseconds, so the length is fixed and the overhead exact.
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").encode("ascii")


class CDPFormat:
    """The body of ``POST /v1/batch`` of Customer.io Data Pipelines (and Segment's tracking API).

    Pure: items in, bytes out; :class:`analytics.destinations.cdp.DataPipelines`
    is the destination the engine uses, built on it.
    """

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

"""HTTP transport: one attempt per call, no retries, no knowledge of batches.

The consumer talks to a :class:`Transport`; :class:`RequestsTransport` is the
default.  Users can pass their own (for a test double, another HTTP library,
or an in-process sink) as ``Client(transport=...)``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional

import requests

from .errors import TransportError

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore

__all__ = ["Response", "Transport", "RequestsTransport"]


class Response(NamedTuple):
    """What came back: status, headers (case-insensitive mapping) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request and returns the answer, or raises TransportError."""

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[dict]
    ) -> Response:
        """POST ``body`` to ``url``; raise :class:`TransportError` when there is no answer."""

    def close(self) -> None:
        """Release connections."""


class RequestsTransport:
    """A keep-alive ``requests.Session`` owned by one client and closed with it."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[dict]
    ) -> Response:
        kwargs: Dict[str, Any] = {"data": body, "headers": headers, "timeout": timeout}
        if proxies is not None:
            kwargs["proxies"] = proxies
        try:
            r = self.session.post(url, **kwargs)
            content = r.content
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {_describe(exc)}", cause=exc) from exc
        return Response(r.status_code, r.headers, content)

    def close(self) -> None:
        self.session.close()


def _describe(exc: BaseException) -> str:
    # requests nests the reason a few levels down; the innermost is the useful part.
    inner: Optional[BaseException] = exc
    seen = 0
    while inner is not None and inner.__context__ is not None and seen < 5:
        inner = inner.__context__
        seen += 1
    text = str(inner or exc)
    return text[:300]

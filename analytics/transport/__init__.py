"""Transports: one attempt per call, no retries, no knowledge of batches.

The engine talks to a :class:`Transport` (``post``, ``close``, ``abort``,
``after_fork``; see :mod:`.base`).  The default is :class:`HTTPTransport`
(:mod:`.http`).  Users can pass their own (another HTTP library, an
in-process sink) as ``Client(transport=...)``: an object with ``post`` is
enough, :func:`as_transport` supplies the rest, and :class:`BaseTransport`
is a base to subclass.  :class:`MemoryTransport` (:mod:`.memory`) answers
with a function instead of a server, for tests.
"""

from .base import BaseTransport, Response, Transport, TransportLike, as_transport
from .http import HTTPTransport, RequestsTransport, _tls_context
from .memory import Handler, MemoryTransport, Request, respond

__all__ = [
    "Response",
    "Transport",
    "TransportLike",
    "BaseTransport",
    "as_transport",
    "HTTPTransport",
    "RequestsTransport",
    "MemoryTransport",
    "Request",
    "Handler",
    "respond",
]

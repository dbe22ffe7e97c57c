"""The JSON-over-HTTP client of the direct API clients, under its earlier import path.

It lives in :mod:`analytics.clients.jsonapi` (one attempt in
:mod:`analytics.clients.http`, retries in :mod:`analytics.clients.retrying`);
this module re-exports :class:`JSONClient`, :class:`JSONResponse` and
:data:`DEFAULT_USER_AGENT`.
"""

from .clients.jsonapi import DEFAULT_USER_AGENT, JSONClient, JSONResponse

__all__ = ["JSONClient", "JSONResponse", "DEFAULT_USER_AGENT"]

"""ASGI (FastAPI, Starlette...): the request's context on every message, without blocking the event loop.

::

    from fastapi import FastAPI
    from analytics.integrations.asgi import AnalyticsMiddleware

    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, trusted_proxy_header="X-Forwarded-For")

For each HTTP request every message built while the app handles it — in the
endpoint, in a task it starts, in a thread it runs through
``run_in_threadpool`` — gets ``context.ip``, ``context.userAgent``,
``context.page`` and ``context.locale`` (see :mod:`analytics.context`).
``user_id`` is a function of the ASGI ``scope`` returning the id for calls
that give neither ``user_id`` nor ``anonymous_id`` (``lambda scope:
scope.get("user") and scope["user"].identity``...), called only when such a
call is made.  The middleware does no I/O of its own, and the calls it wraps
never wait on the event loop's thread: a call made on a running loop is never
paced (see "Batches and requests in flight" in docs/guides/batching.rst); it only queues.
WebSocket and lifespan events pass through untouched.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, MutableMapping, Optional

from ..context import request_context
from ._web import proxy_settings, request_fields

__all__ = ["AnalyticsMiddleware"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class AnalyticsMiddleware:
    """ASGI middleware: one :func:`~analytics.context.request_context` block per HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_id: Optional[Callable[[Scope], Any]] = None,
        trusted_proxy_header: Optional[str] = None,
        trusted_proxy_count: int = 1,
    ) -> None:
        self.app = app
        self.user_id = user_id
        self.proxy = proxy_settings(trusted_proxy_header, trusted_proxy_count)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers: Dict[str, str] = {}
        for name, value in scope.get("headers") or ():
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        path = scope.get("root_path", "") + scope.get("path", "/")
        query = (scope.get("query_string") or b"").decode("latin-1")
        host = headers.get("host")
        if not host:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else "localhost"
        url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
        client = scope.get("client")
        fields = request_fields(peer=client[0] if client else None, headers=headers, url=url, path=path,
                                query=query, proxy=self.proxy)
        read = self.user_id
        user_id = (lambda: read(scope)) if read is not None else None
        with request_context(fields, user_id=user_id):
            await self.app(scope, receive, send)

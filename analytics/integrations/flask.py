"""Flask (extra ``flask``): the request's context on every message, settings from ``app.config``.

::

    from flask import Flask
    from analytics.integrations.flask import Analytics

    app = Flask(__name__)
    app.config["CDP_RELAY"] = {"write_key": "YOUR_WRITE_KEY"}   # any module setting of analytics
    Analytics(app, user_id=lambda: session.get("user_id"))     # or Analytics().init_app(app)

Inside each request every message gets ``context.ip``, ``context.userAgent``,
``context.page`` and ``context.locale`` of the request (see
:mod:`analytics.context`); a call that gives neither ``user_id`` nor
``anonymous_id`` is sent for what ``user_id()`` returns, called only when such
a call is made (with Flask-Login: ``lambda: current_user.get_id()``).
``trusted_proxy_header``/``trusted_proxy_count`` (in ``CDP_RELAY`` or as
arguments) choose where ``context.ip`` comes from behind your proxies, as in
:mod:`analytics.integrations.django`.  With ``flush_after_request=True`` each
request's messages are flushed when its app context tears down, for
short-lived processes (serverless functions); it costs the request a round
trip.  Settings are applied to ``analytics`` once, in ``init_app``; a bad one
raises :class:`~analytics.errors.ConfigurationError` there.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable, Optional

from flask import Flask, g, request

from ..context import request_context
from . import facade
from ._web import apply_settings, proxy_settings, request_fields

__all__ = ["Analytics"]

_KEY = "_cdp_relay_scope"


class Analytics:
    """The Flask extension: one :func:`~analytics.context.request_context` block per request."""

    def __init__(
        self,
        app: Optional[Flask] = None,
        *,
        user_id: Optional[Callable[[], Any]] = None,
        trusted_proxy_header: Optional[str] = None,
        trusted_proxy_count: Optional[int] = None,
        flush_after_request: Optional[bool] = None,
    ) -> None:
        self.user_id = user_id
        self._given = {
            key: value
            for key, value in (
                ("trusted_proxy_header", trusted_proxy_header),
                ("trusted_proxy_count", trusted_proxy_count),
                ("flush_after_request", flush_after_request),
            )
            if value is not None
        }
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Apply ``app.config["CDP_RELAY"]`` and hook the app's requests."""
        own = {**apply_settings(app.config.get("CDP_RELAY"), 'app.config["CDP_RELAY"]'), **self._given}
        proxy = proxy_settings(own.get("trusted_proxy_header"), own.get("trusted_proxy_count", 1))
        flush = bool(own.get("flush_after_request", False))
        user_id = self.user_id

        def open_scope() -> None:
            headers = {key.lower(): value for key, value in request.headers.items()}
            fields = request_fields(
                peer=request.remote_addr, headers=headers, url=request.url, path=request.path,
                query=request.query_string.decode("latin-1"), proxy=proxy,
            )  # fmt: skip
            stack = ExitStack()
            stack.enter_context(request_context(fields, user_id=user_id))
            setattr(g, _KEY, stack)

        def close_scope(_error: Optional[BaseException] = None) -> None:
            stack = g.pop(_KEY, None)
            if stack is not None:
                stack.close()
            if flush:
                facade().flush()

        app.before_request(open_scope)
        app.teardown_request(close_scope)
        app.extensions["cdp-relay"] = self

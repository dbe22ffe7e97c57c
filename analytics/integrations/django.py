"""Django (extra ``django``): the request's context on every message, settings from ``settings.py``.

Add the middleware after Django's ``AuthenticationMiddleware``::

    # settings.py
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "analytics.integrations.django.AnalyticsMiddleware",
    ]
    CDP_RELAY = {
        "write_key": "YOUR_WRITE_KEY",              # any module setting of analytics
        "trusted_proxy_header": "X-Forwarded-For",  # only behind a proxy you run
        "trusted_proxy_count": 1,
    }

Inside each request, every message (from ``analytics.track(...)`` or any
``Client``) gets ``context.ip``, ``context.userAgent``, ``context.page``
(``url``, ``path``, ``search``, ``referrer``) and ``context.locale`` of the
request (see :mod:`analytics.context`), and a call that gives neither
``user_id`` nor ``anonymous_id`` is sent for ``request.user.pk`` when the user
is authenticated (read only when such a call is made: a request that tracks
nothing never loads the user).  ``context.ip`` is the connection's address
unless ``trusted_proxy_header`` names the header your proxies set; the address
is taken ``trusted_proxy_count`` entries from its right end, and anything that
is not an IP address is ignored.

The ``CDP_RELAY`` dict is applied to ``analytics`` once, when Django builds
the middleware; a bad value raises :class:`~analytics.errors.ConfigurationError`
at start, naming the key.  ``"flush_after_request": True`` flushes after each
response (for short-lived processes; it costs the request a round trip).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..context import request_context
from . import facade
from ._web import apply_settings, proxy_settings, request_fields

__all__ = ["AnalyticsMiddleware"]


def _user_id(request: Any) -> Callable[[], Optional[str]]:
    def read() -> Optional[str]:
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        pk = getattr(user, "pk", None)
        return None if pk is None else str(pk)

    return read


class AnalyticsMiddleware:
    """Sets the request's context (and the signed-in user's id) for the messages built while it is handled."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings  # type: ignore[import-untyped, unused-ignore]  # here, not at import

        self.get_response = get_response
        own = apply_settings(getattr(settings, "CDP_RELAY", None), "settings.CDP_RELAY")
        self.proxy = proxy_settings(own.get("trusted_proxy_header"), own.get("trusted_proxy_count", 1))
        self.flush_after_request = bool(own.get("flush_after_request", False))

    def __call__(self, request: Any) -> Any:
        meta = request.META
        headers = {key.lower(): value for key, value in request.headers.items()}
        fields = request_fields(
            peer=meta.get("REMOTE_ADDR"), headers=headers, url=request.build_absolute_uri(),
            path=request.path, query=meta.get("QUERY_STRING", ""), proxy=self.proxy,
        )  # fmt: skip
        with request_context(fields, user_id=_user_id(request)):
            response = self.get_response(request)
        if self.flush_after_request:
            facade().flush()
        return response

"""A small synchronous JSON-over-HTTP client: one base URL, one session, retries by the table.

The Bloomreach client (:mod:`analytics.clients.bloomreach`) sends one request
at a time and wants what every direct API client wants: one
``requests.Session`` (connection pooling), an ``Authorization`` header, a
``User-Agent``, a timeout, and retries of the failures its API's row of
:mod:`analytics.clients.retryable` retries, with jittered exponential
backoff that honours ``Retry-After`` (:mod:`analytics.clients.retrying`).
Anything else raises at once with the status and the body.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional, Type

import requests

from .. import _checks
from ..errors import ServiceError
from ..retry import RetryPolicy
from ..version import DEFAULT_USER_AGENT
from .http import ConnectionOwner, JSONResponse, SyncHTTP
from .retryable import BLOOMREACH, RetryRule
from .retrying import Retrying, run

__all__ = ["JSONClient", "JSONResponse", "DEFAULT_USER_AGENT"]


class JSONClient(ConnectionOwner):
    """Send JSON requests to one base URL with retries.

    ``base_url`` is joined with each request's path.  ``headers`` are sent on
    every request (``Authorization``...).  ``retry`` decides the retries (a
    :class:`~analytics.retry.RetryPolicy`; ``RetryPolicy(max_retries=0)`` for
    none) and ``rule`` what is retried (a row of :mod:`analytics.clients.retryable`;
    default: no answer, 408, 429, 5xx).  ``error_class`` is the
    :class:`~analytics.errors.ServiceError` subclass raised.  ``sleep`` and
    ``clock`` are injectable for tests.
    """

    _http: SyncHTTP

    def __init__(
        self,
        base_url: str,
        headers: Optional[Mapping[str, str]] = None,
        *,
        timeout: float = 10.0,
        retry: Optional[RetryPolicy] = None,
        user_agent: Optional[str] = None,
        error_class: Type[ServiceError] = ServiceError,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rule: RetryRule = BLOOMREACH,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = _checks.number("timeout", timeout, 0.001)
        self.retry = retry if retry is not None else RetryPolicy(max_retries=3, max_time=30.0)
        self.error_class = error_class
        self.rule = rule
        all_headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _checks.header_text("user_agent", user_agent) or DEFAULT_USER_AGENT,
        }
        all_headers.update(headers or {})
        self._http = SyncHTTP(all_headers, timeout=self.timeout, session=session)
        self._executor = Retrying(self.retry, sleep=sleep, clock=clock)

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers sent on every request."""
        return self._http.headers

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` the requests go through."""
        return self._http.session

    def url(self, path: str) -> str:
        """``path`` joined to the base URL (an absolute URL is kept as it is)."""
        if "://" in path:
            return path
        return self.base_url + ("" if path.startswith("/") else "/") + path

    def _error(self, message: str, *, retryable: bool, **details: Any) -> ServiceError:
        return self.error_class(message, retryable=retryable, **details)

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        params: Optional[Mapping[str, Any]] = None,
        ok: Callable[[int], bool] = lambda status: 200 <= status < 300,
    ) -> JSONResponse:
        """Send one request (``body`` already encoded JSON), retrying what may pass.

        Returns the :class:`JSONResponse` when ``ok(status)``; raises
        ``error_class`` for any other status at once, or when the retries or
        the retry time are used up.
        """
        url = self.url(path)

        def attempt() -> JSONResponse:
            return self._http.attempt(method, url, body=body, params=params, rule=self.rule, error=self._error,
                                      ok=ok)

        return run(self._executor, attempt)


"""A small synchronous JSON-over-HTTP client shared by the direct API clients.

The Customer.io Track API client (:mod:`customerio.track`) and the Bloomreach
client (:mod:`analytics.bloomreach`) send one request at a time and want the
same things: one ``requests.Session`` (connection pooling) per client, an
``Authorization`` header, a ``User-Agent``, a timeout, and retries of the
failures that may pass (no answer, 408, 429, 5xx) with jittered exponential
backoff that honours ``Retry-After`` (:class:`analytics.retry.RetryPolicy`).
Anything else raises at once with the status and the body.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional, Type

import requests

from . import _checks
from .errors import ServiceError
from .retry import RetryPolicy, parse_retry_after, retryable_status
from .version import VERSION

__all__ = ["JSONClient", "JSONResponse", "DEFAULT_USER_AGENT"]

log = logging.getLogger("customerio")

#: The ``User-Agent`` of the direct API clients unless one is given.
DEFAULT_USER_AGENT = f"cdp-relay/{VERSION} (python)"


class JSONResponse:
    """One answer: ``status``, ``headers``, raw ``body`` bytes, ``attempts`` made, and :meth:`json`."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, attempts: int) -> None:
        self.status = status
        self.headers = dict(headers)
        self.body = body
        self.attempts = attempts

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self, default: Any = None) -> Any:
        """The body parsed as JSON; ``default`` when it is empty or not JSON."""
        if not self.body.strip():
            return default
        try:
            return json.loads(self.body)
        except ValueError:
            return default

    def __repr__(self) -> str:
        return f"JSONResponse(status={self.status}, body={self.body[:200]!r})"


class JSONClient:
    """Send JSON requests to one base URL with retries.

    ``base_url`` is joined with each request's path.  ``headers`` are sent on
    every request (``Authorization``...).  ``retry`` decides the retries (a
    :class:`~analytics.retry.RetryPolicy`; ``RetryPolicy(max_retries=0)`` for
    none).  ``error_class`` is the :class:`~analytics.errors.ServiceError`
    subclass raised.  ``sleep`` and ``clock`` are injectable for tests.
    """

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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = _checks.number("timeout", timeout, 0.001)
        self.retry = retry if retry is not None else RetryPolicy(max_retries=3, max_time=30.0)
        self.error_class = error_class
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.headers: Dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _checks.header_text("user_agent", user_agent) or DEFAULT_USER_AGENT,
        }
        self.headers.update(headers or {})
        self._sleep = sleep
        self._clock = clock

    def url(self, path: str) -> str:
        """``path`` joined to the base URL (an absolute URL is kept as it is)."""
        if "://" in path:
            return path
        return self.base_url + ("" if path.startswith("/") else "/") + path

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
        policy = self.retry
        waits = policy.waits()
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            retry_after: Optional[float] = None
            try:
                resp = self.session.request(
                    method, url, data=body, params=params, headers=self.headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                error = self.error_class(f"{method} {url}: no answer ({type(exc).__name__}: {exc})", attempts=attempt)
                error.__cause__ = exc
            else:
                content = resp.content or b""
                if ok(resp.status_code):
                    return JSONResponse(resp.status_code, resp.headers, content, attempt)
                text = content.decode("utf-8", "replace")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                error = self.error_class(
                    f"{resp.status_code}: {method} {url}: {text[:500] or 'no body'}",
                    status=resp.status_code, body=text, retry_after=retry_after, attempts=attempt,
                )
                if not retryable_status(resp.status_code):
                    raise error
            log.debug("attempt %d of %s %s failed: %s", attempt, method, url, error)
            wait, why = policy.wait_or_give_up(waits, attempt, retry_after, self._clock() - started)
            if wait is None:
                raise self._gave_up(error, why)
            self._sleep(wait)

    def _gave_up(self, error: ServiceError, why: str) -> ServiceError:
        final = self.error_class(
            f"{error} (gave up {why})", status=error.status, body=error.body,
            retry_after=error.retry_after, attempts=error.attempts,
        )
        final.__cause__ = error.__cause__ or error
        return final

    def close(self) -> None:
        """Close the pooled connections (only a session this client created)."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> "JSONClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Retry strategies for the direct Customer.io clients, and the one attempt they wrap.

Every request of :class:`~customerio.AsyncCustomerIO`,
:class:`~customerio.APIClient` and :class:`~customerio.AsyncAPIClient` (and
of :class:`~customerio.CustomerIO` when it is given a ``retry_strategy``) is
*one attempt*, handed to a strategy::

    strategy.execute(attempt, *args, **kwargs)          # sync clients
    await strategy.execute(attempt, *args, **kwargs)    # async clients

An attempt either returns, or raises:

* :class:`RetryableError` for a failure that may pass if the same request is
  sent again: no answer (connection refused or reset, timeout, DNS, TLS) and
  the statuses in :data:`RETRYABLE_STATUSES` (408, 429, 502, 503, 504).  It
  carries ``status`` (0 when no answer came), ``body`` and ``retry_after``
  (the seconds a ``Retry-After`` header asked for, or ``None``).
* :class:`~customerio.CustomerIOException` for anything else (400, 401, 404,
  500...), with ``status`` and ``body``: sending it again cannot help, so a
  strategy must let it through at once.

A strategy is any object with an ``execute(func, *args, **kwargs)`` method
(:class:`RetryStrategy`) or, for the async clients, an ``async def execute``
(:class:`AsyncRetryStrategy`), as in async-customerio.  It should retry
:class:`RetryableError` only and re-raise everything else.  The built-in
ones, :class:`BackoffRetry` and :class:`AsyncBackoffRetry`, are the default,
so nobody has to write one: jittered exponential backoff
(:class:`analytics.retry.RetryPolicy`), a ``Retry-After`` honoured as the
least wait, and a bound on both the number of retries and the total time.
When they give up they raise the last :class:`RetryableError` again, its
message saying why (``"... (gave up after 4 attempts)"``) and ``attempts``
set.

A tenacity wrapper is a strategy too::

    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    class TenacityRetry:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        async def execute(self, func, *args, **kwargs):
            async for attempt in AsyncRetrying(**self.kwargs):
                with attempt:
                    return await func(*args, **kwargs)

    AsyncAPIClient(key, retry_strategy=TenacityRetry(
        retry=retry_if_exception_type(RetryableError), stop=stop_after_attempt(5),
        wait=wait_exponential(multiplier=1, min=1, max=30), reraise=True))

**Sending is not always idempotent.**  The App API's send endpoints
(``/v1/send/...``) have no idempotency key: a request that got no answer
*after it was written* may have been delivered, and sending it again sends a
second message.  The App API clients therefore raise such a failure as a plain
:class:`~customerio.CustomerIOException` (``status`` 0, not retried) for the
send calls; a failure to connect at all (nothing was sent) is still a
:class:`RetryableError`.  Track API calls are retried on any transport error,
as the official client does (events carry an ``id`` for deduplication).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Optional,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from .analytics.errors import ConfigurationError
from .analytics.retry import RetryPolicy, parse_retry_after

from .track import CustomerIOException

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from .analytics.apiclient import JSONResponse

__all__ = [
    "RetryStrategy",
    "AsyncRetryStrategy",
    "BackoffRetry",
    "AsyncBackoffRetry",
    "RetryableError",
    "RETRYABLE_STATUSES",
    "default_policy",
]

log = logging.getLogger("customerio")

T = TypeVar("T")

#: HTTP statuses that may succeed if the same request is sent again.  500 is not
#: one of them (as in async-customerio): it usually means this request breaks
#: something, and the API documents it for Liquid errors in templates.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


class RetryableError(CustomerIOException):
    """One attempt failed in a way that may pass: no answer, or 408/429/502/503/504.

    A :class:`~customerio.CustomerIOException` (and so an
    :class:`analytics.errors.ServiceError`): ``status`` is 0 when no answer
    came, ``body`` is the response text, ``retry_after`` the seconds a
    ``Retry-After`` header asked for (or ``None``), ``attempts`` how many
    attempts were made when a strategy gave up.
    """


@runtime_checkable
class RetryStrategy(Protocol):
    """What a sync client needs: ``execute(func, *args, **kwargs)`` calls ``func`` (one attempt)
    until it returns, retrying :class:`RetryableError` as the strategy sees fit."""

    def execute(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Return ``func(*args, **kwargs)``, retrying it on :class:`RetryableError`."""
        ...  # pragma: no cover


@runtime_checkable
class AsyncRetryStrategy(Protocol):
    """What an async client needs: ``async def execute(func, *args, **kwargs)`` awaits
    ``func(*args, **kwargs)`` (one attempt) until it returns (async-customerio's protocol)."""

    async def execute(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Return ``await func(*args, **kwargs)``, retrying it on :class:`RetryableError`."""
        ...  # pragma: no cover


def default_policy(retries: int = 3, backoff_factor: float = 0.02) -> RetryPolicy:
    """The policy behind the default strategies: ``retries`` retries after the first
    attempt, a first wait of ``backoff_factor`` seconds doubling up to 10 s, at most
    60 s in all, and a ``Retry-After`` over 60 s gives up at once (the same numbers as
    :class:`~customerio.CustomerIO`'s own retries)."""
    return RetryPolicy(max_retries=retries, max_time=60.0, base=backoff_factor,
                       cap=max(10.0, backoff_factor), max_retry_after=60.0)


class _Backoff:
    """What both built-in strategies share: when to wait, how long, when to give up."""

    def __init__(
        self,
        policy: Optional[RetryPolicy] = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise ConfigurationError(f"policy must be an analytics.retry.RetryPolicy, got {policy!r}")
        self.policy = policy if policy is not None else default_policy()
        self._clock = clock

    def _wait_before_retry(self, error: RetryableError, attempt: int, waits: Iterator[float],
                           started: float) -> float:
        """Seconds to wait before attempt ``attempt + 1``; raises when it is time to give up."""
        wait, why = self.policy.wait_or_give_up(waits, attempt, error.retry_after, self._clock() - started)
        if wait is None:
            raise self._gave_up(error, why, attempt)
        log.debug("attempt %d failed (%s); retrying in %.3f s", attempt, error, wait)
        return wait

    @staticmethod
    def _gave_up(error: RetryableError, why: str, attempts: int) -> RetryableError:
        final = RetryableError(f"{error} (gave up {why})", status=error.status, body=error.body,
                               retry_after=error.retry_after, attempts=attempts)
        final.__cause__ = error.__cause__ or error
        return final

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r})"


class BackoffRetry(_Backoff):
    """The default strategy of the sync clients: retry :class:`RetryableError` with
    jittered exponential backoff, honouring ``Retry-After``, within the
    :class:`~analytics.retry.RetryPolicy`'s retries and time (see :func:`default_policy`).

    ``BackoffRetry(RetryPolicy(max_retries=0))`` never retries.  ``sleep`` and
    ``clock`` can be replaced (tests).
    """

    def __init__(
        self,
        policy: Optional[RetryPolicy] = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(policy, clock=clock)
        self._sleep = sleep

    def execute(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``func(*args, **kwargs)`` until it returns or it is time to give up."""
        waits = self.policy.waits()
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return func(*args, **kwargs)
            except RetryableError as error:
                wait = self._wait_before_retry(error, attempt, waits, started)
            self._sleep(wait)


class AsyncBackoffRetry(_Backoff):
    """The default strategy of the async clients: :class:`BackoffRetry`'s rules, waiting
    with ``asyncio.sleep`` (so the event loop runs meanwhile, and cancelling the call
    cancels the wait)."""

    def __init__(
        self,
        policy: Optional[RetryPolicy] = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(policy, clock=clock)
        self._sleep = sleep

    async def execute(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``func(*args, **kwargs)`` until it returns or it is time to give up."""
        waits = self.policy.waits()
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await func(*args, **kwargs)
            except RetryableError as error:
                wait = self._wait_before_retry(error, attempt, waits, started)
            await self._sleep(wait)


def check_sync_strategy(strategy: Any) -> Any:
    """``strategy`` if a sync client can use it; :class:`~analytics.errors.ConfigurationError` if not."""
    execute = getattr(strategy, "execute", None)
    if not callable(execute):
        raise ConfigurationError(f"retry_strategy needs an execute(func, *args, **kwargs) method, got {strategy!r}")
    if inspect.iscoroutinefunction(execute):
        raise ConfigurationError("this client is synchronous: its retry_strategy.execute must not be async "
                                 "(use BackoffRetry, or pass this strategy to the async client)")
    return strategy


def check_async_strategy(strategy: Any) -> Any:
    """``strategy`` if an async client can use it (a :class:`BackoffRetry` is turned into an
    :class:`AsyncBackoffRetry` with the same policy); ConfigurationError if not."""
    if isinstance(strategy, BackoffRetry):
        return AsyncBackoffRetry(strategy.policy, clock=strategy._clock)
    execute = getattr(strategy, "execute", None)
    if not callable(execute):
        raise ConfigurationError(f"retry_strategy needs an async execute(func, *args, **kwargs) method, "
                                 f"got {strategy!r}")
    if not inspect.iscoroutinefunction(execute):
        raise ConfigurationError("this client is asynchronous: its retry_strategy needs an async def execute "
                                 "(use AsyncBackoffRetry, or wrap tenacity's AsyncRetrying)")
    return strategy


# -- building the errors of one attempt ------------------------------------------------


def error_detail(text: str) -> str:
    """The human-readable reason in an error body: the App API's ``{"errors": [{"detail"}]}``
    or ``{"meta": {"error"}}``, the Track API's ``{"errors": [{"message"}]}``, else the text."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(doc, dict):
        meta = doc.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("error"), str):
            return str(meta["error"])
        errors = doc.get("errors")
        if isinstance(errors, list):
            parts = []
            for item in errors[:5]:
                if isinstance(item, dict):
                    parts.append(str(item.get("detail") or item.get("message") or item))
                else:
                    parts.append(str(item))
            if parts:
                return "; ".join(parts)
    return text[:500]


def status_error(status: int, method: str, url: str, text: str,
                 retry_after_header: Optional[str]) -> CustomerIOException:
    """The exception for an answer with a non-2xx ``status``: :class:`RetryableError` for
    :data:`RETRYABLE_STATUSES`, else :class:`~customerio.CustomerIOException`."""
    retry_after = parse_retry_after(retry_after_header)
    cls = RetryableError if status in RETRYABLE_STATUSES else CustomerIOException
    detail = error_detail(text) if text else "no body"
    return cls(f"{status}: {method} {url}: {detail}", status=status, body=text, retry_after=retry_after,
               attempts=1)


def transport_error(method: str, url: str, exc: BaseException, *, connected: bool,
                    idempotent: bool) -> CustomerIOException:
    """The exception for no answer.  ``connected``: the request may have been written
    before the failure; for a non-idempotent request that is not retried (see the
    module doc)."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if connected and not idempotent:
        error = CustomerIOException(
            f"{method} {url}: no answer ({what}); the request may have been delivered, so it is not "
            "sent again (this endpoint has no idempotency key)", attempts=1)
    else:
        error = RetryableError(f"{method} {url}: no answer ({what})", attempts=1)
    error.__cause__ = exc
    return error


def requests_attempt(session: "requests.Session", method: str, url: str, *, body: Optional[bytes] = None,
                     params: Optional[Mapping[str, Any]] = None, headers: Optional[Mapping[str, str]] = None,
                     timeout: float = 10.0, idempotent: bool = True) -> "JSONResponse":
    """One request through a ``requests`` session: the :class:`~analytics.apiclient.JSONResponse`
    of a 2xx answer, else raises as the module doc says."""
    import requests

    from .analytics.apiclient import JSONResponse

    try:
        resp = session.request(method, url, data=body, params=params, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise transport_error(method, url, exc, connected=_maybe_sent(exc), idempotent=idempotent) from None
    content = resp.content or b""
    if 200 <= resp.status_code < 300:
        return JSONResponse(resp.status_code, resp.headers, content, 1)
    raise status_error(resp.status_code, method, url, content.decode("utf-8", "replace"),
                       resp.headers.get("Retry-After"))


def _maybe_sent(exc: BaseException) -> bool:
    """False when ``requests`` failed before any byte of the request could have left."""
    import requests

    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.InvalidURL,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return False
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.ConnectionError):
        # urllib3 wraps "could not connect" as NewConnectionError (refused, DNS) inside MaxRetryError
        seen = set()
        cause: Optional[BaseException] = exc
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            if type(cause).__name__ in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError"):
                return False
            reason = getattr(cause, "reason", None)
            if isinstance(reason, BaseException):
                if type(reason).__name__ in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError"):
                    return False
            cause = (exc.args[0] if cause is exc and exc.args and isinstance(exc.args[0], BaseException)
                     else cause.__cause__ or cause.__context__)
        return True
    return True

"""Retry strategies for the direct Customer.io clients.

Every request of :class:`~customerio.CustomerIO`,
:class:`~customerio.AsyncCustomerIO`, :class:`~customerio.APIClient` and
:class:`~customerio.AsyncAPIClient` is *one attempt*
(:mod:`analytics.clients.http`), handed to a strategy::

    strategy.execute(attempt, *args, **kwargs)          # sync clients
    await strategy.execute(attempt, *args, **kwargs)    # async clients

An attempt either returns, or raises:

* :class:`RetryableError` for a failure that may pass if the same request is
  sent again, as the API's row of :mod:`analytics.clients.retryable` says:
  no answer (connection refused or reset, timeout, DNS, TLS), 408, 429, 502,
  503, 504 — and on the Track API (v1 calls and ``batch()``) every 5xx, 500
  included.  It carries ``status`` (0 when no answer came), ``body`` and
  ``retry_after`` (the seconds a ``Retry-After`` header asked for, or ``None``).
* :class:`~customerio.CustomerIOException` for anything else (400, 401, 404,
  and 500 on the App API...), with ``status`` and ``body``: sending it again
  cannot help, so a strategy must let it through at once.

A strategy is any object with an ``execute(func, *args, **kwargs)`` method
(:class:`RetryStrategy`) or, for the async clients, an ``async def execute``
(:class:`AsyncRetryStrategy`), as in async-customerio.  It should retry
:class:`RetryableError` only and re-raise everything else.  The built-in
ones, :class:`BackoffRetry` and :class:`AsyncBackoffRetry` (the executor of
:mod:`analytics.clients.retrying`), are the default, so nobody has to write
one, and the same whether a client was given one or not: jittered exponential backoff
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
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol, TypeVar, cast, runtime_checkable

from .analytics.clients.http import JSONResponse
from .analytics.clients.http import SyncHTTP as _SyncHTTP
from .analytics.clients.retryable import APP_API, RetryRule
from .analytics.clients.retryable import error_detail as error_detail
from .analytics.clients.retryable import no_answer_error, status_error as _status_error
from .analytics.clients.retrying import AsyncRetrying, Retrying
from .analytics.clients.retrying import default_policy as default_policy
from .analytics.errors import ConfigurationError
from .analytics.retry import RetryPolicy
from .errors import CustomerIOException, RetryableError, customerio_error

if TYPE_CHECKING:  # pragma: no cover
    import requests

__all__ = [
    "RetryStrategy",
    "AsyncRetryStrategy",
    "BackoffRetry",
    "AsyncBackoffRetry",
    "RetryableError",
    "RETRYABLE_STATUSES",
    "default_policy",
]

T = TypeVar("T")

#: The statuses the App API retries (408, 429, 502, 503, 504); the Track API retries every 5xx
#: too.  The table of every API is :mod:`analytics.clients.retryable`.
RETRYABLE_STATUSES = APP_API.statuses


def _is_retryable_error(error: BaseException) -> bool:
    return isinstance(error, RetryableError)


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


class BackoffRetry(Retrying):
    """The default strategy of the sync clients: retry :class:`RetryableError` with
    jittered exponential backoff, honouring ``Retry-After``, within the
    :class:`~analytics.retry.RetryPolicy`'s retries and time (see :func:`default_policy`).

    ``BackoffRetry(RetryPolicy(max_retries=0))`` never retries.  ``sleep`` and
    ``clock`` can be replaced (tests).
    """

    def __init__(self, policy: Optional[RetryPolicy] = None, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(policy, sleep=sleep, clock=clock, should_retry=_is_retryable_error)


class AsyncBackoffRetry(AsyncRetrying):
    """The default strategy of the async clients: :class:`BackoffRetry`'s rules, waiting
    with ``asyncio.sleep`` (so the event loop runs meanwhile, and cancelling the call
    cancels the wait)."""

    def __init__(self, policy: Optional[RetryPolicy] = None, *,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(policy, sleep=sleep, clock=clock, should_retry=_is_retryable_error)


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


# -- the exceptions of one attempt (kept for code written for earlier versions) ------------------


def status_error(status: int, method: str, url: str, text: str, retry_after_header: Any,
                 rule: RetryRule = APP_API) -> CustomerIOException:
    """The exception for an answer with a non-2xx ``status``: :class:`RetryableError` when the
    API's ``rule`` retries it (by default the App API's), else :class:`~customerio.CustomerIOException`."""
    return cast(CustomerIOException,
                _status_error(rule, customerio_error, status, method, url, text, retry_after_header))


def transport_error(method: str, url: str, exc: BaseException, *, connected: bool,
                    idempotent: bool) -> CustomerIOException:
    """The exception for no answer.  ``connected``: the request may have been written before the
    failure; for a non-idempotent request that is not retried (see the module doc)."""
    return cast(CustomerIOException, no_answer_error(APP_API, customerio_error, method, url, exc,
                                                     maybe_sent=connected, idempotent=idempotent))


def requests_attempt(session: "requests.Session", method: str, url: str, *, body: Any = None, params: Any = None,
                     headers: Any = None, timeout: float = 10.0, idempotent: bool = True,
                     rule: RetryRule = APP_API) -> JSONResponse:
    """One request through a ``requests`` session (:class:`analytics.clients.http.SyncHTTP`): the
    :class:`~analytics.apiclient.JSONResponse` of a 2xx answer, else raises as the module doc says."""
    return _SyncHTTP({}, timeout=timeout, session=session).attempt(
        method, url, body=body, params=params, headers=headers, rule=rule, error=customerio_error,
        idempotent=idempotent)

"""The one retry executor of the direct API clients: :class:`Retrying` and :class:`AsyncRetrying`.

``executor.execute(attempt, *args, **kwargs)`` calls ``attempt`` (one
request, :mod:`analytics.clients.http`) until it returns, or until a failure
that cannot pass or the end of the :class:`~analytics.retry.RetryPolicy`:

* a failure is retried when ``should_retry(error)`` says so; by default, a
  :class:`~analytics.errors.ServiceError` whose ``retryable`` is True (set from
  the API's row of :mod:`analytics.clients.retryable`).  Anything else goes
  through at once, unchanged;
* the waits are the policy's: ``backoff.expo`` steps with equal jitter, at
  least the ``Retry-After`` the server asked for;
* it gives up after ``max_retries`` retries, when a ``Retry-After`` is over
  ``max_retry_after``, or when a wait would end past ``max_time``; it then
  raises the last error again (the same class), its message saying why
  (``"... (gave up after 4 attempts)"``) and ``attempts`` set.

The sync and async variants share every decision (:class:`_Decisions`); they
differ only in how they wait (``time.sleep`` or ``asyncio.sleep``, both
replaceable, as is the clock).  :func:`run` and :func:`arun` hand one
request to any executor or user strategy and record on the response, or on
the error, how many attempts it took.

The waits come from ``backoff.expo`` (:meth:`analytics.retry.RetryPolicy.waits`);
the loop is not ``backoff.on_exception``, because that decorator cannot make
a server's ``Retry-After`` the least wait of one step, stop on a total time
measured by an injected clock, or hand the retries to a user's strategy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Optional, TypeVar

from ..errors import ConfigurationError, ServiceError
from ..retry import RetryPolicy
from .http import JSONResponse

__all__ = ["Retrying", "AsyncRetrying", "default_policy", "is_retryable", "run", "arun"]

log = logging.getLogger("customerio")

T = TypeVar("T")


def default_policy(retries: int = 3, backoff_factor: float = 0.02) -> RetryPolicy:
    """The policy of the Customer.io clients: ``retries`` retries after the first attempt, a first
    wait of ``backoff_factor`` seconds doubling up to 10 s, at most 60 s in all, and a
    ``Retry-After`` over 60 s gives up at once."""
    return RetryPolicy(max_retries=retries, max_time=60.0, base=backoff_factor,
                       cap=max(10.0, backoff_factor), max_retry_after=60.0)


def is_retryable(error: BaseException) -> bool:
    """The default ``should_retry``: a :class:`~analytics.errors.ServiceError` that may pass."""
    return isinstance(error, ServiceError) and error.retryable


class _Decisions:
    """What both executors share: whether to retry, how long to wait, when to give up."""

    def __init__(self, policy: Optional[RetryPolicy] = None, *, clock: Callable[[], float] = time.monotonic,
                 should_retry: Callable[[BaseException], bool] = is_retryable) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise ConfigurationError(f"policy must be an analytics.retry.RetryPolicy, got {policy!r}")
        self.policy = policy if policy is not None else default_policy()
        self._clock = clock
        self._should_retry = should_retry

    def _begin(self) -> Callable[[BaseException], float]:
        """Start one call: returns ``wait_after(error)``, which takes each failed attempt's error in
        turn and returns the seconds to wait before the next attempt; it raises ``error`` when it is
        not to be retried, or the gave-up error when it is time to stop."""
        waits = self.policy.waits()
        started = self._clock()
        attempt = 0

        def wait_after(error: BaseException) -> float:
            nonlocal attempt
            attempt += 1
            if not self._should_retry(error):
                raise error
            retry_after = getattr(error, "retry_after", None)
            wait, why = self.policy.wait_or_give_up(waits, attempt, retry_after, self._clock() - started)
            if wait is None:
                raise gave_up(error, why, attempt) from None
            log.debug("attempt %d failed (%s); retrying in %.3f s", attempt, error, wait)
            return wait

        return wait_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r})"


def gave_up(error: BaseException, why: str, attempts: int) -> BaseException:
    """``error`` again, of the same class, saying why retrying stopped and after how many attempts."""
    if not isinstance(error, ServiceError):
        return error
    final = type(error)(f"{error} (gave up {why})", status=error.status, body=error.body,
                        retry_after=error.retry_after, attempts=attempts, retryable=error.retryable)
    final.__cause__ = error.__cause__ or error
    return final


class Retrying(_Decisions):
    """The sync executor: retries with ``time.sleep`` (``sleep`` and ``clock`` are replaceable)."""

    def __init__(self, policy: Optional[RetryPolicy] = None, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 should_retry: Callable[[BaseException], bool] = is_retryable) -> None:
        super().__init__(policy, clock=clock, should_retry=should_retry)
        self._sleep = sleep

    def execute(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``func(*args, **kwargs)`` until it returns or it is time to give up."""
        wait_after = self._begin()
        # AsyncRetrying.execute is this loop with awaits: a loop that calls and sleeps cannot serve
        # both a plain and an awaited call, so it is written twice; every decision is wait_after's.
        while True:
            try:
                return func(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - wait_after re-raises what is not retried
                wait = wait_after(error)
            self._sleep(wait)


class AsyncRetrying(_Decisions):
    """The async executor: :class:`Retrying`'s rules, waiting with ``asyncio.sleep`` (so the event
    loop runs meanwhile, and cancelling the call cancels the wait)."""

    def __init__(self, policy: Optional[RetryPolicy] = None, *,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 should_retry: Callable[[BaseException], bool] = is_retryable) -> None:
        super().__init__(policy, clock=clock, should_retry=should_retry)
        self._sleep = sleep

    async def execute(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``func(*args, **kwargs)`` until it returns or it is time to give up."""
        wait_after = self._begin()
        while True:  # Retrying.execute's loop, awaited
            try:
                return await func(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - wait_after re-raises what is not retried
                wait = wait_after(error)
            await self._sleep(wait)


def run(strategy: Any, attempt: Callable[[], JSONResponse]) -> JSONResponse:
    """``strategy.execute(attempt)`` (an executor or a user's strategy), with ``attempts`` set on
    the response, or on the :class:`~analytics.errors.ServiceError` raised, to the attempts made."""
    calls = 0

    def counted() -> JSONResponse:
        nonlocal calls
        calls += 1
        return attempt()

    try:
        response: JSONResponse = strategy.execute(counted)
    except ServiceError as exc:
        exc.attempts = max(exc.attempts, calls)
        raise
    response.attempts = calls
    return response


async def arun(strategy: Any, attempt: Callable[[], Awaitable[JSONResponse]]) -> JSONResponse:
    """:func:`run` for the async clients (``await strategy.execute(attempt)``)."""
    calls = 0

    async def counted() -> JSONResponse:
        nonlocal calls
        calls += 1
        return await attempt()

    try:
        response: JSONResponse = await strategy.execute(counted)
    except ServiceError as exc:
        exc.attempts = max(exc.attempts, calls)
        raise
    response.attempts = calls
    return response

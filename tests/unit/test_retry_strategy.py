"""Retry strategies (customerio.retry): the built-in backoff, the protocol, custom strategies,
and which failures are retryable — over real HTTP on loopback where a request is involved."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, List

import pytest

from analytics import RetryPolicy
from analytics.errors import ConfigurationError, ServiceError
from customerio import CustomerIO, CustomerIOException
from customerio.retry import (
    RETRYABLE_STATUSES,
    AsyncBackoffRetry,
    AsyncRetryStrategy,
    BackoffRetry,
    RetryableError,
    RetryStrategy,
    check_async_strategy,
    check_sync_strategy,
    error_detail,
    status_error,
)


FAST = dict(base=0.005, cap=0.02)


class FakeClock:
    """A clock that only moves when the fake sleep says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: List[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def failing(times: int, error: Callable[[], Exception], result: Any = "ok") -> Callable[[], Any]:
    calls = {"n": 0}

    def func() -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error()
        return result

    func.calls = calls  # type: ignore[attr-defined]
    return func


def retryable(retry_after: Any = None) -> RetryableError:
    return RetryableError("503: GET /x: busy", status=503, body="busy", retry_after=retry_after)


def test_backoff_retries_retryable_errors_until_success():
    """BackoffRetry calls again after a RetryableError and returns the first success."""
    clock = FakeClock()
    strategy = BackoffRetry(RetryPolicy(max_retries=5, max_time=60, **FAST), sleep=clock.sleep, clock=clock)
    func = failing(3, retryable)
    assert strategy.execute(func) == "ok"
    assert func.calls["n"] == 4 and len(clock.waits) == 3


def test_backoff_gives_up_after_max_retries_with_attempts_and_reason():
    """After max_retries the last RetryableError is raised again, saying why, with attempts set."""
    clock = FakeClock()
    strategy = BackoffRetry(RetryPolicy(max_retries=2, max_time=60, **FAST), sleep=clock.sleep, clock=clock)
    with pytest.raises(RetryableError) as info:
        strategy.execute(failing(10, retryable))
    assert info.value.attempts == 3 and info.value.status == 503 and info.value.body == "busy"
    assert "gave up after 3 attempts" in str(info.value)


def test_backoff_does_not_retry_other_errors():
    """A CustomerIOException that is not retryable (a 400, a 500) goes through at once."""
    clock = FakeClock()
    strategy = BackoffRetry(RetryPolicy(max_retries=5, **FAST), sleep=clock.sleep, clock=clock)
    func = failing(5, lambda: CustomerIOException("400: bad", status=400, body="bad"))
    with pytest.raises(CustomerIOException) as info:
        strategy.execute(func)
    assert func.calls["n"] == 1 and clock.waits == [] and info.value.status == 400
    with pytest.raises(ZeroDivisionError):
        strategy.execute(lambda: 1 / 0)


def test_backoff_honours_retry_after_as_the_least_wait():
    """A Retry-After longer than the backoff step is waited in full."""
    clock = FakeClock()
    strategy = BackoffRetry(RetryPolicy(max_retries=3, max_time=60, **FAST), sleep=clock.sleep, clock=clock)
    assert strategy.execute(failing(2, lambda: retryable(retry_after=2.5))) == "ok"
    assert clock.waits == [2.5, 2.5]


def test_backoff_gives_up_on_a_retry_after_over_the_limit_and_on_the_time_bound():
    """A Retry-After over max_retry_after, or a wait past max_time, gives up without waiting."""
    clock = FakeClock()
    strategy = BackoffRetry(RetryPolicy(max_retries=5, max_time=10, max_retry_after=5, **FAST),
                            sleep=clock.sleep, clock=clock)
    with pytest.raises(RetryableError, match="asked to wait 30 s"):
        strategy.execute(failing(1, lambda: retryable(retry_after=30)))
    assert clock.waits == []
    with pytest.raises(RetryableError, match="retry time is used up"):
        strategy.execute(failing(5, lambda: retryable(retry_after=4)))
    assert sum(clock.waits) <= 10


def test_async_backoff_follows_the_same_rules():
    """AsyncBackoffRetry retries, honours Retry-After and gives up like BackoffRetry."""
    clock = FakeClock()
    strategy = AsyncBackoffRetry(RetryPolicy(max_retries=2, max_time=60, **FAST), sleep=clock.asleep, clock=clock)
    calls = {"n": 0}

    async def attempt() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise retryable(retry_after=1.5)
        return "done"

    async def never() -> str:
        raise retryable()

    async def main() -> None:
        assert await strategy.execute(attempt) == "done"
        with pytest.raises(RetryableError, match="gave up after 3 attempts"):
            await strategy.execute(never)

    asyncio.run(main())
    assert clock.waits[:2] == [1.5, 1.5] and calls["n"] == 3


def test_real_waits_are_bounded():
    """With the real clock and sleep, the waits stay within the policy's cap."""
    strategy = BackoffRetry(RetryPolicy(max_retries=3, max_time=5, base=0.01, cap=0.02))
    import time

    started = time.monotonic()
    with pytest.raises(RetryableError):
        strategy.execute(failing(10, retryable))
    assert time.monotonic() - started < 1.0


class CountingStrategy:
    """A custom sync strategy: retries anything retryable up to 5 times, counting attempts."""

    def __init__(self) -> None:
        self.attempts = 0
        self.executions = 0

    def execute(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.executions += 1
        for _ in range(5):
            self.attempts += 1
            try:
                return func(*args, **kwargs)
            except RetryableError:
                continue
        return func(*args, **kwargs)


class AsyncCountingStrategy:
    """A custom async strategy, as a tenacity AsyncRetrying wrapper would be."""

    def __init__(self) -> None:
        self.attempts = 0

    async def execute(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        while True:
            self.attempts += 1
            try:
                return await func(*args, **kwargs)
            except RetryableError:
                if self.attempts >= 5:
                    raise


def test_protocols_and_strategy_checks():
    """Strategies satisfy the protocols; a sync client refuses an async strategy and vice versa;
    a BackoffRetry given to an async client becomes an AsyncBackoffRetry with the same policy."""
    assert isinstance(BackoffRetry(), RetryStrategy) and isinstance(AsyncBackoffRetry(), AsyncRetryStrategy)
    assert isinstance(CountingStrategy(), RetryStrategy)
    assert check_sync_strategy(CountingStrategy())
    with pytest.raises(ConfigurationError, match="synchronous"):
        check_sync_strategy(AsyncCountingStrategy())
    with pytest.raises(ConfigurationError, match="asynchronous"):
        check_async_strategy(CountingStrategy())
    with pytest.raises(ConfigurationError):
        check_async_strategy(object())
    policy = RetryPolicy(max_retries=7)
    converted = check_async_strategy(BackoffRetry(policy))
    assert isinstance(converted, AsyncBackoffRetry) and converted.policy is policy
    with pytest.raises(ConfigurationError):
        BackoffRetry(policy="fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_retryable_statuses(status):
    """408, 429, 502, 503 and 504 are RetryableError, with status, body and Retry-After."""
    error = status_error(status, "GET", "http://x/v1/y", '{"errors":[{"detail":"slow down","status":429}]}', "3")
    assert isinstance(error, RetryableError) and isinstance(error, ServiceError)
    assert (error.status, error.retry_after) == (status, 3.0) and "slow down" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 501])
def test_other_statuses_raise_at_once(status):
    """Every other status is a plain CustomerIOException (500 included, as async-customerio)."""
    error = status_error(status, "POST", "http://x/v1/send/email", '{"meta":{"error":"not allowed"}}', None)
    assert type(error) is CustomerIOException and error.status == status
    assert "not allowed" in str(error) and error.body == '{"meta":{"error":"not allowed"}}'


def test_error_detail_reads_every_envelope():
    """The reason is found in errors[].detail, meta.error, errors[].message, else the text."""
    assert error_detail(json.dumps({"errors": [{"detail": "a"}, {"detail": "b"}]})) == "a; b"
    assert error_detail(json.dumps({"meta": {"error": "forbidden"}})) == "forbidden"
    assert error_detail(json.dumps({"errors": [{"reason": "invalid", "message": "bad id"}]})) == "bad id"
    assert error_detail("<html>oops</html>") == "<html>oops</html>"


def test_sync_client_refuses_an_async_strategy():
    """An async strategy on the sync client is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        CustomerIO("site", "key", retry_strategy=AsyncCountingStrategy())

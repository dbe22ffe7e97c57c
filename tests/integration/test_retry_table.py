"""The retry table (analytics.clients.retryable) is what every direct client does: sync and async,
with the built-in strategy or one given, over real HTTP against the loopback collector."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterator, List

import pytest

from analytics.bloomreach import BloomreachClient, system_time
from analytics.clients.retryable import APP_API, BLOOMREACH, RULES, TRACK_V1, TRACK_V2_BATCH, RetryRule
from analytics.clients.retrying import AsyncRetrying, Retrying
from analytics.collector import Collector
from analytics.errors import ServiceError
from analytics.retry import RetryPolicy
from customerio import (
    APIClient,
    AsyncAPIClient,
    AsyncBackoffRetry,
    AsyncCustomerIO,
    BackoffRetry,
    CustomerIO,
    RetryableError,
    SendSMSRequest,
    v2,
)

from ..redis_server import free_port
from ..unit.test_retry_strategy import FakeClock

#: Statuses each row is checked on: the edges of every row, and some that no row retries.
STATUSES = (400, 401, 404, 408, 409, 413, 422, 429, 500, 501, 502, 503, 504, 505, 599)


def fast() -> RetryPolicy:
    return RetryPolicy(max_retries=1, max_time=10, base=0.001, cap=0.005)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    """One collector serving the Track API, App API and Bloomreach routes, any credentials."""
    with Collector() as c:
        yield c


def outcome(collector: Any, status: int, call: Callable[[], Any]) -> str:
    """Answer the next request with ``status``, make the call: "retried" (a second attempt went
    through), or "raised" (one attempt, then the error).  Anything else fails the test."""
    collector.fail_next(1, status=status)
    try:
        result = call()
    except ServiceError as error:
        assert error.status == status and error.attempts == 1 and not error.retryable
        assert not isinstance(error, RetryableError)
        return "raised"
    attempts = result.attempts if hasattr(result, "attempts") else None
    assert attempts in (2, None), result
    return "retried"


def expected(rule: RetryRule) -> dict:
    return {status: "retried" if rule.retries_status(status) else "raised" for status in STATUSES}


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


def track_calls(collector: Any, strategy: str) -> dict:
    """The Track API v1 and v2 outcome of every status, for each of the four ways of calling it."""
    kw: dict = {"host": collector.url}
    if strategy == "default":
        kw["retry_policy"] = fast()
    sync_kw = dict(kw, **({"retry_strategy": BackoffRetry(fast())} if strategy == "given" else {}))
    async_kw = dict(kw, **({"retry_strategy": AsyncBackoffRetry(fast())} if strategy == "given" else {}))
    ops = [v2.identify_person({"id": "5"}, plan="pro")]
    found: dict = {}
    with CustomerIO("site", "key", **sync_kw) as cio:
        found["sync v1"] = {s: outcome(collector, s, lambda: cio.identify(id="5")) for s in STATUSES}
        found["sync v2 batch"] = {s: outcome(collector, s, lambda: cio.batch(ops).responses[0]) for s in STATUSES}

    async def main() -> None:
        async with AsyncCustomerIO("site", "key", **async_kw) as acio:
            v1, batch = {}, {}
            for s in STATUSES:
                collector.fail_next(1, status=s)
                v1[s] = await _aoutcome(s, lambda: acio.identify(id="5"))
            for s in STATUSES:
                collector.fail_next(1, status=s)
                v2b = acio.batch(ops)
                batch[s] = await _aoutcome(s, lambda: _first_response(v2b))
            found["async v1"], found["async v2 batch"] = v1, batch

    run(main)
    return found


async def _first_response(pending: Awaitable[Any]) -> Any:
    return (await pending).responses[0]


async def _aoutcome(status: int, call: Callable[[], Awaitable[Any]]) -> str:
    try:
        result = await call()
    except ServiceError as error:
        assert error.status == status and error.attempts == 1 and not error.retryable
        assert not isinstance(error, RetryableError)
        return "raised"
    assert result.attempts == 2, result
    return "retried"


@pytest.mark.parametrize("strategy", ["default", "given"])
def test_track_api_sync_and_async_follow_the_track_rows(collector: Collector, strategy: str):
    """CustomerIO and AsyncCustomerIO, with the default strategy or one given, retry exactly the
    statuses of the Track v1 and Track v2 batch rows (500 included) and raise the others at once."""
    found = track_calls(collector, strategy)
    assert found["sync v1"] == found["async v1"] == expected(TRACK_V1)
    assert found["sync v2 batch"] == found["async v2 batch"] == expected(TRACK_V2_BATCH)
    assert found["sync v1"][500] == "retried"


@pytest.mark.parametrize("strategy", ["default", "given"])
def test_app_api_sync_and_async_follow_the_app_row(collector: Collector, strategy: str):
    """APIClient and AsyncAPIClient, with the default strategy or one given, retry exactly the App
    API row's statuses (500 is raised at once) and raise the others at once."""
    sync_kw: dict = {"retry_policy": fast()} if strategy == "default" else {"retry_strategy": BackoffRetry(fast())}
    async_kw: dict = ({"retry_policy": fast()} if strategy == "default"
                      else {"retry_strategy": AsyncBackoffRetry(fast())})
    with APIClient("app-key", url=collector.url, **sync_kw) as app:
        sync = {s: outcome(collector, s, lambda: app.segments.list()) for s in STATUSES}

    async def main() -> dict:
        async with AsyncAPIClient("app-key", url=collector.url, **async_kw) as aapp:
            found = {}
            for s in STATUSES:
                collector.fail_next(1, status=s)
                found[s] = await _adoc_outcome(s, lambda: aapp.segments.list())
            return found

    assert sync == run(main) == expected(APP_API)
    assert sync[500] == "raised" and sync[502] == "retried"


async def _adoc_outcome(status: int, call: Callable[[], Awaitable[Any]]) -> str:
    try:
        await call()
    except ServiceError as error:
        assert error.status == status and error.attempts == 1 and not error.retryable
        return "raised"
    return "retried"


def test_bloomreach_follows_its_row(collector: Collector):
    """BloomreachClient retries exactly the Bloomreach row's statuses and raises the others at once."""
    with BloomreachClient("proj", base_url=collector.url, api_key_id="id", api_secret="s", retry=fast()) as br:
        found = {s: outcome(collector, s, lambda: br.batch([system_time()]).responses[0]) for s in STATUSES}
    assert found == expected(BLOOMREACH)


def test_no_answer_is_retried_on_every_api_but_a_send_that_may_have_arrived(collector: Collector):
    """A connection reset after the request was read is retried by the Track API clients, sync and
    async, and by the App API's reads; the App API's send is not sent again (no idempotency key)."""
    with CustomerIO("site", "key", host=collector.url, retry_policy=fast()) as cio:
        collector.drop_next(1)
        assert cio.identify(id="5").attempts == 2

    async def main() -> int:
        async with AsyncCustomerIO("site", "key", host=collector.url, retry_policy=fast()) as acio:
            collector.drop_next(1)
            return (await acio.identify(id="5")).attempts

    assert run(main) == 2
    with APIClient("app-key", url=collector.url, retry_policy=fast()) as app:
        collector.drop_next(1)
        assert app.segments.list() is not None
        collector.drop_next(1)
        with pytest.raises(ServiceError) as info:
            app.send_sms(SendSMSRequest(transactional_message_id=3, identifiers={"id": "1"}))
        assert info.value.status == 0 and not info.value.retryable and info.value.attempts == 1


def test_the_table_has_one_row_per_api():
    """The table names the four APIs; the Track and Bloomreach rows retry 500, the App API's does not."""
    assert set(RULES) == {"Track v1", "Track v2 batch", "App API", "Bloomreach"}
    assert all(rule.retries_status(s) for rule in RULES.values() for s in (408, 429, 502, 503, 504))
    assert [rule.api for rule in RULES.values() if rule.retries_status(500)] == ["Track v1", "Track v2 batch",
                                                                                  "Bloomreach"]
    assert not any(rule.retries_status(s) for rule in RULES.values() for s in (400, 401, 404, 413, 422))


def script(errors: List[ServiceError]) -> Callable[[], Any]:
    """An attempt that raises ``errors`` one after the other, then returns "ok"."""
    pending = list(errors)

    def attempt() -> Any:
        if pending:
            raise pending.pop(0)
        return "ok"

    return attempt


SCRIPTS = {
    "passes after two retryable failures": [ServiceError("busy", 503, retryable=True, retry_after=0.7),
                                            ServiceError("reset", retryable=True)],
    "stops at a failure that cannot pass": [ServiceError("busy", 503, retryable=True),
                                            ServiceError("bad", 400, retryable=False)],
    "gives up after the retries": [ServiceError("busy", 503, retryable=True)] * 4,
    "gives up on a long Retry-After": [ServiceError("later", 429, retryable=True, retry_after=600)],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_sync_and_async_executors_decide_alike(name: str):
    """Given the same failures, Retrying and AsyncRetrying make the same attempts, wait the same
    (Retry-After as the least wait) and end the same way (the same error class and message)."""
    def policy() -> RetryPolicy:
        return RetryPolicy(max_retries=2, max_time=30, base=0.1, cap=1.0, rng=lambda: 0.5)

    sync_clock, async_clock = FakeClock(), FakeClock()
    sync = Retrying(policy(), sleep=sync_clock.sleep, clock=sync_clock)
    asyn = AsyncRetrying(policy(), sleep=async_clock.asleep, clock=async_clock)

    def outcome_of(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ServiceError as error:
            return (type(error), str(error), error.retryable)

    async def async_attempt_for(errors: List[ServiceError]) -> Any:
        attempt = script(errors)

        async def once() -> Any:
            return attempt()

        return await asyn.execute(once)

    sync_result = outcome_of(lambda: sync.execute(script(SCRIPTS[name])))
    async_result = outcome_of(lambda: asyncio.run(async_attempt_for(SCRIPTS[name])))
    assert sync_result == async_result and sync_clock.waits == async_clock.waits
    if name.startswith("passes"):
        assert sync_result == "ok" and sync_clock.waits[0] >= 0.7
    elif name.startswith("gives up"):
        assert "gave up" in sync_result[1]


def test_a_refused_connection_is_retried_even_for_a_send_sync_and_async():
    """Nothing was written when the connection is refused, so even the App API's send (no
    idempotency key) is sent again, by the sync and the async client alike, until the retries end."""
    url = f"http://127.0.0.1:{free_port()}"  # a loopback port nothing listens on
    request = SendSMSRequest(transactional_message_id=3, identifiers={"id": "1"})
    with APIClient("app-key", url=url, retry_policy=fast()) as app:
        with pytest.raises(RetryableError) as sync_info:
            app.send_sms(request)

    async def main() -> RetryableError:
        async with AsyncAPIClient("app-key", url=url, retry_policy=fast()) as aapp:
            with pytest.raises(RetryableError) as info:
                await aapp.send_sms(request)
            return info.value

    async_error = run(main)
    for error in (sync_info.value, async_error):
        assert error.status == 0 and error.retryable and error.attempts == 2 and "gave up" in str(error)

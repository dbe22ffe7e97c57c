"""AsyncCustomerIO against the local collector over real HTTP (no mocks): v1 calls, v2 helpers,
batch() with the sync client's checks, splitting and results, one pool per client, retries."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Dict, Iterator, List

import pytest

from analytics import RetryPolicy
from analytics.apiclient import DEFAULT_USER_AGENT
from analytics.collector import Collector
from analytics.destinations import basic_auth
from analytics.errors import ConfigurationError
from analytics.version import VERSION
from customerio import (
    AsyncCustomerIO,
    BatchResult,
    CustomerIO,
    CustomerIOException,
    CustomerIOValidationError,
    Regions,
    RetryableError,
    v2,
)
from customerio.aio import h2_available

SITE, KEY = "site-a51", "key-9d0e"
FAST = dict(base=0.005, cap=0.02)


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def client(collector: Collector, **kw: Any) -> AsyncCustomerIO:
    kw.setdefault("retry_policy", RetryPolicy(max_retries=3, max_time=10, **FAST))
    return AsyncCustomerIO(SITE, KEY, host=collector.url, **kw)


def sized_op(i: int, size: int) -> Dict[str, Any]:
    """A person event whose compact encoding is exactly ``size`` bytes."""
    op = {"type": "person", "action": "event", "identifiers": {"id": f"u{i}"}, "name": "e",
          "id": f"op-{i}", "attributes": {"pad": ""}}
    base = len(json.dumps(op, separators=(",", ":")).encode())
    op["attributes"]["pad"] = "x" * (size - base)
    return op


def test_v1_calls_reach_the_track_api_with_basic_auth_and_user_agent(collector: Collector):
    """Each v1 call is awaited and lands on its v1 route with the site id and key, and the
    default User-Agent names the library and its version."""
    async def main() -> None:
        async with client(collector) as cio:
            responses = [
                await cio.identify(id="5", email="jane@example.com", plan="premium"),
                await cio.track("5", "purchase", {"price": 23.45}, id="01HB4HBDKTFWYZCK01DMRSWRFD"),
                await cio.track_anonymous("anon-1", "viewed", {"plan": "pro"}),
                await cio.pageview("5", "https://example.com/pricing", referrer="ad"),
                await cio.add_device("5", "tok-1", "ios", last_used=1700000000),
                await cio.delete_device("5", "tok-1"),
                await cio.suppress("5"),
                await cio.unsuppress("5"),
                await cio.merge_customers("id", "5", "email", "old@example.com"),
                await cio.delete("a b/c"),
            ]
            assert all(r.status == 200 and r.attempts == 1 for r in responses)

    asyncio.run(main())
    calls = collector.track_api.v1_calls
    assert [c.action for c in calls] == ["identify", "track", "track_anonymous", "page", "add_device",
                                         "delete_device", "suppress", "unsuppress", "merge", "delete"]
    assert calls[0].body == {"email": "jane@example.com", "plan": "premium"}
    assert calls[1].body == {"name": "purchase", "data": {"price": 23.45}, "id": "01HB4HBDKTFWYZCK01DMRSWRFD"}
    assert calls[-1].customer_id == "a b/c"
    request = collector.track_api.requests[0]
    assert request.headers["Authorization"] == basic_auth(SITE, KEY)
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT and VERSION in DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("cdp-relay/")


def test_custom_user_agent(collector: Collector):
    """user_agent replaces the default on every request."""
    async def main() -> None:
        async with client(collector, user_agent="my-app/1.0") as cio:
            await cio.identify(id="1")

    asyncio.run(main())
    assert collector.track_api.requests[0].headers["User-Agent"] == "my-app/1.0"


def test_v2_helpers_and_send_entity(collector: Collector):
    """cio.v2.<builder>(...) builds, checks and sends one operation to /api/v2/entity."""
    async def main() -> None:
        async with client(collector) as cio:
            await cio.v2.identify_person({"id": 123}, name="Jane", plan="premium")
            await cio.v2.track_person_event({"id": 123}, "purchase", amount=49.99)
            await cio.v2.add_person_device({"id": 123}, "tok_abc", "ios")
            await cio.v2.merge_persons({"id": 123}, {"email": "old@example.com"})
            await cio.v2.add_object_relationships({"object_type_id": "1", "object_id": "acme"},
                                                  [{"identifiers": {"id": 123}}])
            await cio.send_entity(v2.delete_object({"object_type_id": "1", "object_id": "acme"}))
            with pytest.raises(CustomerIOValidationError, match="name cannot be blank"):
                await cio.v2.track_person_event({"id": 123}, "")

    asyncio.run(main())
    ops = collector.track_api.operations
    assert [(o["type"], o["action"]) for o in ops] == [
        ("person", "identify"), ("person", "event"), ("person", "add_device"), ("person", "merge"),
        ("object", "add_relationships"), ("object", "delete")]
    assert ops[1]["attributes"] == {"amount": 49.99}
    assert {a.endpoint for a in collector.track_api.accepted} == {"entity"}


def test_validation_raises_before_anything_is_sent(collector: Collector):
    """Bad arguments raise CustomerIOValidationError when called; no request is made."""
    cio = client(collector)
    with pytest.raises(CustomerIOValidationError, match="id cannot be blank in identify"):
        cio.identify(id="")
    with pytest.raises(CustomerIOValidationError, match="operations\\[1\\]: name cannot be blank"):
        asyncio.run(cio.batch([v2.delete_person({"id": "1"}), {"type": "person", "action": "event",
                                                               "identifiers": {"id": "2"}}]))
    with pytest.raises(CustomerIOException, match="operations cannot be empty"):
        asyncio.run(cio.batch([]))
    assert collector.track_api.requests == []


def test_batch_splits_and_maps_results_like_the_sync_client(collector: Collector):
    """The same operations give the same requests and the same per-item results, sync or async."""
    ops: List[Dict[str, Any]] = [sized_op(i, 30_000) for i in range(40)]
    ops[5]["identifiers"] = {"id": "bad-5"}
    ops[33]["identifiers"] = {"id": "bad-33"}
    collector.track_api.reject_identifiers("bad-5", "bad-33")

    async def main() -> BatchResult:
        async with client(collector) as cio:
            return await cio.batch(ops)

    result = asyncio.run(main())
    with CustomerIO(SITE, KEY, host=collector.url) as sync:
        expected = sync.batch(ops)
    assert result.requests == expected.requests and len(result.requests) == 3
    assert result.failed == expected.failed == [5, 33]
    assert result.accepted == expected.accepted and len(result.accepted) == 38
    assert result.status_codes == [207, 200, 207] and not result.ok
    assert [e.batch_index for e in result.errors] == [5, 33 - len(result.requests[0]) - len(result.requests[1])]
    bodies = [r.raw_size for r in collector.track_api.requests if r.endpoint == "batch"]
    assert max(bodies) <= 500_000


def test_batch_failure_part_way_carries_the_result(collector: Collector):
    """When a later request of a split batch fails, the exception carries the result so far."""
    ops = [sized_op(i, 30_000) for i in range(20)]

    async def main() -> None:
        async with client(collector, retry_policy=RetryPolicy(max_retries=0)) as cio:
            original = cio._http.attempt
            seen = {"n": 0}

            async def attempt(*args: Any, **kwargs: Any) -> Any:
                seen["n"] += 1
                if seen["n"] == 2:  # the server refuses the second request of the batch
                    collector.fail_next(1, status=400, body={"errors": [{"message": "nope"}]})
                return await original(*args, **kwargs)

            cio._http.attempt = attempt  # type: ignore[method-assign]
            with pytest.raises(CustomerIOException) as info:
                await cio.batch(ops)
        result = info.value.result  # type: ignore[attr-defined]
        assert info.value.status == 400 and "nope" in info.value.body
        assert len(result.requests) == 2 and len(result.responses) == 1
        assert result.accepted == result.requests[0] and result.unsent == result.requests[1] and not result.ok

    asyncio.run(main())


def test_429_retry_after_is_honoured_and_5xx_retried(collector: Collector):
    """A 429 with Retry-After is retried after the wait; 502/503/504 are retried; the call succeeds."""
    async def main() -> None:
        async with client(collector) as cio:
            collector.fail_next(1, status=429, retry_after=0.3)
            first = await cio.track("5", "purchase")
            collector.fail_next(1, status=502)
            collector.fail_next(1, status=503)
            collector.fail_next(1, status=504)
            second = await cio.identify(id="5")
            assert (first.attempts, second.attempts) == (2, 4)

    asyncio.run(main())
    log = collector.request_log
    assert collector.retry_after_violations() == []
    assert log[1].received_at - log[0].answered_at >= 0.28
    assert [r.status for r in log] == [429, 200, 502, 503, 504, 200]


def test_4xx_raise_at_once_with_status_and_body_and_500_is_retried(collector: Collector):
    """400 and 401 are not retried: CustomerIOException with status and body, one attempt; a 500
    is retried, as CustomerIO retries it (the Track v1 row of the retry table)."""
    async def main() -> None:
        async with client(collector) as cio:
            collector.fail_next(1, status=400, body={"errors": [{"reason": "invalid", "message": "m400"}]})
            with pytest.raises(CustomerIOException) as info:
                await cio.identify(id="5")
            assert not isinstance(info.value, RetryableError)
            assert info.value.status == 400 and "m400" in info.value.body and info.value.attempts == 1
            collector.fail_next(1, status=500)
            assert (await cio.identify(id="5")).attempts == 2
        collector.track_api.allow("other", "pair")
        async with client(collector) as cio:
            with pytest.raises(CustomerIOException) as info:
                await cio.identify(id="5")
            assert info.value.status == 401

    asyncio.run(main())
    assert [r.status for r in collector.request_log] == [400, 500, 200, 401]


def test_dropped_connection_is_retried_and_refused_connection_gives_up(collector: Collector):
    """No answer is retryable for the Track API: a reset connection is retried; a port nobody
    listens on raises RetryableError with status 0 once the retries are used up."""
    async def main() -> None:
        async with client(collector) as cio:
            collector.drop_next(1)
            assert (await cio.identify(id="5")).attempts == 2
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        async with AsyncCustomerIO(SITE, KEY, host=f"http://127.0.0.1:{port}",
                                   retry_policy=RetryPolicy(max_retries=2, max_time=5, **FAST)) as dead:
            with pytest.raises(RetryableError) as info:
                await dead.identify(id="5")
            assert info.value.status == 0 and info.value.attempts == 3 and "gave up" in str(info.value)

    asyncio.run(main())


def test_one_pool_per_client_reused_and_closed(collector: Collector):
    """Sequential calls reuse one connection; concurrent calls share the client's pool; leaving
    ``async with`` closes it, and the client reconnects if used again."""
    async def main() -> None:
        cio = client(collector)
        async with cio:
            for i in range(5):
                await cio.identify(id=str(i))
            assert collector.connections == 1
            pool = cio.http
            results = await asyncio.gather(*(cio.track(str(i), "e") for i in range(20)))
            assert all(r.status == 200 for r in results) and cio.http is pool
            assert collector.connections <= 21
        assert cio.http is None
        await cio.identify(id="again")
        assert cio.http is not None
        await cio.aclose()

    asyncio.run(main())
    assert len(collector.track_api.v1_calls) == 26


def test_custom_async_strategy_is_used(collector: Collector):
    """retry_strategy= takes any object with async execute(func, *args, **kwargs)."""
    class Strategy:
        def __init__(self) -> None:
            self.calls = 0

        async def execute(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            for _ in range(10):
                self.calls += 1
                try:
                    return await func(*args, **kwargs)
                except RetryableError:
                    await asyncio.sleep(0)
            raise AssertionError("no success")

    strategy = Strategy()

    async def main() -> None:
        async with client(collector, retry_strategy=strategy) as cio:
            collector.fail_next(3, status=503)
            assert (await cio.identify(id="1")).attempts == 4

    asyncio.run(main())
    assert strategy.calls == 4


def test_configuration_checks():
    """A sync strategy is refused; regions and http2 are honoured; the legacy names exist."""
    class SyncStrategy:
        def execute(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    with pytest.raises(ConfigurationError):
        AsyncCustomerIO(SITE, KEY, retry_strategy=SyncStrategy())
    eu = AsyncCustomerIO(SITE, KEY, region=Regions.EU)
    assert eu.base_url == "https://track-eu.customer.io/api/v1"
    assert eu.batch_url == "https://track-eu.customer.io/api/v2/batch"
    assert AsyncCustomerIO(SITE, KEY)._http.http2 is h2_available()
    assert AsyncCustomerIO(SITE, KEY, http2=False)._http.http2 is False
    with pytest.raises(CustomerIOException):
        AsyncCustomerIO(SITE, KEY, region="us")  # type: ignore[arg-type]
    assert callable(AsyncCustomerIO.send_batch) and callable(AsyncCustomerIO.close)


def test_calls_on_a_new_event_loop_open_a_new_pool(collector: Collector):
    """A client used from a second asyncio.run() still works (the first loop's pool is left)."""
    cio = client(collector)
    asyncio.run(cio.identify(id="1"))
    started = time.monotonic()
    asyncio.run(cio.identify(id="2"))
    asyncio.run(cio.aclose())
    assert time.monotonic() - started < 5
    assert [c.customer_id for c in collector.track_api.v1_calls] == ["1", "2"]

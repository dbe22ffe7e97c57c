"""The async App API client (customerio.AsyncAPIClient) against the collector's App API routes
over real HTTP on loopback: the same endpoints awaited, async iterators, retries, one pool."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from analytics import RetryPolicy
from analytics.apiclient import DEFAULT_USER_AGENT
from analytics.collector import Collector
from analytics.errors import ConfigurationError
from customerio import (
    AsyncAPIClient,
    BackoffRetry,
    CustomerIOException,
    CustomerIOValidationError,
    RetryableError,
    SendEmailRequest,
    SendInboxMessageRequest,
    SendPushRequest,
    SendSMSRequest,
)
from customerio.aio import h2_available
from customerio.retry import AsyncBackoffRetry

KEY = "app-key-a7"
FAST = dict(base=0.005, cap=0.02)
T = TypeVar("T")


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def run(collector: Collector, body: Callable[[AsyncAPIClient], Awaitable[T]], **kw: Any) -> T:
    """Run ``body(app)`` in a fresh event loop with a client on the collector, closed after."""
    kw.setdefault("retry_policy", RetryPolicy(max_retries=3, max_time=10, **FAST))

    async def main() -> T:
        async with AsyncAPIClient(KEY, url=collector.url, **kw) as app:
            return await body(app)

    return asyncio.run(main())


def test_customer_endpoints_awaited(collector: Collector):
    """Each customer call is awaitable and hits its path with its query parameters."""
    async def body(app: AsyncAPIClient) -> None:
        assert (await app.customers.get_by_email("user2@example.com"))["results"][0]["cio_id"] == "a0000002"
        page = await app.customers.search({"segment": {"id": 3}}, limit=2)
        assert [p["id"] for p in page["identifiers"]] == ["1", "2"] and page["next"]
        assert len((await app.customers.get_by_ids(["1", "4"]))["customers"]) == 2
        attrs = await app.customers.get_attributes("a0000004", id_type="cio_id")
        assert attrs["customer"]["id"] == "4"
        assert len((await app.customers.get_segments(1))["segments"]) == 2
        assert len((await app.customers.get_messages(1, limit=10))["messages"]) == 5
        assert len((await app.customers.get_activities(1, type="attribute_change"))["activities"]) == 1
        assert len((await app.customers.get_relationships(1))["cio_relationships"]) == 3
        assert (await app.customers.get_subscription_preferences(1))["customer"]["topics"][0]["name"] == "Newsletter"

    run(collector, body)
    paths = [r.path for r in collector.app_api.requests]
    assert paths == ["/v1/customers", "/v1/customers", "/v1/customers/attributes", "/v1/customers/a0000004/attributes",
                     "/v1/customers/1/segments", "/v1/customers/1/messages", "/v1/customers/1/activities",
                     "/v1/customers/1/relationships", "/v1/customers/1/subscription_preferences"]
    request = collector.app_api.requests[0]
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_async_iterators_follow_cursors_and_stop(collector: Collector):
    """async for over iter_search, iter_membership, iter_messages, iter_activities and
    iter_relationships walks every page once and stops on the last."""
    async def body(app: AsyncAPIClient) -> Any:
        everyone = [p async for p in app.customers.iter_search({"segment": {"id": 2}}, limit=6)]
        pros = [p["id"] async for p in app.segments.iter_membership(1, limit=3)]
        messages = [m["id"] async for m in app.customers.iter_messages(1, limit=2)]
        activities = [a["id"] async for a in app.customers.iter_activities(1, limit=3)]
        relationships = [r async for r in app.customers.iter_relationships(1, limit=1)]
        bounded = [p async for p in app.segments.iter_membership(2, limit=5, max_pages=2)]
        return everyone, pros, messages, activities, relationships, bounded

    everyone, pros, messages, activities, relationships, bounded = run(collector, body)
    assert len(everyone) == 25 and len({p["cio_id"] for p in everyone}) == 25
    assert pros == ["3", "6", "9", "12", "15", "18", "21", None]
    assert messages == [f"msg-{i}" for i in range(1, 6)] and len(activities) == 7 and len(relationships) == 3
    assert len(bounded) == 10
    pages = [r for r in collector.app_api.requests if r.path == "/v1/customers"]
    assert len(pages) == 5 and "start" not in pages[0].query and all("start" in p.query for p in pages[1:])


def test_segments_and_sends(collector: Collector):
    """Segment calls and the four sends, awaited; send bodies recorded as sent."""
    async def body(app: AsyncAPIClient) -> None:
        created = (await app.segments.create("Beta testers"))["segment"]
        assert (await app.segments.get(created["id"]))["segment"]["type"] == "manual"
        assert (await app.segments.get_customer_count(3))["count"] == 3
        assert (await app.segments.get_used_by(2))["used_by"]["campaigns"] == []
        assert (await app.segments.get_membership(3))["ids"] == ["1", "2", "3"]
        assert len((await app.segments.list())["segments"]) == 4
        assert await app.segments.delete(created["id"]) == {}
        results = await asyncio.gather(
            app.send_email(SendEmailRequest(transactional_message_id=1, to="a@b.c", identifiers={"id": "1"})),
            app.send_push(SendPushRequest(transactional_message_id=2, identifiers={"id": "1"}, to="last_used")),
            app.send_sms(SendSMSRequest(transactional_message_id=3, identifiers={"id": "1"}, from_="+15550000000")),
            app.send_inbox_message(SendInboxMessageRequest(transactional_message_id=4, identifiers={"id": "1"})),
        )
        assert all(r["delivery_id"] for r in results)

    run(collector, body)
    sent = collector.app_api.sent
    assert sorted(s.kind for s in sent) == ["email", "inbox_message", "push", "sms"]
    assert next(s for s in sent if s.kind == "sms").body["from"] == "+15550000000"


def test_validation_before_sending(collector: Collector):
    """Argument and request checks raise before anything is awaited or sent."""
    async def body(app: AsyncAPIClient) -> None:
        with pytest.raises(CustomerIOValidationError):
            app.customers.get_activities("1", id_type="device")
        with pytest.raises(CustomerIOValidationError):
            app.segments.iter_membership(None)  # type: ignore[arg-type]
        with pytest.raises(CustomerIOValidationError, match="transactional_message_id"):
            await app.send_push(SendPushRequest(identifiers={"id": "1"}))
        with pytest.raises(CustomerIOValidationError, match="invalid request"):
            await app.send_email(object())  # type: ignore[arg-type]

    run(collector, body)
    assert collector.app_api.requests == []


def test_retries_429_and_5xx_and_raises_4xx(collector: Collector):
    """429 with Retry-After is waited, 503 retried, 404 and 400 raised at once with status and body."""
    async def body(app: AsyncAPIClient) -> None:
        collector.fail_next(1, status=429, retry_after=0.3)
        collector.fail_next(1, status=503)
        assert (await app.segments.get(1))["segment"]["name"] == "Pro plan"
        with pytest.raises(CustomerIOException) as info:
            await app.customers.get_attributes("ghost")
        assert info.value.status == 404 and "ghost" in info.value.body and info.value.attempts == 1
        with pytest.raises(CustomerIOException) as info:
            await app.customers.search({"segment": {"id": "one"}})
        assert info.value.status == 400 and "invalid filter" in str(info.value)

    run(collector, body)
    log = collector.request_log
    assert [r.status for r in log] == [429, 503, 200, 404, 400]
    assert collector.retry_after_violations() == []
    assert log[1].received_at - log[0].answered_at >= 0.28


def test_send_not_resent_after_a_dropped_answer(collector: Collector):
    """A send whose connection dropped after it was processed raises and is not sent again;
    a dropped read is retried."""
    async def body(app: AsyncAPIClient) -> None:
        collector.store_then_drop_next(1)
        with pytest.raises(CustomerIOException) as info:
            await app.send_email(SendEmailRequest(transactional_message_id=1, to="a@b.c", identifiers={"id": "1"}))
        assert info.value.status == 0 and not isinstance(info.value, RetryableError)
        collector.drop_next(1)
        assert (await app.segments.list())["segments"]

    run(collector, body)
    assert len(collector.app_api.sent) == 1
    assert [r.status for r in collector.request_log] == [0, 0, 200]


def test_custom_async_strategy_and_sync_strategy_refused(collector: Collector):
    """An async retry_strategy is used for every request; a sync one is refused; a BackoffRetry
    is turned into its async twin."""
    class Strategy:
        calls = 0

        async def execute(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            while True:
                Strategy.calls += 1
                try:
                    return await func(*args, **kwargs)
                except RetryableError:
                    continue

    async def body(app: AsyncAPIClient) -> None:
        collector.fail_next(2, status=502)
        await app.segments.list()

    run(collector, body, retry_strategy=Strategy())
    assert Strategy.calls == 3

    class SyncStrategy:
        def execute(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    with pytest.raises(ConfigurationError):
        AsyncAPIClient(KEY, retry_strategy=SyncStrategy())
    assert isinstance(AsyncAPIClient(KEY, retry_strategy=BackoffRetry())._strategy, AsyncBackoffRetry)


def test_one_pool_shared_by_concurrent_calls(collector: Collector):
    """Sequential calls reuse one connection; 30 concurrent calls share the client's pool."""
    async def body(app: AsyncAPIClient) -> None:
        for _ in range(3):
            await app.segments.list()
        assert collector.connections == 1
        pool = app.http
        results = await asyncio.gather(*(app.customers.get_attributes(str(i % 23 + 1)) for i in range(30)))
        assert len(results) == 30 and app.http is pool
        assert collector.connections <= 31

    run(collector, body)
    assert len(collector.app_api.requests) == 33


def test_http2_flag_and_user_agent():
    """http2 follows h2's presence unless set; user_agent is sent as given."""
    assert AsyncAPIClient(KEY)._http.http2 is h2_available()
    assert AsyncAPIClient(KEY, http2=False)._http.http2 is False
    client = AsyncAPIClient(KEY, user_agent="svc/3")
    assert client._headers()["User-Agent"] == "svc/3"
    assert client.url == "https://api.customer.io"

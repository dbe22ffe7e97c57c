"""Retry strategies (customerio.retry): the built-in backoff, the protocol, custom strategies,

The tests of this subject that need the loopback collector, SQLite or Redis; the others are in ``tests/unit/test_retry_strategy.py``."""

from __future__ import annotations
from typing import Iterator

import pytest

from analytics import RetryPolicy
from analytics.collector import Collector
from customerio import CustomerIO, CustomerIOException
from customerio.retry import BackoffRetry, RetryableError
from ..unit.test_retry_strategy import FAST, CountingStrategy  # shared with the tests there


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def test_custom_strategy_is_used_by_the_sync_track_client(collector: Collector):
    """CustomerIO(retry_strategy=...) hands each request to it: one attempt per call, 503 retried."""
    strategy = CountingStrategy()
    with CustomerIO("site", "key", host=collector.url, retry_strategy=strategy) as cio:
        collector.fail_next(2, status=503)
        response = cio.identify(id="5", plan="pro")
    assert response.status == 200 and response.attempts == 3
    assert strategy.executions == 1 and strategy.attempts == 3
    assert [c.customer_id for c in collector.track_api.v1_calls] == ["5"]


def test_with_a_strategy_the_track_api_retries_500_and_429_waits(collector: Collector):
    """Through a strategy, the Track API's 500 is retried as without one (the same retry table), a 400
    raises at once with status and body, and a 429's Retry-After is waited."""
    strategy = BackoffRetry(RetryPolicy(max_retries=3, max_time=10, **FAST))
    with CustomerIO("site", "key", host=collector.url, retry_strategy=strategy) as cio:
        collector.fail_next(1, status=500)
        assert cio.track("5", "purchase").attempts == 2
        collector.fail_next(1, status=400, body={"errors": [{"message": "boom"}]})
        with pytest.raises(CustomerIOException) as info:
            cio.track("5", "purchase")
        assert not isinstance(info.value, RetryableError)
        assert info.value.status == 400 and "boom" in info.value.body and info.value.attempts == 1
        collector.fail_next(1, status=429, retry_after=0.3)
        assert cio.track("5", "purchase").attempts == 2
    log = collector.request_log
    assert collector.retry_after_violations() == []
    assert log[-1].received_at - log[-2].answered_at >= 0.28

"""analytics.retry: backoff waits with jitter, Retry-After parsing, which statuses are retried."""

from __future__ import annotations

import email.utils
import time
from itertools import islice

import pytest

from analytics.retry import RetryPolicy, parse_retry_after, retryable_status

NOW = 1_800_000_000.0  # a fake "now" (whole seconds, as HTTP dates have)


def waits(rng_value: float, **kw) -> list:
    return list(islice(RetryPolicy(rng=lambda: rng_value, **kw).waits(), 8))


@pytest.mark.parametrize(
    "rng_value, expected",
    [
        (0.0, [0.25, 0.5, 1, 2, 4, 5, 5, 5]),
        (0.5, [0.375, 0.75, 1.5, 3, 6, 7.5, 7.5, 7.5]),
        (1.0, [0.5, 1, 2, 4, 8, 10, 10, 10]),
    ],
    ids=["rng-0", "rng-half", "rng-1"],
)
def test_waits_double_from_base_with_equal_jitter_and_cap(rng_value, expected):
    """Each wait is half the step plus rng()*half; steps double from base (0.5 s) and stop at cap (10 s)."""
    assert waits(rng_value) == pytest.approx(expected)


def test_waits_follow_custom_base_and_cap():
    """base and cap set the first step and the largest one."""
    assert waits(1.0, base=0.1, cap=0.5) == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_next_wait_uses_retry_after_only_as_minimum():
    """A Retry-After larger than the step is the wait; a smaller one (or None) leaves the step."""
    policy = RetryPolicy(rng=lambda: 1.0)
    steps = policy.waits()
    assert policy.next_wait(steps, 3.0) == 3.0  # step 0.5 < 3
    assert policy.next_wait(steps, 0.2) == 1.0  # step 1 > 0.2
    assert policy.next_wait(steps, None) == 2.0


@pytest.mark.parametrize(
    "header, expected",
    [
        ("3", 3.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 120, usegmt=True), 0.0),
    ],
    ids=["int", "float", "spaces", "zero", "negative", "garbage", "nan", "empty", "none", "date-future", "date-past"],
)
def test_parse_retry_after(header, expected):
    """Retry-After as delta-seconds or an HTTP date becomes seconds to wait (≥ 0), anything else None."""
    assert parse_retry_after(header, now=lambda: NOW) == expected


@pytest.fixture
def non_utc_local_time(local_zone):
    """Run with the local zone at UTC-05:00, so a date read as local time is 5 h off."""
    local_zone("EST+5")


def test_parse_retry_after_asctime_date_is_gmt(non_utc_local_time):
    """The asctime HTTP-date form ('Sun Nov  6 08:49:37 1994') is read as GMT whatever the local zone."""
    header = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(NOW + 30))
    assert parse_retry_after(header, now=lambda: NOW) == 30.0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status):
    """408, 429 and 5xx are worth retrying."""
    assert retryable_status(status) is True


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 413, 422])
def test_non_retryable_statuses(status):
    """Success and other 4xx statuses are not retried."""
    assert retryable_status(status) is False

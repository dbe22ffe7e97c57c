"""The Bloomreach client's checks and request building, before anything is sent.

The tests of this subject that need neither network nor processes; the others are in ``tests/integration/test_bloomreach.py``."""

from __future__ import annotations
import datetime as dt
from typing import Dict

import pytest

from analytics.bloomreach import MAX_PROPERTY_BYTES, BloomreachClient, customers, event, system_time, unix_time
from analytics.errors import ConfigurationError, InvalidMessageError


PROJECT = "proj-1"


KEY_ID, SECRET = "key-id-1", "secret-1"


def ids(n: int) -> Dict[str, str]:
    return {"registered": f"user-{n}@example.com"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"api_key_id": KEY_ID},
        {"api_secret": SECRET},
        {"api_key_id": KEY_ID, "api_secret": ""},
        {"api_key_id": KEY_ID, "api_secret": SECRET, "api_token": "t"},
        {"api_token": ""},
        {"api_token": "t", "timeout": 0},
        {"api_token": "t", "base_url": "api.exponea.com"},
    ],
)
def test_bad_configuration_raises(kwargs):
    """Exactly one auth kind, non-empty values, a URL and a positive timeout are required."""
    with pytest.raises(ConfigurationError):
        BloomreachClient(PROJECT, **kwargs)


def test_empty_project_token_raises():
    """The project token is required."""
    with pytest.raises(ConfigurationError):
        BloomreachClient("", api_token="t")


def test_builders_make_the_documented_shapes():
    """customers, customers/events and system/time commands as in the Bloomreach docs."""
    assert customers(ids(1), {"first_name": "Jane"}, update_timestamp=1681484247, command_id="abc") == {
        "name": "customers",
        "data": {"customer_ids": ids(1), "properties": {"first_name": "Jane"}, "update_timestamp": 1681484247.0},
        "command_id": "abc",
    }
    assert event(ids(1), "purchase", {"total_price": 10}, timestamp=1709566376) == {
        "name": "customers/events",
        "data": {"customer_ids": ids(1), "event_type": "purchase", "timestamp": 1709566376.0,
                 "properties": {"total_price": 10}},
    }
    assert event(ids(1), "visit") == {"name": "customers/events",
                                      "data": {"customer_ids": ids(1), "event_type": "visit"}}
    assert system_time() == {"name": "system/time", "data": {}}


def test_timestamps_become_unix_seconds():
    """datetime (naive = UTC), date (midnight UTC), numbers and ISO strings become float seconds."""
    assert unix_time(dt.datetime(2024, 1, 1)) == 1704067200.0
    assert unix_time(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == 1704067200.0
    assert unix_time(dt.date(2024, 1, 1)) == 1704067200.0
    assert unix_time("2024-01-01T00:00:00.5Z") == 1704067200.5
    assert unix_time(1704067200) == 1704067200.0 and isinstance(unix_time(1704067200), float)


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: customers({}, {"a": 1}), "customer_ids"),
        (lambda: customers(None, {"a": 1}), "customer_ids"),  # type: ignore[arg-type]
        (lambda: customers({"registered": 42}, {}), "customer_ids.registered"),  # type: ignore[dict-item]
        (lambda: customers({"registered": ""}, {}), "customer_ids.registered"),
        (lambda: customers(ids(1), ["a"]), "properties"),  # type: ignore[arg-type]
        (lambda: customers(ids(1), {}, update_timestamp="yesterday"), "update_timestamp"),
        (lambda: event(ids(1), ""), "event_type"),
        (lambda: event(ids(1), None), "event_type"),  # type: ignore[arg-type]
        (lambda: event(ids(1), "e", timestamp=1_700_000_000_000), "timestamp"),
        (lambda: event(ids(1), "e", timestamp=float("nan")), "timestamp"),
        (lambda: event(ids(1), "e", timestamp=True), "timestamp"),
        (lambda: event(ids(1), "e", command_id=""), "command_id"),
        (lambda: event(ids(1), "e", {"note": "x" * MAX_PROPERTY_BYTES}), "properties.note"),
    ],
)
def test_builders_validate_and_name_the_field(build, field):
    """A bad argument raises InvalidMessageError whose field names it."""
    with pytest.raises(InvalidMessageError) as info:
        build()
    assert info.value.field == field

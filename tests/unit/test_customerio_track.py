"""The Customer.io Track API client's checks and request building, before anything is sent.

The tests of this subject that need neither network nor processes; the others are in ``tests/integration/test_customerio_track.py``."""

from __future__ import annotations
from typing import Any, Dict

import pytest

import customerio
from analytics import RetryPolicy
from analytics.errors import InvalidMessageError, ServiceError
from customerio import CustomerIO, CustomerIOException, CustomerIOValidationError, Regions


SITE, KEY = "site-7c1", "key-e90f"


@pytest.mark.parametrize(
    "kwargs, base, batch",
    [
        ({}, "https://track.customer.io/api/v1", "https://track.customer.io/api/v2/batch"),
        ({"region": Regions.EU}, "https://track-eu.customer.io/api/v1", "https://track-eu.customer.io/api/v2/batch"),
        ({"host": "example.com"}, "https://example.com/api/v1", "https://example.com/api/v2/batch"),
        ({"host": "https://example.com/"}, "https://example.com/api/v1", "https://example.com/api/v2/batch"),
        ({"host": "http://example.com"}, "https://example.com/api/v1", "https://example.com/api/v2/batch"),
        ({"host": "example.com", "port": 8443}, "https://example.com:8443/api/v1",
         "https://example.com:8443/api/v2/batch"),
        ({"host": "example.com", "port": 443}, "https://example.com/api/v1", "https://example.com/api/v2/batch"),
        ({"host": "example.com:9000"}, "https://example.com:9000/api/v1", "https://example.com:9000/api/v2/batch"),
        ({"url_prefix": "/custom/prefix/"}, "https://track.customer.io/custom/prefix",
         "https://track.customer.io/api/v2/batch"),
        ({"host": "example.com", "port": 8080, "url_prefix": "v9"}, "https://example.com:8080/v9",
         "https://example.com:8080/api/v2/batch"),
        ({"host": "http://127.0.0.1:8123"}, "http://127.0.0.1:8123/api/v1", "http://127.0.0.1:8123/api/v2/batch"),
        ({"host": "http://localhost", "port": 8123}, "http://localhost:8123/api/v1",
         "http://localhost:8123/api/v2/batch"),
        ({"host": "http://[::1]:8123"}, "http://[::1]:8123/api/v1", "http://[::1]:8123/api/v2/batch"),
    ],
)
def test_url_building(kwargs: Dict[str, Any], base: str, batch: str) -> None:
    """Region, host, port and url_prefix give the official client's URLs; batch ignores url_prefix;
    http:// is kept for loopback hosts only."""
    client = CustomerIO(SITE, KEY, **kwargs)
    assert client.base_url == base
    assert client.batch_url == batch
    assert client.entity_url == batch.replace("/batch", "/entity")
    assert client.get_customer_query_string("a b/c") == base + "/customers/a%20b%2Fc"


def test_constructor_keeps_the_official_parameter_order() -> None:
    """Positional parameters are the official client's, in its order, with its defaults."""
    import inspect

    params = [(p.name, p.default) for p in inspect.signature(CustomerIO).parameters.values()
              if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert params == [
        ("site_id", None), ("api_key", None), ("host", None), ("region", Regions.US), ("port", None),
        ("url_prefix", None), ("json_encoder", None), ("retries", 3), ("timeout", 10),
        ("backoff_factor", 0.02), ("use_connection_pooling", True), ("user_agent", None),
    ]


def test_bad_settings_raise() -> None:
    """A region that is not a Region, a port conflicting with the host's, or a path in host raise."""
    with pytest.raises(CustomerIOException, match="invalid region"):
        CustomerIO(SITE, KEY, region="us")
    with pytest.raises(CustomerIOException, match="port"):
        CustomerIO(SITE, KEY, host="example.com:9000", port=9001)
    with pytest.raises(CustomerIOException, match="path"):
        CustomerIO(SITE, KEY, host="https://example.com/api")


def test_retries_and_backoff_map_onto_a_retry_policy() -> None:
    """retries is the number of retries, backoff_factor the first wait; retry_policy replaces both."""
    client = CustomerIO(SITE, KEY, retries=5, backoff_factor=0.25)
    assert (client.retry_policy.max_retries, client.retry_policy.base) == (5, 0.25)
    policy = RetryPolicy(max_retries=1)
    assert CustomerIO(SITE, KEY, retry_policy=policy).retry_policy is policy


def test_public_names() -> None:
    """The official import line works and the exceptions sit in the project's tree."""
    from customerio import CustomerIO as A, CustomerIOException as C, Regions as B  # noqa: F401

    assert issubclass(CustomerIOException, ServiceError)
    assert issubclass(CustomerIOValidationError, CustomerIOException)
    assert issubclass(CustomerIOValidationError, InvalidMessageError)
    import analytics

    assert customerio.analytics is analytics
    for name in customerio.__all__:
        assert hasattr(customerio, name), name

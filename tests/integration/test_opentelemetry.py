"""stats() as OpenTelemetry metrics, read with the OpenTelemetry SDK's in-memory reader, against a real collector."""

from __future__ import annotations

import gc
from typing import Any, Dict, Iterator, Tuple

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

import analytics  # noqa: E402
from analytics import Client, ConfigurationError  # noqa: E402
from analytics.integrations.opentelemetry import instrument  # noqa: E402

from ..conftest import OFFLINE_HOST, WRITE_KEY  # noqa: E402

Points = Dict[Tuple[str, Tuple[Tuple[str, Any], ...]], Any]


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    reader.provider = provider  # type: ignore[attr-defined]
    yield reader
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> Points:
    """Every data point now: {(metric name, sorted attributes): value}."""
    points: Points = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            assert scope.scope.name == "cdp-relay"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[(metric.name, tuple(sorted(point.attributes.items())))] = point.value
    return points


def value(points: Points, name: str, client: str = "client-1", **attrs: Any) -> Any:
    key = (name, tuple(sorted({"cdp_relay.client": client, **attrs}.items())))
    return points[key]


def test_delivered_requests_and_bytes_are_reported(reader, make_client, collector):
    """Messages delivered to a real collector show up as counters, with requests and bytes."""
    client = make_client()
    instrument(client, meter_provider=reader.provider)
    for i in range(25):
        client.track("u", f"e{i}")
    assert client.flush(timeout=10) == 0
    points = collect(reader)
    stats = client.stats()
    assert value(points, "cdp_relay.messages.accepted") == 25
    assert value(points, "cdp_relay.messages.delivered") == 25 == len(collector.messages)
    assert value(points, "cdp_relay.messages.pending") == 0
    assert value(points, "cdp_relay.requests") == stats["requests"] >= 1
    assert value(points, "cdp_relay.bytes.sent") == stats["bytes_sent"] > 0
    assert value(points, "cdp_relay.bytes.raw") == stats["bytes_raw"] >= stats["bytes_sent"]
    assert value(points, "cdp_relay.requests.in_flight") == 0
    for reason in ("rejected", "retries_exhausted", "too_large"):
        assert value(points, "cdp_relay.messages.failed", reason=reason) == 0


def test_failures_retries_and_drops_are_reported_by_reason(reader, make_client, collector, errors):
    """A refused batch counts as failed/rejected, a 500 as a retry, a full queue as dropped/queue_full."""
    client = make_client(max_queue_size=5, upload_size=5, pace_wait=0)
    instrument(client, meter_provider=reader.provider)
    collector.fail_next(1, status=500)
    collector.fail_next(1, status=400)
    client.track("u", "retried then refused")
    client.flush(timeout=10)
    points = collect(reader)
    assert value(points, "cdp_relay.retries") >= 1
    assert value(points, "cdp_relay.messages.failed", reason="rejected") == 1
    assert len(errors.items) == 1
    stats = client.stats()
    lost = sum(stats["failed"].values()) + sum(stats["dropped"].values())
    assert value(points, "cdp_relay.messages.accepted") == stats["delivered"] + lost + stats["pending"]


def test_a_full_queue_is_reported_as_dropped(reader, make_client, collector):
    """Calls refused because the queue is full are observed under dropped, reason queue_full."""
    collector.delay = 0.3  # every answer late: the queue fills while the first batch is out
    client = make_client(max_queue_size=3, upload_size=1, max_in_flight=1, pace_wait=0)
    instrument(client, meter_provider=reader.provider, attributes={"service": "shop"})
    results = [client.track("u", f"e{i}")[0] for i in range(50)]
    points = collect(reader)
    dropped = value(points, "cdp_relay.messages.dropped", reason="queue_full", service="shop")
    assert dropped == results.count(False) == client.stats()["dropped"]["queue_full"] > 0


def test_the_shared_client_is_followed_and_never_created(reader, collector):
    """instrument() without a client reports analytics' shared client once it exists, as "default"."""
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    handle = instrument(meter_provider=reader.provider)
    assert collect(reader) == {} and analytics.default_client is None
    analytics.track("u", "through the facade")
    analytics.flush()
    assert value(collect(reader), "cdp_relay.messages.delivered", client="default") == 1
    analytics.shutdown()
    analytics.track("u", "a new shared client")  # starts over: its own counts
    analytics.flush()
    assert value(collect(reader), "cdp_relay.messages.delivered", client="default") == 1
    handle.close()
    handle.close()
    assert collect(reader) == {}


def test_several_clients_are_told_apart_and_a_collected_one_goes(reader, make_client):
    """Each client has its own cdp_relay.client attribute; a client that was garbage collected is not reported."""
    first, second = make_client(), make_client()
    instrument(first, meter_provider=reader.provider, name="billing")
    instrument(second, meter_provider=reader.provider)
    first.track("u", "e")
    first.flush()
    points = collect(reader)
    assert value(points, "cdp_relay.messages.delivered", client="billing") == 1
    assert value(points, "cdp_relay.messages.delivered", client="client-1") == 0
    with pytest.raises(ConfigurationError, match="billing"):
        instrument(second, meter_provider=reader.provider, name="billing")
    weak = instrument(Client(WRITE_KEY, send=False, host=OFFLINE_HOST), meter_provider=reader.provider, name="gone")
    gc.collect()
    assert weak.stats() is None
    assert not [key for key in collect(reader) if ("cdp_relay.client", "gone") in key[1]]


@pytest.mark.parametrize("bad", [dict(client=object()), dict(name=""), dict(attributes={1: "x"})])
def test_bad_arguments_are_refused_at_once(reader, bad):
    """A non-client, an empty name or non-string attribute keys raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        instrument(meter_provider=reader.provider, **bad)

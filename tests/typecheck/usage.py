"""A user's module written against the documented API, as a user with ``mypy --strict`` has it.

Never run: tests/test_typing.py type-checks it with ``mypy --strict`` against the editable
install ``make`` sets up and against a normal (wheel) install.  usage_errors.py holds the
mistakes that must be reported.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List, Optional

import analytics
from analytics import APIError, DeliveryError, InvalidMessageError, StatsSnapshot
from customerio import CustomerIO, Regions
from customerio import analytics as cio_analytics
from customerio.analytics.client import Client
from customerio.analytics.destinations.trackv2 import TrackV2
from customerio.analytics.views import ConsumerView, QueueView


def on_error(error: DeliveryError, items: List[Dict[str, Any]]) -> None:
    """The application's delivery-error handler."""
    if isinstance(error, APIError):
        print("rejected", error.status, error.code, error.retryable, len(items))
    else:
        print(error.reason, error.attempts, [item.get("messageId") for item in items])


def configure() -> None:
    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.on_error = on_error
    analytics.endpoint = analytics.EU_HOST
    analytics.host = "https://cdp.customer.io"
    analytics.debug = True
    analytics.gzip = True
    analytics.timeout = 5
    analytics.upload_size = 250
    analytics.max_retries = 3
    analytics.sync_mode = False
    analytics.send = True
    analytics.max_queue_size = 100_000
    analytics.proxies = {"https": "http://proxy:3128"}
    analytics.destination = TrackV2("site-id", "api-key")
    analytics.destination = None
    cio_analytics.write_key = "YOUR_WRITE_KEY"
    cio_analytics.on_error = on_error


def calls() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    ok, msg = analytics.track("user-1", "Signed Up", {"plan": "pro"}, context={"ip": "203.0.113.7"},
                              timestamp=when, integrations={"All": True}, message_id="m-1")
    anonymous: Optional[str] = msg["anonymousId"]
    print(ok, anonymous)
    analytics.identify("user-1", {"email": "a@example.com"}, anonymous_id="anon-1")
    analytics.page("user-1", "Docs", "Intro", {"url": "https://example.com"})
    analytics.screen(anonymous_id="anon-1", name="Home")
    analytics.group("user-1", "acme", {"name": "Acme"}, object_type_id=1)
    analytics.alias("anon-1", "user-1")
    analytics.track(42, "Numeric Id")
    try:
        analytics.track(None, "No Id")
    except InvalidMessageError as error:
        field: Optional[str] = error.field
        print(field)
    except AssertionError:
        pass
    pending: int = analytics.flush(timeout=5)
    stats: StatsSnapshot = analytics.stats()
    delivered: int = stats["delivered"]
    failed: Dict[str, int] = stats["failed"]
    print(pending, delivered, failed, stats["last_error"])
    shared: Optional[Client] = analytics.default_client
    if shared is not None:
        print(shared.timeout, shared.upload_interval, shared.on_error)
    analytics.default_client = None
    dropped: int = analytics.shutdown(timeout=5)
    print(dropped)


def own_client() -> None:
    with Client("YOUR_WRITE_KEY", gzip=True, on_error=on_error, max_queue_wait=0.5) as client:
        ok, msg = client.track("user-1", "Bought", {"price": 9.5})
        queue: QueueView = client.queue
        consumers: List[ConsumerView] = client.consumers
        print(ok, msg["messageId"], queue.maxsize, queue.qsize(), queue.empty(),
              [(c.retries, c.timeout, c.upload_size, c.upload_interval, c.is_alive()) for c in consumers])
        client.gzip = False
        print(client.stats()["pending"], client.flush(timeout=2))
    track_api = CustomerIO("site-id", "api-key", region=Regions.EU)
    print(track_api)

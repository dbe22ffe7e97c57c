"""Customer.io clients.

``customerio.analytics`` *is* the top-level :mod:`analytics` module (the same
object, one set of settings, one shared client), so both of these work::

    from customerio import analytics
    import analytics

``from customerio.analytics.client import Client`` and the other submodules
resolve to the same objects too.

The Track API client is compatible with the official ``customerio`` package::

    from customerio import CustomerIO, Regions, CustomerIOException

See :mod:`customerio.track` (v1 calls, ``batch()``, ``send_entity()``),
:mod:`customerio.v2` (typed builders for v2 operations) and
:mod:`customerio.webhooks` (``validate_signature``).

asyncio and the App API, in the style of async-customerio::

    from customerio import AsyncCustomerIO, APIClient, AsyncAPIClient, SendEmailRequest

:mod:`customerio.aio` (:class:`AsyncCustomerIO`: the Track API client,
awaited; needs the ``async`` extra), :mod:`customerio.app` (:class:`APIClient`:
customers, segments, transactional sends; request objects),
:mod:`customerio.app_aio` (:class:`AsyncAPIClient`) and
:mod:`customerio.retry` (the retry-strategy protocol, :class:`BackoffRetry`,
:class:`RetryableError`).
"""

import importlib
import sys

import analytics

_SUBMODULES = (
    "client",
    "consumer",
    "encoding",
    "errors",
    "messages",
    "retry",
    "stats",
    "transport",
    "version",
    "formats",
    "queues",
)

sys.modules[__name__ + ".analytics"] = analytics
for _name in _SUBMODULES:
    sys.modules[f"{__name__}.analytics.{_name}"] = importlib.import_module(f"analytics.{_name}")
del _name

from .track import (  # noqa: E402  (after the alias above, which must come first)
    CIOID,
    EMAIL,
    ID,
    BatchResult,
    CustomerIO,
    CustomerIOException,
    CustomerIOValidationError,
    ItemError,
    Region,
    Regions,
)
from . import v2  # noqa: E402
from .webhooks import validate_signature  # noqa: E402
from .retry import (  # noqa: E402
    AsyncBackoffRetry,
    AsyncRetryStrategy,
    BackoffRetry,
    RetryableError,
    RetryStrategy,
)
from .aio import AsyncCustomerIO  # noqa: E402
from .app import (  # noqa: E402
    APIClient,
    SendEmailRequest,
    SendInboxMessageRequest,
    SendPushRequest,
    SendSMSRequest,
)
from .app_aio import AsyncAPIClient  # noqa: E402

__all__ = [
    "analytics",
    "CustomerIO",
    "CustomerIOException",
    "CustomerIOValidationError",
    "Regions",
    "Region",
    "BatchResult",
    "ItemError",
    "ID",
    "EMAIL",
    "CIOID",
    "v2",
    "validate_signature",
    "AsyncCustomerIO",
    "APIClient",
    "AsyncAPIClient",
    "SendEmailRequest",
    "SendPushRequest",
    "SendSMSRequest",
    "SendInboxMessageRequest",
    "RetryStrategy",
    "AsyncRetryStrategy",
    "BackoffRetry",
    "AsyncBackoffRetry",
    "RetryableError",
]

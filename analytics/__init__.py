"""A drop-in Customer.io Data Pipelines client that never blocks the app.

Use the module directly (one shared client, created on the first call)::

    from customerio import analytics      # or: import analytics
    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})
    analytics.flush()

or create clients of your own: ``from analytics import Client``.

Module settings (``write_key``, ``host``/``endpoint``, ``on_error``, ``debug``,
``send``, ``sync_mode``, ``max_queue_size``, ``gzip``, ``timeout``,
``max_retries``, ``upload_size``, ``upload_interval``, ``proxies`` and this
library's ``max_queue_wait``, ``max_retry_time``, ``exit_timeout``, ``pace_wait``) are
checked when assigned and, once the shared client exists, applied to it at
once: a setting changed after the first call takes effect on the next batch.
``thread`` and ``spool_path`` are read only when the shared client is created.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any, Dict, Optional, Tuple

from . import client as _client_module
from ._checks import quote as _quote
from . import errors as _errors
from .client import DEFAULT_HOST, Client
from .errors import (
    REASONS,
    AnalyticsError,
    APIError,
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    MessageTooLargeError,
    QueueFullError,
    ShutdownError,
    SpoolError,
    ServiceError,
    TransportError,
    UnserializableValueError,
    UnsupportedCallError,
)
from .retry import RetryPolicy
from .version import VERSION

__version__ = VERSION

__all__ = [
    "Client",
    "RetryPolicy",
    "DEFAULT_HOST",
    "EU_HOST",
    "VERSION",
    *_errors.__all__,
    "identify",
    "track",
    "page",
    "screen",
    "group",
    "alias",
    "flush",
    "join",
    "shutdown",
    "stats",
    "wait_durable",
    "AsyncClient",
    "aflush",
    "ashutdown",
    "default_client",
]

#: Customer.io's EU Data Pipelines endpoint.
EU_HOST = "https://cdp-eu.customer.io"

# --- settings (module attributes; see the docstring) --------------------------
write_key: Optional[str] = None
host: Optional[str] = None
on_error = None
debug = False
send = True
sync_mode = False
max_queue_size = 10000
gzip = False
timeout: float = 15
max_retries = 10
upload_size = 100
upload_interval = 0.5
proxies: Optional[dict] = None
thread = 1
max_queue_wait: Optional[float] = 0.0
max_retry_time = 60.0
exit_timeout: Optional[float] = 5.0
pace_wait = 0.004
#: A SQLite spool file for the shared client (read when it is created); see README "Durable spool".
spool_path: Optional[str] = None
#: Deliver the shared client's messages to another batch API (read when it is
#: created): ``analytics.destination = TrackV2(site_id, api_key)``; see README.
destination = None

#: The shared client, created by the first call; set it to None to start afresh.
default_client: Optional[Client] = None

_SETTINGS = (
    "write_key",
    "host",
    "on_error",
    "debug",
    "send",
    "sync_mode",
    "max_queue_size",
    "gzip",
    "timeout",
    "max_retries",
    "upload_size",
    "upload_interval",
    "proxies",
    "max_queue_wait",
    "max_retry_time",
    "exit_timeout",
    "pace_wait",
)
_CREATION_SETTINGS = ("thread", "spool_path", "destination")
# The shared client's lock, one per process (a thread of the parent may have
# held it at the fork), made at its first use there (see client._process_lock).
_locks: Dict[int, Any] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_locks.clear)


def _default() -> Client:
    global default_client
    client = default_client
    if client is not None:
        return client
    with _client_module._process_lock(_locks):
        if default_client is None:
            mod = sys.modules[__name__]
            settings = {name: getattr(mod, name) for name in _SETTINGS}
            default_client = Client(
                thread=mod.thread, spool_path=mod.spool_path, destination=mod.destination, **settings
            )
        return default_client


Result = Tuple[bool, Dict[str, Any]]


def identify(*args: Any, **kwargs: Any) -> Result:
    """Send an identify call through the shared client (see :meth:`Client.identify`)."""
    return _default().identify(*args, **kwargs)


def track(*args: Any, **kwargs: Any) -> Result:
    """Send a track call through the shared client (see :meth:`Client.track`)."""
    return _default().track(*args, **kwargs)


def page(*args: Any, **kwargs: Any) -> Result:
    """Send a page call through the shared client (see :meth:`Client.page`)."""
    return _default().page(*args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> Result:
    """Send a screen call through the shared client (see :meth:`Client.screen`)."""
    return _default().screen(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> Result:
    """Send a group call through the shared client (see :meth:`Client.group`)."""
    return _default().group(*args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> Result:
    """Send an alias call through the shared client (see :meth:`Client.alias`)."""
    return _default().alias(*args, **kwargs)


def flush(timeout: Optional[float] = None) -> int:
    """Deliver what the shared client has queued; returns how many are still pending (0: all done)."""
    client = default_client
    return 0 if client is None else client.flush(timeout)


def shutdown(timeout: Optional[float] = None) -> int:
    """Drain and stop the shared client; the next call creates a new one.  Returns messages dropped."""
    global default_client
    with _client_module._process_lock(_locks):
        client, default_client = default_client, None
    return 0 if client is None else client.shutdown(timeout)


def join(timeout: Optional[float] = None) -> int:
    """Same as :func:`shutdown`."""
    return shutdown(timeout)


def wait_durable(timeout: Optional[float] = None) -> int:
    """Wait until the shared client's messages are safe from a crash (see :meth:`Client.wait_durable`)."""
    client = default_client
    return 0 if client is None else client.wait_durable(timeout)


def stats() -> Dict[str, Any]:
    """The shared client's counters (all zero before the first call)."""
    client = default_client
    if client is None:
        from .stats import Stats

        return Stats().snapshot(0, 0, 0)
    return client.stats()


from .aio import AsyncClient  # noqa: E402  (after the facade functions it wraps)
from .aio import flush as aflush  # noqa: E402
from .aio import shutdown as ashutdown  # noqa: E402


class _Facade(types.ModuleType):
    """Module type that checks settings on assignment and applies them to the shared client."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "endpoint":
            name = "host"
        if name in _SETTINGS:
            checked = _client_module._CHECKS[name](value)  # check now, not at the first call
            if type(checked) is bool:
                value = checked  # analytics.debug = 'no' reads back False, not a truthy 'no'
            client = self.__dict__.get("default_client")
            if client is not None:
                setattr(client, name, value)  # applies
        elif name == "thread":
            _client_module._number("thread", value, 1, integer=True)
        elif name == "spool_path" and value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigurationError(f"spool_path must be a file path, got {_quote(value)}")
        elif name == "destination" and value is not None:
            from .destinations import Destination

            if not isinstance(value, Destination):
                raise ConfigurationError(
                    f"destination must be an analytics.destinations.Destination, got {_quote(value)}")
        super().__setattr__(name, value)

    @property
    def endpoint(self) -> Optional[str]:
        """Alias of ``host`` (Customer.io's docs set ``analytics.endpoint``)."""
        return self.__dict__["host"]


sys.modules[__name__].__class__ = _Facade

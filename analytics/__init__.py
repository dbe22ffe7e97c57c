"""A drop-in Customer.io Data Pipelines client that never blocks the app.

Use the module directly (one shared client, created on the first call)::

    from customerio import analytics      # or: import analytics
    analytics.write_key = "YOUR_WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})
    analytics.flush()

or create clients of your own: ``from analytics import Client``.

The shared client is made from the module settings by the first of the six
calls, ``flush()``, ``join()`` or ``shutdown()`` (as the official SDK does) and
is ``analytics.default_client`` from then on; assign ``None`` there to start
over with the current settings (a shut-down shared client is replaced by the
next call too).

Module settings (``write_key``, ``host``/``endpoint``, ``on_error``, ``debug``,
``send``, ``sync_mode``, ``max_queue_size``, ``gzip``, ``timeout``,
``max_retries``, ``upload_size``, ``upload_interval``, ``proxies`` and this
library's ``max_queue_wait``, ``max_retry_time``, ``exit_timeout``, ``pace_wait``) are
checked when assigned and, once the shared client exists, applied to it at
once: a setting changed after the first call takes effect on the next batch.
``thread``, ``spool_path`` and ``destination`` are read only when the shared
client is created.  Each is declared, with its default and check, in
:mod:`analytics.options`.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Set, TypeVar

from . import options as _options
from ._fork import process_lock as _process_lock
from .client import DEFAULT_HOST, Client
from .destinations import Destination
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
from .context import request_context

if TYPE_CHECKING:
    from typing_extensions import Concatenate, ParamSpec

    _P = ParamSpec("_P")
_R = TypeVar("_R")
from .retry import RetryPolicy
from .stats import Stats as _Stats, StatsSnapshot
from .version import VERSION

__version__ = VERSION

__all__ = [
    "Client",
    "RetryPolicy",
    "DEFAULT_HOST",
    "EU_HOST",
    "VERSION",
    # the exception tree, named one by one: type checkers do not read a computed __all__
    "AnalyticsError",
    "ConfigurationError",
    "SpoolError",
    "InvalidMessageError",
    "UnserializableValueError",
    "MessageTooLargeError",
    "UnsupportedCallError",
    "ServiceError",
    "DeliveryError",
    "APIError",
    "TransportError",
    "QueueFullError",
    "ShutdownError",
    "REASONS",
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
    "request_context",
    "StatsSnapshot",
]

#: Customer.io's EU Data Pipelines endpoint.
EU_HOST = "https://cdp-eu.customer.io"

# --- settings (module attributes; see the docstring and analytics.options) ----
_DEFAULTS = _options.DEFAULTS
write_key: Optional[str] = _DEFAULTS["write_key"]
host: Optional[str] = _DEFAULTS["host"]
on_error: Optional[_options.OnError] = _DEFAULTS["on_error"]
debug: bool = _DEFAULTS["debug"]
send: bool = _DEFAULTS["send"]
sync_mode: bool = _DEFAULTS["sync_mode"]
max_queue_size: int = _DEFAULTS["max_queue_size"]
gzip: bool = _DEFAULTS["gzip"]
timeout: float = _DEFAULTS["timeout"]
max_retries: int = _DEFAULTS["max_retries"]
upload_size: int = _DEFAULTS["upload_size"]
upload_interval: float = _DEFAULTS["upload_interval"]
proxies: Optional[Dict[str, str]] = _DEFAULTS["proxies"]
thread: int = _DEFAULTS["thread"]
max_queue_wait: Optional[float] = _DEFAULTS["max_queue_wait"]
max_retry_time: float = _DEFAULTS["max_retry_time"]
exit_timeout: Optional[float] = _DEFAULTS["exit_timeout"]
pace_wait: float = _DEFAULTS["pace_wait"]
max_in_flight: int = _DEFAULTS["max_in_flight"]
#: f(message) -> message or None, or a list of them: shape or drop each message before it is queued.
before_send: Optional[_options.BeforeSend] = _DEFAULTS["before_send"]
#: Context fields and properties added to every message (the call's own win).
global_context: Optional[Dict[str, Any]] = _DEFAULTS["global_context"]
global_properties: Optional[Dict[str, Any]] = _DEFAULTS["global_properties"]
#: A SQLite spool file for the shared client (read when it is created); see docs/guides/spool.rst.
spool_path: Optional[str] = _DEFAULTS["spool_path"]
#: Deliver the shared client's messages to another batch API (read when it is
#: created): ``analytics.destination = TrackV2(site_id, api_key)``; see docs/guides/destinations.rst.
destination: Optional[Destination] = _DEFAULTS["destination"]
#: Alias of ``host`` (Customer.io's docs set ``analytics.endpoint``): reads and assigns ``host``.
endpoint: Optional[str]  # declared for type checkers; the module's class reads and writes host

#: The shared client, created by the first call (or ``flush()``, ``join()``, ``shutdown()``)
#: from the module settings.  Public and assignable: ``analytics.default_client = None``
#: makes the next call create a new one with the current settings; a ``Client`` of your
#: own assigned here is used by the module functions.
default_client: Optional[Client] = None

# applied to the shared client when assigned; read only when it is created
_SETTINGS = tuple(o.name for o in _options.OPTIONS if o.facade and o.live)
_CREATION_SETTINGS = tuple(o.name for o in _options.OPTIONS if o.facade and not o.live)
# the settings assigned (the shared client gets these, so it knows them as given explicitly)
_given: Set[str] = set()
# The shared client's lock, one per process (a thread of the parent may have
# held it at the fork), made at its first use there (see _fork.process_lock).
_locks: Dict[int, Any] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_locks.clear)


def _default() -> Client:
    """The shared client: created from the module settings if there is none, or if the one there
    was shut down (``analytics.shutdown()`` keeps it in ``default_client``; the next call starts anew)."""
    global default_client
    client = default_client
    if client is not None and not client._closed:
        return client
    with _process_lock(_locks):
        client = default_client
        if client is None or client._closed:
            mod = sys.modules[__name__]
            client = default_client = Client(**{name: getattr(mod, name) for name in _given})
        return client


def _shared(method: "Callable[Concatenate[Client, _P], _R]") -> "Callable[_P, _R]":
    """The module function for ``Client.<method>``: the same signature (for help() and for type
    checkers), called on the shared client (created from the module settings when there is none)."""
    name = method.__name__

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_default(), name)(*args, **kwargs)

    signature = inspect.signature(method)
    call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Send a{'n' if name[0] in 'aeiou' else ''} {name} call through the shared client " \
                   f"(see :meth:`Client.{name}`)."
    return call


identify = _shared(Client.identify)
track = _shared(Client.track)
page = _shared(Client.page)
screen = _shared(Client.screen)
group = _shared(Client.group)
alias = _shared(Client.alias)


def flush(timeout: Optional[float] = None) -> int:
    """Deliver what the shared client has queued; returns how many are still pending (0: all done).

    Creates the shared client if there is none yet (as the official SDK does), so
    ``analytics.default_client`` is set afterwards.
    """
    return _default().flush(timeout)


def shutdown(timeout: Optional[float] = None) -> int:
    """Drain and stop the shared client.  Returns messages dropped.

    The client stays in ``analytics.default_client`` (created first if there was
    none, as the official SDK does); the next call creates a new one.
    """
    client = default_client
    if client is None:
        client = _default()
    return client.shutdown(timeout)


def join(timeout: Optional[float] = None) -> int:
    """Same as :func:`shutdown`."""
    return shutdown(timeout)


def wait_durable(timeout: Optional[float] = None) -> int:
    """Wait until the shared client's messages are safe from a crash (see :meth:`Client.wait_durable`)."""
    client = default_client
    return 0 if client is None else client.wait_durable(timeout)


def stats() -> StatsSnapshot:
    """The shared client's counters (all zero before the first call)."""
    client = default_client
    if client is None:
        return _Stats().snapshot(0, 0, 0)
    return client.stats()


from .aio import AsyncClient  # noqa: E402  (after the facade functions it wraps)
from .aio import flush as aflush  # noqa: E402
from .aio import shutdown as ashutdown  # noqa: E402


class _Facade(types.ModuleType):
    """Module type that checks settings on assignment and applies them to the shared client."""

    def __setattr__(self, name: str, value: Any) -> None:
        current = self.__dict__.get(name)
        if isinstance(value, types.ModuleType) and isinstance(current, types.FunctionType):
            # The import system naming a submodule on its package (analytics.stats, imported
            # again as customerio.analytics.stats): the facade function of that name stays.
            return
        if name == "endpoint":
            name = "host"
        option = _options.BY_NAME.get(name)
        if option is not None and option.facade:
            checked = option.checked(value)  # check now, not at the first call
            if type(checked) is bool:
                value = checked  # analytics.debug = 'no' reads back False, not a truthy 'no'
            client = self.__dict__.get("default_client")
            if option.live and client is not None:
                setattr(client, name, value)  # applies
            _given.add(name)
        super().__setattr__(name, value)

    @property
    def endpoint(self) -> Optional[str]:
        """Alias of ``host`` (Customer.io's docs set ``analytics.endpoint``)."""
        host: Optional[str] = self.__dict__["host"]
        return host


sys.modules[__name__].__class__ = _Facade

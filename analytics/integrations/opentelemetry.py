"""The SDK's health as OpenTelemetry metrics (extra ``otel``).

:func:`instrument` publishes what :meth:`analytics.Client.stats` counts through
the OpenTelemetry metrics API, so the exporter an application already has
(Prometheus, OTLP...) picks it up.  Nothing is measured on the hot path: the
instruments are *observable*, read from ``stats()`` when the application's
metric reader collects (every 60 s with the SDK's periodic reader)::

    from analytics.integrations.opentelemetry import instrument

    instrument()                                # the shared client of analytics.track(...)
    instrument(billing_client, name="billing")  # any Client, under its own name

The instruments, on the meter ``cdp-relay``; every observation carries the
attribute ``cdp_relay.client`` (the name given, ``default`` for the shared
client, ``client-1``, ``client-2``... otherwise), plus the ``attributes`` given:

================================  =======================  =========  ==========  ===========================
name                              instrument               unit       attribute   ``stats()`` key
================================  =======================  =========  ==========  ===========================
``cdp_relay.messages.accepted``   ObservableCounter        {message}              ``accepted``
``cdp_relay.messages.delivered``  ObservableCounter        {message}              ``delivered``
``cdp_relay.messages.failed``     ObservableCounter        {message}  ``reason``  ``failed[reason]``
``cdp_relay.messages.dropped``    ObservableCounter        {message}  ``reason``  ``dropped[reason]``
``cdp_relay.messages.pending``    ObservableUpDownCounter  {message}              ``pending``
``cdp_relay.messages.queued``     ObservableUpDownCounter  {message}              ``queued``
``cdp_relay.requests``            ObservableCounter        {request}              ``requests``
``cdp_relay.requests.in_flight``  ObservableUpDownCounter  {request}              ``requests_in_flight``
``cdp_relay.retries``             ObservableCounter        {retry}                ``retries``
``cdp_relay.bytes.raw``           ObservableCounter        By                     ``bytes_raw``
``cdp_relay.bytes.sent``          ObservableCounter        By                     ``bytes_sent`` (after gzip)
``cdp_relay.calls.paced``         ObservableCounter        {call}                 ``paced``
================================  =======================  =========  ==========  ===========================

Current amounts (pending, queued, requests in flight) are up-down counters, as
the OpenTelemetry specification advises for sizes that add up across
processes; exporters show them as gauges.  A client that was garbage collected
stops being reported; :meth:`Instrumentation.close` stops one at once.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ..errors import ConfigurationError
from ..version import VERSION
from . import facade

__all__ = ["instrument", "Instrumentation", "METER_NAME"]

#: The meter the instruments are created on.
METER_NAME = "cdp-relay"
_ATTRIBUTE = "cdp_relay.client"

# (name, kind, unit, description, how to read the observations off one stats() snapshot)
_Reader = Callable[[Dict[str, Any]], Iterable[Tuple[int, Dict[str, str]]]]


def _key(key: str) -> _Reader:
    return lambda snap: ((snap[key], {}),)


def _by_reason(key: str) -> _Reader:
    return lambda snap: ((count, {"reason": reason}) for reason, count in snap[key].items())


_COUNTER, _UPDOWN = "counter", "updown"
_INSTRUMENTS: Tuple[Tuple[str, str, str, str, _Reader], ...] = (
    ("cdp_relay.messages.accepted", _COUNTER, "{message}", "Messages the client accepted", _key("accepted")),
    ("cdp_relay.messages.delivered", _COUNTER, "{message}", "Messages the API accepted", _key("delivered")),
    ("cdp_relay.messages.failed", _COUNTER, "{message}", "Messages that failed, by reason", _by_reason("failed")),
    ("cdp_relay.messages.dropped", _COUNTER, "{message}", "Messages dropped, by reason", _by_reason("dropped")),
    ("cdp_relay.messages.pending", _UPDOWN, "{message}", "Messages queued or in flight", _key("pending")),
    ("cdp_relay.messages.queued", _UPDOWN, "{message}", "Messages waiting in the queue", _key("queued")),
    ("cdp_relay.requests", _COUNTER, "{request}", "HTTP requests made", _key("requests")),
    (
        "cdp_relay.requests.in_flight", _UPDOWN, "{request}",
        "Batches being sent or waiting for their retry", _key("requests_in_flight"),
    ),
    ("cdp_relay.retries", _COUNTER, "{retry}", "Retry attempts made", _key("retries")),
    ("cdp_relay.bytes.raw", _COUNTER, "By", "Request body bytes before compression", _key("bytes_raw")),
    ("cdp_relay.bytes.sent", _COUNTER, "By", "Request body bytes sent (after gzip)", _key("bytes_sent")),
    ("cdp_relay.calls.paced", _COUNTER, "{call}", "Calls slowed down to the delivery rate", _key("paced")),
)


class Instrumentation:
    """One client reported through one meter provider; :meth:`close` stops reporting it."""

    def __init__(self, registry: "_Registry", name: str, source: Callable[[], Any], attributes: Dict[str, Any]) -> None:
        self.name = name
        self._registry = registry
        self._source = source
        self.attributes: Mapping[str, Any] = {**attributes, _ATTRIBUTE: name}

    def stats(self) -> Optional[Dict[str, Any]]:
        """The client's ``stats()`` now, or ``None`` when there is no client (any more)."""
        client = self._source()
        return None if client is None else client.stats()

    def close(self) -> None:
        """Stop reporting this client (idempotent)."""
        self._registry.remove(self)

    def __enter__(self) -> "Instrumentation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Registry:
    """The instruments of one meter provider and the clients they report."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._lock = threading.Lock()
        self._members: List[Instrumentation] = []
        self._numbers = itertools.count(1)
        for name, kind, unit, description, read in _INSTRUMENTS:
            create = meter.create_observable_counter if kind == _COUNTER else meter.create_observable_up_down_counter
            create(name, callbacks=[self._callback(read)], unit=unit, description=description)

    def _callback(self, read: _Reader) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                members = list(self._members)
            observations = []
            for member in members:
                snap = member.stats()
                if snap is None:
                    continue
                for value, extra in read(snap):
                    observations.append(Observation(value, {**member.attributes, **extra}))
            return observations

        return observe

    def add(self, name: Optional[str], source: Callable[[], Any], attributes: Dict[str, Any]) -> Instrumentation:
        with self._lock:
            self._members = [m for m in self._members if m.name == "default" or m._source() is not None]
            if name is None:
                taken = {m.name for m in self._members}
                name = next(n for n in (f"client-{i}" for i in self._numbers) if n not in taken)
            elif any(m.name == name for m in self._members):
                raise ConfigurationError(f"instrument: a client named {name!r} is already reported")
            member = Instrumentation(self, name, source, attributes)
            self._members.append(member)
            return member

    def remove(self, member: Instrumentation) -> None:
        with self._lock:
            if member in self._members:
                self._members.remove(member)


_registries: "weakref.WeakKeyDictionary[Any, _Registry]" = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def _shared_client() -> Any:
    return facade().default_client


def instrument(
    client: Any = None,
    *,
    name: Optional[str] = None,
    attributes: Optional[Mapping[str, Any]] = None,
    meter_provider: Optional[metrics.MeterProvider] = None,
) -> Instrumentation:
    """Report ``client``'s :meth:`~analytics.Client.stats` as metrics; returns the handle to stop it.

    ``client``: an :class:`analytics.Client`, or ``None`` for the shared client
    behind ``analytics.track(...)`` (followed as it is created, shut down and
    created again; nothing is reported while there is none, and reporting
    never creates it).  ``name``: the ``cdp_relay.client`` attribute
    (``default`` for the shared client).  ``attributes``: added to every
    observation.  ``meter_provider``: defaults to the global one
    (``opentelemetry.metrics.set_meter_provider``).  The client is held
    weakly: instrumenting never keeps it alive.

    Raises :class:`~analytics.errors.ConfigurationError` for a ``client`` that
    has no ``stats()``, a name already reported through the same provider, or
    attributes that are not a mapping of strings.
    """
    extra = dict(attributes or {})
    if not all(isinstance(k, str) for k in extra):
        raise ConfigurationError("instrument: attributes must be a mapping with string keys")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"instrument: name must be a non-empty string, not {name!r}")
    source: Callable[[], Any]
    if client is None:
        source, name = _shared_client, name or "default"
    elif callable(getattr(client, "stats", None)):
        source = weakref.ref(client)
    else:
        raise ConfigurationError(f"instrument: expected an analytics.Client, not {type(client).__qualname__}")
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _registries_lock:
        registry = _registries.get(provider)
        if registry is None:
            registry = _registries[provider] = _Registry(provider.get_meter(METER_NAME, VERSION))
    return registry.add(name, source, extra)

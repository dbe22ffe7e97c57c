"""A Customer.io Track API client, compatible with the official ``customerio`` package.

::

    from customerio import CustomerIO, Regions, CustomerIOException, v2

    with CustomerIO(site_id, api_key, region=Regions.US) as cio:
        cio.identify(id="5", email="jane@example.com", plan="premium")
        cio.track("5", "purchase", {"price": 23.45}, id="01HB4HBDKTFWYZCK01DMRSWRFD")
        result = cio.batch([v2.identify_person({"id": "5"}, plan="pro"),
                            v2.track_person_event({"id": "5"}, "purchase", price=23.45)])

What is the same as the official client (customerio-python 3.x): the
constructor's parameters, their order and defaults; ``Regions.US`` /
``Regions.EU``; the URL template (``https://{host}/{prefix}``, or
``https://{host}:{port}/{prefix}`` when the port is not 443, ``scheme://``
stripped from ``host``); ``batch()`` building its URL from host and port only
(``url_prefix`` has no effect on it); the v1 methods' names, arguments,
paths, bodies and "cannot be blank" checks; path ids encoded with
``quote(str(id), safe="")``; datetimes sent as Unix seconds and NaN as null;
:class:`CustomerIOException` for bad arguments and non-2xx answers; HTTP
Basic auth with the site id and API key.

What differs, on purpose:

* **Loopback over plain HTTP.**  ``host="http://127.0.0.1:8080"`` (or
  ``localhost``, ``[::1]``) keeps its ``http://`` scheme, so a local test
  server such as :class:`analytics.collector.Collector` can stand in for the
  API.  For any other host the scheme is stripped and HTTPS used, as upstream.
  A port may be written in ``host`` (then leave ``port`` unset).
* **Retries** go through a retry strategy (:mod:`customerio.retry`; by
  default :class:`~customerio.retry.BackoffRetry`): no answer, 408, 429 and
  5xx are retried (upstream: 500/502/503/504 only), with jittered
  exponential backoff that honours ``Retry-After`` (the ``Track v1`` and
  ``Track v2 batch`` rows of :mod:`analytics.clients.retryable`: the same
  with or without a ``retry_strategy``, and in
  :class:`~customerio.AsyncCustomerIO`).  ``retries`` is
  the number of retries after the first attempt; ``backoff_factor`` the first
  wait in seconds (it doubles each time, capped at 10 s; the whole retrying
  stops after 60 s, and a Retry-After over 60 s gives up at once).  Pass
  ``retry_policy=RetryPolicy(...)`` to set all of it yourself.
* **Sanitizing is recursive** (nested dicts and lists too), and an aware
  datetime keeps its instant (upstream reads its wall time as UTC).
* **Validation errors** are :class:`CustomerIOValidationError`, a subclass of
  both :class:`CustomerIOException` and
  :class:`analytics.errors.InvalidMessageError`.
* **batch()** checks every operation's shape (errors name the index:
  ``operations[3]: name cannot be blank for action 'event'``), splits the list
  so that no item is over 32 KB and no request over 500 KB, and returns a
  :class:`BatchResult` that maps the API's per-item errors back to the
  indexes of the operations as given.
* The v1 methods return the :class:`~analytics.apiclient.JSONResponse`
  (upstream returns ``None``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import warnings
from typing import Any, Dict, Generic, List, Mapping, NamedTuple, Optional, Sequence, Tuple, TypeVar
from urllib.parse import quote, urlsplit

from . import v2 as _v2
from .analytics import _checks
from .analytics.clients.auth import basic_auth
from .analytics.clients.http import JSONResponse
from .analytics.clients.retryable import TRACK_V1, TRACK_V2_BATCH, RetryRule
from .analytics.encoding import dumps
from .analytics.errors import UnserializableValueError
from .analytics.limits import MAX_BODY_BYTES, MAX_MESSAGE_BYTES
from .analytics.retry import RetryPolicy
from .base import ClientBase, Region, Regions, SyncSending, checked_region
from .errors import CustomerIOException, CustomerIOValidationError

__all__ = [
    "CustomerIO",
    "CustomerIOException",
    "CustomerIOValidationError",
    "Region",
    "Regions",
    "BatchResult",
    "ItemError",
    "ID",
    "EMAIL",
    "CIOID",
    "MAX_ITEM_BYTES",
    "MAX_BATCH_BYTES",
]

log = logging.getLogger("customerio")

#: What a call returns: a JSONResponse (CustomerIO) or an awaitable of one (AsyncCustomerIO).
R = TypeVar("R")

#: The id types of ``merge_customers`` (as the official ``customerio.constants``).
ID, EMAIL, CIOID = "id", "email", "cio_id"

#: The largest v2 operation, encoded, in bytes (32 KB).
MAX_ITEM_BYTES = MAX_MESSAGE_BYTES
#: The largest ``/api/v2/batch`` request body, in bytes (500,000).
MAX_BATCH_BYTES = MAX_BODY_BYTES

_BATCH_OPEN = b'{"batch":['
_BATCH_CLOSE = b"]}"
#: Bytes of a batch body outside its items and the commas between them.
BATCH_OVERHEAD = len(_BATCH_OPEN) + len(_BATCH_CLOSE)


class ItemError(NamedTuple):
    """One operation the API refused (from a 207, or a 200 with ``errors``)."""

    index: int  # type: ignore[assignment]  #: index of the operation in the list given to ``batch()``
    operation: Any  #: that operation, as given
    reason: Optional[str]
    field: Optional[str]
    message: Optional[str]
    request: int = 0  #: which request (0-based) carried it
    batch_index: int = 0  #: its index inside that request, as the API reported it


class BatchResult:
    """What ``batch()`` did.

    ``ok`` is True when every operation was accepted.  ``accepted`` and
    ``failed`` are lists of indexes into the operations as given, ``errors``
    the :class:`ItemError` of each refused one (in index order).
    ``requests`` lists, per request sent, the indexes it carried, and
    ``responses`` the :class:`~analytics.apiclient.JSONResponse` of each.
    ``unmatched`` keeps error entries the API sent without a usable
    ``batch_index`` (they make ``ok`` False but name no operation).  When a
    later request of a split batch fails, the exception raised carries the
    result so far as ``exc.result``; its ``unsent`` lists the indexes not
    confirmed (the failed request's and the later ones').
    """

    def __init__(self, operations: Sequence[Any]) -> None:
        self.operations = operations
        self.requests: List[List[int]] = []
        self.responses: List["JSONResponse"] = []
        self.errors: List[ItemError] = []
        self.unmatched: List[Any] = []
        self.unsent: List[int] = []

    @property
    def failed(self) -> List[int]:
        """Indexes of the refused operations."""
        return [e.index for e in self.errors]

    @property
    def accepted(self) -> List[int]:
        """Indexes of the operations sent and not refused."""
        refused = set(self.failed)
        return [i for chunk, _ in zip(self.requests, self.responses) for i in chunk if i not in refused]

    @property
    def ok(self) -> bool:
        """True when every operation was sent and none was refused."""
        return not self.errors and not self.unmatched and not self.unsent \
            and len(self.responses) == len(self.requests)

    @property
    def status_codes(self) -> List[int]:
        """The status of each response (200 or 207)."""
        return [r.status for r in self.responses]

    def _record(self, response: "JSONResponse") -> None:
        number = len(self.responses)
        indexes = self.requests[number]
        self.responses.append(response)
        doc = response.json(default=None)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list):
            return
        for entry in errors:
            if not isinstance(entry, dict):
                self.unmatched.append(entry)
                continue
            at = entry.get("batch_index")
            if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < len(indexes):
                self.unmatched.append(entry)
                continue
            index = indexes[at]
            self.errors.append(ItemError(index, self.operations[index], entry.get("reason"),
                                         entry.get("field"), entry.get("message"), number, at))
        self.errors.sort(key=lambda e: e.index)

    def __repr__(self) -> str:
        return (f"BatchResult(ok={self.ok}, operations={len(self.operations)}, requests={len(self.requests)}, "
                f"failed={self.failed})")


def _shown(host: str) -> str:
    return _checks.quote(_checks.redact_url(host))


class TrackClientBase(ClientBase, Generic[R]):
    """What :class:`CustomerIO` and :class:`customerio.aio.AsyncCustomerIO` share: the
    constructor, URLs, argument checks, the v1 calls and v2 operation checks.

    Each call checks its arguments, builds the request and hands the encoded body
    to ``_send_bytes``, which the subclass implements: :class:`CustomerIO` sends
    it and returns the :class:`~analytics.apiclient.JSONResponse`; the async
    client returns an awaitable of it.  ``R`` is that return type.
    """

    def __init__(
        self,
        site_id: Optional[str] = None,
        api_key: Optional[str] = None,
        host: Optional[str] = None,
        region: Region = Regions.US,
        port: Optional[int] = None,
        url_prefix: Optional[str] = None,
        json_encoder: Any = None,
        retries: int = 3,
        timeout: float = 10,
        backoff_factor: float = 0.02,
        use_connection_pooling: bool = True,
        user_agent: Optional[str] = None,
        *,
        retry_policy: Optional["RetryPolicy"] = None,
        retry_strategy: Any = None,
    ) -> None:
        self.region = checked_region(region)
        if json_encoder is not None:
            warnings.warn("json_encoder is not used: values are encoded by analytics.encoding",
                          DeprecationWarning, stacklevel=2)
        self.site_id = site_id
        self.api_key = api_key
        self.host = host or region.track_host
        self.port = port or 443
        self._explicit_port = port is not None
        self.url_prefix = url_prefix or "/api/v1"
        self._set_options(retries, timeout, backoff_factor, use_connection_pooling, retry_policy, retry_strategy)
        self.user_agent = _checks.header_text("user_agent", user_agent)
        self.scheme = "https"
        self.setup_base_url()
        self._init_transport()

    # -- URLs ------------------------------------------------------------------

    def setup_base_url(self) -> str:
        """Work out ``scheme``, ``host`` and ``base_url`` from host, port and url_prefix."""
        host = self.host.strip()
        scheme = "https"
        if "://" in host:
            given, host = host.split("://", 1)
            if given.lower() == "http" and _checks.is_loopback(urlsplit("//" + host).hostname):
                scheme = "http"
        host = host.strip("/")
        if "/" in host:
            raise CustomerIOException(
                f"host must be a host name (and port), not a URL with a path: {_shown(self.host)}")
        try:
            host_port = urlsplit("//" + host).port
        except ValueError:
            raise CustomerIOException(f"host has an invalid port: {_shown(self.host)}") from None
        if host_port is not None and self._explicit_port and host_port != self.port:
            raise CustomerIOException(f"host {_shown(self.host)} names port {host_port} but port={self.port}")
        self.scheme = scheme
        self.host = host
        self._origin = _checks.http_url("host", self._make_origin())[0]
        self.base_url = f"{self._origin}/{self.url_prefix.strip('/')}"
        return self.base_url

    def _make_origin(self) -> str:
        host = self.host
        if self.port != 443 and urlsplit("//" + host).port is None:
            host = f"{host}:{self.port}"
        return f"{self.scheme}://{host}"

    @property
    def batch_url(self) -> str:
        """``{scheme}://{host}[:{port}]/api/v2/batch`` (url_prefix has no effect, as upstream)."""
        return f"{self._make_origin()}/api/v2/batch"

    @property
    def entity_url(self) -> str:
        """``{scheme}://{host}[:{port}]/api/v2/entity``."""
        return f"{self._make_origin()}/api/v2/entity"

    def _url_encode(self, id: Any) -> str:
        return quote(str(id), safe="")

    def get_customer_query_string(self, customer_id: Any) -> str:
        """The URL of one customer (``{base}/customers/{id}``)."""
        return f"{self.base_url}/customers/{self._url_encode(customer_id)}"

    def get_event_query_string(self, customer_id: Any) -> str:
        """The URL of a customer's events."""
        return f"{self.get_customer_query_string(customer_id)}/events"

    def get_events_query_string(self) -> str:
        """The URL of anonymous events."""
        return f"{self.base_url}/events"

    def get_device_query_string(self, customer_id: Any) -> str:
        """The URL of a customer's devices."""
        return f"{self.get_customer_query_string(customer_id)}/devices"

    # -- sending -----------------------------------------------------------------

    def _send_bytes(self, method: str, url: str, body: Optional[bytes], rule: RetryRule = TRACK_V1) -> R:
        """Send one request with an encoded JSON body, retrying as ``rule`` says (implemented by
        the subclass)."""
        raise NotImplementedError

    def _auth_header(self) -> str:
        if not self.site_id or not self.api_key:
            raise CustomerIOException("site_id and api_key are needed to send to the Track API")
        return basic_auth(str(self.site_id), str(self.api_key))

    def _encode(self, data: Any) -> bytes:
        try:
            return dumps(data)
        except UnserializableValueError as exc:
            raise CustomerIOValidationError(f"cannot encode {exc.path or 'data'}: {exc}", field=exc.path or None) \
                from exc

    def send_request(self, method: str, url: str, data: Any) -> R:
        """Send ``data`` (sanitized, JSON) with retries; raise :class:`CustomerIOException` on failure."""
        return self._send_bytes(method, url, self._encode(_v2.sanitize(data)))

    # -- v1 ----------------------------------------------------------------------

    @staticmethod
    def _require(value: Any, what: str, method: str) -> None:
        if value is None or value == "" or value is False:
            raise CustomerIOValidationError(f"{what} cannot be blank in {method}", field=what, reason="required")

    @staticmethod
    def _data(data: Any, attrs: Mapping[str, Any], method: str) -> Dict[str, Any]:
        if data is not None and not isinstance(data, Mapping):
            raise CustomerIOValidationError(f"data must be a dict in {method}, got {type(data).__name__}",
                                            field="data")
        merged = dict(data or {})
        merged.update(attrs)
        return merged

    @staticmethod
    def _event_timestamp(timestamp: Any, method: str) -> Optional[int]:
        """3.x rule: Unix seconds (or a datetime); anything else is dropped, with a warning."""
        if timestamp is None:
            return None
        if isinstance(timestamp, _dt.datetime):
            return _v2.to_unix(timestamp)
        if isinstance(timestamp, int) and not isinstance(timestamp, bool) and 999_999_999 < timestamp < 100_000_000_000:
            return timestamp
        log.warning("%s: timestamp %r is not Unix seconds; it was left out", method, timestamp)
        return None

    def identify(self, id: Any, **kwargs: Any) -> R:
        """Create or update a customer: ``PUT /customers/{id}`` with the attributes as the body."""
        self._require(id, "id", "identify")
        return self.send_request("PUT", self.get_customer_query_string(id), kwargs)

    def delete(self, customer_id: Any) -> R:
        """Delete a customer: ``DELETE /customers/{id}``."""
        self._require(customer_id, "customer_id", "delete")
        return self.send_request("DELETE", self.get_customer_query_string(customer_id), {})

    def _event(self, url: str, name: Any, data: Any, attrs: Mapping[str, Any], id: Optional[str],
               timestamp: Any, method: str, extra: Mapping[str, Any]) -> R:
        self._require(name, "name", method)
        body: Dict[str, Any] = dict(extra)
        body["name"] = name
        body["data"] = self._data(data, attrs, method)
        if id is not None:
            self._require(id, "id", method)
            body["id"] = id
        ts = self._event_timestamp(timestamp, method)
        if ts is not None:
            body["timestamp"] = ts
        return self.send_request("POST", url, body)

    def track(self, customer_id: Any, name: str, data: Optional[Mapping[str, Any]] = None,
              id: Optional[str] = None, timestamp: Any = None, **attrs: Any) -> R:
        """An event for a customer: ``POST /customers/{id}/events`` ``{"name", "data", "id"?, "timestamp"?}``.

        Event data is ``data`` (a dict, the 3.x way) and/or the other keyword
        arguments (the 2.x way), merged.  ``id`` (a ULID, for deduplication) and
        ``timestamp`` (Unix seconds as an int from 10**9 to 10**11, or a datetime;
        anything else is dropped with a warning, as 3.x drops it) are sent top-level, never as data: put data
        named ``id`` or ``timestamp`` in ``data``.
        """
        self._require(customer_id, "customer_id", "track")
        return self._event(self.get_event_query_string(customer_id), name, data, attrs, id, timestamp, "track", {})

    def track_anonymous(self, anonymous_id: Any, name: str, data: Optional[Mapping[str, Any]] = None,
                        id: Optional[str] = None, timestamp: Any = None, **attrs: Any) -> R:
        """An anonymous event: ``POST /events`` ``{"name", "data", "anonymous_id"?, "id"?, "timestamp"?}``.

        A blank ``anonymous_id`` is left out (an event not tied to anyone, as 3.x
        allows).  Other arguments as :meth:`track`.
        """
        extra = {"anonymous_id": anonymous_id} if anonymous_id else {}
        return self._event(self.get_events_query_string(), name, data, attrs, id, timestamp,
                           "track_anonymous", extra)

    def pageview(self, customer_id: Any, page: str, **data: Any) -> R:
        """A page view: ``POST /customers/{id}/events`` ``{"type": "page", "name": page, "data"}``."""
        self._require(customer_id, "customer_id", "pageview")
        self._require(page, "page", "pageview")
        return self.send_request("POST", self.get_event_query_string(customer_id),
                                 {"type": "page", "name": page, "data": data})

    def backfill(self, customer_id: Any, name: str, timestamp: Any, **data: Any) -> R:
        """An event at a given time (Unix seconds or a datetime) — the older clients' call."""
        self._require(customer_id, "customer_id", "backfill")
        if isinstance(timestamp, _dt.datetime):
            timestamp = _v2.to_unix(timestamp)
        elif isinstance(timestamp, bool) or not isinstance(timestamp, int):
            try:
                timestamp = int(timestamp)
            except (TypeError, ValueError) as exc:
                raise CustomerIOValidationError(f"{timestamp!r} is not a valid timestamp ({exc})",
                                                field="timestamp") from None
        return self.send_request("POST", self.get_event_query_string(customer_id),
                                 {"name": name, "data": data, "timestamp": timestamp})

    def add_device(self, customer_id: Any, device_id: str, platform: str, **data: Any) -> R:
        """Add or update a device: ``PUT /customers/{id}/devices`` ``{"device": {"id", "platform", ...}}``."""
        self._require(customer_id, "customer_id", "add_device")
        self._require(device_id, "device_id", "add_device")
        self._require(platform, "platform", "add_device")
        device = dict(data)
        device.update({"id": device_id, "platform": platform})
        return self.send_request("PUT", self.get_device_query_string(customer_id), {"device": device})

    def delete_device(self, customer_id: Any, device_id: str) -> R:
        """Remove a device: ``DELETE /customers/{id}/devices/{device_id}``."""
        self._require(customer_id, "customer_id", "delete_device")
        self._require(device_id, "device_id", "delete_device")
        url = f"{self.get_device_query_string(customer_id)}/{self._url_encode(device_id)}"
        return self.send_request("DELETE", url, {})

    def suppress(self, customer_id: Any) -> R:
        """Suppress a customer: ``POST /customers/{id}/suppress``."""
        self._require(customer_id, "customer_id", "suppress")
        return self.send_request("POST", f"{self.get_customer_query_string(customer_id)}/suppress", {})

    def unsuppress(self, customer_id: Any) -> R:
        """Unsuppress a customer: ``POST /customers/{id}/unsuppress``."""
        self._require(customer_id, "customer_id", "unsuppress")
        return self.send_request("POST", f"{self.get_customer_query_string(customer_id)}/unsuppress", {})

    def is_valid_id_type(self, input: Any) -> bool:
        """True for ``"id"``, ``"email"`` and ``"cio_id"``."""
        return input in (ID, EMAIL, CIOID)

    def merge_customers(self, primary_id_type: str, primary_id: Any, secondary_id_type: str,
                        secondary_id: Any) -> R:
        """Merge the secondary customer into the primary: ``POST /merge_customers``."""
        if not self.is_valid_id_type(primary_id_type):
            raise CustomerIOValidationError("invalid primary id type", field="primary")
        if not self.is_valid_id_type(secondary_id_type):
            raise CustomerIOValidationError("invalid secondary id type", field="secondary")
        if not primary_id:
            raise CustomerIOValidationError("primary customer_id cannot be blank", field="primary",
                                            reason="required")
        if not secondary_id:
            raise CustomerIOValidationError("secondary customer_id cannot be blank", field="secondary",
                                            reason="required")
        return self.send_request("POST", f"{self.base_url}/merge_customers",
                                 {"primary": {primary_id_type: primary_id},
                                  "secondary": {secondary_id_type: secondary_id}})

    # -- v2 ----------------------------------------------------------------------

    def _prepare(self, op: Any, where: str, index: Optional[int] = None) -> bytes:
        """Sanitize, check and encode one operation; raise naming ``where``."""
        op = _v2.sanitize(op) if isinstance(op, Mapping) else op
        problem = _v2.operation_problem(op)
        if problem is not None:
            raise CustomerIOValidationError(f"{where}: {problem}", field=problem.field or None,
                                            reason=problem.reason, index=index)
        try:
            data = self._encode(op)
        except CustomerIOValidationError as exc:
            raise CustomerIOValidationError(f"{where}: {exc}", field=exc.field, index=index) from exc
        if len(data) > MAX_ITEM_BYTES:
            raise CustomerIOValidationError(
                f"{where}: the operation is {len(data)} bytes encoded, over the {MAX_ITEM_BYTES}-byte limit",
                index=index)
        return data

    @staticmethod
    def plan_batches(sizes: Sequence[int], max_body_bytes: int = MAX_BATCH_BYTES) -> List[List[int]]:
        """Split items of these encoded sizes, in order, into requests of at most ``max_body_bytes``
        (``{"batch":[`` + items joined by commas + ``]}``).  Returns lists of indexes."""
        chunks: List[List[int]] = []
        current: List[int] = []
        size = BATCH_OVERHEAD
        for i, item in enumerate(sizes):
            added = item + (1 if current else 0)
            if current and size + added > max_body_bytes:
                chunks.append(current)
                current, size, added = [], BATCH_OVERHEAD, item
            if BATCH_OVERHEAD + item > max_body_bytes:
                raise CustomerIOValidationError(f"operations[{i}]: {item} bytes cannot fit in a "
                                                f"{max_body_bytes}-byte request", index=i)
            current.append(i)
            size += added
        if current:
            chunks.append(current)
        return chunks


    def _plan_batch(self, operations: Optional[Sequence[Mapping[str, Any]]],
                    max_body_bytes: int) -> Tuple[BatchResult, List[bytes]]:
        """Check, encode and split ``operations`` for ``batch()``: the result to fill and the
        body of each request, in order (nothing is sent)."""
        if not operations:
            raise CustomerIOException("operations cannot be empty in batch")
        if isinstance(operations, (str, bytes, Mapping)) or not isinstance(operations, Sequence):
            raise CustomerIOValidationError(
                f"operations must be a list of operation dicts, got {type(operations).__name__}",
                field="operations")
        encoded = [self._prepare(op, f"operations[{i}]", i) for i, op in enumerate(operations)]
        result = BatchResult(operations)
        result.requests = self.plan_batches([len(e) for e in encoded], max_body_bytes)
        bodies = [_BATCH_OPEN + b",".join(encoded[i] for i in chunk) + _BATCH_CLOSE for chunk in result.requests]
        return result, bodies

    @staticmethod
    def _batch_failed(result: BatchResult, number: int, exc: CustomerIOException) -> None:
        """Note on ``exc`` that request ``number`` of a batch failed: ``exc.result``, with ``unsent``."""
        result.unsent = [i for later in result.requests[number:] for i in later]
        exc.result = result  # type: ignore[attr-defined]

    def batch(self, operations: Optional[Sequence[Mapping[str, Any]]], *,
              max_body_bytes: int = MAX_BATCH_BYTES) -> Any:
        """Send v2 operations to ``POST /api/v2/batch`` (implemented by the subclass)."""
        raise NotImplementedError

    def send_entity(self, operation: Mapping[str, Any]) -> R:
        """Send one v2 operation to ``POST /api/v2/entity`` (checked and sanitized first, at most 32 KB)."""
        return self._send_bytes("POST", self.entity_url, self._prepare(operation, "operation"), TRACK_V2_BATCH)

    @property
    def v2(self) -> "V2":
        """``cio.v2.identify_person(...)`` etc.: build one operation with :mod:`customerio.v2` and
        send it with :meth:`send_entity`; ``cio.v2.send_batch(ops)`` is :meth:`batch`."""
        return V2(self)


class CustomerIO(SyncSending, TrackClientBase[JSONResponse]):
    """A Track API client (v1 calls, v2 ``batch()`` and ``send_entity()``).

    ``site_id`` and ``api_key`` are the Track API credentials (HTTP Basic).
    ``region`` is ``Regions.US`` or ``Regions.EU``; ``host`` overrides its
    host (``"http://127.0.0.1:PORT"`` for a local test server, see the module
    doc); ``port`` defaults to 443; ``url_prefix`` to ``/api/v1``.
    ``json_encoder`` is accepted and ignored (deprecated upstream too).
    ``retries``, ``backoff_factor`` and ``timeout`` (seconds) configure each
    request; ``retry_policy`` (keyword only) replaces the first two.
    ``use_connection_pooling=False`` opens a new session per request.
    ``user_agent`` replaces the default ``User-Agent``.  ``retry_strategy``
    (keyword only) is the :class:`customerio.retry.RetryStrategy` each request
    is handed to (default: :class:`~customerio.retry.BackoffRetry` from the
    policy): one attempt per call, no answer, 408, 429 and 5xx raised as
    :class:`customerio.retry.RetryableError` for it to retry.

    Use it as a context manager, or call :meth:`close`, to close the pooled
    connections.
    """

    def _send_bytes(self, method: str, url: str, body: Optional[bytes], rule: RetryRule = TRACK_V1) -> JSONResponse:
        return self._send(method, url, body, rule, headers={"Authorization": self._auth_header()})

    def batch(self, operations: Optional[Sequence[Mapping[str, Any]]], *,
              max_body_bytes: int = MAX_BATCH_BYTES) -> BatchResult:
        """Send v2 operations to ``POST /api/v2/batch``, in as many requests as the limits need.

        ``operations`` is a list of operation dicts (build them by hand or with
        :mod:`customerio.v2`).  Empty or ``None`` raises
        :class:`CustomerIOException` ("operations cannot be empty in batch"), as
        upstream.  Every operation is sanitized and checked first, and encoded
        to see it is at most 32 KB; the first bad one raises
        :class:`CustomerIOValidationError` naming its index, and nothing is
        sent.  The list is then split, in order, into requests of at most
        ``max_body_bytes`` (500,000) bytes, sent one after another.  400 and 401
        raise at once with the status and body; no answer, 408, 429 and 5xx are
        retried.  A raise after some requests went through carries the
        :class:`BatchResult` so far as ``exc.result``.

        Returns a :class:`BatchResult`: 207 per-item errors (and those of a 200
        whose body has an ``errors`` array) mapped back to the indexes given.
        """
        result, bodies = self._plan_batch(operations, max_body_bytes)
        url = self.batch_url
        for number, body in enumerate(bodies):
            try:
                response = self._send_bytes("POST", url, body, TRACK_V2_BATCH)
            except CustomerIOException as exc:
                self._batch_failed(result, number, exc)
                raise
            result._record(response)
        return result


class V2:
    """The v2 builders bound to a client: each builds, checks and sends one operation.

    The methods are those of :data:`customerio.v2.BUILDERS` (same arguments),
    returning the :class:`~analytics.apiclient.JSONResponse`, plus
    :meth:`send_entity` and :meth:`send_batch`.
    """

    def __init__(self, client: "TrackClientBase[Any]") -> None:
        self._client = client

    def send_entity(self, operation: Mapping[str, Any]) -> "JSONResponse":
        """:meth:`CustomerIO.send_entity`."""
        response: "JSONResponse" = self._client.send_entity(operation)
        return response

    def send_batch(self, operations: Sequence[Mapping[str, Any]]) -> BatchResult:
        """:meth:`CustomerIO.batch`."""
        result: BatchResult = self._client.batch(operations)
        return result

    def __getattr__(self, name: str) -> Any:
        builder = _v2.BUILDERS.get(name)
        if builder is None:
            raise AttributeError(name)

        def send(*args: Any, **kwargs: Any) -> "JSONResponse":
            response: "JSONResponse" = self._client.send_entity(builder(*args, **kwargs))
            return response

        send.__name__ = name
        send.__doc__ = builder.__doc__
        return send

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | set(_v2.BUILDERS))


"""Delivery: one batch in, one outcome out, every message of it accounted for.

:meth:`Delivery.deliver` builds the request body with the destination,
compresses it when asked, makes attempts through the transport, retries
connection errors, 408, 429 and 5xx with the :class:`~analytics.retry.RetryPolicy`,
honours ``Retry-After`` (for every worker: see :meth:`Ledger.hold_all`), splits a
batch the server calls too large (413), reads a destination's per-item
results, and reports each message that cannot be delivered.  It knows nothing
of threads or queues: what it settles, loses or keeps goes through the
:class:`Ledger` (the worker pool), which counts it at one moment with the rest.
"""

from __future__ import annotations

import gzip as _gzip
import json
import logging
from typing import Any, Dict, List, Optional

from ..destinations import Destination
from ..errors import APIError, DeliveryError, ShutdownError, TransportError
from ..options import Config
from ..retry import parse_retry_after, retryable_status
from ..stats import Stats
from ..transport import Transport
from .backpressure import Backpressure

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore

__all__ = ["Delivery", "Ledger", "KEPT", "RETRY"]

log = logging.getLogger("customerio.analytics")

_GZIP_LEVEL = 6


def _header(headers: Any, name: str) -> Optional[str]:
    """A header's value whatever the case the server (or a transport of the user's) spelled it in."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == wanted), None)
    return None if value is None else str(value)


class Ledger(Protocol):
    """What delivery asks of the worker pool that runs it."""

    durable: bool  #: the queue keeps what is unsent at the shutdown deadline (spool, Redis)
    backpressure: Backpressure
    not_before: float  #: no request before this clock time (a Retry-After, shared by the workers)

    @property
    def deadline(self) -> Optional[float]:
        """The shutdown deadline, once shutdown() set one."""

    def now(self) -> float:
        """The time on the engine's clock (see :mod:`analytics.engine.clock`)."""

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` on the engine's clock unless the shutdown deadline comes first (then False)."""

    def hold_all(self, seconds: float) -> None:
        """No worker sends before ``seconds`` from now (the server's Retry-After)."""

    def gave_up(self, error: DeliveryError) -> None:
        """A batch used up its retries (at shutdown the rest is then not tried)."""

    def account(self, part: List[bytes], count: Any) -> bool:
        """Settle ``part`` of the calling worker's batch and ``count()`` it, at one moment."""

    def lose(self, items: List[bytes], error: DeliveryError, reason: str, attempts: int = 0) -> None:
        """Count ``items`` as failed or dropped for ``reason`` and tell ``on_error``."""

    def keep(self, part: List[bytes], keys: Optional[List[Any]]) -> None:
        """A durable queue keeps ``part`` for later (unsent at the shutdown deadline)."""

    def settle(self, keys: List[Any], sizes: int) -> None:
        """The queue may forget these rows: their fate is known."""

    def abandoned(self) -> bool:
        """stop() reported the calling worker's batch already (at the shutdown deadline)."""


class Delivery:
    """Sends batches for one engine: the config, transport, destination and counters it uses."""

    def __init__(self, engine: Ledger, config: Config, transport: Transport, destination: Destination,
                 stats: Stats) -> None:
        self.engine = engine
        self.config = config
        self.transport = transport
        self.destination = destination
        self.stats = stats
        self._internal_error: Optional[str] = None  # the last internal error logged (logged once)
        self._outage: Optional[str] = None  # the URL that last failed, until a request to it succeeds

    def deliver(self, items: List[bytes], keys: Optional[List[Any]] = None) -> int:
        """Send ``items`` (one batch), splitting on 413; every item ends delivered or reported.

        ``keys`` are the durable queue's handles for ``items``: each part whose
        fate is settled (delivered, or refused for good) is removed from the
        spool; a part still unsent at the shutdown deadline stays there.
        Returns how many were delivered.
        """
        started = self.engine.now()
        parts = [(0, len(items))]
        delivered = 0
        waits = None  # backoff between internal errors
        while parts:
            lo, hi = parts.pop()
            part = items[lo:hi]
            try:
                outcome = self._attempt_part(part, started)
            except Exception as exc:  # a bug or a setting the transport cannot use: keep track of the messages
                if keys is None:
                    log.exception("unexpected error while sending %d messages", len(part))
                    self.engine.lose(part, DeliveryError(f"internal error: {exc!r}"), "retries_exhausted")
                    outcome = False
                else:
                    waits = waits or self.config.retry.waits()
                    outcome = self._after_internal_error(part, exc, waits)
            if outcome is RETRY:
                parts.append((lo, hi))
                continue
            if outcome is None:
                mid = lo + (hi - lo) // 2
                parts.append((mid, hi))
                parts.append((lo, mid))
                continue
            if outcome is KEPT:
                self.engine.keep(part, None if keys is None else keys[lo:hi])
                continue
            if outcome is True:
                delivered += len(part)
                self._internal_error = None
            elif type(outcome) is int:  # some items refused by the API, the others delivered
                delivered += outcome
            if keys is not None and not self.engine.abandoned():  # else stop() kept the rows
                self.engine.settle(keys[lo:hi], sum(len(i) for i in part))
        return delivered

    def _after_internal_error(self, part: List[bytes], exc: Exception, waits: Any) -> Any:
        """With a durable queue an internal error never deletes rows: back off like a retryable
        failure and try again (``RETRY``), or keep the part at the shutdown deadline (``KEPT``)."""
        what = f"{type(exc).__name__}: {str(exc)[:200]}"
        if what != self._internal_error:  # once, not once per batch and attempt
            self._internal_error = what
            log.error("internal error while sending %d message(s); they stay queued and are tried again",
                      len(part), exc_info=exc)
        if not self.engine.sleep(self.config.retry.next_wait(waits, None)):
            return self._cut_short(part, f"after an internal error ({what})", 0)
        return RETRY

    def _headers(self, compressed: bool) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": self.config.user_agent}
        headers.update(self.destination.headers())
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return headers

    def _attempt_part(self, part: List[bytes], started: float) -> Any:
        """Attempts for one request's worth of messages.

        Returns True when delivered, the number delivered when a destination
        refused some items (reported to ``on_error``), False when reported as lost, None when the
        server refused it as too large and it must be split, and ``KEPT``
        when a durable queue keeps it for later (unsent at the shutdown
        deadline).  With a durable queue a retryable failure is retried
        without limit (capped backoff, ``Retry-After`` honoured): the spool
        never gives a message up for a server that is down.
        """
        cfg = self.config
        policy = cfg.retry
        waits = policy.waits()
        attempt = 0
        while True:
            attempt += 1
            gate = self.engine.not_before - self.engine.now()
            if gate > 0 and not self.engine.sleep(gate):
                # another worker was told to wait (Retry-After) and the shutdown deadline came first
                return self._cut_short(part, "while waiting for Retry-After", attempt - 1)
            timeout = cfg.timeout
            deadline = self.engine.deadline
            if deadline is not None:
                timeout = min(timeout, max(0.05, deadline - self.engine.now()))
            body = self.destination.body(part)
            compress = cfg.gzip and self.destination.gzip
            data = _gzip.compress(body, _GZIP_LEVEL, mtime=0) if compress else body
            self.stats.count_request(len(body), len(data))
            retry_after: Optional[float] = None
            url = self.destination.base_url() + self.destination.path
            try:
                resp = self.transport.post(url, data, self._headers(compress), timeout, cfg.proxies)
            except TransportError as exc:
                error: DeliveryError = exc
                log.debug("attempt %d: %s", attempt, exc)
            else:
                if 200 <= resp.status < 300:
                    return self._taken(part, resp, attempt, started, url, len(data))
                retry_after = parse_retry_after(_header(resp.headers, "Retry-After"))
                if retry_after is not None and retryable_status(resp.status):
                    # every worker waits: no request goes out before the server said
                    self.engine.hold_all(retry_after)
                error = _api_error(resp.status, resp.body, retry_after)
                log.debug("attempt %d: %s", attempt, error)
                if resp.status == 413:
                    if len(part) > 1:
                        log.info("server refused %d messages as too large; splitting the batch", len(part))
                        return None
                    self.engine.lose(part, error, "too_large", attempt)
                    return False
                if not retryable_status(resp.status):
                    self.engine.lose(part, error, "rejected", attempt)
                    return False
            # a retryable failure: wait and try again, within the limits
            self._note_outage(url, error)
            if self.engine.durable:
                wait = policy.next_wait(waits, retry_after) if attempt <= policy.max_retries else policy.cap
                if retry_after is not None:
                    wait = max(wait, retry_after)
                if not self.engine.sleep(wait):
                    return self._cut_short(part, f"while retrying ({error})", attempt)
                self.stats.count_retry()
                continue
            given, why = policy.wait_or_give_up(waits, attempt, retry_after, self.engine.now() - started)
            if given is None:
                return self._exhausted(part, error, attempt, why)
            wait = given
            if not self.engine.sleep(wait):
                return self._cut_short(part, f"while retrying ({error})", attempt)
            self.stats.count_retry()

    def _taken(self, part: List[bytes], resp: Any, attempt: int, started: float, url: str, size: int) -> Any:
        """The server took the request: settle ``part`` (True), or the count delivered when it refused items."""
        if self._outage is not None:
            self._outage = None
            log.warning("delivering to %s again", url)
        # the server took the request (whatever it says of single items): that is the rate
        self.engine.backpressure.delivered(len(part), started)
        if self.destination.item_results:
            refused = self._refused_items(part, resp, attempt)
            if refused:
                return len(part) - refused
        self.engine.account(part, lambda: self.stats.count_delivered(len(part)))
        log.debug("delivered %d messages (%d bytes, attempt %d)", len(part), size, attempt)
        return True

    def _note_outage(self, url: str, error: DeliveryError) -> None:
        """Warn once when requests to ``url`` start failing, not at every retry.

        Without it a server that is down (or a host nobody listens at) is
        silent until the retries run out, and with a spool, which retries
        without limit, silent for good.  The next request that succeeds says
        so, and a later outage is warned of again.
        """
        if self._outage == url:
            return
        self._outage = url
        kept = "kept in the queue" if self.engine.durable else "retried within max_retries/max_retry_time"
        log.warning("cannot deliver to %s (%s); the messages are %s, and each one that cannot be "
                    "delivered is reported to on_error", url, error, kept)

    def _refused_items(self, part: List[bytes], resp: Any, attempt: int) -> int:
        """Count and report the items of a 2xx answer the destination says it refused.

        Returns how many were refused (0: all delivered, nothing counted yet).
        Refused items are reported to ``on_error`` grouped by the API's
        reason, each group with an :class:`APIError` (reason ``rejected``,
        code ``item_rejected``); retrying them cannot help.
        """
        try:
            results = self.destination.results(resp.status, resp.body, len(part))
        except Exception as exc:  # an answer we cannot read: the request itself was accepted
            log.warning("could not read the per-item results of a %d answer: %r", resp.status, exc)
            return 0
        by_reason: Dict[str, List[bytes]] = {}
        for item, why in zip(part, results):
            if why:
                by_reason.setdefault(str(why), []).append(item)
        if not by_reason:
            return 0
        refused = sum(len(items) for items in by_reason.values())
        taken = [item for item, why in zip(part, results) if not why]
        self.engine.account(taken, lambda: self.stats.count_delivered(len(taken)))
        for why, items in by_reason.items():
            error = APIError(resp.status, "item_rejected", why, resp.body.decode("utf-8", "replace"))
            self.engine.lose(items, error, "rejected", attempt)
        log.debug("delivered %d of %d messages; the API refused %d", len(part) - refused, len(part), refused)
        return refused

    def _cut_short(self, part: List[bytes], when: str, attempts: int) -> Any:
        """The shutdown deadline passed before ``part`` could be sent: a durable queue keeps it, else it is dropped."""
        if self.engine.durable:
            log.info("%d message(s) kept in the spool at shutdown (deadline passed %s)", len(part), when)
            return KEPT
        self.engine.lose(part, ShutdownError(f"the shutdown deadline passed {when}", attempts=attempts), "shutdown")
        return False

    def _exhausted(self, part: List[bytes], error: DeliveryError, attempt: int, why: str) -> Optional[bool]:
        error.gave_up = why
        self.engine.gave_up(error)
        self.engine.lose(part, error, "retries_exhausted", attempt)
        return False


KEPT = object()  #: outcome: a durable queue keeps the part for later
RETRY = object()  #: outcome: try the part again (after an internal error, with a durable queue)


def _api_error(status: int, body: bytes, retry_after: Optional[float]) -> APIError:
    text = body.decode("utf-8", "replace")
    code, message = "unknown", ""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code = str(payload.get("code") or code)
        message = str(payload.get("message") or payload.get("error") or "")
    return APIError(status, code, message, text, retry_after)

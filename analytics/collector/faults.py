"""Fault injection: the queue of faults for the next requests, and chaos drawn at random.

A :class:`Fault` is ``fail`` (answer a chosen status), ``drop`` (reset the
connection unanswered) or ``store_drop`` (process the request, then reset).
:class:`FaultQueue` hands one out per API request: queued ones first, in FIFO
order, then chaos.  :func:`parse_spec` checks a fault spec as sent to
``POST /_collector/faults`` before anything of it is applied.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .http import error_body, json_bytes

__all__ = ["Chaos", "Fault", "FaultPlan", "FaultQueue", "RetryAfter", "make_chaos", "make_fail",
           "parse_retry_after", "parse_spec", "DROP", "STORE_DROP"]

RetryAfter = Union[int, float, str]
Body = Union[None, str, bytes, Mapping[str, Any], List[Any]]

_INF = float("inf")


@dataclass
class Fault:
    kind: str  # "fail", "drop" or "store_drop"
    status: int = 500
    body: bytes = b""
    content_type: str = "application/json"
    headers: Tuple[Tuple[str, str], ...] = ()
    retry_after: Optional[RetryAfter] = None


@dataclass
class Chaos:
    fail: Fault
    fail_rate: float
    drop_rate: float
    fail_every: int
    rng: random.Random
    seen: int = 0


STORE_DROP = Fault("store_drop")
DROP = Fault("drop")


def parse_retry_after(value: RetryAfter) -> Optional[float]:
    """The wall-clock time a Retry-After value points to, or None if it is not understood."""
    try:
        return time.time() + float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(str(value)).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def check_count(n: Any) -> int:
    if type(n) is not int or n < 1:
        raise ValueError(f"n must be an integer >= 1, not {n!r}")
    return n


def _check_rate(name: str, value: Any) -> float:
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")
    return float(value)


def _check_seconds(name: str, value: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value < _INF:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


def make_fail(status: int, body: Body, retry_after: Optional[RetryAfter],
              headers: Optional[Mapping[str, str]]) -> Fault:
    """A "fail" fault; raises ValueError for a bad status, body, retry_after or header."""
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"status must be an HTTP status from 200 to 599, not {status!r}")
    content_type = "application/json"
    if body is None:
        data = error_body("fault", f"injected {status}")
    elif isinstance(body, (dict, list)):
        data = json_bytes(body)
    elif isinstance(body, (str, bytes)):
        data = body.encode() if isinstance(body, str) else bytes(body)
        try:
            json.loads(data)
        except ValueError:
            content_type = "text/plain; charset=utf-8"
    else:
        raise ValueError(f"body must be None, str, bytes, dict or list, not {type(body).__name__}")
    extra: List[Tuple[str, str]] = []
    if retry_after is not None:
        if not isinstance(retry_after, (int, float, str)) or isinstance(retry_after, bool):
            raise ValueError(f"retry_after must be seconds or a string, not {retry_after!r}")
        extra.append(("Retry-After", str(retry_after)))
    for name, value in (headers or {}).items():
        extra.append((str(name), str(value)))
    for name, value in extra:
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"bad header {name!r}")
    return Fault("fail", status, data, content_type, tuple(extra), retry_after)


def make_chaos(
    fail_rate: float = 0.0,
    drop_rate: float = 0.0,
    status: int = 500,
    seed: Optional[int] = None,
    retry_after: Optional[RetryAfter] = None,
    fail_every: int = 0,
) -> Optional[Chaos]:
    """Chaos as :meth:`Collector.set_chaos` describes it, or None when all is zero; raises ValueError."""
    fail_rate = _check_rate("fail_rate", fail_rate)
    drop_rate = _check_rate("drop_rate", drop_rate)
    if fail_rate + drop_rate > 1.0:
        raise ValueError("fail_rate + drop_rate must be at most 1")
    if type(fail_every) is not int or fail_every < 0:
        raise ValueError(f"fail_every must be an integer >= 0, not {fail_every!r}")
    if seed is not None and type(seed) is not int:
        raise ValueError(f"seed must be an integer, not {seed!r}")
    fault = make_fail(status, None, retry_after, None)
    if not (fail_rate or drop_rate or fail_every):
        return None
    return Chaos(fault, fail_rate, drop_rate, fail_every, random.Random(seed))


class FaultQueue:
    """The faults queued for the next requests, and the chaos drawn after them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: Deque[List[Any]] = deque()
        self._chaos: Optional[Chaos] = None

    def clear(self) -> None:
        """Forget queued faults and chaos."""
        with self._lock:
            self._queued.clear()
            self._chaos = None

    def queue(self, fault: Fault, n: int) -> None:
        """Use ``fault`` for the next ``n`` requests (after those already queued)."""
        with self._lock:
            self._queued.append([fault, n])

    def set_chaos(self, chaos: Optional[Chaos]) -> None:
        with self._lock:
            self._chaos = chaos

    def pending(self) -> int:
        """Requests that queued faults are still waiting for."""
        with self._lock:
            return sum(n for _, n in self._queued)

    def next(self) -> Optional[Fault]:
        """The fault for the request that just arrived, or None."""
        with self._lock:
            if self._queued:
                entry = self._queued[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    self._queued.popleft()
                fault: Fault = entry[0]
                return fault
            chaos = self._chaos
            if chaos is None:
                return None
            chaos.seen += 1
            if chaos.fail_every and chaos.seen % chaos.fail_every == 0:
                return chaos.fail
            draw = chaos.rng.random()
        if draw < chaos.fail_rate:
            return chaos.fail
        if draw < chaos.fail_rate + chaos.drop_rate:
            return STORE_DROP
        return None


@dataclass
class FaultPlan:
    """A checked fault spec: what to queue, and the delay, chaos and outage to set (None: unchanged)."""

    queue: List[Tuple[Fault, int]]
    delay: Optional[float] = None
    chaos: Optional[Chaos] = None
    set_chaos: bool = False
    outage: Optional[float] = None


def _options(spec: Mapping[str, Any], key: str, allowed: Sequence[str]) -> Dict[str, Any]:
    value = spec[key]
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be an object")
    unknown = set(value) - set(allowed)
    if unknown:
        raise ValueError(f"{key}: unknown option(s) {', '.join(sorted(unknown))}")
    return dict(value)


def parse_spec(spec: Any) -> FaultPlan:
    """Check a fault spec (see ``POST /_collector/faults``); raises ValueError, applies nothing."""
    if not isinstance(spec, Mapping):
        raise ValueError("the fault spec must be an object")
    plan = FaultPlan([])
    for key in spec:
        if key == "fail_next":
            kw = _options(spec, key, ("n", "status", "body", "retry_after", "headers"))
            fault = make_fail(kw.get("status", 500), kw.get("body"), kw.get("retry_after"), kw.get("headers"))
            plan.queue.append((fault, check_count(kw.get("n", 1))))
        elif key in ("drop_next", "store_then_drop_next"):
            kw = _options(spec, key, ("n",))
            plan.queue.append((DROP if key == "drop_next" else STORE_DROP, check_count(kw.get("n", 1))))
        elif key == "delay":
            delay = spec[key]
            if type(delay) not in (int, float) or delay < 0:
                raise ValueError(f"delay must be a number of seconds >= 0, not {delay!r}")
            plan.delay = float(delay)
        elif key == "chaos":
            kw = _options(spec, key, ("fail_rate", "drop_rate", "status", "seed", "retry_after", "fail_every"))
            plan.chaos, plan.set_chaos = make_chaos(**kw), True
        elif key == "outage":
            plan.outage = _check_seconds("outage", spec[key])
        else:
            raise ValueError(f"unknown fault {key!r}")
    return plan

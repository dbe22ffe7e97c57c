"""Fixtures of the unit tests: a FakeClock, and clients on a MemoryTransport that run on it."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from analytics import Client
from analytics.testing import FakeClock, MemoryTransport

from ..conftest import OFFLINE_HOST, WRITE_KEY, Errors

#: Real seconds a test waits for the engine's threads to act before it fails.
ACT_S = 5.0


def until(predicate: Callable[[], Any], timeout: float = ACT_S) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` real seconds passed; whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def balanced(stats: Dict[str, Any]) -> bool:
    """The stats invariant: every accepted message is delivered, failed, dropped or pending."""
    return stats["accepted"] == (stats["delivered"] + sum(stats["failed"].values())
                                 + sum(stats["dropped"].values()) + stats["pending"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(clock: FakeClock, errors: Errors) -> Iterator[Callable[..., Tuple[Client, MemoryTransport]]]:
    """make(handler, **options): a client on a MemoryTransport(handler) and the fake clock; shut down after."""
    made: List[Client] = []

    def make_client(handler: Optional[Callable] = None, **kw: Any) -> Tuple[Client, MemoryTransport]:
        transport = MemoryTransport(handler)
        kw.setdefault("on_error", errors)
        kw.setdefault("host", OFFLINE_HOST)
        kw.setdefault("pace_wait", 0)  # a paced producer would sleep in fake time, and the test is the producer
        client = Client(WRITE_KEY, transport=transport, clock=clock, **kw)
        made.append(client)
        return client, transport

    yield make_client
    for client in made:
        client.shutdown(timeout=0)  # the fake time would not reach any later deadline

"""Fixtures of the unit tests: a FakeClock, and clients on a MemoryTransport that run on it.

The unit layer is pure logic: no network and no other process.  The autouse guard below makes a
test that opens a network socket or starts a process fail at once, so a test that needs the
loopback collector, Redis or a subprocess has to live in ``tests/integration`` or
``tests/system`` (``pytest tests/unit`` then runs in seconds on any machine).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from analytics import Client
from analytics.testing import FakeClock, MemoryTransport

from ..conftest import OFFLINE_HOST, WRITE_KEY, Errors

class LayerViolation(Exception):
    """A unit test reached for the network or another process."""


@pytest.fixture(autouse=True)
def _unit_layer_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse network sockets (AF_INET/AF_INET6 connect and bind), subprocesses and fork."""
    real_connect, real_bind = socket.socket.connect, socket.socket.bind
    network = (socket.AF_INET, socket.AF_INET6)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in network:
            raise LayerViolation(f"a unit test connected to {address!r}: move it to tests/integration")
        real_connect(self, address)

    def bind(self: socket.socket, address: Any) -> None:
        if self.family in network:
            raise LayerViolation(f"a unit test bound {address!r}: move it to tests/integration")
        real_bind(self, address)

    def no_process(*args: Any, **kwargs: Any) -> None:
        raise LayerViolation("a unit test started a process: move it to tests/system")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "bind", bind)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(os, "fork", no_process)


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

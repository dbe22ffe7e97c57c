"""Shared fixtures: a real collector on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from typing import Callable, Iterator, List, Tuple

import pytest

import analytics
from analytics import Client, RetryPolicy
from analytics.collector import Collector

WRITE_KEY = "test-write-key-7f3a"
#: The host of clients whose transport stands in for the network (MemoryTransport): a loopback
#: address nothing listens on, so even a request that escaped would never leave the machine.
OFFLINE_HOST = "http://127.0.0.1:9"


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector on a free loopback port that accepts WRITE_KEY only."""
    with Collector(write_keys={WRITE_KEY}) as c:
        yield c


class Errors:
    """Records on_error calls: list of (error, items)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Exception, list]] = []

    def __call__(self, error: Exception, items: list) -> None:
        self.calls.append((error, items))

    @property
    def items(self) -> list:
        return [item for _, batch in self.calls for item in batch]


@pytest.fixture
def errors() -> Errors:
    return Errors()


FAST_RETRY = dict(base=0.01, cap=0.05)


@pytest.fixture
def make_client(collector: Collector, errors: Errors):
    """Factory for clients sending to the collector; all are shut down after the test."""
    made: List[Client] = []

    def make(**kw) -> Client:
        kw.setdefault("host", collector.url)
        kw.setdefault("on_error", errors)
        if "retry_policy" not in kw:
            kw["retry_policy"] = RetryPolicy(
                max_retries=kw.pop("max_retries", 10), max_time=kw.pop("max_retry_time", 30.0), **FAST_RETRY
            )
        client = Client(kw.pop("write_key", WRITE_KEY), **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=5)


_LOOPBACK_NAMES = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "", "None"}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches beyond this machine: a name lookup for anything but loopback fails at once."""
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOOPBACK_NAMES:
            raise socket.gaierror(socket.EAI_NONAME, f"tests talk to loopback only, not {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.fixture(autouse=True)
def _reset_facade() -> Iterator[None]:
    """Each test starts with the module facade's defaults and no shared client."""
    saved = {name: getattr(analytics, name) for name in analytics._SETTINGS + analytics._CREATION_SETTINGS}
    given = set(analytics._given)
    level = logging.getLogger("customerio").level
    yield
    client, analytics.default_client = analytics.default_client, None
    if client is not None:
        client.shutdown(timeout=2)
    for name, value in saved.items():
        setattr(analytics, name, value)
    analytics._given.clear()  # restored, not assigned: the next shared client sees them as defaults
    analytics._given.update(given)
    logging.getLogger("customerio").setLevel(level)


@pytest.fixture
def local_zone():
    """Call local_zone("EST+5") to run the test in that local time zone; restored afterwards."""
    saved = os.environ.get("TZ")

    def set_zone(tz: str) -> None:
        os.environ["TZ"] = tz
        time.tzset()

    yield set_zone
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds passed (its last value)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout_env() -> dict:
    """The environment for a child interpreter that imports this checkout's packages."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def run_python(code: str, cwd: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    """Run ``code`` in a fresh interpreter on this checkout (output captured as text)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=checkout_env())

"""Shared fixtures: a real collector on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

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


def serve_in_thread(server: Any) -> Iterator[str]:
    """Run a ``socketserver`` server bound to 127.0.0.1 in a daemon thread; yield its URL, then stop it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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


def checkout_copy(where: Path) -> Path:
    """This checkout's packages and build files copied to ``where`` (no tests, no virtualenvs)."""
    import shutil

    shutil.copytree(ROOT, where, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".bench*", ".cache", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".hypothesis", ".mypy_cache", "tests", "benchmarks", "docs"))
    return where


@pytest.fixture(scope="session")
def cdp_relay_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of this checkout, offline (no build isolation: this virtualenv's
    setuptools), as ``pip install cdp-relay`` would install it."""
    base = tmp_path_factory.mktemp("wheel")
    source = checkout_copy(base / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(base / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (base / "dist").glob("cdp_relay-*.whl")
    return wheel


def _bare_venv(where: "os.PathLike[str]", with_dependencies: bool) -> Tuple[str, str]:
    """A virtualenv without pip at ``where``: its python and site-packages.

    ``with_dependencies``: requests and the rest come from this virtualenv's site-packages, read
    as a plain directory (a line of a .pth file: the .pth files in it are not run, so this
    checkout's editable install is not seen)."""
    import sysconfig

    venv = os.path.join(where, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    if with_dependencies:
        with open(os.path.join(site, "zz_dependencies.pth"), "w") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")
    return python, site


def wheel_venv(wheel: "os.PathLike[str]", where: "os.PathLike[str]", with_dependencies: bool) -> str:
    """A virtualenv at ``where`` with ``wheel`` installed as pip installs a wheel; its python."""
    python, site = _bare_venv(where, with_dependencies)
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                                "--target", site, os.fspath(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    return python


def editable_venv(where: Path) -> str:
    """A virtualenv at ``where`` with a copy of this checkout installed by ``pip install -e`` in
    setuptools' default mode (an import hook, as most users' editable installs are); its python."""
    source = checkout_copy(where / "src")
    python, _ = _bare_venv(where, with_dependencies=True)  # (setuptools too, for the build)
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                                "--no-build-isolation", "--no-index", "-q", "-e", str(source)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    return python

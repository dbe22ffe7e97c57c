"""Every ``.. code-block:: python`` example in README.rst runs, against a local collector only."""

from __future__ import annotations

import logging
import os
import re
import socket
import textwrap
from typing import Iterator, List, NamedTuple

import pytest

import analytics
import analytics.options
from analytics import Client
from analytics.collector import Collector

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")
WRITE_KEY = "readme-key"
SKIP_MARK = ".. skip-test"
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<lang>\S+)\s*$")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class Block(NamedTuple):
    index: int
    line: int  # 1-based line of the directive
    code: str
    skip: bool
    section: str = ""  # the title of the top-level section it is in


#: Sections whose examples build on each other: their blocks run in order in one namespace.
SHARED_SECTIONS = {"Customer.io Track API", "Bloomreach Engagement"}
_namespaces: dict = {}


def extract_blocks(text: str) -> List[Block]:
    """The Python code blocks of an rST text, in order, dedented."""
    lines = text.splitlines()
    blocks: List[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i].strip() and re.fullmatch(r"=+", lines[i + 1]) \
                and len(lines[i + 1]) >= len(lines[i].rstrip()):
            section = lines[i].strip()
        m = _DIRECTIVE.match(lines[i])
        if not m or m.group("lang") != "python":
            i += 1
            continue
        directive_line, indent = i, len(m.group("indent"))
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        i += 1
        while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):  # directive options
            i += 1
        body: List[str] = []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
            i += 1
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(len(blocks) + 1, directive_line + 1, code, previous == SKIP_MARK, section))
    return blocks


with open(README, encoding="utf-8") as _f:
    BLOCKS = extract_blocks(_f.read())


def localize(code: str, url: str, redis_url: str = "") -> str:
    """Swap the placeholder key and the real API hosts for the test key and the collector
    (and the README's Redis URL for the test's Redis server)."""
    code = (
        code.replace("YOUR_WRITE_KEY", WRITE_KEY)
        .replace("https://cdp-eu.customer.io", url)
        .replace("https://cdp.customer.io", url)
        .replace("https://track.customer.io", url)
        .replace("https://api.customer.io", url)
        .replace("https://api.exponea.com", url)
    )
    if redis_url:
        code = code.replace("redis://127.0.0.1:6379/0", redis_url)
    return code


@pytest.fixture(scope="module")
def readme_redis() -> Iterator[str]:
    """A Redis server for the examples that use one (REDIS_URL, or one started here)."""
    if not any("redis://" in b.code for b in BLOCKS):
        yield ""
        return
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from .redis_server import RedisServer

    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def readme_collector() -> Iterator[Collector]:
    """One collector on 127.0.0.1 for all README examples, accepting any write key."""
    with Collector() as c:
        yield c


@pytest.fixture
def no_internet(monkeypatch) -> List[str]:
    """Refuse name lookups for anything but loopback; returns the hosts that were refused."""
    refused: List[str] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOOPBACK:
            refused.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"test_readme: no network beyond loopback ({name})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return refused


def _clients_in(namespace: dict) -> List[Client]:
    found: List[Client] = []
    for value in namespace.values():
        if isinstance(value, dict):
            value = list(value.values())
        values = value if isinstance(value, (list, tuple, set)) else [value]
        found.extend(v for v in values if isinstance(v, Client))
    return found


def test_readme_has_python_examples():
    """README.rst contains runnable Python examples, and none is marked to skip without reason."""
    assert len(BLOCKS) >= 20
    assert all(not b.skip for b in BLOCKS), "prefer examples that run; skip only what cannot"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{b.index:02d}-line-{b.line}" for b in BLOCKS])
def test_readme_example_runs(block: Block, readme_collector: Collector, readme_redis: str, no_internet: List[str],
                             monkeypatch):
    """The example runs without error, and nothing it sends leaves the machine."""
    if block.skip:
        pytest.skip(f"marked {SKIP_MARK}")
    url = readme_collector.url
    readme_collector.reset()
    # Clients made without host= would go to the real API: send those to the collector too.
    monkeypatch.setattr(analytics.options, "DEFAULT_HOST", url)
    analytics.write_key = WRITE_KEY
    analytics.host = url
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    namespace: dict = {"__name__": f"readme_block_{block.index:02d}"}
    if block.section in SHARED_SECTIONS:
        namespace = _namespaces.setdefault(block.section, namespace)
    try:
        exec(compile(localize(block.code, url, readme_redis), f"README.rst:{block.line}", "exec"), namespace)
    finally:
        shared = analytics.default_client
        if shared is not None:  # (analytics.shutdown() would create one to shut down)
            shared.shutdown(timeout=5)
        for client in _clients_in(namespace):
            client.shutdown(timeout=5)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
    assert no_internet == [], f"the example tried to reach {no_internet}"
    if shared is not None:  # what the example sent through the module facade all arrived
        stats = shared.stats()
        assert stats["accepted"] - stats["dropped"]["before_send"] == stats["delivered"], stats

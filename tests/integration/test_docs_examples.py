"""Every Python example of README.rst and of the documentation (docs/**/*.rst) runs, each on
its own, against a local collector only.

The examples are written as a user pastes them: each sets the write key and the host it
sends to, and that host is the local collector at ``http://127.0.0.1:8765`` (what
``cdp-relay collector --port 8765`` serves), or a ``Collector`` the example starts itself.
The test starts one collector on a free port and puts its address where the examples say
``http://127.0.0.1:8765`` (and its Redis server's where they say ``redis://127.0.0.1:6379/0``);
nothing else is changed.  No setting is made for them: the module facade starts each
example from its defaults (tests/conftest.py resets it), so an example that forgets its
host would try the real API, which the loopback guard refuses and this test reports.

A block that cannot run on its own is named in ``NOT_RUN`` with the reason.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

import analytics
from analytics import Client
from analytics.collector import Collector

ROOT = Path(__file__).resolve().parents[2]
LOCAL_COLLECTOR = "http://127.0.0.1:8765"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<lang>\S+)\s*$")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: Hosts no example may name as where it sends (they are named in prose only).
PRODUCTION_HOSTS = ("https://cdp.customer.io", "https://cdp-eu.customer.io", "https://track.customer.io",
                    "https://track-eu.customer.io", "https://api.customer.io", "https://api-eu.customer.io",
                    "https://api.exponea.com")

#: The blocks that are not run: (file, a text of the block) -> why.
NOT_RUN: Dict[tuple, str] = {}


class Block(NamedTuple):
    index: int
    line: int  # 1-based line of the directive
    code: str
    section: str = ""  # the title of the top-level section it is in
    path: str = ""  # relative to the checkout


def extract_blocks(text: str, path: str = "") -> List[Block]:
    """The ``.. code-block:: python`` blocks of an rST text, in order, dedented."""
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
        blocks.append(Block(len(blocks) + 1, directive_line + 1, code, section, path))
    return blocks


def doc_files() -> List[Path]:
    """README.rst and every page of the documentation site."""
    pages = sorted(p for p in (ROOT / "docs").rglob("*.rst") if "_build" not in p.parts)
    return [ROOT / "README.rst"] + pages


def all_blocks() -> List[Block]:
    blocks: List[Block] = []
    for path in doc_files():
        rel = path.relative_to(ROOT).as_posix()
        blocks.extend(extract_blocks(path.read_text(encoding="utf-8"), rel))
    return blocks


BLOCKS = all_blocks()


def not_run_reason(block: Block) -> str:
    return next((why for (path, text), why in NOT_RUN.items() if path == block.path and text in block.code), "")


def localize(code: str, url: str, redis_url: str = "") -> str:
    """The documented local collector's address (and Redis server's) replaced by the test's."""
    code = code.replace(LOCAL_COLLECTOR, url)
    if redis_url:
        code = code.replace(LOCAL_REDIS, redis_url)
    return code


@pytest.fixture(scope="module")
def docs_redis() -> Iterator[str]:
    """A Redis server for the examples that use one (REDIS_URL, or one started here)."""
    if not any(LOCAL_REDIS in b.code for b in BLOCKS):
        yield ""
        return
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from ..redis_server import RedisServer

    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def docs_collector() -> Iterator[Collector]:
    """One collector on 127.0.0.1 for all examples, accepting any write key (and serving the
    Track API, App API and Bloomreach routes too)."""
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
            raise socket.gaierror(socket.EAI_NONAME, f"test_docs_examples: no network beyond loopback ({name})")
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


def test_the_docs_have_python_examples_and_few_exceptions():
    """README and the pages hold runnable examples; the blocks not run are few, each named with its
    reason, and each entry of NOT_RUN still matches a block."""
    assert len([b for b in BLOCKS if b.path == "README.rst"]) >= 2
    assert len(BLOCKS) >= 60
    skipped = [b for b in BLOCKS if not_run_reason(b)]
    assert len(skipped) == len(NOT_RUN) <= 3, [(b.path, b.line) for b in skipped]


def test_no_example_sends_to_a_production_host():
    """The examples send to the local collector: no production host is written in their code (a
    comment may name one)."""
    named = [(b.path, b.line, h) for b in BLOCKS for h in PRODUCTION_HOSTS
             if re.search(re.escape(h) + r"(?![\w.-])", re.sub(r"#.*", "", b.code))]  # (comments may name them)
    assert named == []


def test_every_literal_block_names_its_language():
    """A bare ``::`` literal block would be highlighted as Python without being run: the pages
    say ``.. code-block:: python`` (run here), ``console`` or ``text`` instead."""
    bare = []
    for path in doc_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            stripped = line.rstrip()
            if stripped.endswith("::") and not stripped.lstrip().startswith(".."):
                bare.append(f"{path.relative_to(ROOT)}:{n}")
    assert bare == []


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.path}:{b.line}" for b in BLOCKS])
def test_example_runs(block: Block, docs_collector: Collector, docs_redis: str, no_internet: List[str]):
    """The example runs on its own, without error, and nothing it sends leaves the machine."""
    reason = not_run_reason(block)
    if reason:
        pytest.skip(reason)
    url = docs_collector.url
    docs_collector.reset()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    namespace: dict = {"__name__": f"docs_example_{block.index:02d}"}
    try:
        exec(compile(localize(block.code, url, docs_redis), f"{block.path}:{block.line}", "exec"), namespace)
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
    if shared is not None and shared.send:  # what the example sent through the module facade all arrived
        stats = shared.stats()
        assert stats["accepted"] - stats["dropped"]["before_send"] == stats["delivered"], stats

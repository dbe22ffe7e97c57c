"""The queue protocol: the memory queue, the spool and the Redis queue implement every member of
:class:`analytics.queues.base.Queue`, state their capabilities as typed attributes, and
:func:`analytics.queues.open_queue` opens the one a client's options ask for."""

from __future__ import annotations

import inspect
import logging
import os
import re
import threading
import typing
from typing import Any, Iterator, List

import pytest

from analytics.destinations.trackv2 import TrackV2
from analytics.errors import SpoolError
from analytics.options import Config
from analytics.queues import MemoryQueue, SQLiteQueue, open_queue, spool_file
from analytics.queues.base import Queue, SharedQueue

from ..conftest import WRITE_KEY


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


JOIN_S = 10.0


#: Everything the engine and the client call or read on a queue.
QUEUE_MEMBERS = {
    "durable", "shared", "consume", "maxsize", "put_total", "taken_total", "recovered", "degraded", "where",
    "__len__", "ready", "totals", "put", "take_batch", "take_all", "settle", "keep", "wait_durable", "listen",
    "stop_reading", "close", "release", "forget_after_fork", "items_after_fork",
}


SHARED_MEMBERS = QUEUE_MEMBERS | {"last_id", "backlog_before", "info"}


def _members(protocol: type) -> dict:
    """The protocol's members: name -> its declared type (an attribute) or its function/property."""
    out: dict = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, typing.Protocol, typing.Generic):
            continue
        hints = typing.get_type_hints(klass)
        for name in vars(klass).get("__annotations__", {}):
            out[name] = hints[name]
        for name, value in vars(klass).items():
            if isinstance(value, property) or (inspect.isfunction(value) and (not name.startswith("_") or name == "__len__")):
                out[name] = value
    return out


def _is_instance(value: Any, declared: Any) -> bool:
    args = typing.get_args(declared)
    if typing.get_origin(declared) is typing.Union:
        return any(_is_instance(value, arg) for arg in args)
    return isinstance(value, declared)


def assert_implements(q: Any, protocol: type) -> None:
    """Each member of ``protocol`` is on ``q``: attributes of the declared type, properties
    giving their return type, methods with the protocol's parameters and defaults."""
    for name, declared in _members(protocol).items():
        assert hasattr(q, name), f"{type(q).__name__} lacks {name}"
        if isinstance(declared, property):
            returns = typing.get_type_hints(declared.fget)["return"]
            assert _is_instance(getattr(q, name), returns), (type(q).__name__, name)
        elif inspect.isfunction(declared):
            want = list(inspect.signature(declared).parameters.values())[1:]  # without self
            got = list(inspect.signature(getattr(q, name)).parameters.values())
            assert [(p.name, p.kind, p.default) for p in got] == [(p.name, p.kind, p.default) for p in want], \
                (type(q).__name__, name)
        else:
            assert _is_instance(getattr(q, name), declared), (type(q).__name__, name, getattr(q, name))
    assert isinstance(q, protocol)


@pytest.fixture
def spool(tmp_path) -> Iterator[SQLiteQueue]:
    q = SQLiteQueue(str(tmp_path / "events.db"), maxsize=10)
    yield q
    q.close(JOIN_S)
    q.release()


@pytest.fixture
def made() -> Iterator[List[Any]]:
    """Queues a test opened; closed and released after it."""
    queues: List[Any] = []
    yield queues
    for q in queues:
        q.close(JOIN_S)
        q.release()


def test_the_protocol_names_every_member_the_engine_and_the_client_use():
    """Queue declares exactly the calls and capabilities the engine and the client use; SharedQueue adds the stream's."""
    assert set(_members(Queue)) == QUEUE_MEMBERS
    assert set(_members(SharedQueue)) == SHARED_MEMBERS


def test_memory_queue_implements_the_protocol():
    """MemoryQueue has every member of Queue, typed: not durable, not shared, consumed here."""
    q = MemoryQueue(10)
    assert_implements(q, Queue)
    assert (q.durable, q.shared, q.consume, q.degraded, q.where) == (False, False, True, None, "memory")
    assert not isinstance(q, SharedQueue)


def test_spool_implements_the_protocol(spool):
    """SQLiteQueue has every member of Queue, typed: durable, not shared, and says which file."""
    assert_implements(spool, Queue)
    assert (spool.durable, spool.shared, spool.consume) == (True, False, True)
    assert spool.where == f"the spool {spool.path}"


def test_spool_tells_the_listener_after_a_commit(spool):
    """The on_stored callback given to listen() is called by the spool's writer once a group is committed."""
    told = threading.Event()
    waiting: List[int] = []
    spool.listen(on_stored=lambda n: (waiting.append(n), told.set()))
    spool.put(b'{"a":1}')
    assert told.wait(JOIN_S) and waiting[-1] == 1


def test_open_queue_without_spool_or_redis_is_a_memory_queue():
    """No spool_path and no queue URL: a MemoryQueue of max_queue_size."""
    q = open_queue(Config(write_key=WRITE_KEY, max_queue_size=7))
    assert type(q) is MemoryQueue and q.maxsize == 7 and q.degraded is None


def test_open_queue_with_a_spool_path_opens_the_spool(tmp_path, made):
    """spool_path: a SQLiteQueue on that file, with the spool's byte bound."""
    path = str(tmp_path / "events.db")
    q = open_queue(Config(write_key=WRITE_KEY, spool_path=path, spool_max_bytes=5000))
    made.append(q)
    assert type(q) is SQLiteQueue and q.path == path and q.max_bytes == 5000


def test_open_queue_names_the_spool_file_after_the_destination(tmp_path, made):
    """With a destination other than Data Pipelines the spool file is per API."""
    path = str(tmp_path / "events.db")
    cfg = Config(spool_path=path, destination=TrackV2(site_id="site", api_key="key", host="http://127.0.0.1:9"))
    q = open_queue(cfg)
    made.append(q)
    assert q.where == f"the spool {tmp_path / 'events.trackv2.db'}" == f"the spool {spool_file(path, cfg.destination)}"


def test_open_queue_falls_back_to_memory_when_the_spool_cannot_be_opened(tmp_path, caplog):
    """A spool that cannot be opened: logged, and a MemoryQueue whose degraded is the SpoolError."""
    (tmp_path / "a-file").write_text("not a directory")
    cfg = Config(write_key=WRITE_KEY, spool_path=str(tmp_path / "a-file" / "events.db"))
    with caplog.at_level(logging.ERROR, logger="customerio.analytics"):
        q = open_queue(cfg)
    assert type(q) is MemoryQueue and isinstance(q.degraded, SpoolError) and "a-file" in str(q.degraded)
    assert any("kept in memory instead" in r.getMessage() for r in caplog.records)


def test_open_queue_raises_when_the_spool_is_required(tmp_path):
    """spool_required: the SpoolError is raised, no fallback."""
    (tmp_path / "a-file").write_text("not a directory")
    cfg = Config(write_key=WRITE_KEY, spool_path=str(tmp_path / "a-file" / "events.db"), spool_required=True)
    with pytest.raises(SpoolError, match="a-file"):
        open_queue(cfg)


def test_no_queue_capability_is_probed():
    """The engine and the client read a queue's capabilities as typed attributes: no getattr/hasattr on a queue."""
    probe = re.compile(r"(getattr|hasattr)\((self\.|obj\.|consumer\.|client\.)?_?(queue|q)\b")
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "analytics")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    found += [f"{os.path.relpath(path, ROOT)}:{n}" for n, line in enumerate(f, 1) if probe.search(line)]
    assert not found

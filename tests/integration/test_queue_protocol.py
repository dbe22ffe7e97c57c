"""The queue protocol: the memory queue, the spool and the Redis queue implement every member of

The tests of this subject that need the loopback collector, SQLite or Redis; the others are in ``tests/unit/test_queue_protocol.py``."""

from __future__ import annotations

import threading
import typing
from typing import Any, List

from analytics.options import Config
from analytics.queues import MemoryQueue, RedisQueue, open_queue, stream_name
from analytics.queues.base import SharedQueue

from ..conftest import WRITE_KEY
from .test_redis_queue import prefix, redis_url
from ..unit.test_queue_protocol import JOIN_S, assert_implements, spool, made  # shared with the tests there


def _redis(made: List[Any], url: str, prefix: str, name: str = "stream", **kw: Any) -> RedisQueue:
    q = RedisQueue(url, f"{prefix}:{name}", kw.pop("maxsize", 10), block=0.05, **kw)
    made.append(q)
    return q


def test_redis_queue_implements_the_shared_protocol(made, redis_url, prefix):
    """RedisQueue has every member of SharedQueue, typed: durable, shared, consumed as asked."""
    q = _redis(made, redis_url, prefix)
    assert_implements(q, SharedQueue)
    assert (q.durable, q.shared, q.consume) == (True, True, True)
    assert q.where == f"the Redis stream {prefix}:stream"
    assert _redis(made, redis_url, prefix, consume=False).consume is False


def test_maxsize_is_settable_on_every_queue(spool, made, redis_url, prefix):
    """A live max_queue_size change is an assignment the protocol allows; the memory queue and
    the spool then refuse past it (the Redis stream's bound is checked with open_queue below)."""
    redis_queue = _redis(made, redis_url, prefix, consume=False)
    redis_queue.maxsize = 1
    assert redis_queue.maxsize == 1
    for q in (MemoryQueue(10), spool):
        q.maxsize = 1
        assert q.put(b'{"a":1}') == 1 and q.put(b'{"a":2}') == 0, type(q).__name__


def test_redis_queue_tells_the_listeners(made, redis_url, prefix):
    """listen(): the reader calls on_stored after it read entries; the writer gives on_refused what a full stream refused."""
    stored = threading.Event()
    consumer = _redis(made, redis_url, prefix, maxsize=2)
    consumer.listen(on_stored=lambda n: stored.set())
    producer = _redis(made, redis_url, prefix, "full", maxsize=2, consume=False)
    refused: List[List[bytes]] = []
    producer.listen(on_refused=refused.append)
    consumer.put(b'{"a":1}')
    assert stored.wait(JOIN_S)
    for i in range(2):
        assert producer.put(b'{"b":%d}' % i)
    assert producer.wait_durable(None, JOIN_S) == 0  # the stream now holds 2: it is full
    assert producer.put(b'{"c":1}')
    assert producer.wait_durable(None, JOIN_S) == 0
    assert refused == [[b'{"c":1}']]


def test_open_queue_with_a_redis_url_opens_the_tenants_stream(made, redis_url, prefix):
    """queue='redis://...': a RedisQueue on the stream of the write key and host, consuming as asked,
    and the on_refused callback given is the writer's."""
    cfg = Config(write_key=WRITE_KEY, queue=redis_url, consume=False, stream_prefix=prefix, max_queue_size=1)
    refused: List[List[bytes]] = []
    q = open_queue(cfg, on_refused=refused.append)
    made.append(q)
    assert type(q) is RedisQueue and q.stream == stream_name(cfg) and q.stream.startswith(f"{prefix}:cdp:")
    assert q.consume is False and q.maxsize == 1
    for item in (b'{"a":1}', b'{"a":2}'):
        assert q.put(item)
        assert q.wait_durable(None, JOIN_S) == 0
    assert refused == [[b'{"a":2}']]

"""The Redis Streams queue against a real Redis server and real worker processes.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_redis_queue.py``."""

from __future__ import annotations
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import List

import pytest

from analytics import Client
from analytics.collector import Collector

from ..conftest import WRITE_KEY
from ..integration.test_redis_queue import redis_url, prefix, clients, _client, _wait, redis, _server_or_skip  # shared with the tests there


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _worker(redis_url: str, collector: Collector, prefix: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT, CDP_WRITE_KEY=WRITE_KEY)
    return subprocess.Popen(
        [sys.executable, "-m", "analytics.worker", "--queue", redis_url, "--host", collector.url,
         "--stream-prefix", prefix, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail("process did not stop in time")
    return -1


PRODUCER = """
import sys
from analytics import Client
url, host, prefix, tag, n, key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
c = Client(key, host=host, queue=url, consume=False, stream_prefix=prefix)
for i in range(n):
    assert c.track(f"{tag}-{i}", "Produced", {"tag": tag, "i": i})[0]
left = c.wait_durable(30)
c.shutdown(timeout=10)
print("unwritten", left)
"""


def test_redis_restart_under_load_loses_nothing(clients, collector):
    """A persistent Redis is stopped and started again while a thread calls track(): the
    calls keep returning True (buffered), and afterwards the collector holds every message."""
    server = _server_or_skip(persistent=True)
    try:
        c = _client(clients, host=collector.url, queue=server.url, stream_prefix="restart", max_queue_size=20000)
        sent: List[str] = []
        done = threading.Event()

        def produce() -> None:
            for i in range(3000):
                ok, msg = c.track(f"u{i}", "Under Load", {"i": i})
                assert ok
                sent.append(msg["messageId"])
                if i % 100 == 0:
                    time.sleep(0.01)  # a steady producer, not one burst
            done.set()

        t = threading.Thread(target=produce)
        t.start()
        _wait(lambda: len(sent) > 800, 20, "the producer to get going")
        server.stop()
        time.sleep(0.5)  # Redis stays down for half a second while calls go on
        server.start()
        t.join(60)
        assert done.is_set()
        assert c.flush(timeout=30) == 0
        assert collector.unique_ids == set(sent)
    finally:
        for cl in clients:
            cl.shutdown(timeout=5)
        clients.clear()
        server.cleanup()


def test_producer_processes_and_worker_processes(redis_url, prefix, collector):
    """3 producer processes (consume=False) and 2 workers: every message arrives exactly
    once; SIGTERM stops each worker cleanly (exit 0)."""
    workers = [_worker(redis_url, collector, prefix) for _ in range(2)]
    producers = [_spawn(PRODUCER, redis_url, collector.url, prefix, f"p{j}", "1000", WRITE_KEY) for j in range(3)]
    try:
        for p in producers:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert "unwritten 0" in out
        assert collector.wait_for(3000, timeout=30), len(collector.unique_ids)
        assert len(collector.unique_ids) == 3000 and collector.duplicates == 0
    finally:
        codes = [_stop(w) for w in workers]
    assert codes == [0, 0]
    conn = redis.Redis.from_url(redis_url)
    streams = list(conn.scan_iter(f"{prefix}:*"))
    assert len(streams) == 1 and conn.xlen(streams[0]) == 0


def test_worker_killed_mid_batch_loses_nothing(redis_url, prefix, clients, collector):
    """A worker holding batches (the server answers slowly) is killed with SIGKILL; another
    worker takes its entries over after claim_after and the collector ends with all 600,
    duplicates only as the same messageId sent again."""
    producer = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, consume=False)
    sent = [producer.track(f"u{i}", "E", {"i": i})[1]["messageId"] for i in range(600)]
    assert producer.wait_durable(10) == 0
    collector.delay = 0.4
    victim = _worker(redis_url, collector, prefix, "--claim-after", "1", "--threads", "2")
    conn = redis.Redis.from_url(redis_url)
    stream = producer._engine.queue.stream

    def victim_holds_entries() -> bool:
        try:
            return conn.xpending(stream, "cdp-relay")["pending"] > 0
        except redis.RedisError:
            return False

    _wait(victim_holds_entries, 20, "the first worker to read entries")
    time.sleep(0.2)  # its first request is now inside the collector's slow answer
    victim.kill()
    victim.wait(10)
    held = conn.xpending(stream, "cdp-relay")["pending"]
    assert held > 0  # read by the dead worker, never acknowledged: only a take-over can send them
    collector.delay = 0.0
    rescuer = _worker(redis_url, collector, prefix, "--claim-after", "1")
    try:
        _wait(lambda: set(sent) <= collector.unique_ids, 60, "every message to arrive")
        assert collector.unique_ids == set(sent)
        _wait(lambda: conn.xlen(stream) == 0, 20, "every entry to be acknowledged")
    finally:
        assert _stop(rescuer) == 0
    assert producer.flush(timeout=10) == 0


def test_flush_in_a_producer_waits_for_the_workers(redis_url, prefix, clients, collector):
    """flush() in a process that only produces returns 0 once a worker elsewhere delivered
    everything it had put."""
    worker = _worker(redis_url, collector, prefix)
    try:
        c = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, consume=False)
        sent = [c.track(f"u{i}", "E")[1]["messageId"] for i in range(250)]
        assert c.flush(timeout=30) == 0
        assert set(sent) <= collector.unique_ids  # already there when flush returned
    finally:
        assert _stop(worker) == 0


def test_worker_command_reports_usage_errors_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "analytics.worker", "--write-key", "k"],
                          env=dict(os.environ, PYTHONPATH=ROOT, CDP_QUEUE=""), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "--queue" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_buffer_and_consumer(redis_url, prefix, clients, collector):
    """Parent and forked child both produce through Redis: each message arrives once (the
    child does not write the parent's buffer again, and has a consumer name of its own)."""
    c = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix)
    before = [c.track(f"parent-{i}", "E")[1]["messageId"] for i in range(50)]  # maybe still buffered
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            for i in range(50):
                c.track(f"child-{i}", "E")
            code = 0 if c.flush(timeout=20) == 0 else 3
        finally:
            os._exit(code)
    after = [c.track(f"parent2-{i}", "E")[1]["messageId"] for i in range(50)]
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert c.flush(timeout=20) == 0
    assert set(before + after) <= collector.unique_ids
    assert len(collector.unique_ids) == 150 and collector.duplicates == 0


def test_worker_reads_the_cdp_variables_and_flags_like_every_command(redis_url, prefix, clients, collector):
    """`cdp-relay worker` reads CDP_WRITE_KEY, CDP_HOST (a bare host:port), CDP_GZIP, CDP_TIMEOUT,
    CDP_MAX_RETRIES and CDP_QUEUE as the other commands do, and its flags (--no-gzip) win (issue 19)."""
    bare = collector.url.split("://", 1)[1]
    env = dict(os.environ, PYTHONPATH=ROOT, CDP_WRITE_KEY=WRITE_KEY, CDP_HOST=bare, CDP_GZIP="1", CDP_TIMEOUT="5",
               CDP_MAX_RETRIES="3", CDP_QUEUE=redis_url)
    producer = _client(clients, host=collector.url, queue=redis_url, stream_prefix=prefix, consume=False)
    for flags, compressed in (([], True), (["--no-gzip"], False)):
        worker = subprocess.Popen([sys.executable, "-m", "analytics", "worker", "--stream-prefix", prefix, *flags],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            before = len(collector.batches)
            sent = {producer.track(f"u{i}", "E", {"flags": " ".join(flags)})[1]["messageId"] for i in range(30)}
            assert producer.wait_durable(10) == 0
            _wait(lambda: sent <= collector.unique_ids, 30, "the worker to deliver")
            assert all((b.compressed_size is not None) == compressed for b in collector.batches[before:])
        finally:
            assert _stop(worker) == 0
        err = worker.stderr.read()
        assert "delivering from " in err and f"to {collector.url} " in err and "stopped; delivered 30" in err, err
    for name, value, message in (("CDP_TIMEOUT", "soon", "CDP_TIMEOUT must be a number like --timeout"),
                                 ("CDP_GZIP", "maybe", "CDP_GZIP must be 1 or 0"),
                                 ("CDP_MAX_RETRIES", "-1", "--max-retries must be at least 0")):
        done = subprocess.run([sys.executable, "-m", "analytics", "worker", "--stream-prefix", prefix],
                              env=dict(env, **{name: value}), capture_output=True, text=True, timeout=60)
        [line] = done.stderr.strip().splitlines()
        assert done.returncode == 2 and line.startswith(f"cdp-relay worker: error: {message}"), done.stderr
    helped = subprocess.run([sys.executable, "-m", "analytics", "worker", "--help"], env=env, capture_output=True,
                            text=True, timeout=60).stdout
    for flag in ("--write-key", "--host", "--gzip, --no-gzip", "--timeout", "--max-retries", "--max-retry-time",
                 "--queue", "CDP_QUEUE", "examples:"):
        assert flag in helped, flag

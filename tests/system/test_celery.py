"""Celery's prefork pool with the integration: a real worker, a real Redis broker, the real collector.

The pool processes end without ``atexit``: without the integration their
queued events are lost at the worker's shutdown.  Here every task's event
arrives exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from analytics import ConfigurationError
from analytics.collector import Collector

from ..conftest import ROOT, WRITE_KEY, wait_until
from ..redis_server import RedisServer

if not os.environ.get("CI"):
    pytest.importorskip("celery")  # only checked: Celery is imported by the worker's processes, not this one

APP = textwrap.dedent(
    """
    import os

    from celery import Celery

    import analytics
    from analytics.integrations.celery import setup

    analytics.write_key = os.environ["CDP_TEST_WRITE_KEY"]
    analytics.host = os.environ["CDP_TEST_HOST"]
    analytics.upload_interval = 60  # only shutdown (or a flush) sends anything
    analytics.upload_size = 1000

    app = Celery("shop", broker=os.environ["CDP_TEST_BROKER"], backend=os.environ["CDP_TEST_BROKER"])
    app.conf.task_default_queue = os.environ["CDP_TEST_QUEUE"]
    setup(flush_after_task=os.environ.get("CDP_TEST_FLUSH") == "1")


    @app.task
    def work(n):
        ok, _ = analytics.track(f"user-{n}", "task", {"n": n, "pid": os.getpid()})
        return [os.getpid(), ok]
    """
)


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def worker(tmp_path: Path, collector: Collector, broker: str) -> Iterator:
    (tmp_path / "celery_app.py").write_text(APP)
    queue = f"cdp-relay-test-{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]),
        CDP_TEST_WRITE_KEY=WRITE_KEY, CDP_TEST_HOST=collector.url, CDP_TEST_BROKER=broker, CDP_TEST_QUEUE=queue,
    )  # fmt: skip
    procs = []

    def start(flush: bool = False):
        env["CDP_TEST_FLUSH"] = "1" if flush else "0"
        log = tmp_path / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork", "-c", "2",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
             "-Q", queue, "--logfile", str(log)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)

        def run_tasks(n: int):
            """Send n tasks from a process of their own (this one stays free of Celery's imports); their results."""
            out = subprocess.run([sys.executable, "-c", SEND, str(n)], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=90)
            assert out.returncode == 0, out.stderr + log.read_text()
            return json.loads(out.stdout)

        return proc, run_tasks, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


SEND = textwrap.dedent(
    """
    import json, sys
    from celery_app import work

    results = [work.delay(i) for i in range(int(sys.argv[1]))]
    print(json.dumps([r.get(timeout=60) for r in results]))
    """
)


def _task_events(collector: Collector):
    return [m for m in collector.messages if m.get("event") == "task"]


@pytest.mark.timeout(120)
def test_pool_processes_deliver_their_events_at_worker_shutdown(worker, collector):
    """40 tasks over 2 pool processes; a warm shutdown (SIGTERM) delivers every task's event exactly once."""
    proc, run_tasks, log = worker()
    answers = run_tasks(40)
    assert all(ok for _, ok in answers)
    pids = {pid for pid, _ in answers}
    assert proc.pid not in pids
    assert not _task_events(collector)  # nothing is due before the shutdown (upload_interval 60 s)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    events = _task_events(collector)
    assert sorted(m["properties"]["n"] for m in events) == list(range(40)), log.read_text()
    assert collector.stats()["duplicates"] == 0
    assert {m["properties"]["pid"] for m in events} == pids


@pytest.mark.timeout(120)
def test_flush_after_task_sends_each_tasks_event_before_the_next_task(worker, collector):
    """With flush_after_task, every task's event has arrived once its result is in, while the worker runs."""
    proc, run_tasks, log = worker(flush=True)
    answers = run_tasks(10)
    assert all(ok for _, ok in answers)
    assert wait_until(lambda: len(_task_events(collector)) == 10, timeout=10), log.read_text()
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert len(_task_events(collector)) == 10 and collector.stats()["duplicates"] == 0


def test_a_bad_flush_timeout_is_refused():
    """setup() checks its options at once (before it imports anything of Celery's)."""
    from analytics.integrations.celery import setup

    with pytest.raises(ConfigurationError, match="flush_timeout"):
        setup(flush_timeout=-1)

"""Fork safety with real forks: os.fork(), multiprocessing (fork start method), gunicorn (sync, gevent, eventlet).

A forked child gets its own queue, consumer threads, locks, HTTP session and
counters, built at its first call (after any gevent monkey-patching), once
``os.register_at_fork`` has marked the fork (a pid check is the fallback).  What the
parent had queued at the fork is the parent's to deliver; what the child
queues is the child's.  Every test counts at a real collector on 127.0.0.1
(in this process) that every event arrived exactly once, by ``messageId``.

A child forked from the pytest process always ends with ``os._exit()`` (see
:func:`_fork_call`); the normal-exit path (``sys.exit`` and the atexit
drain) is tested in a fresh interpreter started with ``subprocess``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import http.client
import http.server
import json
import logging
import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from typing import Any, Callable, Dict, List

import pytest

import analytics
from analytics import _fork

from . import eventlet_env
from ..conftest import WRITE_KEY, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "register_at_fork"), reason="needs os.fork"),
    # Python 3.12+ warns when a process with threads forks; forking such a process is the point here.
    pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"),
]


# --- helpers -----------------------------------------------------------------------


def _fork_call(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``fn`` in a child made by a real ``os.fork()``; return its result (JSON) to the parent.

    The child always leaves with ``os._exit`` (never through pytest's
    machinery).  If it does not finish within ``timeout`` seconds (a
    deadlock), it is killed and the test fails.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_fd)
            try:
                payload = {"ok": True, "result": fn()}
                code = 0
            except BaseException:
                payload = {"ok": False, "error": traceback.format_exc()}
            data = json.dumps(payload).encode()
            while data:
                data = data[os.write(write_fd, data):]
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    chunks: List[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish within {timeout} s (deadlock?)")
    finally:
        os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) in (0, 1), f"child ended with status {status}"
    answer = json.loads(b"".join(chunks) or b'{"ok": false, "error": "no answer from the child"}')
    assert answer["ok"], "the forked child failed:\n" + answer["error"]
    return answer["result"]


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def _track_many(track: Callable[..., Any], who: str, n: int, **props: Any) -> List[str]:
    """Track ``n`` events tagged ``who``; return their (generated) messageIds."""
    ids = []
    for i in range(n):
        ok, msg = track(f"{who}-{i}", f"{who}-event", {"who": who, "i": i, **props})
        assert ok
        ids.append(msg["messageId"])
    return ids


def _assert_exactly_once(collector, expected_ids, timeout: float = 10.0) -> None:
    """Every expected id arrived, nothing else did, and nothing twice."""
    expected = set(expected_ids)
    assert len(expected) == len(list(expected_ids)), "the test itself produced a repeated messageId"
    assert collector.wait_for(len(expected), timeout), (
        f"only {collector.stats()['messages']} of {len(expected)} messages arrived"
    )
    stats = collector.stats()
    assert collector.unique_ids == expected
    assert stats["duplicates"] == 0
    assert stats["messages"] == len(expected)


def _run_script(body: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def facade(collector):
    """The module facade pointed at the collector (conftest's autouse fixture restores it)."""
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    return analytics


# --- os.fork() -----------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("parent_state", ["queued", "sending"])
def test_fork_child_and_parent_each_deliver_their_own_events_once(make_client, collector, parent_state):
    """N queued (or in flight) in the parent at the fork: the parent sends them once, the child its M."""
    if parent_state == "queued":
        # a consumer thread is running, but the interval keeps all N in the queue at the fork
        client = make_client(upload_interval=30)
        pre = _track_many(client.track, "parent-pre", 40)
        assert client.queue.qsize() == 40 and [c.is_alive() for c in client.consumers] == [True]
    else:
        # small batches, a slow server: at the fork one batch is in flight and the rest are queued
        collector.delay = 0.3
        client = make_client(upload_size=10, upload_interval=0.01, max_in_flight=1)
        pre = _track_many(client.track, "parent-pre", 40)
        _poll(lambda: client.stats()["in_flight"] > 0, 5, "a batch in flight")
        assert client.queue.qsize() > 0
    parent_pid = os.getpid()

    def child():
        fresh = client.stats()  # the first call in the child builds its own engine
        assert client._engine.pid == os.getpid() != parent_pid
        ids = _track_many(client.track, "child", 25)
        pending = client.flush(timeout=15)
        return {"ids": ids, "fresh": fresh, "pending": pending, "stats": client.stats()}

    got = _fork_call(child)
    assert got["fresh"]["accepted"] == 0 and got["fresh"]["pending"] == 0  # the parent's queue stayed behind
    assert got["pending"] == 0
    assert got["stats"]["accepted"] == got["stats"]["delivered"] == 25
    assert client._engine.pid == parent_pid
    post = _track_many(client.track, "parent-post", 15)
    assert client.flush(timeout=15) == 0
    assert client.stats()["delivered"] == 55
    _assert_exactly_once(collector, pre + got["ids"] + post)
    assert {m["properties"]["who"] for m in collector.messages} == {"parent-pre", "child", "parent-post"}


@pytest.mark.timeout(30)
def test_fork_child_that_exits_normally_drains_at_exit(collector):
    """No flush anywhere: a forked child leaving with sys.exit() delivers its events at exit, the parent its own."""
    proc = _run_script(
        f"""
        import os, sys
        import analytics
        analytics.write_key = {WRITE_KEY!r}
        analytics.host = {collector.url!r}
        analytics.upload_interval = 60
        for i in range(30):
            analytics.track("parent-pre", "E", {{"who": "parent-pre", "i": i}})
        pid = os.fork()
        if pid == 0:
            for i in range(20):
                analytics.track("child", "E", {{"who": "child", "i": i}})
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("child-exit", os.waitstatus_to_exitcode(status), flush=True)
        for i in range(10):
            analytics.track("parent-post", "E", {{"who": "parent-post", "i": i}})
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "child-exit 0" in proc.stdout, proc.stdout + proc.stderr
    assert collector.wait_for(60, 10)
    stats = collector.stats()
    assert stats["messages"] == stats["unique"] == 60 and stats["duplicates"] == 0
    counts: Dict[str, int] = {}
    for m in collector.messages:
        counts[m["properties"]["who"]] = counts.get(m["properties"]["who"], 0) + 1
    assert counts == {"parent-pre": 30, "child": 20, "parent-post": 10}


@pytest.mark.timeout(30)
def test_fork_while_parent_sends_and_holds_every_lock_does_not_deadlock(make_client, facade, collector):
    """At the fork a batch is in flight and another thread holds the client's and the facade's locks.

    The child has fresh locks and a fresh HTTP session: its calls return at
    once and its flush delivers; the parent carries on once the locks are
    released.  (The facade has no shared client yet, so the child creates
    one, under the facade's lock.)
    """
    collector.delay = 0.3
    client = make_client(upload_size=10, upload_interval=0.01)
    pre = _track_many(client.track, "parent-pre", 30)
    _poll(lambda: client.stats()["in_flight"] > 0, 5, "a batch in flight")
    assert analytics.default_client is None
    # in the order the library takes them: consumer, then queue; stats and the facade's lock alone
    facade_lock = _fork.process_lock(analytics._locks)
    engine = client._engine  # its locks: no public seam
    locks = [engine.consumer._lock, engine.queue._lock, engine.stats._lock, facade_lock]
    holding, release = threading.Event(), threading.Event()

    def hold():
        for lock in locks:
            lock.acquire()
        holding.set()
        release.wait(20)
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(5)

    def child():
        t0 = time.monotonic()
        ids = _track_many(client.track, "child", 20)
        ids += _track_many(analytics.track, "child-facade", 5)
        calls = time.monotonic() - t0
        pending = client.flush(timeout=10), analytics.flush(timeout=10)
        return {"ids": ids, "calls": calls, "pending": pending, "total": time.monotonic() - t0}

    try:
        got = _fork_call(child, timeout=20)
        assert all(lock.locked() for lock in locks)  # the parent's are still held: the child used its own
    finally:
        release.set()
        holder.join(5)
    assert got["calls"] < 2.0, got
    assert got["pending"] == [0, 0], got
    post = _track_many(client.track, "parent-post", 10)
    assert client.flush(timeout=15) == 0
    assert analytics.default_client is None  # the child's shared client stayed in the child
    _assert_exactly_once(collector, pre + got["ids"] + post)


@pytest.mark.timeout(30)
def test_fork_with_the_module_facade(facade, collector):
    """analytics.track in the parent, fork, analytics.track in the child, analytics.flush() in both."""
    analytics.upload_interval = 30
    pre = _track_many(analytics.track, "parent-pre", 20)
    shared = analytics.default_client
    assert shared.queue.qsize() == 20

    def child():
        assert analytics.default_client is shared  # the same object, reset for this process
        fresh = analytics.stats()
        ids = _track_many(analytics.track, "child", 15)
        return {"ids": ids, "fresh": fresh, "pending": analytics.flush(timeout=10), "stats": analytics.stats()}

    got = _fork_call(child)
    assert got["fresh"]["accepted"] == 0
    assert got["pending"] == 0 and got["stats"]["delivered"] == 15
    post = _track_many(analytics.track, "parent-post", 5)
    assert analytics.flush(timeout=10) == 0
    assert analytics.stats()["delivered"] == 25
    _assert_exactly_once(collector, pre + got["ids"] + post)


@pytest.mark.timeout(30)
def test_fork_then_gevent_patch_builds_the_engine_with_gevent_locks(facade, collector):
    """The shared client exists at the fork and the child then patches with gevent (as gunicorn -k gevent does).

    The child's engine is built at its first call, after the patching, so
    its locks are gevent's: 20 greenlets tracking at once, a consumer
    greenlet and a flush all finish (with a real lock made at the fork, the
    first greenlet's track() blocked the whole process: issue 13 D14).
    """
    monkey = pytest.importorskip("gevent.monkey")
    pre = _track_many(analytics.track, "parent-pre", 5)
    assert analytics.default_client is not None

    def child():
        monkey.patch_all()
        import gevent

        greenlets = [gevent.spawn(_track_many, analytics.track, f"child-{g}", 5) for g in range(20)]
        gevent.joinall(greenlets, timeout=10)
        ids = [i for g in greenlets for i in (g.value or [])]
        lock_module = type(analytics.default_client._engine.consumer._lock).__module__
        return {"ids": ids, "pending": analytics.flush(timeout=10), "lock_module": lock_module}

    got = _fork_call(child, timeout=25)
    assert got["lock_module"].startswith("gevent"), got["lock_module"]
    assert len(got["ids"]) == 100 and got["pending"] == 0
    assert analytics.flush(timeout=10) == 0
    _assert_exactly_once(collector, pre + got["ids"])


# --- the pid check, when a fork bypasses os.register_at_fork -------------------------


@pytest.mark.timeout(30)
def test_pid_check_keeps_inherited_messages_at_the_next_wake_up(make_client, collector, caplog):
    """Simulated: the pid changes without the hook.  By the next wake-up point (the
    queue reaching upload_size) at the latest, the client rebuilds itself and keeps
    what was queued: nothing is lost."""
    client = make_client(upload_size=10, upload_interval=60)
    old_consumer, old_queue = client._engine.consumer, client._engine.queue
    ids = _track_many(client.track, "before", 1)
    # Let the (old) consumer thread park on its 60 s interval wait, so that only the rebuilt
    # engine can send: in a real fork that bypasses the hook, the old thread is not in the child.
    _poll(lambda: len(old_consumer._work._waiters) == 1, 5, "the consumer thread to wait")
    ids += _track_many(client.track, "before", 4)
    client._engine.pid = os.getpid() + 100000  # "this process is not the one that built the engine"
    with caplog.at_level(logging.WARNING, logger="customerio.analytics"):
        ids += _track_many(client.track, "after", 4)  # queue at 6..9: no wake-up point yet
        ids += _track_many(client.track, "after", 1, last=True)  # the 10th: a wake-up point
    try:
        assert client._engine.consumer is not old_consumer and client._engine.queue is not old_queue
        assert client._engine.pid == os.getpid()
        assert any("bypassed os.register_at_fork" in r.getMessage() for r in caplog.records)
        assert collector.wait_for(10, 10)  # a full batch, sent without flush
        assert client.flush(timeout=10) == 0
        assert client.stats()["delivered"] == 10
    finally:
        # In a real fork the old engine is the parent's; here it is ours to stop, without sending.
        old_queue.take_all()
        old_consumer.stop(1)
    _assert_exactly_once(collector, ids)


@pytest.mark.timeout(30)
def test_pid_check_in_flush_keeps_inherited_messages(make_client, collector):
    """Simulated: flush() and stats() check the pid too, so nothing waits for a wake-up point."""
    client = make_client(upload_interval=60)
    old_consumer, old_queue = client._engine.consumer, client._engine.queue
    ids = _track_many(client.track, "before", 7)
    client._engine.pid = os.getpid() + 100000
    try:
        assert client.stats()["queued"] == 7  # rebuilt, inherited messages kept
        assert client._engine.consumer is not old_consumer
        assert client.flush(timeout=10) == 0
    finally:
        old_queue.take_all()
        old_consumer.stop(1)
    _assert_exactly_once(collector, ids)


@pytest.mark.timeout(30)
def test_real_fork_that_bypasses_the_hook_duplicates_but_never_loses(make_client, collector):
    """A real fork the hook does not see (the client hidden from it): the child keeps the
    inherited queue, so the parent's queued messages may arrive twice, with the same
    messageId, and the child's arrive too."""
    client = make_client(upload_interval=30)
    pre = _track_many(client.track, "parent-pre", 12)
    parent_pid = os.getpid()

    def child():
        assert client._engine.pid == parent_pid  # the hook did not run
        ids = _track_many(client.track, "child", 8)  # queue at 13..20: no wake-up point
        pending = client.flush(timeout=10)  # the pid check: rebuild, keep all 20, send
        return {"ids": ids, "pending": pending, "pid_fixed": client._engine.pid == os.getpid(), "stats": client.stats()}

    _fork._live_clients.discard(client)
    try:
        got = _fork_call(child)
    finally:
        _fork._live_clients.add(client)
    assert got["pending"] == 0 and got["pid_fixed"]
    assert got["stats"]["delivered"] == 20
    assert client.flush(timeout=10) == 0
    assert collector.wait_for(32, 10)
    stats = collector.stats()
    assert collector.unique_ids == set(pre + got["ids"])  # no loss
    assert stats["duplicates"] == 12  # the parent's queued ones, once by each process
    assert stats["messages"] == 32


# --- multiprocessing (fork start method) ---------------------------------------------


def _pool_task(n: int):
    ok, msg = analytics.track(f"pool-{n}", "pool-task", {"who": "pool", "n": n, "pid": os.getpid()})
    return ok, msg["messageId"], os.getpid()


def _pool_task_with_flush(n: int):
    ok, msg = analytics.track(f"pool-{n}", "pool-task", {"who": "pool", "n": n, "pid": os.getpid()})
    return ok, msg["messageId"], analytics.flush(timeout=10)


def _process_target(count: int, pipe) -> None:
    ids = [analytics.track(f"proc-{i}", "proc-event", {"who": "proc", "i": i})[1]["messageId"] for i in range(count)]
    pipe.send(ids)
    pipe.close()
    # returns without flush: the multiprocessing finalizer drains the queue before os._exit()


def _join_pool(pool, timeout: float) -> None:
    joiner = threading.Thread(target=pool.join, daemon=True)
    joiner.start()
    joiner.join(timeout)
    if joiner.is_alive():
        pool.terminate()
        pytest.fail(f"pool.join() did not return within {timeout} s")


@pytest.mark.timeout(30)
def test_pool_workers_returning_without_flush_drain_at_close_and_join(facade, collector):
    """Tasks track and return; pool.close(); pool.join(): every worker drains at its exit."""
    analytics.upload_interval = 30  # nothing is sent by the interval: only the exit drain can deliver
    pre = _track_many(analytics.track, "parent-pre", 10)
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        results = pool.map_async(_pool_task, range(60), chunksize=3).get(timeout=20)
    finally:
        pool.close()
        _join_pool(pool, 20)
    assert all(ok for ok, _, _ in results)
    assert os.getpid() not in {pid for _, _, pid in results}
    assert analytics.flush(timeout=10) == 0
    _assert_exactly_once(collector, pre + [mid for _, mid, _ in results])


@pytest.mark.timeout(30)
def test_pool_tasks_that_flush_survive_terminate(facade, collector):
    """The documented pattern with `with Pool()` (which terminates its workers): flush in the task."""
    analytics.upload_interval = 30
    pre = _track_many(analytics.track, "parent-pre", 10)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_pool_task_with_flush, range(60), chunksize=3).get(timeout=20)
    assert all(ok and pending == 0 for ok, _, pending in results)
    assert analytics.flush(timeout=10) == 0
    _assert_exactly_once(collector, pre + [mid for _, mid, _ in results])


@pytest.mark.timeout(30)
def test_multiprocessing_process_drains_at_exit_without_flush(facade, collector):
    """A multiprocessing.Process (fork) whose target tracks and returns: delivered at its exit."""
    analytics.upload_interval = 30
    pre = _track_many(analytics.track, "parent-pre", 5)
    child_ids = _run_process_target(25)
    assert analytics.flush(timeout=10) == 0
    _assert_exactly_once(collector, pre + child_ids)


@pytest.mark.timeout(30)
def test_multiprocessing_process_drains_a_client_created_in_the_child(facade, collector):
    """The facade configured in the parent, first used in the child (the shared client is made there)."""
    assert analytics.default_client is None
    _assert_exactly_once(collector, _run_process_target(5), timeout=3)


def _run_process_target(n: int) -> list:
    """Run _process_target(n) in a fork-started Process; the ids it tracked (it must exit 0)."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_process_target, args=(n, sender))
    proc.start()
    sender.close()
    try:
        assert receiver.poll(20), "the process sent nothing"
        child_ids = receiver.recv()
        proc.join(20)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return child_ids


# --- gunicorn: sync, gthread, gevent and eventlet workers, with and without --preload -


@pytest.fixture(scope="session")
def eventlet_python() -> str:
    """The python of a virtualenv with gunicorn's eventlet worker (see tests/system/eventlet_env.py)."""
    python, why = eventlet_env.eventlet_python()
    if python is None:
        pytest.skip(why)
    return python


def _gunicorn_python(request, worker: str) -> str:
    """The interpreter whose gunicorn runs ``worker``: this one, or the eventlet virtualenv's."""
    if worker == "gevent":
        pytest.importorskip("gevent")
    return request.getfixturevalue("eventlet_python") if worker == "eventlet" else sys.executable


def _get(port: int, path: str, timeout: float) -> Dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
        return json.loads(body)
    finally:
        conn.close()


def _track_request(port: int, n: int) -> Dict[str, Any]:
    """GET /track?n=N on a connection of its own, closed after (a kept-alive one holds up a gevent worker's exit)."""
    return _get(port, f"/track?n={n}", timeout=5)


@functools.lru_cache(maxsize=None)
def _gunicorn_has_control_socket(python: str) -> bool:
    """Whether this gunicorn has the --no-control-socket option (the releases for Python 3.9 do not)."""
    out = subprocess.run([python, "-m", "gunicorn", "--help"], capture_output=True, text=True, timeout=30)
    return "--no-control-socket" in out.stdout


_WORKER_ARGS = {
    "sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"],
    "gevent": ["-k", "gevent"], "eventlet": ["-k", "eventlet"],
}  # fmt: skip
_GUNICORN_CASES = [
    (worker, preload, load_event, 2)
    for worker in ("sync", "gevent", "eventlet")
    for preload in (True, False)
    for load_event in (True, False)
] + [("gthread", True, True, 2)] + [
    (worker, preload, True, workers)
    for worker in ("gevent", "eventlet")
    for workers in (1, 4)
    for preload in (True, False)
]
_GUNICORN_IDS = [
    f"{worker}-w{workers}-{'' if preload else 'no-'}preload-{'' if load_event else 'no-'}load-event"
    for worker, preload, load_event, workers in _GUNICORN_CASES
]


def _timeout(worker: str, seconds: float):
    """A test's own time, plus 300 s for eventlet's: the first such test builds its virtualenv on a fresh machine."""
    return pytest.mark.timeout(seconds + (300 if worker == "eventlet" else 0))


def _start_gunicorn(collector, tmp_path, worker: str, preload: bool, workers: int, python: str, **env_extra: str):
    """``python -m gunicorn`` serving tests/forkapp on a loopback socket; returns (process, port, log reader)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN")}
    (tmp_path / "ready").mkdir()
    env.update(PYTHONPATH=ROOT, FORKAPP_WRITE_KEY=WRITE_KEY, FORKAPP_HOST=collector.url,
               FORKAPP_READY_DIR=str(tmp_path / "ready"), **env_extra)
    cmd = [
        python, "-m", "gunicorn", "tests.forkapp.app:application",
        *(["--preload"] if preload else []), "-w", str(workers), *_WORKER_ARGS[worker],
        "--bind", f"fd://{fd}",
        "--graceful-timeout", "10", "--timeout", "10",
        "--worker-tmp-dir", str(tmp_path),
        "--log-level", "info", "-c", os.path.join(ROOT, "tests", "forkapp", "gunicorn_conf.py"),
    ]  # fmt: skip
    if _gunicorn_has_control_socket(python):
        cmd.append("--no-control-socket")  # gunicorn 24+ (Python 3.10+) opens one by default
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True
        )
    listener.close()  # gunicorn has its own copy

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    return proc, port, log_text


def _first_ping(proc, port: int, log_text) -> Dict[str, Any]:
    """Wait (at most 20 s) until a worker answers /ping; its answer."""
    deadline = time.monotonic() + 20
    while True:  # the socket already listens: wait until a worker answers
        assert proc.poll() is None, "gunicorn exited early:\n" + log_text()
        try:
            return _get(port, "/ping", timeout=1)
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not answer within 20 s:\n" + log_text())


def _workers_ready(tmp_path, workers: int, log_text) -> None:
    """Wait (at most 20 s) until ``workers`` workers have their own signal handlers (tests/forkapp/gunicorn_conf.py).

    A SIGTERM sent before that is lost in a worker (it still has the
    master's handler), and the master kills it after ``--graceful-timeout``.
    """
    ready = tmp_path / "ready"
    deadline = time.monotonic() + 20
    while len(list(ready.glob("ready-*"))) < workers:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {workers} gunicorn workers booted within 20 s:\n" + log_text())
        time.sleep(0.01)


def _kill_group(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the gunicorn we started
        proc.wait(5)


@pytest.mark.parametrize(
    "worker, preload, load_event, workers",
    [pytest.param(*case, id=name, marks=_timeout(case[0], 60)) for case, name in zip(_GUNICORN_CASES, _GUNICORN_IDS)],
)
def test_gunicorn_workers_deliver_every_request_event_once(
    request, collector, tmp_path, worker, preload, load_event, workers
):
    """gunicorn -w 1/2/4, 200 concurrent requests: all answered, batches sent meanwhile, the rest at SIGTERM, each once.

    With ``--preload`` and an event tracked at import (in the master), the
    shared client exists before the fork and that event is still queued
    then (a gevent worker patches threading only after the fork: issue 13
    D14).  ``upload_interval`` is 60 s, so while the workers serve only full
    batches of 10 are sent; SIGTERM stops gunicorn gracefully, and the
    workers and the master drain what is left at exit.  eventlet's worker runs
    from a virtualenv of its own (gunicorn 26 removed it): see tests/system/eventlet_env.py.
    """
    python = _gunicorn_python(request, worker)
    requests_total, upload_size = 200, 10
    proc, port, log_text = _start_gunicorn(
        collector, tmp_path, worker, preload, workers, python,
        FORKAPP_UPLOAD_INTERVAL="60", FORKAPP_UPLOAD_SIZE=str(upload_size),
        FORKAPP_LOAD_EVENT="1" if load_event else "0",
    )  # fmt: skip
    try:
        ping = _first_ping(proc, port, log_text)
        # with --preload the master imported the app, else each worker did
        assert ping["master"] == (proc.pid if preload else ping["pid"]) and ping["pid"] != proc.pid

        numbers = list(range(requests_total))
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(_track_request, [port] * requests_total, numbers))
        assert all(a["ok"] for a in answers)
        per_worker: Dict[int, int] = {}
        for a in answers:
            per_worker[a["pid"]] = per_worker.get(a["pid"], 0) + 1
        assert proc.pid not in per_worker
        # Sent while serving: each worker's full batches (its own app-loaded event counts without --preload).
        own = 1 if load_event and not preload else 0
        live = sum((k + own) // upload_size * upload_size for k in per_worker.values())
        assert collector.wait_for(live, 10), (live, collector.stats(), log_text())

        # A worker may still be booting (the 4th gevent one often is): it would miss the SIGTERM.
        _workers_ready(tmp_path, workers, log_text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_text()
    finally:
        _kill_group(proc)
    assert "Traceback" not in log_text(), log_text()

    loads = (1 if preload else workers) if load_event else 0
    assert collector.wait_for(requests_total + loads, 10), collector.stats()
    stats = collector.stats()
    assert stats["duplicates"] == 0, stats
    assert stats["messages"] == stats["unique"] == requests_total + loads, stats
    loaded = {m["properties"]["pid"] for m in collector.messages if m["event"] == "app-loaded"}
    if load_event and preload:
        assert loaded == {proc.pid}
    elif load_event:
        assert len(loaded) == workers and set(per_worker) <= loaded and proc.pid not in loaded
    seen = sorted(m["properties"]["n"] for m in collector.messages if m["event"] == "request")
    assert seen == numbers
    assert {m["properties"]["pid"] for m in collector.messages if m["event"] == "request"} == set(per_worker)


@pytest.mark.parametrize("worker", [pytest.param(w, marks=_timeout(w, 60)) for w in ("sync", "gevent")])
def test_gunicorn_worker_still_booting_after_the_requests_delivers_its_load_event(request, collector, tmp_path, worker):
    """gunicorn -w 2 without --preload, the second worker held in ``post_fork`` until the requests are served.

    Each worker tracks ``app-loaded`` at import.  The held worker is released,
    SIGTERM waits until it has its own signal handlers (a SIGTERM before that
    is lost: the master then kills it after ``--graceful-timeout``, and its
    event with it), and both workers deliver their events at exit.
    """
    python = _gunicorn_python(request, worker)
    gate = tmp_path / "boot-gate"
    proc, port, log_text = _start_gunicorn(
        collector, tmp_path, worker, False, 2, python, FORKAPP_UPLOAD_INTERVAL="60", FORKAPP_HOLD_LAST_WORKER=str(gate)
    )
    try:
        first = _first_ping(proc, port, log_text)
        answers = [_track_request(port, n) for n in range(10)]
        assert {a["pid"] for a in answers} == {first["pid"]}  # the other worker is still held
        assert len(list((tmp_path / "ready").glob("ready-*"))) == 1
        gate.touch()
        _workers_ready(tmp_path, 2, log_text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_text()
    finally:
        _kill_group(proc)
    assert "Traceback" not in log_text(), log_text()
    assert collector.wait_for(12, 10), (collector.stats(), log_text())
    stats = collector.stats()
    assert stats["messages"] == stats["unique"] == 12, stats  # each once
    loaded = {m["properties"]["pid"] for m in collector.messages if m["event"] == "app-loaded"}
    assert len(loaded) == 2 and first["pid"] in loaded and proc.pid not in loaded, (loaded, log_text())
    assert sorted(m["properties"]["n"] for m in collector.messages if m["event"] == "request") == list(range(10))


class _GateServer:
    """A loopback batch endpoint that holds every answer until :attr:`gate` is set (then 200 ``{}``)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.waiting = 0
        self.received: List[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.waiting += 1
                outer.gate.wait(30)
                outer.received.append(len(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("worker", [pytest.param(w, marks=_timeout(w, 60)) for w in ("gevent", "eventlet")])
def test_flush_inside_a_green_worker_does_not_block_the_hub(request, tmp_path, worker):
    """gunicorn -k gevent or eventlet, -w 1: while a request waits in flush() for the server's answer, others are served.

    The endpoint holds its answer until the test has had 20 /ping answers from
    the same (only) worker; a flush that blocked the hub would hold those
    pings up until the flush returned, and they would time out.
    """
    python = _gunicorn_python(request, worker)
    gate = _GateServer()
    proc, port, log_text = _start_gunicorn(
        gate, tmp_path, worker, True, 1, python, FORKAPP_UPLOAD_INTERVAL="60", FORKAPP_LOAD_EVENT="0"
    )
    try:
        _first_ping(proc, port, log_text)
        for n in range(5):
            assert _track_request(port, n)["ok"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            flushed = pool.submit(_get, port, "/flush", 40)
            assert wait_until(lambda: gate.waiting == 1, timeout=10)  # flush() sent the batch
            pings = [_get(port, "/ping", 5) for _ in range(20)]  # served while flush() waits
            assert not flushed.done() and not gate.received
            assert len({p["pid"] for p in pings}) == 1
            gate.gate.set()
            answer = flushed.result(timeout=40)
        assert answer["ok"] == 0  # nothing pending when flush returned
        assert len(gate.received) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_text()
    finally:
        _kill_group(proc)
        gate.close()
    assert "Traceback" not in log_text(), log_text()


@pytest.mark.parametrize(
    "worker, preload",
    [pytest.param(w, p, id=f"{w}-{'' if p else 'no-'}preload", marks=_timeout(w, 90))
     for w in ("gevent", "eventlet") for p in (False, True)],
)  # fmt: skip
def test_gunicorn_green_worker_that_tracks_in_post_fork_delivers_everything_once(
    request, collector, tmp_path, worker, preload
):
    """gunicorn -k gevent or eventlet, -w 2, each worker tracking ``post-fork`` in gunicorn's ``post_fork`` hook.

    The hook runs before the worker class sets up its event loop: eventlet's
    worker then makes a new hub (a green thread started in the hook would
    wait on the old one forever), gevent's patches ``threading`` (a real
    thread and real locks made in the hook).  The client notices at its next
    call and restarts its sender on the loop now running, keeping what was
    queued.  A ``flush(timeout=5)`` in a request returns within its timeout
    with nothing pending, SIGTERM drains, and every event arrives once.
    """
    python = _gunicorn_python(request, worker)
    workers, requests_total, flush_timeout = 2, 40, 5.0
    proc, port, log_text = _start_gunicorn(
        collector, tmp_path, worker, preload, workers, python,
        FORKAPP_UPLOAD_INTERVAL="60", FORKAPP_UPLOAD_SIZE="10", FORKAPP_LOAD_EVENT="0",
        FORKAPP_TRACK_IN_POST_FORK="1",
    )  # fmt: skip
    try:
        _first_ping(proc, port, log_text)
        _workers_ready(tmp_path, workers, log_text)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(_track_request, [port] * requests_total, range(requests_total)))
        assert all(a["ok"] for a in answers)
        serving = {a["pid"] for a in answers}

        # A flush in a request: within its timeout, nothing pending.  Each worker answers at least one.
        flushed: Dict[int, Any] = {}
        deadline = time.monotonic() + 60
        while set(flushed) != serving and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answer = _get(port, f"/flush?timeout={flush_timeout}", timeout=flush_timeout + 10)
            except (OSError, http.client.HTTPException) as exc:
                pytest.fail(f"/flush did not answer within {flush_timeout + 10} s ({exc!r}):\n" + log_text())
            took = time.monotonic() - started
            assert took < flush_timeout + 2, (took, log_text())
            assert answer["ok"] == 0, (answer, log_text())
            flushed[answer["pid"]] = answer
        assert set(flushed) >= serving, (flushed, serving)
        # what the flushed workers queued (their post-fork event included) arrived before any exit
        assert collector.wait_for(requests_total + len(serving), 10), (collector.stats(), log_text())

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_text()
    finally:
        _kill_group(proc)
    assert "Traceback" not in log_text(), log_text()

    assert collector.wait_for(requests_total + workers, 10), (collector.stats(), log_text())
    stats = collector.stats()
    assert stats["duplicates"] == 0, stats
    assert stats["messages"] == stats["unique"] == requests_total + workers, stats
    post_fork = [m["properties"]["pid"] for m in collector.messages if m["event"] == "post-fork"]
    assert len(post_fork) == len(set(post_fork)) == workers and proc.pid not in post_fork, post_fork
    assert sorted(m["properties"]["n"] for m in collector.messages if m["event"] == "request") == list(
        range(requests_total)
    )


@pytest.mark.parametrize(
    "worker",
    [pytest.param("gevent", marks=[_timeout("gevent", 60)]),
     pytest.param("eventlet", marks=_timeout("eventlet", 60))],
)  # fmt: skip
def test_gunicorn_green_worker_that_only_tracks_in_post_fork_delivers_at_sigterm(request, collector, tmp_path, worker):
    """gunicorn -k gevent or eventlet, -w 1: the worker tracks in ``post_fork`` and makes no other call.

    With eventlet, the hub the client's consumer was started on is replaced
    and no later call notices: the exit drain at ``SIGTERM`` delivers the
    event from the hub then running.  With gevent, the exit drain's first
    connection needs gevent's resolver, whose thread pool module the client
    loaded ahead (importing it at exit fails).
    """
    python = _gunicorn_python(request, worker)
    proc, port, log_text = _start_gunicorn(
        collector, tmp_path, worker, False, 1, python,
        FORKAPP_UPLOAD_INTERVAL="60", FORKAPP_LOAD_EVENT="0", FORKAPP_TRACK_IN_POST_FORK="1",
    )  # fmt: skip
    try:
        ping = _first_ping(proc, port, log_text)
        _workers_ready(tmp_path, 1, log_text)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_text()
        assert time.monotonic() - started < 8, log_text()  # the drain did not wait for a consumer that never runs
    finally:
        _kill_group(proc)
    assert "Traceback" not in log_text(), log_text()
    assert collector.wait_for(1, 10), (collector.stats(), log_text())
    stats = collector.stats()
    assert stats["messages"] == stats["unique"] == 1, stats
    assert [m["properties"]["pid"] for m in collector.messages if m["event"] == "post-fork"] == [ping["pid"]]

"""Fork safety with real forks: os.fork(), multiprocessing (fork start method) and gunicorn --preload.

A forked child gets its own queue, consumer threads, locks, HTTP session and
counters (``os.register_at_fork``; a pid check is the fallback).  What the
parent had queued at the fork is the parent's to deliver; what the child
queues is the child's.  Every test counts at a real collector on 127.0.0.1
(in this process) that every event arrived exactly once, by ``messageId``.

A child forked from the pytest process always ends with ``os._exit()`` (see
:func:`_fork_call`); the normal-exit path (``sys.exit`` and the atexit
drain) is tested in a fresh interpreter started with ``subprocess``.
"""

from __future__ import annotations

import concurrent.futures
import http.client
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
from analytics import client as client_module

from .conftest import WRITE_KEY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
        assert len(client._queue) == 40 and client._consumer.alive_threads() == 1
    else:
        # small batches, a slow server: at the fork one batch is in flight and the rest are queued
        collector.delay = 0.3
        client = make_client(upload_size=10, upload_interval=0.01)
        pre = _track_many(client.track, "parent-pre", 40)
        _poll(lambda: client._consumer.in_flight() > 0, 5, "a batch in flight")
        assert len(client._queue) > 0
    parent_pid = os.getpid()

    def child():
        assert client._pid == os.getpid() != parent_pid
        fresh = client.stats()
        ids = _track_many(client.track, "child", 25)
        pending = client.flush(timeout=15)
        return {"ids": ids, "fresh": fresh, "pending": pending, "stats": client.stats()}

    got = _fork_call(child)
    assert got["fresh"]["accepted"] == 0 and got["fresh"]["pending"] == 0  # the parent's queue stayed behind
    assert got["pending"] == 0
    assert got["stats"]["accepted"] == got["stats"]["delivered"] == 25
    assert client._pid == parent_pid
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
    _poll(lambda: client._consumer.in_flight() > 0, 5, "a batch in flight")
    assert analytics.default_client is None
    # in the order the library takes them: consumer, then queue; stats and the facade's lock alone
    locks = [client._consumer._lock, client._queue._lock, client._stats._lock, client_module._process_lock(analytics._locks)]
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
    assert len(shared._queue) == 20

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


# --- the pid check, when a fork bypasses os.register_at_fork -------------------------


@pytest.mark.timeout(30)
def test_pid_check_keeps_inherited_messages_at_the_next_wake_up(make_client, collector, caplog):
    """Simulated: the pid changes without the hook.  By the next wake-up point (the
    queue reaching upload_size) at the latest, the client rebuilds itself and keeps
    what was queued: nothing is lost."""
    client = make_client(upload_size=10, upload_interval=60)
    old_consumer, old_queue = client._consumer, client._queue
    ids = _track_many(client.track, "before", 1)
    # Let the (old) consumer thread park on its 60 s interval wait, so that only the rebuilt
    # engine can send: in a real fork that bypasses the hook, the old thread is not in the child.
    _poll(lambda: len(old_consumer._work._waiters) == 1, 5, "the consumer thread to wait")
    ids += _track_many(client.track, "before", 4)
    client._pid = os.getpid() + 100000  # "this process is not the one that built the engine"
    with caplog.at_level(logging.WARNING, logger="customerio.analytics"):
        ids += _track_many(client.track, "after", 4)  # queue at 6..9: no wake-up point yet
        ids += _track_many(client.track, "after", 1, last=True)  # the 10th: a wake-up point
    try:
        assert client._consumer is not old_consumer and client._queue is not old_queue
        assert client._pid == os.getpid()
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
    old_consumer, old_queue = client._consumer, client._queue
    ids = _track_many(client.track, "before", 7)
    client._pid = os.getpid() + 100000
    try:
        assert client.stats()["queued"] == 7  # rebuilt, inherited messages kept
        assert client._consumer is not old_consumer
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
        assert client._pid == parent_pid  # the hook did not run
        ids = _track_many(client.track, "child", 8)  # queue at 13..20: no wake-up point
        pending = client.flush(timeout=10)  # the pid check: rebuild, keep all 20, send
        return {"ids": ids, "pending": pending, "pid_fixed": client._pid == os.getpid(), "stats": client.stats()}

    client_module._live_clients.discard(client)
    try:
        got = _fork_call(child)
    finally:
        client_module._live_clients.add(client)
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


# --- gunicorn --preload ----------------------------------------------------------------


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


def _send_requests(port: int, numbers: List[int]) -> List[Dict[str, Any]]:
    """GET /track?n=N for each number over one keep-alive connection (re-opened when the server closes it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = []
    try:
        for n in numbers:
            conn.request("GET", f"/track?n={n}")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (n, resp.status, body)
            answers.append(json.loads(body))
            if resp.will_close:
                conn.close()
    finally:
        conn.close()
    return answers


def _gunicorn_has_control_socket() -> bool:
    """Whether this gunicorn has the --no-control-socket option (the releases for Python 3.9 do not)."""
    out = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True, timeout=30)
    return "--no-control-socket" in out.stdout


@pytest.mark.timeout(45)
@pytest.mark.parametrize(
    "worker_args", [["-k", "sync"], ["-k", "gthread", "--threads", "4"]], ids=["sync", "gthread"]
)
def test_gunicorn_preload_delivers_every_request_event_once(collector, tmp_path, worker_args):
    """gunicorn --preload -w 2: the master's app-loaded event once, each request's event once.

    The app tracks app-loaded at import, in the master, and it is still queued
    when the workers are forked; SIGTERM stops gunicorn gracefully, so the
    workers and the master leave normally and drain at exit.
    """
    requests_total = 200
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN")}
    env.update(
        PYTHONPATH=ROOT,
        FORKAPP_WRITE_KEY=WRITE_KEY,
        FORKAPP_HOST=collector.url,
        FORKAPP_UPLOAD_INTERVAL="2",
    )
    cmd = [
        sys.executable, "-m", "gunicorn", "tests.forkapp.app:application",
        "--preload", "-w", "2", *worker_args,
        "--bind", f"fd://{fd}",
        "--graceful-timeout", "10", "--timeout", "10",
        "--worker-tmp-dir", str(tmp_path),
        "--log-level", "info",
    ]  # fmt: skip
    if _gunicorn_has_control_socket():
        cmd.append("--no-control-socket")  # gunicorn 24+ (Python 3.10+) opens one by default
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True
        )
    listener.close()  # gunicorn has its own copy

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 20
        while True:  # the socket already listens: wait until a worker answers
            assert proc.poll() is None, "gunicorn exited early:\n" + log_text()
            try:
                ping = _get(port, "/ping", timeout=1)
                break
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    pytest.fail("gunicorn did not answer within 20 s:\n" + log_text())
        assert ping["master"] == proc.pid != ping["pid"]

        numbers = list(range(requests_total))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            parts = pool.map(_send_requests, [port] * 8, [numbers[i::8] for i in range(8)])
            answers = [answer for part in parts for answer in part]
        assert len(answers) == requests_total and all(a["ok"] for a in answers)
        worker_pids = {a["pid"] for a in answers}
        assert proc.pid not in worker_pids

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the gunicorn we started
            proc.wait(5)
    assert "Traceback" not in log_text(), log_text()

    assert collector.wait_for(requests_total + 1, 10), collector.stats()
    stats = collector.stats()
    assert stats["duplicates"] == 0, stats
    assert stats["messages"] == stats["unique"] == requests_total + 1, stats
    loaded = [m for m in collector.messages if m["event"] == "app-loaded"]
    assert len(loaded) == 1 and loaded[0]["properties"]["pid"] == proc.pid
    seen = sorted(m["properties"]["n"] for m in collector.messages if m["event"] == "request")
    assert seen == numbers
    assert {m["properties"]["pid"] for m in collector.messages if m["event"] == "request"} == worker_pids

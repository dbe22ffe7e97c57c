"""The local collector against hostile clients and pages: real HTTP on 127.0.0.1, raw sockets for bad requests.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_collector_hostile.py``."""

from __future__ import annotations

import gc
import http.client
import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

import analytics.collector
from analytics.collector import Collector
from ..integration.test_collector_hostile import TIMEOUT, AUTH, batch, request  # shared with the tests there


def _in_child(fn: Callable[[], None], timeout: float = 10.0) -> Optional[int]:
    """Run ``fn`` in a forked child that leaves with os._exit; its exit code, or None if it was still
    running after ``timeout`` seconds (then it is killed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_stop_in_a_forked_child_returns_and_leaves_the_parent_serving(tmp_path: Path) -> None:
    """stop() (and the store's finalizer) in a forked child return at once; the parent's server, its
    kept-alive connections and its database go on working."""
    with Collector(db_path=str(tmp_path / "c.db")) as c:
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=TIMEOUT)
        conn.request("POST", "/v1/batch", batch("m-0"), {"Authorization": AUTH})
        assert conn.getresponse().read() == b'{"success":true}'

        def child() -> None:
            c.stop()
            c.stop()
            gc.collect()

        assert _in_child(child) == 0
        conn.request("POST", "/v1/batch", batch("m-1"), {"Authorization": AUTH})  # the same connection
        assert conn.getresponse().status == 200
        conn.close()
        assert request(c, "POST", "/v1/batch", batch("m-2"), {"Authorization": AUTH})[0] == 200
        assert [m["messageId"] for m in c.messages] == ["m-0", "m-1", "m-2"]


def test_the_command_takes_allow_host_and_makes_a_private_database(tmp_path: Path) -> None:
    """`python -m analytics.collector --allow-host NAME` answers Host NAME (421 for others), creates its
    database 0600 under umask 022, and refuses a bad NAME with exit status 2."""
    root = Path(analytics.collector.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    db = tmp_path / "cli.db"
    command = [sys.executable, "-m", "analytics.collector", "--db", str(db), "--allow-host", "collector.test"]
    old = os.umask(0o022)
    try:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.umask(old)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the command printed nothing"
        url = proc.stdout.readline().decode().split()[-1]
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        for host, expected in ((f"collector.test:{port}", 200), ("other.test", 421)):
            conn.request("GET", "/_collector/stats", headers={"Host": host})
            response = conn.getresponse()
            response.read()
            assert response.status == expected, host
        conn.close()
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    bad = subprocess.run(command[:-1] + ["bad name", "--db", ":memory:"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "allowed_hosts" in bad.stderr

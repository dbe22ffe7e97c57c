"""uWSGI without Python threads: detected at client creation, warned about once, and delivery keeps up.

Against a real uWSGI (2.0.26, the last release that leaves threads off by
default) serving a WSGI app that tracks one event per request, and the real
collector on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from analytics.collector import Collector
from analytics.engine.hosts import uwsgi_threads_off

from ..conftest import WRITE_KEY, checkout_env, wait_until
from ..redis_server import free_port

UWSGI = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")

APP = textwrap.dedent(
    """
    import os
    from customerio import analytics

    analytics.write_key = os.environ["CDP_TEST_WRITE_KEY"]
    analytics.host = os.environ["CDP_TEST_HOST"]

    def application(environ, start_response):
        analytics.track("u", "request", {"path": environ["PATH_INFO"]})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    """
)


@pytest.mark.parametrize(
    "opt, version, off",
    [
        ({}, (2, 0, 26), True),
        ({"enable-threads": True}, (2, 0, 26), False),
        ({"enable-threads": b"true"}, (2, 0, 26), False),  # from an ini file
        ({"enable-threads": b"false"}, (2, 0, 26), True),
        ({"threads": b"4"}, (2, 0, 26), False),
        ({"threads": b"1"}, (2, 0, 26), True),
        ({"gevent": b"100"}, (2, 0, 26), False),
        ({}, (2, 0, 27), False),
        ({}, (2, 0, 28, 0, b""), False),
    ],
)
def test_which_uwsgi_configurations_stall_threads(opt, version, off):
    """Threads are off before 2.0.27 unless enable-threads is on or several threads are asked for."""
    assert uwsgi_threads_off(opt, version) is off


@pytest.fixture
def uwsgi_app(tmp_path: Path, collector: Collector) -> Iterator:
    if UWSGI is None:
        pytest.skip("uwsgi is not installed (the test extra installs it)")
    (tmp_path / "app.py").write_text(APP)
    started: List[Tuple[subprocess.Popen, Path]] = []

    def start(*flags: str) -> Tuple[str, subprocess.Popen, Path]:
        port = free_port()
        log = tmp_path / f"uwsgi-{len(started)}.log"
        env = dict(checkout_env(), CDP_TEST_HOST=collector.url, CDP_TEST_WRITE_KEY=WRITE_KEY)
        proc = subprocess.Popen(
            [UWSGI, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(tmp_path / "app.py"),
             "--master", "--processes", "1", "--chdir", str(tmp_path), "--logto", str(log), *flags],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started.append((proc, log))
        url = f"http://127.0.0.1:{port}/"
        assert wait_until(lambda: _answers(url), timeout=20), log.read_text()
        return url, proc, log

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # uWSGI's shutdown (SIGTERM reloads)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _get(url: str, n: int) -> None:
    for i in range(n):
        with urllib.request.urlopen(f"{url}{i}", timeout=10) as r:
            assert r.read() == b"ok"


def _requests_seen(collector: Collector) -> int:
    return sum(1 for m in collector.messages if m.get("event") == "request")


def test_without_threads_events_arrive_while_the_worker_runs(uwsgi_app, collector):
    """uWSGI 2.0.26 without --enable-threads: a loud warning once, and events do not wait for the worker's stop.

    Before, 111 of 200 arrived and the rest only when the worker stopped.  Now a call
    that completes a batch (upload_size) waits for its delivery, and so does the first
    call after upload_interval once messages wait; the last ones wait for the next call
    or the worker's graceful stop.
    """
    url, proc, log = uwsgi_app()
    _get(url, 250)
    # 251 requests with the readiness probe: two full batches went out with the calls that completed them
    assert wait_until(lambda: _requests_seen(collector) >= 200, timeout=10), _requests_seen(collector)
    time.sleep(0.6)  # upload_interval (0.5 s) passes: what the next call looks at
    _get(url, 1)
    # every event from before that call has arrived, while the worker is still serving
    assert wait_until(lambda: _requests_seen(collector) >= 251, timeout=10), _requests_seen(collector)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    assert _requests_seen(collector) == 252  # the last one at the graceful stop, none twice
    text = log.read_text()
    assert text.count("runs without Python threads") == 1, text


def test_with_enable_threads_no_warning_and_delivery_runs_between_requests(uwsgi_app, collector):
    """With --enable-threads the delivery threads run on their own: no warning, every event arrives."""
    url, proc, log = uwsgi_app("--enable-threads")
    _get(url, 150)
    assert wait_until(lambda: _requests_seen(collector) == 151, timeout=10), _requests_seen(collector)
    assert proc.poll() is None
    assert "runs without Python threads" not in log.read_text()


def test_no_warning_outside_uwsgi(make_client, caplog):
    """A client outside uWSGI says nothing about threads."""
    make_client().track("u", "e")
    assert "without Python threads" not in caplog.text

"""Lifecycle: flush, shutdown, exit drain, send=False, sync_mode, threads, the facade's settings, logging.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_lifecycle.py``."""

from __future__ import annotations
import os
import subprocess
import sys
import textwrap

from ..conftest import WRITE_KEY


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_exit_drains_the_queue_without_flush(collector):
    """A script that returns without flush() still delivers everything at interpreter exit."""
    proc = _run_script(
        f"""
        from customerio import analytics
        analytics.write_key = {WRITE_KEY!r}
        analytics.host = {collector.url!r}
        analytics.upload_interval = 60
        for i in range(1500):
            analytics.track("u%d" % i, "Exited", {{"i": i}})
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert len(collector.unique_ids) == 1500


def test_exit_drain_is_bounded_by_exit_timeout(collector):
    """With the server failing, exit waits at most about exit_timeout and reports what it dropped."""
    collector.fail_next(100000, status=503)
    proc = _run_script(
        f"""
        import analytics
        client = analytics.Client({WRITE_KEY!r}, host={collector.url!r}, exit_timeout=0.5,
                                  on_error=lambda e, items: print("lost", e.reason, len(items), flush=True))
        for i in range(20):
            client.track("u%d" % i, "E")
        """,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lost = [line.split() for line in proc.stdout.splitlines() if line.startswith("lost")]
    assert {reason for _, reason, _ in lost} == {"shutdown"}
    assert sum(int(n) for _, _, n in lost) == 20


def test_debug_shows_the_log_when_the_app_configured_no_logging():
    """analytics.debug = True in a script with no logging set up prints the debug lines on stderr
    (as Segment's client does), and stops printing once debug is off again."""
    result = _run_script((
        "import analytics\n"
        "analytics.send = False\n"
        "analytics.debug = True\n"
        "analytics.track('u1', 'Shown')\n"
        "analytics.debug = False\n"
        "analytics.shutdown()\n"
        "import logging\n"
        "assert logging.getLogger('customerio').handlers == [] and logging.getLogger().handlers == []\n"
    ))
    assert result.returncode == 0, result.stderr
    assert "DEBUG customerio.analytics: queueing track" in result.stderr


def test_debug_only_sets_the_level_when_the_app_configured_logging():
    """With logging configured by the app, debug adds no handler: each line is printed once, by the app's."""
    result = _run_script((
        "import logging\n"
        "logging.basicConfig(format='APP %(name)s %(message)s')\n"
        "import analytics\n"
        "analytics.send = False\n"
        "analytics.debug = True\n"
        "analytics.track('u1', 'Once')\n"
        "assert logging.getLogger('customerio').handlers == []\n"
        "analytics.shutdown()\n"
    ))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("queueing track") == 1 and "APP customerio.analytics queueing track" in result.stderr

"""The local collector as a command: started, serving and stopped in its own process.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_collector.py``."""

from __future__ import annotations
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

import analytics.collector
from ..integration.test_collector import KEY, TIMEOUT, track, body  # shared with the tests there


def _read_line(stream: Any, timeout: float) -> str:
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_url_serves_and_exits_on_signal(tmp_path: Path, signum: int) -> None:
    """python -m analytics.collector prints one 'listening on URL' line, serves, and exits 0 on a signal."""
    root = Path(analytics.collector.__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the default database goes there, never into the cwd
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics.collector", "--write-key", KEY],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = _read_line(proc.stdout, timeout=20)
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.stderr and proc.poll())
        url = line.split()[-1]
        r = requests.post(url + "/v1/batch", data=body([track()]), auth=(KEY, ""), timeout=TIMEOUT)
        assert r.status_code == 200
        assert requests.post(url + "/v1/batch", data=body([track()]), auth=("other", ""),
                             timeout=TIMEOUT).status_code == 401
        assert requests.get(url + "/_collector/stats", timeout=TIMEOUT).json()["messages"] == 1
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate(timeout=5)
        db = tmp_path / "data" / "cdp-relay" / "collector.db"
        # exactly one line on stdout; on stderr only where the records are kept, no request logging
        assert out == "" and err == f"records: {db} (kept across restarts; --reset empties it)\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

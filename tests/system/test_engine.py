"""The engine against a server that is far away: requests in flight at once, batches that grow,

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_engine.py``."""

from __future__ import annotations

import pytest

from ..conftest import checkout_env


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_the_readme_burst_loses_nothing_against_the_collector_command(tmp_path, delay):
    """README's example (a 2,000-message queue, 20,000 calls in a tight loop) against
    `cdp-relay collector` in its own process, answering at once or 100 ms late: none dropped."""
    import json as _json
    import signal
    import subprocess
    import sys
    import urllib.request

    from analytics import Client

    proc = subprocess.Popen([sys.executable, "-m", "analytics", "collector", "--db", ":memory:", "--quiet"],
                            cwd=tmp_path, env=checkout_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
        url = line.split()[-1]
        faults = urllib.request.Request(url + "/_collector/faults", data=_json.dumps({"delay": delay}).encode(),
                                        headers={"Content-Type": "application/json"})
        urllib.request.urlopen(faults, timeout=5).read()
        client = Client("YOUR_WRITE_KEY", host=url, max_queue_size=2000)
        for n in range(20000):
            client.track("f4ca124298", "tick", {"n": n})
        assert client.flush(timeout=60) == 0
        stats = client.stats()
        client.shutdown()
        assert (stats["dropped"]["queue_full"], stats["delivered"]) == (0, 20000)
        with urllib.request.urlopen(url + "/_collector/stats", timeout=5) as answer:
            assert _json.load(answer)["unique"] == 20000
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

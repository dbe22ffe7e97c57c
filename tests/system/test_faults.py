"""The fault suite: thousands of events through a misbehaving server, and every message accounted for.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_faults.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from ..conftest import WRITE_KEY
from ..integration.test_faults import UnreportedLoss, unreachable  # shared with the tests there


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


EXIT_TIMEOUT = 1.0


EXIT_MARGIN = 1.0


EXIT_SCRIPT = """
import atexit, json, time, weakref

def final_stats():  # registered before the client exists, so it runs after the client's exit hook
    s = client.stats()
    print(json.dumps({{"final": True, "reported": len(reported), "pending": s["pending"],
                      "delivered": s["delivered"], "accepted": s["accepted"],
                      "lost": sum(s["failed"].values()) + sum(s["dropped"].values())}}), flush=True)

hook_order_ok = not weakref.finalize._registered_with_atexit
atexit.register(final_stats)

import analytics

reported = set()

def on_error(error, items):
    reported.update(m["messageId"] for m in items)
    print(json.dumps({{"error": type(error).__name__, "reason": error.reason, "n": len(items)}}), flush=True)

client = analytics.Client({key!r}, host={host!r}, exit_timeout={exit_timeout!r}, on_error=on_error)
for i in range({n}):
    client.track("user-%d" % (i % 1000), "Product Purchased", {{"seq": i}})
deadline = time.monotonic() + 10
while client.stats()["requests"] == 0 and time.monotonic() < deadline:
    time.sleep(0.005)  # until the first attempt has started: exit finds a batch in the middle of it
print(json.dumps({{"accepted": client.stats()["accepted"], "requests": client.stats()["requests"],
                  "hook_order_ok": hook_order_ok, "main_returns": time.time()}}), flush=True)
"""


@pytest.mark.parametrize(
    "unreachable",
    [
        "closed",
        "blackhole",
    ],
    indirect=True,
)
def test_unreachable_server_at_exit(unreachable):
    """A script that returns from main without flush() while the server cannot be reached exits
    within exit_timeout (+ margin) and hands every accepted message to on_error, once."""
    n = 1000
    script = EXIT_SCRIPT.format(key=WRITE_KEY, host=unreachable, exit_timeout=EXIT_TIMEOUT, n=n)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    exited = time.time()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = next(line for line in lines if "main_returns" in line)
    reports = [line for line in lines if "reason" in line]
    final = next(line for line in lines if "final" in line)
    assert summary["accepted"] == n and summary["requests"] >= 1 and summary["hook_order_ok"]

    exit_took = exited - summary["main_returns"]
    assert exit_took <= EXIT_TIMEOUT + EXIT_MARGIN, f"exit took {exit_took:.2f} s"

    expected_class = {"shutdown": "ShutdownError", "retries_exhausted": "TransportError"}
    for r in reports:
        assert expected_class.get(r["reason"]) == r["error"], r
    assert final["accepted"] == n and final["delivered"] == 0
    assert final["accepted"] == final["delivered"] + final["lost"] + final["pending"]  # stats sum up
    assert sum(r["n"] for r in reports) == final["reported"] == final["lost"]  # nobody reported twice
    if final["reported"] != n:
        raise UnreportedLoss(
            f"{n - final['reported']} of {n} messages neither delivered nor reported at exit "
            f"(still counted pending: {final['pending']})"
        )
    assert final["pending"] == 0

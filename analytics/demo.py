"""``make demo``: a realistic workload through the module facade into a local collector.

Starts ``python -m analytics.collector`` in its own process, injects a few
faults (a 500, a 429 with Retry-After, a dropped connection), sends a few
thousand events of all six types from several threads with gzip on, flushes,
and prints what the collector received.  Exits non-zero if a message was lost.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional

import analytics

WRITE_KEY = "demo-write-key"


def _control(url: str, path: str, payload: Optional[dict] = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def start_collector() -> "tuple[subprocess.Popen, str]":
    """Start the collector in its own process; return it and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics.collector", "--write-key", WRITE_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"collector did not start: {line!r}")
    return proc, line.split()[-1]


def _workload(thread_no: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    plans = ["free", "pro", "team"]
    for i in range(count):
        user = f"user-{thread_no}-{rng.randrange(200)}"
        kind = i % 10
        if kind < 5:
            analytics.track(
                user,
                "Product Purchased",
                {
                    "sku": f"SKU-{rng.randrange(1000)}",
                    "price": round(rng.uniform(1, 200), 2),
                    "qty": rng.randrange(1, 5),
                    "tags": ["demo", plans[i % 3]],
                    "shipping": {"method": "ground", "days": rng.randrange(1, 7)},
                    "coupon": None,
                },
            )
        elif kind < 7:
            analytics.page(user, "Docs", f"Page {i % 40}", {"url": f"https://example.com/docs/{i % 40}"})
        elif kind == 7:
            analytics.identify(user, {"email": f"{user}@example.com", "plan": plans[i % 3]})
        elif kind == 8:
            analytics.screen(user, "App", "Home", {"build": 42})
        elif i % 20 == 9:
            analytics.group(user, f"company-{i % 17}", {"name": f"Company {i % 17}"}, object_type_id=1)
        else:
            analytics.alias(f"anon-{thread_no}-{i}", user)


def run(threads: int = 4, per_thread: int = 1000) -> int:
    """Run the demo; returns the process exit code (0 when nothing was lost)."""
    proc, url = start_collector()
    try:
        _control(url, "/_collector/faults", {"fail_next": {"n": 1, "status": 500}})
        _control(url, "/_collector/faults", {"fail_next": {"n": 1, "status": 429, "retry_after": 1}})
        _control(url, "/_collector/faults", {"drop_next": {"n": 1}})

        failures: List[str] = []
        analytics.write_key = WRITE_KEY
        analytics.host = url
        analytics.gzip = True
        analytics.on_error = lambda error, items: failures.append(f"{len(items)} lost: {error}")

        print(f"collector: {url}  (its own process, pid {proc.pid})")
        print(f"sending {threads * per_thread} events from {threads} threads, gzip on; "
              "the collector will fail one request with 500, one with 429 + Retry-After: 1, and drop one connection")
        started = time.perf_counter()
        workers = [threading.Thread(target=_workload, args=(n, per_thread, n)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        enqueued = time.perf_counter() - started
        pending = analytics.flush(timeout=60)
        total = time.perf_counter() - started
        sdk = analytics.stats()
        got: Dict[str, Any] = _control(url, "/_collector/stats")
        analytics.shutdown()
    finally:
        proc.terminate()
        proc.wait(10)

    print()
    print(f"SDK:       {sdk['accepted']} accepted in {enqueued * 1000:.0f} ms, "
          f"{sdk['delivered']} delivered, {sdk['retries']} retries, {sdk['requests']} requests, "
          f"flush done after {total * 1000:.0f} ms, {pending} pending")
    print(f"collector: {got['messages']} messages ({got['unique']} unique, {got['duplicates']} duplicates) "
          f"in {got['accepted_batches']} batches")
    print("  by type: " + ", ".join(f"{k} {v}" for k, v in sorted(got["by_type"].items())))
    ratio = got["compressed_bytes"] / got["raw_bytes"] if got["raw_bytes"] else 0
    print(f"  bytes:   {got['raw_bytes']:,} raw, {got['compressed_bytes']:,} gzipped ({ratio:.0%})")
    print(f"  largest batch: {got['largest_batch_messages']} messages, {got['largest_batch_bytes']:,} bytes")
    refused = got.get("refusals_by_code") or {}
    print("  refused: " + (", ".join(f"{k} x{v}" for k, v in sorted(refused.items())) or "none")
          + f"; connections dropped: {got.get('dropped', 0)}")
    lost = sdk["accepted"] - got["unique"]
    if lost or failures or pending:
        print(f"LOST {lost} message(s)")
        for line in failures[:10]:
            print("  " + line)
        return 1
    print("nothing lost.")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point for ``python -m analytics demo``."""
    return run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

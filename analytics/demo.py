"""``make demo``: a realistic workload through the module facade into a local collector.

Starts ``python -m analytics.collector`` in its own process (keeping what it
receives in an SQLite file, by default in the temporary directory), injects a
few faults (a 500, a 429 with Retry-After, a dropped connection), sends a few
thousand events of all six types from several threads with gzip on, flushes,
and prints what the collector received.  Exits non-zero if a message was lost.

It ends by pointing to the collector's inspector page: with ``--serve`` the
collector keeps running (Ctrl-C stops it) so the page can be opened at once;
without it the demo stops, and prints the command that serves the same
database again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import analytics

WRITE_KEY = "demo-write-key"
#: Where the demo's collector keeps what it received (served again by the command the demo prints).
DEFAULT_DB = os.path.join(tempfile.gettempdir(), "cdp-relay-demo.db")


def _control(url: str, path: str, payload: Optional[Dict[str, Any]] = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def start_collector(db: str = ":memory:", port: int = 0) -> "Tuple[subprocess.Popen[str], str]":
    """Start the collector in its own process, on an empty database; return it and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics.collector", "--write-key", WRITE_KEY, "--db", db, "--reset",
         "--port", str(port), "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        proc.wait(10)
        raise SystemExit(f"collector did not start: {line!r} (is --db {db} writable, --port {port} free?)")
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


def run(threads: int = 4, per_thread: int = 1000, db: str = ":memory:", serve: bool = False,
        port: int = 0, serve_seconds: Optional[float] = None) -> int:
    """Run the demo; returns the process exit code (0 when nothing was lost).

    ``db`` is the collector's database; with ``serve`` the collector keeps
    running after the report until SIGINT/SIGTERM (or ``serve_seconds``).
    """
    proc, url = start_collector(db, port)
    stopped = False
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
        if not serve:
            proc.terminate()
            proc.wait(10)
            stopped = True
    finally:
        if not stopped and (not serve or sys.exc_info()[0] is not None):
            proc.terminate()
            proc.wait(10)
            stopped = True

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
    status = 0
    if lost or failures or pending:
        print(f"LOST {lost} message(s)")
        for line in failures[:10]:
            print("  " + line)
        status = 1
    else:
        print("nothing lost.")
    print()
    if serve:
        print(f"inspector: {url}/  (the collector keeps serving; Ctrl-C stops it)", flush=True)
        _serve_until_signalled(proc, serve_seconds)
    elif db != ":memory:":
        print(f"inspector: the events are kept in {db}; to browse them run")
        print(f"  python -m analytics collector --db {db} --port 8765")
        print("and open http://127.0.0.1:8765/  (or run `python -m analytics demo --serve`)")
    else:
        print("inspector: run `python -m analytics demo --serve` and open the URL it prints")
    return status


def _serve_until_signalled(proc: "subprocess.Popen[str]", seconds: Optional[float]) -> None:
    stop = threading.Event()
    saved = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stop.wait(0.2) and proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        proc.terminate()
        proc.wait(10)


EXAMPLES = f"""examples:
  python -m analytics demo                 send, report, stop (make demo runs this)
  python -m analytics demo --serve         then keep the collector running: open the inspector URL it prints
  python -m analytics demo --serve --port 8765 --events 20000

The collector's records are kept in {DEFAULT_DB} (--db) so they can be browsed afterwards.
"""


def main(argv: Optional[List[str]] = None, prog: str = "python -m analytics demo") -> int:
    """Entry point for ``python -m analytics demo``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Send a realistic workload (all six calls, several threads, gzip, injected faults) "
                    "to a local collector in its own process, and report what arrived.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--serve", action="store_true",
                        help="keep the collector (and its inspector page) running after the report until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="the collector's port (default: a free one)")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"the collector's database (default {DEFAULT_DB}; "
                                                          "':memory:' keeps nothing)")
    parser.add_argument("--events", type=int, default=4000, help="events to send (default 4000)")
    parser.add_argument("--threads", type=int, default=4, help="sending threads (default 4)")
    parser.add_argument("--serve-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.events < args.threads:
        parser.error("--threads must be at least 1 and --events at least --threads")
    return run(args.threads, args.events // args.threads, db=args.db, serve=args.serve, port=args.port,
               serve_seconds=args.serve_seconds)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

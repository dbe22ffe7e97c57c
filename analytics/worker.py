"""``python -m analytics worker``: deliver from a shared Redis queue, produce nothing.

Web processes create their client with ``queue="redis://..."`` and
``consume=False``; a pool of workers (any number of processes, on any host)
runs::

    CDP_WRITE_KEY=... python -m analytics worker --queue redis://127.0.0.1:6379/0

Each worker reads the write key's stream through the consumer group, posts
batches with the usual limits and retries, and acknowledges only what the
server took.  SIGTERM or SIGINT stops it cleanly: it reads no more, finishes
the batches it holds (at most ``--exit-timeout`` seconds), and leaves the
rest in Redis for the other workers.  A worker killed outright loses
nothing either: what it held is taken over by another after
``--claim-after`` seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any, List, Optional

__all__ = ["main", "run", "EXAMPLES"]

EXAMPLES = """examples:
  CDP_WRITE_KEY=wk python -m analytics worker --queue redis://127.0.0.1:6379/0
  python -m analytics worker --queue redis://redis.internal:6379/2 --write-key wk --threads 2
  python -m analytics worker --queue redis://127.0.0.1:6379/0 --host https://cdp-eu.customer.io

environment: CDP_WRITE_KEY (write key), CDP_HOST (endpoint), CDP_QUEUE (Redis URL)
"""

log = logging.getLogger("customerio.analytics")


def run(client: Any, stop: threading.Event, exit_timeout: Optional[float], report_every: float = 0.0) -> int:
    """Deliver until ``stop`` is set, then shut ``client`` down within ``exit_timeout``.

    Returns how many messages were reported lost at the shutdown (messages
    a worker holds are not lost at its shutdown: they stay in Redis).
    """
    client._consumer.ensure_started()
    while not stop.wait(report_every or 3600.0):
        if report_every:
            s = client.stats()
            log.info("worker: delivered %d, failed %d, backlog %s", s["delivered"], sum(s["failed"].values()),
                     s["redis"]["length"])
    client._queue.stop_reading()
    dropped: int = client.shutdown(exit_timeout)
    return dropped


def main(argv: Optional[List[str]] = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="cdp-relay worker",
        description="Deliver messages from a shared Redis queue (web processes only produce).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--queue", default=os.environ.get("CDP_QUEUE"), help="redis:// URL (env CDP_QUEUE)")
    parser.add_argument("--write-key", default=os.environ.get("CDP_WRITE_KEY"), help="write key (env CDP_WRITE_KEY)")
    parser.add_argument("--host", default=os.environ.get("CDP_HOST"), help="endpoint (env CDP_HOST; default US)")
    parser.add_argument("--threads", type=int, default=1, help="consumer threads (default 1)")
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies")
    parser.add_argument("--claim-after", type=float, default=30.0,
                        help="seconds before entries held by a dead worker are taken over (default 30)")
    parser.add_argument("--exit-timeout", type=float, default=10.0,
                        help="seconds to finish held batches at SIGTERM (default 10)")
    parser.add_argument("--stream-prefix", default="cdp-relay", help="prefix of the stream keys")
    parser.add_argument("--report-every", type=float, default=0.0, help="log counters every N seconds")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    args = parser.parse_args(argv)
    if not args.queue:
        parser.error("--queue (or CDP_QUEUE) is required, e.g. redis://127.0.0.1:6379/0")
    if not args.write_key:
        parser.error("--write-key (or CDP_WRITE_KEY) is required")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from . import Client
    from .errors import AnalyticsError

    try:
        client = Client(
            args.write_key, host=args.host, gzip=args.gzip, thread=args.threads, queue=args.queue,
            claim_after=args.claim_after, stream_prefix=args.stream_prefix, exit_timeout=args.exit_timeout,
        )
    except AnalyticsError as exc:
        print(f"cdp-relay worker: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"cdp-relay worker: delivering from {client._queue.where} (pid {os.getpid()})", file=sys.stderr, flush=True)
    lost = run(client, stop, args.exit_timeout, args.report_every)
    s = client.stats()
    print(f"cdp-relay worker: stopped; delivered {s['delivered']}, failed {sum(s['failed'].values())}, "
          f"lost {lost}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

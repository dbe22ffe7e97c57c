"""The loop of ``cdp-relay worker`` (see :mod:`analytics.worker`): deliver from a shared Redis queue
until SIGTERM or SIGINT, then stop cleanly.

Here rather than in :mod:`analytics.worker`, which runs the command line (``python -m
analytics.worker``): the command line runs this loop, and this loop needs nothing of it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Optional

__all__ = ["run", "serve", "EXAMPLES"]

log = logging.getLogger("customerio.analytics")

#: The examples of ``cdp-relay worker --help`` (and :data:`analytics.worker.EXAMPLES`).
EXAMPLES = """examples:
  CDP_WRITE_KEY=KEY cdp-relay worker --queue redis://127.0.0.1:6379/0
  cdp-relay worker --queue redis://redis.internal:6379/2 -k KEY --threads 2
  CDP_QUEUE=redis://127.0.0.1:6379/0 cdp-relay worker --host https://cdp-eu.customer.io --gzip
"""


def run(client: Any, stop: threading.Event, exit_timeout: Optional[float], report_every: float = 0.0,
        report: Optional[Callable[[str], None]] = None) -> int:
    """Deliver until ``stop`` is set, then shut ``client`` down within ``exit_timeout``.

    Every ``report_every`` seconds (0: never) the counters go to ``report``
    (default: the ``customerio.analytics`` logger at INFO).  Returns how many
    messages were reported lost at the shutdown (messages a worker holds are
    not lost at its shutdown: they stay in Redis).
    """
    say = report or log.info
    client._engine.consumer.ensure_started()  # this process's engine: a worker runs no call first
    while not stop.wait(report_every or 3600.0):
        if report_every:
            s = client.stats()
            say(f"delivered {s['delivered']}, failed {sum(s['failed'].values())}, backlog {s['redis']['length']}")
    client._engine.queue.stop_reading()
    dropped: int = client.shutdown(exit_timeout)
    return dropped


def serve(client: Any, exit_timeout: Optional[float], report_every: float = 0.0, prog: str = "cdp-relay worker") -> int:
    """Run ``client`` (made with ``queue=...``) as a worker until SIGTERM/SIGINT; returns the exit status.

    Says on stderr where it delivers from, the counters every ``report_every``
    seconds, and what it did when it stops.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    def say(text: str) -> None:
        print(f"{prog}: {text}", file=sys.stderr, flush=True)

    saved = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        say(f"delivering from {client._engine.queue.where} to {client.host} (pid {os.getpid()})")
        lost = run(client, stop, exit_timeout, report_every, say)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    s = client.stats()
    say(f"stopped; delivered {s['delivered']}, failed {sum(s['failed'].values())}, lost {lost}")
    return 0

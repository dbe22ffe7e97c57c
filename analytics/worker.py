"""``python -m analytics worker``: deliver from a shared Redis queue, produce nothing.

Web processes create their client with ``queue="redis://..."`` and
``consume=False``; a pool of workers (any number of processes, on any host)
runs::

    CDP_WRITE_KEY=... cdp-relay worker --queue redis://127.0.0.1:6379/0

Its settings are read as every ``cdp-relay`` command reads them (flags, else
the ``CDP_*`` variables: ``CDP_WRITE_KEY``, ``CDP_HOST``, ``CDP_GZIP``,
``CDP_TIMEOUT``, ``CDP_MAX_RETRIES``, ``CDP_MAX_RETRY_TIME``, and
``CDP_QUEUE`` for ``--queue``); see :mod:`analytics.cli`.

Each worker reads the write key's stream through the consumer group, posts
batches with the usual limits and retries, and acknowledges only what the
server took.  SIGTERM or SIGINT stops it cleanly: it reads no more, finishes
the batches it holds (at most ``--exit-timeout`` seconds), and leaves the
rest in Redis for the other workers.  A worker killed outright loses
nothing either: what it held is taken over by another after
``--claim-after`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, List, Optional

from .cli import _WORKER_EXAMPLES as EXAMPLES  # one text for `cdp-relay worker --help` and this module

__all__ = ["main", "run", "serve", "EXAMPLES"]

log = logging.getLogger("customerio.analytics")


def run(client: Any, stop: threading.Event, exit_timeout: Optional[float], report_every: float = 0.0,
        report: Optional[Callable[[str], None]] = None) -> int:
    """Deliver until ``stop`` is set, then shut ``client`` down within ``exit_timeout``.

    Every ``report_every`` seconds (0: never) the counters go to ``report``
    (default: the ``customerio.analytics`` logger at INFO).  Returns how many
    messages were reported lost at the shutdown (messages a worker holds are
    not lost at its shutdown: they stay in Redis).
    """
    say = report or log.info
    client._consumer.ensure_started()
    while not stop.wait(report_every or 3600.0):
        if report_every:
            s = client.stats()
            say(f"delivered {s['delivered']}, failed {sum(s['failed'].values())}, backlog {s['redis']['length']}")
    client._queue.stop_reading()
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
        say(f"delivering from {client._queue.where} to {client.host} (pid {os.getpid()})")
        lost = run(client, stop, exit_timeout, report_every, say)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    s = client.stats()
    say(f"stopped; delivered {s['delivered']}, failed {sum(s['failed'].values())}, lost {lost}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m analytics.worker ARGS`` is ``cdp-relay worker ARGS``: returns the exit status."""
    from .cli import main as cli_main

    return cli_main(["worker", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

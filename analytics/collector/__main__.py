"""``python -m analytics.collector``: serve a :class:`Collector` until SIGINT or SIGTERM.

Prints exactly one line, ``listening on http://HOST:PORT``, to stdout once it
is listening, and exits 0 when signalled (2 if it cannot listen).  Drive it over
HTTP with the ``/_collector/...`` control routes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any, List, Optional

from .server import Collector


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analytics.collector",
        description="Serve a local Customer.io Data Pipelines batch endpoint.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: a free one)")
    parser.add_argument("--write-key", action="append", dest="write_keys", metavar="KEY",
                        help="accept only this write key (repeatable; default: any key)")
    parser.add_argument("--no-keep-messages", action="store_true",
                        help="keep only counters and message ids (for long load runs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
    collector = Collector(
        host=args.host,
        port=args.port,
        write_keys=set(args.write_keys) if args.write_keys else None,
        keep_messages=not args.no_keep_messages,
    )
    return serve(collector)


def serve(collector: Collector, max_seconds: Optional[float] = None) -> int:
    """Start ``collector``, print ``listening on URL``, and serve until SIGINT/SIGTERM (or ``max_seconds``).

    Returns the exit status: 0, or 2 when the port cannot be bound.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        collector.start()
    except OSError as exc:
        print(f"cannot listen on {collector.host}:{collector.port}: {exc}", file=sys.stderr)
        return 2
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        print(f"listening on {collector.url}", flush=True)
        while not stop.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        collector.stop()
    return 0

if __name__ == "__main__":
    sys.exit(main())

"""``python -m analytics.collector`` (also ``cdp-relay collector``): serve a :class:`Collector`
until SIGINT or SIGTERM.

Prints exactly one line, ``listening on http://HOST:PORT``, to stdout once it
is listening, and exits 0 when signalled (2 if it cannot listen or cannot use
its database).  What it receives is kept in an SQLite file
(``cdp-relay-collector.db`` in the current directory unless ``--db`` says
otherwise; ``--db :memory:`` keeps nothing), so a restart shows what came
before.  The inspector page is on the same port, at ``/``.  Drive it over HTTP
with the ``/_collector/...`` control routes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any, List, Optional

from ..errors import ConfigurationError
from .server import Collector
from .storage import StoreError

#: Where ``python -m analytics.collector`` keeps what it receives unless told otherwise.
DEFAULT_DB = "cdp-relay-collector.db"

EXAMPLES = f"""examples:
  cdp-relay collector --port 8765
      serve on http://127.0.0.1:8765; open http://127.0.0.1:8765/ for the inspector page
  cdp-relay collector --port 8765 --write-key KEY
      accept only the write key KEY (401 for any other)
  cdp-relay collector --db :memory:
      keep nothing on disk (the default file is ./{DEFAULT_DB})
  cdp-relay collector --db /tmp/events.db --reset
      start from an empty database
"""


def build_parser(prog: str = "python -m analytics.collector") -> argparse.ArgumentParser:
    """The collector command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a local Customer.io Data Pipelines batch endpoint (POST /v1/batch) "
                    "with an inspector page at / on the same port.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: a free one)")
    parser.add_argument("--allow-host", action="append", dest="allowed_hosts", default=[], metavar="NAME",
                        help="also answer requests whose Host header is NAME (repeatable; localhost, "
                             "127.0.0.1, [::1] and the --host address always are)")
    parser.add_argument("--write-key", action="append", dest="write_keys", metavar="KEY",
                        help="accept only this write key (repeatable; default: any key)")
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                        help=f"SQLite file that keeps what is received across restarts "
                             f"(default ./{DEFAULT_DB}; ':memory:' keeps nothing)")
    parser.add_argument("--reset", action="store_true", help="empty the database before serving")
    parser.add_argument("--no-keep-messages", action="store_true",
                        help="keep only counters and message ids (for long load runs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # no inspector hint (the demo)
    return parser


def main(argv: Optional[List[str]] = None, prog: str = "python -m analytics.collector") -> int:
    """Parse ``argv``, serve until signalled; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be from 0 to 65535, not {args.port}", file=sys.stderr)
        return 2
    try:
        collector = Collector(
            host=args.host,
            port=args.port,
            write_keys=set(args.write_keys) if args.write_keys else None,
            keep_messages=not args.no_keep_messages,
            db_path=args.db,
            allowed_hosts=args.allowed_hosts,
        )
    except (StoreError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.reset:
        collector.reset()
    try:
        return serve(collector, hint=not args.quiet)
    finally:
        if collector.store is not None:
            collector.store.close()  # checkpoints the WAL into the file


def serve(collector: Collector, max_seconds: Optional[float] = None, hint: bool = True) -> int:
    """Start ``collector``, print ``listening on URL``, and serve until SIGINT/SIGTERM (or ``max_seconds``).

    Returns the exit status: 0, or 2 when the port cannot be bound.  When
    stderr is a terminal it also names the inspector page there.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        collector.start()
    except OSError as exc:
        print(f"error: cannot listen on {collector.host}:{collector.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        print(f"listening on {collector.url}", flush=True)
        if hint and sys.stderr.isatty():
            where = collector.db_path if collector.db_path not in (None, ":memory:") else "memory only"
            print(f"inspector: {collector.url}/  (records: {where}; Ctrl-C stops)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

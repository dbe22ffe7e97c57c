"""``python -m analytics.collector`` (also ``cdp-relay collector``): serve a :class:`Collector`
until SIGINT or SIGTERM.

Prints exactly one line, ``listening on http://HOST:PORT``, to stdout once it
is listening, and exits 0 when signalled (2 if it cannot listen or cannot use
its database), and one line on stderr naming where the records are kept
(unless ``--quiet``).  What it receives is kept in an SQLite file, by default
``collector.db`` in the user's data directory (:func:`default_db_path`; never
the current directory); ``--db PATH`` names another, ``--db :memory:`` keeps
nothing.  So a restart shows what came before.  The inspector page is on the
same port, at ``/``.  Drive it over HTTP with the ``/_collector/...`` control
routes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, List, Optional

from ..errors import ConfigurationError
from .server import Collector
from .storage import StoreError

#: The file name of the command's database in the data directory (see :func:`default_db_path`).
DB_NAME = "collector.db"
#: The file earlier versions kept in the current directory (named at start when one is there).
_OLD_DEFAULT_DB = "cdp-relay-collector.db"


def data_dir() -> str:
    """The per-user directory where the collector command keeps its database.

    ``$XDG_DATA_HOME/cdp-relay`` (``~/.local/share/cdp-relay`` when it is unset
    or not absolute) on Linux and other Unix systems,
    ``~/Library/Application Support/cdp-relay`` on macOS and
    ``%LOCALAPPDATA%\\cdp-relay`` on Windows.  Not created here.
    """
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "share")
    return os.path.join(base, "cdp-relay")


def default_db_path() -> str:
    """Where ``cdp-relay collector`` keeps what it receives unless ``--db`` says otherwise."""
    return os.path.join(data_dir(), DB_NAME)


def _make_data_dir(path: str) -> None:
    """Create the database's directory (private: 0700) when it is the default one and missing."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)

EXAMPLES = f"""examples:
  cdp-relay collector --port 8765
      serve on http://127.0.0.1:8765; open http://127.0.0.1:8765/ for the inspector page
  cdp-relay collector --port 8765 --write-key KEY
      accept only the write key KEY (401 for any other)
  cdp-relay collector --db :memory:
      keep nothing on disk (the default file is {DB_NAME} in your data directory,
      $XDG_DATA_HOME/cdp-relay or ~/.local/share/cdp-relay on Linux)
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
    parser.add_argument("--db", default=None, metavar="PATH",
                        help=f"SQLite file that keeps what is received across restarts "
                             f"(default {DB_NAME} in your data directory, here {data_dir()}; "
                             f"':memory:' keeps nothing)")
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
    db = args.db
    try:
        if db is None:
            db = default_db_path()
            _make_data_dir(db)
        collector = Collector(
            host=args.host,
            port=args.port,
            write_keys=set(args.write_keys) if args.write_keys else None,
            keep_messages=not args.no_keep_messages,
            db_path=db,
            allowed_hosts=args.allowed_hosts,
        )
    except OSError as exc:
        print(f"error: cannot create the data directory {os.path.dirname(db)}: {exc.strerror or exc}; "
              f"give --db PATH", file=sys.stderr)
        return 2
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

    Returns the exit status: 0, or 2 when the port cannot be bound.  With
    ``hint`` it also says on stderr where the records are kept and, when
    stderr is a terminal, names the inspector page.
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
        if hint:
            print(_where(collector), file=sys.stderr, flush=True)
            if sys.stderr.isatty():
                print(f"inspector: {collector.url}/  (Ctrl-C stops)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        collector.stop()
    return 0


def _where(collector: Collector) -> str:
    """The start-up line that says where the records are kept."""
    path = collector.db_path
    if path in (None, ":memory:"):
        return "records: in memory only (gone when the collector stops)"
    line = f"records: {os.path.abspath(path)} (kept across restarts; --reset empties it)"
    if os.path.abspath(path) != os.path.abspath(_OLD_DEFAULT_DB) and os.path.exists(_OLD_DEFAULT_DB):
        line += (f"\nnote: ./{_OLD_DEFAULT_DB} (from an earlier version) is not read; "
                 f"--db {_OLD_DEFAULT_DB} serves it")
    return line


if __name__ == "__main__":
    sys.exit(main())

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

import sys
from typing import List, Optional

from ._worker_loop import EXAMPLES, run, serve
from .cli import main as cli_main

__all__ = ["main", "run", "serve", "EXAMPLES"]


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m analytics.worker ARGS`` is ``cdp-relay worker ARGS``: returns the exit status."""
    return cli_main(["worker", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

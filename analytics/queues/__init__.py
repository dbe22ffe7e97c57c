"""Queues the consumer drains, behind one protocol (:class:`~analytics.queues.base.Queue`).

:class:`MemoryQueue` is the default; :class:`SQLiteQueue` is the durable spool;
:class:`~analytics.queues.redis.RedisQueue` is a stream shared by processes and
hosts.  :func:`open_queue` opens the one a client's options ask for.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from ..destinations import Destination
from ..errors import SpoolError
from ..options import Config
from .base import OnRefused, Queue, QueueBase, SharedQueue
from .memory import MemoryQueue
from .redis import RedisQueue, stream_key
from .sqlite import SQLiteQueue

__all__ = ["MemoryQueue", "SQLiteQueue", "RedisQueue", "Queue", "SharedQueue", "QueueBase",
           "open_queue", "spool_file", "stream_name"]

log = logging.getLogger("customerio.analytics")


def open_queue(config: Config, on_refused: Optional[OnRefused] = None) -> Queue:
    """The queue ``config`` asks for: a :class:`RedisQueue` (``queue="redis://..."``), a
    :class:`SQLiteQueue` (``spool_path``) or a :class:`MemoryQueue`.

    ``on_refused`` is given the messages a full Redis stream refused.  When the
    spool cannot be opened, :class:`~analytics.errors.SpoolError` is raised with
    ``spool_required``; without it the error is logged and a memory queue is
    returned with the error as its ``degraded``.  Raises
    :class:`~analytics.errors.ConfigurationError` for a bad Redis URL.
    """
    maxsize = config.max_queue_size
    if config.queue is not None:
        # Read enough at a time for batches to grow while a backlog exists (a request takes up to
        # 500 KB, about 1,600 events); an explicit upload_size caps each batch anyway.
        batch = 2 * config.upload_size if "upload_size" in config.explicit else max(2 * config.upload_size, 2000)
        redis = RedisQueue(config.queue, stream_name(config), maxsize, consume=config.consume,
                           claim_after=config.claim_after, batch=batch)
        redis.listen(on_refused=on_refused)
        return redis
    if config.spool_path is None:
        return MemoryQueue(maxsize)
    try:
        return SQLiteQueue(spool_file(os.fspath(config.spool_path), config.destination), maxsize, max_bytes=config.spool_max_bytes,
                           synchronous=config.spool_sync.upper())
    except SpoolError as exc:
        if config.spool_required:
            raise
        log.error("%s; messages are kept in memory instead (not durable)", exc)
        return MemoryQueue(maxsize, degraded=exc)


def spool_file(path: str, destination: Optional[Destination]) -> str:
    """The spool file for ``spool_path`` and ``destination``: the path itself for Data Pipelines,
    else one file per API (``events.db`` -> ``events.trackv2.db``)."""
    if destination is None:
        return path
    # one spool file per API: what it holds is already in that API's format
    root, ext = os.path.splitext(path)
    return f"{root}.{destination.name}{ext or '.db'}"


def stream_name(config: Config) -> str:
    """The Redis stream of ``config``'s API and tenant: clients of another one never read its messages."""
    destination = config.destination
    if destination is None:
        dest_name, identity = "cdp", f"{config.host}|{config.write_key}"
    else:
        dest_name = destination.name
        identity = "|".join((destination.base_url(), destination.path, repr(sorted(destination.headers().items()))))
    return stream_key(config.stream_prefix, dest_name, identity)

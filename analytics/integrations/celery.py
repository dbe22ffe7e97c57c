"""Celery workers (extra ``celery``): the pool processes' clients, drained at shutdown, optionally flushed per task.

Celery's prefork pool forks its worker processes from the main one and ends
them without running ``atexit``, so a pool process's queued events would be
lost at every worker restart, ``--max-tasks-per-child`` recycling or
shutdown.  :func:`setup` connects the library to the worker's signals::

    # celery app module (celery_app.py)
    from celery import Celery
    from analytics.integrations.celery import setup as setup_analytics

    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    setup_analytics()                          # or setup_analytics(flush_after_task=True)

* ``worker_process_init``: each pool process builds its own queue, threads and
  connections for every client made before the fork, before its first task;
* ``worker_process_shutdown``: each pool process delivers what its clients
  queued (each within its ``exit_timeout``), as the interpreter-exit hook
  does in other processes;
* ``task_postrun`` (with ``flush_after_task=True``): every client is flushed
  after each task, waiting at most ``flush_timeout`` seconds — for tasks whose
  events must be sent before the next one starts, at the cost of the wait.

The main worker process (and the ``solo`` and ``threads`` pools) exit
normally: the usual exit drain covers them.  :func:`setup` is idempotent.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import client as _client
from .._checks import number as _number

__all__ = ["setup", "teardown"]

_UID = "cdp-relay"
_flush_timeout: Optional[float] = 5.0


def _process_init(**_: Any) -> None:
    _client.build_engines()  # this process's engines now, not in the first task


def _process_shutdown(**_: Any) -> None:
    _client.drain_clients()


def _task_postrun(**_: Any) -> None:
    _client.drain_clients(flush_only=True, timeout=_flush_timeout)


def setup(*, flush_after_task: bool = False, flush_timeout: Optional[float] = 5.0) -> None:
    """Connect the library to Celery's worker signals (see the module's docstring).

    Raises :class:`~analytics.errors.ConfigurationError` for a ``flush_timeout``
    that is not a number of seconds >= 0 (``None``: wait until flushed).
    """
    global _flush_timeout
    if flush_timeout is not None:
        _number("flush_timeout", flush_timeout, 0)
    from celery import signals  # type: ignore[import-untyped, unused-ignore]  # imported here, not with the module

    _flush_timeout = flush_timeout
    signals.worker_process_init.connect(_process_init, weak=False, dispatch_uid=_UID + "-init")
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False, dispatch_uid=_UID + "-shutdown")
    if flush_after_task:
        signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid=_UID + "-postrun")
    else:
        signals.task_postrun.disconnect(dispatch_uid=_UID + "-postrun")


def teardown() -> None:
    """Disconnect what :func:`setup` connected."""
    from celery import signals  # type: ignore[import-untyped, unused-ignore]  # optional (extra celery), as above

    signals.worker_process_init.disconnect(dispatch_uid=_UID + "-init")
    signals.worker_process_shutdown.disconnect(dispatch_uid=_UID + "-shutdown")
    signals.task_postrun.disconnect(dispatch_uid=_UID + "-postrun")

"""Clients across ``fork()``: the registry of live clients and the at-fork hooks.

Each :class:`~analytics.Client` registers here when it is made.  In a forked
child the ``os.register_at_fork`` hook has every client let go of its
parent's engine; the child's first call then builds its own (see
:mod:`analytics.engine.process`).  ``multiprocessing`` children end with
``os._exit()``, which skips ``atexit``: the hook before a fork asks
``multiprocessing`` to run each client's exit drain in them too.
:func:`build_engines` and :func:`drain_clients` serve process pools whose
workers start or end outside those hooks (Celery's prefork pool, say); they
are also :mod:`analytics.client`'s.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Protocol

from .stats import StatsSnapshot

__all__ = ["register", "build_engines", "drain_clients", "process_lock"]

log = logging.getLogger("customerio.analytics")


class Forkable(Protocol):
    """What the hooks ask of a client (see :class:`analytics.Client`)."""

    _mp_registered: bool  # its exit drain is registered with multiprocessing in this process
    _engine_locks: Dict[int, Any]  # see process_lock

    def _check_pid(self) -> None:
        """Build this process's engine now if it is a forked child that has none yet."""

    def _leave_parent_engine(self) -> None:
        """In a forked child: let go of the parent's engine."""

    def _exit_drain(self) -> Callable[[], Any]:
        """This process's exit drain (one-shot: it delivers within ``exit_timeout``, then closes)."""

    def flush(self, timeout: Optional[float] = None) -> int:
        """Deliver what is queued; how many are still pending."""

    def stats(self) -> StatsSnapshot:
        """The counters."""


_live_clients: "weakref.WeakSet[Forkable]" = weakref.WeakSet()


def register(client: Forkable) -> None:
    """Follow ``client`` across forks (until it is garbage collected)."""
    _live_clients.add(client)
    # A client created inside a multiprocessing child (the shared client made by the first
    # call in a Pool task, say) missed _before_fork: register its exit drain now.
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        client._mp_registered = True
        _mp_child_exit_hook(client)


def _clients() -> List[Forkable]:
    # A copy of the live clients; another thread may be creating one meanwhile.
    for _ in range(5):
        try:
            return list(_live_clients)
        except RuntimeError:  # the set changed size during iteration
            continue
    return []


def _before_fork() -> None:
    # multiprocessing children leave with os._exit(), which skips atexit: ask
    # multiprocessing to run each client's exit drain in its own children too.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    for client in _clients():
        if not client._mp_registered:
            client._mp_registered = True
            mp_util.register_after_fork(client, _mp_child_exit_hook)


def _mp_child_exit_hook(client: Forkable) -> None:
    # Runs in a multiprocessing child after its bootstrap (which clears the
    # finalizer registry); this finalizer runs from multiprocessing's exit
    # function before os._exit(), and only once (weakref.finalize is one-shot).
    import multiprocessing.util as mp_util  # here: import analytics does not load multiprocessing

    mp_util.Finalize(client, client._exit_drain(), exitpriority=10)


def _after_fork_in_child() -> None:
    for client in _clients():
        try:
            client._engine_locks.clear()  # the child makes its own at its first call
            client._leave_parent_engine()
        except Exception:  # pragma: no cover - never break the user's fork
            log.exception("could not reset an analytics client after fork")


def build_engines() -> None:
    """Give every client made before a fork its own queue, threads and connections in this process
    now (a pool process's start, Celery's ``worker_process_init``), not at its first call."""
    for client in _clients():
        client._check_pid()


def drain_clients(flush_only: bool = False, timeout: Optional[float] = None) -> int:
    """Deliver what every client of this process queued; how many messages are still pending.

    For process pools whose workers end without running ``atexit`` (Celery's
    prefork pool, say).  By default each client gets its exit drain: what it
    queued is delivered within its ``exit_timeout`` and the client is then
    closed, as at interpreter exit.  With ``flush_only`` each is flushed
    (waiting at most ``timeout`` seconds) and stays open.  Never raises.
    """
    pending = 0
    for client in _clients():
        try:
            if flush_only:
                pending += client.flush(timeout)
            else:
                client._exit_drain()()  # this process's engine's (one-shot: interpreter exit then skips it)
                pending += client.stats()["pending"]
        except Exception:  # pragma: no cover - a drain must never break the caller's shutdown
            log.exception("draining a client failed")
    return pending


def process_lock(locks: Dict[int, Any]) -> Any:
    """This process's lock in ``locks``, made at its first use in the process.

    Not in an at-fork hook: gevent's worker (``gunicorn -k gevent``) patches
    ``threading`` after the fork, and a greenlet that waits for a real lock
    another greenlet holds stops the whole process.  Keyed by pid, so a lock
    that a thread of the parent held at the fork is never used, even after a
    fork that bypassed the at-fork hooks (which also clear ``locks``);
    ``setdefault`` is atomic, so threads racing to the first use share one.
    """
    return locks.setdefault(os.getpid(), threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)

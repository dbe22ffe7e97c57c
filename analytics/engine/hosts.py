"""Servers that do not let background threads run, found at client creation.

uWSGI before 2.0.27 does not start Python's thread support unless it is
given ``--enable-threads`` (or ``--threads N``): a thread the application
starts then runs only while a request is being handled, and stops between
requests.  The delivery threads sent 111 of 200 requests' events, and the rest
waited until the worker was stopped (a ``SIGKILL`` would have lost them).
Segment's users lost events this way without a word (its issue 170).

A client created in such a process logs :data:`UWSGI_WARNING` once, and then
lets the calls themselves wait for a batch that is due (see
:meth:`analytics.Client.track`): delivery keeps up with the requests, at the
cost of a round trip for the call that completes a batch.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Mapping, Optional, Tuple

__all__ = ["threads_stall_between_calls", "UWSGI_WARNING", "green_hub", "hub_replaced"]

UWSGI_WARNING = (
    "uWSGI %s runs without Python threads (no --enable-threads): the delivery threads only run "
    "during requests, so events would wait until the worker stops. Start uWSGI with --enable-threads "
    "(or use uWSGI 2.0.27 or newer). Until then the call that completes a batch waits for its delivery."
)
_OFF = (b"", b"0", b"false", b"no", b"off", "", "0", "false", "no", "off", False, None)


def _number(value: Any) -> int:
    try:
        return int(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError, AttributeError):
        return 0


def uwsgi_threads_off(opt: Mapping[str, Any], version: Tuple[Any, ...]) -> bool:
    """Whether a uWSGI of ``version`` with options ``opt`` (``uwsgi.opt``) keeps Python threads from running."""
    if tuple(version[:3]) >= (2, 0, 27):
        return False  # threads are enabled by default since 2.0.27
    if opt.get("enable-threads", False) not in _OFF:
        return False
    if _number(opt.get("threads")) > 1:
        return False  # multithreaded mode enables them
    if any(engine in opt for engine in ("gevent", "async", "ugreen", "greenlet", "asyncio")):
        return False  # a loop engine of its own: its threads are not ours to judge
    return True


def threads_stall_between_calls() -> Optional[str]:
    """The warning to give when this process's background threads cannot run between calls, else ``None``."""
    uwsgi = sys.modules.get("uwsgi")  # built into uWSGI's workers; never imported here
    if uwsgi is None:
        return None
    try:
        opt = dict(getattr(uwsgi, "opt", {}))
        version = tuple(getattr(uwsgi, "version_info", (0, 0, 0)))
    except Exception:  # an object that only looks like uWSGI's module
        return None
    if not uwsgi_threads_off(opt, version):
        return None
    return UWSGI_WARNING % ".".join(str(part) for part in version[:3])


#: An OS thread (its native id: eventlet does not patch it) and the eventlet hub it ran then.
GreenHub = Tuple[int, Any]


def green_hub() -> Optional[GreenHub]:
    """This OS thread's eventlet hub (with the thread's native id) when eventlet patched ``threading``, else ``None``.

    Never imports eventlet; ``get_hub()`` makes the thread's hub if it has
    none yet (the green threads about to be started would make it anyway).
    """
    patcher = sys.modules.get("eventlet.patcher")
    hubs = sys.modules.get("eventlet.hubs")
    if patcher is None or hubs is None or not patcher.is_monkey_patched("thread"):
        return None
    return threading.get_native_id(), hubs.get_hub()


def hub_replaced(built: GreenHub) -> bool:
    """Whether the OS thread of ``built`` runs another eventlet hub now, and this is that thread.

    Another OS thread (eventlet's ``tpool``, say) has a hub of its own: that
    is not a replacement.
    """
    now = green_hub()
    return now is not None and now[0] == built[0] and now[1] is not built[1]

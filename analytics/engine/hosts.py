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

__all__ = ["threads_stall_between_calls", "UWSGI_WARNING", "green_loop", "loop_replaced"]

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


#: What runs a thread's green threads when an engine is built: ``(kind, OS thread, eventlet hub)``.
#: ``kind`` is ``"eventlet"`` (eventlet patched ``threading``; its hub), ``"gevent"`` (gevent
#: patched it) or ``"threads"`` (either is imported, neither patched ``threading`` yet).
GreenLoop = Tuple[str, int, Any]


def green_loop() -> Optional[GreenLoop]:
    """What runs this thread's green threads (see :data:`GreenLoop`); ``None`` when neither gevent nor
    eventlet is imported.  Never imports either; eventlet's ``get_hub()`` makes the thread's hub if it
    has none yet (the green threads about to be started would make it anyway)."""
    tid = threading.get_native_id()  # the OS thread: neither patches it
    patcher = sys.modules.get("eventlet.patcher")
    hubs = sys.modules.get("eventlet.hubs")
    if patcher is not None and hubs is not None and patcher.is_monkey_patched("thread"):
        return "eventlet", tid, hubs.get_hub()
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return "gevent", tid, None
    if patcher is None and monkey is None:
        return None
    if monkey is not None and "concurrent.futures.thread" not in sys.modules:
        _ready_for_gevent_at_exit()  # once: this runs at every call while the loop is watched
    return "threads", tid, None


def _ready_for_gevent_at_exit() -> None:
    """Load what gevent's resolver needs before the interpreter starts shutting down.

    gevent imported but ``threading`` not patched yet: a client made now (in
    gunicorn's ``post_fork``, say) may make its first connection in the exit
    drain, after the worker patched everything.  gevent's resolver then starts
    its thread pool and imports ``concurrent.futures.thread``, whose import
    registers an exit hook, which fails once shutdown has begun ("can't
    register atexit after shutdown"), so that connection fails.  Imported now,
    it is already there then (gevent's own patching imports it only in a
    process with no thread running).
    """
    import concurrent.futures.thread  # noqa: F401  (see above)


def loop_replaced(built: GreenLoop) -> bool:
    """Whether the calling thread is ``built``'s and its green threads run on something else now.

    eventlet replaced its hub (gunicorn's eventlet worker does after
    ``post_fork``), or gevent or eventlet patched ``threading`` after the
    engine was built with real threads (gunicorn's gevent worker does after
    ``post_fork``).  Another OS thread (eventlet's ``tpool``, say) is not a
    replacement.
    """
    now = green_loop()
    return now is not None and now[1] == built[1] and now[0] != "threads" and (
        now[0] != built[0] or now[2] is not built[2]
    )

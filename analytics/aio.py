"""asyncio front end of the Data Pipelines client: :class:`AsyncClient`, and awaitable
:func:`flush` / :func:`shutdown` for the module facade.

::

    from analytics.aio import AsyncClient

    async def main():
        async with AsyncClient("YOUR_WRITE_KEY") as analytics:
            analytics.track("user-1", "Signed Up", {"plan": "pro"})   # plain call, returns at once
            await analytics.flush()                                    # never blocks the loop

The six calls (``identify``, ``track``, ``page``, ``screen``, ``group``,
``alias``) are the plain, non-blocking calls of :class:`analytics.Client`:
they check and encode the message in the caller and put its bytes on the
queue, in microseconds, so they need no ``await``.  Only the calls that wait
are coroutines: ``await client.flush(timeout)``, ``await
client.shutdown(timeout)`` and leaving ``async with``.  They wait in a
helper thread and are woken through ``loop.call_soon_threadsafe``, so the
event loop keeps running meanwhile; cancelling the awaiting task stops the
waiting, not the delivery.

Delivery stays on the client's consumer thread (``requests``, one session),
not on the event loop.  Measured on the project machine (2 cores, Python
3.11, the collector in its own process on loopback, other work running on
the machine, so ranges over 3 rounds), against a prototype that delivers on
the loop instead (a deque, one task batching 100 and posting with
``httpx.AsyncClient``, same encoding and body).  *Burst*: 20,000
``track()`` calls in chunks of 100 with ``await asyncio.sleep(0)`` between
chunks, then ``await flush()``.  *Steady*: 50 calls every 2.5 ms for 1 s.
A probe task sleeping 1 ms records how late the loop wakes it (loop lag)::

                                        consumer thread     on the loop (httpx)
    track() per call, median            8.2-8.8 us          6.8-6.9 us
    track() per call, p99 (burst)       25-111 us           17-23 us
    loop lag during await flush(), max  2-31 ms             1.4-65 ms
    loop lag, steady, p99               2.4-7.5 ms          1.5-35 ms
    time to deliver the burst backlog   0.06-0.41 s         0.48-0.75 s
    burst, calls to delivered           28,000-35,000/s     20,000-30,000/s

A call costs the loop the same few microseconds either way (it is the
message check and encoding).  On the loop, every batch's body building and
request handling run between the application's own tasks, so draining a
backlog takes 2-8 times longer and stalls the loop in bursts; on the
consumer thread that work overlaps with the loop (socket waits release the
GIL) and the loop stays as responsive.  The thread also keeps every feature
of :class:`analytics.Client` (spool, Redis queue, retries honouring
``Retry-After``, ``on_error`` accounting, fork safety) without a second
implementation, and needs no extra package.  So: consumer thread.

``pace_wait`` keeps the client's default (4 ms).  The burst above is larger
than the default 10,000-message queue, and a producer that awaits so
little starves the consumer thread of the GIL: with ``pace_wait=0`` the
queue overflowed in every round (11,200-17,000 of 20,000 delivered, the
rest counted as ``queue_full``).  With pacing a call sleeps, at most
``pace_wait``, when the calls got ahead of the delivery rate
(:mod:`analytics.engine.backpressure`); those sleeps block the loop for
that long, and are the p99 above.  Size ``max_queue_size`` for your bursts.  Two options are
refused, because a call must never wait on the loop for long:
``max_queue_wait`` other than 0 (a full queue drops and counts instead) and
``sync_mode=True`` (delivery inside the call).

The module functions :func:`flush` and :func:`shutdown` do the same for the
shared client of the module facade (``analytics.default_client``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, Callable, Dict, Optional, TypeVar

from .client import Client
from .errors import ConfigurationError
from .stats import StatsSnapshot

__all__ = ["AsyncClient", "flush", "shutdown", "run_in_thread"]

T = TypeVar("T")


def _settle(future: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    if future.done():  # cancelled while the thread was waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def run_in_thread(func: Callable[..., T], *args: Any, name: str = "cdp-relay-aio") -> T:
    """Run a blocking ``func(*args)`` on a new daemon thread and await its result.

    Unlike ``asyncio.to_thread`` the thread is not part of the loop's
    executor, so a wait that outlives a cancelled task never holds up
    ``asyncio.run()``'s exit.  The result comes back through
    ``loop.call_soon_threadsafe``: the loop does not poll.
    """
    loop = asyncio.get_running_loop()
    future: "asyncio.Future[T]" = loop.create_future()

    def run() -> None:
        value: Any = None
        error: Optional[BaseException] = None
        try:
            value = func(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        try:
            loop.call_soon_threadsafe(_settle, future, value, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


class AsyncClient:
    """An :class:`analytics.Client` for asyncio applications (see the module doc).

    ``AsyncClient(write_key, ...)`` takes every argument of
    :class:`analytics.Client`; or wrap an existing one with
    ``AsyncClient(client=client)``.  ``max_queue_wait`` other than 0 and
    ``sync_mode=True`` raise :class:`~analytics.errors.ConfigurationError`
    (they would block the event loop); ``pace_wait`` keeps the client's default.

    The calls return ``(success, message)`` at once, like the sync client's;
    :meth:`flush` and :meth:`shutdown` are coroutines; ``async with`` shuts
    down on exit.  :attr:`client` is the wrapped :class:`analytics.Client`.
    """

    def __init__(self, *args: Any, client: Optional[Client] = None, **kwargs: Any) -> None:
        if client is not None:
            if args or kwargs:
                raise ConfigurationError("pass either client= or Client arguments, not both")
            if not isinstance(client, Client):
                raise ConfigurationError(f"client must be an analytics.Client, got {client!r}")
        else:
            if kwargs.get("sync_mode") or (len(args) > 8 and args[8]):
                raise ConfigurationError("sync_mode=True delivers inside each call and would block the event loop")
            if kwargs.get("max_queue_wait", 0.0) not in (0, 0.0):
                raise ConfigurationError("max_queue_wait must be 0 with AsyncClient: a call waiting for room "
                                         "would block the event loop (a full queue drops and counts instead)")
            client = Client(*args, **kwargs)
        if client.sync_mode:
            raise ConfigurationError("sync_mode=True delivers inside each call and would block the event loop")
        #: The wrapped :class:`analytics.Client`.
        self.client = client

    # -- the six calls: plain and non-blocking --------------------------------------

    def identify(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`analytics.Client.identify` (returns at once)."""
        return self.client.identify(*args, **kwargs)

    def track(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`analytics.Client.track` (returns at once)."""
        return self.client.track(*args, **kwargs)

    def page(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`analytics.Client.page` (returns at once)."""
        return self.client.page(*args, **kwargs)

    def screen(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`analytics.Client.screen` (returns at once)."""
        return self.client.screen(*args, **kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`analytics.Client.group` (returns at once)."""
        return self.client.group(*args, **kwargs)

    def alias(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`analytics.Client.alias` (returns at once)."""
        return self.client.alias(*args, **kwargs)

    def stats(self) -> StatsSnapshot:
        """:meth:`analytics.Client.stats` (a snapshot; does not wait)."""
        return self.client.stats()

    # -- what waits: coroutines ---------------------------------------------------------

    async def flush(self, timeout: Optional[float] = None) -> int:
        """Send what is queued now and wait, without blocking the loop, until every message
        queued before the call is delivered or reported (or ``timeout`` seconds passed).
        Returns how many are still pending (0: all done)."""
        if timeout is not None and timeout <= 0:
            return self.client.flush(0)  # only starts the send; does not wait
        return await run_in_thread(self.client.flush, timeout, name="cdp-relay-aio-flush")

    async def shutdown(self, timeout: Optional[float] = None) -> int:
        """Deliver what is queued, stop the consumer and close the session, without blocking
        the loop.  Returns the messages dropped at the ``timeout`` deadline."""
        return await run_in_thread(self.client.shutdown, timeout, name="cdp-relay-aio-shutdown")

    async def join(self, timeout: Optional[float] = None) -> int:
        """Same as :meth:`shutdown`."""
        return await self.shutdown(timeout)

    close = shutdown

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown()

    def __getattr__(self, name: str) -> Any:
        # settings (debug, gzip, upload_size...) read and written through to the client
        if name == "client":
            raise AttributeError(name)
        return getattr(self.client, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "client" and "client" in self.__dict__ and hasattr(type(self.client), name):
            setattr(self.client, name, value)
        else:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<AsyncClient {self.client!r}>"


async def flush(timeout: Optional[float] = None) -> int:
    """:func:`analytics.flush`, awaitable: waits in a helper thread, the loop keeps running.
    Returns how many of the shared client's messages are still pending (0 when it has none)."""
    facade = _facade()
    if facade.default_client is None:
        return 0
    return await run_in_thread(facade.flush, timeout, name="cdp-relay-aio-flush")


async def shutdown(timeout: Optional[float] = None) -> int:
    """:func:`analytics.shutdown`, awaitable: drains and stops the shared client without
    blocking the loop; the next call creates a new one.  Returns the messages dropped."""
    facade = _facade()
    if facade.default_client is None:
        return 0
    return await run_in_thread(facade.shutdown, timeout, name="cdp-relay-aio-shutdown")


def _facade() -> Any:
    # the package this module belongs to (analytics, or customerio.analytics when a user's own
    # top-level analytics package shadows this one): never `import analytics`, which could be theirs
    return sys.modules[__name__.rpartition(".")[0]]

"""Helpers for testing code that uses the library, without a server and without sleeping.

* :class:`MemoryTransport` answers each request with a function instead of a
  server (``handler(request) -> respond(...)``) and records every
  :class:`Request`;
* :class:`FakeClock` is a clock whose time moves only when the test calls
  :meth:`FakeClock.advance`: upload intervals, retry waits, ``Retry-After``
  and pacing happen in fake time.

Both go to the client at creation::

    from analytics import Client
    from analytics.testing import FakeClock, MemoryTransport

    clock = FakeClock()
    transport = MemoryTransport()
    client = Client("KEY", transport=transport, clock=clock, upload_interval=10)
    client.track("user-1", "Signed Up")
    clock.wait_for_waiters(1)         # the worker waits for upload_interval, in fake time
    assert transport.requests == []
    clock.advance(10)                 # the batch goes out now
    ...
    client.shutdown(timeout=0)        # a later deadline would never come in fake time

The engine works in its own threads: after an :meth:`~FakeClock.advance`,
wait for what it does with a bound (for example
:meth:`FakeClock.wait_for_waiters`, or polling ``client.stats()`` with a
deadline), never with a sleep.  Before advancing past a retry's wait, make
sure the request was made (``transport.requests``): a worker that has not
begun its wait yet counts its wait from the time it begins.
"""

from .engine.clock import FakeClock
from .transport import MemoryTransport, Request, respond

__all__ = ["FakeClock", "MemoryTransport", "Request", "respond"]

"""Helpers for testing code that uses the library, without a server and without sleeping.

* :class:`MemoryTransport` answers each request with a function instead of a
  server (``handler(request) -> respond(...)``) and records every
  :class:`Request`;
* :class:`FakeClock` is a clock whose time moves only when the test calls
  :meth:`FakeClock.advance`: upload intervals, retry waits, ``Retry-After``
  and pacing happen in fake time.

Both go to the client at creation::

    from analytics import Client
    from analytics.testing import FakeClock, MemoryTransport, respond

    answers = iter([respond(500), respond(200)])
    transport = MemoryTransport(lambda request: next(answers))
    clock = FakeClock()
    client = Client("KEY", transport=transport, clock=clock, upload_size=1)
    client.track("user-1", "Signed Up")      # sent at once, answered 500
    clock.advance(10)                         # past the retry's wait: sent again, answered 200
    ...
    client.shutdown(timeout=0)

The engine works in its own threads: after an :meth:`~FakeClock.advance`,
wait for what it does with a bound (for example
:meth:`FakeClock.wait_for_waiters`, or polling ``client.stats()`` with a
deadline), never with a sleep.
"""

from .engine.clock import FakeClock
from .transport import MemoryTransport, Request, respond

__all__ = ["FakeClock", "MemoryTransport", "Request", "respond"]

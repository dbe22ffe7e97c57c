"""Helpers for testing code that uses the library: no server, no sleeping.

* :func:`capture` records every message the module facade and any
  :class:`~analytics.Client` send while it is active — built, checked, shaped by
  ``before_send`` and encoded exactly as for real — and nothing leaves the
  process.  The pytest fixture ``analytics_capture`` (installed with the
  library, through a ``pytest11`` entry point) is the same::

      def test_signup_is_tracked(analytics_capture):
          signup(email="ada@example.com")               # your code, calling analytics.track(...)
          (event,) = analytics_capture.find(event="Signed Up")
          assert event["userId"] == "ada"

* :class:`MemoryTransport` answers each request with a function instead of a
  server (``handler(request) -> respond(...)``) and records every
  :class:`Request`: for tests of delivery itself (retries, errors);
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

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

from . import client as _client
from . import encoding
from .clock import FakeClock
from .transport import MemoryTransport, Request, respond

__all__ = ["capture", "Captured", "FakeClock", "MemoryTransport", "Request", "respond"]


class Captured:
    """The messages captured so far, as they would have been sent (parsed from the encoded bytes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: List[Dict[str, Any]] = []

    def record(self, data: bytes) -> None:
        """Called by the clients with each encoded message (any thread)."""
        message = encoding.loads(data)
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> List[Dict[str, Any]]:
        """Every captured message, in call order (a copy)."""
        with self._lock:
            return list(self._messages)

    def find(
        self,
        type: Optional[str] = None,
        event: Optional[str] = None,
        user_id: Optional[str] = None,
        anonymous_id: Optional[str] = None,
        **fields: Any,
    ) -> List[Dict[str, Any]]:
        """The messages matching every criterion given: ``type`` (``"track"``...), ``event``,
        ``user_id``, ``anonymous_id``, and any other top-level field by its wire name
        (``name="Home"``, ``groupId="acme"``)."""
        wanted = dict(fields)
        for key, value in (("type", type), ("event", event), ("userId", user_id), ("anonymousId", anonymous_id)):
            if value is not None:
                wanted[key] = value
        return [m for m in self.messages if all(m.get(k) == v for k, v in wanted.items())]

    def events(self, name: Optional[str] = None) -> List[str]:
        """The names of the captured track events (only ``name``'s when given), in order."""
        return [m["event"] for m in self.find(type="track", event=name)]

    def clear(self) -> None:
        """Forget what was captured."""
        with self._lock:
            self._messages.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.messages)

    def __repr__(self) -> str:
        return f"<Captured {len(self)} message(s)>"


@contextmanager
def capture() -> Iterator[Captured]:
    """Capture every message sent by the facade and any client while the block runs.

    Each call is checked, built, passed through ``before_send`` and encoded as
    usual (so a bad call still raises, and a message over 32 KB too), and
    returns ``(True, message)``; the message is recorded instead of queued, so
    it is neither sent nor counted in ``stats()``.  Blocks may nest: each
    records what is sent while it is active.  Applies to every thread.
    """
    captured = Captured()
    _client._captures.append(captured)
    try:
        yield captured
    finally:
        _client._captures.remove(captured)

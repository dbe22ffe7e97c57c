"""The engine's clock: every way it reads or waits on time goes through one :class:`Clock`.

The engine reads the time (batch intervals, retry waits, ``Retry-After``,
the delivery rate, the shutdown deadline), sleeps a producer it paces, waits
on its condition variables with a timeout and joins its threads until the
shutdown deadline; each of these is a method of the clock.  The default,
:class:`SystemClock`, is the monotonic clock of the operating system.
:class:`FakeClock` moves only when a test says so, which makes retries,
intervals, idle workers and backpressure testable without sleeping::

    from analytics import Client
    from analytics.testing import FakeClock, MemoryTransport

    clock = FakeClock()
    client = Client("KEY", transport=MemoryTransport(), clock=clock)
    client.track("user-1", "Signed Up")
    clock.advance(0.5)  # upload_interval: the batch goes out now

Grace periods for threads to react (a few milliseconds after the shutdown
deadline, half a second after aborting hung requests) stay real time: they
are about scheduling, not about the engine's timing.

The clock is a ``Client`` option (checked by :mod:`analytics.options`), so it lives
below the engine; :mod:`analytics.engine.clock` names the same objects.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Dict, Optional

from .errors import ConfigurationError

try:
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol, runtime_checkable  # type: ignore

__all__ = ["Clock", "SystemClock", "FakeClock", "SYSTEM_CLOCK"]


@runtime_checkable
class Clock(Protocol):
    """What the engine asks of time; one clock per client (``Client(clock=...)``)."""

    def now(self) -> float:
        """Seconds on a monotonic clock (only differences mean anything)."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread ``seconds`` (a producer's pacing sleep)."""

    def wait(self, condition: threading.Condition, timeout: Optional[float]) -> bool:
        """As ``condition.wait(timeout)`` (its lock held): True when notified, False once ``timeout`` passed."""

    def join(self, thread: threading.Thread, timeout: Optional[float]) -> None:
        """As ``thread.join(timeout)``: return when ``thread`` ended or ``timeout`` passed."""


class SystemClock:
    """The operating system's clock: ``time.monotonic``, ``time.sleep`` and the real waits."""

    now = staticmethod(time.monotonic)  # no wrapper on the producer's hot path
    sleep = staticmethod(time.sleep)

    def wait(self, condition: threading.Condition, timeout: Optional[float]) -> bool:
        """``condition.wait(timeout)``."""
        return condition.wait(timeout)

    def join(self, thread: threading.Thread, timeout: Optional[float]) -> None:
        """``thread.join(timeout)``."""
        thread.join(timeout)

    def __repr__(self) -> str:
        return "SystemClock()"


#: The clock of every client not given another.
SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock for tests: its time moves only when :meth:`advance` is called (from any thread).

    * :meth:`now` is the fake time (``start``, then the sum of the advances);
    * :meth:`sleep` blocks until the fake time reaches the end of the sleep;
    * :meth:`wait` returns True as soon as the condition is notified, and
      False once the fake time reached ``now() + timeout`` (``None``: no
      timeout, as ``Condition.wait``).  It cannot wait on the condition and on
      this clock at once, so it waits on the condition in real slices of
      :attr:`SLICE_S` seconds and looks at the fake time between them: a
      waiting worker notices :meth:`advance` within a slice;
    * :meth:`join` returns once the thread ended or the fake time reached
      the timeout, looking in the same slices.

    A test knows that the engine's threads have acted on an advance with
    :meth:`wait_for_waiters`: it returns once that many threads are blocked
    in this clock and each has looked at the time since the last advance
    (a thread that is about to send is not counted until it waits again).
    An untimed wait counts too: a worker that waits for messages, about to
    be woken by one, is counted until it wakes, so before advancing past a
    retry's wait, first see the request made (``transport.requests``).

    Nothing here ends by itself: a client on a fake clock whose workers wait
    for a retry is shut down with ``shutdown(timeout=0)``, or while another
    thread advances the clock.
    """

    #: Real seconds a :meth:`wait` or :meth:`join` blocks before it looks at the fake time again.
    SLICE_S = 0.005

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._state = threading.Condition(threading.Lock())
        self._advances = 0  # how many times advance() was called
        self._blocked: Dict[object, Optional[int]] = {}  # a wait -> the advances it had seen (None: untimed)

    def now(self) -> float:
        """The fake time, in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the fake time on by ``seconds`` (0 or more); the waits it ends return shortly after."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ConfigurationError(f"seconds must be a finite number of seconds, 0 or more, got {seconds!r}")
        with self._state:
            self._now += seconds
            self._advances += 1
            self._state.notify_all()

    def sleep(self, seconds: float) -> None:
        """Block until the fake time has moved on by ``seconds``."""
        key = object()
        with self._state:
            end = self._now + seconds
            try:
                while self._now < end:
                    self._seen(key)
                    self._state.wait()  # advance() notifies
            finally:
                self._leave(key)

    def wait(self, condition: threading.Condition, timeout: Optional[float]) -> bool:
        """As ``condition.wait(timeout)`` with ``timeout`` in fake seconds (see the class)."""
        key = object()
        try:
            if timeout is None:
                with self._state:
                    self._seen(key, untimed=True)
                return condition.wait()
            end = self._now + timeout
            while True:
                with self._state:
                    if self._now >= end:
                        return False
                    self._seen(key)
                if condition.wait(self.SLICE_S):
                    return True
        finally:
            with self._state:
                self._leave(key)

    def join(self, thread: threading.Thread, timeout: Optional[float]) -> None:
        """As ``thread.join(timeout)`` with ``timeout`` in fake seconds (see the class)."""
        key = object()
        end = math.inf if timeout is None else self._now + timeout
        try:
            while thread.is_alive():
                with self._state:
                    if self._now >= end:
                        return
                    self._seen(key)
                thread.join(self.SLICE_S)
        finally:
            with self._state:
                self._leave(key)

    def waiting(self) -> int:
        """How many threads are blocked in this clock and have looked at the time since the last advance."""
        with self._state:
            return self._waiting()

    def wait_for_waiters(self, count: int, timeout: float = 5.0) -> bool:
        """Block (at most ``timeout`` real seconds) until :meth:`waiting` is at least ``count``; False if not."""
        deadline = time.monotonic() + timeout
        with self._state:
            while self._waiting() < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
            return True

    def _waiting(self) -> int:
        # (state lock held)
        return sum(1 for seen in self._blocked.values() if seen is None or seen == self._advances)

    def _seen(self, key: object, untimed: bool = False) -> None:
        # (state lock held) the wait ``key`` looked at the time and goes on waiting
        self._blocked[key] = None if untimed else self._advances
        self._state.notify_all()

    def _leave(self, key: object) -> None:
        # (state lock held)
        self._blocked.pop(key, None)
        self._state.notify_all()

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:g})"

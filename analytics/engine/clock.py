"""The engine's clock: :mod:`analytics.clock` under the engine's name (the same objects).

``Client(clock=...)`` takes a :class:`Clock`; tests pass :class:`FakeClock` (also
:class:`analytics.testing.FakeClock`) to move time by hand.
"""

from ..clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock

__all__ = ["Clock", "SystemClock", "FakeClock", "SYSTEM_CLOCK"]

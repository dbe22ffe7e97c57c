"""Progress display for long commands (``cdp-relay import``): a bar with rate and ETA.

:func:`make_progress` picks one of three displays, all with the same small
interface (``update(done, **counts)``, ``close()``):

- a ``tqdm`` bar on a terminal, when ``tqdm`` is installed (``pip install 'cdp-relay[progress]'``);
- a one-line bar redrawn in place on a terminal without ``tqdm``;
- plain lines every few seconds when stderr is not a terminal (logs, CI).

Every display shows the rate (lines/s) and the ETA when the total is known.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict, Optional, TextIO

__all__ = ["Progress", "make_progress", "format_duration"]


def format_duration(seconds: Optional[float]) -> str:
    """``0:07``, ``12:03``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Base display: counts what is done and works out the rate and ETA; shows nothing.

    ``total`` may be None (reading from a pipe): then there is no ETA.
    ``initial`` is where a resumed run starts (not counted in the rate).
    """

    def __init__(self, total: Optional[int], initial: int = 0, unit: str = "lines",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.initial = initial
        self.done = initial
        self.unit = unit
        self.counts: Dict[str, int] = {}
        self._clock = clock
        self._started = clock()
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the display was made."""
        return self._clock() - self._started

    @property
    def rate(self) -> Optional[float]:
        """Units per second over the whole run (None until a tenth of a second has passed)."""
        elapsed = self.elapsed
        if elapsed < 0.1:
            return None
        return (self.done - self.initial) / elapsed

    @property
    def eta(self) -> Optional[float]:
        """Seconds left at the current rate, None when unknown."""
        rate = self.rate
        if self.total is None or not rate:
            return None if self.total is None or self.done < self.total else 0.0
        return max(0.0, (self.total - self.done) / rate)

    def update(self, done: int, **counts: int) -> None:
        """Set how many units are done (absolute, not a delta) and the extra counters shown."""
        self.done = done
        self.counts.update(counts)
        self._show(final=False)

    def close(self) -> None:
        """Show the final state and release the display.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._show(final=True)

    def describe(self) -> str:
        """``1,200/5,000 lines (24%) · 410 lines/s · ETA 0:09 · 1,150 delivered · 2 bad``."""
        if self.total is not None:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            head = f"{self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%)"
        else:
            head = f"{self.done:,} {self.unit}"
        rate = self.rate
        parts = [head, f"{rate:,.0f} {self.unit}/s" if rate is not None else f"? {self.unit}/s",
                 f"ETA {format_duration(self.eta)}"]
        parts.extend(f"{value:,} {name}" for name, value in self.counts.items())
        return " · ".join(parts)

    def _show(self, final: bool) -> None:
        pass


class _Lines(Progress):
    """Plain lines every ``every`` seconds, and one at the end (for logs and CI)."""

    def __init__(self, stream: TextIO, prefix: str, every: float, **kw: Any) -> None:
        super().__init__(**kw)
        self._stream = stream
        self._prefix = prefix
        self._every = every
        self._last = self._clock()

    def _show(self, final: bool) -> None:
        now = self._clock()
        if not final and now - self._last < self._every:
            return
        self._last = now
        print(f"{self._prefix}{self.describe()}", file=self._stream, flush=True)


class _Bar(Progress):
    """A one-line bar redrawn in place with ``\\r`` (a terminal without tqdm)."""

    WIDTH = 24

    def __init__(self, stream: TextIO, prefix: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._stream = stream
        self._prefix = prefix
        self._last = 0.0
        self._shown = 0

    def _show(self, final: bool) -> None:
        now = self._clock()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        if self.total:
            filled = min(self.WIDTH, int(self.WIDTH * self.done / self.total))
            bar = "[" + "#" * filled + "-" * (self.WIDTH - filled) + "] "
        else:
            bar = ""
        text = f"{self._prefix}{bar}{self.describe()}"
        pad = max(0, self._shown - len(text))
        self._shown = len(text)
        self._stream.write("\r" + text + " " * pad + ("\n" if final else ""))
        self._stream.flush()


class _Tqdm(Progress):
    """A ``tqdm`` bar (rate and ETA are tqdm's own)."""

    def __init__(self, stream: TextIO, prefix: str, **kw: Any) -> None:
        super().__init__(**kw)
        from tqdm import tqdm  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self._bar = tqdm(total=self.total, initial=self.initial, unit=" " + self.unit, unit_scale=False,
                         desc=prefix.rstrip(": ") or None, file=stream, dynamic_ncols=True, smoothing=0.1)

    def update(self, done: int, **counts: int) -> None:
        step = done - self.done
        super().update(done, **counts)
        if step > 0:
            self._bar.update(step)
        if counts:
            self._bar.set_postfix_str(", ".join(f"{v:,} {k}" for k, v in self.counts.items()), refresh=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bar.close()


def _have_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def make_progress(
    total: Optional[int],
    initial: int = 0,
    mode: str = "auto",
    stream: Optional[TextIO] = None,
    prefix: str = "",
    unit: str = "lines",
    every: float = 5.0,
) -> Progress:
    """A progress display for ``total`` units (None: unknown).

    ``mode``: ``auto`` (tqdm on a terminal when installed, else a plain bar on
    a terminal, else lines every ``every`` seconds), ``bar`` (tqdm when
    installed, else the plain bar, even when not a terminal), ``plain``
    (lines), ``none`` (nothing).
    """
    stream = sys.stderr if stream is None else stream
    kw: Dict[str, Any] = dict(total=total, initial=initial, unit=unit)
    if mode == "none":
        return Progress(**kw)
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if mode == "plain" or (mode == "auto" and not tty):
        return _Lines(stream, prefix, every, **kw)
    if _have_tqdm():
        return _Tqdm(stream, prefix, **kw)
    return _Bar(stream, prefix, **kw)

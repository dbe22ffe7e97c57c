"""Progress display for long commands (``cdp-relay import``): a bar with rate and ETA.

:func:`make_progress` picks one of three displays, all with the same small
interface (``update(done, **counts)``, ``close()``):

- a ``tqdm`` bar on a terminal, when ``tqdm`` is installed (``pip install 'cdp-relay[progress]'``);
- a one-line bar redrawn in place on a terminal without ``tqdm``;
- plain lines every few seconds when stderr is not a terminal (logs, CI).

On a terminal both bars fit its width (asked at every redraw: a resized
window is followed), from 40 columns up: what does not fit is left out a
whole part at a time, never cut.  Each redraw goes back to the start of the
line and erases the rest of it, the line stays two columns short of the edge
(so an echoed ``^C`` does not wrap it), and :meth:`Progress.close` leaves
the final state on one line of its own.

Every display shows the rate (lines/s) and the ETA when the total is known,
as room allows.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, Callable, Dict, Optional, TextIO, Tuple

__all__ = ["Progress", "make_progress", "format_duration", "terminal_width"]


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


def terminal_width(stream: TextIO, default: int = 80) -> int:
    """The width of the terminal ``stream`` writes to (asked again each time: it may be resized);
    ``$COLUMNS`` or ``default`` when it is not a terminal."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
        if columns > 0:
            return columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        return max(1, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return default


#: Columns left free at the end of the line: the terminal echoes ``^C`` there without wrapping.
MARGIN = 2
#: The smallest bar worth drawing, and the widest.
MIN_BAR, MAX_BAR = 6, 40


class _Terminal(Progress):
    """A display that redraws one line in place on a terminal, fitted to its current width.

    The line never reaches the last ``MARGIN`` columns (so neither it nor an echoed ``^C``
    wraps), each redraw returns to the start of the line and erases what was there, and
    :meth:`close` leaves the final state on a line of its own.  What does not fit is left
    out a whole part at a time (the rate, then the ETA, then the name, then the counters):
    never a number cut in two.
    """

    def __init__(self, stream: TextIO, prefix: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._stream = stream
        self._prefix = prefix
        self._last = -1.0
        self._width = 0

    def layout(self, width: int) -> Tuple[str, str, int]:
        """``(prefix, text, bar cells)`` of the line for a terminal ``width`` columns wide: of the
        arrangements that fit, the one showing the most (the counters first, then the ETA, the
        bar, the name, the rate)."""
        usable = max(1, width - MARGIN)
        done, total, unit = self.done, self.total, self.unit
        if total is not None:
            pct = f"{100.0 * done / total if total else 100.0:.0f}%"
            heads = [(f"{done:,}/{total:,} {unit} ({pct})", 1.8), (f"{done:,}/{total:,} ({pct})", 1.6), (pct, 0.0)]
            etas = [(f"ETA {format_duration(self.eta)}", 2.5), ("", 0.0)]
        else:
            heads = [(f"{done:,} {unit}", 1.0), (f"{done:,}", 0.8)]
            etas = [("", 0.0)]
        rate = self.rate
        rates = [(f"{rate:,.0f} {unit}/s", 1.2), (f"{rate:,.0f}/s", 1.0), ("", 0.0)] if rate is not None \
            else [("", 0.0)]
        counts = [f"{value:,} {name}" for name, value in self.counts.items()]
        name = self._prefix.rstrip(": ")
        short = name.rsplit(" ", 1)[-1]
        if len(short) > 16:
            short = short[:13] + "..."
        prefixes = [(self._prefix, 2.0), (short + ": " if short else "", 1.5), ("", 0.0)]
        best: Tuple[float, int, str, str, int] = (-1.0, 0, "", "", 0)
        for head, head_score in heads:
            for eta, eta_score in etas:
                for rate_text, rate_score in rates:
                    for shown in range(len(counts), -1, -1):
                        text = " · ".join(part for part in [head, rate_text, eta, *counts[:shown]] if part)
                        score = head_score + eta_score + rate_score + sum(4.0 - i for i in range(shown))
                        for prefix, prefix_score in prefixes:
                            room = usable - len(prefix) - len(text)
                            bar = 2.0 if total and room >= MIN_BAR + 3 else 0.0
                            if room < 0:
                                continue
                            key = (score + prefix_score + bar, len(prefix) + len(text))
                            if key > best[:2]:
                                cells = min(MAX_BAR, room - 3) if bar else 0
                                best = (key[0], key[1], prefix, text, cells)
        if best[0] < 0:
            return "", heads[-1][0][:usable], 0
        return best[2], best[3], best[4]

    def line(self, width: int) -> str:
        """The whole line for a terminal ``width`` columns wide (at most ``width - MARGIN`` characters)."""
        prefix, text, cells = self.layout(width)
        if not cells:
            return prefix + text
        filled = min(cells, int(cells * self.done / self.total)) if self.total else 0
        return f"{prefix}[{'#' * filled}{'-' * (cells - filled)}] {text}"

    def _due(self, final: bool) -> Optional[int]:
        """The width to redraw at, or None when it is too soon (at most five redraws a second)."""
        now = self._clock()
        width = terminal_width(self._stream)
        if not final and now - self._last < 0.2 and width == self._width:
            return None
        self._last, self._width = now, width
        return width

    def _show(self, final: bool) -> None:
        width = self._due(final)
        if width is None:
            return
        # \r: back to the start of the line; ESC [ K: erase the rest (an echoed ^C, a longer line)
        self._stream.write("\r" + self.line(width) + "\x1b[K" + ("\n" if final else ""))
        self._stream.flush()


#: kept for code that named the fallback bar
_Bar = _Terminal


class _EraseToEnd:
    """The stream tqdm writes to: each redraw also erases the rest of the line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if "\r" in text:
            text = text.rstrip(" ") + "\x1b[K"  # tqdm pads with spaces to the last length instead
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Tqdm(_Terminal):
    """A ``tqdm`` bar: the same fitted line, tqdm drawing the bar itself."""

    def __init__(self, stream: TextIO, prefix: str, **kw: Any) -> None:
        super().__init__(stream, prefix, **kw)
        from tqdm import tqdm  # type: ignore[import-untyped, import-not-found, unused-ignore]  # optional

        width = terminal_width(stream)
        self._bar = tqdm(total=self.total, initial=self.initial, file=_EraseToEnd(stream), ncols=width - MARGIN,
                         dynamic_ncols=False, leave=True, mininterval=0, miniters=0, delay=0,
                         bar_format=self._format(width))

    def _format(self, width: int) -> str:
        prefix, text, cells = self.layout(width)
        prefix, text = prefix.replace("{", "{{").replace("}", "}}"), text.replace("{", "{{").replace("}", "}}")
        if not cells:
            return prefix + text
        return f"{prefix}|{{bar:{cells}}}| {text}"

    def _show(self, final: bool) -> None:
        width = self._due(final)
        if width is None:
            return
        bar = self._bar
        bar.n = self.done
        bar.ncols = width - MARGIN
        bar.bar_format = self._format(width)
        if final:
            bar.close()  # draws the line once more, then leaves it with a newline
        else:
            bar.refresh()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._show(final=True)


def _have_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401  # optional (extra progress): is it installed?
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

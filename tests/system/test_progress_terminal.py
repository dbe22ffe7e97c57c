"""The import's progress display in a real pseudo-terminal (issue 19).

``cdp-relay import`` runs in its own process on the slave side of a pty whose
window size is set with TIOCSWINSZ (40, 80 and 200 columns), sending to a real
collector on 127.0.0.1, with tqdm and with the built-in bar.  What it writes to
the terminal is replayed on a small model of a terminal screen (carriage
return, line feed, erase to the end of the line, automatic wrap at the last
column), and the tests check what a person would see: no line wider than the
window (nothing wraps), redraws in place, and at the end exactly one clean
progress line, also after a Ctrl-C typed on the terminal (the tty sends
SIGINT and echoes ``^C``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from analytics.collector import Collector

from ..conftest import WRITE_KEY

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")

ROOT = Path(__file__).resolve().parents[2]
#: Runs the command line with tqdm made unimportable: the built-in bar.
WITHOUT_TQDM = "import sys; sys.modules['tqdm'] = None; from analytics.cli import main; sys.exit(main(sys.argv[1:]))"
WITH_TQDM = "import sys; import tqdm; from analytics.cli import main; sys.exit(main(sys.argv[1:]))"
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
#: A progress line: it shows a percentage ("46%"); the report after it never does.
_PROGRESS = re.compile(r"\d%")


class Screen:
    """Just enough of a terminal: printable characters, CR, LF, ESC[K, and the wrap at the last column."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.lines: List[List[str]] = [[]]
        self.row = 0
        self.col = 0
        self.wraps = 0  #: times a line ran past the last column onto the next
        self.pending = False  #: the cursor is past the last column (the next character wraps)

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            ch = text[i]
            match = _CSI.match(text, i) if ch == "\x1b" else None
            if match:
                if match.group(2) == "K" and match.group(1) in ("", "0"):
                    del self.lines[self.row][self.col:]
                i = match.end()
                continue
            i += 1
            if ch == "\r":
                self.col, self.pending = 0, False
            elif ch == "\n":
                self.row += 1
                self.pending = False
                if self.row == len(self.lines):
                    self.lines.append([])
            elif ch >= " ":
                if self.pending:
                    self.wraps += 1
                    self.row, self.col, self.pending = self.row + 1, 0, False
                    if self.row == len(self.lines):
                        self.lines.append([])
                line = self.lines[self.row]
                line.extend(" " * (self.col - len(line)))
                if self.col < len(line):
                    line[self.col] = ch
                else:
                    line.append(ch)
                if self.col == self.columns - 1:
                    self.pending = True
                else:
                    self.col += 1

    def text(self) -> List[str]:
        return ["".join(line).rstrip() for line in self.lines]


def run_in_terminal(code: str, args: List[str], columns: int, cwd: Path,
                    interrupt_after: Optional[int] = None, timeout: float = 90) -> "tuple[int, str]":
    """Run ``python -c code ARGS`` with a pty (``columns`` wide) as its controlling terminal; type Ctrl-C
    once ``interrupt_after`` messages show as delivered.  Returns (exit status, everything it wrote)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_") and k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm", PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]))

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=cwd, env=env, preexec_fn=controlling_terminal, close_fds=True)
    os.close(slave)
    out = bytearray()
    typed = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if interrupt_after is not None and not typed:
                counts = re.findall(r"([\d,]+) delivered", out.decode("utf-8", "replace"))
                if counts and int(counts[-1].replace(",", "")) >= interrupt_after:
                    os.write(master, b"\x03")  # Ctrl-C, as typed
                    typed = True
        else:
            pytest.fail(f"the import did not end in {timeout} s: {out[-500:]!r}")
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    if interrupt_after is not None:
        assert typed, f"the import ended before Ctrl-C could be typed: {out[-500:]!r}"
    return status, out.decode("utf-8", "replace")


def write_events(path: Path, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            message: Dict[str, object] = {"type": "track", "userId": f"u{i % 9}", "event": "Backfilled",
                                          "messageId": f"m-{i}"}
            f.write(json.dumps(message) + "\n")
        f.write('{"type": "track", "userId": oops}\n')  # one bad line: a second counter on the bar
    return path


def check_screen(output: str, columns: int) -> List[str]:
    """The assertions every run shares; returns the final screen's progress lines.

    The display is everything up to the newline that leaves its final line; the report
    after it is ordinary text, which the terminal may wrap."""
    display = output[:output.index("\n") + 1]
    segments = [_CSI.sub("", s) for s in re.split(r"[\r\n]", display)]
    too_wide = [s for s in segments if len(s) > columns]
    assert too_wide == [], f"lines wider than {columns} columns: {too_wide[:3]}"
    screen = Screen(columns)
    screen.feed(display)
    assert screen.wraps == 0, f"a line wrapped at {columns} columns: {screen.text()}"
    everything = Screen(columns)
    everything.feed(output)
    shown = [line for line in everything.text() if _PROGRESS.search(line)]
    assert len(shown) == 1, f"expected one progress line at {columns} columns, saw: {everything.text()}"
    assert shown == [screen.text()[0]] and len(screen.text()) == 2 and screen.text()[1] == ""
    assert "^C" not in "\n".join(everything.text())
    return shown


MODES = [pytest.param(WITH_TQDM, id="tqdm"), pytest.param(WITHOUT_TQDM, id="built-in")]


@pytest.mark.parametrize("columns", [40, 80, 200])
@pytest.mark.parametrize("code", MODES)
def test_the_bar_fits_redraws_in_place_and_leaves_one_final_line(tmp_path: Path, collector: Collector, code: str,
                                                                 columns: int) -> None:
    """At 40, 80 and 200 columns, with tqdm and without: no line wider than the window, several redraws of
    one line, and at the end one clean line at 100% followed by the report."""
    if code == WITH_TQDM:
        pytest.importorskip("tqdm")
    collector.delay = 0.02  # 250 requests, at most 8 at a time: over half a second of progress to draw
    path = write_events(tmp_path / "events.jsonl", 5000)
    status, output = run_in_terminal(code, ["import", str(path), "-k", WRITE_KEY, "--host", collector.url,
                                            "--batch-size", "20"], columns, tmp_path)
    assert status == 1, output  # the bad line
    assert output.count("\r") >= 3, "the bar was not redrawn in place"
    [final] = check_screen(output, columns)
    assert "100%" in final and "1 bad" in final, final
    if columns >= 80:
        assert "5,000 delivered" in final and "5,001" in final, final
    if columns >= 200:
        assert final.startswith("importing events.jsonl: ") and "lines/s" in final, final
    lines = Screen(columns)
    lines.feed(output)
    text = lines.text()
    after = text[text.index(final) + 1]
    assert after.startswith(f"{path}: 5,000 of 5,001 messages delivered"[:columns]), text
    assert len(collector.unique_ids) == 5000


@pytest.mark.parametrize("columns", [40, 80, 200])
@pytest.mark.parametrize("code", MODES)
def test_ctrl_c_leaves_a_clean_screen(tmp_path: Path, collector: Collector, code: str, columns: int) -> None:
    """Ctrl-C typed on the terminal (SIGINT, and the tty echoes ^C): the import stops (130), and the screen
    holds one clean progress line (no ^C, no stray or second bar) and then the report."""
    if code == WITH_TQDM:
        pytest.importorskip("tqdm")
    collector.delay = 0.01  # about 2,000 messages/s: still running when Ctrl-C comes
    path = write_events(tmp_path / "big.jsonl", 20000)
    status, output = run_in_terminal(code, ["import", str(path), "-k", WRITE_KEY, "--host", collector.url,
                                            "--batch-size", "20"], columns, tmp_path, interrupt_after=200)
    assert status == 130, output[-2000:]
    [final] = check_screen(output, columns)
    screen = Screen(columns)
    screen.feed(output)
    text = screen.text()
    assert text[text.index(final) + 1].startswith(f"{path}: "[:columns]), text
    assert "interrupted by SIGINT" in "".join(text), text
    assert "100%" not in final


def test_not_a_terminal_gets_plain_lines(tmp_path: Path, collector: Collector) -> None:
    """When stderr is a pipe the progress is plain lines: no carriage return, no escape sequence."""
    path = write_events(tmp_path / "piped.jsonl", 500)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-m", "analytics", "import", str(path), "-k", WRITE_KEY, "--host",
                           collector.url], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("importing piped.jsonl: ")]
    assert progress and progress[-1].startswith("importing piped.jsonl: 501/501 lines (100%) · ")
    assert progress[-1].endswith("· 500 delivered · 1 bad")


def test_plain_lines_come_periodically(tmp_path: Path, collector: Collector) -> None:
    """Not a terminal: a plain line every ``progress_every`` seconds while it runs, and one at the end."""
    import io

    from analytics.importer import ImportOptions, run_import

    collector.delay = 0.05  # 150 requests, at most 8 at a time: about a second at the very least
    path = write_events(tmp_path / "slow.jsonl", 3000)
    err = io.StringIO()
    report = run_import(ImportOptions(str(path), write_key=WRITE_KEY, host=collector.url, progress="auto",
                                      progress_every=0.1, batch_size=20), stderr=err)
    assert report.delivered == 3000
    lines = err.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("importing slow.jsonl: ") for line in lines), lines
    assert "\r" not in err.getvalue() and "\x1b" not in err.getvalue()
    assert lines[-1].startswith("importing slow.jsonl: 3,001/3,001 lines (100%)")

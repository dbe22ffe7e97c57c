"""cdp-relay import: formats, bad lines, dry runs, the checkpoint, interruptions and outages.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_import.py``."""

from __future__ import annotations
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from analytics.collector import Collector

from ..conftest import WRITE_KEY
from ..integration.test_import import track, write_jsonl, ids, read_checkpoint, _no_ids  # shared with the tests there


ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` (bounded); fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def cli_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for name in ("CDP_WRITE_KEY", "CDP_HOST", "CDP_GZIP", "CDP_TIMEOUT", "CDP_MAX_RETRIES", "CDP_MAX_RETRY_TIME"):
        env.pop(name, None)
    return env


def test_stdin_with_a_checkpoint_resumes(tmp_path: Path, collector: Collector) -> None:
    """`-` reads stdin; with --checkpoint a rerun on the same input skips what was delivered."""
    data = "".join(json.dumps(track(i)) + "\n" for i in range(50))
    cp = tmp_path / "stdin.checkpoint"
    cmd = [sys.executable, "-m", "analytics", "import", "-", "-k", WRITE_KEY, "--host", collector.url,
           "--checkpoint", str(cp), "--progress", "none"]
    first = subprocess.run(cmd, input=data, capture_output=True, text=True, env=cli_env(), timeout=60)
    assert first.returncode == 0, first.stderr
    assert len(collector.messages) == 50 and read_checkpoint(cp)["line"] == 50
    again = subprocess.run(cmd, input=data + json.dumps(track(50)) + "\n", capture_output=True, text=True,
                           env=cli_env(), timeout=60)
    assert again.returncode == 0, again.stderr
    assert sorted(ids(collector)) == sorted(f"m-{i}" for i in range(51)) and collector.duplicates == 0


def _start_import(path: Path, collector: Collector, tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "analytics", "import", str(path), "-k", WRITE_KEY, "--host", collector.url,
         "--batch-size", "20", "--progress", "plain", *extra],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _assert_checkpoint_is_honest(cp: Dict[str, Any], collector: Collector) -> None:
    """Every message at or below the checkpoint's line (but the retry ones) is at the collector."""
    delivered = set(collector.unique_ids)
    retry = {line for line, _ in cp["retry"]}
    missing = [i for i in range(cp["line"]) if i + 1 not in retry and f"m-{i}" not in delivered]
    assert missing == [], f"the checkpoint claims lines that never arrived: {missing[:10]}"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_interrupted_import_resumes_with_no_loss(tmp_path: Path, collector: Collector, signum: int) -> None:
    """Stopped mid-import (SIGTERM, Ctrl-C, or killed outright), a rerun delivers the rest: nothing is lost."""
    # About 10 s of delivery at the collector's pace, and backpressure keeps the reader at
    # most one queue (1,000) ahead of it: however slow the machine, the import is still
    # running when the first checkpoint appears (every 0.5 s) and the signal lands.
    n = 20000
    path = write_jsonl(tmp_path / "big.jsonl", [track(i) for i in range(n)])
    checkpoint = Path(str(path) + ".checkpoint")
    collector.delay = 0.01  # about 2,000 messages/s
    proc = _start_import(path, collector, tmp_path)
    try:
        wait_until(lambda: len(collector.unique_ids) >= 400 and checkpoint.exists()
                   and read_checkpoint(checkpoint)["line"] > 0, what="the import to get going")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum), err
    assert "Traceback" not in err
    if signum != signal.SIGKILL:
        assert f"interrupted by {signal.Signals(signum).name}" in err and "run the same command again" in err
    cp = read_checkpoint(checkpoint)
    assert 0 < cp["line"] < n, cp
    _assert_checkpoint_is_honest(cp, collector)

    collector.delay = 0.0
    rerun = subprocess.run(
        [sys.executable, "-m", "analytics", "import", str(path), "-k", WRITE_KEY, "--host", collector.url,
         "--progress", "none"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed: lines up to {cp['line']:,} were delivered by an earlier run" in rerun.stderr
    assert collector.unique_ids == {f"m-{i}" for i in range(n)}
    assert read_checkpoint(checkpoint)["line"] == n


def test_collector_outage_mid_import_then_rerun(tmp_path: Path, collector: Collector) -> None:
    """The endpoint goes away mid-import: the import stops with 'cannot reach', exit 1; a rerun finishes it."""
    n = 20000  # about 10 s at the collector's pace: still running when the collector goes down
    path = write_jsonl(tmp_path / "outage.jsonl", [track(i) for i in range(n)])
    checkpoint = Path(str(path) + ".checkpoint")
    collector.delay = 0.01
    proc = _start_import(path, collector, tmp_path, "--max-retry-time", "0.5")
    try:
        wait_until(lambda: len(collector.unique_ids) >= 400, what="the import to get going")
        collector.down()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        collector.up()
    assert proc.returncode == 1, err
    assert f"error: cannot reach {collector.url}: " in err and "Traceback" not in err
    cp = read_checkpoint(checkpoint)
    assert cp["line"] < n
    _assert_checkpoint_is_honest(cp, collector)
    collector.delay = 0.0
    rerun = subprocess.run(
        [sys.executable, "-m", "analytics", "import", str(path), "-k", WRITE_KEY, "--host", collector.url,
         "--progress", "none"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert collector.unique_ids == {f"m-{i}" for i in range(n)}


def test_cli_id_namespace_flag(tmp_path: Path, collector: Collector) -> None:
    """``cdp-relay import --id-namespace NAME`` run as a process gives two files the same ids."""
    for name in ("a.jsonl", "b.jsonl"):
        path = write_jsonl(tmp_path / name, _no_ids(5))
        cmd = [sys.executable, "-m", "analytics", "import", str(path), "-k", WRITE_KEY, "--host", collector.url,
               "--progress", "none", "--id-namespace", "shared"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=60)
        assert done.returncode == 0, done.stderr
    got = ids(collector)
    assert len(got) == 10 and got[:5] == got[5:]


def _cli_import(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "analytics", "import", *args, "--progress", "none"],
                          capture_output=True, text=True, env=cli_env(), timeout=60)


def test_bad_lines_file_and_accepting_a_run_that_skipped_them(tmp_path: Path, collector: Collector) -> None:
    """--bad-lines FILE writes each bad line with its reason and text (once, however many reruns);
    the rerun report says what became of the lines left to send again; --accept-bad-lines makes the run
    a success whose checkpoint forgets them; the fixed lines import from that file later."""
    lines: List[Any] = [track(i) for i in range(10)]
    lines[2] = '{"type": "track", "userId": oops}'
    lines[5] = {"type": "track", "userId": "u", "messageId": "m-5"}  # no event
    lines[7] = track(7, timestamp="yesterday")
    path = write_jsonl(tmp_path / "events.jsonl", lines)
    bad = tmp_path / "events.bad.jsonl"
    args = [str(path), "-k", WRITE_KEY, "--host", collector.url, "--bad-lines", str(bad)]

    first = _cli_import(*args)
    assert first.returncode == 1, first.stderr
    assert f"bad lines written to {bad} (3 new; one JSON object per line: line, reason, text)" in first.stderr
    written = [json.loads(line) for line in bad.read_text().splitlines()]
    assert [(w["line"], w["reason"]) for w in written] == [
        (3, "not valid JSON: Expecting value (column 29)"), (6, "event is required"),
        (8, "timestamp must be an ISO-8601 date-time, got 'yesterday'")]
    assert written[0]["text"] == lines[2] and json.loads(written[1]["text"]) == lines[5]
    assert "--bad-lines FILE --accept-bad-lines" in first.stderr

    again = _cli_import(*args)  # nothing fixed: nothing is sent, and the report says so
    assert again.returncode == 1
    assert ("resumed: lines up to 10 were delivered by an earlier run, but 3 lines it could not send: "
            "0 sent now, 3 still bad") in again.stderr, again.stderr
    assert "sent again" not in again.stderr
    assert len(bad.read_text().splitlines()) == 3  # not written twice

    lines[5] = track(5)  # one fixed in place
    write_jsonl(path, lines)
    fixed = _cli_import(*args)
    assert fixed.returncode == 1 and "3 lines it could not send: 1 sent now, 2 still bad" in fixed.stderr
    assert [json.loads(line)["line"] for line in bad.read_text().splitlines()] == [3, 8]  # 6 was delivered

    accepted = _cli_import(*args, "--accept-bad-lines")
    assert accepted.returncode == 0, accepted.stderr
    assert "bad lines accepted (--accept-bad-lines): skipped, not sent again by a rerun" in accepted.stderr
    assert read_checkpoint(Path(str(path) + ".checkpoint"))["retry"] == []
    after = _cli_import(*args)
    assert after.returncode == 0 and "nothing to send" in after.stderr
    assert sorted(ids(collector)) == sorted(f"m-{i}" for i in range(10) if i not in (2, 7))

    # later: fix the lines set aside and import them as a file of their own
    repaired = [json.loads(w["text"].replace("oops", '"u2", "event": "E", "messageId": "m-2"'))
                if w["line"] == 3 else {**json.loads(w["text"]), "timestamp": "2023-01-02T03:04:07Z"}
                for w in map(json.loads, bad.read_text().splitlines())]
    later = _cli_import(str(write_jsonl(tmp_path / "repaired.jsonl", repaired)), "-k", WRITE_KEY, "--host",
                        collector.url)
    assert later.returncode == 0, later.stderr
    assert sorted(ids(collector)) == sorted(f"m-{i}" for i in range(10))


def test_accept_bad_lines_needs_a_file_and_a_dry_run_can_write_them(tmp_path: Path, collector: Collector) -> None:
    """--accept-bad-lines alone is refused (the lines would be lost); --dry-run --bad-lines lists them in the file."""
    path = write_jsonl(tmp_path / "e.jsonl", [track(0), {"type": "track"}])
    done = _cli_import(str(path), "-k", WRITE_KEY, "--host", collector.url, "--accept-bad-lines")
    assert done.returncode == 2
    assert "--accept-bad-lines needs --bad-lines FILE" in done.stderr and len(done.stderr.splitlines()) == 1
    bad = tmp_path / "dry.bad.jsonl"
    dry = _cli_import(str(path), "--dry-run", "--bad-lines", str(bad), "--accept-bad-lines")
    assert dry.returncode == 0, dry.stderr
    [entry] = [json.loads(line) for line in bad.read_text().splitlines()]
    assert entry["line"] == 2 and entry["reason"] == "track needs userId or anonymousId"
    assert collector.stats()["requests"] == 0

"""cdp-relay import: formats, bad lines, dry runs, the checkpoint, interruptions and outages.

Every test sends to a real collector on 127.0.0.1; the interruption tests run the
command in its own process and stop it with a real signal.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from analytics import RetryPolicy
from analytics.cli import main
from analytics.collector import Collector
from analytics.importer import (
    ImportOptions,
    ImportProblem,
    call_arguments,
    format_report,
    run_import,
)
from analytics.progress import format_duration, make_progress

from .conftest import WRITE_KEY

ROOT = Path(__file__).resolve().parent.parent
FAST = RetryPolicy(max_retries=3, max_time=1.0, base=0.01, cap=0.05)


def track(i: int, **extra: Any) -> Dict[str, Any]:
    message = {"type": "track", "userId": f"user-{i % 7}", "event": "Backfilled", "properties": {"n": i},
               "timestamp": f"2023-01-02T03:04:{i % 60:02d}.123Z", "messageId": f"m-{i}"}
    message.update(extra)
    return message


def write_jsonl(path: Path, messages: List[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for m in messages:
            f.write((m if isinstance(m, str) else json.dumps(m)) + "\n")
    return path


def options(path: Path, collector: Collector, **kw: Any) -> ImportOptions:
    kw.setdefault("write_key", WRITE_KEY)
    kw.setdefault("host", collector.url)
    kw.setdefault("progress", "none")
    kw.setdefault("retry_policy", FAST)
    return ImportOptions(path=str(path), **kw)


def ids(collector: Collector) -> List[str]:
    return [m["messageId"] for m in collector.messages]


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


def read_checkpoint(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())


# -- formats and what is sent ------------------------------------------------------------------


def test_jsonl_import_keeps_timestamps_and_message_ids(tmp_path: Path, collector: Collector) -> None:
    """Every line arrives once, with the file's timestamp (to the millisecond) and messageId."""
    path = write_jsonl(tmp_path / "events.jsonl", [track(i) for i in range(500)])
    report = run_import(options(path, collector))
    assert report.exit_code == 0, format_report(report)
    assert report.delivered == report.records == 500 and report.bad_count == 0
    got = {m["messageId"]: m for m in collector.messages}
    assert sorted(got) == sorted(f"m-{i}" for i in range(500)) and collector.duplicates == 0
    assert got["m-7"]["timestamp"] == "2023-01-02T03:04:07.123+00:00"
    assert got["m-7"]["properties"] == {"n": 7} and got["m-7"]["userId"] == "user-0"
    cp = read_checkpoint(Path(str(path) + ".checkpoint"))
    assert cp["line"] == 500 and cp["retry"] == [] and cp["delivered"] == 500


def test_lines_without_message_id_get_the_same_derived_id_on_every_run(tmp_path: Path, collector: Collector) -> None:
    """A line without messageId gets an id derived from its line and content: a rerun repeats it."""
    lines = [{k: v for k, v in track(i).items() if k != "messageId"} for i in range(30)]
    lines.append(lines[0])  # an identical line elsewhere is another message
    path = write_jsonl(tmp_path / "noids.jsonl", lines)
    assert run_import(options(path, collector)).exit_code == 0
    first = ids(collector)
    assert len(set(first)) == 31
    assert run_import(options(path, collector, restart=True)).exit_code == 0
    assert ids(collector)[31:] == first and collector.duplicates == 31


def test_gzipped_file_and_all_six_types(tmp_path: Path, collector: Collector) -> None:
    """A .gz file is read directly; all six types map to their calls; server-added fields are ignored."""
    messages = [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "receivedAt": "x", "sentAt": "y"},
        {"type": "track", "anonymousId": "a1", "event": "Clicked", "context": {"ip": "10.0.0.1"}},
        {"type": "page", "userId": "u1", "name": "Pricing", "category": "Docs", "properties": {"url": "/p"}},
        {"type": "screen", "userId": "u1", "name": "Home"},
        {"type": "group", "userId": "u1", "groupId": "acme", "objectTypeId": "1", "traits": {"name": "Acme"}},
        {"type": "alias", "previousId": "a1", "userId": "u1", "integrations": {"All": True}},
    ]
    path = tmp_path / "all.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(m) for m in messages) + "\n\n")
    report = run_import(options(path, collector))
    assert report.exit_code == 0 and report.unused_fields == {}, format_report(report)
    got = collector.messages
    assert [m["type"] for m in got] == [m["type"] for m in messages]
    assert got[1]["context"]["ip"] == "10.0.0.1" and got[2]["category"] == "Docs"
    assert got[4]["objectTypeId"] == "1" and got[5]["previousId"] == "a1"
    assert "receivedAt" not in got[0]


def test_csv_columns_dotted_json_and_typed(tmp_path: Path, collector: Collector) -> None:
    """CSV: dotted columns nest, JSON cells are typed, :string keeps text, object columns merge, quoted newlines work."""
    path = tmp_path / "users.csv"
    path.write_text(
        "userId,traits,traits.plan,traits.seats,traits.zip:string,traits.tags,traits.note,timestamp,context.ip\n"
        'u1,"{""name"": ""Ada""}",pro,3,02134,"[""a"", ""b""]",plain text,2022-01-01T00:00:00Z,10.0.0.1\n'
        'u2,,team,,042,,"two\nlines",,\n'
        "\n"
        "u3,,free,true,1,null,,,\n",
        encoding="utf-8",
    )
    report = run_import(options(path, collector, default_type="identify"))
    assert report.exit_code == 0, format_report(report)
    u1, u2, u3 = collector.messages
    assert u1["traits"] == {"name": "Ada", "plan": "pro", "seats": 3, "zip": "02134", "tags": ["a", "b"],
                            "note": "plain text"}
    assert u1["timestamp"] == "2022-01-01T00:00:00.000+00:00" and u1["context"]["ip"] == "10.0.0.1"
    assert u2["traits"] == {"plan": "team", "zip": "042", "note": "two\nlines"}
    assert u3["traits"] == {"plan": "free", "seats": True, "zip": "1", "tags": None}
    assert read_checkpoint(Path(str(path) + ".checkpoint"))["line"] == 6  # the quoted newline is a line


@pytest.mark.parametrize("header, problem", [
    ("userId,email", "unknown CSV column 'email' (did you mean properties.email or traits.email?)"),
    ("userId,userId", "names column 'userId' twice"),
    ("userId,traits.x:date", "must be 'string' or 'json'"),
    ("userId,traits..x", "is not a field path"),
])
def test_csv_header_problems_stop_before_sending(tmp_path: Path, collector: Collector, header: str,
                                                 problem: str) -> None:
    """A wrong CSV header is a usage problem (nothing is sent), named in one message."""
    path = tmp_path / "bad.csv"
    path.write_text(header + "\nu1,x\n")
    with pytest.raises(ImportProblem, match=problem.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        run_import(options(path, collector, default_type="identify"))
    assert collector.stats()["requests"] == 0


def test_call_arguments_maps_fields_and_names_unused_ones() -> None:
    """The Segment-spec field names map to the call's arguments; others are named as unused."""
    assert call_arguments({"type": "page", "userId": "1", "name": "N", "event": "E", "version": 2}) == (
        "page", {"user_id": "1", "name": "N"}, ["event"])
    assert call_arguments({"userId": "1"}, default_type="identify")[0] == "identify"


# -- bad lines, dry runs, limits ------------------------------------------------------------------


def test_bad_lines_are_reported_by_number_and_the_rest_delivered(tmp_path: Path, collector: Collector,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """Bad lines (JSON, type, fields, size, timestamp) are listed with their line and reason; exit 1."""
    lines: List[Any] = [track(i) for i in range(10)]
    lines[2] = '{"type": "track", "userId": oops}'
    lines[4] = {"type": "track", "userId": "u"}
    lines[5] = {"type": "purchase", "userId": "u"}
    lines[6] = track(6, properties={"blob": "x" * 40_000})
    lines[7] = track(7, timestamp="yesterday")
    lines[8] = "[1, 2]"
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    code = main(["import", str(path), "-k", WRITE_KEY, "--host", collector.url, "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(ids(collector)) == ["m-0", "m-1", "m-3", "m-9"]
    assert "6 bad lines:" in err
    assert "line 3: not valid JSON: Expecting value (column 29)" in err
    assert "line 5: event is required" in err
    assert "line 6: type must be one of identify, track, page, screen, group, alias, not 'purchase'" in err
    assert "line 7: message is " in err and "over the 32768-byte limit" in err
    assert "line 8: timestamp must be an ISO-8601 date-time, got 'yesterday'" in err
    assert "line 9: a message must be a JSON object, not a list" in err
    assert "Traceback" not in err
    cp = read_checkpoint(Path(str(path) + ".checkpoint"))
    assert cp["line"] == 10 and [line for line, _ in cp["retry"]] == [3, 5, 6, 7, 8, 9]


def test_dry_run_checks_every_line_and_sends_nothing(tmp_path: Path, collector: Collector,
                                                     capsys: pytest.CaptureFixture) -> None:
    """--dry-run needs no write key, sends nothing, writes no checkpoint, and exits 1 only for bad lines."""
    good = write_jsonl(tmp_path / "good.jsonl", [track(i) for i in range(20)])
    assert main(["import", str(good), "--dry-run", "--host", collector.url, "--progress", "none"]) == 0
    assert "20 of 20 messages valid" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [track(0), {"type": "track"}])
    assert main(["import", str(bad), "--dry-run", "--progress", "none"]) == 1
    err = capsys.readouterr().err
    # the reason names the file's fields (userId), not the library's parameters (user_id)
    assert "1 of 2 messages valid" in err and "line 2: track needs userId or anonymousId" in err
    assert collector.stats()["requests"] == 0
    assert not list(tmp_path.glob("*.checkpoint"))


def test_too_many_bad_lines_stop_reading(tmp_path: Path, collector: Collector) -> None:
    """Past --max-bad-lines the file is probably the wrong one: reading stops, exit 1."""
    path = write_jsonl(tmp_path / "junk.jsonl", ["not json"] * 50)
    report = run_import(options(path, collector, max_bad=5))
    assert report.exit_code == 1 and report.bad_count == 6 and report.stopped_early
    assert "more than 5 bad lines" in "\n".join(format_report(report))


def test_unknown_fields_are_ignored_and_counted(tmp_path: Path, collector: Collector) -> None:
    """A field that is not part of the call is ignored, and the report names it with a count."""
    path = write_jsonl(tmp_path / "extra.jsonl", [track(i, propeties={"typo": 1}) for i in range(3)])
    report = run_import(options(path, collector))
    assert report.exit_code == 0 and report.unused_fields == {"propeties": (3, 1)}
    assert "warning: field 'propeties' is not part of these messages" in "\n".join(format_report(report))


# -- the checkpoint --------------------------------------------------------------------------------


def test_rerun_after_success_sends_nothing(tmp_path: Path, collector: Collector,
                                           capsys: pytest.CaptureFixture) -> None:
    """A second run of a finished import skips every line and says so; --restart sends again."""
    path = write_jsonl(tmp_path / "done.jsonl", [track(i) for i in range(100)])
    args = ["import", str(path), "-k", WRITE_KEY, "--host", collector.url, "--progress", "none"]
    assert main(args) == 0
    requests_after_first = collector.stats()["requests"]
    capsys.readouterr()
    assert main(args) == 0
    assert "nothing to send: every line was delivered before" in capsys.readouterr().err
    assert collector.stats()["requests"] == requests_after_first
    assert main(args + ["--restart"]) == 0
    assert collector.duplicates == 100


def test_rerun_sends_only_the_fixed_bad_lines_and_the_rest(tmp_path: Path, collector: Collector) -> None:
    """Bad lines stay in the checkpoint's retry list; once fixed, a rerun sends them and nothing else twice."""
    lines: List[Any] = [track(i) for i in range(40)]
    lines[9] = {"type": "track", "userId": "u", "messageId": "m-9"}  # no event
    path = write_jsonl(tmp_path / "fixme.jsonl", lines)
    assert run_import(options(path, collector)).exit_code == 1
    assert len(collector.messages) == 39
    lines[9] = track(9)
    write_jsonl(path, lines)  # same length: line 40 is unchanged
    report = run_import(options(path, collector))
    assert report.exit_code == 0 and report.records == 1, format_report(report)
    assert sorted(ids(collector)) == sorted(f"m-{i}" for i in range(40)) and collector.duplicates == 0
    assert read_checkpoint(Path(str(path) + ".checkpoint"))["retry"] == []


def test_a_changed_file_is_not_resumed(tmp_path: Path, collector: Collector, capsys: pytest.CaptureFixture) -> None:
    """When the line at the checkpoint differs, the import refuses to skip anything (exit 2, one line)."""
    path = write_jsonl(tmp_path / "changing.jsonl", [track(i) for i in range(10)])
    args = ["import", str(path), "-k", WRITE_KEY, "--host", collector.url, "--progress", "none"]
    assert main(args) == 0
    write_jsonl(path, [track(i + 100) for i in range(10)])
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cdp-relay import: error: ") and "changed since the checkpoint" in err
    assert "--restart" in err and len(err.splitlines()) == 1
    write_jsonl(path, [track(i) for i in range(5)])
    assert main(args) == 2 and "shorter than when the checkpoint" in capsys.readouterr().err
    assert main(args + ["--restart"]) == 0


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


def test_unreadable_or_unwritable_checkpoint_is_a_usage_error(tmp_path: Path, collector: Collector) -> None:
    """A corrupt checkpoint, or one that cannot be written, stops the import before it sends."""
    path = write_jsonl(tmp_path / "e.jsonl", [track(0)])
    Path(str(path) + ".checkpoint").write_text("{not json")
    with pytest.raises(ImportProblem, match="cannot read the checkpoint"):
        run_import(options(path, collector))
    with pytest.raises(ImportProblem, match="cannot write the checkpoint"):
        run_import(options(path, collector, checkpoint=str(tmp_path / "no" / "such" / "dir.checkpoint")))
    assert collector.stats()["requests"] == 0


# -- delivery failures --------------------------------------------------------------------------------


def test_a_bad_write_key_stops_the_import_at_once(tmp_path: Path, collector: Collector) -> None:
    """A 401 stops reading, says the key was refused, exits 1, and the checkpoint stays at the start."""
    path = write_jsonl(tmp_path / "k.jsonl", [track(i) for i in range(5000)])
    report = run_import(options(path, collector, write_key="wrong-key"))
    text = "\n".join(format_report(report))
    assert report.exit_code == 1
    assert f"{collector.url} refused the write key (401 unauthorized)" in text
    assert report.records < 5000  # it did not try every line
    assert report.checkpoint_line == 0 and collector.messages == []


def test_messages_the_server_refuses_are_listed_and_kept_for_a_rerun(tmp_path: Path, collector: Collector) -> None:
    """A 400 for one batch: its lines are reported as refused and kept in the checkpoint; the rest arrive."""
    path = write_jsonl(tmp_path / "r.jsonl", [track(i) for i in range(30)])
    collector.fail_next(1, status=400, body={"code": "invalid_message", "message": "batch[0]: nope"})
    report = run_import(options(path, collector, batch_size=10))
    assert report.exit_code == 1
    text = "\n".join(format_report(report))
    # the first batch to arrive is refused: with several requests in flight, any one of the three
    assert re.search(r"line (1|11|21): refused by the server: ", text) and "400 invalid_message: batch[0]: nope" in text
    assert report.bad_count == 10 and len(collector.messages) == 20
    again = run_import(options(path, collector, batch_size=10))
    assert again.exit_code == 0 and again.records == 10
    assert sorted(ids(collector)) == sorted(f"m-{i}" for i in range(30))


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


# -- progress -------------------------------------------------------------------------------------------


def test_plain_progress_lines_show_rate_and_eta(tmp_path: Path, collector: Collector) -> None:
    """Without a terminal the progress is plain lines with lines/s and an ETA."""
    path = write_jsonl(tmp_path / "p.jsonl", [track(i) for i in range(200)])
    err = io.StringIO()
    report = run_import(options(path, collector, progress="plain"), stderr=err)
    assert report.exit_code == 0
    last = err.getvalue().strip().splitlines()[-1]
    assert last.startswith("importing p.jsonl: 200/200 lines (100%) · ")
    assert " lines/s · ETA 0:00 · 200 delivered" in last


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rate_eta_and_the_fallback_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate and ETA from a fake clock; on a terminal without tqdm the plain bar redraws in place."""
    import analytics.progress as progress

    monkeypatch.setattr(progress, "_have_tqdm", lambda: False)
    monkeypatch.setenv("COLUMNS", "120")  # the width of a stream that is no real terminal
    clock = _Clock()
    stream = _TTY()
    bar = make_progress(1000, mode="auto", stream=stream, prefix="importing x: ")
    bar._clock = clock
    bar._started = clock.now
    clock.now += 2.0
    bar.update(250, delivered=200)
    assert bar.rate == 125.0 and bar.eta == 6.0
    assert stream.getvalue() == ("\rimporting x: [##########------------------------------] 250/1,000 lines (25%) · "
                                 "125 lines/s · ETA 0:06 · 200 delivered\x1b[K")
    bar.close()
    assert stream.getvalue().startswith("\r") and stream.getvalue().endswith("\x1b[K\n")
    unknown = make_progress(None, mode="plain", stream=io.StringIO())
    assert unknown.eta is None and "ETA ?" in unknown.describe()
    assert [format_duration(s) for s in (7, 723, 3723, None)] == ["0:07", "12:03", "1:02:03", "?"]


def test_tqdm_bar_when_installed() -> None:
    """With tqdm installed, a terminal gets a tqdm bar with the rate and counts."""
    pytest.importorskip("tqdm")
    stream = _TTY()
    bar = make_progress(100, mode="bar", stream=stream, prefix="importing x: ")
    bar.update(40, delivered=30)
    bar.close()
    text = stream.getvalue()
    assert "importing x" in text and "40/100" in text and "30 delivered" in text


def test_import_through_a_flaky_endpoint_delivers_everything(tmp_path: Path, collector: Collector) -> None:
    """With random 500s and dropped answers (some after storing), every line arrives and the checkpoint completes."""
    collector.set_chaos(fail_rate=0.2, drop_rate=0.1, seed=7)
    path = write_jsonl(tmp_path / "flaky.jsonl", [track(i) for i in range(2000)])
    policy = RetryPolicy(max_retries=30, max_time=20.0, base=0.005, cap=0.02)
    report = run_import(options(path, collector, batch_size=50, retry_policy=policy))
    assert report.exit_code == 0, format_report(report)
    assert collector.unique_ids == {f"m-{i}" for i in range(2000)}
    assert collector.stats()["refused"] > 0  # the chaos did happen
    assert read_checkpoint(Path(str(path) + ".checkpoint"))["line"] == 2000


# -- derived messageIds across files (issue 13) ----------------------------------------------


def _no_ids(count: int) -> List[Dict[str, Any]]:
    return [{"type": "track", "userId": "1", "event": "Login", "properties": {"n": i}} for i in range(count)]


def test_the_same_lines_in_two_files_get_different_ids(tmp_path: Path, collector: Collector) -> None:
    """The same line at the same place of two different files gets two ids; each file's rerun repeats its own."""
    day1 = write_jsonl(tmp_path / "day1.jsonl", _no_ids(20) + [{"type": "track", "userId": "1", "event": "A"}])
    day2 = write_jsonl(tmp_path / "day2.jsonl", _no_ids(20) + [{"type": "track", "userId": "1", "event": "B"}])
    assert run_import(options(day1, collector)).exit_code == 0
    assert run_import(options(day2, collector)).exit_code == 0
    first = ids(collector)
    assert len(first) == 42 and len(set(first)) == 42 and collector.duplicates == 0
    for path in (day1, day2):
        assert run_import(options(path, collector, restart=True)).exit_code == 0
    assert ids(collector)[42:] == first and collector.duplicates == 42


def test_a_moved_or_appended_file_keeps_its_ids(tmp_path: Path, collector: Collector) -> None:
    """Ids name the file by its start: after a move and an append, a restarted import repeats the old ids."""
    lines = [{**m, "properties": {"n": i, "pad": "x" * 1000}} for i, m in enumerate(_no_ids(100))]  # > 64 KiB
    path = write_jsonl(tmp_path / "export.jsonl", lines)
    assert run_import(options(path, collector, checkpoint=None)).exit_code == 0
    first = ids(collector)
    moved = tmp_path / "archive" / "renamed.jsonl"
    moved.parent.mkdir()
    path.rename(moved)
    with open(moved, "a", encoding="utf-8") as f:
        f.write(json.dumps({"type": "track", "userId": "1", "event": "Later"}) + "\n")
    assert run_import(options(moved, collector, checkpoint=None)).exit_code == 0
    assert ids(collector)[100:200] == first and collector.duplicates == 100
    assert ids(collector)[200] not in first


def test_a_resumed_small_file_keeps_its_ids_after_an_append(tmp_path: Path, collector: Collector) -> None:
    """The checkpoint keeps the id namespace: a stored but unconfirmed batch resent after an append keeps its ids."""
    path = write_jsonl(tmp_path / "small.jsonl", _no_ids(10))  # under 64 KiB: appending changes its start
    collector.store_then_drop_next(1)  # stored, but the import never hears so
    once = RetryPolicy(max_retries=0, max_time=1.0)
    assert run_import(options(path, collector, retry_policy=once)).exit_code == 1
    first = ids(collector)
    assert len(first) == 10 and read_checkpoint(Path(str(path) + ".checkpoint"))["line"] == 0
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"type": "track", "userId": "1", "event": "Later"}) + "\n")
    assert run_import(options(path, collector)).exit_code == 0
    assert ids(collector)[10:20] == first and collector.duplicates == 10 and len(collector.messages) == 21


def test_an_explicit_id_namespace_gives_equal_ids_across_files(tmp_path: Path, collector: Collector) -> None:
    """With the same --id-namespace two files with the same lines get the same ids; another namespace, others."""
    one = write_jsonl(tmp_path / "one.jsonl", _no_ids(10))
    two = write_jsonl(tmp_path / "two.jsonl", _no_ids(10) + [{"type": "track", "userId": "2", "event": "X"}])
    assert run_import(options(one, collector, id_namespace="crm-export")).exit_code == 0
    assert run_import(options(two, collector, id_namespace="crm-export")).exit_code == 0
    got = ids(collector)
    assert got[10:20] == got[:10] and collector.duplicates == 10
    assert run_import(options(one, collector, id_namespace="other", restart=True)).exit_code == 0
    assert not set(ids(collector)[21:]) & set(got)


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


# -- bad lines set aside, and the rerun report (issue 19) ---------------------------------------


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

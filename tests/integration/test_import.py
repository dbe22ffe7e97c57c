"""cdp-relay import: formats, bad lines, dry runs, the checkpoint, interruptions and outages.

Every test sends to a real collector on 127.0.0.1; the interruption tests run the
command in its own process and stop it with a real signal.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path
from typing import Any, Dict, List

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

from ..conftest import WRITE_KEY


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


def read_checkpoint(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())


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


def test_unreadable_or_unwritable_checkpoint_is_a_usage_error(tmp_path: Path, collector: Collector) -> None:
    """A corrupt checkpoint, or one that cannot be written, stops the import before it sends."""
    path = write_jsonl(tmp_path / "e.jsonl", [track(0)])
    Path(str(path) + ".checkpoint").write_text("{not json")
    with pytest.raises(ImportProblem, match="cannot read the checkpoint"):
        run_import(options(path, collector))
    with pytest.raises(ImportProblem, match="cannot write the checkpoint"):
        run_import(options(path, collector, checkpoint=str(tmp_path / "no" / "such" / "dir.checkpoint")))
    assert collector.stats()["requests"] == 0


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

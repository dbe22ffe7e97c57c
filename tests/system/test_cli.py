"""cdp-relay / python -m analytics: the six calls, settings from flags and the environment,
errors for people, help with examples, the command registry, and the demo's inspector pointer."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from analytics import cli
from analytics.cli import COMMANDS, command, main
from analytics.collector import Collector

from ..conftest import WRITE_KEY

ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = ("CDP_WRITE_KEY", "CDP_HOST", "CDP_GZIP", "CDP_TIMEOUT", "CDP_MAX_RETRIES", "CDP_MAX_RETRY_TIME")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CDP_* variable leaks in from the machine running the tests."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture, *args: str) -> "tuple[int, str, str]":
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


# -- the six calls -------------------------------------------------------------------------------


def test_track_from_flags_prints_and_sends_the_message(collector: Collector, capsys: pytest.CaptureFixture) -> None:
    """track: flags build the message (typed and nested -p values), it is delivered and printed as JSON."""
    code, out, err = run(capsys, "track", "-k", WRITE_KEY, "--host", collector.url, "-u", "42", "-e", "Signed Up",
                         "-p", "plan=pro", "-p", "seats=3", "-p", "address.city=Paris", "-p", 'code="7"',
                         "--properties", '{"source": "cli", "plan": "free"}', "--context", '{"ip": "10.1.1.1"}',
                         "--timestamp", "2024-05-01T10:00:00Z", "--message-id", "cli-1")
    assert code == 0 and err.startswith(f"cdp-relay track: sent to {collector.url}/v1/batch: 200 OK")
    printed = json.loads(out)
    [got] = collector.messages
    assert printed == got
    assert got["properties"] == {"source": "cli", "plan": "pro", "seats": 3, "address": {"city": "Paris"},
                                 "code": "7"}
    assert got["timestamp"] == "2024-05-01T10:00:00.000+00:00" and got["messageId"] == "cli-1"
    assert got["context"]["ip"] == "10.1.1.1" and got["userId"] == "42" and got["event"] == "Signed Up"


@pytest.mark.parametrize("argv, expected", [
    (["identify", "-u", "u1", "-t", "email=a@example.com", "--traits", '{"name": "Ada"}'],
     {"type": "identify", "userId": "u1", "traits": {"name": "Ada", "email": "a@example.com"}}),
    (["page", "-a", "anon", "--name", "Pricing", "--category", "Docs", "-p", "url=/pricing"],
     {"type": "page", "anonymousId": "anon", "name": "Pricing", "category": "Docs", "properties": {"url": "/pricing"}}),
    (["screen", "-u", "u1", "--name", "Home"], {"type": "screen", "userId": "u1", "name": "Home"}),
    (["group", "-u", "u1", "-g", "acme", "--object-type-id", "1", "-t", "name=Acme"],
     {"type": "group", "userId": "u1", "groupId": "acme", "objectTypeId": "1", "traits": {"name": "Acme"}}),
    (["alias", "--previous-id", "anon", "-u", "u1"], {"type": "alias", "previousId": "anon", "userId": "u1"}),
])
def test_each_call_from_flags(collector: Collector, capsys: pytest.CaptureFixture, argv: List[str],
                              expected: Dict[str, Any]) -> None:
    """identify, page, screen, group and alias: the flags become the Segment-spec fields."""
    code, out, err = run(capsys, *argv, "-k", WRITE_KEY, "--host", collector.url, "-q")
    assert (code, out, err) == (0, "", "")
    [got] = collector.messages
    assert {k: got[k] for k in expected} == expected


def test_json_message_from_text_file_and_stdin(collector: Collector, capsys: pytest.CaptureFixture,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--json takes a message as text, @FILE or - (stdin); flags override its fields."""
    base = ["-k", WRITE_KEY, "--host", collector.url, "-q"]
    assert run(capsys, "track", "--json", '{"userId": "1", "event": "A", "properties": {"x": 1}}', *base)[0] == 0
    path = tmp_path / "m.json"
    path.write_text('{"type": "track", "userId": "2", "event": "B"}')
    assert run(capsys, "track", "--json", f"@{path}", "-e", "B2", *base)[0] == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"anonymousId": "3", "event": "C"}'))
    assert run(capsys, "track", "--json", "-", *base)[0] == 0
    assert [(m.get("userId") or m.get("anonymousId"), m["event"]) for m in collector.messages] == [
        ("1", "A"), ("2", "B2"), ("3", "C")]
    code, _, err = run(capsys, "identify", "--json", '{"type": "track", "userId": "1"}', *base)
    assert code == 2 and "use cdp-relay track" in err


def test_dry_run_needs_no_key_and_sends_nothing(collector: Collector, capsys: pytest.CaptureFixture) -> None:
    """--dry-run checks and prints the message; nothing is sent, no write key is needed."""
    code, out, err = run(capsys, "track", "-u", "1", "-e", "Checked", "--dry-run", "--host", collector.url)
    assert code == 0 and json.loads(out)["event"] == "Checked"
    assert collector.stats()["requests"] == 0


# -- settings: flags, environment ----------------------------------------------------------------------


def test_environment_variables_and_flags_win(collector: Collector, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """CDP_WRITE_KEY, CDP_HOST and CDP_GZIP are read; a flag wins over its variable."""
    monkeypatch.setenv("CDP_WRITE_KEY", WRITE_KEY)
    monkeypatch.setenv("CDP_HOST", collector.url)
    monkeypatch.setenv("CDP_GZIP", "yes")
    assert run(capsys, "track", "-u", "1", "-e", "FromEnv", "-q")[0] == 0
    assert collector.batches[-1].compressed_size is not None  # gzipped
    monkeypatch.setenv("CDP_WRITE_KEY", "wrong-key")
    monkeypatch.setenv("CDP_HOST", "http://127.0.0.1:9")
    assert run(capsys, "track", "-u", "1", "-e", "FromFlags", "-k", WRITE_KEY, "--host", collector.url,
               "--no-gzip", "-q")[0] == 0
    assert collector.batches[-1].compressed_size is None
    assert [m["event"] for m in collector.messages] == ["FromEnv", "FromFlags"]


@pytest.mark.parametrize("name, value, message", [
    ("CDP_TIMEOUT", "soon", "CDP_TIMEOUT must be a number like --timeout (got 'soon')"),
    ("CDP_GZIP", "maybe", "CDP_GZIP must be 1 or 0"),
    ("CDP_MAX_RETRIES", "-1", "--max-retries must be at least 0"),
])
def test_bad_environment_values_are_usage_errors(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                                 name: str, value: str, message: str) -> None:
    """A variable that cannot be used is named in one line, exit 2."""
    monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "track", "-k", "k", "-u", "1", "-e", "x")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# -- errors for people -----------------------------------------------------------------------------------


def test_errors_are_one_line_with_the_right_status(collector: Collector, capsys: pytest.CaptureFixture,
                                                   tmp_path: Path) -> None:
    """Usage errors, an invalid message, no key, a refused key, an unreachable host: one line each, 2 or 1."""
    dead = Collector()
    dead.start()
    dead_url = dead.url
    dead.stop()  # nothing listens there now
    cases = [
        (["track", "-u", "1", "-k", "k", "--bogus"], 2, "cdp-relay track: error: unrecognized arguments: --bogus"),
        (["frobnicate"], 2, "unknown command 'frobnicate'; the commands are track, identify"),
        (["track", "-k", "k", "-u", "1"], 2, "cdp-relay track: error: invalid track: -e/--event is required"),
        (["track", "-u", "1", "-e", "x"], 2, "no write key: pass -k/--write-key KEY or set CDP_WRITE_KEY"),
        (["track", "-k", "k", "-u", "1", "-e", "x", "--properties", "[1]"], 2, "--properties must be a JSON object"),
        (["track", "-k", "k", "-u", "1", "-e", "x", "-p", "novalue"], 2, "-p/--property takes KEY=VALUE"),
        (["track", "-k", "wrong", "--host", collector.url, "-u", "1", "-e", "x"], 1,
         f"not delivered: {collector.url} refused the write key (401 unauthorized)"),
        (["track", "-k", "k", "--host", dead_url, "-u", "1", "-e", "x", "--max-retry-time", "0"], 1,
         f"not delivered: cannot reach {dead_url}: "),
        (["import", str(tmp_path / "missing.jsonl"), "-k", "k"], 2, "no such file: "),
        (["import", str(tmp_path), "-k", "k"], 2, "is a directory"),
        (["import", str(tmp_path / "x.jsonl"), "-k", "k", "--batch-size", "0"], 2, "--batch-size must be at least 1"),
    ]
    for argv, status, message in cases:
        code, out, err = run(capsys, *argv)
        assert code == status, (argv, err)
        assert message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert collector.messages == []


def test_no_traceback_from_the_real_command(collector: Collector) -> None:
    """In its own process (python -m analytics, and the console script), errors are one line."""
    commands = [[sys.executable, "-m", "analytics"]]
    script = Path(sys.executable).parent / "cdp-relay"
    if script.exists():
        commands.append([str(script)])
    for prefix in commands:
        r = subprocess.run(prefix + ["track", "-k", "wrong", "--host", collector.url, "-u", "1", "-e", "x"],
                           capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.strip().splitlines() == [
            f"cdp-relay track: error: not delivered: {collector.url} refused the write key (401 unauthorized); "
            "check --write-key or CDP_WRITE_KEY"]
        r = subprocess.run(prefix + ["track", "-u", "1", "-e", "Hi", "-q"], capture_output=True, text=True,
                           env=subprocess_env(CDP_WRITE_KEY=WRITE_KEY, CDP_HOST=collector.url), timeout=60)
        assert (r.returncode, r.stderr) == (0, "")
    assert [m["event"] for m in collector.messages] == ["Hi"] * len(commands)


# -- help and the registry ---------------------------------------------------------------------------------


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture) -> None:
    """--help on cdp-relay and on every command exits 0 and shows examples."""
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "examples:" in out
    for name in COMMANDS:
        assert name in out
    for var in ENV_NAMES:
        assert var in out
    for name in COMMANDS:
        if name == "worker" and importlib.util.find_spec("analytics.worker") is None:
            continue  # reserved for analytics.worker, not in this checkout
        code, out, err = run(capsys, name, "--help")
        assert code == 0, (name, err)
        assert "examples:" in out and ("cdp-relay" in out or "python -m analytics" in out), name


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    """cdp-relay alone lists the commands on stderr, exit 2; --version prints the version."""
    code, out, err = run(capsys)
    assert code == 2 and "COMMAND" in err and "import" in err
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("cdp-relay ")


@pytest.fixture
def scratch_command() -> Iterator[List[Any]]:
    seen: List[Any] = []
    yield seen
    COMMANDS.pop("scratch-args", None)
    COMMANDS.pop("scratch-argv", None)


def test_a_command_is_added_by_registering_one_function(capsys: pytest.CaptureFixture,
                                                        scratch_command: List[Any]) -> None:
    """command(...) registers a function: with arguments it gets the parsed flags, without it the raw argv."""

    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--queue")

    @command("scratch-args", help="a scratch command", examples="examples:\n  cdp-relay scratch-args --queue q\n",
             arguments=arguments)
    def _with_args(args: argparse.Namespace) -> int:
        scratch_command.append(args.queue)
        return 3

    @command("scratch-argv", help="another", examples="examples:\n  cdp-relay scratch-argv anything --goes\n")
    def _with_argv(argv: List[str]) -> int:
        scratch_command.append(argv)
        return 0

    assert run(capsys, "scratch-args", "--queue", "redis://x")[0] == 3
    assert run(capsys, "scratch-argv", "anything", "--goes")[0] == 0
    assert scratch_command == ["redis://x", ["anything", "--goes"]]
    code, out, _ = run(capsys, "--help")
    assert "scratch-args" in out and "cdp-relay scratch-args --queue q" in out
    code, out, _ = run(capsys, "scratch-args", "--help")
    assert code == 0 and "cdp-relay scratch-args --queue q" in out


def test_worker_reads_its_settings_like_every_command() -> None:
    """`worker` is registered with the shared connection flags (the same parser code as the calls and import)."""
    assert "worker" in COMMANDS and COMMANDS["worker"].arguments is not None


def test_logs_stay_quiet_unless_verbose(collector: Collector, capsys: pytest.CaptureFixture) -> None:
    """The SDK's log lines do not leak onto stderr; -v shows them (and restores the logger after)."""
    import logging

    before = (logging.getLogger("customerio").level, list(logging.getLogger("customerio").handlers))
    code, _, err = run(capsys, "track", "-k", "wrong", "--host", collector.url, "-u", "1", "-e", "x")
    assert code == 1 and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "track", "-k", "wrong", "--host", collector.url, "-u", "1", "-e", "x", "-v")
    assert code == 1 and "customerio" in err and len(err.strip().splitlines()) > 1
    assert (logging.getLogger("customerio").level, logging.getLogger("customerio").handlers) == before


# -- collector and demo through the CLI ----------------------------------------------------------------------


def _lines(stream: Any) -> "queue.Queue[str]":
    q: "queue.Queue[str]" = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)
        q.put("")

    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_demo_serve_points_to_the_inspector(tmp_path: Path) -> None:
    """`python -m analytics demo --serve` reports, then prints the inspector URL and keeps serving it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics", "demo", "--events", "200", "--threads", "2", "--serve",
         "--db", str(tmp_path / "demo.db"), "--serve-seconds", "60"],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = _lines(proc.stdout)
        seen: List[str] = []
        while not (seen and seen[-1].startswith("inspector: ")):
            line = lines.get(timeout=60)
            assert line, f"the demo ended early: {''.join(seen)}"
            seen.append(line)
        text = "".join(seen)
        assert "nothing lost." in text
        url = seen[-1].split()[1].rstrip("/")
        page = requests.get(url + "/", timeout=10)
        assert page.status_code == 200 and "inspector" in page.text
        events = requests.get(url + "/_collector/events?limit=1", timeout=10).json()
        assert events["latest"] == 200 and events["stored"].endswith("demo.db")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_demo_without_serve_says_how_to_open_the_inspector(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Without --serve the demo stops its collector and prints the command that serves its database again."""
    code, out, _ = run(capsys, "demo", "--events", "100", "--threads", "1", "--db", str(tmp_path / "d.db"))
    assert code == 0 and "nothing lost." in out
    assert f"python -m analytics collector --db {tmp_path / 'd.db'} --port 8765" in out
    assert "http://127.0.0.1:8765/" in out
    with Collector(db_path=str(tmp_path / "d.db")) as again:  # the events are there to browse
        assert again.stats()["unique"] == 100


def test_cli_module_documents_how_to_add_a_command() -> None:
    """The module doc tells how to add a command (the worker's author reads it)."""
    assert "Adding a command" in (cli.__doc__ or "")


def test_tools_pages_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python example of the command line and collector pages runs (each starts its own local
    collector)."""
    import socket

    from ..integration.test_docs_examples import extract_blocks

    blocks = [b for name in ("cli.rst", "collector.rst")
              for b in extract_blocks((ROOT / "docs" / "guides" / name).read_text(encoding="utf-8"), name)]
    assert len(blocks) >= 2
    real = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert str(host) in ("127.0.0.1", "localhost", "::1"), f"the example tried to reach {host}"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    for block in blocks:
        exec(compile(block.code, f"{block.path}:{block.line}", "exec"), {"__name__": f"tools_{block.index}"})


# -- issue 19: the command line as people use it, through real processes ------------------------------


def cdp(*args: str, input: "str | None" = None, timeout: float = 60, **env: str) -> "subprocess.CompletedProcess[str]":
    """Run ``python -m analytics ARGS`` in its own process (no CDP_* variable but those given)."""
    return subprocess.run([sys.executable, "-m", "analytics", *args], capture_output=True, text=True,
                          env=subprocess_env(**env), input=input, timeout=timeout)


def test_a_bare_loopback_host_port_is_plain_http(collector: Collector) -> None:
    """--host 127.0.0.1:PORT (no scheme) reaches the local collector over http://, as CDP_HOST too;
    the help says which scheme a bare HOST:PORT gets."""
    bare = collector.url.split("://", 1)[1]
    done = cdp("track", "-k", WRITE_KEY, "--host", bare, "-u", "1", "-e", "Bare", "-q")
    assert (done.returncode, done.stderr) == (0, "")
    port = bare.rsplit(":", 1)[1]
    done = cdp("track", "-u", "1", "-e", "BareEnv", "-q", CDP_WRITE_KEY=WRITE_KEY, CDP_HOST=f"localhost:{port}")
    assert (done.returncode, done.stderr) == (0, "")
    assert [m["event"] for m in collector.messages] == ["Bare", "BareEnv"]
    helped = cdp("track", "--help")
    assert "A bare HOST:PORT means http:// for this machine" in " ".join(helped.stdout.split())


def test_a_refused_connection_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    """Nothing listens at --host: one call gives up after its few quick retries (2 by default) and says so;
    -k/--max-retries and CDP_MAX_RETRIES set how many."""
    dead = Collector()
    dead.start()
    url = dead.url
    dead.stop()  # nothing listens there now
    base = ("track", "-k", WRITE_KEY, "--host", url, "-u", "1", "-e", "x")
    done = cdp(*base)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    where = url.split("://", 1)[1]
    assert line.startswith(f"cdp-relay track: error: not delivered: cannot reach {url}: connection refused, "
                           f"nothing listens at {where} (3 attempts); is the collector running?"), line
    assert "--max-retries N" in line
    done = cdp(*base, "--max-retries", "0")
    assert "nothing listens at" in done.stderr and "(1 attempt)" in done.stderr
    done = cdp(*base, CDP_MAX_RETRIES="1")
    assert "(2 attempts)" in done.stderr
    helped = " ".join(cdp("track", "--help").stdout.split())
    assert "retries of a failed request (default 2; 0: one attempt) [CDP_MAX_RETRIES]" in helped


@pytest.mark.parametrize("argv, message", [
    (["track", "-e", "x"], "invalid track: track needs -u/--user-id or -a/--anonymous-id"),
    (["track", "-u", "1"], "invalid track: -e/--event is required"),
    (["group", "-u", "1"], "invalid group: group needs -g/--group-id"),
    (["alias", "-u", "1"], "invalid alias: alias needs --previous-id"),
    (["group", "-u", "1", "-g", "acme", "--object-type-id", "x"], "invalid group: --object-type-id must be a whole "
                                                                  "number such as '1', got 'x'"),
    (["track", "-u", "1", "-e", "x", "--timestamp", "event"], "invalid track: --timestamp must be an ISO-8601 "
                                                               "date-time, got 'event'"),
])
def test_errors_name_the_flags(argv: List[str], message: str) -> None:
    """A message check's error names the flag to fix (-u/--user-id), not a Python parameter (user_id)."""
    done = cdp(*argv, "-k", WRITE_KEY, "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"cdp-relay {argv[0]}: error: {message}"]
    assert "user_id" not in done.stderr and "group_id" not in done.stderr


def test_dry_run_is_marked_and_a_send_says_where_it_went(collector: Collector) -> None:
    """--dry-run prints the message and says it was not sent; a real send prints it and one line naming the
    URL and the server's answer; -v shows each attempt with the answer's headers and body; -q nothing."""
    common = ("track", "-k", WRITE_KEY, "--host", collector.url, "-u", "1", "-e", "Signed Up")
    dry = cdp(*common, "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["event"] == "Signed Up"
    assert dry.stderr.strip().splitlines() == [
        f"cdp-relay track: dry run: the message above is valid and was NOT sent (drop --dry-run to send it to "
        f"{collector.url})"]
    assert collector.stats()["requests"] == 0
    sent = cdp(*common)
    assert sent.returncode == 0 and json.loads(sent.stdout)["messageId"] == collector.messages[0]["messageId"]
    [line] = sent.stderr.strip().splitlines()
    assert re.fullmatch(rf"cdp-relay track: sent to {re.escape(collector.url)}/v1/batch: 200 OK "
                        r'\{"success": ?true\} \(\d+ ms\)', line), line
    verbose = cdp(*common, "-v")
    assert verbose.returncode == 0
    assert f"attempt 1: POST {collector.url}/v1/batch (" in verbose.stderr
    assert "Content-Type: application/json" in verbose.stderr and "body: {" in verbose.stderr
    quiet = cdp(*common, "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert len(collector.messages) == 3


@pytest.mark.parametrize("flags, message", [
    (["-p", "a=1", "-p", "a.b=2"], "-p a.b=2 conflicts with -p a=1: a cannot be both a value and an object holding b"),
    (["-p", "a.b=2", "-p", "a=1"], "-p a=1 conflicts with -p a.b=2: a cannot be both a value and an object holding b"),
    (["-p", "plan=pro", "-p", "plan=free"], "-p plan=free conflicts with -p plan=pro: plan is given twice"),
    (["--properties", '{"a": 1}', "-p", "a.b=2"], "-p a.b=2: a is 1 in --properties, not an object"),
    (["-p", "a..b=1"], "-p/--property a..b=1: 'a..b' is not a key or a dotted path such as address.city"),
])
def test_conflicting_properties_are_refused(collector: Collector, flags: List[str], message: str) -> None:
    """-p a=1 -p a.b=2 (either order), one key given two values, or a dotted key under a JSON value: refused
    in one line, nothing sent; disjoint dotted keys and a flag overriding a --properties key still work."""
    done = cdp("track", "-k", WRITE_KEY, "--host", collector.url, "-u", "1", "-e", "x", *flags)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"cdp-relay track: error: {message}"]
    ok = cdp("track", "-k", WRITE_KEY, "--host", collector.url, "-u", "1", "-e", "x", "-q", "-p", "a.b=1",
             "-p", "a.c=2", "-p", "plan=pro", "--properties", '{"plan": "free"}')
    assert ok.returncode == 0, ok.stderr
    [got] = collector.messages
    assert got["properties"] == {"plan": "pro", "a": {"b": 1, "c": 2}}
    traits = cdp("identify", "-k", WRITE_KEY, "--host", collector.url, "-u", "1", "-t", "x=1", "-t", "x.y=2")
    assert traits.returncode == 2 and "-t x.y=2 conflicts with -t x=1" in traits.stderr


def test_a_mistyped_command_or_flag_gets_a_suggestion() -> None:
    """`trak` gets "did you mean track?", `imprt` import; an unknown word lists the commands; --hots gets --host."""
    done = cdp("trak", "-u", "1")
    assert done.returncode == 2
    assert done.stderr.strip() == "cdp-relay: error: unknown command 'trak'; did you mean track? (see cdp-relay --help)"
    assert "did you mean import?" in cdp("imprt", "x.jsonl").stderr
    assert "the commands are track, identify, page" in cdp("xyzzy").stderr
    done = cdp("track", "--hots", "127.0.0.1:1", "-u", "1", "-e", "x")
    assert done.returncode == 2 and "unrecognized arguments: --hots 127.0.0.1:1 (did you mean --host?)" in done.stderr


def _bash_complete(script: Path, *words: str) -> List[str]:
    """What the generated bash completion offers for the command line ``words`` (the last one being typed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    code = (f"source {script}\n"
            f"COMP_WORDS=({quoted}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=()\n"
            "_cdp_relay\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_bash_completion_is_generated_from_the_parser(tmp_path: Path) -> None:
    """`cdp-relay completion bash` is a valid bash script (bash -n) that completes command names, each
    command's options (the worker's --no-gzip too) and the choices of an option, with no new dependency."""
    done = cdp("completion", "bash")
    assert done.returncode == 0 and done.stderr == ""
    script = tmp_path / "cdp-relay.bash"
    script.write_text(done.stdout)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    assert _bash_complete(script, "cdp-relay", "tr") == ["track"]
    assert _bash_complete(script, "cdp-relay", "i") == ["identify", "import"]
    assert set(COMMANDS) <= set(_bash_complete(script, "cdp-relay", ""))
    assert _bash_complete(script, "cdp-relay", "import", "events.jsonl", "--format", "") == [
        "auto", "jsonl", "csv", "tsv"]
    assert _bash_complete(script, "cdp-relay", "worker", "--no") == ["--no-gzip"]
    assert _bash_complete(script, "cdp-relay", "track", "-u", "42", "--ho") == ["--host"]
    assert _bash_complete(script, "cdp-relay", "track", "--host", "") == []  # a URL to type
    (tmp_path / "events.jsonl").write_text("")
    assert _bash_complete(script, "cdp-relay", "import", str(tmp_path / "ev")) == [str(tmp_path / "events.jsonl")]
    # the script follows the parser: a command registered later shows up in a new script
    assert "completion" in _bash_complete(script, "cdp-relay", "c")


@pytest.mark.skipif(not shutil.which("zsh"), reason="needs zsh")
def test_zsh_completion_is_valid_and_registers_itself(tmp_path: Path) -> None:
    """`cdp-relay completion zsh` passes zsh -n, and sourced after compinit it is the completion of cdp-relay,
    listing every command and option (with the choices of --format)."""
    done = cdp("completion", "zsh")
    assert done.returncode == 0 and done.stdout.startswith("#compdef cdp-relay")
    script = tmp_path / "_cdp-relay"
    script.write_text(done.stdout)
    assert subprocess.run(["zsh", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    check = subprocess.run(["zsh", "-f", "-c", f"autoload -Uz compinit && compinit -u -D -d {tmp_path}/zcd; "
                            f"source {script}; print -r -- $_comps[cdp-relay]; whence -w _cdp_relay"],
                           capture_output=True, text=True, timeout=30)
    assert check.stdout.split() == ["_cdp_relay", "_cdp_relay:", "function"], check.stdout + check.stderr
    for name in COMMANDS:
        assert f"'{name}:" in done.stdout
    assert "'--format[" in done.stdout and ":value:(auto jsonl csv tsv)'" in done.stdout
    assert "'--no-gzip[" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["track", "-k", "a\nb", "-u", "1", "-e", "x"], "cdp-relay track: error: -k/--write-key must not contain control"),
    (["worker", "-k", "k", "--queue", "redis://127.0.0.1:6379/0", "--claim-after", "0.001"],
     "cdp-relay worker: error: --claim-after must be at least 0.05, got 0.001"),
    (["worker", "-k", "k", "--queue", "redis://127.0.0.1:6379/0", "--stream-prefix", ""],
     "cdp-relay worker: error: --stream-prefix must be a non-empty string"),
])
def test_option_errors_name_the_flags(argv: List[str], message: str, tmp_path: Path) -> None:
    """A setting the client refuses is reported with the flag that gave it (-k/--write-key), not the
    Python option (write_key); the import too."""
    done = cdp(*argv)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    path = tmp_path / "one.jsonl"
    path.write_text('{"type": "track", "userId": "1", "event": "x"}\n')
    done = cdp("import", str(path), "-k", "a\nb", "--no-checkpoint")
    assert done.returncode == 2 and done.stderr.startswith("cdp-relay import: error: -k/--write-key must not")

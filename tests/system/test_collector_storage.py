"""The collector's SQLite store: what it received survives a restart; the default stays in memory.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_collector_storage.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests
from ..integration.test_collector_storage import TIMEOUT  # shared with the tests there


ROOT = Path(__file__).resolve().parents[2]


def _start(db: "Path | None", *extra: str, cwd: "Path | None" = None,
           env_overrides: "Dict[str, str | None] | None" = None) -> "tuple[subprocess.Popen, str]":
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for name, value in (env_overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    where = ["--db", str(db)] if db is not None else []
    proc = subprocess.Popen([sys.executable, "-m", "analytics", "collector", *where, *extra],
                            cwd=cwd or (db.parent if db is not None else None), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
    return proc, line.split()[-1]


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_collector_command_keeps_a_file_across_restarts(tmp_path: Path) -> None:
    """cdp-relay collector --db FILE: a restarted collector serves what the last one received; --reset empties it."""
    db = tmp_path / "cmd.db"
    proc, url = _start(db)
    try:
        assert post_to(url, [{"type": "track", "userId": "u", "event": "Kept", "messageId": "k-1"}]) == 200
    finally:
        _stop(proc)
    proc, url = _start(db)
    try:
        assert requests.get(url + "/_collector/stats", timeout=TIMEOUT).json()["messages"] == 1
        events = requests.get(url + "/_collector/events", timeout=TIMEOUT).json()
        assert [e["event"] for e in events["events"]] == ["Kept"] and events["stored"] == str(db)
    finally:
        _stop(proc)
    proc, url = _start(db, "--reset")
    try:
        assert requests.get(url + "/_collector/stats", timeout=TIMEOUT).json()["messages"] == 0
    finally:
        _stop(proc)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG layout of Linux and other Unix systems")
@pytest.mark.parametrize("xdg", [True, False])
def test_the_command_keeps_its_default_database_in_the_user_data_directory(tmp_path: Path, xdg: bool) -> None:
    """Without --db the command keeps its records in $XDG_DATA_HOME/cdp-relay/collector.db (or
    ~/.local/share/cdp-relay/ when XDG_DATA_HOME is unset), says so on stderr at start, writes
    nothing in the directory it was started from, and a restart from elsewhere serves the same records."""
    home, work, elsewhere = tmp_path / "home", tmp_path / "work", tmp_path / "elsewhere"
    for d in (home, work, elsewhere):
        d.mkdir()
    data = tmp_path / "xdg-data"
    overrides: Dict[str, Any] = {"HOME": str(home), "XDG_DATA_HOME": str(data) if xdg else None}
    expected = (data if xdg else home / ".local" / "share") / "cdp-relay" / "collector.db"
    proc, url = _start(None, cwd=work, env_overrides=overrides)
    try:
        assert proc.stderr is not None
        said = proc.stderr.readline()
        assert said.startswith(f"records: {expected} "), said
        assert post_to(url, [{"type": "track", "userId": "u", "event": "Kept", "messageId": "k-1"}]) == 200
        assert requests.get(url + "/_collector/events", timeout=TIMEOUT).json()["stored"] == str(expected)
    finally:
        _stop(proc)
    assert expected.is_file() and list(work.iterdir()) == []
    assert (expected.parent.stat().st_mode & 0o777) == 0o700
    proc, url = _start(None, cwd=elsewhere, env_overrides=overrides)
    try:
        assert requests.get(url + "/_collector/stats", timeout=TIMEOUT).json()["messages"] == 1
    finally:
        _stop(proc)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_command_names_a_database_an_earlier_version_left_in_the_current_directory(tmp_path: Path) -> None:
    """Started where an earlier version left ./cdp-relay-collector.db, the command says it is not read
    and how to serve it; it does not touch the file."""
    work = tmp_path / "work"
    work.mkdir()
    old = work / "cdp-relay-collector.db"
    old.write_bytes(b"")
    proc, _ = _start(None, cwd=work, env_overrides={"XDG_DATA_HOME": str(tmp_path / "data")})
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("records: " + str(tmp_path / "data" / "cdp-relay" / "collector.db"))
        note = proc.stderr.readline()
        assert "./cdp-relay-collector.db" in note and "--db cdp-relay-collector.db" in note
    finally:
        _stop(proc)
    assert old.read_bytes() == b"" and sorted(p.name for p in work.iterdir()) == ["cdp-relay-collector.db"]


def test_the_command_says_where_it_cannot_make_its_data_directory(tmp_path: Path) -> None:
    """A data directory that cannot be made: one line naming it and the way out (--db), exit 2."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_DATA_HOME=str(blocker), HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "analytics", "collector"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=30)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"error: cannot create the data directory {blocker / 'cdp-relay'}")
    assert "--db PATH" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_collector_command_reports_an_unusable_database(tmp_path: Path) -> None:
    """A --db that cannot be used: one line on stderr, exit 2."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite")
    r = subprocess.run([sys.executable, "-m", "analytics", "collector", "--db", str(bad)], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: cannot use the database") and len(r.stderr.strip().splitlines()) == 1


def post_to(url: str, messages: List[Dict[str, Any]]) -> int:
    body = json.dumps({"batch": messages, "sentAt": "2024-01-01T00:00:00Z"})
    return requests.post(url + "/v1/batch", data=body, auth=("k", ""), timeout=TIMEOUT).status_code

"""The durable SQLite spool: survives SIGKILL, keeps what it could not send, never crashes the app."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

import analytics
from analytics import Client, RetryPolicy, SpoolError
from analytics.collector import Collector
from analytics.queues import SQLiteQueue
from analytics.queues.sqlite import slot_paths

from ..conftest import FAST_RETRY, WRITE_KEY


def rows(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()


def invariant(s: dict) -> bool:
    lost = sum(s["failed"].values()) + sum(s["dropped"].values())
    return s["accepted"] + s["recovered"] == s["delivered"] + lost + s["pending"]


def seqs(collector: Collector) -> list:
    return [m["properties"]["seq"] for m in collector.messages]


def assert_a_new_client_delivers_what_is_left(spool: str, collector: Collector, n: int) -> None:
    """A new client on ``spool`` finds the ``n`` messages seq 0..n-1 left there and delivers them."""
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    try:
        assert client.stats()["recovered"] == n
        assert client.flush(timeout=10) == 0
    finally:
        client.shutdown()
    assert sorted(seqs(collector)) == list(range(n))


@pytest.fixture
def spool(tmp_path):
    return str(tmp_path / "events.db")


@pytest.fixture
def spool_client(collector, errors, spool):
    made = []

    def make(**kw):
        kw.setdefault("host", collector.url)
        kw.setdefault("on_error", errors)
        kw.setdefault("retry_policy", RetryPolicy(max_retries=10, max_time=30, **FAST_RETRY))
        kw.setdefault("spool_path", spool)
        client = Client(WRITE_KEY, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=5)


def test_messages_are_delivered_and_removed_from_the_file(spool_client, collector, spool, errors):
    client = spool_client()
    for i in range(250):
        client.track("u1", "Spooled", {"seq": i})
    assert client.flush(timeout=10) == 0
    assert collector.wait_for(250, timeout=5)
    assert sorted(seqs(collector)) == list(range(250))
    assert rows(spool) == 0
    s = client.stats()
    assert s["delivered"] == 250 and s["pending"] == 0 and invariant(s)
    assert client.spool_error is None and not errors.calls


def test_shutdown_deadline_with_server_down_keeps_everything(spool_client, spool, errors):
    client = spool_client(host="http://127.0.0.1:9")
    for i in range(50):
        client.track("u1", "Down", {"seq": i})
    assert client.wait_durable(timeout=5) == 0
    assert client.shutdown(timeout=0.3) == 0  # nothing dropped
    assert not errors.calls
    s = client.stats()
    assert s["pending"] == 50 and s["dropped"]["shutdown"] == 0 and invariant(s)
    assert rows(spool) == 50


def test_server_down_never_exhausts_retries_with_a_spool(spool_client, collector, errors):
    """With a spool, a server that is down is waited for: max_retries and max_retry_time do not drop messages."""
    client = spool_client(retry_policy=RetryPolicy(max_retries=1, max_time=0.05, base=0.01, cap=0.02))
    collector.fail_next(30, status=503)
    for i in range(20):
        client.track("u1", "Patient", {"seq": i})
    assert client.flush(timeout=20) == 0
    assert sorted(seqs(collector)) == list(range(20))
    assert not errors.calls
    assert client.stats()["retries"] >= 30


def test_rejected_messages_are_reported_and_removed(spool_client, collector, spool, errors):
    client = spool_client()
    collector.fail_next(1, status=400, body=b'{"code":"invalid","message":"no"}')
    for i in range(10):
        client.track("u1", "Rejected", {"seq": i})
    assert client.flush(timeout=10) == 0
    assert len(errors.items) == 10 and errors.calls[0][0].reason == "rejected"
    assert rows(spool) == 0
    assert invariant(client.stats())


def test_two_clients_on_one_path_take_separate_slots(spool, collector):
    a = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    b = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    try:
        assert a._engine.queue.path == spool and b._engine.queue.path == slot_paths(spool)[1]
        for i in range(30):
            a.track("u1", "A", {"seq": i})
            b.track("u1", "B", {"seq": 100 + i})
        assert a.flush(timeout=10) == 0 and b.flush(timeout=10) == 0
        assert sorted(seqs(collector)) == list(range(30)) + list(range(100, 130))
        assert collector.duplicates == 0
    finally:
        a.shutdown()
        b.shutdown()


def test_every_slot_taken_falls_back_to_memory(tmp_path, collector):
    path = str(tmp_path / "s.db")
    held = [SQLiteQueue(p, 10) for p in slot_paths(path)]
    try:
        client = Client(WRITE_KEY, host=collector.url, spool_path=path)
        assert isinstance(client.spool_error, SpoolError)
        assert "slots" in str(client.spool_error)
        client.track("u1", "Memory", {"seq": 1})
        assert client.flush(timeout=5) == 0
        assert seqs(collector) == [1]
        client.shutdown()
        with pytest.raises(SpoolError):
            Client(WRITE_KEY, host=collector.url, spool_path=path, spool_required=True)
    finally:
        for q in held:
            q.close()
            q.release()


def test_unwritable_path_falls_back_to_memory_with_a_clear_error(tmp_path, collector, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = str(blocker / "events.db")
    client = Client(WRITE_KEY, host=collector.url, spool_path=path)
    try:
        assert isinstance(client.spool_error, SpoolError)
        assert "a-file" in str(client.spool_error)
        assert "kept in memory instead" in caplog.text
        client.track("u1", "Memory", {"seq": 1})
        assert client.flush(timeout=5) == 0
    finally:
        client.shutdown()
    with pytest.raises(SpoolError):
        Client(WRITE_KEY, host=collector.url, spool_path=path, spool_required=True)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs a read-only /sys")
def test_read_only_location_falls_back_to_memory(collector):
    client = Client(WRITE_KEY, host=collector.url, spool_path="/sys/kernel/cdp-relay/events.db")
    try:
        assert isinstance(client.spool_error, SpoolError)
        client.track("u1", "Memory", {"seq": 1})
        assert client.flush(timeout=5) == 0
    finally:
        client.shutdown()


def test_corrupt_file_is_moved_aside_and_a_new_spool_started(spool, collector, caplog):
    with open(spool, "wb") as f:
        f.write(b"this is not a SQLite database" * 100)
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    try:
        assert client.spool_error is None
        assert "not a valid database" in caplog.text
        aside = [n for n in os.listdir(os.path.dirname(spool)) if ".corrupt-" in n]
        assert aside
        client.track("u1", "Fresh", {"seq": 1})
        assert client.flush(timeout=5) == 0
    finally:
        client.shutdown()
    assert seqs(collector) == [1]


def test_disk_full_mid_run_keeps_messages_in_memory(spool_client, collector, errors):
    """A write that fails (SQLITE_FULL) switches the spool to memory: messages still arrive, nothing raises."""
    client = spool_client(host="http://127.0.0.1:9")
    q = client._engine.queue
    with q._db:
        pages = q._conn.execute("PRAGMA page_count").fetchone()[0]
        q._conn.execute(f"PRAGMA max_page_count={pages}")
    big = {"blob": "x" * 4000}
    for i in range(40):
        client.track("u1", "Full", {"seq": i, **big})
    assert client.wait_durable(timeout=5) > 0  # some could not be made durable
    assert isinstance(client.spool_error, SpoolError)
    assert "full" in str(client.spool_error)
    client.host = collector.url
    assert client.flush(timeout=10) == 0
    assert sorted(seqs(collector)) == list(range(40))
    assert not errors.calls
    assert invariant(client.stats())


def test_spool_is_bounded_by_messages_and_by_bytes(spool_client, errors):
    client = spool_client(host="http://127.0.0.1:9", max_queue_size=20)
    results = [client.track("u1", "Bounded", {"seq": i})[0] for i in range(30)]
    assert results.count(False) == 10
    assert [e.reason for e, _ in errors.calls] == ["queue_full"] * 10
    client.shutdown(timeout=0)
    errors.calls.clear()
    other = spool_client(host="http://127.0.0.1:9", spool_path=client._engine.queue.path + "-b.db", spool_max_bytes=3000)
    sent = [other.track("u1", "Bytes", {"seq": i, "pad": "y" * 200})[0] for i in range(30)]
    assert 0 < sent.count(True) < 30
    assert all(e.reason == "queue_full" for e, _ in errors.calls)
    s = other.stats()
    assert s["dropped"]["queue_full"] == sent.count(False) and invariant(s)


def test_backpressure_waits_for_room_in_the_spool(spool_client, collector):
    collector.delay = 0.05
    client = spool_client(max_queue_size=30, max_queue_wait=5.0, upload_size=10)
    results = [client.track("u1", "Wait", {"seq": i})[0] for i in range(120)]
    assert all(results)
    assert client.flush(timeout=20) == 0
    assert sorted(seqs(collector)) == list(range(120))


def test_facade_takes_a_spool_per_client_option(spool, collector):
    client = analytics.Client(WRITE_KEY, host=collector.url, spool_path=spool)
    try:
        client.track("u1", "Facade", {"seq": 1})
        assert client.wait_durable(timeout=5) == 0
        assert client.flush(timeout=5) == 0
    finally:
        client.shutdown()
    assert json.loads(json.dumps(collector.messages[0]))["event"] == "Facade"


def test_spool_options_are_checked(spool):
    with pytest.raises(analytics.ConfigurationError):
        Client(WRITE_KEY, spool_path=12)
    with pytest.raises(analytics.ConfigurationError):
        Client(WRITE_KEY, spool_path=spool, spool_sync="sometimes")
    with pytest.raises(analytics.ConfigurationError):
        Client(WRITE_KEY, spool_path=spool, spool_max_bytes=0)


def test_module_facade_uses_a_spool(spool, collector):
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    analytics.spool_path = spool
    analytics.track("u1", "Facade spool", {"seq": 7})
    assert analytics.default_client._engine.queue.path == spool
    assert analytics.wait_durable(timeout=5) == 0
    assert analytics.flush(timeout=5) == 0
    assert seqs(collector) == [7]
    with pytest.raises(analytics.ConfigurationError):
        analytics.spool_path = 3.5


def _open_app_files(tmp_path, number: int, limit: int = 64) -> list:
    """Open app files until one gets descriptor ``number`` (just freed by the spool); all of them."""
    opened = []
    for i in range(limit):
        path = str(tmp_path / f"app-{i}.log")
        opened.append((os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), path))
        if opened[-1][0] == number:
            return opened
    raise AssertionError(f"descriptor {number} was not free after the shutdown")


def _assert_app_files_intact(opened: list) -> None:
    for fd, path in opened:
        os.fstat(fd)  # still open
        os.write(fd, b"app line\n")
        os.close(fd)
        with open(path, "rb") as f:
            assert f.read() == b"app line\n", path


def test_shutdown_after_a_with_block_and_gc_leave_the_apps_files_alone(spool, collector, tmp_path):
    """Leaving a with block, a second shutdown() and garbage collection close the spool's lock only once."""
    import gc

    with Client(WRITE_KEY, host=collector.url, spool_path=spool) as client:
        client.track("u1", "Once", {"seq": 1})
        lock_fd = client._engine.queue._lock_fd
    opened = _open_app_files(tmp_path, lock_fd)
    client.shutdown()
    client.shutdown(timeout=1)
    del client
    gc.collect()
    _assert_app_files_intact(opened)
    assert seqs(collector) == [1]


def test_a_second_shutdown_does_not_close_an_apps_socket(spool, collector):
    """A second shutdown() leaves alone a listening socket the app opened under the spool's old lock descriptor."""
    import socket

    client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    lock_fd = client._engine.queue._lock_fd
    client.shutdown()
    sockets = []
    for _ in range(64):
        sockets.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        if sockets[-1].fileno() == lock_fd:
            break
    server = sockets[-1]
    assert server.fileno() == lock_fd
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client.shutdown()
    try:
        with socket.create_connection(server.getsockname(), timeout=5):
            conn, _ = server.accept()
            conn.close()
    finally:
        for s in sockets:
            s.close()


def test_the_finalizer_after_shutdown_releases_nothing_again(spool, collector, tmp_path):
    """A client garbage collected after shutdown() does not close the spool's descriptors again."""
    import gc
    import weakref

    client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    lock_fd = client._engine.queue._lock_fd
    client.shutdown()
    opened = _open_app_files(tmp_path, lock_fd)
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None
    _assert_app_files_intact(opened)


def test_release_after_forget_after_fork_closes_the_lock_once(spool, tmp_path):
    """The queue's release() after forget_after_fork() (or twice) leaves the app's descriptors alone."""
    q = SQLiteQueue(spool, maxsize=10)
    lock_fd = q._lock_fd
    q.forget_after_fork()
    opened = _open_app_files(tmp_path, lock_fd)
    q.close()
    q.release()
    q.release()
    q.forget_after_fork()
    _assert_app_files_intact(opened)


@pytest.mark.parametrize("umask", [0, 0o022])
def test_spool_files_and_directories_are_private_whatever_the_umask(tmp_path, collector, umask):
    """The spool's db, -wal, -shm and lock files are 0600 and the directories it creates 0700."""
    import stat

    path = str(tmp_path / "made" / "by" / "spool" / "events.db")
    old = os.umask(umask)
    try:
        client = Client(WRITE_KEY, host="http://127.0.0.1:9", spool_path=path)
        client.track("u1", "Private", {"seq": 1})
        assert client.wait_durable(timeout=5) == 0
        files = [path + suffix for suffix in ("", "-wal", "-shm", ".lock")]
        modes = {f: stat.S_IMODE(os.stat(f).st_mode) for f in files}
        client.shutdown(timeout=0.2)
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(files, 0o600)
    for directory in ("made", "made/by", "made/by/spool"):
        assert stat.S_IMODE(os.stat(tmp_path / directory).st_mode) == 0o700, directory


def test_a_slot_file_left_world_readable_is_made_private(spool, collector):
    """Spool files an older version left 0644 (db, -wal, -shm, lock) are made 0600 when opened."""
    import stat

    q = SQLiteQueue(spool, maxsize=10)
    q.close()
    q.release()
    files = [spool + suffix for suffix in ("", "-wal", "-shm", ".lock")]
    for f in files:
        with open(f, "ab"):
            pass
        os.chmod(f, 0o644)
    q = SQLiteQueue(spool, maxsize=10)
    try:
        assert {stat.S_IMODE(os.stat(f).st_mode) for f in files} == {0o600}
    finally:
        q.close()
        q.release()


class _BrokenTransport:
    """A transport that fails the way a bug or an unusable setting does: not a TransportError."""

    def __init__(self) -> None:
        self.posts = 0

    def post(self, url, body, headers, timeout, proxies):
        self.posts += 1
        raise ValueError("a header value the HTTP library refuses")

    def close(self) -> None:
        pass


def test_an_internal_error_keeps_spooled_rows_for_the_next_start(spool, collector, errors, caplog):
    """An internal error during delivery deletes no row: 100 stay pending, and a later client sends them."""
    broken = _BrokenTransport()
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool, transport=broken, on_error=errors,
                    upload_interval=0.01, retry_policy=RetryPolicy(max_retries=2, max_time=1, base=0.05, cap=0.2))
    with caplog.at_level("ERROR", logger="customerio"):
        for i in range(100):
            client.track("u1", "Kept", {"seq": i})
        assert client.wait_durable(timeout=5) == 0
        assert client.flush(timeout=0.5) == 100
        s = client.stats()
        assert s["pending"] == 100 and sum(s["failed"].values()) == 0 and invariant(s)
        assert client.shutdown(timeout=0.5) == 0
    assert rows(spool) == 100
    assert not errors.calls
    s = client.stats()
    assert s["pending"] == 100 and sum(s["failed"].values()) == 0 and invariant(s)
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1
    assert 2 <= broken.posts < 60  # retried with backoff, not in a tight loop
    assert_a_new_client_delivers_what_is_left(spool, collector, 100)
    assert rows(spool) == 0


def test_an_internal_error_without_a_spool_is_reported_once_per_message(make_client, errors):
    """With the memory queue an internal error reports each message once, as failed, and the counts add up."""
    client = make_client(transport=_BrokenTransport(), upload_interval=0.01)
    for i in range(100):
        client.track("u1", "Lost", {"seq": i})
    assert client.flush(timeout=10) == 0
    s = client.stats()
    assert s["failed"]["retries_exhausted"] == 100 and s["pending"] == 0 and invariant(s)
    assert sorted(item["properties"]["seq"] for item in errors.items) == list(range(100))


def test_shutdown_without_timeout_with_a_spool_and_the_server_down_ends(spool, collector, errors):
    """With a spool and the server down, shutdown() (what a with block does) ends after about max_retry_time, rows kept."""
    import threading

    collector.down()
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool, on_error=errors, upload_interval=0.01,
                    retry_policy=RetryPolicy(max_retries=3, max_time=1, **FAST_RETRY))
    for i in range(30):
        client.track("u1", "Bounded", {"seq": i})
    assert client.wait_durable(timeout=5) == 0
    done = threading.Thread(target=client.__exit__, args=(None, None, None), daemon=True)
    done.start()
    done.join(timeout=20)
    assert not done.is_alive(), "shutdown() did not return"
    assert rows(spool) == 30
    assert not errors.calls
    s = client.stats()
    assert s["pending"] == 30 and invariant(s)

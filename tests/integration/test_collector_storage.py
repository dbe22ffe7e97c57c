"""The collector's SQLite store: what it received survives a restart; the default stays in memory."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

from analytics import Client, RetryPolicy
from analytics.collector import Collector
from analytics.collector.storage import SQLiteStore, StoreError, key_hint, redact_headers

from ..conftest import WRITE_KEY


TIMEOUT = 10


def send(collector: Collector, n: int, gzip: bool = False, prefix: str = "m", key: str = WRITE_KEY) -> None:
    with Client(key, host=collector.url, gzip=gzip, retry_policy=RetryPolicy(max_retries=2, base=0.01, cap=0.02)) as c:
        for i in range(n):
            c.track(f"user-{i % 3}", "Stored", {"i": i}, message_id=f"{prefix}-{i}")
            if i % 10 == 0:
                c.identify(f"user-{i % 3}", {"plan": "pro"}, message_id=f"{prefix}-id-{i}")


def post(collector: Collector, messages: List[Dict[str, Any]], key: str = WRITE_KEY) -> requests.Response:
    body = json.dumps({"batch": messages, "sentAt": "2024-01-01T00:00:00Z"})
    return requests.post(collector.url + "/v1/batch", data=body, auth=(key, ""), timeout=TIMEOUT)


def test_the_default_collector_has_no_store() -> None:
    """Collector() keeps everything in memory: no database, nothing on disk."""
    c = Collector()
    assert c.store is None and c.db_path is None


def test_records_survive_a_restart(tmp_path: Path) -> None:
    """Messages, batches, refusals and counters come back when a collector opens the same file."""
    db = str(tmp_path / "c.db")
    with Collector(write_keys={WRITE_KEY}, db_path=db) as first:
        send(first, 25, gzip=True)
        assert post(first, [], key="other-key").status_code == 401
        before = first.stats()
        messages, batches = first.messages, first.batches
    assert before["messages"] == 28 and before["refused"] == 1
    with Collector(write_keys={WRITE_KEY}, db_path=db) as again:
        assert again.messages == messages
        assert [b.messages for b in again.batches] == [b.messages for b in batches]
        after = again.stats()
        for key in ("messages", "unique", "duplicates", "by_type", "raw_bytes", "compressed_bytes",
                    "gzipped_batches", "accepted_batches", "refused", "refusals_by_code", "requests",
                    "largest_batch_bytes", "largest_batch_messages"):
            assert after[key] == before[key], key
        [refusal] = again.refused
        assert (refusal.status, refusal.code, refusal.method, refusal.path) == (401, "unauthorized", "POST",
                                                                                "/v1/batch")
        # messages sent again after the restart are duplicates
        send(again, 1)
        assert again.duplicates == 2 and again.stats()["messages"] == 30
        r = requests.get(again.url + "/_collector/messages?since=27", timeout=TIMEOUT)
        assert [m["messageId"] for m in r.json()] == ["m-24", "m-0", "m-id-0"]


def test_the_write_key_is_not_stored(tmp_path: Path) -> None:
    """Only a hint of the key is kept; Authorization is redacted in the stored headers."""
    db = tmp_path / "k.db"
    key = "secret-write-key-123"
    with Collector(db_path=str(db)) as c:
        send(c, 3, key=key)
        [batch] = c.batches
    assert batch.write_key == "secr…" and batch.headers["Authorization"] == "<redacted>"
    for f in tmp_path.iterdir():
        assert key.encode() not in f.read_bytes(), f
    assert key_hint("short") == "…"
    assert redact_headers({"Cookie": "a", "X": "b"}) == {"Cookie": "<redacted>", "X": "b"}


def test_reset_empties_the_database(tmp_path: Path) -> None:
    """reset() (and POST /_collector/reset) forgets what the file holds, too."""
    db = str(tmp_path / "r.db")
    with Collector(db_path=db) as c:
        send(c, 5)
        assert requests.post(c.url + "/_collector/reset", json={}, timeout=TIMEOUT).status_code == 200
        assert c.messages == [] and c.stats()["messages"] == 0
        send(c, 2, prefix="after")
    with Collector(db_path=db) as c:
        assert [m["messageId"] for m in c.messages] == ["after-0", "after-id-0", "after-1"]


def test_without_keep_messages_only_counters_and_ids_are_stored(tmp_path: Path) -> None:
    """keep_messages=False with a database: counters and ids survive, bodies are not kept."""
    db = str(tmp_path / "n.db")
    with Collector(db_path=db, keep_messages=False) as c:
        send(c, 10)
        assert c.messages == [] and c.batches == []
    with Collector(db_path=db, keep_messages=False) as c:
        assert c.stats()["unique"] == 11 and c.messages == []
        assert requests.get(c.url + "/_collector/messages", timeout=TIMEOUT).status_code == 409
        assert c.store is not None
        rows, total = c.store.find_messages(type_="identify")
        assert total == 1 and rows[0]["message_id"] == "m-id-0"


def test_in_memory_database(tmp_path: Path) -> None:
    """db_path=':memory:' gives the SQLite records without a file."""
    with Collector(db_path=":memory:") as c:
        send(c, 4)
        assert len(c.messages) == 5 and c.store is not None and c.store.message_count() == 5
    assert list(tmp_path.iterdir()) == []


def test_odd_text_is_stored_and_read_back(tmp_path: Path) -> None:
    """Non-ASCII text, and a lone surrogate escaped in the JSON body, round-trip through the file."""
    with Collector(db_path=str(tmp_path / "u.db")) as c:
        messages = [
            {"type": "track", "userId": "ü-1", "event": "Café ☕", "messageId": "u-1", "properties": {"x": "\U0001f600"}},
            {"type": "track", "userId": "u", "event": "e", "messageId": "u-2", "properties": {"s": "\ud800"}},
        ]
        body = json.dumps({"batch": messages, "sentAt": "2024-01-01T00:00:00Z"})  # \ud800 escaped
        r = requests.post(c.url + "/v1/batch", data=body, auth=("k", ""), timeout=TIMEOUT)
        assert r.status_code == 200
        assert c.messages == messages
        assert c.store is not None
        rows, _ = c.store.find_messages(event="café")
        assert [r["message_id"] for r in rows] == ["u-1"]


def test_concurrent_senders_are_all_stored_in_order(tmp_path: Path) -> None:
    """Several clients at once: every message stored once, ids contiguous, one transaction per batch."""
    with Collector(db_path=str(tmp_path / "t.db")) as c:
        threads = [threading.Thread(target=send, args=(c, 300), kwargs={"prefix": f"t{n}"}) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert c.stats()["unique"] == 4 * 330 and c.duplicates == 0
        assert c.store is not None
        rows, total = c.store.find_messages(limit=500)
        assert total == 1320 and [r["id"] for r in rows] == list(range(1320, 820, -1))


@pytest.mark.parametrize("setup, problem", [
    (lambda p: p.write_text("this is not a database"), "cannot use the database"),
    (lambda p: sqlite3.connect(str(p)).execute("CREATE TABLE other (x)").connection.commit(), "something else"),
    (lambda p: sqlite3.connect(str(p)).execute("PRAGMA user_version = 99").connection.commit(), "another version"),
])
def test_a_file_that_is_not_a_collector_database_is_refused(tmp_path: Path, setup: Any, problem: str) -> None:
    """StoreError, with a reason, for a file that is not one of ours; nothing is changed."""
    path = tmp_path / "other.db"
    setup(path)
    with pytest.raises(StoreError, match=problem):
        Collector(db_path=str(path))
    with pytest.raises(StoreError, match="no directory"):
        SQLiteStore(str(tmp_path / "missing" / "x.db"))


def test_storing_costs_little_per_message(tmp_path: Path) -> None:
    """A database-backed collector still takes thousands of messages a second (one transaction per batch)."""
    with Collector(db_path=str(tmp_path / "s.db")) as c:
        started = time.perf_counter()
        with Client("k", host=c.url, upload_size=100) as client:
            for i in range(5000):
                client.track("u", "Fast", {"i": i})
        elapsed = time.perf_counter() - started
        assert c.stats()["unique"] == 5000
    assert elapsed < 10, f"5,000 messages took {elapsed:.1f} s"


_V1_SCHEMA = """
CREATE TABLE batches (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, sent_at TEXT NOT NULL,
    key_hint TEXT NOT NULL, raw_size INTEGER NOT NULL, compressed_size INTEGER, messages INTEGER NOT NULL,
    first_message INTEGER NOT NULL, headers TEXT NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY, batch_id INTEGER NOT NULL, type TEXT NOT NULL, event TEXT,
    user_id TEXT, anonymous_id TEXT, message_id TEXT NOT NULL, timestamp TEXT, duplicate INTEGER NOT NULL, body TEXT);
CREATE TABLE refusals (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, status INTEGER NOT NULL,
    code TEXT NOT NULL, reason TEXT NOT NULL, raw_size INTEGER NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO batches VALUES (1, 1700000000.0, '2023-11-14T22:13:20Z', 'abcd…', 90, NULL, 1, 1, '{}');
INSERT INTO messages VALUES (1, 1, 'track', 'Old', 'u', NULL, 'old-1', NULL, 0,
    '{"type":"track","event":"Old","userId":"u","messageId":"old-1"}');
INSERT INTO refusals VALUES (1, 1700000001.0, 401, 'unauthorized', 'unknown write key', 10, 'POST', '/v1/batch');
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_brought_up_to_date(tmp_path: Path) -> None:
    """A file written before requests were kept opens: its records read as before, new ones are kept."""
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(str(db))
    conn.executescript(_V1_SCHEMA)
    conn.close()
    with Collector(db_path=str(db)) as c:
        assert [m["messageId"] for m in c.messages] == ["old-1"]
        [batch] = c.batches
        assert batch.sent_at == "2023-11-14T22:13:20Z" and batch.envelope == {}
        assert [(r.code, r.request_id) for r in c.refused] == [("unauthorized", None)]
        assert post(c, [{"type": "track", "userId": "u", "event": "New", "messageId": "new-1"}]).status_code == 200
        kept, total = c.exchanges()
        assert total == 1 and kept[0].batch_id == 2 and kept[0].api == "Data Pipelines"
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()

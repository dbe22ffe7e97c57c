"""A durable queue: encoded messages in a SQLite (WAL) file until the server took them.

How a message moves through it:

1. ``put`` appends the bytes to an in-memory buffer and returns at once (the
   caller's thread never touches the disk).
2. A writer thread commits the buffer to the file in groups, at most
   ``commit_interval`` seconds after the first message of a group arrived
   (one transaction per group).  From that commit on the message is
   **durable**: a process killed with SIGKILL, or any crash of the process,
   does not lose it (the WAL is in the operating system's hands; with
   ``synchronous=FULL`` it also survives a power cut).  ``wait_durable``
   blocks until everything put before the call is committed.
3. The consumer takes committed rows in order and deletes them once each
   message's fate is settled: delivered, or refused by the server for good.
   A message that was sent but whose answer never came (a crash mid-request)
   is sent again by the next process: a duplicate with the same messageId,
   never a loss.

Several processes can use one spool path: each takes a *slot*, the file
itself or ``name-1.db``, ``name-2.db`` ... (up to :data:`MAX_SLOTS`), locked
with ``flock`` for as long as the process uses it.  A process that opens a
slot also adopts the messages of slots no live process holds (left by
processes that crashed or exited with messages unsent).

When the disk fails mid-run (full, read-only, I/O error), the queue logs one
error, keeps what it could not write in memory (``degraded``), and goes on:
the app never sees an exception from it.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import sqlite3
import threading
import time
from typing import Any, Deque, List, Optional, Sequence, Tuple

from ..errors import SpoolError
from .base import QueueBase

__all__ = ["SQLiteQueue", "MAX_SLOTS", "slot_paths"]

log = logging.getLogger("customerio.analytics")

#: How many processes can share one spool path (one slot file each).
MAX_SLOTS = 16
#: Default group-commit window in seconds.
COMMIT_INTERVAL = 0.005

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB NOT NULL
)
"""


def slot_paths(path: str) -> List[str]:
    """The slot files of a spool path: the path itself, then ``stem-1.ext`` ... ``stem-15.ext``."""
    stem, ext = os.path.splitext(path)
    return [path] + [f"{stem}-{i}{ext}" for i in range(1, MAX_SLOTS)]


#: Modes of what the spool creates: it holds personal data, so only the owner may read it.
FILE_MODE = 0o600
DIR_MODE = 0o700


def _private(fd: int) -> None:
    # os.open's mode only applies to a file it creates; a file left by an older version may be 0644
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:  # not our file (another user's): leave it as it is
        pass


def _make_dirs(directory: str) -> None:
    """Create ``directory`` and any missing parents with mode 0700 (makedirs gives parents the umask's mode)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask: 0700 is the most it gives


def _lock_file(path: str) -> Optional[int]:
    """An exclusive non-blocking flock on ``path.lock``; the fd, or None when another process holds it."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        _private(fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    # Create the file ourselves, 0600: SQLite would make it 0644, and gives -wal and -shm the db's mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        _private(fd)
    finally:
        os.close(fd)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(_SCHEMA)
        conn.execute("SELECT count(*) FROM messages").fetchone()  # proves the file is a database
    except BaseException:
        conn.close()
        raise
    for suffix in ("-wal", "-shm"):  # left 0644 by an earlier version that crashed
        try:
            os.chmod(path + suffix, FILE_MODE)
        except OSError:
            pass
    return conn


def _remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


class SQLiteQueue(QueueBase):
    """A bounded FIFO of ``bytes`` kept in a SQLite file until settled (a :class:`~analytics.queues.base.Queue`).

    Unlike :class:`~analytics.queues.MemoryQueue`: ``durable``; ``settle``
    deletes delivered or refused rows, ``keep`` leaves taken rows for the next
    process, ``wait_durable`` waits for the commit, ``recovered`` counts the
    messages found in the file at open; the writer tells the ``on_stored``
    callback given to ``listen`` after each commit.

    ``max_bytes`` bounds the bytes of messages not yet settled (on disk and
    in the buffer); ``maxsize`` bounds the messages waiting to be taken.
    Raises :class:`~analytics.errors.SpoolError` when no slot can be opened.
    """

    durable = True

    def __init__(
        self,
        path: str,
        maxsize: int,
        max_bytes: Optional[int] = None,
        commit_interval: float = COMMIT_INTERVAL,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise SpoolError(f"spool synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self.base_path = os.fspath(path)
        self.path, self._lock_fd, self._conn = self._open_slot(os.fspath(path), synchronous.upper())
        self._db = threading.Lock()  # one connection, used by the writer and the consumer
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._has_buffer = threading.Condition(self._lock)
        self._durable_cv = threading.Condition(self._lock)
        self._buffer: Deque[bytes] = collections.deque()  # put, not committed yet
        self._memory: Deque[bytes] = collections.deque()  # could not be written (degraded)
        self._waiting = 0
        self._closed = False
        self.degraded: Optional[SpoolError] = None
        self._adopt_orphans(synchronous.upper())
        count, size, last = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(max(id), 0) FROM messages"
        ).fetchone()
        self.recovered = count
        self._stored: int = count  # committed rows not taken yet
        self._cursor = 0  # the highest row id taken
        self._bytes = size  # bytes not settled: on disk, buffered, in memory
        self.put_total = count
        self.durable_total: int = count
        self.taken_total = 0
        if count:
            log.info("spool %s: %d message(s) left by an earlier process will be sent", self.path, count)
        self._writer = threading.Thread(target=self._write_loop, name="cdp-relay-spool", daemon=True)
        self._writer.start()

    # --- opening ----------------------------------------------------------

    def _open_slot(self, path: str, synchronous: str) -> Tuple[str, int, sqlite3.Connection]:
        directory = os.path.dirname(os.path.abspath(path))
        try:
            _make_dirs(directory)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory {directory}: {exc}") from exc
        for slot in slot_paths(path):
            try:
                fd = _lock_file(slot)
            except OSError as exc:
                raise SpoolError(f"cannot use the spool {slot}: {exc}") from exc
            if fd is None:
                continue  # another process uses this slot
            try:
                return slot, fd, self._connect_or_reset(slot, synchronous)
            except BaseException:
                os.close(fd)
                raise
        raise SpoolError(f"all {MAX_SLOTS} slots of the spool {path} are in use by other processes")

    @staticmethod
    def _connect_or_reset(path: str, synchronous: str) -> sqlite3.Connection:
        try:
            return _connect(path, synchronous)
        except (OSError, sqlite3.OperationalError) as exc:
            # read-only file or directory, no space, permissions
            raise SpoolError(f"cannot open the spool {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            # not a database (corrupt): keep it aside for a human, start afresh
            aside = f"{path}.corrupt-{int(time.time())}"
            log.error("spool %s is not a valid database (%s); moved it to %s and started a new one", path, exc, aside)
            try:
                os.replace(path, aside)
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.replace(path + suffix, aside + suffix)
                return _connect(path, synchronous)
            except (OSError, sqlite3.DatabaseError) as exc2:
                raise SpoolError(f"cannot replace the corrupt spool {path}: {exc2}") from exc2

    def _adopt_orphans(self, synchronous: str) -> None:
        """Move the rows of slots no live process holds into ours, then remove those files."""
        for slot in slot_paths(self.base_path):
            if slot == self.path or not os.path.exists(slot):
                continue
            try:
                fd = _lock_file(slot)
            except OSError:
                continue
            if fd is None:
                continue  # a live process uses it
            try:
                other = _connect(slot, synchronous)
                try:
                    rows = other.execute("SELECT body FROM messages ORDER BY id").fetchall()
                finally:
                    other.close()
                if rows:
                    with self._conn:
                        self._conn.execute("BEGIN IMMEDIATE")
                        self._conn.executemany("INSERT INTO messages(body) VALUES (?)", rows)
                    log.info("spool: adopted %d message(s) from %s", len(rows), slot)
                _remove_db(slot)
                os.remove(slot + ".lock")
            except (OSError, sqlite3.Error) as exc:
                log.error("spool: could not adopt the messages in %s: %s", slot, exc)
            finally:
                os.close(fd)

    # --- producer side ----------------------------------------------------

    def __len__(self) -> int:
        return self._stored + len(self._buffer) + len(self._memory)

    def ready(self) -> int:
        """Messages the consumer can take now (committed, or kept in memory)."""
        return self._stored + len(self._memory)

    def put(self, item: bytes, timeout: Optional[float] = 0.0) -> int:
        """Append ``item`` for the writer; the new length, or 0 when the spool stayed full."""
        with self._lock:
            if self._full(len(item)):
                if timeout == 0 or self._closed or not self._wait_for_room(len(item), timeout):
                    return 0
            buf = self._buffer
            buf.append(item)
            self.put_total += 1
            self._bytes += len(item)
            if len(buf) == 1:
                self._has_buffer.notify()
            return self._stored + len(buf) + len(self._memory)

    def _full(self, size: int) -> bool:
        if len(self) >= self.maxsize:
            return True
        return self.max_bytes is not None and self._bytes + size > self.max_bytes

    def _wait_for_room(self, size: int, timeout: Optional[float]) -> bool:
        return self._wait_while(lambda: self._full(size), timeout)

    def wait_durable(self, target: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Wait until the first ``target`` messages put (default: all so far) are committed.

        Returns how many of them are not durable yet (0: all are).  Messages
        kept in memory because the disk failed never become durable.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if target is None:
                target = self.put_total
            self._has_buffer.notify()
            while self.durable_total < target and self.degraded is None and not self._writer_gone():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._durable_cv.wait(remaining if remaining is not None else 0.25)
            return max(0, target - self.durable_total)

    def _writer_gone(self) -> bool:
        return not self._writer.is_alive()

    # --- the writer thread --------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._closed:
                    self._has_buffer.wait()
                if not self._buffer and self._closed:
                    return
                closing = self._closed
            if not closing and self.commit_interval > 0:
                time.sleep(self.commit_interval)  # gather a group
            with self._lock:
                batch = list(self._buffer)
                self._buffer.clear()
            if batch:
                self._commit(batch)

    def _commit(self, batch: List[bytes]) -> None:
        error: Optional[BaseException] = None
        if self.degraded is None:
            try:
                with self._db:
                    with self._conn:
                        self._conn.execute("BEGIN IMMEDIATE")
                        self._conn.executemany("INSERT INTO messages(body) VALUES (?)", [(b,) for b in batch])
            except (sqlite3.Error, OSError) as exc:
                error = exc
        with self._lock:
            if self.degraded is None and error is None:
                self._stored += len(batch)
                self.durable_total += len(batch)
            else:
                if self.degraded is None:
                    self.degraded = SpoolError(f"cannot write to the spool {self.path}: {error}")
                    log.error("%s; messages are kept in memory from now on (not durable)", self.degraded)
                self._memory.extend(batch)
            self._durable_cv.notify_all()
            waiting = len(self)
        callback = self._on_stored
        if callback is not None:
            callback(waiting)

    # --- consumer side ------------------------------------------------------

    def take_batch(self, max_items: int, max_bytes: int) -> Tuple[List[bytes], Optional[List[Any]]]:
        """Up to ``max_items`` messages in order, within ``max_bytes`` with commas, and their keys.

        Committed rows come first (key: row id), then messages kept in memory
        after a disk failure (key: None).  Pass the keys to :meth:`settle`
        once the messages' fate is known.
        """
        out: List[bytes] = []
        keys: List[Any] = []
        size = -1
        if self._stored:
            with self._db:
                rows = self._conn.execute(
                    "SELECT id, body FROM messages WHERE id > ? ORDER BY id LIMIT ?", (self._cursor, max_items)
                ).fetchall()
            for rowid, body in rows:
                size += len(body) + 1
                if size > max_bytes and out:
                    break
                out.append(bytes(body))
                keys.append(rowid)
        with self._lock:
            if keys:
                self._cursor = keys[-1]
                self._stored -= len(keys)
            while self._memory and len(out) < max_items and not self._stored:  # memory is newer than disk
                head = self._memory[0]
                if size + len(head) + 1 > max_bytes and out:
                    break
                size += len(head) + 1
                out.append(self._memory.popleft())
                keys.append(None)
            self.taken_total += len(out)
            if self._waiting and out:
                self._not_full.notify_all()
        return out, keys

    def take(self, max_items: int, max_bytes: int) -> List[bytes]:
        """Like :meth:`take_batch`, without the keys."""
        return self.take_batch(max_items, max_bytes)[0]

    def settle(self, keys: Sequence[Any], sizes: int) -> None:
        """Delete the rows of messages that were delivered or refused for good."""
        rowids = [(k,) for k in keys if k is not None]
        if rowids and self.degraded is None:
            try:
                with self._db:
                    with self._conn:
                        self._conn.execute("BEGIN IMMEDIATE")
                        self._conn.executemany("DELETE FROM messages WHERE id = ?", rowids)
            except (sqlite3.Error, OSError) as exc:  # sent again by the next process: a duplicate, not a loss
                log.error("spool: could not remove %d delivered message(s): %s", len(rowids), exc)
        with self._lock:
            self._bytes -= sizes
            if self._waiting:
                self._not_full.notify_all()

    def keep(self, keys: Sequence[Any]) -> None:
        """Taken rows that stay in the file unsent (shutdown deadline): count them as waiting again."""
        with self._lock:
            self._stored += sum(1 for k in keys if k is not None)

    def take_all(self) -> List[bytes]:
        """Only messages that cannot be kept (those in memory); the rows stay for the next process."""
        with self._lock:
            out = list(self._memory) + (list(self._buffer) if self.degraded is not None else [])
            self._memory.clear()
            if self.degraded is not None:
                self._buffer.clear()
            self.taken_total += len(out)
        return out

    # --- lifecycle ----------------------------------------------------------

    def close(self, timeout: Optional[float] = None) -> None:
        """Commit what is buffered (within ``timeout``) and stop the writer; the file stays."""
        with self._lock:
            self._closed = True
            self._has_buffer.notify_all()
            self._not_full.notify_all()
        if threading.current_thread() is not self._writer:
            self._writer.join(timeout)

    @property
    def where(self) -> str:
        """The spool file, for a log line."""
        return f"the spool {self.path}"

    def reopen(self) -> None:
        """Not supported for a spool (a fork gets a new one); kept for interface parity."""

    def release(self) -> None:
        """Close the database and give the slot back (after :meth:`close`).  Idempotent."""
        with self._db:
            try:
                self._conn.close()  # a second close of a connection is a no-op
            except sqlite3.Error:  # pragma: no cover
                pass
            fd, self._lock_fd = self._lock_fd, -1
        _close_once(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: drop this process's copy of the slot lock; never touch the connection."""
        # no lock taken: a parent's thread may have held it at the fork, and only this thread runs here
        fd, self._lock_fd = self._lock_fd, -1
        _close_once(fd)  # the parent's lock stays: it holds its own descriptor


def _close_once(fd: int) -> None:
    # The caller set its copy to -1 first: a second os.close() of a number would close
    # whatever the application opened meanwhile under it.
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:  # pragma: no cover
            pass

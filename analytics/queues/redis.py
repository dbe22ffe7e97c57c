"""A queue shared by many processes and hosts: a Redis stream with a consumer group.

``Client(write_key, queue="redis://127.0.0.1:6379/0")`` (needs the ``redis``
extra).  Every process that makes calls is a producer; every process whose
client has ``consume=True`` (the default) or that runs
``python -m analytics worker`` is a consumer.  What is promised:

* **A call never waits for Redis.**  It appends the encoded message to a
  local buffer (bounded by ``max_queue_size``) and returns; a writer thread
  adds the buffer to the stream in groups (one round trip per group).  While
  Redis is slow or down, messages wait in that buffer; when it is full,
  calls drop (``QueueFullError`` to ``on_error``, counted as
  ``queue_full``) or wait, as ``max_queue_wait`` says for any queue.  When
  Redis is back the buffer is written out.
* **The stream is bounded.**  A message is added only while the stream holds
  fewer than ``max_queue_size`` entries (checked and added atomically by a
  script; ``XADD ... MAXLEN ~ max_queue_size`` too, which never trims because
  the script keeps the stream below it).  A message refused because the
  stream is full is reported to ``on_error`` by the writer thread
  (``queue_full``).  The stream holds only messages not yet settled:
  consumers delete what they acknowledge, so its length is the backlog.
* **At least once.**  Consumers read through a consumer group
  (``XREADGROUP``), post batches with the usual limits and retries (with a
  shared queue the engine retries without limit, as with the spool), and
  acknowledge and delete an entry (``XACK`` + ``XDEL`` in one transaction)
  only once the server took it or refused it for good.  An entry read by a
  consumer that died (SIGKILL, a lost host) stays pending and is claimed by a
  live consumer once it has been idle ``claim_after`` seconds
  (``XAUTOCLAIM``): it is sent again, with the same ``messageId``.
* **One stream per tenant.**  The stream's key names the destination and a
  hash of its credentials and endpoint (for Data Pipelines: write key and
  host), so a consumer configured with one write key never reads, and never
  sends with its key, another's messages.

Threads: one writer (if the process produces) and one reader (if it
consumes); each has its own connection.  After a fork the child makes a new
queue (new connections, a new consumer name); the parent's buffer stays the
parent's.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .._checks import quote, redact_url
from ..errors import ConfigurationError
from .base import QueueBase

__all__ = ["RedisQueue", "stream_key"]

log = logging.getLogger("customerio.analytics")

#: Messages added per round trip by the writer.
WRITE_GROUP = 500
#: Longest the writer or reader waits before trying an unreachable Redis again.
MAX_BACKOFF_S = 2.0

# Add ARGV[3..] to the stream KEYS[1] while it holds fewer than ARGV[1]
# entries; ARGV[2] is the MAXLEN guard.  Returns one id per message, or false
# for a message refused because the stream was full.
_ADD_SCRIPT = """
local n = redis.call('XLEN', KEYS[1])
local limit = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV do
  if n < limit then
    out[#out + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[i])
    n = n + 1
  else
    out[#out + 1] = false
  end
end
return out
"""


def stream_key(prefix: str, destination: str, identity: str) -> str:
    """The stream of one tenant: ``{prefix}:{destination}:{first 16 hex of sha256(identity)}``."""
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return f"{prefix}:{destination}:{digest}"


def _redis_module() -> Any:
    try:
        import redis  # optional (extra redis): loaded by a Redis queue only
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ConfigurationError(
            "queue='redis://...' needs the redis package: pip install 'cdp-relay[redis]'"
        ) from None
    return redis


class RedisQueue(QueueBase):
    """The engine's :class:`~analytics.queues.base.SharedQueue` over a Redis stream (see the module docstring).

    ``url``: a ``redis://`` (or ``rediss://``, ``unix://``) URL.  ``stream``:
    the stream key (see :func:`stream_key`).  ``maxsize``: the bound of the
    stream and of the local buffer.  ``consume``: read and deliver from the
    stream in this process.  ``claim_after``: seconds an entry read by
    another consumer may stay unacknowledged before this one takes it over.
    ``batch``: entries read per round trip (the client passes twice its
    ``upload_size``).  ``timeout``: socket timeout of the writer's commands.
    The writer gives the messages a full stream refused to the ``on_refused``
    callback given to ``listen``; the reader tells ``on_stored`` how many
    entries wait after it read some.
    """

    durable = True  # the engine keeps unsent messages at shutdown (in Redis), never gives up on them
    shared = True

    def __init__(
        self,
        url: str,
        stream: str,
        maxsize: int,
        *,
        group: str = "cdp-relay",
        consume: bool = True,
        claim_after: float = 30.0,
        batch: int = 200,
        timeout: float = 2.0,
        block: float = 0.5,
        consumer_name: Optional[str] = None,
    ) -> None:
        redis = _redis_module()
        self._errors = (redis.RedisError, OSError)
        self.url = url
        self.stream = stream
        self.group = group
        self.maxsize = maxsize
        self.consume = consume
        self.claim_after = claim_after
        self.batch = max(1, batch)
        self.block = block
        self.consumer_name = consumer_name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self._w = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self._r = redis.Redis.from_url(
                url, socket_timeout=block + timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise ConfigurationError(f"queue must be a redis:// URL ({exc}): {quote(redact_url(url))}") from None
        self._add = self._w.register_script(_ADD_SCRIPT)
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._has_out = threading.Condition(self._lock)
        self._written_cv = threading.Condition(self._lock)
        self._out: Deque[bytes] = collections.deque()  # put, not in Redis yet
        self._writing: List[bytes] = []  # the group the writer is adding now
        self._in: Deque[Tuple[Any, bytes]] = collections.deque()  # read from Redis, not taken yet
        self._held: Dict[Any, None] = {}  # ids read and not settled: kept fresh so nobody claims them
        self._waiting = 0
        self._closed = False
        self._released = False
        self._stop_reading = threading.Event()
        self._group_ready = False
        self.put_total = 0
        self.taken_total = 0
        self.written_total = 0  # added to the stream by this process
        self.refused_total = 0  # refused by the stream (full) or dropped unwritten at close
        self.received_total = 0  # entries this process's reader got (new or claimed)
        self.claimed_total = 0  # of those, taken over from another consumer
        self.returned_total = 0  # of those, left pending in Redis at shutdown for another consumer
        self.last_id: Optional[str] = None  # the id of the last entry this process added
        self.down: Optional[str] = None  # why Redis is unreachable, while it is
        self._writer = threading.Thread(target=self._write_loop, name="cdp-relay-redis-writer", daemon=True)
        self._writer.start()
        self._reader: Optional[threading.Thread] = None
        if consume:
            self._reader = threading.Thread(target=self._read_loop, name="cdp-relay-redis-reader", daemon=True)
            self._reader.start()

    # --- producer side ---------------------------------------------------------

    def __len__(self) -> int:
        if self._closed and not self._writer.is_alive():
            return len(self._in)  # the buffer left unwritten at close is the shutdown's to report
        return len(self._out) + len(self._writing) + len(self._in)

    def ready(self) -> int:
        """Entries read from the stream that a worker can take now."""
        return len(self._in)

    def put(self, item: bytes, timeout: Optional[float] = 0.0) -> int:
        """Buffer ``item`` for the writer; the buffer's new length, or 0 when it stayed full."""
        with self._lock:
            out = self._out
            if len(out) + len(self._writing) >= self.maxsize:
                if timeout == 0 or self._closed or not self._wait_for_room(timeout):
                    return 0
            out.append(item)
            self.put_total += 1
            if len(out) == 1:
                self._has_out.notify()
            return len(out)

    def _wait_for_room(self, timeout: Optional[float]) -> bool:
        return self._wait_while(lambda: len(self._out) + len(self._writing) >= self.maxsize, timeout)

    def _write_loop(self) -> None:
        backoff = 0.05
        while True:
            with self._lock:
                while not self._out and not self._closed:
                    self._has_out.wait()
                if not self._out:
                    self._written_cv.notify_all()
                    return
                n = min(len(self._out), WRITE_GROUP)
                group = [self._out.popleft() for _ in range(n)]
                self._writing = group
            try:
                self._ensure_group(self._w)
                ids = self._add(keys=[self.stream], args=[self.maxsize, self.maxsize, *group])
            except self._errors as exc:
                with self._lock:
                    self._out.extendleft(reversed(group))  # back to the front, in order
                    self._writing = []
                    closing = self._closed
                self._note_down(exc)
                if closing:
                    with self._lock:
                        self._written_cv.notify_all()
                    return  # close() takes what is left
                self._stop_reading.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.05
            self._note_up()
            refused = [item for item, entry_id in zip(group, ids) if not entry_id]
            added = [entry_id for entry_id in ids if entry_id]
            if refused:
                # reported before they count as written: wait_durable() returns after on_error ran
                callback = self._on_refused
                if callback is not None:
                    callback(refused)
            with self._lock:
                self._writing = []
                if self._waiting:
                    self._not_full.notify_all()
                self.written_total += len(added)
                self.refused_total += len(refused)
                if added:
                    last = added[-1]
                    self.last_id = last.decode() if isinstance(last, bytes) else str(last)
                self._written_cv.notify_all()

    def _ensure_group(self, conn: Any) -> None:
        if self._group_ready:
            return
        try:
            conn.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except self._errors as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _note_down(self, exc: BaseException) -> None:
        if self.down is None:
            log.error("redis queue %s: Redis is unreachable (%s); messages wait in memory", self.stream, exc)
        self.down = str(exc)
        self._group_ready = False  # a restarted Redis without persistence has lost it

    def _note_up(self) -> None:
        if self.down is not None:
            self.down = None
            log.warning("redis queue %s: Redis is reachable again", self.stream)

    def wait_durable(self, target: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Wait until the first ``target`` messages put (default: all so far) are in Redis
        (or refused by a full stream).  Returns how many are not yet."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if target is None:
                target = self.put_total
            while self.written_total + self.refused_total < target and self._writer.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._written_cv.wait(remaining if remaining is not None else 0.25)
            return max(0, target - self.written_total - self.refused_total)

    def backlog_before(self, last_id: Optional[str]) -> Optional[int]:
        """Entries still in the stream (not settled by any consumer) up to ``last_id``;
        None when Redis cannot be read now.

        Consumers delete what they settle, so this is exactly what is left to
        deliver of everything added up to that entry, by any process.
        """
        if last_id is None:
            return 0
        try:
            return len(self._w.xrange(self.stream, "-", last_id, count=self.maxsize + 1))
        except self._errors as exc:
            log.debug("redis queue %s: cannot read the stream: %s", self.stream, exc)
            return None

    def info(self) -> Dict[str, Any]:
        """The stream's key, length, consumers and pending entries (one round trip), and this
        process's counters.  Redis figures are None while it is unreachable (once the writer
        or reader has seen that, without trying again here)."""
        out: Dict[str, Any] = {
            "stream": self.stream,
            "handed_off": self.written_total,
            "received": self.received_total - self.returned_total,
            "claimed": self.claimed_total,
            "buffered": len(self._out) + len(self._writing),
            "redis_down": self.down,
            "length": None,
            "pending": None,
            "consumers": None,
        }
        if self.down is not None:
            return out  # known unreachable: no call that would wait for the socket timeout
        try:
            pipe = self._w.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            length, groups = pipe.execute()
        except self._errors:
            return out
        out["length"] = length
        for g in groups:
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                out["pending"] = g.get("pending")
                out["consumers"] = g.get("consumers")
        return out

    # --- consumer side -----------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = 0.05
        next_claim = 0.0
        cursor = "0-0"  # where the scan for idle entries of other consumers goes on
        next_touch = time.monotonic() + self.claim_after / 3
        while not self._stop_reading.is_set():
            if time.monotonic() >= next_touch:
                next_touch = time.monotonic() + self.claim_after / 3
                self._touch_held()
            if len(self._in) >= self.batch:
                self._stop_reading.wait(0.005)  # the workers are behind: do not hoard entries
                continue
            try:
                self._ensure_group(self._r)
                got: List[Tuple[Any, Any]] = []
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + max(0.05, self.claim_after / 4)
                    claimed = self._r.xautoclaim(
                        self.stream, self.group, self.consumer_name,
                        min_idle_time=int(self.claim_after * 1000), start_id=cursor, count=self.batch,
                    )
                    cursor = claimed[0].decode() if isinstance(claimed[0], bytes) else str(claimed[0])
                    if cursor != "0-0":
                        next_claim = now  # more to scan: go on at the next turn
                    entries = [e for e in claimed[1] if e and e[1]]
                    if entries:
                        log.info("redis queue %s: took over %d entries of a consumer that stopped",
                                 self.stream, len(entries))
                        self.claimed_total += len(entries)
                        got.extend(entries)
                if not got:
                    answer = self._r.xreadgroup(
                        self.group, self.consumer_name, {self.stream: ">"},
                        count=self.batch, block=int(self.block * 1000),
                    )
                    for _, entries in answer or ():
                        got.extend(entries)
            except self._errors as exc:
                if self._stop_reading.is_set():
                    return
                self._note_down(exc)
                self._stop_reading.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.05
            if not got:
                continue
            items = []
            for entry_id, fields in got:
                body = fields.get(b"m")
                if body is None:  # not ours; settle it so it does not come back
                    self._settle_ids([entry_id])
                    continue
                items.append((entry_id, bytes(body)))
            with self._lock:
                self._in.extend(items)
                self._held.update(dict.fromkeys(entry_id for entry_id, _ in items))
                self.received_total += len(items)
                waiting = len(self._in)
            callback = self._on_stored
            if callback is not None and items:
                callback(waiting)

    def _touch_held(self) -> None:
        """Reset the idle time of the entries this consumer holds (a batch may retry for
        long while the server is down): only entries of a consumer that stopped are idle
        long enough to be taken over."""
        with self._lock:
            ids = list(self._held)
        for i in range(0, len(ids), 1000):
            try:
                self._r.xclaim(self.stream, self.group, self.consumer_name, 0, ids[i:i + 1000], justid=True)
            except self._errors as exc:
                log.debug("redis queue %s: could not refresh held entries: %s", self.stream, exc)
                return

    def take_batch(self, max_items: int, max_bytes: int) -> Tuple[List[bytes], List[Any]]:
        """Up to ``max_items`` entries read from the stream, within ``max_bytes`` with commas, and their ids."""
        out: List[bytes] = []
        keys: List[Any] = []
        size = -1
        with self._lock:
            entries = self._in
            while entries and len(out) < max_items:
                entry_id, body = entries[0]
                size += len(body) + 1
                if size > max_bytes and out:
                    break
                entries.popleft()
                out.append(body)
                keys.append(entry_id)
            self.taken_total += len(out)
        return out, keys

    def take(self, max_items: int, max_bytes: int) -> List[bytes]:
        """Like :meth:`take_batch`, without the ids."""
        return self.take_batch(max_items, max_bytes)[0]

    def settle(self, keys: Sequence[Any], sizes: int) -> None:
        """Acknowledge and delete entries delivered or refused for good."""
        self._settle_ids([k for k in keys if k is not None])

    def _settle_ids(self, ids: List[Any]) -> None:
        if not ids:
            return
        with self._lock:
            for entry_id in ids:
                self._held.pop(entry_id, None)
        for attempt in range(3):
            try:
                pipe = self._r.pipeline(transaction=True)
                pipe.xack(self.stream, self.group, *ids)
                pipe.xdel(self.stream, *ids)
                pipe.execute()
                return
            except self._errors as exc:
                if attempt == 2:
                    # still pending: another consumer (or this one) takes it over and sends it
                    # again after claim_after, with the same messageId: a duplicate, not a loss
                    log.error("redis queue %s: could not acknowledge %d delivered entries: %s",
                              self.stream, len(ids), exc)
                else:
                    time.sleep(0.05 * (attempt + 1))

    def keep(self, keys: Sequence[Any]) -> None:
        """Entries taken but not sent at the shutdown deadline stay pending in Redis: another
        consumer takes them over after ``claim_after`` seconds."""
        with self._lock:
            self.returned_total += len(keys)
            for entry_id in keys:
                self._held.pop(entry_id, None)

    def take_all(self) -> List[bytes]:
        """What cannot be kept at shutdown: messages never written to Redis.  Entries read
        but not taken stay pending in Redis for another consumer."""
        with self._lock:
            out = list(self._out)
            self._out.clear()
            self.refused_total += len(out)
            self.returned_total += len(self._in)
            for entry_id, _ in self._in:
                self._held.pop(entry_id, None)
            self._in.clear()
            self.taken_total += len(out)
            if self._waiting:
                self._not_full.notify_all()
        return out

    # --- lifecycle -------------------------------------------------------------

    def stop_reading(self) -> None:
        """Read no more entries (a worker shutting down); what was read stays to be sent."""
        self._stop_reading.set()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop reading, write out the buffer (within ``timeout``) and stop the writer."""
        self._stop_reading.set()
        with self._lock:
            self._closed = True
            self._has_out.notify_all()
            self._not_full.notify_all()
        if threading.current_thread() is not self._writer:
            self._writer.join(timeout)
        if self._reader is not None and threading.current_thread() is not self._reader:
            self._reader.join(min(timeout, self.block + 1.0) if timeout is not None else self.block + 1.0)

    @property
    def where(self) -> str:
        """The stream, for a log line."""
        return f"the Redis stream {self.stream}"

    def reopen(self) -> None:
        """Not supported (a fork gets a new queue); kept for interface parity."""

    def release(self) -> None:
        """Close the connections (after :meth:`close`).  Idempotent."""
        with self._lock:
            released, self._released = self._released, True
        if released:
            return
        for conn in (self._w, self._r):
            try:
                conn.close()
            except Exception:  # pragma: no cover
                pass

    def forget_after_fork(self) -> None:
        """In a forked child: never use the parent's connections (the child makes a new queue)."""

"""The benchmark's collector: ``analytics.collector`` plus what the benchmark needs.

Run it from the project's own virtualenv, in its own process::

    .venv/bin/python benchmarks/collector.py [--port 0]

It prints ``listening on http://127.0.0.1:PORT`` once, then serves until
SIGINT/SIGTERM (or ``--max-seconds``).  On top of ``analytics.collector`` (not
changed; everything here is a subclass) it:

* accepts PostHog's capture endpoint, ``POST /batch/`` with
  ``{"api_key": ..., "batch": [{"uuid": ..., "event": ...}, ...]}`` (gzip or
  not), and records each event under its ``uuid`` in the same counters as
  ``/v1/batch`` (unique ids, duplicates, messages, bytes), so every SDK is
  counted by the same code;
* adds to ``GET /_collector/stats`` the wall-clock times (``time.time()``) of
  the first accepted message, the last accepted message and the last *new*
  unique message, plus ``now``, so the benchmark can compute end-to-end rates
  and "no new message for 1 s" without polling fast.

The collector's ``delay`` (``POST /_collector/faults {"delay": 0.1}``) applies
to the PostHog route too: every request is answered after it, each in its own
connection's thread, so requests on different connections wait in parallel,
as they would over a long round trip.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from typing import Any, Dict, List, Optional

from analytics.collector import server as _server
from analytics.collector.__main__ import serve
from analytics.collector.server import Batch, Collector

POSTHOG_PATH = "/batch/"


class _BenchHandler(_server._Handler):
    """The collector's handler, with PostHog's ``/batch/`` route."""

    def _route(self) -> None:
        if self.command == "POST" and self.path.partition("?")[0] == POSTHOG_PATH:
            body = self._read_body()
            if body is None:
                self.close_connection = True
                return
            self._post_posthog(body)
            return
        super()._route()

    def _post_posthog(self, body: bytes) -> None:
        collector = self.server.collector
        received_at = time.time()
        collector._begin()  # counts the request, in flight (faults are not applied to this route)
        if collector.delay > 0:  # the round trip, as on the collector's own routes
            time.sleep(collector.delay)
        encoding = (self._fields.get("content-encoding") or "identity").strip().lower()
        compressed: Optional[int] = None
        raw = body
        try:
            if encoding in ("gzip", "x-gzip"):
                compressed = len(body)
                raw = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            elif encoding != "identity":
                raise ValueError(f"Content-Encoding {encoding!r} is not supported")
            doc = json.loads(raw)
            if type(doc) is not dict or type(doc.get("batch")) is not list:
                raise ValueError("body needs a batch list")
            key = doc.get("api_key")
            if type(key) is not str or not key:
                raise ValueError("body needs an api_key")
            messages: List[Dict[str, Any]] = []
            for i, event in enumerate(doc["batch"]):
                uid = event.get("uuid") if type(event) is dict else None
                if type(uid) is not str or not uid or not event.get("event"):
                    raise ValueError(f"batch[{i}] needs a uuid and an event")
                # Only what the counters read: the id under messageId, and a type.
                messages.append({"messageId": uid, "type": "track"})
        except (ValueError, zlib.error, UnicodeDecodeError) as exc:
            collector._refuse(400, "bad_request", str(exc), len(raw), received_at)
            self._send(400, json.dumps({"type": "validation_error", "detail": str(exc)}).encode())
            return
        sent_at = doc.get("sent_at") if type(doc.get("sent_at")) is str else ""
        collector._accept(Batch(messages, sent_at, key, len(raw), compressed, {}, received_at),
                          stored_then_dropped=False)
        self._send(200, b'{"status":"Ok"}')


class BenchCollector(Collector):
    """A :class:`Collector` with the PostHog route and arrival times in ``stats()``."""

    def start(self) -> "BenchCollector":
        super().start()
        # socketserver builds each connection's handler from this attribute.
        self._server.RequestHandlerClass = _BenchHandler
        return self

    def _clear(self) -> None:
        super()._clear()
        self._first_at = 0.0
        self._last_at = 0.0
        self._last_new_at = 0.0

    def _accept(self, batch: Batch, stored_then_dropped: bool) -> int:
        with self._lock:
            before = len(self._ids)
        batch_id = super()._accept(batch, stored_then_dropped)
        now = time.time()
        with self._lock:
            if not self._first_at:
                self._first_at = now
            self._last_at = now
            if len(self._ids) > before:
                self._last_new_at = max(self._last_new_at, now)
        return batch_id

    def stats(self) -> Dict[str, Any]:
        out = super().stats()
        with self._lock:
            out.update(first_message_at=self._first_at, last_message_at=self._last_at,
                       last_new_unique_at=self._last_new_at)
        out["now"] = time.time()
        return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="The benchmark's collector (analytics.collector + PostHog route).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="exit by itself after this long (default 3600)")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the benchmark collector only listens on loopback")
    return serve(BenchCollector(host=args.host, port=args.port, keep_messages=False), args.max_seconds)

if __name__ == "__main__":
    sys.exit(main())

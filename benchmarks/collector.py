"""The benchmark's collector: ``analytics.collector`` plus what the benchmark needs.

Run it from the project's own virtualenv, in its own process::

    .venv/bin/python benchmarks/collector.py [--port 0]

It prints ``listening on http://127.0.0.1:PORT`` once, then serves until
SIGINT/SIGTERM (or ``--max-seconds``).  On top of ``analytics.collector`` (not
changed; a route of its own and a subclass) it:

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
import re
import sys
import time
from typing import Any, Dict, List, Optional

from analytics.collector.__main__ import serve
from analytics.collector.http import BodyError, json_bytes
from analytics.collector.routing import Call
from analytics.collector.server import Batch, Collector

POSTHOG_PATH = "/batch/"
#: Bodies un-gzip up to this size.
_MAX_BODY = 64 * 1024 * 1024


def _post_posthog(call: Call, match: "re.Match[str]") -> None:
    """PostHog's capture endpoint: each event counted under its ``uuid`` (faults not applied here)."""
    record, _, _ = call.begin(faults=False)  # counts the request, in flight, after the collector's delay
    try:
        raw, size, compressed = call.decoded_body(_MAX_BODY)
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
    except (ValueError, BodyError, UnicodeDecodeError) as exc:
        call.refuse(400, "bad_request", str(exc), len(call.request.body), record.received_at)
        call.send(400, json_bytes({"type": "validation_error", "detail": str(exc)}))
        return
    sent_at = doc.get("sent_at") if type(doc.get("sent_at")) is str else ""
    call.records.accept(Batch(messages, sent_at, key, size, compressed, {}, record.received_at))
    call.send(200, b'{"status":"Ok"}')


class BenchCollector(Collector):
    """A :class:`Collector` with the PostHog route and arrival times in ``stats()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_route("POST", POSTHOG_PATH, _post_posthog)
        self.records.on_accept(self._arrived)
        self._first_at = self._last_at = self._last_new_at = 0.0

    def _arrived(self, batch: Batch, new_ids: int) -> None:
        now = time.time()
        with self.records.lock:
            if not self._first_at:
                self._first_at = now
            self._last_at = now
            if new_ids:
                self._last_new_at = max(self._last_new_at, now)

    def reset(self) -> None:
        super().reset()
        with self.records.lock:
            self._first_at = self._last_at = self._last_new_at = 0.0

    def stats(self) -> Dict[str, Any]:
        out = super().stats()
        with self.records.lock:
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

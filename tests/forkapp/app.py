"""A WSGI app for tests/system/test_fork.py, served by a real gunicorn with ``--preload``.

At import time (in the gunicorn master with ``--preload``, else in each
worker) it points the module facade at the collector named by the
environment and tracks one ``app-loaded`` event (unless
``FORKAPP_LOAD_EVENT=0``), which with ``--preload`` is still queued when the
master forks its workers.  Routes:

``GET /track?n=N``
    tracks ``request`` for ``user-N`` with properties ``{"n": N, "pid": <worker pid>}``
``GET /ping``
    tracks nothing
``GET /flush?timeout=T``
    ``analytics.flush(timeout=T)`` (default 20); the answer's ``ok`` is the pending count it returned

Every answer is JSON ``{"pid": <worker pid>, "master": <pid that imported the app>, "ok": <track's success>}``.

Environment: ``FORKAPP_WRITE_KEY``, ``FORKAPP_HOST`` (the collector's URL),
``FORKAPP_UPLOAD_INTERVAL`` (seconds, default 1), ``FORKAPP_UPLOAD_SIZE``
(default 100), ``FORKAPP_LOAD_EVENT`` (default 1).
"""

import json
import os
from urllib.parse import parse_qs

import analytics

analytics.write_key = os.environ["FORKAPP_WRITE_KEY"]
analytics.host = os.environ["FORKAPP_HOST"]
analytics.upload_interval = float(os.environ.get("FORKAPP_UPLOAD_INTERVAL", "1"))
analytics.upload_size = int(os.environ.get("FORKAPP_UPLOAD_SIZE", "100"))

MASTER_PID = os.getpid()
if os.environ.get("FORKAPP_LOAD_EVENT", "1") == "1":
    analytics.track("gunicorn-master", "app-loaded", {"pid": MASTER_PID})


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    pid = os.getpid()
    ok = None
    if path == "/track":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        n = int(query["n"][0])
        ok, _ = analytics.track(f"user-{n}", "request", {"n": n, "pid": pid})
        status = "200 OK" if ok else "500 Internal Server Error"
    elif path == "/ping":
        status = "200 OK"
    elif path == "/flush":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        ok = analytics.flush(timeout=float(query.get("timeout", ["20"])[0]))
        status = "200 OK"
    else:
        status = "404 Not Found"
    body = json.dumps({"pid": pid, "master": MASTER_PID, "ok": ok}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

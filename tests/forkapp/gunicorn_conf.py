"""gunicorn settings for tests/test_fork.py: each worker says when a SIGTERM would reach it.

A worker runs the signal handler it inherited from the master (which only
queues the signal for the master's loop, a loop the worker never runs) until
its ``init_process`` installs its own, after ``post_fork`` and, for gevent,
after the monkey-patching.  A SIGTERM that arrives in that window is lost:
the worker loads the app, serves on, and the master kills it (``SIGKILL``)
once ``--graceful-timeout`` has passed, with whatever it had queued.  With
four gevent workers the last one is often still booting when the requests are
done, so the test waits for every worker's file before it sends SIGTERM.

``post_worker_init`` runs in a worker after its handlers are installed and the
app is loaded; it creates ``ready-<pid>`` in ``FORKAPP_READY_DIR``.

``FORKAPP_HOLD_LAST_WORKER`` (a path): the last of the first workers spawned
waits in ``post_fork`` until that file exists (at most 20 s), as a worker that
is slow to boot does.

``FORKAPP_TRACK_IN_POST_FORK=1``: each worker tracks ``post-fork`` (properties
``{"pid": <worker pid>}``) with the module facade in ``post_fork``, before its
worker class sets up its event loop (eventlet's worker makes a new hub there,
gevent's patches ``threading``).
"""

import os
import time


def post_fork(server, worker):
    if os.environ.get("FORKAPP_TRACK_IN_POST_FORK") == "1":
        import analytics  # the app's settings (tests/forkapp/app.py) are made at its import

        analytics.write_key = os.environ["FORKAPP_WRITE_KEY"]
        analytics.host = os.environ["FORKAPP_HOST"]
        analytics.upload_interval = float(os.environ.get("FORKAPP_UPLOAD_INTERVAL", "1"))
        analytics.upload_size = int(os.environ.get("FORKAPP_UPLOAD_SIZE", "100"))
        ok, _ = analytics.track(f"worker-{os.getpid()}", "post-fork", {"pid": os.getpid()})
        assert ok
    gate = os.environ.get("FORKAPP_HOLD_LAST_WORKER")
    if gate and worker.age == server.num_workers:
        deadline = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)


def post_worker_init(worker):
    ready = os.environ.get("FORKAPP_READY_DIR")
    if ready:
        open(os.path.join(ready, f"ready-{worker.pid}"), "w").close()

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
"""

import os
import time


def post_fork(server, worker):
    gate = os.environ.get("FORKAPP_HOLD_LAST_WORKER")
    if gate and worker.age == server.num_workers:
        deadline = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)


def post_worker_init(worker):
    ready = os.environ.get("FORKAPP_READY_DIR")
    if ready:
        open(os.path.join(ready, f"ready-{worker.pid}"), "w").close()

"""The durable SQLite spool: survives SIGKILL, keeps what it could not send, never crashes the app.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_spool.py``."""

from __future__ import annotations
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from analytics import Client
from analytics.collector import Collector
from analytics.queues.sqlite import slot_paths

from ..conftest import WRITE_KEY
from ..integration.test_spool import rows, invariant, seqs, assert_a_new_client_delivers_what_is_left, spool  # shared with the tests there


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(body: str, timeout: float = 30) -> subprocess.CompletedProcess:
    script = "import sys\nsys.path.insert(0, %r)\n" % ROOT + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)


def test_wait_durable_then_sigkill_loses_nothing(spool, collector):
    """Once wait_durable() returned 0, a SIGKILL loses none of those messages; the next process sends them."""
    out = run_script(
        f"""
        import os
        from analytics import Client
        c = Client("{WRITE_KEY}", host="http://127.0.0.1:9", spool_path={spool!r})
        for i in range(300):
            c.track("u1", "Before kill", {{"seq": i}})
        print(c.wait_durable(timeout=10), flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.strip() == "0"
    assert rows(spool) == 300
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    try:
        assert client.stats()["recovered"] == 300
        assert client.flush(timeout=10) == 0
        assert collector.wait_for(300, timeout=5)
        assert sorted(seqs(collector)) == list(range(300))
        s = client.stats()
        assert s["accepted"] == 0 and s["recovered"] == 300 and s["delivered"] == 300 and invariant(s)
    finally:
        client.shutdown()
    assert rows(spool) == 0


KILL_SCRIPT = """
import sys, time
from analytics import Client, RetryPolicy
start, spool, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = Client("{key}", host=url, spool_path=spool, upload_interval=0.01,
           retry_policy=RetryPolicy(base=0.01, cap=0.05))
i = start
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    for _ in range(25):
        c.track("u1", "Kill me", {{"seq": i}})
        i += 1
    if c.wait_durable(timeout=5) == 0:
        print(i, flush=True)  # every seq below i is durable
"""


def test_sigkill_at_random_points_against_a_flaky_collector_loses_nothing_durable(spool, tmp_path):
    """Processes killed at random moments while a collector fails part of the time: every durable message arrives."""
    rng = random.Random(7)
    script = tmp_path / "producer.py"
    script.write_text(KILL_SCRIPT.format(key=WRITE_KEY))
    env = dict(os.environ, PYTHONPATH=ROOT)
    acknowledged = set()
    with Collector(write_keys={WRITE_KEY}) as collector:
        collector.set_chaos(fail_rate=0.2, drop_rate=0.05, seed=11)
        start = 0
        for _ in range(4):
            proc = subprocess.Popen(
                [sys.executable, str(script), str(start), spool, collector.url],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            durable_upto = start
            kill_after = rng.uniform(5, 40)  # lines of durable progress before the kill
            deadline = time.monotonic() + 20
            assert proc.stdout is not None
            for line in proc.stdout:
                durable_upto = int(line)
                kill_after -= 1
                if kill_after <= 0 or time.monotonic() > deadline:
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            acknowledged.update(range(start, durable_upto))
            start = durable_upto + 10_000  # a fresh range per process
        collector.set_chaos(fail_rate=0.0, drop_rate=0.0)
        client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
        try:
            assert client.flush(timeout=20) == 0
        finally:
            client.shutdown(timeout=5)
        delivered = {}
        for m in collector.messages:
            delivered.setdefault(m["properties"]["seq"], set()).add(m["messageId"])
    assert len(acknowledged) > 100
    missing = acknowledged - set(delivered)
    assert not missing, f"{len(missing)} durable messages lost, e.g. {sorted(missing)[:5]}"
    # duplicates (a batch stored but its answer lost, or sent just before a kill) only by the same messageId
    assert all(len(ids) == 1 for ids in delivered.values())
    assert rows(spool) == 0


def test_unreachable_server_at_exit_keeps_messages_for_the_next_process(spool, collector):
    """At exit, what could not be sent within exit_timeout stays in the spool, is not reported lost, and is sent later."""
    started = time.monotonic()
    out = run_script(
        f"""
        from analytics import Client
        lost = []
        c = Client("{WRITE_KEY}", host="http://127.0.0.1:9", spool_path={spool!r}, exit_timeout=0.5,
                   on_error=lambda e, items: lost.extend(items))
        for i in range(120):
            c.track("u1", "At exit", {{"seq": i}})
        import atexit
        atexit.register(lambda: print("lost", len(lost), flush=True))
        """
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "lost 0" in out.stdout
    assert "kept in the spool" in out.stderr
    assert elapsed < 10
    assert rows(spool) == 120
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool)
    try:
        assert client.flush(timeout=10) == 0
    finally:
        client.shutdown()
    assert sorted(seqs(collector)) == list(range(120))


def test_a_new_process_adopts_the_messages_of_slots_nobody_holds(spool, collector):
    """Messages left in slot 1 by a process that died are sent by the next process to open the spool."""
    holder = Client(WRITE_KEY, host="http://127.0.0.1:9", spool_path=spool)  # takes slot 0
    out = run_script(
        f"""
        import os
        from analytics import Client
        c = Client("{WRITE_KEY}", host="http://127.0.0.1:9", spool_path={spool!r})
        assert c._engine.queue.path.endswith("events-1.db"), c._engine.queue.path
        for i in range(40):
            c.track("u1", "Orphan", {{"seq": i}})
        c.wait_durable(timeout=5)
        os.kill(os.getpid(), 9)
        """
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    holder.shutdown(timeout=0)
    assert rows(slot_paths(spool)[1]) == 40
    assert_a_new_client_delivers_what_is_left(spool, collector, 40)
    assert not os.path.exists(slot_paths(spool)[1])


def test_forked_child_takes_its_own_slot(spool, collector):
    client = Client(WRITE_KEY, host=collector.url, spool_path=spool, upload_interval=0.05)
    try:
        for i in range(20):
            client.track("u1", "Parent", {"seq": i})
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                for i in range(100, 130):
                    client.track("u1", "Child", {"seq": i})
                assert client._engine.queue.path != spool  # its first call took a slot of its own
                code = 0 if client.flush(timeout=10) == 0 else 2
                client.shutdown()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.flush(timeout=10) == 0
        assert collector.wait_for(50, timeout=5)
    finally:
        client.shutdown()
    assert sorted(seqs(collector)) == list(range(20)) + list(range(100, 130))
    assert collector.duplicates == 0

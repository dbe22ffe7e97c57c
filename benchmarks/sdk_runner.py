"""One SDK, one scenario, one process: run it and print the results as JSON.

Started by ``benchmarks/run.py`` with the Python of the virtualenv that holds the
SDK (``.venv`` for cdp-relay, ``.bench-venv`` for the peers), in isolated mode
(``python -I``), so this file imports nothing but the standard library and the
SDK under test::

    python -I benchmarks/sdk_runner.py '{"sdk": "cdp-relay", "scenario": "produce", "url": ...}'

It prints ``BENCH-PARTIAL {json}`` once the producer loop is measured and
``BENCH-RESULT {json}`` at the end, then leaves with ``os._exit`` (no SDK's
exit hook runs: some block for minutes on an endpoint that never answers).
Every wait is bounded; the driver also kills this process after a timeout.

Scenarios (the figures are defined in shared/reference/benchmark-method.md):

``produce``
    ``events`` calls of ``track`` from ``threads`` producer threads, each call
    timed with ``perf_counter_ns``; the collector's unique count at the moment
    the loop ends; then ``flush()``; then a wait until the collector has seen
    no new message for 1 s.  With ``max_queue_size`` unset each SDK keeps its
    default queue (the burst-loss rows); with it set large, nothing should be
    dropped (the end-to-end and CPU rows).  With ``window`` (the rows with a
    delaying collector) ``flush()`` and the quiet wait together get at most
    ``window`` seconds from the end of the loop: what has not arrived by then
    counts as lost.  RSS at the end of the loop and the peak RSS are recorded.
``steady``
    one producer thread that paces itself to ``rate`` events/s for ``seconds``
    s; it stops at the first call the SDK refuses or once it falls behind the
    rate by more than 5 %; then ``flush()`` and the quiet wait (``window``).
    The step passes when every event was sent on time and arrived.
``bigqueue``
    ``events`` calls against an endpoint that accepts connections and never
    answers, with a queue large enough to hold them all: RSS growth per queued
    event and the worst single call.
``flush``
    ``rounds`` times: ``flush_events`` calls, then time ``flush()``.
``shutdown``
    one call and a ``flush()``, a short idle pause, then time ``shutdown()``.
``redis`` (cdp-relay only)
    ``events`` calls into a Redis stream (``consume=False``), then
    ``consumers`` worker processes deliver them: events/s into Redis and
    through Redis.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import resource
import socket
import statistics
import sys
import threading
import time
import urllib.request
from array import array
from typing import Any, Callable, Dict, List, Optional, Tuple

WRITE_KEY = "bench-write-key"
EVENT = "Product Purchased"
USER_IDS = [f"user-{i:04d}" for i in range(1000)]
PRODUCT_IDS = [f"sku-{(i * 7919) % 100000:05d}" for i in range(1000)]
NAME = "Wireless Noise-Cancelling Headphones, black"
MIB = 1024 * 1024


def make_properties(i: int) -> Dict[str, Any]:
    """The six properties of the realistic event: built fresh for every call, as an app would."""
    return {
        "product_id": PRODUCT_IDS[i % 1000],
        "name": NAME,
        "price": 129.99,
        "quantity": 1 + (i & 3),
        "tags": ["electronics", "audio", "sale"],
        "shipping": {"method": "express", "address": {"city": "Berlin", "country": "Germany"}},
    }


# --- loopback only -------------------------------------------------------------

BLOCKED: List[str] = []


def _loopback(host: Any) -> bool:
    if host in ("localhost", "localhost.", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except (ValueError, TypeError, AttributeError):
        return False


def guard_network() -> None:
    """Refuse, and record, any name lookup or connection that is not to loopback."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host):
            BLOCKED.append(f"lookup {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"benchmark: lookup of {host!r} refused (loopback only)")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            BLOCKED.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"benchmark: connection to {address!r} refused (loopback only)")

    def connect(self: socket.socket, address: Any) -> Any:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        check(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


# --- the SDKs ------------------------------------------------------------------


class SDK:
    """What the scenarios need from one SDK: its client, its call and its lifecycle."""

    name = ""
    dist = ""
    positional = True  # track(user_id, event, properties) -> (success, msg)

    def __init__(self, url: str, gzip: bool, max_queue_size: Optional[int]) -> None:
        kwargs: Dict[str, Any] = {"gzip": gzip}
        if max_queue_size:
            kwargs["max_queue_size"] = max_queue_size
        self.client = self.make(url, kwargs)

    def make(self, url: str, kwargs: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def call(self) -> Callable[..., Any]:
        return self.client.track

    def flush(self) -> Any:
        return self.client.flush()

    def shutdown(self) -> Any:
        return self.client.shutdown()

    def queued(self) -> Optional[int]:
        q = getattr(self.client, "queue", None)
        return q.qsize() if q is not None else None

    def dropped(self) -> int:
        """Messages the SDK has dropped so far that its calls did not refuse (0 where it cannot say)."""
        return 0

    def source(self) -> str:
        return ""

    def module_file(self) -> str:
        return sys.modules[type(self.client).__module__].__file__ or ""


class CdpRelay(SDK):
    name, dist = "cdp-relay", "cdp-relay"

    def make(self, url: str, kwargs: Dict[str, Any]) -> Any:
        from analytics import Client

        return Client(WRITE_KEY, host=url, **kwargs)

    def queued(self) -> Optional[int]:
        return self.client.stats()["queued"]

    def dropped(self) -> int:
        dropped = self.client.stats().get("dropped", 0)  # {reason: count}
        return sum(dropped.values()) if isinstance(dropped, dict) else int(dropped)

    def source(self) -> str:
        """A hash of the package's source files: the work tree may change between runs."""
        import hashlib
        from pathlib import Path

        import analytics

        root = Path(analytics.__file__).parent
        h = hashlib.sha1()
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:12]


class CustomerioCdp(SDK):
    name, dist = "customerio-cdp-analytics", "customerio-cdp-analytics"

    def make(self, url: str, kwargs: Dict[str, Any]) -> Any:
        from customerio.analytics import Client

        return Client(WRITE_KEY, host=url, **kwargs)


class Segment(SDK):
    name, dist = "segment-analytics-python", "segment-analytics-python"

    def make(self, url: str, kwargs: Dict[str, Any]) -> Any:
        from segment.analytics import Client

        return Client(WRITE_KEY, host=url, **kwargs)


class PostHog(SDK):
    name, dist = "posthog", "posthog"
    positional = False  # capture(event, distinct_id=..., properties=...) -> uuid or None

    def make(self, url: str, kwargs: Dict[str, Any]) -> Any:
        from posthog import Posthog

        return Posthog(WRITE_KEY, host=url, **kwargs)

    def call(self) -> Callable[..., Any]:
        return self.client.capture

    def queued(self) -> Optional[int]:
        lane = getattr(self.client, "_analytics_lane", None)
        q = getattr(lane, "queue", None)
        return q.qsize() if q is not None else None


SDKS = {cls.name: cls for cls in (CdpRelay, CustomerioCdp, Segment, PostHog)}


# --- helpers -------------------------------------------------------------------


class Collector:
    """The collector's control routes, over plain urllib (a fresh connection each time)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.poll_cpu = 0.0  # this thread's CPU spent polling, taken out of the SDK's CPU

    def stats(self) -> Dict[str, Any]:
        c0 = time.thread_time()
        try:
            with urllib.request.urlopen(self.url + "/_collector/stats", timeout=5) as r:
                return json.loads(r.read())
        finally:
            self.poll_cpu += time.thread_time() - c0

    def wait_quiet(self, since_wall: float, quiet: float = 1.0, limit: float = 60.0) -> Tuple[Dict[str, Any], bool]:
        """Poll until no new message has arrived for ``quiet`` s (counting from ``since_wall``
        when nothing arrived after it); returns (stats, True) or, after ``limit`` s, (stats, False)."""
        deadline = time.monotonic() + limit
        while True:
            s = self.stats()
            if s["now"] - max(s["last_message_at"], since_wall) >= quiet:
                return s, True
            if time.monotonic() >= deadline:
                return s, False
            time.sleep(0.1)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_bytes() -> int:
    """The most RSS this process has had (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def bounded(func: Callable[[], Any], limit: float) -> Tuple[Optional[float], Optional[str]]:
    """Run ``func`` on a daemon thread; (seconds it took, None), or (None, why) when it
    raised or did not return within ``limit`` seconds."""
    box: Dict[str, Any] = {}

    def target() -> None:
        t0 = time.perf_counter()
        try:
            func()
        except BaseException as exc:  # reported, not raised: the figures so far still count
            box["error"] = f"{type(exc).__name__}: {exc}"
        box["took"] = time.perf_counter() - t0

    t = threading.Thread(target=target, name="bench-bounded", daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        return None, f"did not return within {limit:g} s"
    if "error" in box:
        return None, box["error"]
    return box["took"], None


def percentiles(lat: array) -> Dict[str, float]:
    """p50, p99 and max of nanosecond latencies, in microseconds."""
    values = sorted(lat)
    n = len(values)
    if not n:
        return {}

    def at(q: float) -> float:
        return values[min(n - 1, max(0, int(round(q * n)) - 1))] / 1000.0

    return {"p50_us": at(0.50), "p99_us": at(0.99), "max_us": values[-1] / 1000.0,
            "mean_us": sum(values) / n / 1000.0}


def emit(kind: str, result: Dict[str, Any]) -> None:
    result["blocked_network"] = list(BLOCKED)
    sys.stdout.write(f"{kind} {json.dumps(result)}\n")
    sys.stdout.flush()


# --- the producer loop ------------------------------------------------------------


def produce(sdk: SDK, events: int, threads: int) -> Dict[str, Any]:
    """Run the timed loop; returns timings, the latency array and the refusal count."""
    lat = array("q", bytes(8 * events))
    refused = [0] * threads
    call = sdk.call()
    positional = sdk.positional
    uids = USER_IDS
    ns = time.perf_counter_ns
    props = make_properties

    def loop(j: int, start: int, stop: int) -> None:
        bad = 0
        if positional:
            for i in range(start, stop):
                p = props(i)
                uid = uids[i % 1000]
                a = ns()
                r = call(uid, EVENT, p)
                b = ns()
                lat[i] = b - a
                if not r[0]:
                    bad += 1
        else:
            for i in range(start, stop):
                p = props(i)
                uid = uids[i % 1000]
                a = ns()
                r = call(EVENT, distinct_id=uid, properties=p)
                b = ns()
                lat[i] = b - a
                if r is None:
                    bad += 1
        refused[j] = bad

    bounds = [(j * events // threads, (j + 1) * events // threads) for j in range(threads)]
    if threads == 1:
        t0_wall, t0, cpu0 = time.time(), time.perf_counter(), cpu_seconds()
        loop(0, 0, events)
        t1 = time.perf_counter()
    else:
        barrier = threading.Barrier(threads + 1)

        def worker(j: int) -> None:
            barrier.wait()
            loop(j, *bounds[j])

        workers = [threading.Thread(target=worker, args=(j,), name=f"producer-{j}", daemon=True)
                   for j in range(threads)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 30
        while barrier.n_waiting < threads and time.monotonic() < deadline:
            time.sleep(0.001)
        t0_wall, t0, cpu0 = time.time(), time.perf_counter(), cpu_seconds()
        barrier.wait()
        for w in workers:
            w.join()
        t1 = time.perf_counter()
    return {"t0_wall": t0_wall, "loop_s": t1 - t0, "cpu0": cpu0, "lat": lat, "refused_at_call": sum(refused)}


# --- scenarios -------------------------------------------------------------------


def scenario_produce(sdk: SDK, cfg: Dict[str, Any], col: Collector, out: Dict[str, Any]) -> None:
    events, threads = cfg["events"], cfg["threads"]
    gc.collect()
    run = produce(sdk, events, threads)
    loop_s = run["loop_s"]
    out.update(loop_s=loop_s, refused_at_call=run["refused_at_call"], rss_at_loop_end_mib=rss_bytes() / MIB,
               **percentiles(run["lat"]))
    s = col.stats()
    out.update(unique_at_loop_end=s["unique"], queued_at_loop_end=sdk.queued(),
               delivered_while_producing_per_s=s["unique"] / loop_s if loop_s > 0 else None)
    emit("BENCH-PARTIAL", dict(out))
    s, quiet = drain(sdk, cfg, col, out, run["t0_wall"] + loop_s)
    cpu = cpu_seconds() - run["cpu0"] - col.poll_cpu
    unique = s["unique"]
    span = s["last_new_unique_at"] - run["t0_wall"]
    out.update(
        sent=events, unique=unique, duplicates=s["duplicates"], messages=s["messages"],
        lost=events - unique, quiet_reached=quiet, requests=s["requests"], refused_requests=s["refused"],
        raw_bytes=s["raw_bytes"], compressed_bytes=s["compressed_bytes"],
        end_to_end_per_s=unique / span if unique and span > 0 else None,
        cpu_us_per_event=cpu / events * 1e6, queued_at_end=sdk.queued(), peak_rss_mib=peak_rss_bytes() / MIB,
        max_in_flight=s.get("max_in_flight"),
    )


def drain(sdk: SDK, cfg: Dict[str, Any], col: Collector, out: Dict[str, Any],
          loop_end_wall: float) -> Tuple[Dict[str, Any], bool]:
    """``flush()``, then wait until the collector has seen no new message for 1 s; both
    within ``window`` s of the loop's end when the config has one (the delayed rows)."""
    window = cfg.get("window")
    took, problem = bounded(sdk.flush, window or cfg.get("flush_limit", 60.0))
    out["flush_s"] = took
    if problem:
        out["flush_problem"] = problem
    limit = cfg.get("quiet_limit", 60.0) if window is None else max(0.0, loop_end_wall + window - time.time())
    return col.wait_quiet(loop_end_wall, limit=limit)


def scenario_steady(sdk: SDK, cfg: Dict[str, Any], col: Collector, out: Dict[str, Any]) -> None:
    """One step of the steady-rate row: ``rate`` events/s from one self-pacing thread for ``seconds``."""
    rate, seconds = float(cfg["rate"]), float(cfg["seconds"])
    call, positional, props = sdk.call(), sdk.positional, make_properties
    tick = 0.005  # the producer catches up with its schedule every 5 ms
    sent = refused = 0
    why = ""
    t0_wall, t0 = time.time(), time.perf_counter()
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        due = int(now * rate)
        while sent < due:
            if positional:
                r = call(USER_IDS[sent % 1000], EVENT, props(sent))
                refused += not r[0]
            else:
                r = call(EVENT, distinct_id=USER_IDS[sent % 1000], properties=props(sent))
                refused += r is None
            sent += 1
        if refused or sdk.dropped():
            why = "the SDK dropped events"
            break
        if now >= 2.0 and sent < 0.95 * rate * now:
            why = "the producer fell more than 5 % behind the rate"
            break
        time.sleep(tick)
    loop_s = time.perf_counter() - t0
    out.update(rate=rate, seconds=seconds, sent=sent, loop_s=loop_s, produced_per_s=sent / loop_s,
               refused_at_call=refused)
    if why:  # failed already: no need to wait for the backlog
        out.update(passed=False, why=why)
        return
    s, quiet = drain(sdk, cfg, col, out, t0_wall + loop_s)
    lost = sent - s["unique"]
    out.update(unique=s["unique"], duplicates=s["duplicates"], lost=lost, quiet_reached=quiet,
               max_in_flight=s.get("max_in_flight"), passed=lost == 0 and sent >= 0.95 * rate * seconds)
    if not out["passed"]:
        out["why"] = f"{lost} of {sent} not delivered within the window" if lost else "too few events sent"


def scenario_bigqueue(sdk: SDK, cfg: Dict[str, Any], out: Dict[str, Any]) -> None:
    events = cfg["events"]
    if sdk.positional:
        sdk.client.track(USER_IDS[0], EVENT, make_properties(0))
    else:
        sdk.client.capture(EVENT, distinct_id=USER_IDS[0], properties=make_properties(0))
    time.sleep(0.3)  # let the consumer take it and block on the endpoint that never answers
    gc.collect()
    rss0 = rss_bytes()
    run = produce(sdk, events, 1)
    rss1 = rss_bytes()
    queued = sdk.queued()
    out.update(loop_s=run["loop_s"], refused_at_call=run["refused_at_call"], rss_before=rss0, rss_after=rss1,
               queued_at_loop_end=queued, bytes_per_queued_event=(rss1 - rss0) / events,
               **percentiles(run["lat"]))
    out["worst_call_ms"] = out["max_us"] / 1000.0


def idles(rounds: int) -> List[float]:
    """Idle pauses spread evenly over 0.5 s (the Segment-family consumer's wake-up cycle,
    which a ``flush()`` or ``shutdown()`` may have to wait out): 0.05, 0.15, ... 0.45 s for 5.
    With a fixed pause every round would hit the same phase of that cycle."""
    return [0.5 * (k + 0.5) / rounds for k in range(rounds)]


def scenario_flush(sdk: SDK, cfg: Dict[str, Any], col: Collector, out: Dict[str, Any]) -> None:
    rounds, n = cfg.get("rounds", 5), cfg.get("flush_events", 10)
    call = sdk.call()
    sent = 0

    def send(k: int) -> None:
        nonlocal sent
        for i in range(k):
            if sdk.positional:
                call(USER_IDS[i], EVENT, make_properties(i))
            else:
                call(EVENT, distinct_id=USER_IDS[i], properties=make_properties(i))
            sent += 1

    send(1)  # warm-up: starts the consumer and opens the connection
    _, problem = bounded(sdk.flush, 30.0)
    if problem:
        out["flush_problem"] = f"warm-up flush: {problem}"
        return
    times: List[float] = []
    complete: List[bool] = []
    for idle in idles(rounds):
        time.sleep(idle)
        send(n)
        took, problem = bounded(sdk.flush, 30.0)
        if problem:
            out["flush_problem"] = problem
            break
        times.append(took)
        complete.append(col.stats()["unique"] >= sent)
    out.update(flush_times_ms=[t * 1000 for t in times], delivered_at_return=complete,
               flush_ms=statistics.median(times) * 1000 if times else None)


def scenario_shutdown(sdk: SDK, cfg: Dict[str, Any], col: Collector, out: Dict[str, Any]) -> None:
    """``rounds`` clients one after the other: one call, ``flush()``, an idle pause, ``shutdown()``."""
    times: List[float] = []
    clients = [sdk]  # all kept alive: no client's finalizer runs while another is timed
    for k, idle in enumerate(idles(cfg.get("rounds", 5))):
        if k:
            sdk = type(sdk)(cfg["url"], bool(cfg.get("gzip")), cfg.get("max_queue_size"))
            clients.append(sdk)
        if sdk.positional:
            sdk.client.track(USER_IDS[k], EVENT, make_properties(k))
        else:
            sdk.client.capture(EVENT, distinct_id=USER_IDS[k], properties=make_properties(k))
        _, problem = bounded(sdk.flush, 30.0)
        if problem:
            out["flush_problem"] = f"warm-up flush: {problem}"
            break
        time.sleep(idle)
        took, problem = bounded(sdk.shutdown, 30.0)
        if problem:
            out["shutdown_problem"] = problem
            break
        times.append(took)
    out.update(shutdown_times_ms=[t * 1000 for t in times], unique=col.stats()["unique"],
               shutdown_ms=statistics.median(times) * 1000 if times else None)


def versions(sdk: SDK) -> Dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "executable": sys.executable}
    if sdk.source():
        out["source_sha1"] = sdk.source()
    for dist in (sdk.dist, "requests", "urllib3", "orjson"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def scenario_redis(cfg: Dict[str, Any], col: Collector, out: Dict[str, Any]) -> None:
    """cdp-relay only: ``events`` calls into a Redis stream from this process (a producer
    with ``consume=False``), then ``consumers`` worker processes (``python -m
    analytics.worker``) deliver them to the collector.  Figures: calls + ``wait_durable``
    per second from one producer, and delivered per second from the first message at the
    collector to the last new one."""
    import subprocess

    import analytics

    events, consumers = cfg["events"], cfg["consumers"]
    prefix = f"bench-{os.getpid()}-{int(time.time() * 1000)}"
    client = analytics.Client(WRITE_KEY, host=cfg["url"], queue=cfg["redis"], consume=False,
                              stream_prefix=prefix, max_queue_size=events + 1000, max_queue_wait=None)
    call = client.track
    props = make_properties
    gc.collect()
    t0 = time.perf_counter()
    for i in range(events):
        call(USER_IDS[i % 1000], EVENT, props(i))
    left = client.wait_durable(60)
    into = time.perf_counter() - t0
    out.update(into_redis_s=into, into_redis_per_s=events / into if not left else None, unwritten=left)
    emit("BENCH-PARTIAL", dict(out))
    argv = [sys.executable, "-I", "-m", "analytics.worker", "--queue", cfg["redis"], "--write-key", WRITE_KEY,
            "--host", cfg["url"], "--stream-prefix", prefix]
    workers = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(consumers)]
    try:
        deadline = time.monotonic() + cfg.get("limit", 90.0)
        s = col.stats()
        while s["unique"] < events and time.monotonic() < deadline:
            time.sleep(0.05)
            s = col.stats()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
    span = s["last_new_unique_at"] - s["first_message_at"]
    out.update(unique=s["unique"], duplicates=s["duplicates"], lost=events - s["unique"],
               through_redis_per_s=s["unique"] / span if s["unique"] == events and span > 0 else None)
    client.shutdown(5)


def main() -> int:
    cfg = json.loads(sys.argv[1])
    guard_network()
    out: Dict[str, Any] = {"sdk": cfg["sdk"], "scenario": cfg["scenario"], "threads": cfg.get("threads", 1),
                           "gzip": bool(cfg.get("gzip"))}
    try:
        sdk = SDKS[cfg["sdk"]](cfg["url"], bool(cfg.get("gzip")), cfg.get("max_queue_size"))
        out["versions"] = versions(sdk)
        out["module"] = sdk.module_file()
        scenario = cfg["scenario"]
        if scenario == "produce":
            scenario_produce(sdk, cfg, Collector(cfg.get("collector", cfg["url"])), out)
        elif scenario == "steady":
            scenario_steady(sdk, cfg, Collector(cfg.get("collector", cfg["url"])), out)
        elif scenario == "bigqueue":
            scenario_bigqueue(sdk, cfg, out)
        elif scenario == "flush":
            scenario_flush(sdk, cfg, Collector(cfg.get("collector", cfg["url"])), out)
        elif scenario == "shutdown":
            scenario_shutdown(sdk, cfg, Collector(cfg.get("collector", cfg["url"])), out)
        elif scenario == "redis":
            scenario_redis(cfg, Collector(cfg.get("collector", cfg["url"])), out)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    except Exception as exc:  # reported to the driver, which shows n/a
        out["error"] = f"{type(exc).__name__}: {exc}"
    emit("BENCH-RESULT", out)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: cdp-relay against its peers, side by side.

Starts the collector (``benchmarks/collector.py``, from ``.venv``) and the
blackhole endpoint (``benchmarks/blackhole.py``) in their own processes, then
runs every scenario for every SDK in a fresh subprocess
(``benchmarks/sdk_runner.py``, with ``.venv``'s Python for cdp-relay with the
fast extra, ``.bench-plain-venv``'s for its plain install and ``.bench-venv``'s
for the peers), takes the median of the runs, and prints one table: rows are
figures, columns are SDKs.  The rows with a round trip (20, 100, 250 ms) run
against the same collector told to delay each answer (``POST
/_collector/faults {"delay": ...}`` after its reset), once each.  The figures follow
``shared/reference/benchmark-method.md``; ``benchmarks/README.md`` says how each
is taken.  Results go to ``benchmarks/results/`` as JSON.

    python benchmarks/run.py [--runs N] [--quick] [--sdk NAME ...] [--rst] [--steady-seconds S] [--window S]
    python benchmarks/run.py --from-json benchmarks/results/latest.json [--rst]

``BENCH_RUNS`` and ``BENCH_QUICK=1`` in the environment work like ``--runs``
and ``--quick``.  Only 127.0.0.1 is ever contacted.  Every subprocess has a
timeout; a run that hangs is killed and its figures show as n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RUNNER = HERE / "sdk_runner.py"
OUR_PYTHON = Path(os.environ.get("BENCH_OUR_PYTHON", ROOT / ".venv" / "bin" / "python"))
PEER_PYTHON = Path(os.environ.get("BENCH_PEER_PYTHON", ROOT / ".bench-venv" / "bin" / "python"))
PLAIN_PYTHON = Path(os.environ.get("BENCH_PLAIN_PYTHON", ROOT / ".bench-plain-venv" / "bin" / "python"))

OURS = "cdp-relay"  # with the fast extra (orjson), from .venv
PLAIN = "cdp-relay-plain"  # the plain install (no extras), from .bench-plain-venv
SDKS = [PLAIN, OURS, "customerio-cdp-analytics", "segment-analytics-python", "posthog"]
HEADINGS = {PLAIN: "cdp-relay plain", OURS: "cdp-relay fast"}
EVENTS = 50_000
BIG_QUEUE = 100_000  # "a queue large enough that nothing is dropped"
ROUND_TRIPS = (20, 100, 250)  # ms the collector waits before each answer (quick: QUICK_ROUND_TRIPS)
QUICK_ROUND_TRIPS = (100, 250)
STEPS = (50_000, 20_000, 5_000, 1_000)  # steady rates tried, highest first, until one passes


# --- what is run ------------------------------------------------------------------


@dataclass
class Case:
    """One scenario with one setting of threads and gzip, run once per SDK per run."""

    key: str
    scenario: str
    threads: int = 1
    gzip: bool = False
    target: str = "collector"  # or "blackhole"
    timeout: float = 150.0
    extra: Dict[str, Any] = field(default_factory=dict)
    only: Optional[str] = None  # run for this SDK only (the others show n/a)
    delay: float = 0.0  # the collector answers each request after this many seconds
    once: bool = False  # run in the first run only (the round-trip rows: each is long)

    @property
    def label(self) -> str:
        return f"{self.threads} thr, gzip {'on' if self.gzip else 'off'}"

    def runs_for(self, sdk: str) -> bool:
        """Whether this case runs for ``sdk`` (the plain install: where encoding matters)."""
        if sdk == PLAIN and self.scenario in ("redis", "flush", "shutdown"):  # orjson plays no part there
            return False
        return self.only in (None, sdk, OURS if sdk == PLAIN else None)


@dataclass
class Figure:
    """One row of the table: a field of one case's results."""

    name: str
    case: str
    field: str
    unit: str
    better: str  # "low" or "high"
    label: str = ""
    zero: str = ""  # shown instead of 0 (the steady row when no step passed)


def round_trip_settings(quick: bool, steady_seconds: float = 0.0, window: float = 0.0,
                        round_trips: Sequence[int] = ()) -> Dict[str, Any]:
    """The round-trip rows' settings, defaults filled in: ``steady_seconds``, the length of
    each step of the steady row (30 s; 3 s quick); ``window``, how long a round-trip run may
    take to deliver after its producer loop (15 s; 4 s quick: what has not arrived then is
    lost); ``round_trips`` in ms (20, 100, 250; 100 and 250 quick)."""
    return {"steady_seconds": steady_seconds or (3.0 if quick else 30.0), "window": window or (4.0 if quick else 15.0),
            "round_trips": sorted(round_trips or (QUICK_ROUND_TRIPS if quick else ROUND_TRIPS))}


def plan(quick: bool, rtt: Optional[Dict[str, Any]] = None) -> Tuple[List[Case], List[Figure]]:
    """The cases to run and the rows to show; ``rtt`` as from :func:`round_trip_settings`."""
    rtt = rtt or round_trip_settings(quick)
    steady_seconds, window, rtts = rtt["steady_seconds"], rtt["window"], rtt["round_trips"]
    combos = [(1, False), (4, True)] if quick else [(1, False), (1, True), (4, False), (4, True)]
    cases: List[Case] = []
    for threads, gzip in combos:
        cases.append(Case(f"burst-{threads}t-{'gz' if gzip else 'raw'}", "produce", threads, gzip,
                          extra={"events": EVENTS}))
    cases.append(Case("e2e", "produce", extra={"events": EVENTS, "max_queue_size": BIG_QUEUE}))
    cases.append(Case("bigqueue", "bigqueue", target="blackhole", timeout=90.0,
                      extra={"events": EVENTS, "max_queue_size": BIG_QUEUE}))
    cases.append(Case("flush", "flush", timeout=120.0, extra={"rounds": 5, "flush_events": 10}))
    cases.append(Case("shutdown", "shutdown", timeout=120.0, extra={"rounds": 5}))
    for consumers in (1, 4):
        cases.append(Case(f"redis-{consumers}c", "redis", timeout=150.0, only=OURS,
                          extra={"events": EVENTS, "consumers": consumers}))

    for ms in rtts:
        cases.append(Case(f"rtt{ms}-burst", "produce", delay=ms / 1000, once=True, timeout=window + 120.0,
                          extra={"events": EVENTS, "window": window}))
        cases.append(Case(f"rtt{ms}-steady", "steady", delay=ms / 1000, once=True,
                          timeout=steady_seconds + window + 60.0,
                          extra={"seconds": steady_seconds, "window": window}))

    bursts = [c for c in cases if c.key.startswith("burst-")]
    figures: List[Figure] = []
    for name, fld, unit, better in (
        ("enqueue p50", "p50_us", "µs", "low"),
        ("enqueue p99", "p99_us", "µs", "low"),
        ("delivered while producing", "delivered_while_producing_per_s", "events/s", "high"),
        (f"lost from a {EVENTS:,} burst", "lost", "events", "low"),
    ):
        for c in bursts:
            figures.append(Figure(name, c.key, fld, unit, better, c.label))
    figures += [
        Figure("end-to-end", "e2e", "end_to_end_per_s", "events/s", "high", "1 thr, gzip off"),
        Figure("CPU per event", "e2e", "cpu_us_per_event", "µs", "low", "1 thr, gzip off"),
        Figure("memory per queued event", "bigqueue", "bytes_per_queued_event", "bytes", "low",
               f"{EVENTS:,} queued"),
        Figure("worst single call", "bigqueue", "worst_call_ms", "ms", "low", f"{EVENTS:,} queued"),
        Figure("flush() of 10 events", "flush", "flush_ms", "ms", "low", "median of 5"),
        Figure("idle shutdown()", "shutdown", "shutdown_ms", "ms", "low", "median of 5"),
        Figure("into the Redis queue", "redis-1c", "into_redis_per_s", "events/s", "high", "1 producer"),
        Figure("delivered through Redis", "redis-1c", "through_redis_per_s", "events/s", "high",
               "1 consumer process"),
        Figure("delivered through Redis", "redis-4c", "through_redis_per_s", "events/s", "high",
               "4 consumer processes"),
    ]
    for name, kind, fld, unit, better in (
        (f"lost from a {EVENTS:,} burst", "burst", "lost", "events", "low"),
        ("end-to-end", "burst", "end_to_end_per_s", "events/s", "high"),
        (f"highest steady rate, nothing lost for {steady_seconds:g} s", "steady", "steady_max_per_s",
         "events/s", "high"),
        ("most requests in flight at once", "burst", "max_in_flight", "requests", "high"),
    ):
        for ms in rtts:
            figures.append(Figure(name, f"rtt{ms}-{kind}", fld, unit, better, f"{ms} ms round trip",
                                  zero=f"< {STEPS[-1]:,}" if kind == "steady" else ""))
    figures += [
        Figure("RSS at the end of the burst", f"rtt{rtts[-1]}-burst", "rss_at_loop_end_mib", "MiB", "low",
               f"{rtts[-1]} ms round trip, default queue"),
        Figure("peak RSS", f"rtt{rtts[-1]}-burst", "peak_rss_mib", "MiB", "low",
               f"{rtts[-1]} ms round trip, default queue"),
    ]
    return cases, figures


# --- processes ---------------------------------------------------------------------


def child_env() -> Dict[str, str]:
    """The environment for every child: no proxy (loopback only), no PostHog overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("POSTHOG_", "PYTHON"))}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


class Server:
    """A server subprocess that prints ``listening on URL`` once."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.log = open(log_dir / f"{name}.log", "wb")
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=self.log, cwd=str(ROOT),
                                     env=child_env(), start_new_session=True)
        line = self._first_line(15.0)
        if not line.startswith("listening on "):
            self.stop()
            raise SystemExit(f"bench: the {name} did not start (said {line!r}); see {self.log.name}")
        self.url = line.split()[-1]

    def _first_line(self, timeout: float) -> str:
        box: List[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline().decode().strip()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        return box[0] if box else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def start_redis() -> Optional[Tuple[subprocess.Popen, str]]:
    """A throw-away ``redis-server`` on a free loopback port (nothing kept on disk), or None."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tempfile.gettempdir()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def control(url: str, route: str, method: str = "GET", body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    req = urllib.request.Request(url + route, method=method, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def python_for(sdk: str) -> Path:
    return {OURS: OUR_PYTHON, PLAIN: PLAIN_PYTHON}.get(sdk, PEER_PYTHON)


def prepare_collector(url: str, delay: float) -> Optional[str]:
    """Wait until no request of the last run is still being answered (a delayed one would
    land after the reset and count for the next run), reset, set ``delay``; why not, or None."""
    try:
        deadline = time.monotonic() + max(ROUND_TRIPS) / 1000 + 15
        while control(url, "/_collector/stats").get("in_flight") and time.monotonic() < deadline:
            time.sleep(0.05)
        control(url, "/_collector/reset", "POST")
        if delay:
            control(url, "/_collector/faults", "POST", {"delay": delay})
    except (OSError, ValueError) as exc:
        return f"collector reset failed: {exc}"
    return None


def run_case(sdk: str, case: Case, urls: Dict[str, str], log_dir: Path, tag: str) -> Dict[str, Any]:
    """Run one SDK on one case; the steady case is a run per step, highest rate first."""
    if case.scenario != "steady":
        return run_one(sdk, case, urls, log_dir, tag)
    steps: List[Dict[str, Any]] = []
    best: Optional[int] = None
    for rate in STEPS:
        r = run_one(sdk, case, urls, log_dir, f"{tag}-{rate}", {"rate": rate})
        steps.append(r)
        print(f"bench:     {case.key} {sdk} at {rate:,} events/s: "
              f"{'passed' if r.get('passed') else r.get('why') or r.get('error') or 'failed'}",
              file=sys.stderr, flush=True)
        if r.get("passed"):
            best = rate
            break
    failed = [r for r in steps if "passed" not in r]  # a run that gave no verdict (killed, crashed)
    result: Dict[str, Any] = {"steps": steps, "wall_s": sum(r["wall_s"] for r in steps),
                              "versions": next((r["versions"] for r in steps if r.get("versions")), None)}
    result["steady_max_per_s"] = best if best is not None else (None if failed else 0)
    if failed:
        result["error"] = f"{len(failed)} step(s) gave no verdict: {failed[0].get('error')}"
    result.update(sdk=sdk, case=case.key)
    return result


def run_one(sdk: str, case: Case, urls: Dict[str, str], log_dir: Path, tag: str,
            more: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run one SDK on one case in a fresh process; its result dict (with ``error`` when it failed)."""
    url = urls[case.target]
    problem = prepare_collector(urls["collector"], case.delay)
    if problem:
        return {"sdk": sdk, "case": case.key, "wall_s": 0.0, "error": problem}
    cfg = {"sdk": OURS if sdk == PLAIN else sdk, "scenario": case.scenario, "url": url,
           "collector": urls["collector"], "threads": case.threads, "gzip": case.gzip, **case.extra, **(more or {})}
    if case.scenario == "redis":
        cfg["redis"] = urls["redis"]
    err_path = log_dir / f"{tag}.stderr"
    started = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([str(python_for(sdk)), "-I", str(RUNNER), json.dumps(cfg)],
                                stdout=subprocess.PIPE, stderr=err, cwd=str(log_dir), env=child_env(),
                                start_new_session=True)
        killed = False
        try:
            out, _ = proc.communicate(timeout=case.timeout)
        except subprocess.TimeoutExpired:
            killed = True
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this run's processes
            out, _ = proc.communicate(timeout=10)
    result: Dict[str, Any] = {}
    partial: Dict[str, Any] = {}
    for line in out.decode(errors="replace").splitlines():
        kind, _, payload = line.partition(" ")
        if kind in ("BENCH-RESULT", "BENCH-PARTIAL"):
            try:
                (result if kind == "BENCH-RESULT" else partial).update(json.loads(payload))
            except ValueError:
                pass
    if not result:
        result = dict(partial)
        why = f"killed after {case.timeout:g} s" if killed else f"exited {proc.returncode} without a result"
        result["error"] = why + (" (figures of the producer loop kept)" if partial else "")
        result["stderr_tail"] = _tail(err_path)
    result.update(sdk=sdk, case=case.key, wall_s=time.monotonic() - started)
    return result


def _tail(path: Path, lines: int = 5) -> List[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


# --- figures ---------------------------------------------------------------------


def medians(results: List[Dict[str, Any]], figures: List[Figure], sdks: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """{figure id: {sdk: {"value": median or None, "n": runs with a value, "runs": total}}}."""
    table: Dict[str, Dict[str, Any]] = {}
    for f in figures:
        row: Dict[str, Any] = {}
        for sdk in sdks:
            runs = [r for r in results if r["sdk"] == sdk and r["case"] == f.case]
            values = [r[f.field] for r in runs if isinstance(r.get(f.field), (int, float))]
            row[sdk] = {"value": statistics.median(values) if values else None, "n": len(values),
                        "runs": len(runs), "values": values}
        table[figure_id(f)] = row
    return table


def figure_id(f: Figure) -> str:
    return f"{f.case}.{f.field}"


def fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("events/s", "events", "bytes", "requests"):
        return f"{value:,.0f}"
    if unit == "µs":
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    if unit == "ms":
        return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    if unit == "MiB":
        return f"{value:,.1f}"
    return f"{value:g}"


def rows(figures: List[Figure], table: Dict[str, Dict[str, Any]], sdks: Sequence[str]) -> List[List[str]]:
    out = [["figure"] + [HEADINGS.get(s, s) for s in sdks]]
    for f in figures:
        label = f"{f.name} ({f.unit}{', ' + f.label if f.label else ''})"
        cells = []
        for sdk in sdks:
            cell = table.get(figure_id(f), {}).get(sdk) or {"value": None, "n": 0, "runs": 0}
            text = f.zero if f.zero and cell["value"] == 0 else fmt(cell["value"], f.unit)
            if cell["runs"] and cell["n"] < cell["runs"]:
                text += f" [{cell['n']}/{cell['runs']}]"
            cells.append(text)
        out.append([label] + cells)
    return out


def render_text(grid: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = []
    for n, r in enumerate(grid):
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_rst(grid: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule]
    for n, r in enumerate(grid):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if n == 0:
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)


# --- header ---------------------------------------------------------------------


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "os": platform.platform(),
            "driver_python": platform.python_version(), "load_at_start": load, "git": git_state()}


def git_state() -> Optional[str]:
    """``<commit>`` or ``<commit> + uncommitted changes in analytics/`` (None outside git)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "analytics", "customerio"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" + uncommitted changes in analytics/" if dirty.stdout.strip() else "")


def versions_from(results: List[Dict[str, Any]], sdks: Sequence[str]) -> Dict[str, Dict[str, str]]:
    out: Dict[str, Dict[str, str]] = {}
    for sdk in sdks:
        for r in results:
            if r["sdk"] == sdk and r.get("versions"):
                out[sdk] = r["versions"]
                break
    return out


def header(doc: Dict[str, Any]) -> List[str]:
    m = doc["machine"]
    load = m.get("load_at_start")
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib')} GiB, {m['os']}"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"cdp-relay from git {m.get('git') or '(unknown)'}",
        f"runs: {doc['config']['runs']} per figure (median){', quick' if doc['config']['quick'] else ''}; "
        f"event: track(user_id, \"Product Purchased\", six properties), {doc['config']['event_bytes']} bytes "
        f"as json.dumps of userId+event+properties; user ids cycle over 1,000",
    ]
    for sdk, v in doc["versions"].items():
        extra = ", ".join(f"{k} {v[k]}" for k in ("requests", "urllib3", "orjson") if k in v)
        lines.append(f"  {sdk} {v.get(sdk) or v.get(OURS, '?')} on Python {v.get('python', '?')} ({extra})")
    return lines


def notes(doc: Dict[str, Any]) -> List[str]:
    """What went wrong or looks wrong in the raw runs, one line each."""
    out: List[str] = []
    for r in doc["results"]:
        where = f"{r['sdk']} / {r['case']}"
        if r.get("error"):
            out.append(f"{where}: {r['error']}" + (f" | {r['stderr_tail'][-1]}" if r.get("stderr_tail") else ""))
        window_ended = r["case"].startswith("rtt") and r.get("quiet_reached") is False
        if window_ended:
            out.append(f"{r['case']}: the window ended before everything had arrived (what had not counts as lost): "
                       + ", ".join(x["sdk"] for x in doc["results"] if x["case"] == r["case"]
                                   and x.get("quiet_reached") is False))
        for key in ("flush_problem", "shutdown_problem"):
            if r.get(key) and not window_ended:
                out.append(f"{where}: {key.replace('_', ' ')}: {r[key]}")
        if r.get("blocked_network"):
            out.append(f"{where}: NON-LOOPBACK NETWORK ATTEMPTED AND BLOCKED: {r['blocked_network'][:3]}")
        if r.get("duplicates"):
            out.append(f"{where}: {r['duplicates']} duplicate messages at the collector")
        if r.get("quiet_reached") is False and not window_ended:
            out.append(f"{where}: messages were still arriving at the time limit")
        for step in r.get("steps", []):
            if step.get("blocked_network"):
                out.append(f"{where}: NON-LOOPBACK NETWORK ATTEMPTED AND BLOCKED: {step['blocked_network'][:3]}")
        if r["case"] == "e2e" and r.get("lost"):
            out.append(f"{where}: lost {r['lost']} with a {BIG_QUEUE:,} queue (end-to-end run)")
        if r["case"] == "flush" and r.get("delivered_at_return") and not all(r["delivered_at_return"]):
            out.append(f"{where}: flush() returned before its events had all arrived "
                       f"({r['delivered_at_return'].count(False)} of {len(r['delivered_at_return'])} rounds)")
    if doc["config"].get("stopped_at_budget") is not None:
        out.append(f"stopped at the time budget after {doc['config']['stopped_at_budget']} runs: "
                   "the figures of the runs not started are n/a or rest on fewer runs")
    for ours in (PLAIN, OURS):
        sources = sorted({r["versions"]["source_sha1"] for r in doc["results"]
                          if r["sdk"] == ours and (r.get("versions") or {}).get("source_sha1")})
        if len(sources) > 1:
            out.insert(0, f"{ours}: its source changed while the bench ran ({len(sources)} versions measured: "
                          f"{', '.join(sources)}); its figures mix them")
    seen = set()
    return [n for n in out if not (n in seen or seen.add(n))]


def report(doc: Dict[str, Any], rst: bool) -> str:
    config = doc["config"]
    cases, figures = plan(config["quick"], config.get("round_trip") or round_trip_settings(config["quick"]))
    ran = {c["key"] for c in config["cases"]}  # --case may have left some out
    figures = [f for f in figures if f.case in ran]
    sdks = doc["config"]["sdks"]
    grid = rows(figures, doc["table"], sdks)
    # In RST the header is a line block and the notes a list, so the output pastes as is.
    parts = [f"| {line.strip()}" for line in header(doc)] if rst else header(doc)
    parts.append("")
    parts.append(render_rst(grid) if rst else render_text(grid))
    parts.append("")
    parts.append("[n/m]: only n of m runs gave this figure (the others failed: see the notes). "
                 "Lower is better except for events/s.")
    problems = notes(doc)
    if problems:
        parts.append("")
        parts.append("notes:")
        if rst:
            parts.append("")
        parts += [f"{'-' if rst else '  -'} {p}" for p in problems]
    return "\n".join(parts)


# --- main ---------------------------------------------------------------------------


def check_environment(sdks: Sequence[str]) -> None:
    for sdk in sdks:
        py = python_for(sdk)
        if not py.exists():
            hint = {OURS: "make venv", PLAIN: "make bench (it creates .bench-plain-venv)"}.get(
                sdk, "make bench (it creates .bench-venv)")
            raise SystemExit(f"bench: {py} is missing: run {hint}")
    if PLAIN in sdks:
        probe = subprocess.run([str(PLAIN_PYTHON), "-I", "-c",
                                "import importlib.util as u; print(u.find_spec('orjson') is None)"],
                               capture_output=True, text=True, timeout=60, env=child_env())
        if probe.stdout.strip() != "True":
            print("bench: warning: orjson is importable from .bench-plain-venv; its column is not the plain install",
                  file=sys.stderr)
    if OURS in sdks:
        probe = subprocess.run([str(OUR_PYTHON), "-I", "-c",
                                "import importlib.util as u; print(u.find_spec('posthog') is None "
                                "and u.find_spec('segment') is None)"],
                               capture_output=True, text=True, timeout=60, env=child_env())
        if probe.stdout.strip() != "True":
            print("bench: warning: a peer SDK is importable from .venv; the peers belong in .bench-venv",
                  file=sys.stderr)
    if any(s != OURS for s in sdks):
        probe = subprocess.run([str(PEER_PYTHON), "-I", "-c",
                                "import importlib.metadata as m\n"
                                "try:\n m.version('cdp-relay'); print('ours')\n"
                                "except m.PackageNotFoundError: print('clean')"],
                               capture_output=True, text=True, timeout=60, env=child_env())
        if probe.stdout.strip() != "clean":
            raise SystemExit("bench: cdp-relay is installed in .bench-venv; it must hold only the peers")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default BENCH_RUNS or 3)")
    parser.add_argument("--quick", action="store_true", help="1 run, fewer rows (or BENCH_QUICK=1)")
    parser.add_argument("--sdk", action="append", choices=SDKS, help="only this SDK (repeatable)")
    parser.add_argument("--rst", action="store_true", help="print the table as reStructuredText")
    parser.add_argument("--case", action="append", metavar="PREFIX",
                        help="only the cases whose key starts with PREFIX (repeatable; e.g. rtt100, burst-1t)")
    parser.add_argument("--from-json", type=Path, help="print the table of a saved result, run nothing")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("BENCH_BUDGET") or 2700),
                        help="stop starting runs after this many seconds (default BENCH_BUDGET or 2700)")
    parser.add_argument("--steady-seconds", type=float, default=float(os.environ.get("BENCH_STEADY_SECONDS") or 0),
                        help="length of each step of the steady-rate rows (default BENCH_STEADY_SECONDS, "
                             "or 30; 3 with --quick)")
    parser.add_argument("--window", type=float, default=float(os.environ.get("BENCH_WINDOW") or 0),
                        help="seconds a round-trip run may take to deliver after its loop (default BENCH_WINDOW, "
                             "or 15; 4 with --quick)")
    parser.add_argument("--round-trip", type=int, action="append", metavar="MS",
                        help="a round trip to measure, in ms (repeatable; default 20, 100, 250; 100, 250 with --quick)")
    args = parser.parse_args(argv)

    if args.from_json:
        print(report(json.loads(args.from_json.read_text()), args.rst))
        return 0

    quick = args.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    runs = args.runs if args.runs is not None else int(os.environ.get("BENCH_RUNS") or (1 if quick else 3))
    if runs < 1:
        parser.error("--runs must be at least 1")
    if args.steady_seconds < 0 or args.window < 0:
        parser.error("--steady-seconds and --window must be positive")
    sdks = [s for s in SDKS if not args.sdk or s in args.sdk]
    check_environment(sdks)
    rtt = round_trip_settings(quick, args.steady_seconds, args.window, args.round_trip or ())
    cases, figures = plan(quick, rtt)
    if args.case:
        cases = [c for c in cases if c.key.startswith(tuple(args.case))]
    redis_server = None
    if OURS in sdks and any(c.scenario == "redis" for c in cases):
        redis_server = start_redis()
        if redis_server is None:
            cases = [c for c in cases if c.scenario != "redis"]
            print("bench: redis-server not found: the Redis rows are left out", file=sys.stderr)

    log_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    doc: Dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "config": {"runs": runs, "quick": quick, "sdks": sdks, "events": EVENTS, "big_queue": BIG_QUEUE,
                   "event_bytes": _event_bytes(), "cases": [c.__dict__ for c in cases],
                   "round_trip": rtt, "steps": STEPS},
        "results": [],
    }
    total = sum(1 for run in range(1, runs + 1) for c in cases for s in sdks
                if c.runs_for(s) and not (c.once and run > 1))
    n = 0
    began = time.monotonic()
    collector = blackhole = None
    try:
        collector = Server("collector", [str(OUR_PYTHON), str(HERE / "collector.py"), "--max-seconds", "3600"],
                           log_dir)
        blackhole = Server("blackhole", [str(OUR_PYTHON), str(HERE / "blackhole.py"), "--max-seconds", "3600"],
                           log_dir)
        urls = {"collector": collector.url, "blackhole": blackhole.url}
        if redis_server is not None:
            urls["redis"] = redis_server[1]
        print(f"bench: {total} runs; collector {collector.url}, blackhole {blackhole.url}; logs in {log_dir}",
              file=sys.stderr)
        for run in range(1, runs + 1):
            for case in cases:
                for sdk in sdks:  # SDKs interleaved, so drifting machine load spreads over all of them
                    if not case.runs_for(sdk) or (case.once and run > 1):
                        continue
                    if time.monotonic() - began > args.budget:
                        raise TimeoutError
                    n += 1
                    result = run_case(sdk, case, urls, log_dir, f"{run}-{case.key}-{sdk}")
                    result["run"] = run
                    doc["results"].append(result)
                    status = result.get("error") or "ok"
                    print(f"bench: [{n}/{total}] run {run} {case.key:<14} {sdk:<26} {result['wall_s']:5.1f} s  "
                          f"{status}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("bench: interrupted; reporting what ran", file=sys.stderr)
    except TimeoutError:
        print(f"bench: over the {args.budget:g} s budget after {n} of {total} runs; reporting what ran",
              file=sys.stderr)
        doc["config"]["stopped_at_budget"] = n
    finally:
        for server in (blackhole, collector):
            if server is not None:
                server.stop()
        if redis_server is not None:
            redis_server[0].terminate()
            redis_server[0].wait(10)

    doc["elapsed_s"] = time.monotonic() - began
    doc["versions"] = versions_from(doc["results"], sdks)
    doc["table"] = medians(doc["results"], figures, sdks)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1))
    shutil.copyfile(path, RESULTS / "latest.json")
    print(report(doc, args.rst))
    print(f"\n{n} runs in {doc['elapsed_s']:.0f} s; results in {path.relative_to(ROOT)}", file=sys.stderr)
    shutil.rmtree(log_dir, ignore_errors=True) if not any(r.get("error") for r in doc["results"]) else None
    return 0


def _event_bytes() -> int:
    sys.path.insert(0, str(HERE))
    try:
        import sdk_runner

        return len(json.dumps({"userId": sdk_runner.USER_IDS[0], "event": sdk_runner.EVENT,
                               "properties": sdk_runner.make_properties(0)}))
    finally:
        sys.path.pop(0)


if __name__ == "__main__":
    sys.exit(main())

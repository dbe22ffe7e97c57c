"""The cost of a call with and without orjson: ``Client.track()`` and ``encoding.dumps_message``.

Run from the project's virtualenv (``orjson`` installed)::

    .venv/bin/python benchmarks/encode_micro.py [--calls 200000] [--runs 3]

Each run is a fresh process per encoder: ``orjson``, and ``json`` (orjson made
unimportable before ``analytics`` is imported, as in a plain install).  A run
times ``track(user_id, "Product Purchased", properties)`` with the benchmark's
event (``sdk_runner.make_properties``) on a client whose consumer cannot
deliver (``host`` a closed port, a queue large enough for every call), so the
figures are the caller's work alone: validate, build, encode, enqueue.  Then it
times ``dumps_message`` of one built message.  It prints each run and the
medians, in µs, and the json/orjson ratio of the track p50.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent


def _percentiles(lat: array) -> Dict[str, float]:
    values = sorted(lat)
    return {"p50": values[len(values) // 2] / 1000, "p99": values[len(values) * 99 // 100] / 1000}


def measure(calls: int) -> Dict[str, Any]:
    """One run in this process: track() and dumps_message latencies (µs)."""
    sys.path.insert(0, str(HERE))
    import logging

    from sdk_runner import EVENT, USER_IDS, make_properties

    from analytics import Client, encoding, messages

    logging.getLogger("customerio").disabled = True  # the consumer's failed posts to the closed port
    client = Client(write_key="k", send=True, host="http://127.0.0.1:9", max_queue_size=10**6)
    track, ns = client.track, time.perf_counter_ns
    for i in range(2000):  # warm up
        track(USER_IDS[i % 1000], EVENT, make_properties(i))
    lat = array("q", bytes(8 * calls))
    for i in range(calls):
        props, uid = make_properties(i), USER_IDS[i % 1000]
        start = ns()
        track(uid, EVENT, props)
        lat[i] = ns() - start
    out = {"backend": encoding.BACKEND, **{"track_" + k: v for k, v in _percentiles(lat).items()}}
    msg = messages.build("track", user_id=USER_IDS[0], event=EVENT, properties=make_properties(0))
    dumps = encoding.dumps_message
    lat = array("q", bytes(8 * (calls // 2)))
    for i in range(calls // 2):
        start = ns()
        dumps(msg)
        lat[i] = ns() - start
    out.update({"encode_" + k: v for k, v in _percentiles(lat).items()}, bytes=len(dumps(msg)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=("orjson", "json"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "json":
            sys.modules["orjson"] = None  # type: ignore[assignment]  # import orjson -> ImportError
        print(json.dumps(measure(args.calls)))
        os._exit(0)  # the consumer would retry its posts until shutdown's deadline
    runs: Dict[str, List[Dict[str, Any]]] = {"orjson": [], "json": []}
    for _ in range(args.runs):
        for backend, results in runs.items():
            proc = subprocess.run(
                [sys.executable, __file__, "--child", backend, "--calls", str(args.calls)],
                capture_output=True, text=True, timeout=600, check=True,
            )
            results.append(json.loads(proc.stdout.splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    medians = {b: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "backend"} for b, rs in runs.items()}
    for backend, figures in medians.items():
        print(backend, "medians (µs):", ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if k != "bytes"))
    print(f"track p50 json/orjson: {medians['json']['track_p50'] / medians['orjson']['track_p50']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

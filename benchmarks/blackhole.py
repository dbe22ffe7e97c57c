"""An HTTP endpoint that accepts connections, reads everything, and never answers.

Used for the memory-per-queued-event figure: the SDK's consumer sends its first
batch, then waits for an answer that never comes (until its own timeout), so
everything else stays queued.  Standard library only; runs in its own process::

    python benchmarks/blackhole.py [--port 0] [--max-seconds 3600]

Prints ``listening on http://127.0.0.1:PORT`` once, then serves until
SIGINT/SIGTERM or ``--max-seconds``.  Bytes are read and discarded so a client's
send never blocks on a full socket buffer; a connection is closed only when the
client closes it.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
import time
from typing import List, Optional


def serve(host: str, port: int, max_seconds: float) -> int:
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    listener.listen(128)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    bound = listener.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"listening on http://{shown}:{bound[1]}", flush=True)
    deadline = time.monotonic() + max_seconds
    open_conns = 0
    while not stopping and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _addr = listener.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                open_conns += 1
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                open_conns -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Accept HTTP connections and never answer.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the blackhole only listens on loopback")
    return serve(args.host, args.port, args.max_seconds)


if __name__ == "__main__":
    sys.exit(main())

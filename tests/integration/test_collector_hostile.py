"""The local collector against hostile clients and pages: real HTTP on 127.0.0.1, raw sockets for bad requests."""

from __future__ import annotations

import base64
import gc
import gzip
import http.client
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest
from analytics.collector import Collector
from analytics.errors import ConfigurationError

from ..conftest import wait_until


TIMEOUT = 5.0


AUTH = "Basic " + base64.b64encode(b"wk-hostile:").decode()


JSON = "application/json"


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector that accepts any write key (overrides the shared fixture)."""
    with Collector() as c:
        yield c


def batch(*ids: str) -> bytes:
    messages = [{"type": "track", "messageId": i, "userId": "u", "event": "E"} for i in ids]
    return json.dumps({"batch": messages, "sentAt": "2026-11-01T12:00:00Z"}).encode()


def request(c: Collector, method: str, path: str, body: Optional[bytes] = None,
            headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    """One request on a fresh connection; (status, lower-cased headers, body).  A Host given wins."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def read_answer(sock: socket.socket) -> Optional[bytes]:
    """Read one response (head and Content-Length body), or None when the server closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return data or None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def status_of(answer: Optional[bytes]) -> int:
    assert answer is not None, "the collector closed the connection without answering"
    return int(answer.split(b" ", 2)[1])


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``seconds``; reads and drops what comes."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


@pytest.mark.parametrize("method, path", [
    ("GET", "/_collector/messages"), ("GET", "/_collector/stats"), ("GET", "/_collector/events"),
    ("GET", "/_collector/batches"), ("GET", "/_collector/export"), ("GET", "/_collector/requests"),
    ("GET", "/_collector/request?id=1"), ("GET", "/"), ("POST", "/_collector/reset"), ("POST", "/_collector/faults"),
    ("POST", "/v1/batch"), ("POST", "/api/v2/batch"),
])
def test_a_foreign_host_header_is_refused_on_every_route(collector: Collector, method: str, path: str) -> None:
    """A request whose Host is another name (DNS rebinding) gets 421 and reads or changes nothing."""
    assert request(collector, "POST", "/v1/batch", batch("m-0"), {"Authorization": AUTH})[0] == 200
    body = {"/_collector/faults": b'{"fail_next": {"n": 5}, "delay": 1000}'}.get(path, batch("m-1"))
    for host in (f"evil.example:{collector.port}", "evil.example", "127.0.0.1.evil.example", "localhost.evil",
                 f"[::2]:{collector.port}", "127.0.0.1, evil.example"):
        status, _, data = request(collector, method, path, body if method == "POST" else None,
                                  {"Host": host, "Authorization": AUTH, "Content-Type": JSON})
        assert status == 421, host
        assert json.loads(data)["code"] == "misdirected_request"
        assert b"m-0" not in data
    assert [m["messageId"] for m in collector.messages] == ["m-0"]
    assert collector.stats()["pending_faults"] == 0 and collector.delay == 0


def test_an_absolute_request_target_naming_another_host_is_refused(collector: Collector) -> None:
    """GET http://evil.example/_collector/messages (proxy form) is judged by its own authority: 421."""
    status, _, _ = request(collector, "GET", "http://evil.example/_collector/messages",
                           headers={"Host": f"127.0.0.1:{collector.port}"})
    assert status == 421
    status, _, _ = request(collector, "GET", f"http://localhost:{collector.port}/_collector/messages")
    assert status == 200


def test_loopback_names_and_the_bound_address_are_served(collector: Collector) -> None:
    """localhost, 127.0.0.1 and [::1] (any case, with or without a port) and no Host at all are answered."""
    port = collector.port
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LocalHost:{port}", "[::1]", f"[::1]:{port}"):
        assert request(collector, "GET", "/_collector/stats", headers={"Host": host})[0] == 200, host
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /_collector/stats HTTP/1.0\r\n\r\n")
        assert status_of(read_answer(sock)) == 200


def test_allowed_hosts_and_a_wildcard_bind_accept_their_names() -> None:
    """allowed_hosts adds names; bound to 0.0.0.0 any IP address literal is served, other names still 421."""
    with Collector(allowed_hosts=["Collector.Internal", "svc:8080"]) as c:
        for host, expected in (("collector.internal:9999", 200), ("svc", 200), ("other.internal", 421)):
            assert request(c, "GET", "/_collector/stats", headers={"Host": host})[0] == expected, host
    with Collector(host="0.0.0.0") as c:
        for host, expected in (("192.0.2.7:8765", 200), ("[2001:db8::1]", 200), ("0.0.0.0", 200),
                               ("localhost", 200), ("rebound.example", 421)):
            assert request(c, "GET", "/_collector/stats", headers={"Host": host})[0] == expected, host
    for bad in ("", "a b", "x/y", "host", 5, [None]):
        with pytest.raises(ConfigurationError, match="allowed_hosts"):
            Collector(allowed_hosts=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("content_type", [
    None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", "application/jsonx",
])
def test_control_posts_that_are_not_json_are_refused(collector: Collector, content_type: Optional[str]) -> None:
    """A form post (or any non-JSON body) to /faults or /reset is 403 and changes nothing."""
    assert request(collector, "POST", "/v1/batch", batch("m-0"), {"Authorization": AUTH})[0] == 200
    headers = {} if content_type is None else {"Content-Type": content_type}
    spec = b'{"fail_next": {"n": 1000, "status": 503}, "delay": 1000000000}'
    for path, body in (("/_collector/faults", spec), ("/_collector/reset", b"")):
        status, _, data = request(collector, "POST", path, body, headers)
        assert status == 403 and json.loads(data)["code"] == "forbidden", path
    assert collector.stats()["pending_faults"] == 0 and collector.delay == 0
    assert [m["messageId"] for m in collector.messages] == ["m-0"]


def test_control_posts_from_another_origin_are_refused(collector: Collector) -> None:
    """A JSON control post with a foreign (or null) Origin is 403; its own origin, or none, is served."""
    spec = b'{"fail_next": {"n": 1}}'
    for origin in ("http://evil.example", "null", f"http://localhost:{collector.port + 1}", "https://127.0.0.1"):
        status, _, _ = request(collector, "POST", "/_collector/faults", spec, {"Content-Type": JSON, "Origin": origin})
        assert status == 403, origin
    assert collector.stats()["pending_faults"] == 0
    own = {"Content-Type": "application/json; charset=utf-8", "Origin": collector.url}
    assert request(collector, "POST", "/_collector/faults", spec, own)[0] == 200
    assert request(collector, "POST", "/_collector/faults", spec, {"Content-Type": JSON})[0] == 200
    assert collector.stats()["pending_faults"] == 2


def test_no_permissive_cors_headers(collector: Collector) -> None:
    """Neither a preflight nor a request with an Origin gets an Access-Control-* header."""
    origin = {"Origin": "http://evil.example"}
    answers = [
        request(collector, "OPTIONS", "/_collector/faults",
                headers={**origin, "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type"}),
        request(collector, "GET", "/_collector/messages", headers=origin),
        request(collector, "GET", "/_collector/events", headers=origin),
        request(collector, "POST", "/v1/batch", batch("m-0"), {**origin, "Authorization": AUTH}),
    ]
    for status, headers, _ in answers:
        assert not [name for name in headers if name.startswith("access-control-")], status


def chunked_head(path: str = "/v1/batch") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()


@pytest.mark.parametrize("size_line", [b"-3", b"-1", b"-5", b"-0", b"zz", b"0x10", b"+5", b"1_0", b" ", b"",
                                       b"1" * 17, b"a" * 2000])
def test_an_invalid_chunk_size_is_400(collector: Collector, size_line: bytes) -> None:
    """A negative, non-hex, signed, underscored, empty or overlong chunk size line gets 400 and the
    connection closes, without reading on (the client keeps its side open)."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        sock.sendall(chunked_head() + size_line + b"\r\n" + b"x" * 100)
        answer = read_answer(sock)
        assert status_of(answer) == 400 and b'"bad_request"' in answer
        assert closed_within(sock, TIMEOUT)
    assert request(collector, "POST", "/v1/batch", batch("m-0"), {"Authorization": AUTH})[0] == 200


def test_chunk_data_must_end_with_crlf(collector: Collector) -> None:
    """A chunk longer than its size line said is 400."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        sock.sendall(chunked_head() + b"2\r\nabcd\r\n0\r\n\r\n")
        assert status_of(read_answer(sock)) == 400


def test_a_chunked_body_over_the_limit_is_413_before_it_is_read() -> None:
    """Chunks adding up past max_body_bytes get 413 as soon as the size line says so."""
    with Collector(max_body_bytes=10_000) as c:
        with socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) as sock:
            sock.sendall(chunked_head() + b"1000\r\n" + b"x" * 0x1000 + b"\r\n" + b"fffff\r\n")  # then nothing
            answer = read_answer(sock)
            assert status_of(answer) == 413 and b'"payload_too_large"' in answer
    with Collector() as c:  # the default limit, 1 MiB, also on chunks
        with socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) as sock:
            sock.sendall(chunked_head() + b"100001\r\n")
            assert status_of(read_answer(sock)) == 413


def post_gzip(c: Collector, data: bytes, path: str = "/v1/batch",
              headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
    status, _, answer = request(c, "POST", path, data, {"Authorization": AUTH, "Content-Encoding": "gzip",
                                                        "Content-Type": JSON, **(headers or {})})
    return status, json.loads(answer)


def test_a_body_of_many_empty_gzip_members_is_refused(collector: Collector) -> None:
    """10,000 empty gzip members before a valid one (the quadratic case) get 400 naming the members."""
    data = gzip.compress(b"") * 10_000 + gzip.compress(batch("m-0"))
    status, answer = post_gzip(collector, data)
    assert status == 400 and "gzip members" in answer["message"]
    assert collector.messages == []
    track_auth = "Basic " + base64.b64encode(b"site-1:key-1").decode()
    status, _ = post_gzip(collector, data, "/api/v2/batch", {"Authorization": track_auth})  # the Track API
    assert status == 400 and "gzip members" in collector.refused[-1].reason


def test_a_few_gzip_members_are_one_body(collector: Collector) -> None:
    """A body split across three gzip members (as `cat a.gz b.gz c.gz` makes) is read whole."""
    data = batch("m-0", "m-1")
    parts = [data[:10], data[10:40], data[40:]]
    assert post_gzip(collector, b"".join(gzip.compress(p) for p in parts))[0] == 200
    assert [m["messageId"] for m in collector.messages] == ["m-0", "m-1"]


def test_bloomreach_routes_read_every_gzip_member(collector: Collector) -> None:
    """Bloomreach's routes un-gzip with the same function: a body in two members is read whole."""
    data = json.dumps({"commands": [{"name": "system/time", "command_id": "c-1"}]}).encode()
    body = gzip.compress(data[:7]) + gzip.compress(data[7:])
    status, answer = post_gzip(collector, body, "/track/v2/projects/proj-1/batch",
                               {"Authorization": "Token tok-1"})
    assert status == 200 and answer["results"][0]["success"] is True


def test_a_gzip_bomb_is_refused_after_bounded_work(collector: Collector) -> None:
    """About 1 MB of gzip that inflates to 1 GiB gets 413; un-gzipping stopped early (the size reported
    is a floor of at most 17 MiB, not the whole gigabyte)."""
    bomb = gzip.compress(b"\0" * (1 << 30), 9)
    assert len(bomb) <= 1024 * 1024  # within the default wire limit
    status, answer = post_gzip(collector, bomb)
    assert status == 413 and answer["code"] == "payload_too_large"
    [refusal] = collector.refused
    assert 500_000 < refusal.raw_size <= 17 * 1024 * 1024


def test_a_body_over_the_wire_limit_is_413_unread(collector: Collector) -> None:
    """Content-Length over max_body_bytes (default 1 MiB) gets 413 at once, before any of the body arrives."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
                     f"Content-Length: {1024 * 1024 + 1}\r\n\r\n".encode())
        answer = read_answer(sock)
        assert status_of(answer) == 413 and b"1048576-byte limit" in answer


def test_bloomreach_routes_take_bodies_as_large_as_their_batches() -> None:
    """Bloomreach batches (up to 50 commands of almost 800,000 bytes) are not cut by max_body_bytes."""
    with Collector(max_body_bytes=1000) as c:
        pad = "x" * 700_000
        commands = [{"name": "customers/events", "command_id": f"c-{i}",
                     "data": {"customer_ids": {"registered": "u"}, "event_type": "e", "properties": {"p": pad}}}
                    for i in range(3)]
        status, _, _ = request(c, "POST", "/track/v2/projects/proj-1/batch",
                               json.dumps({"commands": commands}).encode(),
                               {"Authorization": "Token tok-1", "Content-Type": JSON})
        assert status == 200
        assert request(c, "POST", "/v1/batch", batch("m-0") + b" " * 1000, {"Authorization": AUTH})[0] == 413


@pytest.mark.parametrize("sent", [
    b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",          # half a head
    b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"batch\"",  # half a body
    b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    b"G",                                                                 # one byte of a request line
])
def test_a_stalled_request_is_closed_after_read_timeout(sent: bytes) -> None:
    """A request that stops arriving half way is closed after read_timeout, freeing its thread."""
    with Collector(read_timeout=0.3) as c:
        with socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) as sock:
            sock.sendall(sent)
            assert closed_within(sock, TIMEOUT)
        assert request(c, "GET", "/_collector/stats")[0] == 200


def test_a_request_trickling_in_is_closed_after_request_timeout() -> None:
    """A request sent a byte at a time, each byte well inside read_timeout, is closed once the
    whole request has taken request_timeout (a per-read timeout alone would hold it for ever)."""
    with Collector(read_timeout=2.0, request_timeout=0.5) as c:
        with socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) as sock:
            head = b"POST /v1/batch HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
            started = time.monotonic()
            closed = False
            for byte in (head + b"x" * 100_000)[:400]:  # bounded: 400 bytes, one every 20 ms (8 s)
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if closed_within(sock, 0.02):
                    closed = True
                    break
            elapsed = time.monotonic() - started
        assert closed, "the trickling request was never closed"
        assert elapsed < TIMEOUT, f"closed only after {elapsed:.1f} s"
        assert request(c, "GET", "/_collector/stats")[0] == 200


def test_an_idle_connection_is_closed_after_idle_timeout_and_kept_until_then() -> None:
    """A kept-alive connection serves its next request within idle_timeout and is closed after it."""
    with Collector(idle_timeout=0.5, read_timeout=0.2) as c:
        with socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /_collector/stats HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(read_answer(sock)) == 200
            time.sleep(0.25)  # longer than read_timeout, shorter than idle_timeout: still open
            sock.sendall(b"GET /_collector/stats HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(read_answer(sock)) == 200
            assert closed_within(sock, TIMEOUT)


def test_connections_past_the_cap_get_503_and_freed_slots_serve_again() -> None:
    """With max_connections=4, a fifth idle connection is answered 503 and closed at once; after
    two are closed a new request is served."""
    with Collector(max_connections=4) as c:
        idle = [socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) for _ in range(4)]
        try:
            assert wait_until(lambda: c.connections == 4)
            with socket.create_connection(("127.0.0.1", c.port), timeout=TIMEOUT) as extra:
                answer = read_answer(extra)
                assert status_of(answer) == 503 and b"too_many_connections" in answer
                assert closed_within(extra, TIMEOUT)
            for sock in idle[:2]:
                sock.close()
            assert wait_until(lambda: _served(c)), "no request served after connections were closed"
        finally:
            for sock in idle:
                sock.close()


def _served(c: Collector) -> bool:
    try:
        return request(c, "GET", "/_collector/stats")[0] == 200
    except (ConnectionError, http.client.HTTPException):
        return False


@pytest.mark.parametrize("kwargs", [
    {"max_body_bytes": 0}, {"max_body_bytes": 1.5}, {"max_connections": 0}, {"max_connections": True},
    {"read_timeout": 0}, {"read_timeout": float("nan")}, {"request_timeout": -1}, {"idle_timeout": float("inf")}, {"idle_timeout": "5"},
])
def test_bad_limits_raise_configuration_error(kwargs: Dict[str, Any]) -> None:
    """A limit that is not a positive number raises ConfigurationError naming the option."""
    [name] = kwargs
    with pytest.raises(ConfigurationError, match=name):
        Collector(**kwargs)


def test_stop_and_close_release_each_resource_once(tmp_path: Path) -> None:
    """stop() twice, stop() after `with`, the store's close and its finalizer after stop close nothing
    the program opened meanwhile (its fds keep working)."""
    c = Collector(db_path=str(tmp_path / "c.db"))
    with c:
        assert request(c, "POST", "/v1/batch", batch("m-0"), {"Authorization": AUTH})[0] == 200
    read_fd, write_fd = os.pipe()  # takes the lowest free numbers: those the collector just released
    listener = socket.socket()
    try:
        c.stop()
        c.stop()
        assert c.store is not None
        c.store.close()
        del c
        gc.collect()  # runs the store's finalizer
        os.write(write_fd, b"still mine")
        assert os.read(read_fd, 100) == b"still mine"
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listener.fileno() >= 0
    finally:
        os.close(read_fd)
        os.close(write_fd)
        listener.close()


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_database_and_its_wal_files_are_private(tmp_path: Path, umask: int) -> None:
    """The collector's SQLite file, -wal and -shm are created 0600 whatever the umask."""
    db = tmp_path / "private.db"
    old = os.umask(umask)
    try:
        with Collector(db_path=str(db)) as c:
            assert request(c, "POST", "/v1/batch", batch("m-0"), {"Authorization": AUTH})[0] == 200
            made = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
            assert len(made) == 3, made
            modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in made}
            assert modes == {p.name: 0o600 for p in made}
    finally:
        os.umask(old)

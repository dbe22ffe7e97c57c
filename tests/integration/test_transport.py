"""The default transport: keep-alive http.client connections, requests for proxies, verified TLS."""

from __future__ import annotations

import http.server
import ssl
import time
from typing import Iterator, List

import pytest

from analytics import Client, RetryPolicy
from analytics.transport import HTTPTransport, RequestsTransport, _tls_context

from ..conftest import WRITE_KEY, serve_in_thread


HEADERS = {"Content-Type": "application/json"}


def test_default_transport_is_http_client(make_client):
    assert isinstance(make_client()._engine.transport, HTTPTransport)


def test_batches_reuse_one_connection(make_client, collector):
    """Batches sent one at a time share one keep-alive connection."""
    client = make_client(upload_size=10, max_in_flight=1)
    for i in range(50):
        client.track("u1", "Reuse", {"i": i})
    assert client.flush(timeout=10) == 0
    assert len(collector.batches) == 5
    assert collector.stats()["connections"] == 1


def test_a_connection_the_server_closed_is_replaced(make_client, collector, errors):
    """After the server closed the idle keep-alive connection, the next batch opens a new one without a failure."""
    client = make_client()
    client.track("u1", "Before")
    assert client.flush(timeout=10) == 0
    collector.down()
    collector.up()
    client.track("u1", "After")
    assert client.flush(timeout=10) == 0
    assert [m["event"] for m in collector.messages] == ["Before", "After"]
    assert client.stats()["retries"] == 0 and not errors.calls


def test_environment_proxy_is_honoured(make_client, collector, monkeypatch):
    """HTTP_PROXY in the environment sends requests through the proxy (via requests), like the peers."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", collector.url)
    client = make_client(host="http://127.0.0.1:9")  # a closed port: only the proxy can answer
    client.track("u1", "Proxied")
    assert client.flush(timeout=10) == 0
    assert [m["event"] for m in collector.messages] == ["Proxied"]
    assert isinstance(client._engine.transport._fallback, RequestsTransport)


def test_no_proxy_goes_direct(collector, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    t = HTTPTransport()
    try:
        r = t.post(collector.url + "/v1/batch", b'{"batch":[]}', dict(HEADERS), 5, None)
        assert r.status in (200, 400, 401)
        assert t._fallback is None
    finally:
        t.close()


def test_tls_is_verified_against_a_ca_bundle(monkeypatch, tmp_path):
    ctx = _tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.get_ca_certs() or ctx.cert_store_stats()["x509_ca"] > 0


def test_transport_errors_name_the_cause():
    from analytics import TransportError

    t = HTTPTransport()
    try:
        t.post("http://127.0.0.1:9/v1/batch", b"{}", dict(HEADERS), 2, None)
    except TransportError as exc:
        assert "Connection" in str(exc) or "refused" in str(exc).lower()
    else:  # pragma: no cover
        raise AssertionError("expected a TransportError")
    finally:
        t.close()


def test_close_closes_every_thread_connection(collector):
    """Three requests at once use three pooled connections; close() closes them all."""
    import threading

    collector.delay = 0.2  # the three are in flight together
    t = HTTPTransport()
    body = b'{"batch":[]}'
    hdrs = dict(HEADERS, Authorization="Basic " + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()).decode())
    threads = [threading.Thread(target=t.post, args=(collector.url + "/v1/batch", body, hdrs, 5, None)) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    conns = t.connections()
    assert len(conns) == 3 and all(c.sock is not None for c in conns)
    t.close()
    assert all(c.sock is None for c in conns) and t.connections() == []


def test_close_reaches_a_connection_reopened_after_an_earlier_close(collector):
    """A request after close() reopens the thread's connection, and the next close() closes that socket too (issue 13 D0)."""
    t = HTTPTransport()
    body = b'{"batch":[]}'
    hdrs = dict(HEADERS, Authorization="Basic " + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()).decode())
    t.post(collector.url + "/v1/batch", body, hdrs, 5, None)
    t.close()
    t.close()  # idempotent
    t.post(collector.url + "/v1/batch", body, hdrs, 5, None)
    (conn,) = t.connections()
    assert conn.sock is not None
    t.close()
    assert conn.sock is None


BODY = b'{"batch":[],"sentAt":"2026-01-01T00:00:00.000Z"}'


def _auth_headers() -> dict:
    return dict(HEADERS, Authorization="Basic " + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()).decode())


def test_abort_breaks_off_a_request_in_flight_and_the_next_one_reconnects(collector):
    """abort() from another thread makes a request waiting for its answer fail at once; the next request works."""
    import threading
    import time

    from analytics import TransportError

    t = HTTPTransport()
    collector.delay = 2.0  # the answer would come after 2 s; the request's own timeout is 30 s
    failures: list = []

    def send() -> None:
        try:
            t.post(collector.url + "/v1/batch", BODY, _auth_headers(), 30, None)
        except TransportError as exc:
            failures.append(exc)

    th = threading.Thread(target=send)
    th.start()
    deadline = time.monotonic() + 5
    while collector.stats()["requests"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    t.abort()
    th.join(1.5)  # well before the delayed answer
    assert not th.is_alive() and len(failures) == 1
    collector.delay = 0.0
    try:
        assert t.post(collector.url + "/v1/batch", BODY, _auth_headers(), 5, None).status == 200
    finally:
        t.close()
    assert collector.stats()["connections"] == 2


def test_requests_transport_after_fork_takes_a_new_session():
    """RequestsTransport.after_fork() leaves the inherited session (the parent's pool) alone and starts a new one."""
    t = RequestsTransport()
    inherited = t.session
    t.after_fork()
    assert t.session is not inherited
    t.close()
    inherited.close()


def test_the_pool_reuses_idle_connections_and_keeps_at_most_max_idle(collector):
    """Requests one after another share one connection; after a burst of parallel requests the pool
    keeps at most MAX_IDLE idle connections and closes the rest."""
    import threading

    from analytics.transport.http import MAX_IDLE

    t = HTTPTransport()
    url = collector.url + "/v1/batch"
    try:
        for _ in range(5):
            assert t.post(url, BODY, _auth_headers(), 5, None).status == 200
        assert len(t.connections()) == 1 and collector.stats()["connections"] == 1
        collector.delay = 0.3  # MAX_IDLE + 4 requests in flight together
        threads = [threading.Thread(target=t.post, args=(url, BODY, _auth_headers(), 5, None))
                   for _ in range(MAX_IDLE + 4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        assert collector.stats()["connections"] == MAX_IDLE + 4
        assert len(t.connections()) == MAX_IDLE
    finally:
        t.close()


class _LowercaseRetryAfter(http.server.BaseHTTPRequestHandler):
    """Answers the first POST 429 with ``retry-after`` spelled in lower case (as HTTP/2 proxies
    and many load balancers send every header name), the next ones 200."""

    answered: List[float] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).answered.append(time.monotonic())
        first = len(type(self).answered) == 1
        self.send_response(429 if first else 200)
        if first:
            self.send_header("retry-after", "1")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lowercase_server() -> Iterator[str]:
    _LowercaseRetryAfter.answered = []
    yield from serve_in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LowercaseRetryAfter))


def test_headers_are_read_whatever_their_case(lowercase_server, errors):
    """The transport's headers are case-insensitive, and a ``retry-after`` in lower case is
    honoured: the retry waits the second the server asked for (it used to be ignored)."""
    transport = HTTPTransport()
    try:
        response = transport.post(lowercase_server + "/v1/batch", b"{}", {}, 5.0, None)
        assert response.status == 429
        assert response.headers.get("Retry-After") == "1" and response.headers["RETRY-AFTER"] == "1"
    finally:
        transport.close()
    _LowercaseRetryAfter.answered = []
    client = Client(WRITE_KEY, host=lowercase_server, on_error=errors, retry_policy=RetryPolicy(base=0.01, cap=0.02))
    try:
        client.track("u1", "Retried")
        assert client.flush(timeout=10) == 0
    finally:
        client.shutdown(timeout=5)
    first, second = _LowercaseRetryAfter.answered
    assert second - first >= 0.95 and errors.calls == []
    assert client.stats()["retries"] == 1

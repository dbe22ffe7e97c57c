"""The default transport: keep-alive http.client connections, requests for proxies, verified TLS."""

from __future__ import annotations

import ssl

from analytics.transport import HTTPTransport, RequestsTransport, _tls_context

from .conftest import WRITE_KEY

HEADERS = {"Content-Type": "application/json"}


def test_default_transport_is_http_client(make_client):
    assert isinstance(make_client()._transport, HTTPTransport)


def test_batches_reuse_one_connection(make_client, collector):
    client = make_client(upload_size=10)
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
    assert isinstance(client._transport._fallback, RequestsTransport)


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
    import threading

    t = HTTPTransport()
    body = b'{"batch":[]}'
    hdrs = dict(HEADERS, Authorization="Basic " + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()).decode())
    threads = [threading.Thread(target=t.post, args=(collector.url + "/v1/batch", body, hdrs, 5, None)) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    conns = list(t._all)
    assert len(conns) == 3 and all(c.sock is not None for c in conns)
    t.close()
    assert all(c.sock is None for c in conns) and t._all == []


def test_close_reaches_a_connection_reopened_after_an_earlier_close(collector):
    """A request after close() reopens the thread's connection, and the next close() closes that socket too (issue 13 D0)."""
    t = HTTPTransport()
    body = b'{"batch":[]}'
    hdrs = dict(HEADERS, Authorization="Basic " + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()).decode())
    t.post(collector.url + "/v1/batch", body, hdrs, 5, None)
    t.close()
    t.close()  # idempotent
    t.post(collector.url + "/v1/batch", body, hdrs, 5, None)
    (conn,) = t._local.conns.values()
    assert conn.sock is not None
    t.close()
    assert conn.sock is None

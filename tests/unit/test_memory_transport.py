"""The transport protocol, as_transport, and the public in-memory transport (issue 14)."""

from __future__ import annotations

import gzip
import threading
import time
from typing import List, Tuple

import pytest

from analytics import Client, ConfigurationError, RetryPolicy, ShutdownError, TransportError
from analytics.transport import (
    BaseTransport,
    HTTPTransport,
    MemoryTransport,
    Request,
    RequestsTransport,
    Response,
    Transport,
    TransportLike,
    as_transport,
    respond,
)

from ..conftest import FAST_RETRY, OFFLINE_HOST, WRITE_KEY

URL = OFFLINE_HOST + "/v1/batch"
HEADERS = {"Content-Type": "application/json"}
BATCH = b'{"batch":[{"type":"track","event":"A"},{"type":"track","event":"B"}]}'


@pytest.fixture
def clients():
    """Clients made on a MemoryTransport; shut down after the test."""
    made: List[Client] = []

    def make(transport: MemoryTransport, **kw) -> Client:
        kw.setdefault("retry_policy", RetryPolicy(max_retries=5, max_time=10.0, **FAST_RETRY))
        kw.setdefault("host", OFFLINE_HOST)
        client = Client(WRITE_KEY, transport=transport, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=5)


def _post_in_a_thread(t: MemoryTransport, body: bytes) -> Tuple[threading.Thread, List[BaseException]]:
    """Start a post of ``body`` on another thread; the TransportError it raises lands in the list."""
    failures: List[BaseException] = []

    def send() -> None:
        try:
            t.post(URL, body, {}, 60, None)
        except TransportError as exc:
            failures.append(exc)

    th = threading.Thread(target=send)
    th.start()
    return th, failures


def _events(transport: MemoryTransport) -> List[str]:
    return [m["event"] for m in transport.messages]


# --- the protocol -----------------------------------------------------------


@pytest.mark.parametrize("cls", [HTTPTransport, RequestsTransport, MemoryTransport, BaseTransport])
def test_built_in_transports_satisfy_the_protocol(cls):
    """Every transport of the library has the four methods the engine calls, so as_transport keeps it as it is."""
    transport = cls()
    try:
        assert isinstance(transport, Transport)
        for name in ("post", "close", "abort", "after_fork"):
            assert callable(getattr(transport, name))
        assert as_transport(transport) is transport
    finally:
        transport.close()


def test_base_transport_post_must_be_written():
    """BaseTransport's post() says the subclass must define it; its other three methods do nothing."""
    with pytest.raises(NotImplementedError, match="post"):
        BaseTransport().post(URL, b"", {}, 1, None)
    t = BaseTransport()
    assert (t.close(), t.abort(), t.after_fork()) == (None, None, None)


def test_as_transport_adapts_an_object_with_post_and_close():
    """An object with only post() and close() becomes a full Transport whose abort/after_fork do nothing."""
    calls = []

    class Minimal:
        def post(self, url, body, headers, timeout, proxies):
            calls.append(("post", url))
            return Response(200, {}, b"{}")

        def close(self):
            calls.append(("close",))

    inner = Minimal()
    assert isinstance(inner, TransportLike) and not isinstance(inner, Transport)
    t = as_transport(inner)
    assert isinstance(t, Transport) and t.inner is inner
    assert t.post(URL, b"{}", {}, 1, None).status == 200
    t.abort()
    t.after_fork()
    t.close()
    assert calls == [("post", URL), ("close",)]


def test_as_transport_keeps_the_methods_an_object_has():
    """An object with post() and abort() but no close(): abort is its own, close does nothing."""
    aborted = []

    class Abortable:
        def post(self, url, body, headers, timeout, proxies):
            return Response(200, {}, b"")

        def abort(self):
            aborted.append(True)

    t = as_transport(Abortable())
    t.abort()
    t.close()
    assert aborted == [True]


@pytest.mark.parametrize("bad, why", [
    (None, "has no post"),
    (object(), "has no post"),
    (type("NotCallable", (), {"post": "x"})(), "post that is not callable"),
    (type("BadClose", (), {"post": lambda self, *a: None, "close": 3})(), "close that is not callable"),
])
def test_as_transport_refuses_an_object_without_a_callable_post(bad, why):
    """ConfigurationError naming transport, and what is wrong, for an object the engine could not call."""
    with pytest.raises(ConfigurationError, match="transport") as info:
        as_transport(bad)
    assert why in str(info.value)


# --- Request and respond() ----------------------------------------------------


def test_request_json_and_messages_with_and_without_gzip():
    """Request.json() and .messages read the body as sent, un-gzipping it when Content-Encoding is gzip."""
    plain = Request("POST", URL, {"Content-Type": "application/json"}, BATCH, 5)
    packed = Request("POST", URL, {"content-encoding": "GZIP"}, gzip.compress(BATCH), 5)
    assert packed.body != BATCH and packed.content == BATCH
    for request in (plain, packed):
        assert request.json() == {"batch": [{"type": "track", "event": "A"}, {"type": "track", "event": "B"}]}
        assert [m["event"] for m in request.messages] == ["A", "B"]


def test_request_messages_refuses_a_body_that_is_not_a_batch():
    """.messages of a body without a "batch" list raises ValueError saying so."""
    with pytest.raises(ValueError, match="not a batch body"):
        Request("POST", URL, {}, b'{"commands": []}', 5).messages


def test_respond_builds_json_and_case_insensitive_headers():
    """respond() encodes json, sets Content-Type, and its headers are found whatever the case."""
    r = respond(429, json={"code": "slow down"}, headers={"retry-after": "2"})
    assert r.status == 429 and r.body == b'{"code":"slow down"}'
    assert r.headers["Retry-After"] == "2" and r.headers.get("content-type") == "application/json"
    assert respond() == (200, {}, b"")
    assert respond(503, body=b"down").body == b"down"


@pytest.mark.parametrize("kw, option", [
    ({"json": {}, "body": b"x"}, "json or body"),
    ({"status": 42}, "status"),
    ({"status": "200"}, "status"),
])
def test_respond_refuses_bad_arguments(kw, option):
    """respond() raises ConfigurationError naming the wrong argument."""
    with pytest.raises(ConfigurationError, match=option):
        respond(**kw)


# --- MemoryTransport ------------------------------------------------------------


def test_default_handler_answers_200_and_records_the_request():
    """With no handler every request is answered 200 {} and recorded with its URL, headers, body and timeout."""
    t = MemoryTransport()
    r = t.post(URL, BATCH, dict(HEADERS, Authorization="Basic x"), 7.5, {"https": "http://proxy:3128"})
    assert r.status == 200 and r.body == b"{}"
    (req,) = t.requests
    assert (req.method, req.url, req.body, req.timeout) == ("POST", URL, BATCH, 7.5)
    assert req.headers["authorization"] == "Basic x" and req.proxies == {"https": "http://proxy:3128"}
    t.reset()
    assert t.requests == []


def test_handler_transport_error_reaches_the_caller():
    """A TransportError the handler raises is what post() raises (a dropped connection); the request is recorded."""
    def drop(request):
        raise TransportError("connection reset")

    t = MemoryTransport(drop)
    with pytest.raises(TransportError, match="reset"):
        t.post(URL, BATCH, {}, 5, None)
    assert len(t.requests) == 1


def test_handler_must_be_callable_and_return_a_response():
    """A handler that is not callable, or that returns something else than a Response, raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="handler"):
        MemoryTransport(200)  # type: ignore[arg-type]
    t = MemoryTransport(lambda request: 200)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="handler must return"):
        t.post(URL, BATCH, {}, 5, None)


def test_requests_are_recorded_from_many_threads():
    """post() from 8 threads at once records each of their 400 requests exactly once."""
    t = MemoryTransport()

    def send(n: int) -> None:
        for i in range(50):
            t.post(URL, f'{{"batch":[{{"event":"{n}-{i}"}}]}}'.encode(), {}, 5, None)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert sorted(_events(t)) == sorted(f"{n}-{i}" for n in range(8) for i in range(50))


def test_abort_breaks_off_a_hung_request_and_later_requests_work():
    """A request waiting in Request.hang() fails at abort() with TransportError; the next request is answered."""
    started = threading.Event()

    def handler(request):
        if request.json().get("hang"):
            started.set()
            request.hang()
        return respond(200, json={})

    t = MemoryTransport(handler)
    th, failures = _post_in_a_thread(t, b'{"hang": true}')
    assert started.wait(5)
    t.abort()
    th.join(5)
    assert not th.is_alive() and len(failures) == 1 and "aborted" in str(failures[0])
    assert t.post(URL, b"{}", {}, 60, None).status == 200


def test_abort_loses_the_answer_of_a_handler_that_returns_later():
    """A handler blocked on something else than hang() returns after abort(): its answer is lost (TransportError)."""
    entered, release = threading.Event(), threading.Event()

    def handler(request):
        entered.set()
        release.wait(5)
        return respond(200)

    t = MemoryTransport(handler)
    th, failures = _post_in_a_thread(t, b"{}")
    assert entered.wait(5)
    t.abort()
    release.set()
    th.join(5)
    assert len(failures) == 1


def test_hang_times_out_after_the_request_timeout():
    """Request.hang() without abort() raises TransportError once the request's timeout passed."""
    with pytest.raises(TransportError, match="timed out"):
        Request("POST", URL, {}, b"{}", 0.01).hang()


def test_after_fork_gives_a_new_lock():
    """after_fork() replaces a lock a thread of the parent may have held at the fork, so post() cannot deadlock."""
    t = MemoryTransport()
    t._lock.acquire()  # as if held by a thread that no longer exists in the child
    t.after_fork()
    assert t.post(URL, b"{}", {}, 5, None).status == 200


# --- end to end through Client ---------------------------------------------------


@pytest.mark.parametrize("gzip_on", [False, True])
def test_client_delivers_every_message_through_a_memory_transport(clients, gzip_on):
    """250 tracked events arrive at the handler in batches of at most upload_size, gzipped or not, with the key."""
    t = MemoryTransport()
    client = clients(t, gzip=gzip_on, upload_size=50)
    for i in range(250):
        client.track("u1", f"E{i}")
    assert client.flush(timeout=10) == 0
    assert sorted(_events(t)) == sorted(f"E{i}" for i in range(250))  # batches may overlap: any order
    requests = t.requests
    assert len(requests) >= 5 and all(0 < len(r.messages) <= 50 for r in requests)
    assert all((r.headers.get("Content-Encoding") == "gzip") is gzip_on for r in requests)
    assert all(r.url.endswith("/v1/batch") and r.headers["Authorization"].startswith("Basic ") for r in requests)
    assert client.stats()["delivered"] == 250


def test_client_retries_a_500(clients):
    """A 500 then a 200: the batch is sent twice and delivered once, with one retry counted."""
    answers = [respond(500, json={"code": "oops"}), respond(200, json={})]
    t = MemoryTransport(lambda request: answers.pop(0))
    client = clients(t)
    client.track("u1", "Retried")
    assert client.flush(timeout=10) == 0
    assert _events(t) == ["Retried", "Retried"]
    stats = client.stats()
    assert stats["delivered"] == 1 and stats["retries"] == 1


def test_client_waits_for_retry_after_on_a_429(clients):
    """A 429 with Retry-After: 0.3 holds the retry back at least 0.3 s (the retry policy's own waits are 0.05 s)."""
    seen: List[float] = []

    def handler(request):
        seen.append(time.monotonic())
        if len(seen) == 1:
            return respond(429, json={"code": "rate_limited"}, headers={"Retry-After": "0.3"})
        return respond(200, json={})

    client = clients(MemoryTransport(handler))
    client.track("u1", "Limited")
    assert client.flush(timeout=10) == 0
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.29
    assert client.stats()["delivered"] == 1


def test_client_retries_after_a_transport_error(clients, errors):
    """A handler raising TransportError (a dropped connection) once: the batch is retried and delivered."""
    calls: List[Request] = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise TransportError("connection reset by peer")
        return respond(200, json={})

    client = clients(MemoryTransport(handler), on_error=errors)
    client.track("u1", "Dropped once")
    assert client.flush(timeout=10) == 0
    assert len(calls) == 2 and client.stats()["delivered"] == 1 and not errors.calls


def test_shutdown_deadline_aborts_a_hung_request(clients, errors):
    """At the shutdown deadline the engine aborts the transport: the hung request fails and its message is reported."""
    hung, broken_off = threading.Event(), []

    def handler(request):
        hung.set()
        try:
            request.hang()
        except TransportError as exc:
            broken_off.append(str(exc))
            raise

    client = clients(MemoryTransport(handler), on_error=errors, timeout=60)
    client.track("u1", "Never answered")
    assert hung.wait(5)
    assert client.shutdown(timeout=0.2) == 1
    assert len(broken_off) == 1 and "aborted" in broken_off[0]
    assert [type(e) for e, _ in errors.calls] == [ShutdownError] and len(errors.items) == 1


def test_shutdown_closes_the_users_transport(clients):
    """Client.shutdown() closes the transport it was given."""
    t = MemoryTransport()
    client = clients(t)
    client.track("u1", "Bye")
    client.shutdown(timeout=5)
    assert t.closed and len(t.messages) == 1


def test_headers_are_a_case_insensitive_mapping_that_keeps_the_spelling_set():
    """The requests' and responses' headers (transport.base.Headers, no requests needed): any case finds
    a header, the last spelling set is the one listed, equality ignores case."""
    from analytics.transport.base import Headers

    h = Headers({"Content-Type": "application/json"}, Retry_After="2")
    h["content-type"] = "text/plain"
    assert h["CONTENT-TYPE"] == "text/plain" and list(h) == ["content-type", "Retry_After"] and len(h) == 2
    assert h == {"Content-Type": "text/plain", "retry_after": "2"} and h != {"Content-Type": "text/plain"}
    assert "RETRY_after" in h and h.get("x-missing") is None
    del h["RETRY_AFTER"]
    assert dict(h.items()) == {"content-type": "text/plain"} and h.copy() == h and h.copy() is not h
    assert repr(h) == "{'content-type': 'text/plain'}"

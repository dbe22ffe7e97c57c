"""The local collector, spoken to over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests
from analytics.collector import Batch, Collector, Refusal


KEY = "wk-collector-test-9b1e"


LIMIT = 32_768


TIMEOUT = 5


JSON = {"Content-Type": "application/json"}


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector that accepts any write key (overrides the shared fixture)."""
    with Collector() as c:
        yield c


def track(i: int = 0, **fields: Any) -> Dict[str, Any]:
    message = {"type": "track", "messageId": f"m-{i}", "userId": "u-1", "event": "Clicked"}
    message.update(fields)
    return message


def body(messages: List[Any], sent_at: str = "2026-11-01T12:00:00.000Z") -> bytes:
    return json.dumps({"batch": messages, "sentAt": sent_at}).encode()


def post(
    c: Collector,
    data: Any,
    *,
    key: Optional[str] = KEY,
    gzipped: bool = False,
    session: Any = requests,
    headers: Optional[Dict[str, str]] = None,
) -> requests.Response:
    if isinstance(data, list):
        data = body(data)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        data = gzip.compress(data)
        hdrs["Content-Encoding"] = "gzip"
    auth = (key, "") if key is not None else None
    return session.post(c.url + "/v1/batch", data=data, headers=hdrs, auth=auth, timeout=TIMEOUT)


def compact_size(message: Any) -> int:
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


def sized(index: int, size: int, pad: str = "x") -> Dict[str, Any]:
    """A track message whose compact encoding is exactly ``size`` bytes, padded with ``pad``."""
    message = track(index, properties={"pad": ""})
    room = size - compact_size(message)
    width = len(pad.encode())
    message["properties"]["pad"] = pad * (room // width) + "x" * (room % width)
    assert compact_size(message) == size
    return message


def test_accepts_a_plain_batch_and_records_it(collector: Collector) -> None:
    """A valid batch gets 200 {"success": true} and is recorded with its sizes and headers."""
    data = body([track(0), track(1, anonymousId="a-1")])
    r = post(collector, data)
    assert r.status_code == 200
    assert r.json() == {"success": True}
    assert r.headers["Content-Length"] == str(len(r.content))
    [batch] = collector.batches
    assert isinstance(batch, Batch)
    assert batch.messages == [track(0), track(1, anonymousId="a-1")]
    assert batch.sent_at == "2026-11-01T12:00:00.000Z"
    assert batch.write_key == KEY
    assert batch.raw_size == len(data)
    assert batch.compressed_size is None
    assert batch.headers["Content-Type"] == "application/json"
    assert batch.received_at == pytest.approx(time.time(), abs=5)
    assert collector.messages == batch.messages


@pytest.mark.parametrize("db", [False, True])
def test_a_batch_without_sent_at_is_accepted_and_recorded_as_such(tmp_path: Path, db: bool) -> None:
    """sentAt is optional (as in the Data Pipelines API): a batch without one gets 200 and is recorded
    with sent_at None and an envelope without sentAt, in memory and in a database; one with it keeps it."""
    with Collector(db_path=str(tmp_path / "c.db") if db else None) as c:
        without = json.dumps({"batch": [track(0)], "context": {"library": {"name": "x"}}}).encode()
        r = post(c, without)
        assert r.status_code == 200 and r.json() == {"success": True}
        assert post(c, body([track(1)])).status_code == 200
        first, second = c.batches
        assert first.sent_at is None and first.envelope == {"context": {"library": {"name": "x"}}}
        assert second.sent_at == "2026-11-01T12:00:00.000Z"
        assert second.envelope == {"sentAt": "2026-11-01T12:00:00.000Z"}
        assert [m["messageId"] for m in c.messages] == [track(0)["messageId"], track(1)["messageId"]]
        assert c.batch(1) is not None and c.batch(1).sent_at is None  # type: ignore[union-attr]
        assert c.stats()["accepted_batches"] == 2 and c.refused == []


def test_accepts_a_gzipped_batch_and_records_both_sizes(collector: Collector) -> None:
    """A gzipped body is un-gzipped; raw_size is the decompressed size, compressed_size the wire size."""
    data = body([track(i) for i in range(50)])
    r = post(collector, data, gzipped=True)
    assert r.status_code == 200
    [batch] = collector.batches
    assert batch.raw_size == len(data)
    assert batch.compressed_size == len(gzip.compress(data))
    assert batch.compressed_size < batch.raw_size
    assert len(collector.messages) == 50


def test_accepts_every_message_type(collector: Collector) -> None:
    """identify/track/page/screen/group/alias with their required fields are all accepted."""
    messages = [
        {"type": "identify", "messageId": "1", "userId": "u", "traits": {"plan": "pro"}},
        track(2, properties={"n": 1}, context={"ip": "1.2.3.4"}, integrations={"All": True},
              timestamp="2026-11-01T12:00:00.123Z"),
        {"type": "page", "messageId": "3", "anonymousId": "a", "name": "Home"},
        {"type": "screen", "messageId": "4", "userId": "u", "name": "Main"},
        {"type": "group", "messageId": "5", "userId": "u", "groupId": "g"},
        {"type": "alias", "messageId": "6", "previousId": "a", "userId": "u"},
    ]
    assert post(collector, messages).status_code == 200
    assert collector.stats()["by_type"] == {t: 1 for t in ("identify", "track", "page", "screen", "group", "alias")}


def test_accepts_a_chunked_body(collector: Collector) -> None:
    """A body sent with Transfer-Encoding: chunked is read whole."""
    data = body([track(i) for i in range(20)])
    chunks = (data[i:i + 100] for i in range(0, len(data), 100))
    r = requests.post(collector.url + "/v1/batch", data=chunks, auth=(KEY, ""), timeout=TIMEOUT)
    assert r.status_code == 200
    assert len(collector.messages) == 20


@pytest.mark.parametrize("authorization", [None, "Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b":pw").decode()])
def test_missing_or_malformed_auth_is_401(collector: Collector, authorization: Optional[str]) -> None:
    """No Authorization, a non-Basic scheme, bad base64 or an empty user name get 401 unauthorized."""
    headers = {"Authorization": authorization} if authorization else {}
    r = post(collector, [track()], key=None, headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert collector.messages == []
    assert [(x.status, x.code) for x in collector.refused] == [(401, "unauthorized")]


def test_unknown_write_key_is_401_and_never_echoed(caplog: pytest.LogCaptureFixture) -> None:
    """With write_keys set, another key gets 401; neither key appears in the answer or the logs."""
    caplog.set_level(logging.DEBUG, logger="customerio.collector")
    wrong = "wrong-key-5c2d"
    with Collector(write_keys={KEY}) as c:
        r = post(c, [track()], key=wrong)
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        assert post(c, [track()], key=KEY).status_code == 200
        refused = c.refused
    for secret in (wrong, KEY, base64.b64encode(f"{wrong}:".encode()).decode()):
        assert secret not in r.text
        assert secret not in caplog.text
        assert all(secret not in x.reason for x in refused)


@pytest.mark.parametrize("gzipped", [False, True])
def test_body_over_500000_bytes_is_413(collector: Collector, gzipped: bool) -> None:
    """Over 500,000 bytes after un-gzipping gets 413 payload_too_large, however small on the wire."""
    data = body([track(i, properties={"pad": "x" * 30_000}) for i in range(17)])
    assert len(data) > 500_000
    r = post(collector, data, gzipped=gzipped)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert collector.messages == []
    [refusal] = collector.refused
    assert refusal.raw_size == len(data)


def test_body_of_exactly_500000_bytes_is_accepted(collector: Collector) -> None:
    """The limit is inclusive: a 500,000-byte body is accepted."""
    messages = [track(i, properties={"pad": "x" * 30_000}) for i in range(16)]
    messages.append(track(99, properties={"pad": ""}))
    messages[-1]["properties"]["pad"] = "x" * (500_000 - len(body(messages)))
    data = body(messages)
    assert len(data) == 500_000
    assert post(collector, data).status_code == 200


@pytest.mark.parametrize(
    "data, words",
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (json.dumps({"sentAt": "x"}).encode(), "batch"),
        (json.dumps({"batch": {}, "sentAt": "x"}).encode(), "batch"),
        (json.dumps({"batch": [], "sentAt": 1700000000}).encode(), "sentAt must be a string"),
    ],
)
def test_malformed_body_is_400(collector: Collector, data: bytes, words: str) -> None:
    """Invalid JSON, a non-object, a missing batch list or a sentAt that is not a string get 400 bad_request."""
    r = post(collector, data)
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request"
    assert words in r.json()["message"]


def test_bad_gzip_is_400(collector: Collector) -> None:
    """A body labelled gzip that is not gzip gets 400 bad_request."""
    r = post(collector, body([track()]), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request"


def test_track_without_event_refuses_the_whole_batch(collector: Collector) -> None:
    """One invalid message gets 400 invalid_message naming its index, and nothing is stored."""
    r = post(collector, [track(0), track(1, event=""), track(2)])
    assert r.status_code == 400
    assert r.json() == {"code": "invalid_message", "message": "batch[1]: track needs an event"}
    assert collector.messages == [] and collector.unique_ids == set()


@pytest.mark.parametrize(
    "message, words",
    [
        ("text", "not an object"),
        ({"type": "purchase", "messageId": "1", "userId": "u"}, "type"),
        ({"type": "identify", "userId": "u"}, "messageId"),
        ({"type": "identify", "messageId": 7, "userId": "u"}, "messageId"),
        ({"type": "page", "messageId": "1", "userId": ""}, "userId or an anonymousId"),
        ({"type": "group", "messageId": "1", "userId": "u"}, "groupId"),
        ({"type": "alias", "messageId": "1", "userId": "u"}, "previousId"),
        (track(properties=[1, 2]), "properties must be an object"),
        (track(context=None), "context must be an object"),
        (track(traits="x"), "traits must be an object"),
        (track(integrations=1), "integrations must be an object"),
        (track(timestamp="yesterday"), "timestamp"),
        (track(timestamp=1700000000), "timestamp"),
    ],
)
def test_invalid_messages_are_400_with_the_index(collector: Collector, message: Any, words: str) -> None:
    """Each rule of the message contract refuses the batch with 'batch[i]: problem'."""
    r = post(collector, [track(0), message])
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_message"
    assert r.json()["message"].startswith("batch[1]: ")
    assert words in r.json()["message"]


def test_message_over_32kb_is_400_naming_it(collector: Collector) -> None:
    """A message over 32,768 bytes as compact JSON refuses the batch; one of exactly 32,768 passes."""
    assert post(collector, [track(0), track(1), sized(2, LIMIT)]).status_code == 200
    r = post(collector, [track(3), track(4), sized(5, LIMIT + 1)])
    assert r.status_code == 400
    assert r.json() == {
        "code": "invalid_message",
        "message": f"batch[2]: message is {LIMIT + 1} bytes encoded, over the {LIMIT}-byte limit",
    }
    assert [m["messageId"] for m in collector.messages] == ["m-0", "m-1", "m-2"]


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_32kb_limit_counts_utf8_bytes_of_compact_json(collector: Collector, ensure_ascii: bool) -> None:
    """Size is UTF-8 bytes of the compact encoding, however the client escaped or spaced it."""
    ok, over = sized(0, LIMIT, pad="é"), sized(1, LIMIT + 2, pad="é")
    for message, status in ((ok, 200), (over, 400)):
        data = json.dumps({"batch": [message], "sentAt": "x"}, ensure_ascii=ensure_ascii, indent=1).encode()
        assert post(collector, data).status_code == status


def test_32kb_limit_sees_numbers_that_grow_when_re_encoded(collector: Collector) -> None:
    """A message written small with floats like 1e15 (1000000000000000.0 re-encoded) is still measured."""
    floats = ",".join(["1e15"] * 2_000)  # 10 KB as sent, 38 KB re-encoded
    big = '{"type":"track","messageId":"f","userId":"u","event":"E","properties":{"f":[%s]}}' % floats
    small = json.dumps(track(0))
    for padding in (0, 300):  # a body under and over 32 KB
        data = ('{"batch":[%s],"sentAt":"x"}' % ",".join([small] * padding + [big])).encode()
        r = post(collector, data)
        assert r.status_code == 400, len(data)
        assert r.json()["message"].startswith(f"batch[{padding}]: message is ")


def test_unknown_path_is_404_and_other_methods_405(collector: Collector) -> None:
    """Unknown paths get 404; a known path with another method gets 405 with Allow."""
    r = requests.post(collector.url + "/v1/track", json={}, timeout=TIMEOUT)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = requests.get(collector.url + "/v1/batch", timeout=TIMEOUT)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = requests.put(collector.url + "/v1/batch", data=b"x" * 1000, timeout=TIMEOUT)
    assert r.status_code == 405
    assert [x.code for x in collector.refused] == ["not_found", "method_not_allowed", "method_not_allowed"]


def test_fail_next_answers_with_status_and_retry_after(collector: Collector) -> None:
    """fail_next(n, status, retry_after) answers the next n requests so, then normal service resumes."""
    collector.fail_next(2, status=503, retry_after=2)
    for _ in range(2):
        r = post(collector, [track()])
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "2"
        assert r.json() == {"code": "fault", "message": "injected 503"}
    r = post(collector, [track()])
    assert r.status_code == 200 and "Retry-After" not in r.headers
    assert [(x.status, x.code) for x in collector.refused] == [(503, "fault"), (503, "fault")]
    assert all(isinstance(x, Refusal) for x in collector.refused)
    assert len(collector.messages) == 1
    assert collector.stats()["inside_retry_after"] == 2  # both later requests came inside the 2 s


def test_fail_next_sends_retry_after_and_body_verbatim(collector: Collector) -> None:
    """A string Retry-After (an HTTP date) and a custom body and headers are sent as given."""
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    collector.fail_next(status=429, retry_after=date, body="<html>slow down</html>", headers={"X-Why": "test"})
    r = post(collector, [track()])
    assert r.status_code == 429
    assert r.headers["Retry-After"] == date
    assert r.headers["X-Why"] == "test"
    assert r.text == "<html>slow down</html>"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_faults_come_before_auth_and_in_fifo_order(collector: Collector) -> None:
    """Queued faults are consumed one per batch request, in order, even by unauthenticated ones."""
    collector.fail_next(status=500)
    collector.fail_next(status=502)
    assert post(collector, [track()], key=None).status_code == 500
    assert post(collector, [track()]).status_code == 502
    assert post(collector, [track()], key=None).status_code == 401


def test_drop_next_makes_the_client_see_a_connection_error(collector: Collector) -> None:
    """drop_next reads the request and resets the connection: requests raises ConnectionError."""
    collector.drop_next()
    with pytest.raises(requests.ConnectionError):
        post(collector, [track(0)])
    assert collector.messages == []
    assert [(x.status, x.code) for x in collector.refused] == [(0, "fault")]
    assert post(collector, [track(1)]).status_code == 200
    assert collector.stats()["dropped"] == 1


def test_store_then_drop_stores_but_the_client_sees_an_error(collector: Collector) -> None:
    """store_then_drop_next records the batch as accepted, then resets instead of answering."""
    collector.store_then_drop_next()
    with pytest.raises(requests.ConnectionError):
        post(collector, [track(0), track(1)])
    assert [m["messageId"] for m in collector.messages] == ["m-0", "m-1"]
    assert collector.refused == []
    assert post(collector, [track(0), track(1)]).status_code == 200  # the client's retry
    stats = collector.stats()
    assert (stats["unique"], stats["duplicates"], stats["dropped"]) == (2, 2, 1)


def test_delay_slows_every_answer(collector: Collector) -> None:
    """With delay set, each batch request is answered no sooner than delay seconds."""
    collector.delay = 0.3
    start = time.monotonic()
    assert post(collector, [track()]).status_code == 200
    assert time.monotonic() - start >= 0.3


def test_stats_count_requests_in_flight_and_their_maximum(collector: Collector) -> None:
    """Two delayed requests on two connections are both in flight at once; reset() clears the maximum."""
    collector.delay = 1.5
    answers: "queue.Queue[int]" = queue.Queue()
    senders = [threading.Thread(target=lambda i=i: answers.put(post(collector, [track(i)]).status_code))
               for i in range(2)]
    for t in senders:
        t.start()
    deadline = time.monotonic() + 10
    while collector.stats()["in_flight"] < 2 and time.monotonic() < deadline:  # the polls are not counted
        time.sleep(0.01)
    assert collector.stats()["in_flight"] == 2
    assert sorted(answers.get(timeout=10) for _ in senders) == [200, 200]
    for t in senders:
        t.join(10)
    while collector.stats()["in_flight"] and time.monotonic() < deadline:  # a handler ends just after its answer
        time.sleep(0.01)
    stats = collector.stats()
    assert (stats["in_flight"], stats["max_in_flight"], stats["requests"]) == (0, 2, 2)
    collector.reset()
    assert (collector.stats()["in_flight"], collector.stats()["max_in_flight"]) == (0, 0)


def test_chaos_is_reproducible_with_a_seed() -> None:
    """set_chaos draws faults from a seeded Random: the same seed gives the same answers."""
    outcomes = []
    for _ in range(2):
        with Collector() as c:
            c.set_chaos(fail_rate=0.3, drop_rate=0.2, status=503, seed=7)
            run = []
            with requests.Session() as s:
                for i in range(30):
                    try:
                        run.append(post(c, [track(i)], session=s).status_code)
                    except requests.ConnectionError:
                        run.append("dropped")
            outcomes.append(run)
            stats = c.stats()
            assert stats["accepted_batches"] == 30 - run.count(503)  # dropped ones were stored
    assert outcomes[0] == outcomes[1]
    assert {200, 503, "dropped"} <= set(outcomes[0])


def test_chaos_fail_every(collector: Collector) -> None:
    """fail_every=N fails exactly every Nth request with the chaos status and Retry-After."""
    collector.set_chaos(fail_every=3, status=429, retry_after=0)
    statuses = [post(collector, [track(i)]).status_code for i in range(6)]
    assert statuses == [200, 200, 429, 200, 200, 429]


def test_keep_alive_reuses_one_connection(collector: Collector) -> None:
    """Two requests on one requests.Session share one TCP connection."""
    with requests.Session() as s:
        assert post(collector, [track(0)], session=s).status_code == 200
        r = post(collector, [track(1)], session=s)
        assert r.status_code == 200 and "close" not in r.headers.get("Connection", "")
    assert collector.connections == 1
    assert collector.stats()["connections"] == 1


def raw_post_head(data: bytes, *headers: str) -> bytes:
    """The head of a raw, authorised ``POST /v1/batch`` for ``data``, with extra header lines."""
    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    lines = ["POST /v1/batch HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Basic {auth}", *headers,
             f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_each_answer_arrives_in_one_piece(collector: Collector) -> None:
    """Head and body are written at once, so one recv gets the whole response on loopback."""
    data = body([track()])
    request = raw_post_head(data) + data
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        for _ in range(2):  # twice on the same connection
            sock.sendall(request)
            answer = sock.recv(65536)
            head, _, rest = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"Content-Length: 16" in head
            assert rest == b'{"success":true}'


def _read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def test_connection_close_is_honoured(collector: Collector) -> None:
    """A request with Connection: close is answered with Connection: close, then the socket closes."""
    data = body([track()])
    request = raw_post_head(data, "Connection: close") + data
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        received = _read_to_close(sock)
    assert received.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in received


@pytest.mark.parametrize(
    "request_head",
    [b"GARBAGE\r\n\r\n", b"POST /v1/batch HTTP/1.1\r\nContent-Length: nope\r\n\r\n", b"GET / HTTP/1.1\r\nbad\r\n\r\n"],
)
def test_malformed_requests_get_400_then_close(collector: Collector, request_head: bytes) -> None:
    """A bad request line, header line or Content-Length gets a JSON 400 and a closed connection."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        sock.sendall(request_head)
        received = _read_to_close(sock)
    assert received.startswith(b"HTTP/1.1 400 ")
    assert json.loads(received.partition(b"\r\n\r\n")[2])["code"] == "bad_request"


def test_expect_100_continue(collector: Collector) -> None:
    """A client that waits for 100 Continue gets it, then the final answer."""
    data = body([track()])
    head = raw_post_head(data, "Expect: 100-continue", "Connection: close")
    with socket.create_connection(("127.0.0.1", collector.port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        assert _read_to_close(sock).startswith(b"HTTP/1.1 200 ")
    assert len(collector.messages) == 1


def test_stop_does_not_hang_with_an_idle_keep_alive_connection() -> None:
    """stop() returns promptly with a kept-alive connection open, and closes it."""
    c = Collector().start()
    s = requests.Session()
    assert post(c, [track()], session=s).status_code == 200
    start = time.monotonic()
    c.stop()
    c.stop()  # idempotent
    assert time.monotonic() - start < 2
    with pytest.raises(requests.ConnectionError):
        post(c, [track()], session=s)
    s.close()


def test_wait_for_wakes_on_arrival_and_times_out(collector: Collector) -> None:
    """wait_for returns True as soon as enough messages arrive, and False after its timeout."""
    sender = threading.Timer(0.1, post, args=(collector, [track(0), track(1)]))
    sender.start()
    start = time.monotonic()
    assert collector.wait_for(2, timeout=TIMEOUT) is True
    assert time.monotonic() - start < TIMEOUT / 2
    sender.join()
    start = time.monotonic()
    assert collector.wait_for(3, timeout=0.3) is False
    assert 0.25 <= time.monotonic() - start < 2
    assert collector.wait_for(2, timeout=0) is True


def test_stats_fields(collector: Collector) -> None:
    """stats() counts requests, batches, messages by type, bytes, the largest batch and refusals."""
    plain = body([track(0), track(1)])
    zipped = body([{"type": "identify", "messageId": "i", "userId": "u"}] + [track(i) for i in range(2, 7)])
    post(collector, plain)
    post(collector, zipped, gzipped=True)
    post(collector, [track(9, event=None)])
    post(collector, [track()], key=None)
    stats = collector.stats()
    assert stats["requests"] == 4
    assert stats["accepted_batches"] == 2
    assert stats["refused"] == 2
    assert stats["messages"] == 8 and stats["unique"] == 8 and stats["duplicates"] == 0
    assert stats["by_type"] == {"track": 7, "identify": 1}
    assert stats["raw_bytes"] == len(plain) + len(zipped)
    assert stats["compressed_bytes"] == len(gzip.compress(zipped))
    assert stats["largest_batch_bytes"] == len(zipped)
    assert stats["largest_batch_messages"] == 6
    assert stats["refusals_by_code"] == {"invalid_message": 1, "unauthorized": 1}
    json.dumps(stats)  # JSON-ready


def test_duplicates_are_counted(collector: Collector) -> None:
    """A messageId accepted again counts as a duplicate, within a batch or across batches."""
    post(collector, [track(0), track(1), track(0)])
    post(collector, [track(1), track(2)])
    assert collector.unique_ids == {"m-0", "m-1", "m-2"}
    assert collector.duplicates == 2
    assert len(collector.messages) == 5


def test_concurrent_clients_are_all_accounted_for(collector: Collector) -> None:
    """Parallel keep-alive clients under chaos: every request is either stored or refused, none lost."""
    collector.set_chaos(fail_rate=0.2, drop_rate=0.1, seed=3)
    outcomes: "queue.Queue[str]" = queue.Queue()

    def client(n: int) -> None:
        with requests.Session() as s:
            for i in range(25):
                try:
                    outcomes.put(str(post(collector, [track(n * 100 + i)], session=s).status_code))
                except requests.ConnectionError:
                    outcomes.put("dropped")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    seen = [outcomes.get_nowait() for _ in range(outcomes.qsize())]
    stats = collector.stats()
    assert len(seen) == stats["requests"] == 200
    assert stats["accepted_batches"] == seen.count("200") + seen.count("dropped") == stats["unique"]
    assert stats["refusals_by_code"] == {"fault": seen.count("500")}
    assert stats["dropped"] == seen.count("dropped")


def test_keep_messages_false_keeps_only_counters() -> None:
    """With keep_messages=False, messages and batches stay empty but counts and ids work."""
    with Collector(keep_messages=False) as c:
        post(c, [track(0), track(1)])
        post(c, [track(1)])
        assert c.wait_for(3, timeout=TIMEOUT)
        assert c.messages == [] and c.batches == []
        assert c.unique_ids == {"m-0", "m-1"} and c.duplicates == 1
        assert c.stats()["messages"] == 3
        r = requests.get(c.url + "/_collector/messages", timeout=TIMEOUT)
        assert r.status_code == 409


def test_reset_clears_records_counters_and_faults(collector: Collector) -> None:
    """reset() forgets records, counters, queued faults, chaos and delay."""
    post(collector, [track(0)])
    post(collector, [track(0, event=1)])
    collector.fail_next(3)
    collector.set_chaos(fail_rate=1.0)
    collector.delay = 5.0
    collector.reset()
    assert collector.messages == [] and collector.refused == [] and collector.unique_ids == set()
    assert collector.stats()["requests"] == 0 and collector.delay == 0.0
    assert post(collector, [track(0)]).status_code == 200
    assert collector.duplicates == 0


def test_request_log_records_every_batch_request_and_its_answer(collector: Collector) -> None:
    """request_log has one entry per POST /v1/batch: arrival, answer time, status, Retry-After, stored."""
    collector.fail_next(1, status=429, retry_after=2)
    collector.drop_next()
    collector.store_then_drop_next()
    assert post(collector, [track(0)]).status_code == 429
    for i in (1, 2):
        with pytest.raises(requests.ConnectionError):
            post(collector, [track(i), track(i + 10)])
    assert post(collector, [track(3, event=None)]).status_code == 400
    collector.delay = 0.1
    assert post(collector, [track(4)]).status_code == 200
    requests.get(collector.url + "/_collector/stats", timeout=TIMEOUT)  # control routes are not logged
    log = collector.request_log
    assert [(r.status, r.stored, r.messages, r.fault) for r in log] == [
        (429, False, 0, True), (0, False, 0, True), (0, True, 2, True), (400, False, 0, False), (200, True, 1, False)]
    assert [r.ambiguous for r in log] == [False, False, True, False, False]
    assert log[0].retry_after == "2" and 1.9 < log[0].retry_until - log[0].answered_at <= 2.0
    assert all(r.retry_after is None and r.retry_until is None for r in log[1:])
    assert all(r.received_at <= r.answered_at for r in log)
    assert [r.received_at for r in log] == sorted(r.received_at for r in log)
    assert log[-1].answered_at - log[-1].received_at >= 0.1  # the delay comes before the answer
    assert log[-1].received_at == collector.batches[-1].received_at
    collector.reset()
    assert collector.request_log == []


def test_retry_after_violations_are_requests_inside_the_window(collector: Collector) -> None:
    """A request that arrives before the Retry-After has passed is listed; one after it is not."""
    collector.fail_next(1, status=503, retry_after="0.3")
    assert post(collector, [track(0)]).status_code == 503
    assert post(collector, [track(1)]).status_code == 200  # at once: inside the window
    (answer, early), = collector.retry_after_violations()
    assert (answer.status, early.status) == (503, 200)
    assert collector.retry_after_violations(grace=5) == []  # "already on its way" covers it
    assert collector.stats()["inside_retry_after"] == 1
    time.sleep(0.35)  # let the window pass
    assert post(collector, [track(2)]).status_code == 200
    assert len(collector.retry_after_violations()) == 1


def _connect_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_listening(c: Collector, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not c.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    return c.listening


def test_outage_refuses_connections_then_listens_on_the_same_port(collector: Collector) -> None:
    """outage(s): connects are refused and kept-alive connections closed; s later the same port serves again."""
    port = collector.port
    with requests.Session() as s:
        assert post(collector, [track(0)], session=s).status_code == 200
        start = time.time()
        collector.outage(0.5)
        assert not collector.listening and collector.running
        assert _connect_refused(port)
        with pytest.raises(requests.ConnectionError):
            post(collector, [track(1)], session=s)  # the pooled connection was closed too
        with socket.socket() as other:  # nobody else is given the port meanwhile
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", port))
        stats = collector.stats()
        assert (stats["listening"], stats["outages"]) == (False, 1)
        assert _wait_listening(collector)
        assert collector.port == port
        assert post(collector, [track(2)], session=s).status_code == 200
    (down_at, up_at), = collector.outages
    assert start <= down_at and up_at - down_at >= 0.5
    assert [m["messageId"] for m in collector.messages] == ["m-0", "m-2"]
    assert not any(down_at <= r.received_at <= up_at for r in collector.request_log)
    assert collector.stats()["listening"] is True


def test_down_up_by_hand_and_stop_during_an_outage() -> None:
    """down()/up() are idempotent; stop() while down releases the port and cancels the comeback."""
    c = Collector().start()
    port = c.port
    c.down()
    c.down()
    assert _connect_refused(port)
    c.up()
    c.up()
    assert post(c, [track()]).status_code == 200
    c.outage(0.2)
    c.stop()
    assert not c.running and not c.listening
    with socket.socket() as other:  # the port is free again
        other.bind(("127.0.0.1", port))
    time.sleep(0.3)  # past the cancelled comeback
    assert not c.listening
    with pytest.raises(ValueError):
        c.outage(-1)
    with pytest.raises(RuntimeError):
        c.outage(1)


def test_a_request_cut_by_an_outage_is_logged_as_ambiguous(collector: Collector) -> None:
    """A batch stored while the server goes down loses its answer: logged stored with status 0."""
    collector.delay = 0.3
    outcome: "queue.Queue[Any]" = queue.Queue()

    def send() -> None:
        try:
            outcome.put(post(collector, [track(0)]).status_code)
        except requests.ConnectionError as exc:
            outcome.put(exc)

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + TIMEOUT
    while collector.stats()["requests"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    collector.down()  # the request is inside its 0.3 s delay
    sender.join(TIMEOUT)
    assert isinstance(outcome.get_nowait(), requests.ConnectionError)
    deadline = time.monotonic() + TIMEOUT
    while not collector.request_log and time.monotonic() < deadline:
        time.sleep(0.005)
    (record,) = collector.request_log
    assert record.stored and record.status == 0 and record.ambiguous
    assert collector.unique_ids == {"m-0"}
    collector.up()


def test_outage_over_http(collector: Collector) -> None:
    """POST /_collector/faults {"outage": s} answers first (then closes that connection), then goes down."""
    url = collector.url + "/_collector/faults"
    for bad in (-1, "5", None, float("inf")):
        r = requests.post(url, data=json.dumps({"outage": bad}), headers=JSON, timeout=TIMEOUT)
        assert r.status_code == 400, bad
    assert collector.listening
    r = requests.post(url, json={"outage": 0.3, "fail_next": {"n": 1}}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["Connection"] == "close"
    assert r.json() == {"success": True, "pending_faults": 1, "listening": False}
    assert _connect_refused(collector.port)
    assert _wait_listening(collector)
    assert post(collector, [track()]).status_code == 500  # faults queued with it still apply
    assert post(collector, [track()]).status_code == 200


def test_http_control_routes(collector: Collector) -> None:
    """/_collector/stats, /messages?since=N, /faults and /reset drive the collector without auth."""
    url = collector.url + "/_collector"
    post(collector, [track(0), track(1)])
    post(collector, [track(2)])
    stats = requests.get(url + "/stats", timeout=TIMEOUT).json()
    assert stats == collector.stats()
    assert stats["messages"] == 3
    messages = requests.get(url + "/messages?since=1", timeout=TIMEOUT).json()
    assert [m["messageId"] for m in messages] == ["m-1", "m-2"]
    assert requests.get(url + "/messages?since=x", timeout=TIMEOUT).status_code == 400

    r = requests.post(url + "/faults", json={"fail_next": {"n": 2, "status": 503, "retry_after": 1},
                                             "drop_next": {"n": 1}}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["pending_faults"] == 3
    assert post(collector, [track()]).headers["Retry-After"] == "1"
    assert post(collector, [track()]).status_code == 503
    with pytest.raises(requests.ConnectionError):
        post(collector, [track()])

    requests.post(url + "/faults", json={"store_then_drop_next": {}, "delay": 0.05}, timeout=TIMEOUT)
    with pytest.raises(requests.ConnectionError):
        post(collector, [track(3)])
    assert collector.delay == 0.05 and collector.messages[-1]["messageId"] == "m-3"

    requests.post(url + "/faults", json={"chaos": {"fail_rate": 1.0, "status": 502, "seed": 1}}, timeout=TIMEOUT)
    assert post(collector, [track()]).status_code == 502
    requests.post(url + "/faults", json={"chaos": None}, timeout=TIMEOUT)
    assert post(collector, [track()]).status_code == 200

    for bad in ({"explode": {}}, {"fail_next": {"n": 0}}, {"chaos": {"fail_rate": 2}}, {"delay": "slow"}, [1]):
        r = requests.post(url + "/faults", json=bad, timeout=TIMEOUT)
        assert r.status_code == 400 and r.json()["code"] == "bad_request", bad
    assert collector.stats()["pending_faults"] == 0

    assert requests.post(url + "/reset", json={}, timeout=TIMEOUT).json() == {"success": True}
    assert collector.messages == [] and collector.delay == 0.0
    assert requests.get(url + "/nothing", timeout=TIMEOUT).status_code == 404
    assert collector.stats()["requests"] == 0  # control routes are not counted


def test_a_route_of_ones_own_gets_the_parsed_request_faults_and_records(collector: Collector) -> None:
    """add_route serves a literal path before the others: its function gets the request parsed once
    (Basic auth, gzip), applies the collector's faults through call.begin(), and its refusals and
    answers are recorded like an API's (request log, refused, exchanges)."""
    from analytics.collector.http import BodyError, json_bytes
    from analytics.collector.routing import Call

    def echo(call: Call, match: Any) -> None:
        record, _, answered = call.begin()
        if answered:
            return
        try:
            raw, size, compressed = call.decoded_body(1000)
        except BodyError as exc:
            call.refuse(exc.status, exc.code, exc.reason, exc.raw_size, record.received_at)
            call.answer(record, exc.status, json_bytes({"error": exc.reason}))
            return
        call.answer(record, 200, json_bytes({"user": (call.request.basic_auth() or ("",))[0], "size": size,
                                             "gzipped": compressed is not None, "text": raw.decode()}))

    collector.add_route("POST", "/echo", echo, api="Echo")
    url = collector.url + "/echo"
    answer = requests.post(url, data=gzip.compress(b"hello"), auth=("me", "pw"),
                           headers={"Content-Encoding": "gzip"}, timeout=TIMEOUT)
    assert answer.json() == {"user": "me", "size": 5, "gzipped": True, "text": "hello"}
    collector.fail_next(status=503)
    assert requests.post(url, data=b"x", timeout=TIMEOUT).status_code == 503
    assert requests.post(url, data=b"x" * 1001, timeout=TIMEOUT).status_code == 413
    assert [r.status for r in collector.request_log] == [200, 503, 413]
    assert [(r.code, r.path) for r in collector.refused] == [("fault", "/echo"), ("payload_too_large", "/echo")]
    exchanges, total = collector.exchanges(api="Echo")
    assert total == 3 and exchanges[-1].body == "hello"
    assert requests.get(url, timeout=TIMEOUT).status_code == 405


def test_an_accept_listener_sees_each_batch_and_its_new_ids(collector: Collector) -> None:
    """records.on_accept calls its listener after each accepted batch with how many messageIds were new."""
    seen: List[Any] = []
    collector.records.on_accept(lambda batch, new: seen.append((len(batch.messages), new)))
    assert post(collector, [track(1), track(2)]).status_code == 200
    assert post(collector, [track(2), track(3)]).status_code == 200
    assert seen == [(2, 2), (2, 1)]


def test_an_answered_request_is_no_longer_in_flight(collector: Collector) -> None:
    """Once a client holds its answer the request is not counted in flight any more (it was
    decremented after the answer was written, so a quick next look could still count it)."""
    seen = []
    for i in range(200):
        post(collector, [track(i)])
        seen.append(collector.stats()["in_flight"])
    assert seen == [0] * 200
    assert collector.stats()["max_in_flight"] == 1

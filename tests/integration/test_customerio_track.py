"""The Customer.io Track API client against the local collector over real HTTP (no mocks)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from typing import Any, Dict, Iterator, List

import pytest
from analytics import RetryPolicy
from analytics.collector import Collector
from analytics.destinations import basic_auth
from customerio import BatchResult, CustomerIO, CustomerIOException, CustomerIOValidationError, v2


SITE, KEY = "site-7c1", "key-e90f"


FAST = dict(base=0.005, cap=0.02)


LIMIT = 500_000


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


@pytest.fixture
def cio(collector: Collector) -> Iterator[CustomerIO]:
    with CustomerIO(SITE, KEY, host=collector.url,
                    retry_policy=RetryPolicy(max_retries=3, max_time=10, **FAST)) as client:
        yield client


def sized_op(i: int, size: int) -> Dict[str, Any]:
    """A person event whose compact encoding is exactly ``size`` bytes."""
    op = {"type": "person", "action": "event", "identifiers": {"id": f"u{i}"}, "name": "e",
          "id": f"op-{i}", "attributes": {"pad": ""}}
    base = len(json.dumps(op, separators=(",", ":")).encode())
    op["attributes"]["pad"] = "x" * (size - base)
    assert len(json.dumps(op, separators=(",", ":")).encode()) == size
    return op


V1_CASES = [
    (lambda c: c.identify("u1", email="a@b.co", plan="pro"), "PUT", "/api/v1/customers/u1", "identify",
     {"email": "a@b.co", "plan": "pro"}),
    (lambda c: c.delete("u1"), "DELETE", "/api/v1/customers/u1", "delete", {}),
    (lambda c: c.track("u1", "purchase", price=9.5), "POST", "/api/v1/customers/u1/events", "track",
     {"name": "purchase", "data": {"price": 9.5}}),
    (lambda c: c.pageview("u1", "https://x.io/p", ref="r"), "POST", "/api/v1/customers/u1/events", "page",
     {"type": "page", "name": "https://x.io/p", "data": {"ref": "r"}}),
    (lambda c: c.track_anonymous("anon-1", "viewed", item=3), "POST", "/api/v1/events", "track_anonymous",
     {"anonymous_id": "anon-1", "name": "viewed", "data": {"item": 3}}),
    (lambda c: c.add_device("u1", "tok-1", "ios", last_used=1700000000), "PUT", "/api/v1/customers/u1/devices",
     "add_device", {"device": {"last_used": 1700000000, "id": "tok-1", "platform": "ios"}}),
    (lambda c: c.delete_device("u1", "tok-1"), "DELETE", "/api/v1/customers/u1/devices/tok-1", "delete_device",
     {}),
    (lambda c: c.suppress("u1"), "POST", "/api/v1/customers/u1/suppress", "suppress", {}),
    (lambda c: c.unsuppress("u1"), "POST", "/api/v1/customers/u1/unsuppress", "unsuppress", {}),
    (lambda c: c.merge_customers("id", "u1", "email", "old@b.co"), "POST", "/api/v1/merge_customers", "merge",
     {"primary": {"id": "u1"}, "secondary": {"email": "old@b.co"}}),
    (lambda c: c.backfill("u1", "old", 1600000000, k=1), "POST", "/api/v1/customers/u1/events", "track",
     {"name": "old", "data": {"k": 1}, "timestamp": 1600000000}),
]


@pytest.mark.parametrize("call, method, path, action, body", V1_CASES)
def test_v1_call_arrives_as_expected(collector: Collector, cio: CustomerIO, call, method: str, path: str,
                                     action: str, body: Dict[str, Any]) -> None:
    """Each v1 call arrives with its method, path, JSON body, Basic auth and User-Agent."""
    response = call(cio)
    assert response.status == 200
    [entry] = collector.track_api.v1_calls
    assert (entry.method, entry.path, entry.action, entry.body) == (method, path, action, body)
    assert entry.site_id == SITE
    [request] = collector.track_api.requests
    assert request.headers["Authorization"] == basic_auth(SITE, KEY)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("cdp-relay/")


def test_path_ids_are_url_encoded(collector: Collector, cio: CustomerIO) -> None:
    """Customer and device ids are quoted with safe="" and arrive decoded."""
    cio.identify("a/b c?d", x=1)
    cio.delete_device(42, "tok/en")
    first, second = collector.track_api.v1_calls
    assert first.path == "/api/v1/customers/a%2Fb%20c%3Fd" and first.customer_id == "a/b c?d"
    assert second.path == "/api/v1/customers/42/devices/tok%2Fen"
    assert (second.customer_id, second.device_id) == ("42", "tok/en")


def test_datetimes_and_nan_are_sanitized_recursively(collector: Collector, cio: CustomerIO) -> None:
    """Datetimes (naive = UTC, aware keep their instant) become Unix seconds and NaN null, at any depth."""
    naive = dt.datetime(2023, 11, 14, 22, 13, 20)
    aware = dt.datetime(2023, 11, 14, 23, 13, 20, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    cio.identify("u1", created_at=naive, score=math.nan,
                 nested={"when": aware, "list": [naive, {"n": float("nan")}], "inf": float("inf")})
    body = collector.track_api.v1_calls[0].body
    assert body == {"created_at": 1700000000, "score": None,
                    "nested": {"when": 1700000000, "list": [1700000000, {"n": None}], "inf": None}}


def test_track_takes_3x_data_dict_with_id_and_timestamp(collector: Collector, cio: CustomerIO) -> None:
    """data as a dict (3.x) and keyword data (2.x) merge; id and timestamp go top-level."""
    when = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    cio.track("u1", "purchase", {"type": "socks", "id": "item-in-data"}, id="01HB4HBDKTFWYZCK01DMRSWRFD",
              timestamp=when, price=2)
    cio.track_anonymous("", "ping", {"a": 1}, id="01HB4HBDKTFWYZCK01DMRSWRFE", timestamp=1561231234)
    first, second = collector.track_api.v1_calls
    assert first.body == {"name": "purchase", "data": {"type": "socks", "id": "item-in-data", "price": 2},
                          "id": "01HB4HBDKTFWYZCK01DMRSWRFD", "timestamp": 1700000000}
    assert second.body == {"name": "ping", "data": {"a": 1}, "id": "01HB4HBDKTFWYZCK01DMRSWRFE",
                           "timestamp": 1561231234}


def test_track_drops_an_invalid_timestamp_with_a_warning(collector: Collector, cio: CustomerIO,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """As 3.x, a timestamp that is not Unix seconds is left out (here with a warning)."""
    with caplog.at_level(logging.WARNING, logger="customerio"):
        cio.track("u1", "e", timestamp="yesterday")
        cio.track("u1", "e", timestamp=1700000000000)  # milliseconds
    assert [c.body for c in collector.track_api.v1_calls] == [{"name": "e", "data": {}}] * 2
    assert "left out" in caplog.text


@pytest.mark.parametrize(
    "call, text",
    [
        (lambda c: c.identify(""), "id cannot be blank in identify"),
        (lambda c: c.identify(None), "id cannot be blank in identify"),
        (lambda c: c.delete(""), "customer_id cannot be blank in delete"),
        (lambda c: c.track("", "e"), "customer_id cannot be blank in track"),
        (lambda c: c.track("u", ""), "name cannot be blank in track"),
        (lambda c: c.track("u", "e", data=[1]), "data must be a dict"),
        (lambda c: c.track_anonymous("a", None), "name cannot be blank in track_anonymous"),
        (lambda c: c.pageview("", "p"), "customer_id cannot be blank in pageview"),
        (lambda c: c.add_device("u", "", "ios"), "device_id cannot be blank in add_device"),
        (lambda c: c.add_device("u", "t", ""), "platform cannot be blank in add_device"),
        (lambda c: c.delete_device("u", ""), "device_id cannot be blank in delete_device"),
        (lambda c: c.suppress(""), "customer_id cannot be blank in suppress"),
        (lambda c: c.unsuppress(None), "customer_id cannot be blank in unsuppress"),
        (lambda c: c.merge_customers("phone", "1", "id", "2"), "invalid primary id type"),
        (lambda c: c.merge_customers("id", "1", "bad", "2"), "invalid secondary id type"),
        (lambda c: c.merge_customers("id", "", "id", "2"), "primary customer_id cannot be blank"),
        (lambda c: c.backfill("u", "e", "soon"), "not a valid timestamp"),
        (lambda c: c.identify("u", thing=object()), "cannot encode"),
    ],
)
def test_v1_validation_raises_and_sends_nothing(collector: Collector, cio: CustomerIO, call, text: str) -> None:
    """Missing or bad arguments raise CustomerIOValidationError before any request."""
    with pytest.raises(CustomerIOValidationError, match=text):
        call(cio)
    assert collector.track_api.requests == [] and collector.request_log == []


def test_missing_credentials_raise_before_sending(collector: Collector) -> None:
    """Without a site id or API key nothing is sent."""
    with pytest.raises(CustomerIOException, match="site_id and api_key"):
        CustomerIO(SITE, None, host=collector.url).identify("u1")
    assert collector.request_log == []


def test_user_agent_and_no_pooling(collector: Collector) -> None:
    """user_agent is sent; use_connection_pooling=False still works (a session per request)."""
    with CustomerIO(SITE, KEY, host=collector.url, use_connection_pooling=False, user_agent="app/1.0") as c:
        c.identify("u1")
        c.identify("u2")
    assert [r.headers["User-Agent"] for r in collector.track_api.requests] == ["app/1.0", "app/1.0"]
    assert collector.connections == 2


def test_context_manager_closes_and_client_reconnects(collector: Collector) -> None:
    """Leaving the with-block closes the pooled session; using the client again reconnects."""
    with CustomerIO(SITE, KEY, host=collector.url) as c:
        c.identify("u1")
        session = c.http
    c.identify("u2")
    assert c.http is not session
    c.close()
    assert len(collector.track_api.v1_calls) == 2


def test_400_raises_at_once_with_status_and_body(collector: Collector, cio: CustomerIO) -> None:
    """A 400 is not retried: CustomerIOException with the status and the body."""
    body = {"errors": [{"reason": "invalid", "field": "name", "message": "bad name"}]}
    collector.fail_next(1, status=400, body=body)
    with pytest.raises(CustomerIOException) as info:
        cio.track("u1", "e")
    assert info.value.status == 400 and json.loads(info.value.body) == body
    assert "400" in str(info.value) and "bad name" in str(info.value)
    assert len(collector.request_log) == 1


def test_401_from_unknown_credentials(collector: Collector) -> None:
    """The collector answers 401 to a pair it does not know; the client raises with status 401."""
    collector.track_api.allow(SITE, KEY)
    with CustomerIO(SITE, "wrong-key", host=collector.url) as c:
        with pytest.raises(CustomerIOException) as info:
            c.identify("u1")
    assert info.value.status == 401 and "unknown site id or API key" in info.value.body
    assert collector.track_api.v1_calls == []
    with CustomerIO(SITE, KEY, host=collector.url) as c:
        c.identify("u1")
    assert len(collector.track_api.v1_calls) == 1


def test_429_with_retry_after_is_waited_for_then_succeeds(collector: Collector, cio: CustomerIO) -> None:
    """A 429 with Retry-After: 1 is retried no sooner than a second later."""
    collector.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    cio.identify("u1", a=1)
    assert time.monotonic() - started >= 0.95
    assert [r.status for r in collector.request_log] == [429, 200]
    assert collector.retry_after_violations() == []
    assert len(collector.track_api.v1_calls) == 1


def test_5xx_is_retried_then_succeeds(collector: Collector, cio: CustomerIO) -> None:
    """500/503 are retried with backoff until one passes."""
    collector.fail_next(1, status=500)
    collector.fail_next(1, status=503)
    response = cio.track("u1", "e")
    assert response.status == 200 and response.attempts == 3
    assert [r.status for r in collector.request_log] == [500, 503, 200]


def test_retries_exhausted_raise(collector: Collector) -> None:
    """After retries+1 failed attempts the last error is raised, saying it gave up."""
    collector.fail_next(10, status=502)
    with CustomerIO(SITE, KEY, host=collector.url, retries=2, backoff_factor=0.001) as c:
        with pytest.raises(CustomerIOException) as info:
            c.identify("u1")
    assert info.value.status == 502 and info.value.attempts == 3
    assert "gave up" in str(info.value)
    assert len(collector.request_log) == 3


def test_dropped_connection_is_retried(collector: Collector, cio: CustomerIO) -> None:
    """A connection reset without an answer is retried."""
    collector.drop_next(1)
    cio.suppress("u1")
    assert [r.status for r in collector.request_log] == [0, 200]
    assert len(collector.track_api.v1_calls) == 1


def test_no_server_raises_with_status_0() -> None:
    """Nothing listening: retries, then CustomerIOException with status 0."""
    with Collector() as c:
        url = c.url
    with CustomerIO(SITE, KEY, host=url, retries=1, backoff_factor=0.001) as client:
        with pytest.raises(CustomerIOException) as info:
            client.identify("u1")
    assert info.value.status == 0 and info.value.attempts == 2


def test_batch_posts_the_operations(collector: Collector, cio: CustomerIO) -> None:
    """batch() posts {"batch": [...]} to /api/v2/batch with auth; 200 means all accepted."""
    ops = [
        {"type": "person", "action": "identify", "identifiers": {"id": "1"}, "attributes": {"name": "Alice"}},
        {"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": "purchase"},
    ]
    result = cio.batch(ops)
    assert isinstance(result, BatchResult)
    assert result.ok and result.accepted == [0, 1] and result.errors == [] and result.status_codes == [200]
    [request] = collector.track_api.requests
    assert (request.method, request.path, request.endpoint) == ("POST", "/api/v2/batch", "batch")
    assert request.headers["Authorization"] == basic_auth(SITE, KEY)
    assert collector.track_api.operations == ops


def test_batch_url_ignores_url_prefix(collector: Collector) -> None:
    """As upstream, a custom url_prefix changes v1 URLs but not the batch URL."""
    with CustomerIO(SITE, KEY, host=collector.url, url_prefix="/elsewhere") as c:
        c.batch([v2.delete_person({"id": "1"})])
    assert collector.track_api.requests[0].path == "/api/v2/batch"


@pytest.mark.parametrize("empty", [[], None, ()])
def test_batch_empty_raises(collector: Collector, cio: CustomerIO, empty: Any) -> None:
    """Empty or None operations raise CustomerIOException, as upstream."""
    with pytest.raises(CustomerIOException, match="operations cannot be empty in batch"):
        cio.batch(empty)
    assert collector.request_log == []


def test_batch_rejects_a_non_list(cio: CustomerIO) -> None:
    """A dict or a string is not a list of operations."""
    for value in ({"type": "person"}, "ops"):
        with pytest.raises(CustomerIOValidationError, match="operations must be a list"):
            cio.batch(value)


@pytest.mark.parametrize(
    "bad, text",
    [
        ("not a dict", "operations[3]: an operation must be an object"),
        ({"type": "user", "action": "identify", "identifiers": {"id": "1"}}, "operations[3]: type must be"),
        ({"type": "object", "action": "merge"}, "operations[3]: action 'merge' is not valid for type 'object'"),
        ({"type": "person", "action": "event", "identifiers": {"id": "1"}}, "operations[3]: name cannot be blank"),
        ({"type": "person", "action": "identify", "identifiers": {}}, "operations[3]: identifiers cannot be blank"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "1", "email": "a@b.c"}},
         "exactly one of"),
        ({"type": "person", "action": "merge", "primary": {"id": "1"}}, "operations[3]: secondary cannot be blank"),
        ({"type": "person", "action": "add_device", "identifiers": {"id": "1"}, "device": {"platform": "ios"}},
         "operations[3]: device.token cannot be blank"),
        ({"type": "person", "action": "add_relationships", "identifiers": {"id": "1"}, "cio_relationships": []},
         "operations[3]: cio_relationships cannot be blank"),
    ],
)
def test_batch_validation_names_the_index(collector: Collector, cio: CustomerIO, bad: Any, text: str) -> None:
    """The first bad operation raises naming its index (and field); nothing is sent."""
    ops: List[Any] = [v2.delete_person({"id": str(i)}) for i in range(5)]
    ops[3] = bad
    with pytest.raises(CustomerIOValidationError, match=text.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")) as info:
        cio.batch(ops)
    assert info.value.index == 3
    assert collector.request_log == []


def test_batch_item_over_32kb_raises_before_sending(collector: Collector, cio: CustomerIO) -> None:
    """An item of 32,768 bytes passes; 32,769 raises naming its index, before any request."""
    cio.batch([sized_op(0, 32_768)])
    assert len(collector.track_api.operations) == 1
    with pytest.raises(CustomerIOValidationError, match=r"operations\[2\]: the operation is 32769 bytes") as info:
        cio.batch([sized_op(1, 200), sized_op(2, 300), sized_op(3, 32_769)])
    assert info.value.index == 2
    assert len(collector.request_log) == 1


def test_batch_sanitizes_nested_values(collector: Collector, cio: CustomerIO) -> None:
    """Datetimes and NaN inside operations are sanitized (upstream only touched the top level)."""
    when = dt.datetime(2023, 11, 14, 22, 13, 20)
    cio.batch([{"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": "e",
                "timestamp": when, "attributes": {"at": when, "x": math.nan}}])
    assert collector.track_api.operations[0]["timestamp"] == 1700000000
    assert collector.track_api.operations[0]["attributes"] == {"at": 1700000000, "x": None}


def test_batch_splits_at_500kb_with_exact_byte_accounting(collector: Collector, cio: CustomerIO) -> None:
    """Items that fill exactly 500,000 bytes go in one request; one byte more makes two."""
    count = 16
    room = LIMIT - 12 - (count - 1)  # {"batch":[ ]} and the commas
    sizes = [room // count] * count
    sizes[0] += room - sum(sizes)
    ops = [sized_op(i, s) for i, s in enumerate(sizes)]
    result = cio.batch(ops)
    assert result.requests == [list(range(count))]
    assert collector.track_api.requests[0].raw_size == LIMIT

    ops[5] = sized_op(5, sizes[5] + 1)
    result = cio.batch(ops)
    assert len(result.requests) == 2 and result.ok
    assert [r.raw_size for r in collector.track_api.requests[1:]] == [
        12 + sum(len(json.dumps(ops[i], separators=(",", ":"))) for i in chunk) + len(chunk) - 1
        for chunk in result.requests]


def test_batch_split_loses_and_duplicates_nothing(collector: Collector, cio: CustomerIO) -> None:
    """A long list is split into requests of at most 500,000 bytes; every operation arrives once, in order."""
    ops = [sized_op(i, 20_000 + (i * 977) % 12_000) for i in range(60)]
    result = cio.batch(ops)
    total = sum(len(json.dumps(op, separators=(",", ":"))) for op in ops)
    assert len(result.requests) >= math.ceil(total / LIMIT)
    requests = collector.track_api.requests
    assert len(requests) == len(result.requests)
    assert all(r.raw_size <= LIMIT for r in requests)
    assert [i for chunk in result.requests for i in chunk] == list(range(60))
    assert collector.track_api.operations == ops
    assert collector.track_api.duplicates == 0 and result.ok and result.accepted == list(range(60))


def test_207_errors_map_back_to_original_indexes_across_requests(collector: Collector, cio: CustomerIO) -> None:
    """Per-item errors of several split requests name the operations by their index in the list given."""
    ops = [sized_op(i, 30_000) for i in range(40)]
    refused = {3, 16, 17, 31, 39}
    collector.track_api.reject_identifiers(*(f"u{i}" for i in refused), message="not today")
    result = cio.batch(ops)
    assert len(result.requests) >= 3
    assert 207 in result.status_codes
    assert result.failed == sorted(refused)
    assert result.accepted == [i for i in range(40) if i not in refused]
    assert not result.ok
    for error in result.errors:
        assert error.operation is ops[error.index]
        assert (error.reason, error.field, error.message) == ("invalid", "identifiers.id", "not today")
        assert result.requests[error.request][error.batch_index] == error.index
    assert [op["id"] for op in collector.track_api.operations] == [f"op-{i}" for i in result.accepted]


def test_200_with_errors_is_partial_and_empty_errors_is_success(collector: Collector, cio: CustomerIO) -> None:
    """A 200 whose body has an errors array is read like a 207; {"errors": []} means all accepted."""
    collector.track_api.partial_status = 200
    collector.track_api.reject_identifiers("1")
    result = cio.batch([v2.delete_person({"id": "0"}), v2.delete_person({"id": "1"})])
    assert result.status_codes == [200] and result.failed == [1] and result.accepted == [0]

    collector.fail_next(1, status=200, body={"errors": []})
    result = cio.batch([v2.delete_person({"id": "2"})])
    assert result.ok and result.accepted == [0]


def test_unmatched_errors_make_the_result_not_ok(collector: Collector, cio: CustomerIO) -> None:
    """An error entry without a usable batch_index is kept in unmatched; ok is False."""
    collector.fail_next(1, status=207, body={"errors": [{"reason": "invalid", "message": "?"},
                                                        {"batch_index": 7, "reason": "invalid"}]})
    result = cio.batch([v2.delete_person({"id": "2"})])
    assert not result.ok and result.errors == [] and len(result.unmatched) == 2 and result.accepted == [0]


def test_batch_400_and_401_raise_with_body(collector: Collector, cio: CustomerIO) -> None:
    """400 and 401 on a batch raise with status and body, not retried."""
    collector.fail_next(1, status=400, body={"message": "Bad Request"})
    with pytest.raises(CustomerIOException) as info:
        cio.batch([v2.delete_person({"id": "1"})])
    assert info.value.status == 400 and "Bad Request" in info.value.body
    collector.fail_next(1, status=401, body={"message": "Unauthorized"})
    with pytest.raises(CustomerIOException) as info:
        cio.batch([v2.delete_person({"id": "1"})])
    assert info.value.status == 401
    assert len(collector.request_log) == 2


def test_batch_failure_after_a_split_carries_the_partial_result(collector: Collector, cio: CustomerIO) -> None:
    """When the second request of a split batch is refused, the exception says what went through."""
    ops = [sized_op(i, 30_000) for i in range(40)]
    collector.set_chaos(fail_every=2, status=400)
    with pytest.raises(CustomerIOException) as info:
        cio.batch(ops)
    result = info.value.result
    assert len(result.responses) == 1
    assert result.accepted == result.requests[0]
    assert result.unsent == [i for chunk in result.requests[1:] for i in chunk]
    assert not result.ok


def test_batch_429_and_5xx_are_retried(collector: Collector, cio: CustomerIO) -> None:
    """A batch request answered 503 then 429 is sent again until it passes."""
    collector.fail_next(1, status=503)
    collector.fail_next(1, status=429)
    result = cio.batch([v2.delete_person({"id": "1"})])
    assert result.ok and result.responses[0].attempts == 3
    assert len(collector.track_api.operations) == 1


def test_stored_then_dropped_batch_is_resent_and_seen_as_duplicates(collector: Collector, cio: CustomerIO) -> None:
    """A batch stored but unanswered is retried; the collector counts the repeats by operation id."""
    collector.store_then_drop_next(1)
    result = cio.batch([sized_op(i, 200) for i in range(3)])
    assert result.ok
    assert [r.status for r in collector.request_log] == [0, 200]
    assert len(collector.track_api.operations) == 6 and collector.track_api.duplicates == 3


def test_send_entity_and_v2_property(collector: Collector, cio: CustomerIO) -> None:
    """send_entity posts one operation to /api/v2/entity; cio.v2.<builder> builds and sends it."""
    cio.send_entity(v2.identify_person({"id": "1"}, plan="pro"))
    cio.v2.track_person_event({"email": "a@b.co"}, "purchase", amount=5)
    cio.v2.send_batch([v2.delete_object({"object_type_id": "1", "object_id": "acme"})])
    paths = [r.path for r in collector.track_api.requests]
    assert paths == ["/api/v2/entity", "/api/v2/entity", "/api/v2/batch"]
    assert [op["action"] for op in collector.track_api.operations] == ["identify", "event", "delete"]
    assert "identify_person" in dir(cio.v2)
    with pytest.raises(AttributeError):
        cio.v2.no_such_builder
    with pytest.raises(CustomerIOValidationError, match="operation: name cannot be blank"):
        cio.send_entity({"type": "person", "action": "event", "identifiers": {"id": "1"}})

"""The sync App API client (customerio.APIClient) against the collector's App API routes over
real HTTP on loopback: auth, paths, query parameters, pagination, errors, retries and sends."""

from __future__ import annotations

import base64
import math
from typing import Any, Iterator, List

import pytest

from analytics import RetryPolicy
from analytics.apiclient import DEFAULT_USER_AGENT
from analytics.collector import Collector
from analytics.collector.appapi import AppAPIStore
from analytics.errors import ConfigurationError
from customerio import (
    APIClient,
    CustomerIOException,
    CustomerIOValidationError,
    Regions,
    RetryableError,
    SendEmailRequest,
    SendInboxMessageRequest,
    SendPushRequest,
    SendSMSRequest,
)

KEY = "app-key-51c"
FAST = dict(base=0.005, cap=0.02)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector (it serves the App API routes, seeded)."""
    with Collector() as c:
        assert isinstance(c.app_api, AppAPIStore)
        yield c


@pytest.fixture
def app(collector: Collector) -> Iterator[APIClient]:
    with APIClient(KEY, url=collector.url, retry_policy=RetryPolicy(max_retries=3, max_time=10, **FAST)) as client:
        yield client


def last(collector: Collector) -> Any:
    return collector.app_api.requests[-1]


# -- auth, identity, regions ---------------------------------------------------------------


def test_bearer_auth_and_default_user_agent(app: APIClient, collector: Collector):
    """Every request carries Authorization: Bearer <key> and a User-Agent naming the library."""
    app.segments.list()
    request = last(collector)
    assert request.headers["Authorization"] == f"Bearer {KEY}" and request.key == KEY
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_custom_user_agent(collector: Collector):
    """user_agent replaces the default."""
    with APIClient(KEY, url=collector.url, user_agent="my-app/2.0") as client:
        client.segments.list()
    assert last(collector).headers["User-Agent"] == "my-app/2.0"


def test_unknown_key_is_401_at_once_with_status_and_body(app: APIClient, collector: Collector):
    """A key the workspace does not know: 401 raised at once (not retried), body kept."""
    collector.app_api.allow("another-key")
    with pytest.raises(CustomerIOException) as info:
        app.segments.list()
    assert not isinstance(info.value, RetryableError)
    assert info.value.status == 401 and "unknown App API key" in info.value.body and info.value.attempts == 1
    assert len(collector.request_log) == 1


def test_regions_and_urls():
    """Regions pick api.customer.io / api-eu.customer.io; url= overrides; a trailing /v1 is dropped."""
    assert APIClient(KEY).url == "https://api.customer.io"
    assert APIClient(KEY, region=Regions.EU).url == "https://api-eu.customer.io"
    assert APIClient(KEY, url="https://api.customer.io/v1/").url == "https://api.customer.io"
    with pytest.raises(CustomerIOException):
        APIClient(KEY, region="eu")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        APIClient("")
    with pytest.raises(ConfigurationError):
        APIClient(KEY, url="ftp://example.com")


# -- customers ---------------------------------------------------------------------------------


def test_get_by_email_and_attributes_by_id_type(app: APIClient, collector: Collector):
    """Look up by email; attributes by id, email, cio_id and phone; a '+' in an email survives."""
    assert app.customers.get_by_email("user3@example.com") == {
        "results": [{"email": "user3@example.com", "id": "3", "cio_id": "a0000003"}]}
    assert last(collector).query == {"email": ["user3@example.com"]}
    collector.app_api.add_customer("plus", "jane+news@example.com", plan="pro")
    by_email = app.customers.get_attributes("jane+news@example.com", id_type="email")
    assert by_email["customer"]["id"] == "plus" and by_email["customer"]["attributes"]["plan"] == "pro"
    assert last(collector).path == "/v1/customers/jane%2Bnews%40example.com/attributes"
    assert last(collector).query == {"id_type": ["email"]}
    for value, id_type in (("7", None), ("a0000007", "cio_id"), ("+15550000007", "phone")):
        doc = app.customers.get_attributes(value, id_type=id_type)
        assert doc["customer"]["identifiers"] == {"email": "user7@example.com", "id": "7", "cio_id": "a0000007"}
    assert app.customers.get_attributes(7)["customer"]["attributes"]["first_name"] == "User 7"


def test_unknown_customer_is_404_not_retried(app: APIClient, collector: Collector):
    """A 404 raises at once with the status and the API's reason."""
    with pytest.raises(CustomerIOException) as info:
        app.customers.get_segments("nobody")
    assert info.value.status == 404 and "does not exist" in str(info.value) and info.value.attempts == 1
    assert '"errors"' in info.value.body and len(collector.request_log) == 1


def test_search_with_filter_and_pagination(app: APIClient, collector: Collector):
    """search() sends the filter and limit and returns one page with a next cursor;
    iter_search() follows next until the last page and stops."""
    page = app.customers.search({"and": [{"segment": {"id": 1}}, {"attribute": {"field": "plan", "operator": "eq",
                                                                                  "value": "pro"}}]}, limit=3)
    assert [p["id"] for p in page["identifiers"]] == ["3", "6", "9"] and page["ids"] == ["3", "6", "9"]
    assert page["next"] and last(collector).query == {"limit": ["3"]}
    assert last(collector).body == {"filter": {"and": [{"segment": {"id": 1}},
                                                       {"attribute": {"field": "plan", "operator": "eq",
                                                                      "value": "pro"}}]}}
    seen = len(collector.app_api.requests)
    people = list(app.customers.iter_search({"segment": {"id": 2}}, limit=4))
    assert len(people) == 25 and len({p["cio_id"] for p in people}) == 25
    requests = collector.app_api.requests[seen:]
    assert len(requests) == math.ceil(25 / 4)
    assert "start" not in requests[0].query
    assert all(r.query["start"] for r in requests[1:])
    assert len(list(app.customers.iter_search({"segment": {"id": 2}}, limit=4, max_pages=2))) == 8
    nots = list(app.customers.iter_search({"not": {"attribute": {"field": "plan", "operator": "eq",
                                                                 "value": "free"}}}, limit=50))
    assert [p["id"] for p in nots] == ["3", "6", "9", "12", "15", "18", "21", None]


def test_get_by_ids(app: APIClient, collector: Collector):
    """Attributes of several people by id (unknown ids left out); id_type is passed on."""
    found = app.customers.get_by_ids([1, "2", "missing"])
    assert [c["customer"]["id"] for c in found["customers"]] == ["1", "2"]
    assert last(collector).body == {"ids": ["1", "2", "missing"]}
    found = app.customers.get_by_ids(["user5@example.com"], id_type="email")
    assert found["customers"][0]["customer"]["id"] == "5"


def test_messages_activities_relationships_preferences(app: APIClient, collector: Collector):
    """One person's segments, messages (time range), activities (type filter), relationships and
    subscription preferences, with their iterators following next."""
    assert [s["name"] for s in app.customers.get_segments(3)["segments"]] == ["Pro plan", "Everyone", "VIP"]
    page = app.customers.get_messages(1, limit=2, start_ts=1_700_000_200, end_ts=1_700_000_400)
    assert [m["id"] for m in page["messages"]] == ["msg-2", "msg-3"] and page["next"]
    assert last(collector).query == {"limit": ["2"], "start_ts": ["1700000200"], "end_ts": ["1700000400"]}
    assert [m["id"] for m in app.customers.iter_messages(1, limit=2)] == [f"msg-{i}" for i in range(1, 6)]
    events = list(app.customers.iter_activities("user1@example.com", id_type="email", type="event",
                                                name="purchase", limit=1))
    assert [a["id"] for a in events] == ["act-1", "act-3", "act-5"]
    assert last(collector).query["type"] == ["event"] and last(collector).query["name"] == ["purchase"]
    rels = list(app.customers.iter_relationships(1, limit=2))
    assert [r["identifiers"]["object_id"] for r in rels] == ["acme", "globex", "initech"]
    prefs = app.customers.get_subscription_preferences(1, language="fr")
    assert prefs["customer"]["language"] == "fr" and len(prefs["customer"]["topics"]) == 2


def test_arguments_are_checked_before_sending(app: APIClient, collector: Collector):
    """Blank ids, a wrong id_type, out-of-range limits and bad filters raise
    CustomerIOValidationError; nothing is sent."""
    checks = [
        lambda: app.customers.get_attributes(""),
        lambda: app.customers.get_attributes("5", id_type="uuid"),
        lambda: app.customers.search({}, limit=10),
        lambda: app.customers.search({"segment": {"id": 1}}, limit=1001),
        lambda: app.customers.get_by_ids([]),
        lambda: app.customers.get_by_ids([str(i) for i in range(101)]),
        lambda: app.customers.get_messages(1, limit=0),
        lambda: app.customers.get_messages(1, start_ts="yesterday"),
        lambda: app.customers.get_by_email(""),
        lambda: app.segments.get("seven"),
        lambda: app.segments.create(""),
        lambda: app.segments.get_membership(1, limit=30001),
        lambda: app.segments.iter_membership(1, limit=-1),
        lambda: app.customers.iter_search(None),  # type: ignore[arg-type]
    ]
    for check in checks:
        with pytest.raises(CustomerIOValidationError):
            check()
    assert collector.app_api.requests == []


# -- segments ------------------------------------------------------------------------------------


def test_segments_list_create_get_count_used_by_delete(app: APIClient, collector: Collector):
    """The segment calls, on their paths; a deleted segment is then 404; a dynamic one cannot be deleted."""
    assert [s["id"] for s in app.segments.list()["segments"]] == [1, 2, 3]
    created = app.segments.create("Newsletter readers", description="opted in")["segment"]
    assert (created["name"], created["description"], created["type"]) == ("Newsletter readers", "opted in", "manual")
    assert last(collector).body == {"segment": {"name": "Newsletter readers", "description": "opted in"}}
    assert app.segments.get(created["id"])["segment"]["name"] == "Newsletter readers"
    assert app.segments.get_customer_count(2) == {"segment_id": 2, "count": 25}
    assert app.segments.get_used_by(1)["used_by"] == {"campaigns": [4], "sent_newsletters": [],
                                                      "draft_newsletters": [9]}
    assert app.segments.delete(created["id"]) == {}
    assert last(collector).method == "DELETE" and last(collector).status == 204
    with pytest.raises(CustomerIOException) as info:
        app.segments.get(created["id"])
    assert info.value.status == 404
    with pytest.raises(CustomerIOException) as info:
        app.segments.delete(1)
    assert info.value.status == 400 and "manual" in str(info.value)


def test_membership_pages_follow_cursors_and_stop(app: APIClient, collector: Collector):
    """get_membership pages with start/limit; iter_membership yields every member once and stops."""
    page = app.segments.get_membership(3, limit=2)
    assert [p["id"] for p in page["identifiers"]] == ["1", "2"] and page["segment_id"] == 3 and page["next"]
    second = app.segments.get_membership(3, start=page["next"], limit=2)
    assert [p["id"] for p in second["identifiers"]] == ["3"] and second["next"] == ""
    seen = len(collector.app_api.requests)
    members = list(app.segments.iter_membership(2, limit=10))
    assert len(members) == 25 and len(collector.app_api.requests) - seen == 3
    with pytest.raises(CustomerIOException) as info:
        app.segments.get_membership(2, start="not-a-cursor")
    assert info.value.status == 400


# -- sending ---------------------------------------------------------------------------------------


def test_send_email_push_sms_inbox(app: APIClient, collector: Collector):
    """The four send calls post their request objects (None fields left out, _from as from,
    device as custom_device, datetimes as Unix seconds) and return delivery_id and queued_at."""
    import datetime as dt

    email = SendEmailRequest(transactional_message_id=3, to="Jane <jane@example.com>", identifiers={"id": "5"},
                             message_data={"code": "1234"}, _from="shop@example.com",
                             send_at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    email.attach("receipt.txt", "thanks!")
    result = app.send_email(email)
    assert set(result) == {"delivery_id", "queued_at"}
    app.send_push(SendPushRequest(transactional_message_id="push-1", identifiers={"email": "jane@example.com"},
                                  title="Hi", device={"token": "tok", "platform": "ios"}))
    app.send_sms(SendSMSRequest(transactional_message_id=7, identifiers={"cio_id": "a0000005"}, to="+15551234567"))
    app.send_inbox_message(SendInboxMessageRequest(transactional_message_id="9", identifiers={"id": 5},
                                                   message_data={"order": "1"}))
    app.send_email({"to": "a@example.com", "identifiers": {"id": "1"}, "from": "x@example.com",
                    "subject": "Hello", "body": "<p>hi</p>"})
    sent = collector.app_api.sent
    assert [s.kind for s in sent] == ["email", "push", "sms", "inbox_message", "email"]
    assert sent[0].body == {"transactional_message_id": 3, "to": "Jane <jane@example.com>", "identifiers": {"id": "5"},
                            "from": "shop@example.com", "message_data": {"code": "1234"},
                            "attachments": {"receipt.txt": base64.b64encode(b"thanks!").decode()},
                            "send_at": 1893456000}
    assert sent[1].body["custom_device"] == {"token": "tok", "platform": "ios"}
    assert sent[0].delivery_id == result["delivery_id"]
    assert [r.path for r in collector.app_api.requests] == ["/v1/send/email", "/v1/send/push", "/v1/send/sms",
                                                           "/v1/send/inbox_message", "/v1/send/email"]


@pytest.mark.parametrize("call, request_, field", [
    ("send_email", SendEmailRequest(transactional_message_id=3, identifiers={"id": "5"}), "to"),
    ("send_email", SendEmailRequest(to="a@b.c", identifiers={"id": "5"}, subject="s", body="b"), "from"),
    ("send_email", SendEmailRequest(transactional_message_id=3, to="a@b.c"), "identifiers"),
    ("send_email", SendEmailRequest(transactional_message_id=3, to="a@b.c", identifiers={"id": "5", "email": "x"}),
     "identifiers"),
    ("send_email", SendEmailRequest(transactional_message_id=3, to="a@b.c", identifiers={"phone": "+1"}),
     "identifiers"),
    ("send_push", SendPushRequest(identifiers={"id": "5"}), "transactional_message_id"),
    ("send_sms", SendSMSRequest(transactional_message_id=True, identifiers={"id": "5"}), "transactional_message_id"),
    ("send_inbox_message", SendInboxMessageRequest(transactional_message_id=1, identifiers={"id": ""}),
     "identifiers.id"),
    ("send_inbox_message", SendInboxMessageRequest(transactional_message_id=1, identifiers={"id": "5"},
                                                   message_data="x"), "message_data"),  # type: ignore[arg-type]
    ("send_push", SendPushRequest(transactional_message_id=1, identifiers={"id": "5"}, send_at=-5), "send_at"),
    ("send_push", SendSMSRequest(transactional_message_id=1, identifiers={"id": "5"}), None),
])
def test_send_requests_are_validated_before_sending(app: APIClient, collector: Collector, call, request_, field):
    """A send request missing what the API requires raises CustomerIOValidationError naming the
    field (or the wrong request type); nothing is sent."""
    with pytest.raises(CustomerIOValidationError) as info:
        getattr(app, call)(request_)
    assert info.value.field == field
    assert collector.app_api.requests == []


def test_attach_rejects_a_duplicate_name():
    """attach() base64-encodes, keeps already-encoded content, and refuses a name twice."""
    email = SendEmailRequest()
    email.attach("a.bin", b"\x00\x01")
    email.attach("b.txt", "aGk=", encode=False)
    assert email.attachments == {"a.bin": "AAE=", "b.txt": "aGk="}
    with pytest.raises(CustomerIOValidationError, match="already exists"):
        email.attach("a.bin", b"again")
    assert email.to_dict() == email._to_dict() == {"attachments": {"a.bin": "AAE=", "b.txt": "aGk="}}


def test_the_server_refusing_a_send_raises_with_meta_error(app: APIClient, collector: Collector):
    """A send the API refuses (an unknown template here) raises at once with the meta.error reason."""
    collector.app_api.transactional_ids = {"3"}
    with pytest.raises(CustomerIOException) as info:
        app.send_email(SendEmailRequest(transactional_message_id=4, to="a@b.c", identifiers={"id": "5"}))
    assert info.value.status == 404 and "transactional message 4 does not exist" in str(info.value)
    assert '"meta"' in info.value.body and collector.app_api.sent == []


# -- retries ------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_then_retried(app: APIClient, collector: Collector):
    """A 429 with Retry-After: the client waits at least that long, then succeeds."""
    collector.fail_next(1, status=429, retry_after=0.3)
    assert app.segments.get(3)["segment"]["name"] == "VIP"
    log = collector.request_log
    assert [r.status for r in log] == [429, 200]
    assert collector.retry_after_violations() == []
    assert log[1].received_at - log[0].answered_at >= 0.28


def test_5xx_retried_500_not(app: APIClient, collector: Collector):
    """502/503/504 are retried; a 500 raises at once with its status and body."""
    collector.fail_next(1, status=502)
    collector.fail_next(1, status=503)
    collector.fail_next(1, status=504)
    assert app.customers.get_by_email("user1@example.com")["results"][0]["id"] == "1"
    assert [r.status for r in collector.request_log] == [502, 503, 504, 200]
    collector.fail_next(1, status=500, body={"errors": [{"detail": "liquid error", "status": 500}]})
    with pytest.raises(CustomerIOException) as info:
        app.segments.list()
    assert info.value.status == 500 and "liquid error" in str(info.value) and info.value.attempts == 1
    assert len(collector.request_log) == 5


def test_gives_up_after_the_retries(collector: Collector):
    """Retryable failures beyond max_retries raise RetryableError with the attempts made."""
    with APIClient(KEY, url=collector.url, retry_policy=RetryPolicy(max_retries=2, max_time=5, **FAST)) as client:
        collector.fail_next(5, status=503, body="busy")
        with pytest.raises(RetryableError) as info:
            client.segments.list()
    assert info.value.status == 503 and info.value.body == "busy" and info.value.attempts == 3
    assert len(collector.request_log) == 3


def test_a_send_is_retried_on_429_but_never_after_it_may_have_arrived(app: APIClient, collector: Collector):
    """The server answering 429 means it did not send: retried.  A connection dropped after the
    request was written may have sent it: raised (status 0), never sent twice."""
    request = SendSMSRequest(transactional_message_id=7, identifiers={"id": "5"})
    collector.fail_next(1, status=429, retry_after=0.2)
    app.send_sms(request)
    assert len(collector.app_api.sent) == 1 and collector.retry_after_violations() == []
    collector.store_then_drop_next(1)
    with pytest.raises(CustomerIOException) as info:
        app.send_sms(request)
    assert not isinstance(info.value, RetryableError)
    assert info.value.status == 0 and "not sent again" in str(info.value)
    assert len(collector.app_api.sent) == 2  # the dropped one did arrive: exactly once
    collector.drop_next(1)
    app.segments.list()  # a read is safe to repeat: retried after the drop
    assert [r.status for r in collector.request_log][-2:] == [0, 200]


def test_custom_strategy_is_used(collector: Collector):
    """retry_strategy= replaces the default; it sees every attempt."""
    class Strategy:
        attempts = 0

        def execute(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            while True:
                Strategy.attempts += 1
                try:
                    return func(*args, **kwargs)
                except RetryableError:
                    if Strategy.attempts > 10:
                        raise

    with APIClient(KEY, url=collector.url, retry_strategy=Strategy()) as client:
        collector.fail_next(4, status=503)
        assert client.segments.get_customer_count(3)["count"] == 3
    assert Strategy.attempts == 5


def test_one_session_per_client(app: APIClient, collector: Collector):
    """Calls reuse one pooled connection; close() lets it reconnect later."""
    for _ in range(5):
        app.segments.list()
    assert collector.connections == 1
    app.close()
    app.segments.list()
    assert collector.connections == 2


def test_many_pages_stop_on_a_repeated_cursor(collector: Collector):
    """A server that hands out the same cursor again cannot make an iterator loop forever."""
    from customerio.app import _pages

    pages: List[Any] = []

    def fetch(cursor: Any) -> Any:
        pages.append(cursor)
        return {"identifiers": [{"id": str(len(pages))}], "next": "same"}

    assert [p["id"] for p in _pages(fetch, "identifiers", None, None)] == ["1", "2"]
    assert pages == [None, "same"]


# -- the documentation's asyncio and App API examples run against the collector ------------------------------------------


def _fragment_blocks() -> List[Any]:
    import os

    from .test_docs_examples import extract_blocks, not_run_reason

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "guides")
    blocks = []
    for name in ("asyncio.rst", "appapi.rst"):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            found = extract_blocks(f.read(), f"docs/guides/{name}")
            blocks.extend((name, b) for b in found if not not_run_reason(b))  # (it says why)
    return blocks


FRAGMENT_BLOCKS = _fragment_blocks()


@pytest.mark.parametrize("name, block", FRAGMENT_BLOCKS,
                         ids=[f"{n}-line-{b.line}" for n, b in FRAGMENT_BLOCKS])
def test_docs_page_examples_run(name: str, block: Any, collector: Collector, monkeypatch, capsys):
    """Each python example of docs/guides/asyncio.rst and appapi.rst runs against the collector
    once the local collector's documented address is replaced by its URL, and reaches no
    other host."""
    import socket

    import analytics
    import analytics.options

    refused: List[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        if text not in ("127.0.0.1", "::1", "localhost"):
            refused.append(text)
            raise socket.gaierror(socket.EAI_NONAME, f"no network beyond loopback ({text})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    monkeypatch.setattr(analytics.options, "DEFAULT_HOST", collector.url)
    url = collector.url
    code = block.code
    code = code.replace("http://127.0.0.1:8765", url)
    code = code.replace("YOUR_WRITE_KEY", "fragment-key")
    try:
        exec(compile(code, f"{name}:{block.line}", "exec"), {"__name__": f"fragment_{block.line}"})
    finally:
        if analytics.default_client is not None:  # (analytics.shutdown() would create one to shut down)
            analytics.default_client.shutdown(timeout=5)
    assert refused == []
    assert "Traceback" not in capsys.readouterr().err

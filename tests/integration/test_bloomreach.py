"""The Bloomreach client and the collector's Bloomreach routes, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from analytics.bloomreach import MAX_COMMAND_BYTES, MAX_COMMANDS, MAX_PROPERTY_BYTES, BatchResult, BloomreachClient, BloomreachError, InvalidCommandError, event, system_time
from analytics.collector import Collector
from analytics.encoding import dumps
from analytics.errors import InvalidMessageError, ServiceError
from analytics.retry import RetryPolicy
from ..unit.test_bloomreach import PROJECT, ids  # shared with the tests there


KEY_ID, SECRET = "key-id-1", "secret-1"


TIMEOUT = 5


def fast(max_retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, max_time=5.0, base=0.01, cap=0.05)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector whose Bloomreach routes accept any credentials (overrides the shared fixture)."""
    with Collector() as c:
        yield c


@pytest.fixture
def client(collector: Collector) -> Iterator[BloomreachClient]:
    with BloomreachClient(
        PROJECT, base_url=collector.url, api_key_id=KEY_ID, api_secret=SECRET, retry=fast()
    ) as br:
        yield br


def events(n: int) -> List[Dict[str, Any]]:
    return [event(ids(i), "purchase", {"i": i}, timestamp=1_700_000_000 + i) for i in range(n)]


def sized_event(size: int, command_id: str = "c-big") -> Dict[str, Any]:
    """An event command whose encoded size (as the client sends it) is exactly ``size`` bytes."""
    cmd = event(ids(0), "big", {"note": ""}, command_id=command_id)
    room = size - len(dumps(cmd))
    cmd["data"]["properties"]["note"] = "x" * room
    assert len(dumps(cmd)) == size
    return cmd


def post(c: Collector, route: str, payload: Any, *, auth: Any = (KEY_ID, SECRET), headers: Any = None,
         project: str = PROJECT) -> requests.Response:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(f"{c.url}/track/v2/projects/{project}/{route}", data=data, headers=hdrs,
                         auth=auth, timeout=TIMEOUT)


def test_basic_auth_is_sent_and_recorded(collector, client):
    """Key id and secret go as HTTP Basic; the store records the kind and the key id, not the secret."""
    assert client.batch([system_time()]).ok
    (req,) = collector.bloomreach.requests
    expected = "Basic " + base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
    assert req.headers["authorization"] == expected
    assert (req.auth, req.principal, req.project, req.route) == ("basic", KEY_ID, PROJECT, "batch")
    assert collector.bloomreach.commands[0].auth == "basic"


def test_token_auth_is_sent_and_recorded(collector):
    """An API token goes as ``Authorization: Token <token>``."""
    with BloomreachClient(PROJECT, base_url=collector.url, api_token="tok-9", retry=fast()) as br:
        assert br.batch([system_time()]).ok
    (req,) = collector.bloomreach.requests
    assert req.headers["authorization"] == "Token tok-9"
    assert (req.auth, req.principal) == ("token", "tok-9")


def test_wrong_credentials_get_401_not_retried(collector, client):
    """Credentials outside the store's set are refused with 401, raised at once."""
    collector.bloomreach.require(credentials=[("other", "pair")])
    with pytest.raises(BloomreachError) as info:
        client.batch([system_time()])
    assert info.value.status == 401 and not info.value.retryable
    assert "Unauthorized" in info.value.body
    assert collector.stats()["requests"] == 1
    assert collector.bloomreach.commands == []


def test_missing_auth_gets_401(collector):
    """No Authorization header (and no access_token) is 401."""
    assert post(collector, "batch", {"commands": [{"name": "system/time"}]}, auth=None).status_code == 401


def test_access_token_parameter_is_accepted(collector):
    """Public access may put the token in the URL as access_token=."""
    url = f"{collector.url}/track/v2/projects/{PROJECT}/system/time?access_token=tok-q"
    resp = requests.get(url, timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.json()["success"] is True
    assert collector.bloomreach.requests[0].principal == "tok-q"


def test_unknown_project_gets_404(collector, client):
    """With a project list set, another project token is 404."""
    collector.bloomreach.require(projects=["other-project"])
    with pytest.raises(BloomreachError) as info:
        client.batch([system_time()])
    assert info.value.status == 404


def test_reset_gives_a_new_empty_store(collector, client):
    """collector.reset() forgets the Bloomreach records and settings."""
    collector.bloomreach.require(projects=["x"])
    collector.reset()
    assert client.batch([system_time()]).ok
    assert len(collector.bloomreach.commands) == 1


def test_120_commands_go_in_3_requests_in_order(collector, client):
    """50 + 50 + 20: one result per command, in order, every command stored once."""
    given = events(120)
    result = client.batch(given)
    assert isinstance(result, BatchResult) and result.ok and len(result) == 120
    assert [r.index for r in result] == list(range(120))
    assert [len(json.loads(r.body)["results"]) for r in result.responses] == [50, 50, 20]
    assert [q.commands for q in collector.bloomreach.requests] == [50, 50, 20]
    stored = collector.bloomreach.events
    assert [e["properties"]["i"] for e in stored] == list(range(120))
    assert [r.command_id for r in result] == [c.command_id for c in collector.bloomreach.commands]
    assert all("command_id" not in c for c in given)  # the caller's commands are not changed


def test_command_ids_are_filled_in_or_kept(collector, client):
    """A command without command_id gets a fresh one; a given one is sent and echoed as it is."""
    result = client.batch([event(ids(1), "a", command_id="mine-1"), event(ids(2), "b")])
    assert result[0].command_id == "mine-1" and result[0].raw["command_id"] == "mine-1"
    assert len(result[1].command_id) == 32 and result[1].raw["command_id"] == result[1].command_id
    assert collector.bloomreach.command_ids == {"mine-1", result[1].command_id}


def test_failed_commands_map_back_across_requests_and_are_not_retried(collector, client):
    """Commands refused in a 200 answer are reported at their index; the batch is not sent again."""
    collector.bloomreach.reject_when(
        lambda cmd: "bad purchase" if cmd["data"]["properties"]["i"] in (3, 60, 110) else None
    )
    result = client.batch(events(120))
    assert not result.ok
    assert [r.index for r in result.failed] == [3, 60, 110]
    assert result.errors == {3: ["bad purchase"], 60: ["bad purchase"], 110: ["bad purchase"]}
    assert len(result.succeeded) == 117
    assert collector.stats()["requests"] == 3  # one per chunk: nothing retried
    assert len(collector.bloomreach.events) == 117
    assert [r.position for r in collector.bloomreach.rejected] == [3, 10, 10]


def test_server_side_command_errors_come_back_per_command(collector, client):
    """The collector checks each command like Bloomreach; the others are still accepted."""
    result = client.batch([
        {"name": "customers", "data": {"customer_ids": {}, "properties": {"a": 1}}},
        {"name": "customers/events", "data": {"customer_ids": ids(1)}},
        {"name": "customers/nope", "data": {}},
        system_time(),
        event(ids(2), "ok"),
    ])
    assert [r.success for r in result] == [False, False, False, True, True]
    assert result[0].errors == ["At least one id should be specified."]
    assert result[1].errors == ["Field 'event_type' is required."]
    assert "Unknown command name" in result[2].errors[0]
    assert isinstance(result[3].time, float) and abs(result[3].time - time.time()) < 60
    assert collector.stats()["requests"] == 1


def test_command_size_limit_is_checked_before_sending(collector, client):
    """A command of 800,000 bytes encoded raises naming its index; nothing is sent."""
    too_big = sized_event(MAX_COMMAND_BYTES)
    with pytest.raises(InvalidCommandError) as info:
        client.batch(events(60) + [too_big])
    assert info.value.index == 60 and info.value.size == MAX_COMMAND_BYTES
    assert "commands[60]" in str(info.value)
    assert collector.stats()["requests"] == 0


def test_command_just_under_the_size_limit_is_sent(collector, client):
    """799,999 bytes passes the client's and the collector's check (with property values kept small)."""
    cmd = event(ids(0), "big", {f"p{i}": "y" * 15_000 for i in range(53)}, command_id="c-ok")
    room = MAX_COMMAND_BYTES - 1 - len(dumps(cmd))
    cmd["data"]["properties"]["rest"] = "z" * (room - len(',"rest":""'))
    assert len(dumps(cmd)) == MAX_COMMAND_BYTES - 1
    assert client.batch([cmd]).ok
    assert collector.bloomreach.command_ids == {"c-ok"}


def test_property_value_limit_is_checked_before_sending(collector, client):
    """A property value of 16,000 bytes encoded raises naming the command and the property."""
    big = event(ids(0), "e", {"ok": 1})
    big["data"]["properties"]["note"] = "x" * (MAX_PROPERTY_BYTES - 2)  # + 2 quotes
    with pytest.raises(InvalidCommandError) as info:
        client.batch([system_time(), big])
    assert info.value.index == 1 and info.value.field == "data.properties.note"
    assert "data.properties.note" in str(info.value) and "commands[1]" in str(info.value)
    assert collector.stats()["requests"] == 0
    big["data"]["properties"]["note"] = "x" * (MAX_PROPERTY_BYTES - 3)
    assert client.batch([big]).ok


@pytest.mark.parametrize("commands", [[], None, {"name": "system/time"}, "system/time"])
def test_empty_or_wrong_command_lists_raise(collector, client, commands):
    """None, an empty list, a dict or a string is refused before sending."""
    with pytest.raises(InvalidMessageError):
        client.batch(commands)
    assert collector.stats()["requests"] == 0


@pytest.mark.parametrize(
    "bad, field",
    [
        ("system/time", None),
        ({"data": {}}, "name"),
        ({"name": "customers", "data": [1]}, "data"),
        ({"name": "system/time", "command_id": 7}, "command_id"),
        ({"name": "customers/events", "data": {"properties": {"x": object()}}}, "data.properties.x"),
    ],
)
def test_malformed_commands_raise_with_their_index(collector, client, bad, field):
    """A command of the wrong shape raises InvalidCommandError naming its index; nothing is sent."""
    with pytest.raises(InvalidCommandError) as info:
        client.batch([system_time(), bad])
    assert info.value.index == 1 and info.value.field == field
    assert collector.stats()["requests"] == 0


def test_429_with_retry_after_is_waited_for_then_sent(collector, client):
    """A 429 with Retry-After: 1 is retried no sooner than asked, then succeeds."""
    collector.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    result = client.batch(events(3))
    assert result.ok and result.responses[0].attempts == 2
    assert time.monotonic() - started >= 0.95
    assert collector.retry_after_violations() == []
    assert len(collector.bloomreach.events) == 3


def test_5xx_is_retried(collector, client):
    """503 twice, then the batch goes through."""
    collector.fail_next(2, status=503)
    result = client.batch(events(2))
    assert result.ok and result.responses[0].attempts == 3
    assert [q.status for q in collector.bloomreach.requests] == [503, 503, 200]


def test_dropped_connection_is_retried(collector, client):
    """A connection reset without an answer is retried."""
    collector.drop_next(1)
    assert client.batch(events(2)).ok
    assert [q.status for q in collector.bloomreach.requests] == [0, 200]
    assert len(collector.bloomreach.events) == 2


def test_stored_then_dropped_batch_shows_as_duplicates(collector, client):
    """Stored but unanswered, the batch is sent again: the same command_ids arrive twice."""
    collector.store_then_drop_next(1)
    assert client.batch(events(4)).ok
    assert len(collector.bloomreach.events) == 8
    assert collector.bloomreach.duplicates == 4 and len(collector.bloomreach.command_ids) == 4


def test_retries_exhausted_raises(collector):
    """500 on every attempt: BloomreachError after max_retries + 1 attempts."""
    collector.fail_next(10, status=500)
    with BloomreachClient(PROJECT, base_url=collector.url, api_token="t", retry=fast(max_retries=2)) as br:
        with pytest.raises(BloomreachError) as info:
            br.batch(events(2))
    assert isinstance(info.value, ServiceError)
    assert info.value.status == 500 and info.value.attempts == 3 and "gave up" in str(info.value)
    assert collector.stats()["requests"] == 3


def test_400_raises_with_the_body_not_retried(collector, client):
    """A 400 refuses the whole request: raised at once, with Bloomreach's body."""
    collector.fail_next(1, status=400, body={"success": False, "message": "Invalid JSON"})
    with pytest.raises(BloomreachError) as info:
        client.batch(events(2))
    assert info.value.status == 400 and "Invalid JSON" in info.value.body
    assert collector.stats()["requests"] == 1


def test_failure_in_a_later_request_reports_what_was_answered(collector, client):
    """The second of three requests is refused: error.result has the first 50, unanswered the rest."""
    collector.set_chaos(fail_every=2, status=400)
    with pytest.raises(BloomreachError) as info:
        client.batch(events(120))
    assert info.value.result is not None and len(info.value.result) == 50 and info.value.result.ok
    assert list(info.value.unanswered) == list(range(50, 120))
    assert collector.stats()["requests"] == 2
    assert len(collector.bloomreach.events) == 50


def test_unreadable_200_fails_every_command_of_that_request(collector, client):
    """A 200 that is not Bloomreach's answer cannot be taken as accepted."""
    collector.fail_next(1, status=200, body="<html>proxy</html>")
    result = client.batch(events(2))
    assert [r.success for r in result] == [False, False]
    assert "without a readable answer" in result[0].errors[0]


def test_single_calls(collector, client):
    """update_customer, add_event and get_system_time use the single routes."""
    assert client.update_customer(ids(1), {"plan": "pro"}, update_timestamp=1_700_000_000) == {"success": True}
    assert client.add_event(ids(1), "login", {"via": "sso"}, timestamp=dt.datetime(2024, 1, 1))["success"]
    assert abs(client.get_system_time() - time.time()) < 60
    store = collector.bloomreach
    assert store.customers == [{"customer_ids": ids(1), "properties": {"plan": "pro"}, "update_timestamp": 1_700_000_000.0}]
    assert store.events == [{"customer_ids": ids(1), "event_type": "login", "timestamp": 1704067200.0,
                             "properties": {"via": "sso"}}]
    assert [q.route for q in store.requests] == ["customers", "customers/events", "system/time"]


def test_single_call_refused_in_a_200_raises(collector, client):
    """A 200 with success false on a single route raises (status 200), not retried."""
    collector.bloomreach.reject_when(lambda cmd: ["no such customer"])
    with pytest.raises(BloomreachError) as info:
        client.update_customer(ids(1), {"plan": "pro"})
    assert info.value.status == 200 and "no such customer" in str(info.value)
    assert collector.stats()["requests"] == 1


def test_collector_refuses_more_than_50_commands(collector):
    """51 commands: 400 for the whole batch, nothing stored."""
    resp = post(collector, "batch", {"commands": [{"name": "system/time"}] * (MAX_COMMANDS + 1)})
    assert resp.status_code == 400 and resp.json()["success"] is False
    assert collector.bloomreach.commands == []


@pytest.mark.parametrize("payload", [b"{not json", b'{"commands": {}}', b'{"commands": []}', b"[]"])
def test_collector_refuses_malformed_bodies(collector, payload):
    """Non-JSON is 400 "Invalid JSON"; no commands list, or an empty one, is 400."""
    resp = post(collector, "batch", payload)
    assert resp.status_code == 400 and resp.json()["success"] is False
    if payload == b"{not json":
        assert resp.json() == {"success": False, "message": "Invalid JSON"}


def test_collector_checks_sizes_per_command(collector):
    """A property value of 16,000 bytes fails its command only; the answer is the documented shape."""
    payload = {"commands": [
        {"name": "customers", "command_id": "a", "data": {"customer_ids": ids(1), "properties": {"n": "x" * 16_000}}},
        {"name": "customers", "command_id": "b", "data": {"customer_ids": ids(1), "properties": {"n": "x" * 100}}},
    ]}
    resp = post(collector, "batch", payload)
    doc = resp.json()
    assert resp.status_code == 200 and doc["success"] is True
    assert set(doc) == {"results", "start_time", "end_time", "success"}
    assert doc["results"][0]["success"] is False and "'n'" in doc["results"][0]["errors"][0]
    assert doc["results"][0]["command_id"] == "a"
    assert doc["results"][1] == {"success": True, "command_id": "b"}


def test_collector_accepts_gzip(collector):
    """A gzipped body is un-gzipped; the request record says so."""
    body = gzip.compress(json.dumps({"commands": [event(ids(1), "zipped")]}).encode())
    resp = post(collector, "batch", body, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.json()["results"][0]["success"] is True
    (req,) = collector.bloomreach.requests
    assert req.gzipped and collector.bloomreach.events[0]["event_type"] == "zipped"


def test_collector_single_route_validation(collector):
    """A single route with a bad body is 400 with errors."""
    resp = post(collector, "customers/events", {"customer_ids": ids(1)})
    assert resp.status_code == 400 and resp.json() == {"success": False, "errors": ["Field 'event_type' is required."]}


def test_store_wait_for(collector, client):
    """wait_for returns once the commands have been accepted, False on timeout."""
    client.batch(events(3))
    assert collector.bloomreach.wait_for(3, timeout=1)
    assert not collector.bloomreach.wait_for(4, timeout=0.05)


FRAGMENT = Path(__file__).resolve().parents[2] / "docs" / "guides" / "bloomreach.rst"


def fragment_blocks(text: str) -> List[str]:
    """The ``.. code-block:: python`` bodies of an rST text, dedented, in order."""
    lines = text.splitlines()
    blocks: List[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != ".. code-block:: python":
            i += 1
            continue
        i += 1
        body: List[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
            body.append(lines[i])
            i += 1
        blocks.append(textwrap.dedent("\n".join(body)).strip("\n") + "\n")
    return blocks


def test_page_examples_run_against_the_collector(collector):
    """Every example of docs/guides/bloomreach.rst runs, in order, with only the local collector's
    documented address replaced."""
    text = FRAGMENT.read_text(encoding="utf-8")
    blocks = fragment_blocks(text.replace("http://127.0.0.1:8765", collector.url))
    assert len(blocks) >= 5
    namespace: Dict[str, Any] = {"__name__": "bloomreach_fragment"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{FRAGMENT.name} block {number}", "exec"), namespace)  # noqa: S102
    assert collector.bloomreach.command_ids >= {"order-1001"}
    assert len(collector.bloomreach.rejected) == 1
    assert {q.auth for q in collector.bloomreach.requests} == {"basic", "token"}

"""The Bloomreach destination: Segment-spec messages to batch commands, bodies and per-item results."""

from __future__ import annotations

import base64
import json
from typing import Any, Dict

import pytest
from analytics.destinations import Destination
from analytics.destinations.bloomreach import Bloomreach
from analytics.encoding import dumps
from analytics.errors import ConfigurationError, InvalidMessageError, UnsupportedCallError
from analytics.messages import build


TS = "2024-01-01T00:00:00.500+00:00"


TS_UNIX = 1704067200.5


@pytest.fixture
def dest() -> Bloomreach:
    return Bloomreach("proj-1", api_key_id="kid", api_secret="sec")


def msg(type_: str, **fields: Any) -> Dict[str, Any]:
    fields.setdefault("timestamp", TS)
    fields.setdefault("message_id", f"m-{type_}")
    return build(type_, **fields)


def test_identify_becomes_a_customers_update(dest):
    """identify -> customers: both ids, traits as properties, update_timestamp, command_id = messageId."""
    m = msg("identify", user_id="u-1", anonymous_id="a-1", traits={"plan": "pro", "address": {"city": "Oslo"}})
    assert dest.translate(m) == {
        "name": "customers",
        "data": {
            "customer_ids": {"registered": "u-1", "cookie": "a-1"},
            "properties": {"plan": "pro", "address": {"city": "Oslo"}},
            "update_timestamp": TS_UNIX,
        },
        "command_id": "m-identify",
    }


def test_track_becomes_an_event(dest):
    """track -> customers/events with event_type, Unix-seconds timestamp and the properties."""
    m = msg("track", user_id="u-1", event="Order Completed", properties={"total": 9.5})
    assert dest.translate(m) == {
        "name": "customers/events",
        "data": {
            "customer_ids": {"registered": "u-1"},
            "event_type": "Order Completed",
            "timestamp": TS_UNIX,
            "properties": {"total": 9.5},
        },
        "command_id": "m-track",
    }


def test_page_becomes_a_page_visit(dest):
    """page -> page_visit with page_name (and page_category) added to the properties."""
    m = msg("page", anonymous_id="a-1", name="Pricing", category="Docs", properties={"url": "/pricing"})
    cmd = dest.translate(m)
    assert cmd["name"] == "customers/events" and cmd["command_id"] == "m-page"
    assert cmd["data"] == {
        "customer_ids": {"cookie": "a-1"},
        "event_type": "page_visit",
        "timestamp": TS_UNIX,
        "properties": {"url": "/pricing", "page_name": "Pricing", "page_category": "Docs"},
    }


def test_screen_becomes_a_screen_visit(dest):
    """screen -> screen_visit with screen_name; no name, no screen_name."""
    cmd = dest.translate(msg("screen", user_id="u-1", name="Home"))
    assert cmd["data"]["event_type"] == "screen_visit"
    assert cmd["data"]["properties"] == {"screen_name": "Home"}
    assert dest.translate(msg("screen", user_id="u-1"))["data"]["properties"] == {}


def test_group_becomes_group_properties(dest):
    """group -> customers update with group_id and group_<trait> (Bloomreach's destination convention)."""
    m = msg("group", user_id="u-1", group_id="acme", traits={"name": "Acme", "seats": 5})
    assert dest.translate(m) == {
        "name": "customers",
        "data": {
            "customer_ids": {"registered": "u-1"},
            "properties": {"group_id": "acme", "group_name": "Acme", "group_seats": 5},
            "update_timestamp": TS_UNIX,
        },
        "command_id": "m-group",
    }


def test_alias_is_unsupported_and_says_what_to_do(dest):
    """alias raises UnsupportedCallError explaining that Bloomreach merges by ids in one command."""
    with pytest.raises(UnsupportedCallError) as info:
        dest.translate(msg("alias", user_id="u-1", previous_id="a-1"))
    text = str(info.value)
    assert "cannot merge" in text and "anonymous_id" in text and "identify" in text


def test_custom_id_names(dest):
    """hard_id / soft_id name the customer ids."""
    d = Bloomreach("p", api_token="t", hard_id="email_id", soft_id="device")
    cmd = d.translate(msg("track", user_id="u", anonymous_id="a", event="E"))
    assert cmd["data"]["customer_ids"] == {"email_id": "u", "device": "a"}


def test_group_without_a_customer_id_is_refused(dest):
    """group may come without ids; Bloomreach needs one."""
    with pytest.raises(InvalidMessageError) as info:
        dest.translate(msg("group", group_id="acme"))
    assert info.value.field == "userId"


@pytest.mark.parametrize(
    "type_, fields, field",
    [
        ("track", {"user_id": "u", "event": "E", "properties": {"note": "x" * 16_000}}, "properties.note"),
        ("identify", {"user_id": "u", "traits": {"bio": "x" * 16_000}}, "traits.bio"),
        ("group", {"user_id": "u", "group_id": "g", "traits": {"bio": "x" * 16_000}}, "traits.bio"),
        ("page", {"user_id": "u", "name": "x" * 16_000}, "properties.page_name"),
    ],
)
def test_property_values_over_16kb_are_refused_naming_them(dest, type_, fields, field):
    """A property value of 16,000 bytes or more encoded raises InvalidMessageError naming it."""
    with pytest.raises(InvalidMessageError) as info:
        dest.translate(msg(type_, **fields))
    assert info.value.field == field and field in str(info.value)


def test_property_value_just_under_16kb_passes(dest):
    """15,999 bytes encoded (with the quotes) is fine."""
    cmd = dest.translate(msg("track", user_id="u", event="E", properties={"note": "x" * 15_997}))
    assert len(dumps(cmd["data"]["properties"]["note"])) == 15_999


def test_limits_and_path(dest):
    """50 commands per request, commands under 800,000 bytes, the project's batch path."""
    assert isinstance(dest, Destination)
    assert dest.max_items == 50 and dest.max_message_bytes == 799_999
    assert dest.max_body_bytes >= dest.max_message_bytes + dest.overhead()
    assert dest.path == "/track/v2/projects/proj-1/batch"
    assert dest.base_url() == "https://api.exponea.com"
    assert dest.item_id({"command_id": "m-1"}) == "m-1"


def test_headers_basic_and_token(dest):
    """headers() carries the Authorization of the chosen access kind."""
    assert dest.headers() == {"Authorization": "Basic " + base64.b64encode(b"kid:sec").decode()}
    assert Bloomreach("p", api_token="tok").headers() == {"Authorization": "Token tok"}


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"api_token": "t", "api_key_id": "k", "api_secret": "s"}, {"api_key_id": "k"},
     {"api_token": "t", "hard_id": ""}, {"api_token": "t", "hard_id": "x", "soft_id": "x"},
     {"api_token": "t", "base_url": "nope"}],
)
def test_bad_configuration_raises(kwargs):
    """Exactly one auth kind, distinct non-empty id names, a URL."""
    with pytest.raises(ConfigurationError):
        Bloomreach("p", **kwargs)


def test_body_is_exact_and_overhead_matches(dest):
    """body() is {"commands":[...]} around the items; its length is overhead + items + commas."""
    items = [dumps(dest.translate(msg("track", user_id="u", event=f"E{i}", message_id=f"m{i}"))) for i in range(3)]
    body = dest.body(items)
    assert len(body) == dest.overhead() + sum(map(len, items)) + len(items) - 1
    assert [c["command_id"] for c in json.loads(body)["commands"]] == ["m0", "m1", "m2"]
    assert dest.body([]) == b'{"commands":[]}'


def _answer(*results: Dict[str, Any]) -> bytes:
    return json.dumps({"results": list(results), "start_time": 1.0, "end_time": 2.0, "success": True}).encode()


def test_results_all_accepted(dest):
    """success: true for every command -> None for every item."""
    assert dest.results(200, _answer({"success": True}, {"success": True, "time": 1.5}), 2) == [None, None]


def test_results_mixed(dest):
    """A success: false result gives its error texts; the others None."""
    body = _answer({"success": True}, {"success": False, "errors": ["At least one id should be specified."]},
                   {"success": False, "errors": ["a", "b"]}, {"success": False})
    assert dest.results(200, body, 4) == [None, "At least one id should be specified.", "a; b",
                                          "refused without a reason"]


def test_results_short_list_fails_the_missing(dest):
    """A command without a result is reported, not taken as accepted."""
    assert dest.results(200, _answer({"success": True}), 3) == [
        None, "Bloomreach sent no result for this command", "Bloomreach sent no result for this command"]


def test_results_whole_request_refused_in_a_200(dest):
    """Top-level success: false fails every item with the message."""
    body = json.dumps({"success": False, "message": "Invalid JSON"}).encode()
    assert dest.results(200, body, 2) == ["Invalid JSON", "Invalid JSON"]


@pytest.mark.parametrize("body", [b"", b"<html>proxy</html>", b'{"success": true}'])
def test_results_unreadable_answer_fails_every_item(dest, body):
    """A 2xx without a results list is not Bloomreach's answer: every item is reported."""
    out = dest.results(200, body, 2)
    assert len(out) == 2 and all(isinstance(text, str) and text for text in out)

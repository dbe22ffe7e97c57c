"""TrackV2: Segment-spec messages to Track API v2 operations, bodies and per-item results."""

from __future__ import annotations
import json
from typing import Any, Dict

import pytest
from analytics.destinations import Destination, basic_auth
from analytics.destinations.trackv2 import TrackV2, resolve_identifiers
from analytics.errors import ConfigurationError, InvalidMessageError, UnsupportedCallError
from analytics.messages import build
from customerio import Regions, v2


SITE, KEY = "site-d", "key-d"


TS = "2023-11-14T22:13:20.000+00:00"


UNIX = 1700000000


@pytest.fixture
def dest() -> TrackV2:
    return TrackV2(SITE, KEY)


def msg(type_: str, **kw: Any) -> Dict[str, Any]:
    kw.setdefault("timestamp", TS)
    kw.setdefault("message_id", "m-1")
    return build(type_, **kw)


def test_is_a_destination_with_the_api_limits(dest: TrackV2) -> None:
    """Path, limits, auth header and the {"batch":[...]} body with its exact overhead."""
    assert isinstance(dest, Destination)
    assert (dest.path, dest.max_message_bytes, dest.max_body_bytes) == ("/api/v2/batch", 32 * 1024, 500_000)
    assert dest.headers() == {"Authorization": basic_auth(SITE, KEY)}
    items = [b'{"a":1}', b'{"b":2}']
    assert dest.body(items) == b'{"batch":[{"a":1},{"b":2}]}'
    assert len(dest.body(items)) == dest.overhead() + sum(map(len, items)) + len(items) - 1
    assert dest.body([]) == b'{"batch":[]}' and dest.overhead() == 12


@pytest.mark.parametrize(
    "kwargs, url",
    [
        ({}, "https://track.customer.io"),
        ({"region": "EU"}, "https://track-eu.customer.io"),
        ({"region": Regions.EU}, "https://track-eu.customer.io"),
        ({"region": Regions.US}, "https://track.customer.io"),
        ({"host": "http://127.0.0.1:8123"}, "http://127.0.0.1:8123"),
        ({"host": "http://example.com:81/"}, "https://example.com:81"),
        ({"host": "proxy.example.com"}, "https://proxy.example.com"),
    ],
)
def test_base_url(kwargs: Dict[str, Any], url: str) -> None:
    """Region or host; plain http only for loopback."""
    assert TrackV2(SITE, KEY, **kwargs).base_url() == url


def test_bad_settings() -> None:
    """Missing credentials, an unknown region or a host with a path raise ConfigurationError."""
    for args, kwargs in [((SITE, ""), {}), ((SITE, KEY), {"region": "ap"}),
                         ((SITE, KEY), {"host": "https://x.io/api"})]:
        with pytest.raises(ConfigurationError):
            TrackV2(*args, **kwargs)


def test_resolve_identifiers() -> None:
    """cio_ prefix → cio_id, an e-mail → email, anything else → id."""
    assert resolve_identifiers("cio_abc") == {"cio_id": "abc"}
    assert resolve_identifiers("jane@example.com") == {"email": "jane@example.com"}
    assert resolve_identifiers("42") == {"id": "42"}
    assert resolve_identifiers("cio_") == {"id": "cio_"}


def test_identify(dest: TrackV2) -> None:
    """identify → person identify with traits, created_at from createdAt, anonymous_id, timestamp."""
    op = dest.translate(msg("identify", user_id="u1", anonymous_id="a1",
                            traits={"name": "Jane", "createdAt": "2023-11-14T22:13:20Z"}))
    assert op == {"type": "person", "action": "identify", "identifiers": {"id": "u1"},
                  "attributes": {"name": "Jane", "created_at": UNIX, "anonymous_id": "a1"}, "timestamp": UNIX}
    assert v2.operation_problem(op) is None


def test_identify_identity_resolution_and_object(dest: TrackV2) -> None:
    """E-mail and cio_ user ids, traits.email without a user id, anonymous only; objectId relates."""
    assert dest.translate(msg("identify", user_id="a@b.co"))["identifiers"] == {"email": "a@b.co"}
    assert dest.translate(msg("identify", user_id="cio_x1"))["identifiers"] == {"cio_id": "x1"}
    op = dest.translate(msg("identify", anonymous_id="a1", traits={"email": "t@b.co"}))
    assert op["identifiers"] == {"email": "t@b.co"} and op["attributes"]["anonymous_id"] == "a1"
    op = dest.translate(msg("identify", anonymous_id="a1"))
    assert op["identifiers"] == {"anonymous_id": "a1"} and "anonymous_id" not in op["attributes"]
    op = dest.translate(msg("identify", user_id="u1", traits={"objectId": "acme", "objectTypeId": "2"}))
    assert op["cio_relationships"] == [{"identifiers": {"object_type_id": "2", "object_id": "acme"}}]


def test_track(dest: TrackV2) -> None:
    """track → person event with name, id = messageId, timestamp, properties as attributes."""
    op = dest.translate(msg("track", user_id="u1", event="Purchased", properties={"price": 9}))
    assert op == {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "Purchased",
                  "attributes": {"price": 9}, "id": "m-1", "timestamp": UNIX}
    assert dest.item_id(op) == "m-1"
    op = dest.translate(msg("track", anonymous_id="a1", event="Viewed"))
    assert op["identifiers"] == {"anonymous_id": "a1"}


def test_page(dest: TrackV2) -> None:
    """page → person page named by properties.url, else the page name; neither raises."""
    op = dest.translate(msg("page", user_id="u1", name="Pricing", properties={"url": "https://x.io/p"}))
    assert op == {"type": "person", "action": "page", "identifiers": {"id": "u1"}, "name": "https://x.io/p",
                  "attributes": {"url": "https://x.io/p"}, "id": "m-1", "timestamp": UNIX}
    assert dest.translate(msg("page", user_id="u1", name="Pricing"))["name"] == "Pricing"
    with pytest.raises(InvalidMessageError, match="page needs"):
        dest.translate(msg("page", user_id="u1"))


def test_screen(dest: TrackV2) -> None:
    """screen → person screen named by the screen name; none raises."""
    op = dest.translate(msg("screen", user_id="u1", name="Home", properties={"tab": 2}))
    assert op == {"type": "person", "action": "screen", "identifiers": {"id": "u1"}, "name": "Home",
                  "attributes": {"tab": 2}, "id": "m-1", "timestamp": UNIX}
    with pytest.raises(InvalidMessageError, match="screen needs a name"):
        dest.translate(msg("screen", user_id="u1"))


def test_group(dest: TrackV2) -> None:
    """group → object identify related to the user; anonymous only → identify_anonymous; neither → object only."""
    op = dest.translate(msg("group", user_id="u1", group_id="acme", object_type_id="3",
                            traits={"name": "Acme", "relationshipAttributes": {"role": "admin"}}))
    assert op == {"type": "object", "action": "identify",
                  "identifiers": {"object_type_id": "3", "object_id": "acme"}, "attributes": {"name": "Acme"},
                  "cio_relationships": [{"identifiers": {"id": "u1"},
                                         "relationship_attributes": {"role": "admin"}}]}
    op = dest.translate(msg("group", anonymous_id="a1", group_id="acme", traits={"objectTypeId": "4"}))
    assert op["action"] == "identify_anonymous" and op["identifiers"]["object_type_id"] == "4"
    assert op["cio_relationships"] == [{"identifiers": {"anonymous_id": "a1"}}] and op["attributes"] == {}
    op = dest.translate(msg("group", group_id="acme"))
    assert "cio_relationships" not in op and op["identifiers"] == {"object_type_id": "1", "object_id": "acme"}
    for m in (msg("group", user_id="u1", group_id="g"), msg("group", anonymous_id="a", group_id="g")):
        assert v2.operation_problem(dest.translate(m)) is None


def test_alias(dest: TrackV2) -> None:
    """alias → person merge, primary from userId, secondary from previousId."""
    op = dest.translate(msg("alias", user_id="u1", previous_id="old@b.co"))
    assert op == {"type": "person", "action": "merge", "primary": {"id": "u1"}, "secondary": {"email": "old@b.co"}}
    assert v2.operation_problem(op) is None


def test_unknown_type_is_unsupported(dest: TrackV2) -> None:
    """A message type with no v2 operation raises UnsupportedCallError."""
    with pytest.raises(UnsupportedCallError):
        dest.translate({"type": "batch", "messageId": "x"})


def device_ctx(token: str = "tok-1", kind: str = "iOS") -> Dict[str, Any]:
    return {"device": {"token": token, "type": kind}}


def test_reserved_device_events(dest: TrackV2) -> None:
    """Application Installed/Opened → add_device, Uninstalled → delete_device; no token → plain event."""
    op = dest.translate(msg("track", user_id="u1", event="Application Opened", context=device_ctx()))
    assert op == {"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                  "device": {"token": "tok-1", "platform": "ios", "last_used": UNIX}}
    op = dest.translate(msg("track", user_id="u1", event="Application Uninstalled", context=device_ctx()))
    assert op == {"type": "person", "action": "delete_device", "identifiers": {"id": "u1"},
                  "device": {"token": "tok-1"}}
    assert dest.translate(msg("track", user_id="u1", event="Application Installed"))["action"] == "event"
    off = TrackV2(SITE, KEY, reserved_events=False)
    assert off.translate(msg("track", user_id="u1", event="Application Opened", context=device_ctx()))["action"] \
        == "event"


def test_reserved_person_and_object_events(dest: TrackV2) -> None:
    """User Deleted/Suppressed/Unsuppressed, Object Deleted and Relationship Deleted."""
    for event, action in [("User Deleted", "delete"), ("User Suppressed", "suppress"),
                          ("User Unsuppressed", "unsuppress")]:
        assert dest.translate(msg("track", user_id="u1", event=event)) == {
            "type": "person", "action": action, "identifiers": {"id": "u1"}}
    with pytest.raises(InvalidMessageError, match="needs a userId"):
        dest.translate(msg("track", anonymous_id="a1", event="User Deleted"))
    op = dest.translate(msg("track", user_id="u1", event="Object Deleted", properties={"objectId": "acme"}))
    assert op == {"type": "object", "action": "delete", "identifiers": {"object_type_id": "1", "object_id": "acme"}}
    op = dest.translate(msg("track", user_id="u1", event="Relationship Deleted",
                            properties={"objectId": "acme", "objectTypeId": "2"}))
    assert op == {"type": "person", "action": "delete_relationships", "identifiers": {"id": "u1"},
                  "cio_relationships": [{"identifiers": {"object_type_id": "2", "object_id": "acme"}}]}
    with pytest.raises(InvalidMessageError, match="objectId"):
        dest.translate(msg("track", user_id="u1", event="Object Deleted"))


def test_convert_timestamps_option() -> None:
    """convert_timestamps=True turns ISO-8601 strings in attributes into Unix seconds."""
    on = TrackV2(SITE, KEY, convert_timestamps=True)
    op = on.translate(msg("track", user_id="u1", event="E",
                          properties={"at": TS, "day": "2023-11-14", "nested": {"at": TS}, "text": "hello"}))
    assert op["attributes"] == {"at": UNIX, "day": 1699920000, "nested": {"at": UNIX}, "text": "hello"}
    off = TrackV2(SITE, KEY).translate(msg("track", user_id="u1", event="E", properties={"at": TS}))
    assert off["attributes"] == {"at": TS}


def test_results(dest: TrackV2) -> None:
    """207 (or 200 with errors) items map to positions; bad or missing indexes are ignored."""
    body = json.dumps({"errors": [
        {"batch_index": 1, "reason": "invalid", "field": "attributes.plan", "message": "too long"},
        {"batch_index": 3, "reason": "required", "message": "name"},
        {"batch_index": 9, "reason": "invalid"}, {"reason": "invalid"}, "junk"]}).encode()
    assert dest.results(207, body, 4) == [None, "invalid: attributes.plan: too long", None, "required: name"]
    assert dest.results(200, body, 2) == [None, "invalid: attributes.plan: too long"]
    assert dest.results(200, b"{}", 2) == [None, None]
    assert dest.results(200, b'{"errors": []}', 2) == [None, None]
    assert dest.results(200, b"", 1) == [None]
    assert dest.results(200, b"<html>", 1) == [None]

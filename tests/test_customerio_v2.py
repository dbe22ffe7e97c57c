"""v2 operation builders and shape check, and the collector's Track API routes spoken to directly."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from analytics.collector import Collector
from analytics.errors import InvalidMessageError
from customerio import CustomerIOException, CustomerIOValidationError, v2

SITE, KEY = "site-v2", "key-v2"
PERSON = {"id": 123}
ACME = {"object_type_id": "1", "object_id": "acme"}


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


# -- builders ---------------------------------------------------------------------------------------


BUILT = [
    (lambda: v2.identify_person(PERSON, name="Jane", plan="premium"),
     {"type": "person", "action": "identify", "identifiers": {"id": 123},
      "attributes": {"name": "Jane", "plan": "premium"}}),
    (lambda: v2.identify_person({"email": "a@b.co"}, attributes={"timestamp": "attr"}, timestamp=1700000000,
                                relationships=[{"identifiers": ACME}]),
     {"type": "person", "action": "identify", "identifiers": {"email": "a@b.co"},
      "attributes": {"timestamp": "attr"}, "timestamp": 1700000000, "cio_relationships": [{"identifiers": ACME}]}),
    (lambda: v2.delete_person({"email": "a@b.c"}),
     {"type": "person", "action": "delete", "identifiers": {"email": "a@b.c"}}),
    (lambda: v2.suppress_person(PERSON), {"type": "person", "action": "suppress", "identifiers": PERSON}),
    (lambda: v2.unsuppress_person({"cio_id": "abc"}),
     {"type": "person", "action": "unsuppress", "identifiers": {"cio_id": "abc"}}),
    (lambda: v2.track_person_event(PERSON, "purchase", amount=49.99),
     {"type": "person", "action": "event", "identifiers": PERSON, "name": "purchase",
      "attributes": {"amount": 49.99}}),
    (lambda: v2.track_person_event(PERSON, "purchase", id="01H", timestamp=dt.datetime(2023, 11, 14, 22, 13, 20),
                                   attributes={"id": "in-data"}),
     {"type": "person", "action": "event", "identifiers": PERSON, "name": "purchase",
      "attributes": {"id": "in-data"}, "id": "01H", "timestamp": 1700000000}),
    (lambda: v2.person_pageview(PERSON, "/pricing"),
     {"type": "person", "action": "page", "identifiers": PERSON, "name": "/pricing", "attributes": {}}),
    (lambda: v2.person_screen(PERSON, "home_screen"),
     {"type": "person", "action": "screen", "identifiers": PERSON, "name": "home_screen", "attributes": {}}),
    (lambda: v2.add_person_device(PERSON, "tok_abc", "ios", last_used=dt.datetime(2023, 11, 14, 22, 13, 20)),
     {"type": "person", "action": "add_device", "identifiers": PERSON,
      "device": {"token": "tok_abc", "platform": "ios", "last_used": 1700000000}}),
    (lambda: v2.delete_person_device(PERSON, "tok_abc"),
     {"type": "person", "action": "delete_device", "identifiers": PERSON, "device": {"token": "tok_abc"}}),
    (lambda: v2.merge_persons({"id": 123}, {"email": "old@example.com"}),
     {"type": "person", "action": "merge", "primary": {"id": 123}, "secondary": {"email": "old@example.com"}}),
    (lambda: v2.add_person_relationships(PERSON, [{"identifiers": ACME, "relationship_attributes": {"r": 1}}]),
     {"type": "person", "action": "add_relationships", "identifiers": PERSON,
      "cio_relationships": [{"identifiers": ACME, "relationship_attributes": {"r": 1}}]}),
    (lambda: v2.delete_person_relationships(PERSON, [{"identifiers": ACME}]),
     {"type": "person", "action": "delete_relationships", "identifiers": PERSON,
      "cio_relationships": [{"identifiers": ACME}]}),
    (lambda: v2.identify_object(ACME, name="Acme Corp", industry="Software"),
     {"type": "object", "action": "identify", "identifiers": ACME,
      "attributes": {"name": "Acme Corp", "industry": "Software"}}),
    (lambda: v2.identify_object({"cio_object_id": "x1"}, relationships=[{"identifiers": {"id": 1}}]),
     {"type": "object", "action": "identify", "identifiers": {"cio_object_id": "x1"}, "attributes": {},
      "cio_relationships": [{"identifiers": {"id": 1}}]}),
    (lambda: v2.delete_object(ACME), {"type": "object", "action": "delete", "identifiers": ACME}),
    (lambda: v2.track_object_event(ACME, "plan_changed"),
     {"type": "object", "action": "event", "identifiers": ACME, "name": "plan_changed", "attributes": {}}),
    (lambda: v2.add_object_relationships(ACME, [{"identifiers": {"id": 123}}, {"identifiers": {"id": 456}}]),
     {"type": "object", "action": "add_relationships", "identifiers": ACME,
      "cio_relationships": [{"identifiers": {"id": 123}}, {"identifiers": {"id": 456}}]}),
    (lambda: v2.delete_object_relationships(ACME, [{"identifiers": {"email": "a@b.co"}}]),
     {"type": "object", "action": "delete_relationships", "identifiers": ACME,
      "cio_relationships": [{"identifiers": {"email": "a@b.co"}}]}),
]


@pytest.mark.parametrize("build, expected", BUILT)
def test_builders_make_the_documented_operation(build, expected: Dict[str, Any]) -> None:
    """Each builder returns the operation dict async-customerio would send (plus id/timestamp extras)."""
    assert build() == expected
    assert v2.operation_problem(build()) is None


def test_every_builder_is_listed() -> None:
    """BUILDERS has every builder of the module, by name."""
    assert set(v2.BUILDERS) == {
        "identify_person", "delete_person", "suppress_person", "unsuppress_person", "track_person_event",
        "person_pageview", "person_screen", "add_person_device", "delete_person_device", "merge_persons",
        "add_person_relationships", "delete_person_relationships", "identify_object", "delete_object",
        "track_object_event", "add_object_relationships", "delete_object_relationships",
    }


@pytest.mark.parametrize(
    "build, text, field",
    [
        (lambda: v2.identify_person({}), "identify_person: identifiers cannot be blank", "identifiers"),
        (lambda: v2.identify_person(None), "identify_person: identifiers cannot be blank", "identifiers"),
        (lambda: v2.identify_person({"id": ""}), "identifiers.id cannot be blank", "identifiers.id"),
        (lambda: v2.identify_person({"phone": "1"}), "not a person identifier", "identifiers.phone"),
        (lambda: v2.identify_person({"id": True}), "must be a string or an integer", "identifiers.id"),
        (lambda: v2.identify_person(PERSON, attributes=[1]), "attributes must be a dict", "attributes"),
        (lambda: v2.delete_person({"email": 5}), "identifiers.email must be a string", "identifiers.email"),
        (lambda: v2.track_person_event(PERSON, ""), "track_person_event: name cannot be blank", "name"),
        (lambda: v2.track_person_event(PERSON, "e", id=""), "id cannot be blank", "id"),
        (lambda: v2.track_person_event(PERSON, "e", timestamp=-1), "timestamp must be Unix seconds", "timestamp"),
        (lambda: v2.person_pageview(PERSON, None), "person_pageview: name cannot be blank", "name"),
        (lambda: v2.person_screen(PERSON, 5), "name must be a string", "name"),
        (lambda: v2.add_person_device(PERSON, "", "ios"), "device.token cannot be blank", "device.token"),
        (lambda: v2.add_person_device(PERSON, "t", ""), "platform cannot be blank", "device.platform"),
        (lambda: v2.delete_person_device({}, "t"), "identifiers cannot be blank", "identifiers"),
        (lambda: v2.merge_persons({}, {"id": 1}), "merge_persons: primary cannot be blank", "primary"),
        (lambda: v2.merge_persons({"id": 1}, None), "merge_persons: secondary cannot be blank", "secondary"),
        (lambda: v2.add_person_relationships(PERSON, []), "cio_relationships cannot be blank", "cio_relationships"),
        (lambda: v2.add_person_relationships(PERSON, [{"identifiers": {"id": 1}}]),
         "not an object identifier", "cio_relationships[0].identifiers.id"),
        (lambda: v2.add_object_relationships(ACME, [{"identifiers": ACME}]),
         "not a person identifier", "cio_relationships[0].identifiers.object_type_id"),
        (lambda: v2.add_object_relationships(ACME, ["x"]), "must be an object", "cio_relationships[0]"),
        (lambda: v2.delete_object({"object_type_id": "1"}), "identifiers.object_id cannot be blank",
         "identifiers.object_id"),
        (lambda: v2.identify_object({"cio_object_id": "a", "object_id": "b"}), "must be given alone", "identifiers"),
        (lambda: v2.track_object_event(ACME, ""), "name cannot be blank", "name"),
    ],
)
def test_builders_validate(build, text: str, field: str) -> None:
    """Blank or malformed arguments raise CustomerIOValidationError naming the builder and the field."""
    with pytest.raises(CustomerIOValidationError, match=text.replace("[", r"\[").replace("]", r"\]")) as info:
        build()
    assert info.value.field == field
    assert isinstance(info.value, CustomerIOException) and isinstance(info.value, InvalidMessageError)


@pytest.mark.parametrize(
    "op, reason, field",
    [
        ({"type": "person", "action": "identify", "identifiers": {"id": "1"}}, None, None),
        ({"type": "delivery", "action": "event", "identifiers": {"id": "d1"}, "name": "opened"}, None, None),
        ({"type": "object", "action": "identify_anonymous", "identifiers": ACME,
          "cio_relationships": [{"identifiers": {"anonymous_id": "a1"}}]}, None, None),
        ({"type": "object", "action": "identify_anonymous", "identifiers": ACME,
          "cio_relationships": [{"identifiers": {"id": "1"}}]}, "invalid", "cio_relationships[0].identifiers"),
        ({"action": "identify"}, "required", "type"),
        ({"type": "person"}, "required", "action"),
        ({"type": "person", "action": "fly", "identifiers": {"id": "1"}}, "invalid", "action"),
        ({"type": "delivery", "action": "event", "identifiers": {"email": "x"}, "name": "o"}, "invalid",
         "identifiers"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "1"}, "attributes": "x"}, "invalid",
         "attributes"),
        ({"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": "e", "timestamp": True},
         "invalid", "timestamp"),
        ({"type": "person", "action": "add_device", "identifiers": {"id": "1"}, "device": "tok"}, "invalid",
         "device"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "1"},
          "cio_relationships": [{"identifiers": ACME, "relationship_attributes": [1]}]}, "invalid",
         "cio_relationships[0].relationship_attributes"),
    ],
)
def test_operation_problem(op: Dict[str, Any], reason: Optional[str], field: Optional[str]) -> None:
    """The shape check returns None for a valid operation, else the reason and the field."""
    problem = v2.operation_problem(op)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and (problem.reason, problem.field) == (reason, field)


def test_sanitize_copies_and_converts() -> None:
    """sanitize converts datetimes and NaN at any depth and never changes the caller's values."""
    original = {"a": [dt.datetime(1970, 1, 1, 0, 0, 5), {"b": float("nan")}], "c": (1, 2), "d": dt.date(2020, 1, 1)}
    out = v2.sanitize(original)
    assert out == {"a": [5, {"b": None}], "c": [1, 2], "d": dt.date(2020, 1, 1)}
    assert isinstance(original["a"][0], dt.datetime)


# -- the collector's routes, spoken to directly ---------------------------------------------------


def post(c: Collector, path: str, data: Any, *, auth: Any = (SITE, KEY), gzipped: bool = False,
         method: str = "POST", headers: Optional[Dict[str, str]] = None) -> requests.Response:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        raw = gzip.compress(raw)
        hdrs["Content-Encoding"] = "gzip"
    return requests.request(method, c.url + path, data=raw, headers=hdrs, auth=auth, timeout=5)


def ident(i: int) -> Dict[str, Any]:
    return {"type": "person", "action": "identify", "identifiers": {"id": str(i)}, "attributes": {"n": i}}


def test_collector_batch_207_stores_the_good_items(collector: Collector) -> None:
    """Bad items get a 207 with batch_index, reason, field, message; the good ones are stored."""
    items: List[Any] = [ident(0), {"type": "person", "action": "event", "identifiers": {"id": "1"}}, ident(2),
                        {"type": "object", "action": "identify", "identifiers": {"object_id": "x"}}, "junk",
                        {"type": "person", "action": "identify", "identifiers": {"id": "5"},
                         "attributes": {"pad": "x" * 33_000}}]
    r = post(collector, "/api/v2/batch", {"batch": items})
    assert r.status_code == 207
    errors = r.json()["errors"]
    assert [(e["batch_index"], e["reason"], e.get("field")) for e in errors] == [
        (1, "required", "name"), (3, "invalid", "identifiers"), (4, "invalid", None), (5, "invalid", None)]
    assert "over the 32768-byte limit" in errors[3]["message"]
    store = collector.track_api
    assert store.operations == [ident(0), ident(2)]
    assert [a.batch_index for a in store.accepted] == [0, 2]
    assert store.item_errors[0]["request"] == 0 and len(store.item_errors) == 4
    assert store.requests[0].status == 207 and store.requests[0].stored == 2


def test_collector_gzip_and_records(collector: Collector) -> None:
    """A gzipped batch is accepted and recorded with its site id, sizes and request."""
    body = {"batch": [ident(i) for i in range(20)]}
    r = post(collector, "/api/v2/batch", body, gzipped=True)
    assert r.status_code == 200 and r.json() == {}
    [request] = collector.track_api.requests
    assert request.raw_size == len(json.dumps(body).encode()) and request.compressed_size < request.raw_size
    accepted = collector.track_api.accepted
    assert len(accepted) == 20 and all(a.gzipped and a.site_id == SITE and a.request == 0 for a in accepted)
    assert collector.request_log[0].stored and collector.request_log[0].messages == 20


@pytest.mark.parametrize("auth", [None, ("", KEY), (SITE, ""), ("other", KEY)])
def test_collector_401(collector: Collector, auth: Any) -> None:
    """No auth, a blank half, or (once a pair is allowed) an unknown pair: 401, nothing stored."""
    collector.track_api.allow(SITE, KEY)
    r = post(collector, "/api/v2/batch", {"batch": [ident(0)]}, auth=auth)
    assert r.status_code == 401 and r.json()["errors"][0]["reason"] == "unauthorized"
    assert collector.track_api.operations == [] and collector.refused[0].status == 401
    assert post(collector, "/api/v2/batch", {"batch": [ident(0)]}).status_code == 200


def test_collector_refuses_what_the_api_would(collector: Collector) -> None:
    """Over 500,000 bytes: 413; not JSON or a bad gzip: 400; no or empty batch: 400; other encodings: 415."""
    big = {"batch": [ident(0)], "pad": "x" * 500_000}
    assert post(collector, "/api/v2/batch", big).status_code == 413
    assert post(collector, "/api/v2/batch", big, gzipped=True).status_code == 413
    assert post(collector, "/api/v2/batch", b"{not json").status_code == 400
    assert post(collector, "/api/v2/batch", b"\x1f\x8b junk", headers={"Content-Encoding": "gzip"}).status_code == 400
    assert post(collector, "/api/v2/batch", {"items": []}).status_code == 400
    assert post(collector, "/api/v2/batch", {"batch": []}).status_code == 400
    assert post(collector, "/api/v2/batch", {"batch": [ident(0)]}, headers={"Content-Encoding": "br"}).status_code == 415
    assert post(collector, "/api/v2/batch", {"batch": [ident(0)]}, method="GET").status_code == 404
    assert collector.track_api.operations == []


def test_collector_entity_route(collector: Collector) -> None:
    """/api/v2/entity stores one valid operation (200 {}) and refuses a bad one with 400."""
    assert post(collector, "/api/v2/entity", ident(1)).status_code == 200
    r = post(collector, "/api/v2/entity", {"type": "person", "action": "page", "identifiers": {"id": "1"}})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name"
    collector.track_api.reject_when(lambda op: op["identifiers"].get("id") == "9", field="identifiers.id",
                                    message="nope")
    r = post(collector, "/api/v2/entity", ident(9))
    assert r.status_code == 400 and r.json()["errors"][0] == {"reason": "invalid", "field": "identifiers.id",
                                                              "message": "nope"}
    assert collector.track_api.operations == [ident(1)]
    assert [a.endpoint for a in collector.track_api.accepted] == ["entity"]


def test_collector_v1_routes_check_bodies(collector: Collector) -> None:
    """v1 bodies the official clients would never send are refused with 400."""
    assert post(collector, "/api/v1/customers/u1/events", {"data": {}}).status_code == 400
    assert post(collector, "/api/v1/customers/u1/events", {"name": "e", "data": []}).status_code == 400
    assert post(collector, "/api/v1/customers/u1/devices", {"device": {"id": "t"}}, method="PUT").status_code == 400
    assert post(collector, "/api/v1/merge_customers", {"primary": {"id": "1"}}).status_code == 400
    assert post(collector, "/api/v1/merge_customers",
                {"primary": {"phone": "1"}, "secondary": {"id": "2"}}).status_code == 400
    assert post(collector, "/api/v1/customers/u1", [1], method="PUT").status_code == 400
    assert post(collector, "/api/v1/customers/u1", b"", method="DELETE").status_code == 200
    assert [c.action for c in collector.track_api.v1_calls] == ["delete"]


def test_collector_faults_apply_to_track_routes(collector: Collector) -> None:
    """fail_next and drop_next hit the Track API routes; reset() gives a fresh store."""
    collector.fail_next(1, status=503, retry_after=2)
    r = post(collector, "/api/v2/batch", {"batch": [ident(0)]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    collector.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        post(collector, "/api/v1/customers/u1", {}, method="PUT")
    assert collector.track_api.operations == [] and collector.track_api.v1_calls == []
    assert [r.status for r in collector.request_log] == [503, 0]
    post(collector, "/api/v2/batch", {"batch": [ident(0)]})
    old = collector.track_api
    collector.reset()
    assert collector.track_api is not old and collector.track_api.operations == []


def test_collector_wait_for_and_by_action(collector: Collector) -> None:
    """wait_for returns once enough operations arrived; by_action counts them."""
    post(collector, "/api/v2/batch", {"batch": [ident(0), ident(1)]})
    post(collector, "/api/v1/customers/u1/suppress", {})
    assert collector.track_api.wait_for(2, timeout=1)
    assert not collector.track_api.wait_for(3, timeout=0.05)
    assert collector.track_api.by_action() == {"person/identify": 2, "v1/suppress": 1}

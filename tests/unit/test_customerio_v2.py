"""The v2 operation builders and their shape checks.

The tests of this subject that need neither network nor processes; the others are in ``tests/integration/test_customerio_v2.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Optional

import pytest
from analytics.errors import InvalidMessageError
from customerio import CustomerIOException, CustomerIOValidationError, v2


SITE, KEY = "site-v2", "key-v2"


PERSON = {"id": 123}


ACME = {"object_type_id": "1", "object_id": "acme"}


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

"""Message building and validation through Client(send=False) and the module facade (no network)."""

from __future__ import annotations

import datetime as dt
import enum
import os
import time
import types
import uuid
from collections.abc import Mapping

import pytest

import analytics
from analytics import Client, ConfigurationError, InvalidMessageError, MessageTooLargeError, encoding, messages
from analytics.messages import as_sent


LIBRARY = {"name": "cdp-relay", "version": analytics.VERSION}


TS = "2020-01-02T03:04:05.678+00:00"


MID = "11111111-2222-4333-8444-555555555555"


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.fixture
def client() -> Client:
    return Client(send=False)


@pytest.fixture
def india_local_time(local_zone):
    """Run with the local zone at UTC+05:30, so local time and UTC differ."""
    local_zone("IST-5:30")


def is_uuid4(text: str) -> bool:
    value = uuid.UUID(text)
    return str(value) == text and value.version == 4 and value.variant == uuid.RFC_4122


def strip(msg: dict) -> dict:
    """The fields of a returned message that are sent, without the generated ones (checked separately)."""
    assert is_uuid4(msg["messageId"])
    assert msg["context"]["library"] == LIBRARY
    return {k: v for k, v in as_sent(msg).items() if k not in ("messageId", "timestamp")}


@pytest.mark.parametrize(
    "call, args, kwargs, expected",
    [
        ("identify", ("u1", {"plan": "pro"}), {},
         {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}),
        ("identify", (), {"anonymous_id": 42},
         {"type": "identify", "anonymousId": "42", "traits": {}}),
        ("track", (7, "Bought", {"sku": "a"}), {},
         {"type": "track", "userId": "7", "event": "Bought", "properties": {"sku": "a"}}),
        ("track", (), {"anonymous_id": UID, "event": "Viewed"},
         {"type": "track", "anonymousId": str(UID), "event": "Viewed", "properties": {}}),
        ("page", ("u1", "Docs", "Home", {"url": "/"}), {},
         {"type": "page", "userId": "u1", "category": "Docs", "name": "Home", "properties": {"url": "/"}}),
        ("page", ("u1",), {},
         {"type": "page", "userId": "u1", "properties": {}}),
        ("screen", (UID, "Onboarding", "Welcome"), {},
         {"type": "screen", "userId": str(UID), "category": "Onboarding", "name": "Welcome", "properties": {}}),
        ("group", ("u1", "acme", {"name": "Acme"}), {},
         {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}}),
        ("group", (None, 99), {"object_type_id": 3},
         {"type": "group", "groupId": "99", "objectTypeId": "3", "traits": {}}),
        ("alias", ("anon-1", 1234), {},
         {"type": "alias", "previousId": "anon-1", "userId": "1234"}),
    ],
    ids=["identify", "identify-anon-int", "track", "track-anon-uuid", "page", "page-bare", "screen",
         "group", "group-object-type", "alias"],
)
def test_call_payload_fields(client, call, args, kwargs, expected):
    """Each call builds exactly its Segment-spec fields, ids stringified, traits/properties default {}."""
    ok, msg = getattr(client, call)(*args, **kwargs)
    assert ok is True
    assert strip(msg) == {**expected, "context": {"library": LIBRARY}}


def test_group_object_type_id_must_be_whole_number(client):
    """group(object_type_id='abc') raises InvalidMessageError on objectTypeId."""
    with pytest.raises(InvalidMessageError) as info:
        client.group("u1", "acme", object_type_id="abc")
    assert info.value.field == "objectTypeId"


@pytest.mark.parametrize("value", ["²", "٣"])
def test_group_object_type_id_refuses_non_ascii_digits(client, value):
    """objectTypeId made of Unicode digit characters (not 0-9) is refused."""
    with pytest.raises(InvalidMessageError):
        client.group("u1", "acme", object_type_id=value)


def test_context_library_set_and_caller_context_not_mutated(client):
    """context.library is the library's; the caller's keys are kept and the caller's dict is not changed."""
    ctx = {"ip": "10.0.0.1", "locale": "pt-PT"}
    _, msg = client.track("u1", "E", context=ctx)
    assert msg["context"] == {"ip": "10.0.0.1", "locale": "pt-PT", "library": LIBRARY}
    assert ctx == {"ip": "10.0.0.1", "locale": "pt-PT"}


def test_integrations_passed_through(client):
    """The integrations dict is sent as given."""
    integrations = {"All": False, "Mixpanel": True}
    _, msg = client.track("u1", "E", integrations=integrations)
    assert msg["integrations"] == {"All": False, "Mixpanel": True}


@pytest.mark.parametrize("given, expected", [(MID, MID), (UID, str(UID)), (12, "12")])
def test_message_id_given_is_kept_as_string(client, given, expected):
    """A caller's message_id is kept, stringified; otherwise a fresh uuid4 is generated."""
    assert client.identify("u1", message_id=given)[1]["messageId"] == expected
    assert is_uuid4(client.identify("u1")[1]["messageId"])


def test_page_positional_order_from_docs(client):
    """page(uid, category, name, properties, context) puts each positional argument in its field."""
    _, msg = client.page("uid", "Retail Page", "shoes", {"url": "https://example.com/p"}, {"ip": "1.2.3.4"})
    assert (msg["category"], msg["name"]) == ("Retail Page", "shoes")
    assert msg["properties"] == {"url": "https://example.com/p"}
    assert msg["context"] == {"ip": "1.2.3.4", "library": LIBRARY}


def test_track_positional_order(client):
    """track(uid, event, properties, context, timestamp, anonymous_id, integrations, message_id) positionally."""
    _, msg = client.track("u1", "Ev", {"p": 1}, {"ip": "x"}, TS, "anon", {"All": False}, MID)
    assert msg == {
        "type": "track",
        "userId": "u1",
        "anonymousId": "anon",
        "event": "Ev",
        "properties": {"p": 1},
        "context": {"ip": "x", "library": LIBRARY},
        "integrations": {"All": False},
        "timestamp": TS,
        "messageId": MID,
    }


def test_default_timestamp_is_now_utc_with_milliseconds(client, monkeypatch):
    """Without a timestamp the message gets the current time, UTC, ISO with milliseconds and +00:00."""
    fake = types.SimpleNamespace(time=lambda: 1_700_000_000.625, strftime=time.strftime, gmtime=time.gmtime)
    monkeypatch.setattr(messages, "time", fake)
    assert client.track("u1", "E")[1]["timestamp"] == "2023-11-14T22:13:20.625+00:00"


@pytest.mark.parametrize(
    "value, expected",
    [
        (dt.datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
         "2020-01-02T03:04:05.678-07:00"),
        (dt.datetime(2015, 1, 5, 12, 30), "2015-01-05T12:30:00.000+00:00"),
        (dt.date(2020, 1, 2), "2020-01-02T00:00:00.000+00:00"),
        ("2012-10-17T18:58:57.911Z", "2012-10-17T18:58:57.911+00:00"),
        ("2016-06-06T01:46:33.939388+07:00", "2016-06-06T01:46:33.939+07:00"),
    ],
    ids=["aware", "naive-far-is-utc", "date-midnight-utc", "iso-z", "iso-offset"],
)
def test_timestamp_normalised(client, india_local_time, value, expected):
    """Aware keeps its offset, naive far from now is UTC, date is midnight UTC, ISO strings are parsed."""
    assert client.track("u1", "E", timestamp=value)[1]["timestamp"] == expected


def test_naive_timestamp_near_now_is_local_time(client, india_local_time):
    """A naive datetime within 5 s of now is taken as local time, as the peers do."""
    now = dt.datetime.now()
    expected = now.astimezone().isoformat(timespec="milliseconds")  # local time, with its offset
    assert expected.endswith("+05:30")
    assert client.track("u1", "E", timestamp=now)[1]["timestamp"] == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2020", "2020-01-01T00:00:00.000+00:00"),
        ("2020-03", "2020-03-01T00:00:00.000+00:00"),
        ("2020-060", "2020-02-29T00:00:00.000+00:00"),
        ("2020-060T10:00Z", "2020-02-29T10:00:00.000+00:00"),
        ("2020-12-31T24:00:00+01:00", "2021-01-01T00:00:00.000+01:00"),
        ("2020-01-02T03:04:05.5z", "2020-01-02T03:04:05.500+00:00"),
        ("2020-W01-2T01:02:03+0530", "2019-12-31T01:02:03.000+05:30"),
    ],
)
def test_iso8601_forms(client, text, expected):
    """The ISO-8601 forms beyond fromisoformat's (reduced precision, ordinal dates, 24:00, a lowercase z) parse
    as before (python-dateutil is used only before Python 3.11)."""
    assert client.track("u1", "E", timestamp=text)[1]["timestamp"] == expected


@pytest.mark.parametrize("text", ["2021-366", "2020-000", "2020-01-02T24:01", "202001", " 2020-01-02"])
def test_iso8601_forms_refused(client, text):
    with pytest.raises(InvalidMessageError):
        client.track("u1", "E", timestamp=text)


@pytest.mark.parametrize("value", ["not a date", "2020-13-45", 1_700_000_000, 12.5, ["2020-01-01"]])
def test_bad_timestamp_raises(client, value):
    """A timestamp that is not a datetime, date or ISO-8601 string raises InvalidMessageError on timestamp."""
    with pytest.raises(InvalidMessageError) as info:
        client.track("u1", "E", timestamp=value)
    assert info.value.field == "timestamp"


@pytest.mark.parametrize(
    "call, args, kwargs, field",
    [
        ("track", (None, "E"), {}, "userId"),
        ("track", ("u1",), {}, "event"),
        ("track", ("u1", ""), {}, "event"),
        ("track", ("u1", 5), {}, "event"),
        ("track", ("", "E"), {}, "userId"),
        ("track", (True, "E"), {}, "userId"),
        ("track", (None, "E"), {"anonymous_id": False}, "anonymousId"),
        ("identify", (None,), {}, "userId"),
        ("track", ("u1", "E", ["a"]), {}, "properties"),
        ("track", ("u1", "E", "a=1"), {}, "properties"),
        ("identify", ("u1", ["a"]), {}, "traits"),
        ("group", ("u1", "g", "name"), {}, "traits"),
        ("track", ("u1", "E"), {"context": ["ip"]}, "context"),
        ("track", ("u1", "E"), {"integrations": "All"}, "integrations"),
        ("group", ("u1",), {}, "groupId"),
        ("alias", (None, "u1"), {}, "previousId"),
        ("alias", ("anon",), {}, "userId"),
        ("page", ("u1", None, 42), {}, "name"),
        ("screen", ("u1", 3.5, "Home"), {}, "category"),
    ],
    ids=["track-no-id", "track-no-event", "empty-event", "event-not-str", "empty-user-id", "bool-user-id",
         "bool-anon-id", "identify-no-id", "properties-list", "properties-str", "traits-list", "traits-str",
         "context-list", "integrations-str", "group-no-group-id", "alias-no-previous", "alias-no-user",
         "page-name-not-str", "screen-category-not-str"],
)
def test_invalid_arguments_raise_invalid_message_error(client, call, args, kwargs, field):
    """Bad arguments raise InvalidMessageError with .field naming the wire field; it is also a
    ValueError and an AssertionError (what the official SDK raises)."""
    with pytest.raises(InvalidMessageError) as info:
        getattr(client, call)(*args, **kwargs)
    assert info.value.field == field
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)


def test_message_size_limit_is_32768_encoded_bytes(client):
    """A message of exactly 32,768 encoded bytes is accepted; one byte more raises MessageTooLargeError."""

    def track(pad: int):
        return client.track("u1", "E", {"pad": "x" * pad}, timestamp=TS, message_id=MID)

    pad = 32768 - len(encoding.dumps(as_sent(track(0)[1])))  # the bytes sent: without the null keys
    ok, msg = track(pad)
    assert ok is True
    assert len(encoding.dumps(as_sent(msg))) == 32768
    with pytest.raises(MessageTooLargeError) as info:
        track(pad + 1)
    assert (info.value.size, info.value.limit) == (32769, 32768)
    assert isinstance(info.value, InvalidMessageError)


def test_facade_with_send_false_returns_message():
    """analytics.send = False: module calls validate and return (True, msg) without a write key."""
    analytics.send = False
    ok, msg = analytics.track("u1", "Signed Up", {"plan": "pro"})
    assert ok is True
    assert strip(msg) == {
        "type": "track", "userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"},
        "context": {"library": LIBRARY},
    }
    with pytest.raises(InvalidMessageError) as info:
        analytics.identify(None)
    assert info.value.field == "userId"


def test_facade_setting_checked_on_assignment():
    """analytics.max_queue_size = 'x' raises ConfigurationError at once and leaves the setting unchanged."""
    before = analytics.max_queue_size
    with pytest.raises(ConfigurationError):
        analytics.max_queue_size = "x"
    assert analytics.max_queue_size == before


def test_client_sending_needs_write_key():
    """Client() with send=True and no write_key raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Client()


@pytest.mark.parametrize(
    "option", [{"upload_size": 0}, {"timeout": -1}, {"on_error": 3}, {"proxies": "x"}, {"max_queue_size": "x"}],
    ids=lambda o: next(iter(o)),
)
def test_client_option_checks(option):
    """An option of the wrong type or range raises ConfigurationError (a ValueError and an AssertionError)."""
    with pytest.raises(ConfigurationError) as info:
        Client("k", **option)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)


def test_message_ids_unique_and_uuid4():
    """10,000 ids from new_message_id() are distinct, canonical version-4 UUIDs."""
    ids = [messages.new_message_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(is_uuid4(i) for i in ids)


def test_message_ids_reseed_when_the_pid_changed(monkeypatch):
    """The fallback for a fork that bypassed the at-fork hook: a changed pid reseeds
    from os.urandom before the next id, so the child cannot repeat the parent's sequence."""
    state = messages._rng.getstate()
    expected_without_reseed = messages.new_message_id()
    messages._rng.setstate(state)
    monkeypatch.setattr(messages, "_rng_pid", -1)  # as if this were a child of another process
    reseeded = messages.new_message_id()
    assert messages._rng_pid == os.getpid()
    assert is_uuid4(reseeded)
    assert reseeded != expected_without_reseed


def test_now_iso_is_utc_milliseconds_and_follows_the_clock(monkeypatch):
    """now_iso() text is made once per millisecond and changes with it."""
    clock = [1_700_000_000.1234]
    monkeypatch.setattr(messages.time, "time", lambda: clock[0])
    assert messages.now_iso() == "2023-11-14T22:13:20.123+00:00"
    assert messages.now_iso() == "2023-11-14T22:13:20.123+00:00"
    clock[0] = 1_700_000_000.9999
    assert messages.now_iso() == "2023-11-14T22:13:20.999+00:00"
    clock[0] = 1_700_000_001.0005
    assert messages.now_iso() == "2023-11-14T22:13:21.000+00:00"


class Tier(enum.IntEnum):
    GOLD = 7


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(user_id=10**5000), "userId"),
        (dict(user_id="u", message_id=float("nan")), "messageId"),
        (dict(anonymous_id=float("inf")), "anonymousId"),
        (dict(anonymous_id=float("-inf")), "anonymousId"),
    ],
    ids=["int-too-long-to-print", "nan-message-id", "inf-anonymous-id", "-inf-anonymous-id"],
)
def test_ids_that_cannot_be_written_raise_invalid_message(client, kwargs, field):
    """An id integer over Python's digit limit, and NaN/infinite ids, raise InvalidMessageError naming the
    field (they used to raise a bare ValueError, or send "nan"/"inf")."""
    with pytest.raises(InvalidMessageError) as info:
        client.track(event="e", **kwargs)
    assert info.value.field == field


def test_number_ids_are_written_as_plain_numbers(client):
    """int and float subclasses (IntEnum) are sent as their number on every Python version."""
    _, msg = client.track(Tier.GOLD, "e", anonymous_id=2.5, message_id=Tier.GOLD)
    assert (msg["userId"], msg["anonymousId"], msg["messageId"]) == ("7", "2.5", "7")


class _Unreadable(Mapping):
    def __getitem__(self, key):
        raise KeyError(key)

    def __iter__(self):
        raise RuntimeError("cannot iterate")

    def __len__(self):
        return 1


@pytest.mark.parametrize("arg, field", [("properties", "properties"), ("context", "context")])
def test_mapping_that_cannot_be_read_raises_invalid_message(client, arg, field):
    """A Mapping argument whose iteration raises gives InvalidMessageError naming the field, the
    original exception as the cause."""
    with pytest.raises(InvalidMessageError) as info:
        client.track("u", "e", **{arg: _Unreadable()})
    assert info.value.field == field
    assert isinstance(info.value.__cause__, RuntimeError)

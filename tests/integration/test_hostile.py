"""Property-based hostile-input tests.

Random sequences of calls with random, hostile arguments (odd types, huge
strings, deep nesting, invalid UTF-8, NaN, reference cycles) against one real
client and a real collector on 127.0.0.1, and the same values straight into
the encoder.  The claims checked:

* a call returns ``(True, message)`` or raises one of the documented
  :class:`analytics.InvalidMessageError` classes, never a bare ``TypeError``,
  ``ValueError``, ``RecursionError``, ``UnicodeError``... and never crashes the
  interpreter;
* a call made only of valid arguments succeeds;
* after each sequence ``flush`` settles everything, the consumer is alive, the
  collector refused nothing (size or shape), every accepted message arrived
  exactly as returned, and the stats add up;
* the encoder gives valid strict UTF-8 JSON or ``UnserializableValueError``
  with a path, with the same bytes (or the same error) with and without orjson.

Deterministic (``derandomize=True``) so CI sees the same examples every run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import json
import types
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import analytics
from analytics import Client, RetryPolicy, encoding
from analytics.collector import Collector
from analytics.errors import (
    AnalyticsError,
    InvalidMessageError,
    MessageTooLargeError,
    UnserializableValueError,
)

from ..conftest import WRITE_KEY, Errors


LIMIT = 32_768


#: Exactly these classes may come out of a call (InvalidMessageError itself included).
DOCUMENTED = (InvalidMessageError, UnserializableValueError, MessageTooLargeError)


#: ``InvalidMessageError.field`` is the argument's name on the wire, or None.
WIRE_FIELDS = {
    None, "userId", "anonymousId", "previousId", "groupId", "objectTypeId", "event", "name", "category",
    "properties", "traits", "context", "integrations", "timestamp", "messageId",
}


SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    # Huge strings and deep nesting are built from one drawn integer, but
    # the examples are still slow and large by hypothesis' standards.
    # function_scoped_fixture: the only one is conftest's autouse facade reset,
    # which has nothing to reset between examples (these tests use their own
    # Client, not the module facade).
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Odd(enum.Enum):
    NONE = None
    FLAG = True
    NAN = float("nan")
    PAIR = (1, (2, "x"))
    DAY = dt.date(2024, 5, 17)
    NESTED = Color.RED


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


Pair = collections.namedtuple("Pair", "a b")


class Opaque:
    """An object the encoder knows nothing about."""

    def __repr__(self) -> str:
        return "Opaque()"


class BrokenZone(dt.tzinfo):
    """A tzinfo whose every method raises: isoformat() and utcoffset() blow up."""

    def utcoffset(self, d):
        raise RuntimeError("no offset today")

    def dst(self, d):
        raise RuntimeError("no dst today")

    def tzname(self, d):
        raise RuntimeError("no name today")

    def __repr__(self) -> str:
        return "BrokenZone()"


class BrokenMapping(Mapping):
    """A Mapping that cannot be read."""

    def __getitem__(self, key):
        raise LookupError(key)

    def __iter__(self):
        raise RuntimeError("cannot iterate")

    def __len__(self):
        return 1

    def __repr__(self) -> str:
        return "BrokenMapping()"


class Unorderable:
    """Hashable, but ``<`` raises something that is not a TypeError."""

    def __lt__(self, other):
        raise ArithmeticError("no order")

    def __repr__(self) -> str:
        return "Unorderable()"


def _deep(depth: int, kind: str, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        k = kind if kind != "mixed" else ("list", "dict", "tuple")[i % 3]
        value = [value] if k == "list" else {"k": value} if k == "dict" else (value,)
    return value


def _cycle(kind: str, payload: Any) -> Any:
    if kind == "dict":
        d: Dict[str, Any] = {"payload": payload}
        d["self"] = d
        return d
    if kind == "list":
        items: List[Any] = [payload]
        items.append(items)
        return items
    if kind == "through-tuple":
        inner: List[Any] = [payload]
        t = (inner,)
        inner.append(t)
        return t
    if kind == "fan-out":  # a cycle reachable along many paths
        d = {"payload": payload}
        d["a"] = d
        d["b"] = d
        return [d, d]
    point = Point(payload)  # a dataclass that contains itself
    point.y = point
    return point


def _too_long_int(digits: int) -> int:
    """An integer of about ``abs(digits)`` digits (built lazily: repr() of it raises ValueError)."""
    return (-1 if digits < 0 else 1) * 10 ** abs(digits)


def _colliding(a: Any, b: Any, f: float) -> dict:
    """Keys that become the same strings, next to a float orjson writes its own way."""
    return {1: a, "1": b, True: f, "true": a, None: b, "f": f}


def _generator():
    return (i for i in range(3))


def _named(name: str, strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy`` behind the short repr ``name()``: hypothesis repeats the reprs of the parts
    of a recursive strategy (to megabytes) in its statistics and messages."""

    def draw_from(draw):
        return draw(strategy)

    draw_from.__name__ = draw_from.__qualname__ = name
    return st.composite(draw_from)()


ch = st.characters(blacklist_categories=())  # every code point, lone surrogates and NUL included


scalars = _named("scalars", st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=2**64, max_value=2**300) | st.integers(max_value=-(2**64), min_value=-(2**300)),
    st.sampled_from([5000, -4400, 15000]).map(_too_long_int),  # over Python's 4,300-digit print limit
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-4, max_value=1e-4),  # the floats orjson writes its own way
    st.text(ch, max_size=12),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "\ud83d", "e-mail", "1e-07", "\u2028", "\ufeff"]),
))


try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is in the test environment
    np = None


NUMPY_VALUES = [] if np is None else [
    np.int64(7), np.float64("nan"), np.float32(1.5), np.bool_(True), np.array([[1, 2], [3, 4]]),
    np.array([1.0, np.inf]), np.datetime64("2020-01-01"), np.array([Opaque()], dtype=object),
]


odd = _named("odd", st.one_of(
    st.binary(max_size=8),  # invalid UTF-8 more often than not
    st.binary(max_size=8).map(bytearray),
    st.binary(max_size=8).map(memoryview),
    st.complex_numbers(allow_nan=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("sNaN"), Decimal("-sNaN"), Decimal("NaN"), Decimal("-Infinity"), Decimal("1E+400"),
                     Decimal("1E-400"), Decimal("-0"), Decimal("0.00001")]),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.timezones()),
    st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=23, minutes=59, microseconds=1)))),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.sampled_from(list(Color) + list(Level) + list(Odd)),
    st.just(Pair(1, "b")),
    st.just(Opaque()),
    st.just(object()),
    st.just(len),
    st.just(lambda x: x),
    st.just(Opaque),  # a class
    st.just(json),  # a module
    st.just(Ellipsis),
    st.just(NotImplemented),
    st.builds(_generator),
    st.builds(dt.datetime, st.just(2020), st.just(1), st.just(2), tzinfo=st.builds(BrokenZone)),  # never hashed
    st.builds(BrokenMapping),
    st.just(types.MappingProxyType({"a": 1, 2: "b"})),
    st.just(range(3)),
    st.just(collections.OrderedDict([(1, "a"), ("1", "b")])),
    st.frozensets(st.sampled_from([Unorderable(), 1, "a"]), max_size=3),
    st.sampled_from(NUMPY_VALUES or [None]),
))


huge_strings = _named("huge_strings", st.builds(
    lambda n, c: c * n,
    st.one_of(st.integers(16_300, 16_400), st.integers(32_600, 32_800), st.integers(40_000, 70_000)),
    st.sampled_from(["x", "é", "東", "😀", "\x00", "\ud800", '"', "\\"]),
))


deep = _named("deep", st.builds(
    _deep,
    st.one_of(st.integers(190, 210), st.integers(250, 260), st.integers(1_000, 6_000)),
    st.sampled_from(["list", "dict", "tuple", "mixed"]),
    st.one_of(st.integers(), st.just(float("nan")), st.just(dt.date(2020, 1, 1)), st.just(Opaque())),
))


odd_keys = _named("odd_keys", st.one_of(
    st.text(ch, max_size=4),
    st.integers(-3, 3),
    st.just(2**70),
    st.just(5000).map(_too_long_int),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.sampled_from(["1", "null", "true", "false", "NaN", "1.0", "1.5", "red", "2024-05-17"]),  # collide with others
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.sampled_from(list(Color) + list(Level) + list(Odd)),
    st.binary(max_size=3),
    st.decimals(allow_nan=False),
    st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("1.5")]),
    st.dates(),
    st.uuids(),
    st.frozensets(st.integers(0, 2), max_size=2),
))


hostile = st.recursive(
    st.one_of(scalars, odd, huge_strings, deep),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(ch, max_size=6), inner, max_size=4),
        st.dictionaries(odd_keys, inner, max_size=4),
        st.frozensets(st.one_of(scalars.filter(lambda v: v == v), st.tuples(st.integers(), st.text())), max_size=4),
        st.builds(Point, inner, inner),
        st.builds(_colliding, inner, inner, st.floats(min_value=-1e-4, max_value=1e-4)),
        st.builds(_cycle, st.sampled_from(["dict", "list", "through-tuple", "fan-out", "dataclass"]), inner),
    ),
    max_leaves=8,
)


def _no_constants(name: str) -> Any:
    raise AssertionError(f"output contains the non-JSON constant {name}")


def _encode(dumps, value: Any) -> Tuple[str, Any]:
    """("ok", bytes) or ("error", path); anything else raised fails the test."""
    try:
        return "ok", dumps(value)
    except UnserializableValueError as exc:
        return "error", exc.path


@settings(max_examples=1000, **SETTINGS)
@given(value=hostile)
def test_encoder_gives_strict_json_or_a_path_the_same_with_and_without_orjson(value):
    """dumps gives strict UTF-8 JSON equal to normalize(), or UnserializableValueError with a path under
    properties.v; orjson (when installed) and the stdlib path give the same bytes or the same error."""
    message = {"type": "track", "properties": {"v": value}}
    fast = _encode(encoding.dumps, message)
    std = _encode(encoding._std_only_dumps, message)
    assert fast == std

    outcome, result = fast
    event(f"encoder: {outcome}")
    if outcome == "error":
        assert result == "properties.v" or result.startswith(("properties.v.", "properties.v["))
        return
    assert isinstance(result, bytes)
    text = result.decode("utf-8")  # strict: never invalid UTF-8
    decoded = json.loads(text, parse_constant=_no_constants)
    assert decoded == encoding.normalize(message)


@settings(max_examples=300, **SETTINGS)
@given(key=odd_keys, other=odd_keys)
def test_dict_keys_become_unique_strings_on_both_paths(key, other):
    """Odd dict keys become strings or raise with the dict's path; when two keys become the same string
    the last value wins, and both paths give the same bytes."""
    message = {"properties": {key: "first", other: "second"}}
    fast = _encode(encoding.dumps, message)
    assert fast == _encode(encoding._std_only_dumps, message)
    if fast[0] == "error":
        assert fast[1] == "properties"
        return
    pairs = json.loads(fast[1], object_pairs_hook=lambda items: items)[0][1]
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), "duplicate keys in the output"
    if len(keys) == 1 and len(message["properties"]) == 2:  # the two keys collided: the last one wins
        assert pairs[0][1] == "second"


ids = st.one_of(
    st.text(ch, min_size=1, max_size=16),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.uuids(),
)


names = st.text(ch, min_size=1, max_size=16)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(ch, max_size=10),
              st.datetimes(), st.uuids(), st.decimals(allow_nan=False, allow_infinity=False, places=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


json_dicts = st.dictionaries(st.text(ch, max_size=8), json_values, max_size=4)


timestamps = st.one_of(
    st.datetimes(min_value=dt.datetime(1900, 1, 1)),
    st.datetimes(timezones=st.timezones()),
    st.dates(),
    st.datetimes(timezones=st.just(dt.timezone.utc)).map(lambda d: d.isoformat()),
)


VALID: Dict[str, Any] = {
    "user_id": ids,
    "anonymous_id": ids,
    "previous_id": ids,
    "group_id": ids,
    "message_id": ids,
    "event": names,
    "name": names,
    "category": names,
    "properties": json_dicts,
    "traits": json_dicts,
    "context": json_dicts,
    "integrations": st.dictionaries(st.text(max_size=8), st.booleans(), max_size=3),
    "timestamp": timestamps,
    "object_type_id": st.one_of(st.integers(0, 99), st.integers(0, 99).map(str)),
}


PARAMS = {
    "identify": ("user_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"),
    "track": ("user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations",
              "message_id"),
    "page": ("user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id",
             "integrations", "message_id"),
    "screen": ("user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id",
               "integrations", "message_id"),
    "group": ("user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations",
              "message_id", "object_type_id"),
    "alias": ("previous_id", "user_id", "context", "timestamp", "integrations", "message_id"),
}


#: What a call needs to be valid: all of the first group, and one of each later group.
REQUIRED = {
    "identify": [("user_id", "anonymous_id")],
    "track": [("user_id", "anonymous_id"), ("event",)],
    "page": [("user_id", "anonymous_id")],
    "screen": [("user_id", "anonymous_id")],
    "group": [("group_id",)],
    "alias": [("previous_id",), ("user_id",)],
}


# A hostile argument: anything at all, including dicts full of hostile values.
hostile_args = st.one_of(hostile, st.dictionaries(st.text(max_size=6), hostile, max_size=3))


@st.composite
def calls(draw) -> Tuple[str, Dict[str, Any], bool]:
    """(method, kwargs, expected_valid).

    A quarter of the calls are fully valid, a quarter valid but for one
    hostile argument, a quarter draw every argument as missing, valid or
    hostile.  The last quarter are ("fill", kwargs, delta): a valid track
    padded to ``delta`` bytes from the 32 KB limit.
    """
    mode = draw(st.sampled_from(["valid", "one-hostile", "chaos", "fill"]))
    if mode == "fill":  # a track padded to the 32 KB limit, give or take a byte
        kwargs = {name: draw(VALID[name]) for name in ("user_id", "event", "properties", "context", "timestamp")}
        kwargs["message_id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
        return "fill", kwargs, draw(st.sampled_from([-1, 0, 0, 1]))
    method = draw(st.sampled_from(sorted(PARAMS)))
    params = PARAMS[method]
    required = {group[0] if len(group) == 1 else draw(st.sampled_from(group)) for group in REQUIRED[method]}
    bad = draw(st.sampled_from(params)) if mode == "one-hostile" else None
    kwargs: Dict[str, Any] = {}
    valid = True
    for param in params:
        if mode == "chaos":
            choice = draw(st.sampled_from(["missing", "valid", "hostile"]))
        elif param == bad:
            choice = "hostile"
        elif param in required:
            choice = "valid"
        else:
            choice = draw(st.sampled_from(["missing", "valid"]))
        if choice == "missing":
            continue
        if choice == "valid":
            kwargs[param] = draw(VALID[param])
        else:
            kwargs[param] = draw(hostile_args)
            valid = False
    for group in REQUIRED[method]:
        if not any(p in kwargs for p in group):
            valid = False
    return method, kwargs, valid


@pytest.fixture(scope="module")
def shared():
    """One collector and one client for every example of the sequence test."""
    errors = Errors()
    with Collector(write_keys={WRITE_KEY}) as collector:
        client = Client(
            WRITE_KEY,
            host=collector.url,
            on_error=errors,
            upload_interval=0.05,
            retry_policy=RetryPolicy(max_retries=3, max_time=10.0, base=0.01, cap=0.05),
        )
        try:
            client.track("warm-up", "started")  # the consumer thread starts with the first message
            assert client.flush(timeout=10) == 0 and client.consumers[0].is_alive()
            yield collector, client, errors
        finally:
            client.shutdown(timeout=10)


def _fill(kwargs: Dict[str, Any], delta: int) -> Dict[str, Any]:
    """``kwargs`` for track with a "pad" property making the message ``LIMIT + delta`` bytes encoded."""
    properties = dict(kwargs["properties"], pad="")
    size = len(encoding.dumps(analytics.messages.build("track", **dict(kwargs, properties=properties))))
    properties["pad"] = "x" * max(0, LIMIT - size + delta)
    return dict(kwargs, properties=properties)


def _canonical(message: Any) -> str:
    return json.dumps(message, sort_keys=True)


@pytest.mark.parametrize("backend", ["default", "json"])
@settings(max_examples=100, **SETTINGS)
@given(sequence=st.lists(calls(), min_size=1, max_size=12))
def test_random_hostile_call_sequences_against_one_client(shared, backend, sequence):
    """Every call returns (True, msg) or raises a documented InvalidMessageError class (valid calls always
    succeed); then flush settles everything, the consumer is alive, the collector refused nothing and got
    exactly the accepted messages, and accepted == delivered + failed + dropped + pending."""
    collector, client, errors = shared
    client.flush(timeout=30)  # what an earlier, failed example left behind is not this one's
    seen_before = len(collector.messages)
    refused_before = len(collector.refused)
    accepted: List[dict] = []

    with pytest.MonkeyPatch.context() as mp:
        if backend == "json":
            mp.setattr(encoding, "_fast", encoding._std_dumps)
        for method, kwargs, valid in sequence:
            if method == "fill":
                method, kwargs, valid = "track", _fill(kwargs, delta=valid), valid <= 0
            try:
                ok, msg = getattr(client, method)(**kwargs)
            except AnalyticsError as exc:
                event(f"call: {type(exc).__name__}")
                assert type(exc) in DOCUMENTED, f"{method}: {type(exc).__name__}: {exc}"
                assert not valid, f"valid call {method}({kwargs!r}) raised {exc!r}"
                assert exc.field in WIRE_FIELDS, exc.field
                if isinstance(exc, UnserializableValueError):
                    assert exc.path and exc.field in ("properties", "traits", "context", "integrations")
                if isinstance(exc, MessageTooLargeError):
                    assert exc.size > LIMIT == exc.limit
                continue
            properties = kwargs.get("properties")
            if type(properties) is dict and "pad" in properties:
                event("call: filled to the limit")
            assert ok is True, (method, msg)
            event("call: accepted" + (" (valid arguments)" if valid else " (hostile arguments)"))
            data = encoding.dumps(analytics.messages.as_sent(msg))  # what is sent: without the null keys
            assert len(data) <= LIMIT
            assert msg["type"] == method
            accepted.append(json.loads(data, parse_constant=_no_constants))

    assert client.flush(timeout=30) == 0
    assert client.consumers[0].is_alive()
    assert collector.refused[refused_before:] == []
    assert errors.calls == []

    arrived = collector.messages[seen_before:]
    assert collections.Counter(_canonical(m) for m in arrived) == collections.Counter(
        _canonical(m) for m in accepted
    )

    stats = client.stats()
    lost = sum(stats["failed"].values()) + sum(stats["dropped"].values())
    assert stats["accepted"] == stats["delivered"] + lost + stats["pending"]
    assert lost == 0 and stats["pending"] == 0
    assert stats["delivered"] == len(collector.messages)


@settings(max_examples=15, **SETTINGS)
@given(
    sizes=st.lists(st.integers(LIMIT - 2_000, LIMIT), min_size=16, max_size=40),
    pads=st.lists(st.sampled_from(["x", "é", "東", "😀", "\x00", '"']), min_size=1, max_size=3),
    gzip=st.booleans(),
)
def test_bodies_of_near_limit_messages_stay_under_500_kb(sizes, pads, gzip):
    """Dozens of messages of 30-32 KB (multi-byte and escaped text) queued at once and flushed: every
    request body is at most 500,000 bytes, the collector refuses nothing, and all of them arrive."""
    with Collector(write_keys={WRITE_KEY}) as collector:
        errors = Errors()
        with Client(WRITE_KEY, host=collector.url, on_error=errors, upload_interval=30, gzip=gzip) as client:
            ids = []
            for i, size in enumerate(sizes):
                pad = pads[i % len(pads)]
                props = {"pad": ""}
                kwargs = dict(properties=props, message_id=f"near-{i:03d}", timestamp="2024-05-17T10:00:00Z")
                base = len(encoding.dumps(analytics.messages.build("track", user_id="u", event="e", **kwargs)))
                props["pad"] = pad * ((size - base) // len(encoding.dumps(pad)[1:-1]))
                ok, msg = client.track("u", "e", **kwargs)
                assert ok and len(encoding.dumps(analytics.messages.as_sent(msg))) <= LIMIT
                ids.append(msg["messageId"])
            assert client.flush(timeout=30) == 0
        assert collector.refused == [] and errors.calls == []
        assert sorted(collector.unique_ids) == ids
        assert max(batch.raw_size for batch in collector.batches) <= 500_000
        assert len(collector.batches) >= sum(sizes) // 500_000 + 1


def _collector_size(message: dict) -> int:
    """The size the collector (and the module's rules) give a message: compact UTF-8 json."""
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


@pytest.mark.parametrize(
    "floats",
    [[1e-07, -2.5e-09, 1.5e-08, 9e-06], [0.00001, 3.3e-05, -7.5e-05, 1.25e-05]],
    ids=["orjson-shorter", "orjson-longer"],
)
def test_32_kb_limit_is_the_same_for_client_and_collector_with_tiny_floats(make_client, collector, floats):
    """A message of exactly 32,768 bytes as json writes it is accepted by the client and the collector, one
    byte more raises MessageTooLargeError, also when it is full of floats below 1e-4, which orjson writes
    its own way ("1e-7" for 1e-07, "0.00001" for 1e-05): the client's bytes are json's bytes, so it
    neither lets through a message the collector refuses (refusing its whole batch) nor refuses one
    that fits."""
    client = make_client()
    props = {"f": floats * 500, "pad": ""}
    base = analytics.messages.build("track", user_id="u", event="floats", properties=props, message_id="m0",
                                    timestamp="2024-05-17T10:00:00Z")
    pad = LIMIT - _collector_size(base)
    for n, extra in enumerate((0, 1)):
        props["pad"] = "x" * (pad + extra)
        kwargs = dict(properties=props, message_id=f"m{n}", timestamp="2024-05-17T10:00:00Z")
        if extra:
            with pytest.raises(MessageTooLargeError):
                client.track("u", "floats", **kwargs)
        else:
            ok, msg = client.track("u", "floats", **kwargs)
            sent = analytics.messages.as_sent(msg)
            assert ok and len(encoding.dumps(sent)) == _collector_size(sent) == LIMIT
    assert client.flush(timeout=10) == 0
    assert collector.refused == []
    assert [m["messageId"] for m in collector.messages] == ["m0"]

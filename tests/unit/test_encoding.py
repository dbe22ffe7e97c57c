"""analytics.encoding: dumps/normalize turn any reasonable Python value into compact, valid JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import sys
import uuid
from decimal import Decimal

import pytest

from analytics import encoding, messages
from analytics.errors import AnalyticsError, InvalidMessageError, UnserializableValueError


IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _no_constants(name):
    raise AssertionError(f"output contains the non-JSON constant {name}")


def roundtrip(obj):
    """Encode with dumps and parse back strictly (NaN/Infinity literals are refused)."""
    return json.loads(encoding.dumps(obj), parse_constant=_no_constants)


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.Enum):
    LOW = 1


class Launch(enum.Enum):
    DAY = dt.date(2024, 5, 17)


@dataclasses.dataclass
class Address:
    city: str
    zip: str


@dataclasses.dataclass
class Person:
    name: str
    address: Address
    tags: tuple = ()


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"name": "Zoë 東京", "n": [1, 2], "o": {"k": None}}, '{"name":"Zoë 東京","n":[1,2],"o":{"k":null}}'),
        ({1: "Zoë 東京", "n": [1, 2**70]}, '{"1":"Zoë 東京","n":[1,%d]}' % 2**70),  # forces the stdlib fallback
    ],
    ids=["fast-path", "fallback-path"],
)
def test_output_is_compact_utf8_not_ascii_escaped(value, expected):
    """dumps returns bytes with no spaces and non-ASCII text written as raw UTF-8, on both code paths."""
    assert encoding.dumps(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "value, expected",
    [
        (dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=IST), "2020-01-02T03:04:05+05:30"),
        (dt.datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc), "2020-01-02T03:04:05.123456+00:00"),
        (dt.datetime(2020, 1, 2, 3, 4, 5), "2020-01-02T03:04:05"),
        (dt.date(2020, 1, 2), "2020-01-02"),
        (dt.time(3, 4, 5), "03:04:05"),
    ],
    ids=["aware-offset", "aware-utc-micro", "naive", "date", "time"],
)
def test_dates_and_times_become_iso_strings(value, expected):
    """datetime/date/time encode as isoformat(): aware keeps its offset, naive stays naive."""
    assert roundtrip({"v": value}) == {"v": expected}


@pytest.mark.parametrize(
    "value, expected",
    [
        (Decimal("19.99"), 19.99),
        (Decimal("3"), 3.0),
        (Decimal("NaN"), None),
        (UID, str(UID)),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ((1, "a", None), [1, "a", None]),
        (Color.RED, "red"),
        (Level.LOW, 1),
        (Launch.DAY, "2024-05-17"),
        (b"caf\xc3\xa9", "café"),
        (bytearray(b"ok"), "ok"),
    ],
    ids=["decimal", "decimal-int", "decimal-nan", "uuid", "set", "frozenset", "tuple",
         "str-enum", "enum", "enum-date-value", "bytes", "bytearray"],
)
def test_python_types_become_json_types(value, expected):
    """Decimal→number (NaN→null), UUID→str, set→sorted list, tuple→list, Enum→value, bytes→text."""
    assert roundtrip({"v": value}) == {"v": expected}


def test_unsortable_set_still_encodes():
    """A set whose items cannot be ordered (int and str) becomes a list of the same items."""
    out = roundtrip({"v": {1, "a", None}})
    assert sorted(out["v"], key=repr) == sorted([1, "a", None], key=repr)


def test_nested_dataclass_becomes_dict():
    """A dataclass (with a dataclass field and a tuple field) becomes nested dicts and lists."""
    person = Person("Ana", Address("Lisbon", "1000"), tags=("vip", 2))
    assert roundtrip({"p": person}) == {
        "p": {"name": "Ana", "address": {"city": "Lisbon", "zip": "1000"}, "tags": ["vip", 2]}
    }


def test_invalid_utf8_bytes_raise_with_path():
    """bytes that are not UTF-8 raise UnserializableValueError naming where they are."""
    with pytest.raises(UnserializableValueError) as info:
        encoding.dumps({"properties": {"raw": b"\xff\xfe"}})
    assert info.value.path == "properties.raw"
    assert info.value.field == "properties"


def test_numpy_values_encode_without_importing_numpy():
    """numpy int64/float64/bool_/arrays encode as plain JSON, NaN in an array as null; encoding never imports numpy."""
    np = pytest.importorskip("numpy")
    value = {
        "i": np.int64(7),
        "f": np.float64(2.5),
        "b": np.bool_(True),
        "a": np.array([[1, 2], [3, 4]]),
        "nan": np.array([1.0, np.nan]),
        "finf": np.float64("inf"),
    }
    assert roundtrip(value) == {"i": 7, "f": 2.5, "b": True, "a": [[1, 2], [3, 4]], "nan": [1.0, None], "finf": None}
    assert "numpy" not in vars(encoding)
    assert "np" not in vars(encoding)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_floats_become_null(value):
    """NaN, Infinity and -Infinity encode as null so the output is strict JSON."""
    assert roundtrip({"v": value, "l": [value]}) == {"v": None, "l": [None]}


@pytest.mark.parametrize(
    "key, expected",
    [(1, "1"), (None, "null"), (True, "true"), (False, "false"), (UID, str(UID)), (2.5, "2.5")],
    ids=["int", "None", "True", "False", "uuid", "float"],
)
def test_non_str_dict_keys_become_strings(key, expected):
    """Dict keys that are not str become strings (None/True/False spelled as JSON spells them)."""
    assert roundtrip({"props": {key: "x", "s": 1}}) == {"props": {expected: "x", "s": 1}}


def test_unknown_object_raises_unserializable_with_path_and_field():
    """An arbitrary object raises UnserializableValueError with .path properties.cart[1] and .field properties."""
    with pytest.raises(UnserializableValueError) as info:
        encoding.dumps({"type": "track", "properties": {"cart": [1, object()]}})
    err = info.value
    assert err.path == "properties.cart[1]"
    assert err.field == "properties"
    assert "properties.cart[1]" in str(err)
    assert isinstance(err, InvalidMessageError)
    assert isinstance(err, TypeError)
    assert isinstance(err, AnalyticsError)
    assert isinstance(err, AssertionError)  # as the official SDK's bad arguments (issue 16)


def _self_dict():
    d = {"a": 1}
    d["me"] = d
    return d


def _self_list():
    items = [1]
    items.append(items)
    return items


@pytest.mark.parametrize("make, path", [(_self_dict, "properties.me"), (_self_list, "properties[1]")], ids=["dict", "list"])
def test_self_reference_raises_unserializable(make, path):
    """A dict or list that contains itself raises UnserializableValueError (no RecursionError)."""
    with pytest.raises(UnserializableValueError) as info:
        encoding.dumps({"properties": make()})
    assert info.value.path == path


def test_lone_surrogate_still_gives_valid_json():
    """A string with a lone surrogate still encodes to valid UTF-8 JSON that round-trips."""
    out = encoding.dumps({"s": "bad\ud800end", "t": "é"})
    out.decode("utf-8")  # valid UTF-8
    assert json.loads(out) == {"s": "bad\ud800end", "t": "é"}


def test_integers_beyond_64_bits_are_exact():
    """Integers wider than 64 bits are written exactly, not rounded or refused."""
    value = {"big": 2**70 + 1, "neg": -(2**80) - 3}
    assert roundtrip(value) == value


def test_normalize_returns_plain_json_types():
    """normalize() returns only dict/list/str/number/bool/None following the same rules."""
    value = {"t": (1, Decimal("2.5")), "s": {2, 1}, 3: float("nan"), "u": UID, "e": Color.RED}
    assert encoding.normalize(value) == {"t": [1, 2.5], "s": [1, 2], "3": None, "u": str(UID), "e": "red"}


def test_orjson_and_stdlib_paths_agree():
    """The orjson fast path and the stdlib path produce the same JSON for a rich message."""
    pytest.importorskip("orjson")
    assert encoding.BACKEND == "orjson"
    rich = {
        "type": "track",
        "text": "Zoë 東京",
        "when": dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=IST),
        "naive": dt.datetime(2020, 1, 2, 3, 4, 5),
        "day": dt.date(2020, 1, 2),
        "clock": dt.time(23, 59),
        "price": Decimal("9.75"),
        "id": UID,
        "tags": {"b", "a", "c"},
        "pair": (1, 2),
        "color": Color.RED,
        "level": Level.LOW,
        "launch": Launch.DAY,
        "person": Person("Ana", Address("Lisbon", "1000")),
        "raw": b"bytes",
        "nan": float("nan"),
        "nested": [{"x": [1.5, None, True]}],
    }
    fast = encoding._fast(rich)  # the bare orjson call, with the same _default hook
    assert encoding.dumps(rich) == fast
    std = encoding._std_dumps(encoding.normalize(rich))
    assert json.loads(fast, parse_constant=_no_constants) == json.loads(std, parse_constant=_no_constants)


def test_signaling_nan_decimal_does_not_escape_as_bare_valueerror():
    """Decimal('sNaN') encodes as null or raises UnserializableValueError, never a bare ValueError."""
    try:
        out = encoding.dumps({"properties": {"x": Decimal("sNaN")}})
    except UnserializableValueError:
        return
    assert json.loads(out) == {"properties": {"x": None}}


BOTH = pytest.mark.parametrize(
    "dumps", [encoding.dumps, encoding._std_only_dumps], ids=[encoding.BACKEND, "json-only"]
)


def _outcome(dumps, value):
    try:
        return dumps(value)
    except UnserializableValueError as exc:
        return ("error", exc.path)


@BOTH
@pytest.mark.parametrize("depth, ok", [(200, True), (201, True), (202, False), (260, False), (3000, False)])
@pytest.mark.parametrize("kind", [list, tuple, "dict"])
def test_nesting_limit_is_the_same_on_both_paths(dumps, depth, ok, kind):
    """201 nested containers (levels 0 to 200) encode, more raise UnserializableValueError, on both paths
    (json used to take up to ~990 levels and orjson 254, except for tuples)."""
    value = 1
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else kind([value])
    out = _outcome(dumps, value)
    assert (out[0] != "error") is ok


@BOTH
def test_keys_that_become_the_same_string_keep_the_last_value(dumps):
    """{1: 'a', '1': 'b'} encodes as {"1":"b"} on both paths (json used to write the key twice)."""
    assert dumps({1: "a", "1": "b"}) == b'{"1":"b"}'
    assert dumps({"p": {True: 1, "true": 2, None: 3, "null": 4}}) == b'{"p":{"true":2,"null":4}}'
    assert dumps({"1.5": 0, 1.5: 1, Decimal("1.5"): 2}) == b'{"1.5":2}'
    assert dumps({1: "a", "1": "b", "f": 1e-07}) == b'{"1":"b","f":1e-07}'  # a tiny float: json, keys still merged


@BOTH
def test_enum_and_decimal_keys_follow_the_key_rules(dumps):
    """An Enum key whose value is None/True/NaN, and Decimal NaN/Infinity keys, become "null"/"true"
    like the plain values (they used to become "None", "True", "nan", "inf")."""

    class Odd(enum.Enum):
        NONE = None
        YES = True
        NAN = float("nan")

    assert roundtrip({Odd.NONE: 1}) == {"null": 1}
    assert json.loads(dumps({Odd.YES: 1, Odd.NAN: 2, Decimal("Infinity"): 3})) == {"true": 1, "null": 3}


@BOTH
def test_set_of_decimals_with_nan_encodes(dumps):
    """A set whose items cannot be ordered for a reason other than TypeError (Decimal NaN raises
    InvalidOperation) still encodes as a list instead of leaking decimal.InvalidOperation."""
    assert sorted(json.loads(dumps({"s": {Decimal("NaN"), Decimal(1)}}))["s"], key=repr) == [1.0, None]


@BOTH
@pytest.mark.parametrize(
    "value, path",
    [({"p": {"n": 10**5000}}, "p.n"), ({"p": {10**5000: 1}}, "p"), ({"p": [2**20000]}, "p[0]")],
    ids=["value", "key", "in-list"],
)
def test_integers_too_long_to_print_raise_with_path(dumps, value, path):
    """Integers over Python's int-to-str digit limit raise UnserializableValueError with the path,
    not a bare ValueError."""
    assert _outcome(dumps, value) == ("error", path)


@BOTH
def test_a_conversion_that_raises_gives_unserializable_with_path(dumps):
    """A datetime whose tzinfo raises, a Mapping that cannot be read: UnserializableValueError at the
    value's path, with the original exception as the cause."""

    class BrokenZone(dt.tzinfo):
        def utcoffset(self, d):
            raise RuntimeError("no offset")

    with pytest.raises(UnserializableValueError) as info:
        dumps({"p": {"when": dt.datetime(2020, 1, 1, tzinfo=BrokenZone())}})
    assert info.value.path == "p.when"
    assert isinstance(info.value.__cause__, RuntimeError)


@BOTH
@pytest.mark.parametrize("value", [1e-07, -2.5e-09, 0.00001, 3.3e-05, 5e-324, 1e16, 0.0001, -0.0])
def test_floats_are_written_as_json_writes_them(dumps, value):
    """Floats come out as repr() writes them on both paths, so the 32 KB check agrees with json and the
    collector ("1e-07" and "1e-05", where orjson writes "1e-7" and "0.00001")."""
    assert dumps({"f": [value, 1.5]}) == ('{"f":[%s,1.5]}' % repr(value)).encode()


def test_dumps_message_gives_the_same_bytes_as_dumps():
    """The client's shortcut (walk only the caller's values) changes nothing in the output or the errors."""
    import datetime
    import decimal
    import uuid as _uuid

    from analytics import messages
    from analytics.errors import UnserializableValueError

    deep: list = []
    node = deep
    for _ in range(300):
        node.append([])
        node = node[0]
    cases = [
        {"plan": "pro", "n": 3, "f": 1.5, "tags": ["a", ("b", "c")], "meta": {"k": None}},
        {"tiny": 1e-7, "big": 1e16, "nan": float("nan")},
        {1: "int key", "1": "str key", None: "none"},
        {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "id": _uuid.UUID(int=5), "d": decimal.Decimal("1.25")},
        {"set": {3, 1, 2}, "bytes": b"abc"},
        {"deep": deep},
        {"bad": object()},
    ]
    for props in cases:
        for kind in ("track", "identify"):
            field = "properties" if kind == "track" else "traits"
            msg = messages.build(kind, user_id="u1", event="E", context={"ip": "1.2.3.4", "x": props}, **{field: props})
            try:
                expected = encoding.dumps(msg)
            except UnserializableValueError as exc:
                with pytest.raises(UnserializableValueError) as got:
                    encoding.dumps_message(msg)
                assert got.value.path == exc.path
            else:
                assert encoding.dumps_message(msg) == expected


class _HugeDate(dt.date):
    """A date whose repr and conversion error are each 100,000 characters long."""

    def isoformat(self) -> str:  # type: ignore[override]
        raise ValueError("y" * 100_000)

    def __repr__(self) -> str:
        return "D" * 100_000


@pytest.mark.parametrize("value", [{_HugeDate(2020, 1, 1): 1}, {"a": _HugeDate(2020, 1, 1)}])
def test_a_huge_bad_value_or_key_gives_a_short_error(value):
    """A value or dict key that cannot be converted is quoted briefly: the error stays short (issue 13 D10)."""
    with pytest.raises(UnserializableValueError) as info:
        encoding.dumps(value)
    assert len(str(info.value)) < 600


def test_stdlib_path_builds_no_json_encoder_per_call(monkeypatch):
    """Without orjson, encoding reuses json encoders built once (json.dumps given options builds one
    per call: 2-3 µs, more than encoding a message takes), on the fast path and the fallback alike."""
    built = []
    real_init = json.JSONEncoder.__init__
    real_make = json.encoder.c_make_encoder

    def counting_init(self, *args, **kwargs):
        built.append("JSONEncoder")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(json.JSONEncoder, "__init__", counting_init)
    if real_make is not None:
        monkeypatch.setattr(json.encoder, "c_make_encoder", lambda *a: built.append("c") or real_make(*a))
    msg = messages.build("track", user_id="u", event="E", properties={"n": 1, "when": dt.date(2020, 1, 1)})
    for value in (msg, {1: "int key"}, {"f": 1e-07}, {"s": "lone \ud800"}, {"d": Decimal("1.5")}):
        encoding._std_only_dumps(value)
    encoding._std_dumps(msg)
    assert built == []


def test_json_encoder_without_the_c_accelerator_writes_the_same(monkeypatch):
    """On an interpreter without json's C encoder, the pure-Python fallback writes the same text."""
    value = {"s": "Zoë \u2028 \x7f / \"q\" \\", "f": [1e16, -0.0, 5e-324, 1e-07], "n": [2**64, -1, True, None],
             "t": (1, {"k": []}), "d": dt.date(2020, 1, 2), "u": UID}
    texts = ["".join(encoding._json_encoder(ascii_only)(value, 0)) for ascii_only in (False, True)]
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    assert ["".join(encoding._json_encoder(ascii_only)(value, 0)) for ascii_only in (False, True)] == texts
    assert texts[0] == json.dumps(value, default=encoding._default, ensure_ascii=False, separators=(",", ":"))


class _Str(str):
    def __str__(self):
        return "custom"

    __repr__ = __str__


class _Int(int):
    def __repr__(self):
        return "custom"

    __str__ = __repr__


class _Float(float):
    def __repr__(self):
        return "custom"

    __str__ = __repr__


class _List(list):
    """A list whose iteration differs from its items (json's C encoder reads the items directly)."""

    def __iter__(self):
        return iter(["from __iter__"])


class _Dict(dict):
    """A dict whose items() differs from its contents."""

    def items(self):
        return [("from", "items()")]


class _Num(enum.IntEnum):
    ONE = 1


class _Half(float, enum.Enum):
    HALF = 0.5


def _reference(value):
    """normalize(), then json.dumps with the module's options, made afresh: the bytes every path must give."""
    try:
        normalized = encoding.normalize(value)
    except UnserializableValueError as exc:
        return ("error", type(exc), exc.path, str(exc))
    try:
        return json.dumps(normalized, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(normalized, allow_nan=False, separators=(",", ":")).encode("ascii")


def _result(dumps, value):
    try:
        return dumps(value)
    except UnserializableValueError as exc:
        return ("error", type(exc), exc.path, str(exc))


TRICKY = [
    "", "\u2028", "\u2029", "\x7f", "\x00", "\x1f", "/", "</script>", '"', "\\",
    "\ud800", "a\udfffb", "\ufeff", "Zoë 東京",
    0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 2**70 + 1, True, False, None,
    -0.0, 0.0, 1e16, -1e16, 1e22, 9007199254740993.0, 1e-4, 1e-05, 1e-07, 5e-324, 1.7976931348623157e308,
    0.1, 129.99, float("nan"), float("inf"), float("-inf"),
    _Str("sub"), _Int(7), _Float(2.5), _Float(float("nan")), _Num.ONE, _Half.HALF, Color.RED, Level.LOW,
    dt.datetime(2020, 1, 2, 3, 4, 5), dt.date(2020, 1, 2), UID, Decimal("1.5"), b"bytes",
]


def _tree():
    from hypothesis import strategies as st

    leaves = st.one_of(
        st.sampled_from(TRICKY),
        st.text(st.characters(blacklist_categories=()), max_size=6),
        st.integers(),
        st.floats(),
        st.text(max_size=4).map(_Str),
        st.integers().map(_Int),
        st.floats().map(_Float),
    )
    keys = st.one_of(st.text(max_size=4), st.sampled_from(["1", "true", "null", 1, True, None, 1.5, _Num.ONE]),
                     st.text(max_size=3).map(_Str))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(keys, inner, max_size=4),
            st.lists(inner, max_size=2).map(_List),
            st.dictionaries(st.text(max_size=3), inner, max_size=2).map(_Dict),
        ),
        max_leaves=24,
    )


def test_fast_paths_give_the_reference_bytes_for_plain_and_tricky_values():
    """For values of plain types plus the tricky ones (str/int/float subclasses, IntEnum, -0.0, 1e16,
    2**63, U+2028, DEL, lone surrogates, non-str keys, list/dict subclasses), dumps (orjson when
    installed), the stdlib path and dumps_message give normalize()+json.dumps's bytes or its error."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_tree())
    def check(value):
        expected = _reference({"v": value})
        assert _result(encoding._std_only_dumps, {"v": value}) == expected
        assert _result(encoding.dumps, {"v": value}) == expected
        msg = messages.build("track", user_id="u", event="E", properties={"v": value}, context={"c": value})
        expected = _reference(msg)
        assert _result(encoding.dumps_message, msg) == expected
        assert _result(functools.partial(encoding._dumps_with, encoding._std_dumps, message=True), msg) == expected

    check()


@pytest.mark.parametrize("leaf", [dt.datetime(2020, 1, 2), UID, "\u2028\ud800", 1e16, 1e-07, -0.0, 2**64, _Int(3)],
                         ids=["datetime", "uuid", "u2028-surrogate", "1e16", "1e-07", "-0.0", "2**64", "int-subclass"])
@pytest.mark.parametrize("depth", [199, 200, 201])
@pytest.mark.parametrize("kind", [list, "dict"])
def test_values_at_the_nesting_limit_give_the_reference_on_every_path(leaf, depth, kind):
    """A tricky leaf inside 199-201 containers: every path gives normalize()+json.dumps's bytes or
    its error (a converted value below the deepest container counts a level)."""
    value = leaf
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    expected = _reference(value)
    assert _result(encoding._std_only_dumps, value) == expected
    assert _result(encoding.dumps, value) == expected


def test_the_shared_json_encoder_is_safe_across_threads():
    """Threads encoding at once through the one json encoder (its conversion hook runs Python code,
    so threads switch inside a call) each get their own values' bytes, on the fast path and the fallback."""
    import threading

    def values(n):
        return [{"n": n, "i": i, "when": dt.datetime(2020, 1, 1, 0, 0, n), "d": Decimal(n) if i % 2 else n}
                for i in range(300)]

    expected = {n: [_reference(v) for v in values(n)] for n in range(4)}
    got = {}

    def work(n):
        got[n] = [encoding._std_only_dumps(v) for v in values(n)]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert got == expected

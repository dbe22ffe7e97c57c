"""Encode a message to JSON bytes, once, in the caller's thread.

The rules, the same with or without the optional ``orjson`` speed-up (the bytes
are identical, so the 32 KB check gives the same answer on both):

* compact separators, UTF-8 (not ASCII-escaped), keys in insertion order;
  a string with a lone surrogate (not UTF-8) makes the whole message
  ASCII-escaped instead, still valid JSON;
* ``datetime``/``date``/``time`` → ISO-8601 string (a naive datetime stays naive);
* ``Decimal`` → number (``float``); ``UUID`` → string; ``Enum`` → its ``value``;
* ``set``/``frozenset`` → list (sorted when the items can be sorted); ``tuple`` → list;
* dataclass instances → dict of their fields; ``bytes`` → UTF-8 text (invalid
  UTF-8 raises);
* numpy scalars and arrays → ``.item()`` / ``.tolist()`` (numpy is never imported);
* ``NaN``, ``Infinity`` and ``-Infinity`` (float or ``Decimal``) → ``null``, so
  every body is valid JSON;
* floats are written as Python's ``repr`` writes them (``1e-05``, ``1e+16``);
* dict keys that are not strings → strings: numbers as JSON writes them
  (``1``, ``2.5``), ``None``/``True``/``False`` → ``"null"``/``"true"``/``"false"``,
  NaN and infinities → ``"null"``; ``UUID``, ``Decimal``, dates and ``Enum``
  members by their converted value under the same rules; other key types raise;
* when two keys of one dict become the same string (``{1: 'a', '1': 'b'}``),
  the **last value wins**, at the position of the first key, as in a Python
  dict: ``{"1":"b"}``.  The output never has duplicate keys;
* anything else raises :class:`~analytics.errors.UnserializableValueError` naming
  where the value is (``properties.cart[2]``): other types, invalid UTF-8 bytes,
  reference cycles, integers too long to print (over Python's
  ``sys.get_int_max_str_digits()``), nesting deeper than 200 levels (the top-level
  value is level 0; a converted value such as a dataclass counts a level for
  itself and one for its dict), and any exception a conversion raises.

The fast path is one quick walk over the message and one ``orjson.dumps``
call or one call of json's encoder (built once, with the options ``json.dumps``
would be given: json builds one per call given options).  The walk
(:func:`_plain`) sends to the fast encoder only values it writes exactly as
the rules say: exact ``dict``, ``list``, ``tuple``,
``str``, ``int``, ``bool``, ``None``, ``float`` and ``datetime``/``date``/
``time``/``UUID`` leaves, no deeper than the limit (and, for ``json``, string
keys only; orjson refuses other keys itself).  A float ``0 < |x| < 1e-4``,
which orjson writes its own way (``1e-7``, ``0.00001``), sends the message to
``json`` instead, and so do NaN and the infinities, and, with an orjson older
than 3.12 (the last ones for Python 3.9 write ``1e16``), ``|x| >= 1e16``.  The walk also keeps orjson from ever seeing deeply nested
tuples, which it does not count against its recursion limit and which crash
the interpreter past a few thousand levels (orjson 3.13 and earlier).
Everything else, and whatever the fast encoder refuses (a NaN for ``json``, a
64-bit-plus integer or a lone surrogate for orjson), is walked in Python by
:func:`normalize`, which converts values and finds the path of a bad one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any, Callable, Dict, FrozenSet, Set

from ._checks import quote
from .errors import UnserializableValueError
from .messages import LIBRARY as _LIBRARY

__all__ = ["dumps", "dumps_message", "loads", "normalize", "BACKEND"]

_MAX_DEPTH = 200
# Integers wider than this many bits may be over sys.get_int_max_str_digits()
# (4,300 digits by default, 640 at least: about 2,126 bits): only those are test-printed.
_INT_CHECK_BITS = 2_000

_BASIC_LEAVES = frozenset((str, int, float, bool, type(None)))
# Leaves the fast encoders turn into a string exactly as normalize does (orjson
# natively for UUID, through _default for the others).
_STRING_LEAVES = frozenset((_dt.datetime, _dt.date, _dt.time, uuid.UUID))
_STD_LEAVES = _BASIC_LEAVES | _STRING_LEAVES
_ORJSON_LEAVES = _STD_LEAVES - {float}
# orjson writes 0 < |x| < 1e-4 as "1e-7" / "0.00001" where repr (and json) write
# "1e-07" / "1e-05"; a message with such a float is encoded by json instead.
_TINY = 1e-4
# repr (and json) write |x| >= 1e16 with an exponent sign ("1e+16"); orjson before 3.12
# (the last releases for Python 3.9) writes "1e16".  Set below from what orjson does.
_BIG = float("inf")


def _default(obj: Any) -> Any:
    """``default=`` hook: turn one non-JSON value into a JSON-able one, or raise TypeError."""
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return None if obj.is_nan() else float(obj)  # float() refuses a signalling NaN
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except Exception:  # TypeError for mixed types, InvalidOperation for Decimal NaN...
            return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TypeError(f"bytes value is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    module = type(obj).__module__
    if module == "numpy" or module.startswith("numpy."):
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "item"):
            return obj.item()
    raise TypeError(f"cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__}")


def _int_text(value: int, path: str) -> str:
    """``value`` as JSON writes it; UnserializableValueError when Python refuses to print it."""
    try:
        return int.__repr__(value)
    except ValueError:  # over sys.get_int_max_str_digits()
        raise UnserializableValueError(
            f"{path or 'message'}: integer of {value.bit_length()} bits is too long to write as JSON", path
        ) from None


def _key(key: Any, path: str) -> str:
    for _ in range(8):  # an Enum whose value is an Enum...: a few conversions at most
        if isinstance(key, str):
            return key
        if key is None:
            return "null"
        if isinstance(key, bool):
            return "true" if key else "false"
        if isinstance(key, int):
            return _int_text(key, path)
        if isinstance(key, float):
            return float.__repr__(key) if math.isfinite(key) else "null"
        if not isinstance(key, (uuid.UUID, decimal.Decimal, _dt.date, _dt.time, enum.Enum)):
            break
        try:
            value = _default(key)
        except Exception as exc:
            raise UnserializableValueError(f"{path or 'message'}: dict key {quote(key)}: {quote(str(exc), 200)}", path) from exc
        if not isinstance(value, (str, int, float, uuid.UUID, decimal.Decimal, _dt.date, _dt.time, enum.Enum)) \
                and value is not None:
            return str(value)  # an Enum member whose value is, say, a tuple
        key = value
    raise UnserializableValueError(
        f"{path or 'message'}: dict key of type {type(key).__qualname__} cannot be a JSON key", path
    )


def normalize(obj: Any, path: str = "") -> Any:
    """Return ``obj`` made of plain JSON types only, following the module's rules.

    Dict keys become strings (the last value wins when two become the same).
    Raises :class:`UnserializableValueError` with the path of the first value
    that cannot be encoded, or of a reference cycle.
    """
    try:
        return _normalize(obj, path, set(), 0)
    except RecursionError:  # only when the caller's own stack is already nearly full
        raise UnserializableValueError(
            f"{path or 'message'}: nested too deeply to encode on this thread's stack", path
        ) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _normalize(obj: Any, path: str, active: Set[Any], depth: int) -> Any:
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, int):
        if obj.bit_length() > _INT_CHECK_BITS:
            _int_text(obj, path)
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if depth > _MAX_DEPTH:
        raise UnserializableValueError(f"{path}: nested deeper than {_MAX_DEPTH} levels", path)
    if isinstance(obj, (dict, list, tuple)):
        marker = id(obj)
        if marker in active:
            raise UnserializableValueError(f"{path or 'message'}: contains a reference to itself", path)
        active.add(marker)
        try:
            if isinstance(obj, dict):
                out = {}
                for k, v in obj.items():
                    key = _key(k, path)
                    out[key] = _normalize(v, _join(path, key), active, depth + 1)
                return out
            return [_normalize(v, f"{path}[{i}]", active, depth + 1) for i, v in enumerate(obj)]
        finally:
            active.discard(marker)
    try:
        converted = _default(obj)
    except TypeError as exc:
        raise UnserializableValueError(f"{path or 'message'}: {exc}", path) from None
    except Exception as exc:  # a conversion that failed: a broken isoformat(), tolist(), mapping...
        raise UnserializableValueError(
            f"{path or 'message'}: converting a {type(obj).__qualname__} failed: {quote(exc, 200)}", path
        ) from exc
    return _normalize(converted, path, active, depth + 1)


def _plain(node: Any, leaves: FrozenSet[Any], check_keys: bool, depth: int = 0) -> int:
    """Whether the fast encoder writes ``node`` exactly as :func:`normalize` + json would.

    0: no.  1: yes.  2: no, it holds a float ``0 < |x| < 1e-4`` (checked only
    when ``float`` is not in ``leaves``: orjson), which orjson writes differently.

    Yes means: only exact ``dict``, ``list``, ``tuple``, ``str``, ``int``,
    ``bool``, ``None``, ``float`` and date/time/UUID leaves, no container deeper
    than ``_MAX_DEPTH`` (depth-first, so a reference cycle is refused after
    ``_MAX_DEPTH`` steps).  With ``check_keys``, dict keys must be exact ``str``
    (orjson refuses other keys itself; json would write them, duplicates and all).
    """
    kind = type(node)
    if kind is dict:
        if check_keys:
            for key in node:
                if type(key) is not str:
                    return 0
        values: Any = node.values()
    elif kind is list or kind is tuple:
        values = node
    elif kind is float and float not in leaves:
        return 2 if (node != 0.0 and -_TINY < node < _TINY) or not -_BIG < node < _BIG else 1
    else:
        return int(kind in _BASIC_LEAVES or (kind in _STRING_LEAVES and depth <= _MAX_DEPTH))
    if depth >= _MAX_DEPTH:
        leaves = leaves - _STRING_LEAVES  # a date/time below here is deeper than the limit
    result = 1
    for value in values:
        kind = type(value)
        if kind in leaves:
            continue
        if kind is float:  # only when float is not in leaves: orjson
            if (value != 0.0 and -_TINY < value < _TINY) or not -_BIG < value < _BIG:
                result = 2
        elif kind is dict or kind is list or kind is tuple:
            if depth >= _MAX_DEPTH:
                return 0
            inner = _plain(value, leaves, check_keys, depth + 1)
            if not inner:
                return 0
            if inner == 2:
                result = 2
        else:
            return 0
    return result


def _json_encoder(ensure_ascii: bool) -> Callable[[Any, int], Any]:
    """``json.dumps`` with the module's options as a reusable encoder, called ``(obj, 0)``, giving
    the text in pieces.  json.dumps builds a new encoder on every call given options: 2-3 µs, more
    than encoding a message takes.  No cycle check: the callers pass acyclic values (walked by
    :func:`_plain`, or made by :func:`normalize`)."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without json's C accelerator
        options = json.JSONEncoder(
            ensure_ascii=ensure_ascii, allow_nan=False, separators=(",", ":"), default=_default, check_circular=False
        )
        return lambda obj, _level: options.iterencode(obj, True)
    escape = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    # the arguments json.JSONEncoder.iterencode passes for these options
    encoder: Callable[[Any, int], Any] = make(None, _default, escape, None, ":", ",", False, False, False)
    return encoder


_json_utf8 = _json_encoder(False)
_json_ascii = _json_encoder(True)


def _std_dumps(obj: Any) -> bytes:
    text = "".join(_json_utf8(obj, 0))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8: fall back to ASCII escapes, still valid JSON.
        return "".join(_json_ascii(obj, 0)).encode("ascii")


_fast: Callable[[Any], bytes]
try:  # optional speed-up, installed with the ``fast`` extra
    import orjson as _orjson

    def _orjson_dumps(obj: Any) -> bytes:
        # Only called on values _plain() accepted.  OPT_PASSTHROUGH_DATETIME
        # routes dates and times through _default so the output matches the
        # standard-library path (naive datetimes stay naive).
        # The copy (0.1 µs) matters: orjson's bytes object keeps a 4 KB
        # allocation for a 400-byte message, ten times its size in the queue.
        return memoryview(
            _orjson.dumps(obj, default=_default, option=_orjson.OPT_PASSTHROUGH_DATETIME)
        ).tobytes()

    _fast = _orjson_dumps
    BACKEND = "orjson"
    if _orjson.dumps(1e16) != b"1e+16":
        _BIG = 1e16  # such floats (and NaN, infinities) go to json instead
except ImportError:  # pragma: no cover - exercised when orjson is absent
    _fast = _std_dumps
    BACKEND = "json"


#: The keys of a built message whose values come from the caller; the others
#: are strings :func:`analytics.messages.build` made (ids, names, timestamp).
_CALLER_KEYS = ("properties", "traits", "context", "integrations")


def _dumps_with(fast: Callable[[Any], bytes], obj: Any, message: bool = False) -> bytes:
    std = fast is _std_dumps
    leaves = _STD_LEAVES if std else _ORJSON_LEAVES
    try:
        if message:
            # only the caller's values need the walk, one level down
            plain = 1
            for key in _CALLER_KEYS:
                value = obj.get(key)
                if value is not None:
                    if key == "context" and len(value) == 1 and value.get("library") is _LIBRARY:
                        continue  # the usual context: only the library's own (plain) dict
                    part = _plain(value, leaves, std, 1)
                    if part != 1:
                        plain = part
                        if not part:
                            break
        else:
            plain = _plain(obj, leaves, std)
    except RecursionError:  # only when the caller's own stack is already nearly full
        plain = 0
    if plain == 1:
        try:
            return fast(obj)
        except Exception:  # NaN (json), > 64-bit int or lone surrogate (orjson), a broken isoformat()...
            pass
    # Not plain, refused by the fast encoder, or (2) a tiny float for orjson: json
    # after normalize, which also makes the keys strings (orjson mode did not check them).
    normalized = normalize(obj)
    try:
        return _std_dumps(normalized)
    except RecursionError:  # only when the caller's own stack is already nearly full
        raise UnserializableValueError("message: nested too deeply to encode on this thread's stack", "") from None


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` to compact UTF-8 JSON bytes following the module's rules.

    Raises :class:`UnserializableValueError` when a value cannot be encoded.
    """
    return _dumps_with(_fast, obj)


def dumps_message(msg: Dict[str, Any]) -> bytes:
    """:func:`dumps` for a message made by :func:`analytics.messages.build` (same bytes, less work).

    Only the values the caller supplied (properties, traits, context,
    integrations) are checked before the fast encoder; every other value of
    a built message is a plain string.
    """
    return _dumps_with(_fast, msg, True)


def _std_only_dumps(obj: Any) -> bytes:
    """:func:`dumps` as it behaves without orjson installed (for tests and comparisons)."""
    return _dumps_with(_std_dumps, obj)


def loads(data: bytes) -> Any:
    """Decode JSON bytes produced by :func:`dumps`."""
    return json.loads(data)

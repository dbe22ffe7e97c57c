"""Encode a message to JSON bytes, once, in the caller's thread.

The rules, the same with or without the optional ``orjson`` speed-up:

* compact separators, UTF-8 (not ASCII-escaped), keys in insertion order;
* ``datetime``/``date``/``time`` → ISO-8601 string (a naive datetime stays naive);
* ``Decimal`` → number (``float``); ``UUID`` → string; ``Enum`` → its ``value``;
* ``set``/``frozenset`` → list (sorted when the items can be sorted); ``tuple`` → list;
* dataclass instances → dict of their fields; ``bytes`` → UTF-8 text (invalid
  UTF-8 raises);
* numpy scalars and arrays → ``.item()`` / ``.tolist()`` (numpy is never imported);
* ``NaN``, ``Infinity`` and ``-Infinity`` → ``null``, so every body is valid JSON;
* dict keys that are not strings → ``str(key)`` (``None``/``True`` as JSON spells them);
* anything else raises :class:`~analytics.errors.UnserializableValueError` naming
  where the value is (``properties.cart[2]``).

The fast path is one ``json.dumps``/``orjson.dumps`` call; only when it fails
(a NaN, an odd key, a value it cannot take) is the message walked in Python to
normalise it and to find the path of a bad value.
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
from typing import Any, Callable

from .errors import UnserializableValueError

__all__ = ["dumps", "loads", "normalize", "BACKEND"]

_MAX_DEPTH = 200


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
        except TypeError:
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


def _key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return json.dumps(key) if not isinstance(key, float) or math.isfinite(key) else "null"
    if isinstance(key, (uuid.UUID, decimal.Decimal, _dt.date, _dt.time, enum.Enum)):
        value = _default(key)
        return value if isinstance(value, str) else str(value)
    raise UnserializableValueError(
        f"{path or 'message'}: dict key of type {type(key).__qualname__} cannot be a JSON key", path
    )


def normalize(obj: Any, path: str = "") -> Any:
    """Return ``obj`` made of plain JSON types only, following the module's rules.

    Raises :class:`UnserializableValueError` with the path of the first value
    that cannot be encoded, or of a reference cycle.
    """
    return _normalize(obj, path, set(), 0)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _normalize(obj: Any, path: str, active: set, depth: int) -> Any:
    if obj is None or isinstance(obj, (str, bool, int)):
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
    return _normalize(converted, path, active, depth + 1)


def _std_dumps(obj: Any) -> bytes:
    text = json.dumps(obj, default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8: fall back to ASCII escapes, still valid JSON.
        return json.dumps(obj, default=_default, allow_nan=False, separators=(",", ":")).encode("ascii")


_fast: Callable[[Any], bytes]
try:  # optional speed-up, installed with the ``fast`` extra
    import orjson as _orjson

    def _orjson_dumps(obj: Any) -> bytes:
        # OPT_PASSTHROUGH_* routes these types through _default so the output
        # matches the standard-library path (naive datetimes stay naive).
        # orjson already writes NaN and infinities as null.
        return _orjson.dumps(
            obj,
            default=_default,
            option=_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS,
        )

    _fast = _orjson_dumps
    BACKEND = "orjson"
    _fast_errors: tuple = (TypeError, ValueError, _orjson.JSONEncodeError)
except ImportError:  # pragma: no cover - exercised when orjson is absent
    _fast = _std_dumps
    BACKEND = "json"
    _fast_errors = (TypeError, ValueError, RecursionError)


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` to compact UTF-8 JSON bytes following the module's rules.

    Raises :class:`UnserializableValueError` when a value cannot be encoded.
    """
    try:
        return _fast(obj)
    except _fast_errors:
        return _std_dumps(normalize(obj))


def loads(data: bytes) -> Any:
    """Decode JSON bytes produced by :func:`dumps`."""
    return json.loads(data)

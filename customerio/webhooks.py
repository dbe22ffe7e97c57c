"""Verify Customer.io reporting-webhook signatures.

Customer.io signs each webhook request with the workspace's webhook signing
key and sends two headers: ``X-CIO-Timestamp`` (Unix seconds) and
``X-CIO-Signature`` (lowercase hex).  The signature is HMAC-SHA256, keyed with
the signing key's UTF-8 bytes (not hex-decoded), over
``b"v0:" + timestamp + b":" + raw_body``::

    from customerio.webhooks import validate_signature

    ok = validate_signature(
        signing_key=SIGNING_KEY,
        timestamp=request.headers["X-CIO-Timestamp"],
        request_body=request.get_data(),          # the raw bytes, before any JSON parsing
        signature=request.headers["X-CIO-Signature"],
        tolerance=300,                            # refuse replays older or newer than 5 minutes
    )

Pass the body exactly as received: re-serializing parsed JSON changes the bytes
and the signature no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from typing import Optional, Union

__all__ = ["validate_signature", "sign", "TIMESTAMP_HEADER", "SIGNATURE_HEADER"]

#: The header carrying the Unix time the request was signed at.
TIMESTAMP_HEADER = "X-CIO-Timestamp"
#: The header carrying the hex HMAC-SHA256 signature.
SIGNATURE_HEADER = "X-CIO-Signature"

Body = Union[bytes, bytearray, memoryview, str]


def _timestamp_text(timestamp: Union[int, float, str, bytes]) -> Optional[str]:
    """The timestamp as it was signed: the header's text, or an integer's digits."""
    if isinstance(timestamp, bytes):
        try:
            timestamp = timestamp.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(timestamp, str):
        text = timestamp.strip()
        return text or None
    if isinstance(timestamp, bool):
        return None
    if isinstance(timestamp, int):
        return str(timestamp)
    if isinstance(timestamp, float) and math.isfinite(timestamp) and timestamp.is_integer():
        return str(int(timestamp))
    return None


def _body_bytes(body: Body) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _key_bytes(key: Union[str, bytes]) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def sign(signing_key: Union[str, bytes], timestamp: Union[int, str], request_body: Body) -> str:
    """The ``X-CIO-Signature`` value (lowercase hex) for this timestamp and body.

    Useful to test your own webhook handler.  Raises ``ValueError`` for a
    timestamp that is not an integer or a non-empty string.
    """
    ts = _timestamp_text(timestamp)
    if ts is None:
        raise ValueError(f"timestamp must be an integer or a non-empty string, not {timestamp!r}")
    payload = b"v0:" + ts.encode("utf-8") + b":" + _body_bytes(request_body)
    return hmac.new(_key_bytes(signing_key), payload, hashlib.sha256).hexdigest()


def validate_signature(
    signing_key: Union[str, bytes],
    timestamp: Union[int, float, str, bytes],
    request_body: Body,
    signature: Union[str, bytes],
    tolerance: Optional[float] = None,
    now: Optional[float] = None,
) -> bool:
    """True when ``signature`` is Customer.io's signature of this ``timestamp`` and body.

    ``timestamp`` is the ``X-CIO-Timestamp`` header (text or an int);
    ``request_body`` the raw body (bytes, or text encoded as UTF-8);
    ``signature`` the ``X-CIO-Signature`` header, with or without a ``v0=``
    prefix, in either case of hex.  Compared in constant time.

    ``tolerance`` (seconds): when given, a timestamp further than that from
    ``now`` (default ``time.time()``), in the past or the future, gives
    False, so a captured request cannot be replayed later.  Without it the
    timestamp's age is not checked (async-customerio's behaviour).  Never
    raises for bad input: anything malformed gives False.
    """
    if not signing_key or not signature:
        return False
    try:
        if isinstance(signature, bytes):
            signature = signature.decode("ascii")
        given = signature.strip()
        if given[:3].lower() == "v0=":
            given = given[3:]
        given = given.lower()
        ts = _timestamp_text(timestamp)
        if ts is None:
            return False
        if tolerance is not None:
            try:
                seconds = float(ts)
            except ValueError:
                return False
            current = time.time() if now is None else now
            if not math.isfinite(seconds) or abs(current - seconds) > tolerance:
                return False
        expected = sign(signing_key, ts, request_body)
        return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))
    except (TypeError, ValueError, UnicodeError):
        return False

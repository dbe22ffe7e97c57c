"""Customer.io webhook signatures: the published test vectors and independently computed ones."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from customerio import validate_signature
from customerio.webhooks import sign

KEY = "755781b5e03a973f3405a85474d5a032a60fd56fabaad66039b12eadd83955fa"
TS = 1692633432
# The body and signature of async-customerio's test (tests/test_request_validator.py).
BODY = (
    b'{"data":{"action_id":42,"campaign_id":23,"content":"Welcome to the club, we are with you.",'
    b'"customer_id":"user-123","delivery_id":"RAECAAFwnUSneIa0ZXkmq8EdkAM==","headers":{"Custom-Header":["custom-value"]},'
    b'"identifiers":{"id":"user-123"},"recipient":"test@example.com","subject":"Thanks for signing up"},'
    b'"event_id":"01E2EMRMM6TZ12TF9WGZN0WJQT","metric":"sent","object_type":"email","timestamp":1692633432}'
)
SIGNATURE = "c097b83a7d57a0810625180a61213eab7e0389a54b33dd11c3a6f17790c8427a"
# The example of async-customerio's README.
README_BODY = b'{"key": "value"}'
README_SIGNATURE = "d7c655389bb364d3e8bdbb6ec18a7f1b6cf91f39bba647554ada78aa61de37b9"


def independent(key: str, ts: str, body: bytes) -> str:
    """The signature computed another way: an HMAC object fed in pieces."""
    mac = hmac.HMAC(bytes(key, "utf-8"), digestmod="sha256")
    for piece in (b"v0", b":", ts.encode(), b":", body):
        mac.update(piece)
    return mac.hexdigest()


def test_published_vectors() -> None:
    """The library test vector and the README example both validate."""
    assert validate_signature(KEY, TS, BODY, SIGNATURE) is True
    assert validate_signature(KEY, TS, README_BODY, README_SIGNATURE) is True
    assert sign(KEY, TS, BODY) == SIGNATURE


def test_independent_vectors_and_digest_shape() -> None:
    """sign() agrees with an HMAC computed another way, and is 64 lowercase hex digits."""
    for key, ts, body in [("k", "1", b""), ("s3cr\u00e9t", "1700000000", "caf\u00e9 \u2603".encode()),
                          (KEY, str(TS), b"x" * 10_000)]:
        expected = independent(key, ts, body)
        assert sign(key, ts, body) == expected
        assert re.fullmatch(r"[0-9a-f]{64}", expected)
        assert validate_signature(key, ts, body, expected)


def test_key_is_used_as_text_not_hex() -> None:
    """The key's UTF-8 bytes are the HMAC key; hex-decoding it gives another digest."""
    decoded = hmac.new(bytes.fromhex(KEY), b"v0:%d:" % TS + BODY, hashlib.sha256).hexdigest()
    assert decoded != SIGNATURE
    assert not validate_signature(KEY, TS, BODY, decoded)


@pytest.mark.parametrize(
    "timestamp, body, signature",
    [
        (TS + 1, BODY, SIGNATURE),
        (TS, BODY + b" ", SIGNATURE),
        (TS, b'{"malicious_key": "malicious_value"}', SIGNATURE),
        (TS, BODY, "WRONG" + SIGNATURE[5:]),
        (TS, BODY, SIGNATURE[:-1]),
        (TS, BODY, ""),
        (TS, BODY, "v0="),
        (TS, BODY, "\u00e9" * 64),
        ("", BODY, SIGNATURE),
        (None, BODY, SIGNATURE),
        (1692633432.5, BODY, SIGNATURE),
    ],
)
def test_tampered_or_malformed_is_false(timestamp, body, signature) -> None:
    """Any change to the timestamp, body or signature, or malformed input, gives False (never raises)."""
    assert validate_signature(KEY, timestamp, body, signature) is False


def test_accepted_forms() -> None:
    """A v0= prefix, upper-case hex, the timestamp as header text or float, and a str body all work."""
    assert validate_signature(KEY, TS, BODY, "v0=" + SIGNATURE)
    assert validate_signature(KEY, TS, BODY, SIGNATURE.upper())
    assert validate_signature(KEY, str(TS), BODY, SIGNATURE)
    assert validate_signature(KEY, f" {TS} ", BODY, SIGNATURE)
    assert validate_signature(KEY, float(TS), BODY, SIGNATURE)
    assert validate_signature(KEY, TS, BODY.decode(), SIGNATURE)
    assert validate_signature(KEY, TS, bytearray(BODY), SIGNATURE.encode())
    assert validate_signature(KEY.encode(), TS, BODY, SIGNATURE)
    assert not validate_signature("", TS, BODY, SIGNATURE)


def test_tolerance_window() -> None:
    """With a tolerance, a timestamp too old or too far in the future is refused."""
    assert validate_signature(KEY, TS, BODY, SIGNATURE, tolerance=300, now=TS + 300)
    assert validate_signature(KEY, TS, BODY, SIGNATURE, tolerance=300, now=TS - 300)
    assert not validate_signature(KEY, TS, BODY, SIGNATURE, tolerance=300, now=TS + 301)
    assert not validate_signature(KEY, TS, BODY, SIGNATURE, tolerance=300, now=TS - 301)
    # Against the real clock the 2023 vector is long expired.
    assert not validate_signature(KEY, TS, BODY, SIGNATURE, tolerance=300)
    assert validate_signature(KEY, TS, BODY, SIGNATURE)


def test_sign_refuses_a_bad_timestamp() -> None:
    """sign() raises ValueError for a timestamp that is neither an integer nor text."""
    with pytest.raises(ValueError):
        sign(KEY, None, BODY)  # type: ignore[arg-type]

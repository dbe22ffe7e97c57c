"""``Authorization`` header values, made in one place."""

from __future__ import annotations

import base64

__all__ = ["basic_auth", "bearer_auth"]


def basic_auth(user: str, password: str) -> str:
    """The value of an HTTP Basic ``Authorization`` header (``Basic base64(user:password)``, UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return f"Basic {token}"


def bearer_auth(token: str) -> str:
    """The value of a bearer ``Authorization`` header (the App API key)."""
    return f"Bearer {token}"

"""Checks of option values, shared by the clients, and safe quoting of values in error messages.

Every error message that echoes a caller's value goes through :func:`quote`
(a short prefix, never megabytes) and every one that echoes a URL through
:func:`redact_url` (never a password).
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import re
import reprlib
from typing import Any, Optional, Tuple
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["quote", "redact_url", "number", "flag", "http_url", "is_loopback", "header_text", "MAX_SECONDS"]

#: The longest a duration option may be: beyond about 9e9 s the OS refuses the wait
#: (``OverflowError`` in the consumer); ``None`` means "forever" where an option allows it.
MAX_SECONDS = 1e8

_QUOTE_LIMIT = 80
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _QUOTE_LIMIT
_repr.maxlevel = 3


def quote(value: Any, limit: int = _QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters; a cut string says how long it was."""
    if isinstance(value, (str, bytes)):
        if len(value) <= limit:
            return repr(value)
        kind = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value)} {kind})"
    try:
        text = _repr.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


_USERINFO = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?/*)([^/?#]*)@")
_SECRET_PARAM = re.compile(r"([?&;][^=&#;]*(?:pass|pwd|secret|token|key|auth)[^=&#;]*=)[^&#;]*", re.IGNORECASE)


def redact_url(url: Any) -> str:
    """``url`` with its credentials replaced by ``***``: the password (or a lone user
    name, often a token) of the userinfo, and ``password=``/``token=``-like query values.

    Works on text that is not a valid URL too (a mistyped scheme, a leading space).
    """
    text = url if isinstance(url, str) else str(url)

    def userinfo(match: "re.Match[str]") -> str:
        user, sep, _ = match.group(2).partition(":")
        return f"{match.group(1)}{user}:***@" if sep else f"{match.group(1)}***@"

    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(userinfo, text, count=1))


def number(
    name: str,
    value: Any,
    minimum: float = 0.0,
    integer: bool = False,
    allow_none: bool = False,
    maximum: Optional[float] = None,
) -> Any:
    """``value`` if it is a number (an integer if ``integer``) from ``minimum`` to ``maximum``.

    NaN and infinities are refused (``None`` means "no limit" where
    ``allow_none``); a float option is capped at :data:`MAX_SECONDS` unless
    ``maximum`` says otherwise.
    """
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigurationError(f"{name} must be {'an integer' if integer else 'a number'}, got {quote(value)}")
    if not integer:
        if not math.isfinite(value):
            forever = " (None means no limit)" if allow_none else ""
            raise ConfigurationError(f"{name} must be a finite number{forever}, got {quote(value)}")
        if maximum is None:
            maximum = MAX_SECONDS
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {quote(value)}")
    if maximum is not None and value > maximum:  # type: ignore[operator]  # a real number (checked above)
        raise ConfigurationError(f"{name} must be at most {maximum:g}, got {quote(value)}")
    return value


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def flag(name: str, value: Any) -> bool:
    """A boolean option: ``True``/``False``, the integers 1/0, or (any case)
    ``"true"``/``"false"``, ``"yes"``/``"no"``, ``"on"``/``"off"``, ``"1"``/``"0"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ConfigurationError(f"{name} must be True or False (or 'true'/'false', 'yes'/'no', 1/0), got {quote(value)}")


# characters that cannot appear in a URL as written (RFC 3986): requests and http.client refuse them
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f<>\"{}|\\^`]")


def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` (a name or an IP address, without brackets or port) is this machine:
    ``localhost`` (or ``*.localhost``), ``127.0.0.0/8`` or ``::1``."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def http_url(name: str, value: str, default_scheme: Optional[str] = None) -> Tuple[str, Any]:
    """``value`` (stripped of surrounding white space and a trailing ``/``) as an http(s) URL,
    with its :func:`urllib.parse.urlsplit` parts.

    A bare ``host[:port]`` gets ``default_scheme``; by default ``http://`` when
    the host is a loopback address (``127.0.0.1:8765``, ``localhost:8765``,
    ``[::1]:8765``: a local collector serves plain HTTP) and ``https://``
    otherwise.  Refused with
    :class:`ConfigurationError` naming ``name``: another scheme, spaces or
    control or non-ASCII characters, a bad IPv6 address, a port outside
    1-65535, credentials (``user:pass@``), a query or a fragment.  A path
    prefix is kept.
    """
    url = value.strip()
    if "://" not in url:
        scheme = default_scheme
        if scheme is None:
            try:
                host = urlsplit("//" + url).hostname
            except ValueError:
                host = None
            scheme = "http" if is_loopback(host) else "https"
        url = f"{scheme}://{url}"
    url = url.rstrip("/")
    shown = quote(redact_url(url))
    if _BAD_URL_CHARS.search(url) or not url.isascii():
        raise ConfigurationError(
            f"{name} must be a URL without spaces, control or non-ASCII characters, got {shown}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {shown}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"{name} must be an http:// or https:// URL, got {shown}")
    if not parts.hostname:
        raise ConfigurationError(f"{name} must name a host, such as 'https://cdp.customer.io', got {shown}")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigurationError(f"{name} has a port outside 1-65535: {shown}")
    if "@" in parts.netloc:
        raise ConfigurationError(f"{name} must not hold credentials (user:password@): {shown}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigurationError(f"{name} must not have a query or fragment (?...#...): {shown}")
    return url, parts


def header_text(name: str, value: Any) -> Optional[str]:
    """A value sent as an HTTP header (``user_agent``): one line of printable Latin-1 text,
    not starting with white space; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {quote(value)}")
    if re.search(r"[\x00-\x1f\x7f]", value):
        hint = " (it ends with a newline: strip the text read from a file)" if value.endswith("\n") else ""
        raise ConfigurationError(f"{name} must be one line of text without control characters{hint}, "
                                 f"got {quote(value)}")
    if value[:1].isspace():
        raise ConfigurationError(f"{name} must not start with white space, got {quote(value)}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigurationError(f"{name} must be Latin-1 text (HTTP headers cannot carry other "
                                 f"characters), got {quote(value)}") from None
    return value

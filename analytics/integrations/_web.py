"""What the web framework integrations share: the request's Segment ``context`` and the settings they read."""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Mapping, Optional, Tuple

from ..errors import ConfigurationError
from ..options import OPTIONS
from . import facade

__all__ = ["client_ip", "page_context", "request_fields", "apply_settings", "proxy_settings"]

#: Keys of a settings dict (``CDP_RELAY`` in Django's settings or Flask's config) that are the
#: integration's own; every other key is a module setting of ``analytics`` (``write_key``...).
INTEGRATION_KEYS = ("trusted_proxy_header", "trusted_proxy_count", "flush_after_request")


def _valid_ip(text: str) -> Optional[str]:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [::1]:8080
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:8080
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(peer: Optional[str], headers: Mapping[str, str], header: Optional[str], count: int = 1) -> Optional[str]:
    """The client's address: ``peer`` (the connection's), or, behind ``count`` trusted proxies that
    set ``header`` (``X-Forwarded-For``, ``X-Real-IP``...), the address the outermost trusted proxy saw.

    ``headers`` has lower-case names.  A value that is not an IP address is ignored: a client
    cannot make the library send text of its choosing as ``context.ip``.
    """
    if header:
        value = headers.get(header.lower())
        if value:
            hops = [part for part in value.split(",") if part.strip()]
            if len(hops) >= count:
                found = _valid_ip(hops[-count])
                if found:
                    return found
    return _valid_ip(peer) if peer else None


def page_context(url: str, path: str, query: str, referrer: Optional[str]) -> Dict[str, str]:
    """Segment's ``context.page`` for a request."""
    page = {"path": path or "/", "url": url}
    if query:
        page["search"] = "?" + query
    if referrer:
        page["referrer"] = referrer
    return page


def request_fields(
    *, peer: Optional[str], headers: Mapping[str, str], url: str, path: str, query: str,
    proxy: Tuple[Optional[str], int],
) -> Dict[str, Any]:
    """The ``context`` fields of one request: ``ip``, ``userAgent``, ``page``, ``locale`` (lower-case ``headers``)."""
    fields: Dict[str, Any] = {}
    ip = client_ip(peer, headers, *proxy)
    if ip:
        fields["ip"] = ip
    agent = headers.get("user-agent")
    if agent:
        fields["userAgent"] = agent
    fields["page"] = page_context(url, path, query, headers.get("referer"))
    language = headers.get("accept-language")
    if language:
        first = language.split(",", 1)[0].split(";", 1)[0].strip()
        if first and first != "*":
            fields["locale"] = first
    return fields


def proxy_settings(header: Any, count: Any) -> Tuple[Optional[str], int]:
    """Checked ``(trusted_proxy_header, trusted_proxy_count)``; ConfigurationError naming a bad one."""
    if header is not None and (not isinstance(header, str) or not header.strip()):
        raise ConfigurationError(f"trusted_proxy_header must be a header name such as 'X-Forwarded-For', not {header!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"trusted_proxy_count must be a whole number >= 1, not {count!r}")
    if header is not None:
        header = header.strip()
        if header.upper().startswith("HTTP_"):  # Django's META spelling
            header = header[5:].replace("_", "-")
    return header, count


def apply_settings(settings: Any, where: str) -> Dict[str, Any]:
    """Assign the module settings in ``settings`` (a dict) to ``analytics``; returns the integration's own keys.

    Each value is checked as ``analytics.<name> = value`` checks it; an unknown key raises
    :class:`~analytics.errors.ConfigurationError` naming ``where`` (``settings.CDP_RELAY``...).
    """
    analytics = facade()
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ConfigurationError(f"{where} must be a dict, not {type(settings).__qualname__}")
    own: Dict[str, Any] = {}
    known = {option.name for option in OPTIONS if option.facade} | {"endpoint"}
    for key, value in settings.items():
        if key in INTEGRATION_KEYS:
            own[key] = value
        elif key in known:
            setattr(analytics, key, value)
        else:
            raise ConfigurationError(f"{where}: unknown setting {key!r} (known: analytics' module settings and "
                                     f"{', '.join(INTEGRATION_KEYS)})")
    return own

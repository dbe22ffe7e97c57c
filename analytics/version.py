"""The library's version, kept in one place (read by setup.cfg and the User-Agent)."""

VERSION = "0.1.0"

#: The ``User-Agent`` of every request (the engine's and the direct API clients') unless one is given.
DEFAULT_USER_AGENT = f"cdp-relay/{VERSION} (python)"

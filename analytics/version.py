"""The library's version, kept in one place (read by setup.cfg and the User-Agent)."""

VERSION = "0.1.0"

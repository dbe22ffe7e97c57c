"""Wire formats: a list of encoded messages in, one request body out (pure, no I/O).

A format knows its path, its limits and the bytes around the items, so the
consumer can decide *before* adding a message whether the body would still fit.
"""

from .cdp import CDPFormat

__all__ = ["CDPFormat"]

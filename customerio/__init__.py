"""Customer.io clients.

``customerio.analytics`` *is* the top-level :mod:`analytics` module (the same
object, one set of settings, one shared client), so both of these work::

    from customerio import analytics
    import analytics

``from customerio.analytics.client import Client`` and the other submodules
resolve to the same objects too.
"""

import importlib
import sys

import analytics

_SUBMODULES = (
    "client",
    "consumer",
    "encoding",
    "errors",
    "messages",
    "retry",
    "stats",
    "transport",
    "version",
    "formats",
    "queues",
)

sys.modules[__name__ + ".analytics"] = analytics
for _name in _SUBMODULES:
    sys.modules[f"{__name__}.analytics.{_name}"] = importlib.import_module(f"analytics.{_name}")
del _name

__all__ = ["analytics"]

"""The collector's Bloomreach Engagement tracking routes (``/track/v2/projects/{token}/...``).

A mixin of the collector's request handler: ``ROUTES`` lists
``(method, path pattern, handler name)``; each handler is called as
``handler(self, body, query, match)``.  What the routes accept is recorded
in a :class:`BloomreachStore` at ``collector.bloomreach``.
"""

from __future__ import annotations

import re
import threading
from typing import Any, List, Pattern, Tuple

__all__ = ["BloomreachRoutes", "BloomreachStore"]


class BloomreachStore:
    """What the Bloomreach routes received (filled in by the routes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


class BloomreachRoutes:
    """Handler mixin: the Bloomreach routes."""

    ROUTES: List[Tuple[str, Pattern[str], str]] = []

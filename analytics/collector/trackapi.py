"""The collector's Customer.io Track API routes (v1 and ``/api/v2/batch``).

A mixin of the collector's request handler: ``ROUTES`` lists
``(method, path pattern, handler name)``; each handler is called as
``handler(self, body, query, match)``.  What the routes accept is recorded
in a :class:`TrackAPIStore` at ``collector.track_api``.
"""

from __future__ import annotations

import re
import threading
from typing import Any, List, Pattern, Tuple

__all__ = ["TrackAPIRoutes", "TrackAPIStore"]


class TrackAPIStore:
    """What the Track API routes received (filled in by the routes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


class TrackAPIRoutes:
    """Handler mixin: the Track API routes."""

    ROUTES: List[Tuple[str, Pattern[str], str]] = []

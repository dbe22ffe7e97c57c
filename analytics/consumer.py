"""Where the engine's consumer used to live; it is now :mod:`analytics.engine` (kept for imports)."""

from .engine.worker import Consumer, report
from .options import Config

__all__ = ["Consumer", "Config", "report"]

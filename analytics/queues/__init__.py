"""Queues the consumer drains.  :class:`MemoryQueue` is the default; :class:`SQLiteQueue` is the durable spool."""

from .memory import MemoryQueue
from .sqlite import SQLiteQueue

__all__ = ["MemoryQueue", "SQLiteQueue"]

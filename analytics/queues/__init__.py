"""Queues the consumer drains.  :class:`MemoryQueue` is the default."""

from .memory import MemoryQueue

__all__ = ["MemoryQueue"]

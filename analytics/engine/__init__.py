"""The background engine: worker threads that batch and deliver, and backpressure on producers."""

from .backpressure import Backpressure

__all__ = ["Backpressure"]

"""The background engine.

* :mod:`~analytics.engine.worker`: the worker threads (batch choice, flush
  targets, the shutdown deadline, the pool growing with a backlog) and the
  accounting of every message;
* :mod:`~analytics.engine.delivery`: one batch to one outcome (body,
  compression, headers, attempts, retries, 413 splits, per-item results);
* :mod:`~analytics.engine.backpressure`: producers slowed to the delivery rate.
"""

from .backpressure import Backpressure
from .delivery import Delivery
from .worker import Consumer, report

__all__ = ["Backpressure", "Consumer", "Delivery", "report"]

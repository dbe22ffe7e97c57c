"""The background engine.

* :mod:`~analytics.engine.worker`: the worker threads (batch choice, flush
  targets, the shutdown deadline, the pool growing with a backlog) and the
  accounting of every message;
* :mod:`~analytics.engine.delivery`: one batch to one outcome (body,
  compression, headers, attempts, retries, 413 splits, per-item results);
* :mod:`~analytics.engine.backpressure`: producers slowed to the delivery rate;
* :mod:`~analytics.engine.clock`: the time all of them read and wait on
  (``Client(clock=...)``; a fake clock in tests).
"""

from .backpressure import Backpressure
from .delivery import Delivery
from .worker import Consumer, report

__all__ = ["Backpressure", "Consumer", "Delivery", "report"]

"""The background engine.

* :mod:`~analytics.engine.process`: one client's engine in one process (its
  queue, consumer, counters, transport and exit hook; a forked child makes
  its own), which the client puts each encoded call into;
* :mod:`~analytics.engine.worker`: the worker threads (batch choice, flush
  targets, the shutdown deadline, the pool growing with a backlog);
* :mod:`~analytics.engine.accounts`: the accounting of every message taken
  (the batches in flight; delivered, failed, dropped or kept);
* :mod:`~analytics.engine.delivery`: one batch to one outcome (body,
  compression, headers, attempts, retries, 413 splits, per-item results);
* :mod:`~analytics.engine.backpressure`: producers slowed to the delivery rate;
* :mod:`~analytics.engine.clock`: the time all of them read and wait on
  (``Client(clock=...)``; a fake clock in tests), also :mod:`analytics.clock`.
"""

from .backpressure import Backpressure
from .delivery import Delivery
from .worker import Consumer, report

__all__ = ["Backpressure", "Consumer", "Delivery", "report"]

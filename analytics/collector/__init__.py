"""A local Customer.io Data Pipelines batch endpoint for tests, benchmarks and demos.

``with Collector() as c:`` serves ``POST /v1/batch`` on ``c.url`` (127.0.0.1, a
free port), validates and records what arrives, and can inject faults.  Run
``python -m analytics.collector`` to serve it from its own process.  Standard
library only.  See :mod:`analytics.collector.server` for the full contract
and the modules it is made of (:mod:`~analytics.collector.cdp` for ``/v1/batch``),
:mod:`analytics.collector.storage` for ``Collector(db_path=...)`` (records in
SQLite, kept across restarts) and :mod:`analytics.collector.inspector` for the
inspector page served at ``c.url + "/"`` (with :meth:`Collector.exchanges`, the
requests to every API it serves, as :class:`Exchange` records).
"""

from .server import Batch, Collector, Exchange, Refusal
from .storage import StoreError

__all__ = ["Collector", "Batch", "Refusal", "Exchange", "StoreError"]

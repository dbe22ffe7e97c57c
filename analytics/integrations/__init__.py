"""Optional integrations with other libraries, each behind its own extra.

* :mod:`analytics.integrations.opentelemetry` (extra ``otel``): the SDK's own
  health — :meth:`analytics.Client.stats` — as OpenTelemetry metrics.
* :mod:`analytics.integrations.celery` (extra ``celery``): Celery's prefork
  pool processes drain their events at shutdown, optionally flush per task.

Nothing here is imported by ``import analytics``: an integration imports the
library it integrates with, which the plain install does not have.
"""

import sys
from types import ModuleType

__all__ = ["facade"]


def facade() -> ModuleType:
    """This SDK's module: its settings, ``flush()`` and ``default_client`` (``analytics``, or
    ``customerio.analytics`` when a package of the application's own is named ``analytics``)."""
    return sys.modules[__name__.rpartition(".")[0]]  # the parent package: imported before this one

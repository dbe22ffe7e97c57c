"""Customer.io clients.

``customerio.analytics`` *is* the top-level :mod:`analytics` module (the same
object, one set of settings, one shared client), so both of these work::

    from customerio import analytics
    import analytics

``from customerio.analytics.client import Client`` and the other submodules
resolve to the same objects too.

When a package of your own named ``analytics`` (a Django app, say) comes first
on ``sys.path``, ``import analytics`` gives yours and ``from customerio import
analytics`` still gives this SDK: it is then loaded from its own directory
under the name ``customerio.analytics`` (its submodules as
``customerio.analytics.<name>``).

The Track API client is compatible with the official ``customerio`` package::

    from customerio import CustomerIO, Regions, CustomerIOException

See :mod:`customerio.track` (v1 calls, ``batch()``, ``send_entity()``),
:mod:`customerio.v2` (typed builders for v2 operations) and
:mod:`customerio.webhooks` (``validate_signature``).

asyncio and the App API, in the style of async-customerio::

    from customerio import AsyncCustomerIO, APIClient, AsyncAPIClient, SendEmailRequest

:mod:`customerio.aio` (:class:`AsyncCustomerIO`: the Track API client,
awaited; needs the ``async`` extra), :mod:`customerio.app` (:class:`APIClient`:
customers, segments, transactional sends; request objects),
:mod:`customerio.app_aio` (:class:`AsyncAPIClient`),
:mod:`customerio.retry` (the retry-strategy protocol, :class:`BackoffRetry`,
:class:`RetryableError`) and :mod:`customerio.errors` (the exceptions).  What
each API retries is one table, :mod:`analytics.clients.retryable`.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any, Optional, Sequence

_ALIAS = __name__ + ".analytics"
#: This distribution's ``analytics`` package: the directory beside this one (in site-packages
#: for a normal install, in the source tree for an editable one).
_OURS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analytics")


class _SameModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``customerio.analytics.<any submodule>`` the very module ``analytics.<submodule>``.

    Without it the import system would load a second copy of a submodule the
    first time it is imported under the ``customerio.analytics`` name (its
    parent's ``__path__`` is analytics' own), and objects of the two copies
    would not be the same classes.  Every submodule is covered, when it is
    first imported, and nothing is imported before it is asked for.
    """

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if not fullname.startswith(_ALIAS + "."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module("analytics" + spec.name[len(_ALIAS):])

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the module was imported under its own name."""


def _is_ours(origin: Optional[str]) -> bool:
    return origin is not None and os.path.normcase(os.path.realpath(os.path.dirname(origin))) == \
        os.path.normcase(os.path.realpath(_OURS))


def _top_level_is_ours() -> bool:
    """Whether ``import analytics`` gives this distribution's package (and not, say, a Django app
    of the user's called ``analytics`` that comes first on ``sys.path``)."""
    loaded = sys.modules.get("analytics")
    if loaded is not None:
        return _is_ours(getattr(loaded, "__file__", None))
    try:
        spec = importlib.util.find_spec("analytics")  # finds, imports nothing
    except (ImportError, ValueError):
        return False
    return spec is not None and _is_ours(spec.origin)


def _load_ours_as_alias() -> types.ModuleType:
    """Load this distribution's package under the name ``customerio.analytics`` (its submodules
    then load as ``customerio.analytics.<name>`` from its directory, by the usual path search)."""
    spec = importlib.util.spec_from_file_location(
        _ALIAS, os.path.join(_OURS, "__init__.py"), submodule_search_locations=[_OURS])
    if spec is None or spec.loader is None:  # pragma: no cover - the file was just found
        raise ImportError(f"cannot load cdp-relay's analytics package from {_OURS}", name=_ALIAS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_ALIAS] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(_ALIAS, None)
        raise
    return sys.modules[_ALIAS]


if not os.path.isfile(os.path.join(_OURS, "__init__.py")) or _top_level_is_ours():
    # The usual case: ``import analytics`` is this SDK, and customerio.analytics is that module.
    import analytics

    sys.modules[_ALIAS] = analytics
    sys.meta_path.insert(0, _SameModule())
else:
    # A top-level ``analytics`` of the user's comes first on sys.path: ``import analytics`` stays
    # theirs, and ``from customerio import analytics`` gives this SDK, loaded under our own name.
    analytics = _load_ours_as_alias()  # the same package, named customerio.analytics

from .track import (  # noqa: E402  (after the alias above, which must come first)
    CIOID,
    EMAIL,
    ID,
    BatchResult,
    CustomerIO,
    CustomerIOException,
    CustomerIOValidationError,
    ItemError,
    Region,
    Regions,
)
from . import v2  # noqa: E402
from .webhooks import validate_signature  # noqa: E402
from .retry import (  # noqa: E402
    AsyncBackoffRetry,
    AsyncRetryStrategy,
    BackoffRetry,
    RetryableError,
    RetryStrategy,
)
from .aio import AsyncCustomerIO  # noqa: E402
from .app import (  # noqa: E402
    APIClient,
    SendEmailRequest,
    SendInboxMessageRequest,
    SendPushRequest,
    SendSMSRequest,
)
from .app_aio import AsyncAPIClient  # noqa: E402

__all__ = [
    "analytics",
    "CustomerIO",
    "CustomerIOException",
    "CustomerIOValidationError",
    "Regions",
    "Region",
    "BatchResult",
    "ItemError",
    "ID",
    "EMAIL",
    "CIOID",
    "v2",
    "validate_signature",
    "AsyncCustomerIO",
    "APIClient",
    "AsyncAPIClient",
    "SendEmailRequest",
    "SendPushRequest",
    "SendSMSRequest",
    "SendInboxMessageRequest",
    "RetryStrategy",
    "AsyncRetryStrategy",
    "BackoffRetry",
    "AsyncBackoffRetry",
    "RetryableError",
]

"""Context for everything sent inside a block or a request, kept in a :mod:`contextvars` variable.

:func:`request_context` sets Segment ``context`` fields (``ip``,
``userAgent``, ``page``, ``locale``, ``traits``, ``groupId``...) for every
message built inside the ``with`` block, by any client, and optionally the
identity to use when a call gives none::

    from analytics.context import request_context

    with request_context({"ip": "203.0.113.7", "userAgent": ua}, user_id=request.user.pk):
        analytics.track(event="Checkout Started")       # userId and context from the block

Each message's ``context`` is, from the weakest to the strongest: the
library's own ``library`` field, the client's ``global_context`` option, the
enclosing blocks (the inner one wins), then the call's ``context`` argument.
Fields are merged at the top level only: a block's ``page`` replaces an outer
``page`` as a whole.  The identity of a block is used only when the call gives
neither ``user_id`` nor ``anonymous_id``.

Because the value lives in a :class:`contextvars.ContextVar`, each thread and
each asyncio task sees its own: a block in one request never leaks into
another running at the same time, and a task started inside a block starts
with a copy of it.  The framework integrations in
:mod:`analytics.integrations` open one block per request.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

from .errors import InvalidMessageError

log = logging.getLogger("customerio.analytics")

__all__ = ["request_context", "current", "Scope"]


class _Lazy:
    """An identity read when a call first needs it (at most once per block), such as a web
    framework's signed-in user; a failure or a bad value counts as no identity (logged)."""

    __slots__ = ("read", "field", "value", "done")

    def __init__(self, read: Callable[[], Any], field: str) -> None:
        self.read, self.field = read, field
        self.value: Optional[str] = None
        self.done = False

    def get(self) -> Optional[str]:
        if not self.done:
            self.done = True
            try:
                self.value = _identity(self.read(), self.field)
            except Exception as exc:
                log.warning("request_context: reading %s failed (%s); the call is sent without it", self.field, exc)
        return self.value


class Scope(NamedTuple):
    """What the enclosing blocks set: ``context`` fields and a default identity."""

    context: Mapping[str, Any]
    user_id: Any = None  # a string, None, or read when first needed
    anonymous_id: Any = None

    def identity(self) -> Tuple[Optional[str], Optional[str]]:
        """``(user_id, anonymous_id)`` for a call that gave neither."""
        uid, aid = self.user_id, self.anonymous_id
        return (uid.get() if isinstance(uid, _Lazy) else uid), (aid.get() if isinstance(aid, _Lazy) else aid)


_scope: "contextvars.ContextVar[Optional[Scope]]" = contextvars.ContextVar("cdp_relay_scope", default=None)


def current() -> Optional[Scope]:
    """The scope in effect here, or ``None`` outside every block (a single lookup: on the hot path)."""
    return _scope.get()


def _identity(value: Any, field: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidMessageError(f"request_context: {field} must be a string or an integer, "
                                  f"not {type(value).__qualname__}", field)
    text = str(value)
    return text or None


def _given_identity(value: Any, field: str) -> Any:
    return _Lazy(value, field) if callable(value) else _identity(value, field)


@contextmanager
def request_context(
    fields: Optional[Mapping[str, Any]] = None,
    *,
    user_id: Any = None,
    anonymous_id: Any = None,
    **more: Any,
) -> Iterator[Scope]:
    """Set ``context`` fields (and a default identity) for every message built inside the block.

    ``fields`` and the keyword arguments are Segment context fields
    (``request_context(ip="203.0.113.7")`` is ``request_context({"ip":
    "203.0.113.7"})``); they are merged over the enclosing blocks' fields.
    ``user_id``/``anonymous_id`` (a string or an integer, or a function
    returning one or ``None``, called when a call first needs it) are used by
    calls that give neither.  Yields the :class:`Scope` in effect inside.

    Raises :class:`~analytics.errors.InvalidMessageError` at once for fields
    that are not a mapping with string keys, or an identity of another type.
    """
    if fields is not None and not isinstance(fields, Mapping):
        raise InvalidMessageError(f"request_context: fields must be a mapping, not {type(fields).__qualname__}",
                                  "context")
    given: Dict[str, Any] = {**(fields or {}), **more}
    bad = [key for key in given if not isinstance(key, str)]
    if bad:
        raise InvalidMessageError(f"request_context: context keys must be strings, not {bad[0]!r}", "context")
    outer = _scope.get()
    uid = _given_identity(user_id, "userId")
    aid = _given_identity(anonymous_id, "anonymousId")
    if outer is not None:
        given = {**outer.context, **given}
        if uid is None and aid is None:
            uid, aid = outer.user_id, outer.anonymous_id
    scope = Scope(given, uid, aid)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)

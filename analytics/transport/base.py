"""What the engine asks of a transport, and the adapter for users' objects.

The engine calls exactly the four methods of :class:`Transport`.  A user's
object passed as ``Client(transport=...)`` needs only ``post`` (and usually
``close``): :func:`as_transport` turns it into a full :class:`Transport` once,
when the client is made, so the engine never probes for optional methods.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Mapping, MutableMapping, NamedTuple, Optional, Protocol, Tuple, \
    runtime_checkable

from ..errors import ConfigurationError

__all__ = ["Response", "Headers", "Transport", "TransportLike", "BaseTransport", "as_transport"]


class Headers(MutableMapping[str, str]):
    """HTTP headers looked up without regard to case; each keeps the spelling it was last set with."""

    def __init__(self, data: Optional[Mapping[str, str]] = None, **kwargs: str) -> None:
        self._store: Dict[str, Tuple[str, str]] = {}  # lowercased name -> (name as set, value)
        self.update(data or {}, **kwargs)

    def __setitem__(self, key: str, value: str) -> None:
        self._store[key.lower()] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {k.lower(): v for k, v in self.items()} == {str(k).lower(): v for k, v in other.items()}

    def copy(self) -> "Headers":
        return Headers(self)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class Response(NamedTuple):
    """What came back: status, headers (case-insensitive mapping) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@runtime_checkable
class TransportLike(Protocol):
    """The least ``Client(transport=...)`` accepts: an object with ``post``.

    ``close()``, ``abort()`` and ``after_fork()`` are used when it has them
    (see :func:`as_transport`).
    """

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[Dict[str, str]]
    ) -> Response:
        """POST ``body`` to ``url``; raise :class:`~analytics.TransportError` when there is no answer."""


@runtime_checkable
class Transport(Protocol):
    """Everything the engine calls on a transport.  One attempt per ``post``: no retries.

    ``post`` may be called from several worker threads at once.  ``abort`` is
    called from another thread (at the shutdown deadline) and must make the
    requests in flight at that moment fail soon with
    :class:`~analytics.TransportError`; requests made after it work again.
    ``after_fork`` is called in a forked child before its first request: drop
    the connections inherited from the parent without shutting them down (the
    parent still uses them).  ``close`` releases everything; a ``post`` after
    it may open new connections, and a second ``close`` is harmless.
    """

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[Dict[str, str]]
    ) -> Response:
        """POST ``body`` (the bytes as sent, gzipped or not) to ``url`` within ``timeout`` seconds.

        Returns the answer whatever its status; raises
        :class:`~analytics.TransportError` when there is none (refused,
        reset, timed out, aborted).
        """

    def close(self) -> None:
        """Release connections; idempotent."""

    def abort(self) -> None:
        """From another thread: make the requests in flight fail now; later requests work again."""

    def after_fork(self) -> None:
        """In a forked child: forget inherited connections without touching the parent's."""


class BaseTransport:
    """A base for transports: subclasses write ``post``; ``close``, ``abort`` and ``after_fork`` do nothing.

    Override ``abort`` if a request can hang (the shutdown deadline then
    reports such a batch as lost without waiting for its answer), and
    ``after_fork`` if the object holds sockets and may live across ``os.fork``.
    """

    def post(
        self, url: str, body: bytes, headers: Dict[str, str], timeout: float, proxies: Optional[Dict[str, str]]
    ) -> Response:
        """Send one request; subclasses must override it."""
        raise NotImplementedError(f"{type(self).__name__} must define post()")

    def close(self) -> None:
        """Nothing to release."""

    def abort(self) -> None:
        """Nothing can be interrupted."""

    def after_fork(self) -> None:
        """Nothing inherited to forget."""


class _Adapted(BaseTransport):
    """A user's object with ``post`` (and perhaps some of the other three), as a full :class:`Transport`."""

    def __init__(self, inner: object, methods: Dict[str, Callable[..., object]]) -> None:
        self.inner = inner
        self.post = methods["post"]  # type: ignore[method-assign,assignment]
        for name in ("close", "abort", "after_fork"):
            if name in methods:
                setattr(self, name, methods[name])

    def __repr__(self) -> str:
        return f"<transport {self.inner!r}>"


def as_transport(obj: object) -> Transport:
    """``obj`` as a full :class:`Transport`, for ``Client(transport=obj)``.

    An object that already has all four methods is returned as it is;
    one with only ``post`` (and some of ``close``, ``abort``, ``after_fork``)
    is wrapped, the missing methods doing nothing.  Raises
    :class:`~analytics.ConfigurationError` naming ``transport`` when ``post``
    is missing or one of the four names is not callable.
    """
    methods: Dict[str, Callable[..., object]] = {}
    for name in ("post", "close", "abort", "after_fork"):
        method = getattr(obj, name, None)
        if method is None and name != "post":
            continue
        if not callable(method):
            what = "has no post() method" if method is None else f"has a {name} that is not callable"
            raise ConfigurationError(
                f"transport must be an object with post(url, body, headers, timeout, proxies); "
                f"{type(obj).__name__} {what}"
            )
        methods[name] = method
    if len(methods) == 4:
        return obj  # type: ignore[return-value]
    return _Adapted(obj, methods)

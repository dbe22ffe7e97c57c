"""The one exception tree of the library.

Everything the library raises, or hands to ``on_error``, is an
:class:`AnalyticsError`::

    AnalyticsError
    ├── ConfigurationError (ValueError, AssertionError)   a Client option or module setting is wrong,
    │                                                     or write_key is missing
    ├── SpoolError                           the durable spool cannot be used (the client falls back)
    ├── InvalidMessageError (ValueError, AssertionError)  a call's arguments are wrong; raised at the call site
    │   ├── UnserializableValueError (TypeError)   a value JSON cannot carry (``.path`` names it)
    │   ├── MessageTooLargeError (RuntimeError)    the encoded message is over 32 KB
    │   └── UnsupportedCallError                   the destination API cannot express this call
    ├── ServiceError                         a request of a direct API client (Track API, App API, Bloomreach)
    │                                        failed (customerio.errors adds the Customer.io clients' subclasses)
    └── DeliveryError                        a message did not reach the server; given to ``on_error``
        ├── APIError                         the server answered with an error status
        ├── TransportError                   no answer: connection refused or reset, timeout
        ├── QueueFullError                   dropped because the queue was full
        └── ShutdownError                    dropped at the shutdown deadline, or sent after shutdown

The built-in bases are those of the official SDK (customerio-cdp-analytics,
Segment's analytics-python), so code written for it catches ours: it raises
``AssertionError`` for a missing write key and for bad arguments, and
``RuntimeError`` for a message over 32 KB.  (They are classes here, never
``assert`` statements: ``python -O`` changes nothing.)

Every :class:`DeliveryError` carries ``reason``, one of the strings in
:data:`REASONS`, the same keys :meth:`analytics.Client.stats` counts by.

Nothing here ever includes the write key in its message.
"""

from __future__ import annotations

from typing import Any, Optional

from .retry import retryable_status

__all__ = [
    "AnalyticsError",
    "ConfigurationError",
    "SpoolError",
    "InvalidMessageError",
    "UnserializableValueError",
    "MessageTooLargeError",
    "UnsupportedCallError",
    "ServiceError",
    "DeliveryError",
    "APIError",
    "TransportError",
    "QueueFullError",
    "ShutdownError",
    "REASONS",
]

#: Why a message was not delivered.  ``rejected``: the server refused it and
#: retrying cannot help (4xx other than 408/429).  ``retries_exhausted``: every
#: attempt failed or the retry time ran out.  ``too_large``: the server refused
#: it as too large even alone (413).  ``queue_full``: dropped at the call site.
#: ``shutdown``: still queued or retrying when the shutdown deadline passed, or
#: sent to a client that was already shut down.
REASONS = ("rejected", "retries_exhausted", "too_large", "queue_full", "shutdown")
#: The keys of ``stats()["failed"]``: the reasons of a message sent and not delivered.
FAILED_REASONS = REASONS[:3]
#: The keys of ``stats()["dropped"]``: the reasons of a message never sent, including
#: ``before_send`` (the hook returned None) and ``before_send_error`` (the hook raised).
DROPPED_REASONS = REASONS[3:] + ("before_send", "before_send_error")


class AnalyticsError(Exception):
    """Root of every exception this library raises or reports."""


class ConfigurationError(AnalyticsError, ValueError, AssertionError):
    """A Client option or module setting has a wrong type or value, or ``write_key`` is missing.

    Also an ``AssertionError``, what the official SDK raises for a missing write key.
    """


class SpoolError(AnalyticsError):
    """The SQLite spool could not be opened or written (read-only path, full disk, all slots taken).

    The client does not crash on it: it logs the error, keeps it as
    ``client.spool_error`` and carries on with messages in memory.  Pass
    ``spool_required=True`` to have ``Client(...)`` raise it instead.
    """


class InvalidMessageError(AnalyticsError, ValueError, AssertionError):
    """A call's arguments are wrong: a missing id, a field of the wrong type.

    Also an ``AssertionError``, what the official SDK raises for bad arguments.

    ``field`` names the offending argument as it appears on the wire
    (``userId``, ``event``, ``properties``...).
    """

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


class UnserializableValueError(InvalidMessageError, TypeError):
    """A value cannot be turned into JSON; ``path`` says where it is (``properties.cart[2]``)."""

    def __init__(self, message: str, path: str = "") -> None:
        field = path.split(".", 1)[0].split("[", 1)[0] or None
        super().__init__(message, field)
        self.path = path


class MessageTooLargeError(InvalidMessageError, RuntimeError):
    """The message, encoded, is over the per-message limit (32,768 bytes).

    Also a ``RuntimeError``, what the official SDK raises there.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message is {size} bytes encoded, over the {limit}-byte limit per message; "
            "it was not queued"
        )
        self.size = size
        self.limit = limit


class DeliveryError(AnalyticsError):
    """A message did not reach the server.  Passed to ``on_error(error, items)``.

    ``reason`` is one of :data:`REASONS`; ``attempts`` is how many requests were
    made for the batch (0 when it was never sent).
    """

    reason: str = "retries_exhausted"

    def __init__(self, message: str, reason: Optional[str] = None, attempts: int = 0) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.attempts = attempts
        #: Why retrying stopped, when it did ("after 11 attempts"); empty otherwise.
        self.gave_up = ""

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (gave up {self.gave_up})" if self.gave_up else text


class APIError(DeliveryError):
    """The server answered with an error status.

    Keeps the peers' attributes ``status``, ``code`` and ``message``, and adds
    ``body`` (the response text, cut to 2,000 characters) and ``retry_after``
    (seconds the server asked us to wait, or ``None``).
    """

    def __init__(
        self,
        status: int,
        code: str = "unknown",
        message: str = "",
        body: str = "",
        retry_after: Optional[float] = None,
        reason: Optional[str] = None,
        attempts: int = 0,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.body = body[:2000]
        self.retry_after = retry_after
        super().__init__(self._describe(), reason, attempts)

    def _describe(self) -> str:
        text = self.message or self.body or "no body"
        return f"[customer.io] HTTP {self.status} {self.code}: {text}"

    def __str__(self) -> str:
        text = self._describe()
        return f"{text} (gave up {self.gave_up})" if self.gave_up else text

    @property
    def retryable(self) -> bool:
        """True for 408, 429 and 5xx: the same request may succeed later."""
        return retryable_status(self.status)


class TransportError(DeliveryError):
    """The request got no answer: connection refused or reset, DNS, TLS, timeout."""

    def __init__(self, message: str, cause: Optional[BaseException] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.__cause__ = cause


class QueueFullError(DeliveryError):
    """The queue held ``max_queue_size`` messages; this one was dropped."""

    reason = "queue_full"


class ShutdownError(DeliveryError):
    """The client was shut down before the message could be sent."""

    reason = "shutdown"


class UnsupportedCallError(InvalidMessageError):
    """The client's destination API has no way to express this call (for example
    ``alias`` on Bloomreach); raised at the call site, nothing is queued."""


class ServiceError(AnalyticsError):
    """A request made by one of the direct API clients failed.

    ``status`` is the HTTP status (0 when no answer came: connection refused or
    reset, timeout), ``body`` the response text (cut to 2,000 characters),
    ``retry_after`` the seconds a 429/503 asked to wait (or ``None``) and
    ``attempts`` how many requests were made.  ``retryable`` says whether the
    same request may succeed if sent again, as the API's row of the table in
    :mod:`analytics.clients.retryable` decides (given by the client that made
    the request; otherwise the general rule of :func:`analytics.retry.retryable_status`,
    no answer counting as retryable).
    """

    def __init__(
        self,
        message: str,
        status: int = 0,
        body: str = "",
        retry_after: Optional[float] = None,
        attempts: int = 0,
        *,
        retryable: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body[:2000]
        self.retry_after = retry_after
        self.attempts = attempts
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed (see the class doc)."""
        if self._retryable is not None:
            return self._retryable
        return self.status == 0 or retryable_status(self.status)

"""The exceptions of the Customer.io clients, in one module that imports no other of this package.

::

    analytics.errors.ServiceError           a request of a direct API client failed
    └── CustomerIOException                 a Track API or App API call failed (bad arguments, a non-2xx
        │                                   answer, no answer after the retries)
        ├── CustomerIOValidationError       an argument or an operation is invalid; nothing was sent
        │                                   (also an analytics.errors.InvalidMessageError)
        └── RetryableError                  one attempt failed in a way that may pass if sent again

They are re-exported by :mod:`customerio`, :mod:`customerio.track` and
:mod:`customerio.retry`, where code written for earlier versions finds them.
"""

from __future__ import annotations

from typing import Any, Optional

from .analytics.errors import InvalidMessageError, ServiceError

__all__ = ["CustomerIOException", "CustomerIOValidationError", "RetryableError", "customerio_error"]


class CustomerIOException(ServiceError):
    """A Track API or App API call failed: bad arguments, a non-2xx answer, or no answer after the retries.

    Raised with the HTTP ``status`` (0 when no answer came), the response
    ``body``, ``retry_after`` and ``attempts`` (see
    :class:`analytics.errors.ServiceError`) when it comes from a request.
    """


class CustomerIOValidationError(CustomerIOException, InvalidMessageError):
    """An argument or an operation is invalid; nothing was sent.

    ``field`` names the offending field (``identifiers.id``, ``name``...),
    ``reason`` is ``"required"`` or ``"invalid"``, and ``index`` is the
    operation's index in a ``batch()`` call (else ``None``).
    """

    def __init__(self, message: str, field: Optional[str] = None, reason: str = "invalid",
                 index: Optional[int] = None) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.index = index


class RetryableError(CustomerIOException):
    """One attempt failed in a way that may pass: no answer, or a status the API's row of
    :mod:`analytics.clients.retryable` retries (408, 429, 502, 503, 504 everywhere; every other
    5xx too, 500 included, on the Track API).

    ``status`` is 0 when no answer came, ``body`` is the response text,
    ``retry_after`` the seconds a ``Retry-After`` header asked for (or ``None``),
    ``attempts`` how many attempts were made when a strategy gave up.
    ``retryable`` is always True.
    """

    def __init__(self, message: str, status: int = 0, body: str = "", retry_after: Optional[float] = None,
                 attempts: int = 0, retryable: Optional[bool] = True) -> None:
        super().__init__(message, status, body, retry_after, attempts, retryable=True)


def customerio_error(message: str, *, retryable: bool, **details: Any) -> CustomerIOException:
    """The exception of one failed attempt of a Customer.io client: :class:`RetryableError` when
    the API's retry table says it may pass, else :class:`CustomerIOException`
    (an :data:`analytics.clients.retryable.ErrorFactory`)."""
    if retryable:
        return RetryableError(message, **details)
    return CustomerIOException(message, retryable=False, **details)

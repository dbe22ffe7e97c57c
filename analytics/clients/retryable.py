"""What each direct API client retries: one table, one decision per failed attempt.

One attempt (:mod:`analytics.clients.http`) either gets an answer or does
not; the row of the API it was sent to decides whether the failure may pass
if the same request is sent again.  The executor (:mod:`analytics.clients.retrying`)
then retries exactly those, with backoff.  The sync and async clients of one
API use the same row, whether they retry with the built-in executor or with a
``retry_strategy`` of the user's (which is handed the same attempts)::

    API (row)            retried statuses           no answer before the request    no answer after it
                                                    could be written                may have been written
    -------------------  -------------------------  ------------------------------  ---------------------------
    Track v1             408, 429, 500-599          retried                         retried (events carry an id)
    Track v2 batch       408, 429, 500-599          retried                         retried (operations carry ids)
    App API              408, 429, 502, 503, 504    retried                         retried, except the send
                                                                                    calls (no idempotency key)
    Bloomreach           408, 429, 500-599          retried                         retried (batch commands
                                                                                    carry a command_id)

Track v1 is ``CustomerIO``'s and ``AsyncCustomerIO``'s v1 calls; Track v2
batch their ``batch()`` and ``send_entity()``; App API ``APIClient`` and
``AsyncAPIClient``; Bloomreach ``BloomreachClient`` (the engine's
destinations retry in the engine, by :func:`analytics.retry.retryable_status`).

Everything else (400, 401, 403, 404, 413, 422...) raises at once.  Why 500
differs: the Track APIs and Bloomreach answer 500 for a passing fault (the
official Track client retries it too), while the App API documents 500 for a
request that breaks a template (a Liquid error), which sending again repeats.

The rows are :data:`TRACK_V1`, :data:`TRACK_V2_BATCH`, :data:`APP_API` and
:data:`BLOOMREACH` (all in :data:`RULES`), built on
:func:`analytics.retry.retryable_status`, the engine's rule.  A failed
attempt becomes an exception through :func:`status_error` or
:func:`no_answer_error`, made by the client's :data:`ErrorFactory` with
``retryable`` set from the row; a ``Retry-After`` is kept on it.
"""

from __future__ import annotations

import json
from typing import Any, Dict, FrozenSet, NamedTuple, Optional, Protocol

from ..errors import ServiceError
from ..retry import parse_retry_after, retryable_status

__all__ = [
    "RetryRule",
    "ErrorFactory",
    "TRACK_V1",
    "TRACK_V2_BATCH",
    "APP_API",
    "BLOOMREACH",
    "RULES",
    "status_error",
    "no_answer_error",
    "error_detail",
    "service_error",
]

#: Every HTTP status :func:`analytics.retry.retryable_status` calls retryable: 408, 429, 500-599.
ANY_PASSING_FAULT: FrozenSet[int] = frozenset(s for s in range(100, 600) if retryable_status(s))


class RetryRule(NamedTuple):
    """One row of the table: what one API retries."""

    api: str  #: the API's name, as in the table
    statuses: FrozenSet[int]  #: the statuses that may pass if the request is sent again
    resend_unanswered: bool = True  #: whether a request that may have been written (no answer) is sent again

    def retries_status(self, status: int) -> bool:
        """Whether an answer with ``status`` is worth another attempt."""
        return status in self.statuses

    def retries_no_answer(self, maybe_sent: bool, idempotent: bool = True) -> bool:
        """Whether a request that got no answer is sent again: always when it cannot have left
        (refused, DNS, TLS, connect timeout); when it may have, only for an idempotent call."""
        return not maybe_sent or (self.resend_unanswered and idempotent)


TRACK_V1 = RetryRule("Track v1", ANY_PASSING_FAULT)
TRACK_V2_BATCH = RetryRule("Track v2 batch", ANY_PASSING_FAULT)
APP_API = RetryRule("App API", frozenset({408, 429, 502, 503, 504}))
BLOOMREACH = RetryRule("Bloomreach", ANY_PASSING_FAULT)

#: The table, by API name.
RULES: Dict[str, RetryRule] = {rule.api: rule for rule in (TRACK_V1, TRACK_V2_BATCH, APP_API, BLOOMREACH)}


class ErrorFactory(Protocol):
    """Makes the exception of one failed attempt: ``factory(message, retryable=..., status=...,
    body=..., retry_after=..., attempts=...)`` returns a :class:`~analytics.errors.ServiceError`."""

    def __call__(self, message: str, *, retryable: bool, **details: Any) -> ServiceError:
        ...  # pragma: no cover


def service_error(message: str, *, retryable: bool, **details: Any) -> ServiceError:
    """The :data:`ErrorFactory` that makes a plain :class:`~analytics.errors.ServiceError`."""
    return ServiceError(message, retryable=retryable, **details)


def error_detail(text: str) -> str:
    """The human-readable reason in an error body: the App API's ``{"errors": [{"detail"}]}``
    or ``{"meta": {"error"}}``, the Track API's ``{"errors": [{"message"}]}``, else the text."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(doc, dict):
        meta = doc.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("error"), str):
            return str(meta["error"])
        errors = doc.get("errors")
        if isinstance(errors, list):
            parts = [str(item.get("detail") or item.get("message") or item) if isinstance(item, dict) else str(item)
                     for item in errors[:5]]
            if parts:
                return "; ".join(parts)
    return text[:500]


def status_error(rule: RetryRule, factory: ErrorFactory, status: int, method: str, url: str, text: str,
                 retry_after_header: Optional[str]) -> ServiceError:
    """The exception for an answer with a non-2xx ``status`` (retryable as ``rule`` says)."""
    detail = error_detail(text) if text else "no body"
    return factory(f"{status}: {method} {url}: {detail}", retryable=rule.retries_status(status), status=status,
                   body=text, retry_after=parse_retry_after(retry_after_header), attempts=1)


def no_answer_error(rule: RetryRule, factory: ErrorFactory, method: str, url: str, exc: BaseException, *,
                    maybe_sent: bool, idempotent: bool = True) -> ServiceError:
    """The exception for no answer (status 0).  ``maybe_sent``: the request may have been
    written before the failure; then a non-idempotent call is not sent again."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    retry = rule.retries_no_answer(maybe_sent, idempotent)
    message = f"{method} {url}: no answer ({what})"
    if not retry:
        message += ("; the request may have been delivered, so it is not sent again "
                    "(this endpoint has no idempotency key)")
    error = factory(message, retryable=retry, attempts=1)
    error.__cause__ = exc
    return error

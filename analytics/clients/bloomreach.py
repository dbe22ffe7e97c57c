"""A client for the Bloomreach Engagement (formerly Exponea) Tracking API.

::

    from analytics.bloomreach import BloomreachClient, customers, event

(:mod:`analytics.bloomreach` re-exports this module, :mod:`analytics.clients.bloomreach`.)

    with BloomreachClient("PROJECT_TOKEN", api_key_id="KEY_ID", api_secret="SECRET") as br:
        result = br.batch([
            customers({"registered": "jane@example.com"}, {"first_name": "Jane"}),
            event({"registered": "jane@example.com"}, "purchase", {"total_price": 10}),
        ])
        for failed in result.failed:
            print(failed.index, failed.errors)

What it does, and why:

* **Requests.**  ``POST {base_url}/track/v2/projects/{project_token}/batch``
  with ``{"commands": [...]}``; the single routes ``POST .../customers``,
  ``POST .../customers/events`` and ``GET .../system/time`` for one call.
* **Auth.**  Private access, HTTP Basic with the API key id and secret, or
  public access, ``Authorization: Token <api_token>``: exactly one of the two
  (:class:`~analytics.errors.ConfigurationError` otherwise).
* **Limits, checked before anything is sent.**  At most
  :data:`MAX_COMMANDS` (50) commands go in one request: a longer list is split
  into several requests, in order.  Each command, encoded as it is sent, must be
  smaller than :data:`MAX_COMMAND_BYTES`, and each property value smaller than
  :data:`MAX_PROPERTY_BYTES`; one that is not raises
  :class:`InvalidCommandError` naming the command's index and the property,
  and no request is made.  (The documentation says "less than 800 KBytes"
  and "less than 16 KBytes"; the limits read those as 800,000 and 16,000
  bytes, the stricter reading.)
* **Results.**  Bloomreach answers a batch with HTTP 200 and one result per
  command, in the order of the commands.  :meth:`BloomreachClient.batch`
  returns a :class:`BatchResult` with one :class:`CommandResult` per command
  given, whatever the number of requests it took.  A command that comes back
  ``success: false`` is reported there and **not retried**: the documentation
  says that retrying it cannot help.
* **Retries.**  No answer, 408, 429 and 5xx are retried with jittered
  exponential backoff that honours ``Retry-After`` (a 429 means Bloomreach
  ignored the data), as set by ``retry`` (:class:`~analytics.retry.RetryPolicy`);
  the ``Bloomreach`` row of :mod:`analytics.clients.retryable`.
  Any other status (400, 401, 403, 404...) raises :class:`BloomreachError`
  at once with the status and the body.
* **command_id.**  Every command sent by :meth:`BloomreachClient.batch`
  carries one; one is made (32 hex digits of a random UUID) when the command
  has none.  The commands given are not changed.
* **Timestamps** are sent as Unix seconds (a float).  A ``datetime`` without a
  time zone is taken as UTC, a ``date`` as midnight UTC; numbers are taken as
  seconds already; ISO-8601 strings are accepted too.

This module never logs or puts in an error message the API secret or token.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union, overload
from urllib.parse import quote

import requests

from .._checks import http_url, number, redact_url
from .._checks import quote as quote_value
from ..encoding import dumps
from ..errors import ConfigurationError, InvalidMessageError, ServiceError, UnserializableValueError
from ..messages import parse_iso8601
from ..retry import RetryPolicy
from .auth import basic_auth
from .http import ConnectionOwner
from .jsonapi import JSONClient, JSONResponse
from .retryable import BLOOMREACH

__all__ = [
    "BloomreachClient",
    "BloomreachError",
    "InvalidCommandError",
    "BatchResult",
    "CommandResult",
    "customers",
    "event",
    "system_time",
    "unix_time",
    "check_properties",
    "auth_header",
    "project_route",
    "batch_body",
    "error_texts",
    "DEFAULT_BASE_URL",
    "MAX_COMMANDS",
    "MAX_COMMAND_BYTES",
    "MAX_PROPERTY_BYTES",
    "COMMAND_NAMES",
]

log = logging.getLogger("customerio.bloomreach")

#: The API base URL of the shared instance (many accounts have their own; it
#: is shown under Project settings > Access management > API).
DEFAULT_BASE_URL = "https://api.exponea.com"
#: The most commands Bloomreach takes in one batch request.
MAX_COMMANDS = 50
#: A command, encoded as sent (compact UTF-8 JSON), must be smaller than this.
MAX_COMMAND_BYTES = 800_000
#: Each property value, encoded as sent, must be smaller than this.
MAX_PROPERTY_BYTES = 16_000
#: The command names this module builds (the batch route accepts any Tracking API route name).
COMMAND_NAMES = ("customers", "customers/events", "system/time")

Command = Dict[str, Any]
Timestamp = Union[_dt.datetime, _dt.date, int, float, str]

# Timestamps above this are surely milliseconds (year 5138 in seconds).
_MAX_SECONDS = 1e11
_UTC = _dt.timezone.utc


class BloomreachError(ServiceError):
    """A Bloomreach request failed: refused (``status`` 4xx, ``body`` the answer),
    or no answer / 408 / 429 / 5xx until the retries ran out.

    Raised by :meth:`BloomreachClient.batch` part-way through a list longer than
    :data:`MAX_COMMANDS`, the requests before the failing one were answered:
    ``result`` is the :class:`BatchResult` of those commands (empty when the
    first request failed) and ``unanswered`` the indexes of the commands whose
    fate is unknown or that were never sent (the failing request's and all
    after it).  The single calls leave ``result`` None.
    """

    result: Optional["BatchResult"] = None
    unanswered: Sequence[int] = ()


class InvalidCommandError(InvalidMessageError):
    """A command given to :meth:`BloomreachClient.batch` cannot be sent; nothing was sent.

    ``index`` is the command's position in the list given (None for a single
    call), ``field`` the path of the offending value in the command
    (``data.properties.note``), and for a size problem ``size`` and ``limit``
    are the encoded size and the limit in bytes.
    """

    def __init__(
        self,
        message: str,
        field: Optional[str] = None,
        index: Optional[int] = None,
        size: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> None:
        super().__init__(message, field)
        self.index = index
        self.size = size
        self.limit = limit


# --- validation and command builders -----------------------------------------------


def unix_time(value: Timestamp, field: str = "timestamp") -> float:
    """``value`` as Unix seconds (a float), as Bloomreach wants timestamps.

    An aware ``datetime`` is converted exactly; a naive one is taken as UTC;
    a ``date`` is midnight UTC; an ISO-8601 string is parsed (no offset: UTC);
    an ``int``/``float`` is taken as seconds already.  Raises
    :class:`~analytics.errors.InvalidMessageError` naming ``field`` for any
    other type, a NaN or infinite number, or a number so large it must be
    milliseconds.
    """
    if isinstance(value, str):
        value = parse_iso8601(value, field)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            value = value.replace(tzinfo=_UTC)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC).timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMessageError(
            f"{field} must be a datetime, a date, Unix seconds or an ISO-8601 string, got {type(value).__name__}",
            field,
        )
    seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidMessageError(f"{field} must be a finite number, got {value!r}", field)
    if abs(seconds) >= _MAX_SECONDS:
        raise InvalidMessageError(f"{field} must be Unix seconds, not milliseconds: got {value!r}", field)
    return seconds


def _customer_ids(value: Any, field: str = "customer_ids") -> Dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidMessageError(
            f"{field} must be a dict of id name to id, such as {{'registered': 'jane@example.com'}}, "
            f"got {type(value).__name__}",
            field,
        )
    ids = dict(value)
    if not ids:
        raise InvalidMessageError(f"{field} must hold at least one id", field)
    for name, id_value in ids.items():
        if not isinstance(name, str) or not name:
            raise InvalidMessageError(f"{field}: id names must be non-empty strings, got {name!r}", field)
        if not isinstance(id_value, str):
            raise InvalidMessageError(
                f"{field}.{name} must be a string, got {type(id_value).__name__}", f"{field}.{name}"
            )
        if not id_value:
            raise InvalidMessageError(f"{field}.{name} must not be empty", f"{field}.{name}")
    return ids


def _properties(value: Any, field: str) -> Dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidMessageError(f"{field} must be a dict, got {type(value).__name__}", field)
    props = dict(value)
    for key in props:
        if not isinstance(key, str):
            raise InvalidMessageError(f"{field}: property names must be strings, got {key!r}", field)
    check_properties(props, field)
    return props


def _command_id(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidMessageError(f"command_id must be a non-empty string, got {value!r}", "command_id")
    return value


def _encode(value: Any, field: str) -> bytes:
    try:
        return dumps(value)
    except UnserializableValueError as exc:
        path = f"{field}.{exc.path}" if exc.path else field
        raise UnserializableValueError(f"{field}: {exc}", path) from None


def check_properties(properties: Mapping[str, Any], field: str = "properties") -> None:
    """Raise :class:`~analytics.errors.InvalidMessageError` if a property value,
    encoded, is :data:`MAX_PROPERTY_BYTES` or more (the message and ``field``
    name it: ``properties.note``).  Encodes the whole dict once; each value
    only when the whole is that large."""
    if not properties:
        return
    if len(_encode(properties, field)) < MAX_PROPERTY_BYTES:
        return
    problem = _large_property(properties, field)
    if problem is not None:
        path, size = problem
        raise InvalidMessageError(_property_text(path, size), path)


def _large_property(properties: Mapping[str, Any], field: str) -> Optional[Tuple[str, int]]:
    for key, value in properties.items():
        size = len(_encode(value, f"{field}.{key}"))
        if size >= MAX_PROPERTY_BYTES:
            return f"{field}.{key}", size
    return None


def _property_text(path: str, size: int) -> str:
    return (
        f"{path} is {size:,} bytes encoded; Bloomreach takes property values "
        f"smaller than {MAX_PROPERTY_BYTES:,} bytes"
    )


def _command(name: str, data: Dict[str, Any], command_id: Optional[str]) -> Command:
    cmd: Command = {"name": name, "data": data}
    cid = _command_id(command_id)
    if cid is not None:
        cmd["command_id"] = cid
    return cmd


def customers(
    customer_ids: Mapping[str, str],
    properties: Mapping[str, Any],
    update_timestamp: Optional[Timestamp] = None,
    command_id: Optional[str] = None,
) -> Command:
    """An "update customer properties" command (``name`` ``"customers"``).

    ``customer_ids``: at least one id, id name to string value
    (``{"registered": "jane@example.com", "cookie": "c-1"}``).  ``properties``:
    the properties to set.  ``update_timestamp`` (see :func:`unix_time`):
    Bloomreach only overwrites a property stored with an older time.
    Raises :class:`~analytics.errors.InvalidMessageError` naming the field.
    """
    data: Dict[str, Any] = {
        "customer_ids": _customer_ids(customer_ids),
        "properties": _properties(properties, "properties"),
    }
    if update_timestamp is not None:
        data["update_timestamp"] = unix_time(update_timestamp, "update_timestamp")
    return _command("customers", data, command_id)


def event(
    customer_ids: Mapping[str, str],
    event_type: str,
    properties: Optional[Mapping[str, Any]] = None,
    timestamp: Optional[Timestamp] = None,
    command_id: Optional[str] = None,
) -> Command:
    """An "add event" command (``name`` ``"customers/events"``).

    ``event_type`` is required (a non-empty string).  Without ``timestamp``
    Bloomreach uses the time it processes the command; batch commands are not
    run in order, so give one when the order matters.  Raises
    :class:`~analytics.errors.InvalidMessageError` naming the field.
    """
    data: Dict[str, Any] = {"customer_ids": _customer_ids(customer_ids)}
    if not isinstance(event_type, str) or not event_type:
        raise InvalidMessageError(f"event_type must be a non-empty string, got {event_type!r}", "event_type")
    data["event_type"] = event_type
    if timestamp is not None:
        data["timestamp"] = unix_time(timestamp, "timestamp")
    if properties is not None:
        data["properties"] = _properties(properties, "properties")
    return _command("customers/events", data, command_id)


def system_time(command_id: Optional[str] = None) -> Command:
    """A "system time" command: its result carries Bloomreach's clock as ``time``."""
    return _command("system/time", {}, command_id)


def project_route(project_token: Any, base_url: Any) -> Tuple[str, str, str]:
    """Check a project's settings: the token (stripped), the base URL (an http(s) URL, without a
    trailing slash) and the project's route prefix, ``/track/v2/projects/{project_token}``.

    Raises :class:`~analytics.errors.ConfigurationError` for a blank token or a base URL that
    is not an http(s) URL (shown without its credentials).
    """
    if not isinstance(project_token, str) or not project_token.strip():
        raise ConfigurationError("project_token must be a non-empty string")
    if not isinstance(base_url, str) or "://" not in base_url:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {quote_value(redact_url(base_url))}")
    token = project_token.strip()
    return token, http_url("base_url", base_url)[0].rstrip("/"), f"/track/v2/projects/{quote(token, safe='')}"


def auth_header(
    api_key_id: Optional[str] = None, api_secret: Optional[str] = None, api_token: Optional[str] = None
) -> str:
    """The ``Authorization`` value: ``Basic`` for a key id and secret, ``Token`` for an API token.

    Exactly one kind must be given, with non-empty strings; raises
    :class:`~analytics.errors.ConfigurationError` otherwise.
    """
    basic = api_key_id is not None or api_secret is not None
    if basic and api_token is not None:
        raise ConfigurationError("give either api_key_id and api_secret (private access) or api_token, not both")
    if api_token is not None:
        if not isinstance(api_token, str) or not api_token.strip():
            raise ConfigurationError("api_token must be a non-empty string")
        return f"Token {api_token.strip()}"
    if not basic:
        raise ConfigurationError("give api_key_id and api_secret (private access) or api_token (public access)")
    for name, value in (("api_key_id", api_key_id), ("api_secret", api_secret)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty string (it goes with the other one)")
    assert api_key_id is not None and api_secret is not None
    if ":" in api_key_id:
        raise ConfigurationError("api_key_id must not contain ':'")
    return basic_auth(api_key_id, api_secret)


# --- results -----------------------------------------------------------------------


class CommandResult:
    """What Bloomreach answered for one command.

    ``index``: the command's position in the list given to
    :meth:`BloomreachClient.batch`; ``command_id``: the id it was sent with;
    ``name``: its name; ``success``; ``errors``: Bloomreach's error texts
    (empty on success); ``time``: the server time a ``system/time`` command
    returns, else None; ``raw``: the result object as answered.
    """

    __slots__ = ("index", "command_id", "name", "success", "errors", "time", "raw")

    def __init__(
        self,
        index: int,
        command_id: str,
        success: bool,
        errors: Sequence[str] = (),
        time: Optional[float] = None,
        raw: Optional[Dict[str, Any]] = None,
        name: str = "",
    ) -> None:
        self.index = index
        self.command_id = command_id
        self.name = name
        self.success = success
        self.errors: List[str] = list(errors)
        self.time = time
        self.raw: Dict[str, Any] = raw if raw is not None else {}

    def __repr__(self) -> str:
        tail = "" if self.success else f", errors={self.errors!r}"
        return f"CommandResult(index={self.index}, command_id={self.command_id!r}, success={self.success}{tail})"


class BatchResult:
    """The outcome of :meth:`BloomreachClient.batch`: one :class:`CommandResult`
    per command given, in the same order, and the answers of every request made.

    Iterating, ``len()`` and indexing go over :attr:`results`.
    """

    def __init__(self) -> None:
        #: One result per command given, in order.
        self.results: List[CommandResult] = []
        #: The answer to each request, in order (one per 50 commands).
        self.responses: List[JSONResponse] = []

    @property
    def ok(self) -> bool:
        """True when every command succeeded."""
        return all(r.success for r in self.results)

    @property
    def failed(self) -> List[CommandResult]:
        """The commands Bloomreach refused (retrying them cannot help: fix them)."""
        return [r for r in self.results if not r.success]

    @property
    def succeeded(self) -> List[CommandResult]:
        """The commands Bloomreach accepted."""
        return [r for r in self.results if r.success]

    @property
    def errors(self) -> Dict[int, List[str]]:
        """Index of each refused command to its error texts."""
        return {r.index: r.errors for r in self.results if not r.success}

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[CommandResult]:
        return iter(self.results)

    @overload
    def __getitem__(self, index: int) -> CommandResult: ...

    @overload
    def __getitem__(self, index: slice) -> List[CommandResult]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[CommandResult, List[CommandResult]]:
        return self.results[index]

    def __repr__(self) -> str:
        return (
            f"BatchResult(commands={len(self.results)}, failed={len(self.failed)}, "
            f"requests={len(self.responses)})"
        )

    def _add(self, start: int, chunk: Sequence["_Prepared"], response: JSONResponse) -> None:
        """Map one answer's results back to the commands of its request (by position)."""
        self.responses.append(response)
        doc = response.json()
        whole: Optional[List[str]] = None  # errors that apply to every command of the request
        answers: List[Any] = []
        if not isinstance(doc, dict):
            whole = [f"HTTP {response.status} without a readable answer: {response.text[:200]!r}"]
        elif doc.get("success") is False:
            whole = error_texts(doc) or ["the request was refused"]
        else:
            results = doc.get("results")
            answers = results if isinstance(results, list) else []
            if not isinstance(results, list):
                whole = ["the answer had no results list"]
        if len(answers) not in (0, len(chunk)):
            log.warning("Bloomreach answered %d results for %d commands", len(answers), len(chunk))
        for offset, prepared in enumerate(chunk):
            index = start + offset
            if whole is not None:
                self.results.append(CommandResult(index, prepared.command_id, False, whole, None, {}, prepared.name))
                continue
            raw = answers[offset] if offset < len(answers) else None
            if not isinstance(raw, dict):
                errors = ["no result for this command in the answer"]
                self.results.append(CommandResult(index, prepared.command_id, False, errors, None, {}, prepared.name))
                continue
            success = raw.get("success") is True
            errors = [] if success else (error_texts(raw) or ["refused without a reason"])
            when = raw.get("time")
            time_value = float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else None
            self.results.append(
                CommandResult(index, prepared.command_id, success, errors, time_value, raw, prepared.name)
            )


def error_texts(doc: Mapping[str, Any]) -> List[str]:
    """The error texts of an answer or result: ``errors`` (a list or a dict), ``error``, ``message``."""
    texts: List[str] = []
    errors = doc.get("errors")
    if isinstance(errors, list):
        texts.extend(str(e) for e in errors)
    elif isinstance(errors, dict):
        texts.extend(f"{k}: {v}" for k, v in errors.items())
    elif isinstance(errors, str) and errors:
        texts.append(errors)
    for key in ("error", "message"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            texts.append(value)
    return texts


# --- preparing a batch -----------------------------------------------------------------


class _Prepared:
    __slots__ = ("name", "command_id", "encoded")

    def __init__(self, name: str, command_id: str, encoded: bytes) -> None:
        self.name = name
        self.command_id = command_id
        self.encoded = encoded


def _new_command_id() -> str:
    return uuid.uuid4().hex


def _prepare(index: int, command: Any) -> _Prepared:
    """Check one command's shape and sizes, give it a command_id, encode it once."""
    where = f"commands[{index}]"
    if not isinstance(command, Mapping):
        raise InvalidCommandError(f"{where} must be a dict, got {type(command).__name__}", None, index)
    cmd = dict(command)  # the caller's dict is not changed
    name = cmd.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidCommandError(f"{where}: name must be a non-empty string, got {name!r}", "name", index)
    data = cmd.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise InvalidCommandError(f"{where}: data must be a dict, got {type(data).__name__}", "data", index)
    cid = cmd.get("command_id")
    if cid is None:
        cid = cmd["command_id"] = _new_command_id()
    elif not isinstance(cid, str) or not cid:
        raise InvalidCommandError(f"{where}: command_id must be a non-empty string, got {cid!r}", "command_id", index)
    try:
        encoded = dumps(cmd)
    except UnserializableValueError as exc:
        raise InvalidCommandError(f"{where}: {exc}", exc.path or None, index) from None
    size = len(encoded)
    if size >= MAX_COMMAND_BYTES:
        raise InvalidCommandError(
            f"{where} is {size:,} bytes encoded; Bloomreach takes commands smaller than "
            f"{MAX_COMMAND_BYTES:,} bytes",
            None, index, size, MAX_COMMAND_BYTES,
        )
    props = data.get("properties") if data is not None else None
    if size >= MAX_PROPERTY_BYTES and isinstance(props, Mapping):
        problem = _large_property(props, "data.properties")
        if problem is not None:
            path, psize = problem
            raise InvalidCommandError(f"{where}: {_property_text(path, psize)}", path, index, psize, MAX_PROPERTY_BYTES)
    return _Prepared(name, cid, encoded)


_BODY_PREFIX = b'{"commands":['
_BODY_SUFFIX = b"]}"


def batch_body(encoded_commands: Sequence[bytes]) -> bytes:
    """The batch request body for already encoded commands: ``{"commands":[...]}``."""
    return b"".join((_BODY_PREFIX, b",".join(encoded_commands), _BODY_SUFFIX))


# --- the client ----------------------------------------------------------------------


class BloomreachClient(ConnectionOwner):
    """Sends Tracking API commands to one Bloomreach Engagement project.

    ``project_token``: the project's token (it goes in every URL).
    ``base_url``: your instance's API base URL.  Auth: ``api_key_id`` and
    ``api_secret`` (private access, HTTP Basic) or ``api_token`` (public
    access, ``Authorization: Token``), exactly one of the two.
    ``timeout``: seconds per attempt.  ``retry``: a
    :class:`~analytics.retry.RetryPolicy` (default: 3 retries within 30 s;
    ``RetryPolicy(max_retries=0)`` for none).  ``session``: a
    ``requests.Session`` to use (then :meth:`close` leaves it open).

    Raises :class:`~analytics.errors.ConfigurationError` for a bad argument.
    A context manager; :meth:`close` closes the pooled connections.  One
    client may be shared by threads only if its ``session`` may.
    """

    _http: JSONClient

    def __init__(
        self,
        project_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key_id: Optional[str] = None,
        api_secret: Optional[str] = None,
        api_token: Optional[str] = None,
        timeout: float = 10.0,
        retry: Optional[RetryPolicy] = None,
        user_agent: Optional[str] = None,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.project_token, base_url, self._prefix = project_route(project_token, base_url)
        timeout = number("timeout", timeout, 0.001)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self.auth_kind = "token" if api_token is not None else "basic"
        self._http = JSONClient(
            base_url,
            {"Authorization": auth_header(api_key_id, api_secret, api_token)},
            timeout=float(timeout),
            retry=retry,
            user_agent=user_agent,
            error_class=BloomreachError,
            session=session,
            rule=BLOOMREACH,
        )

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._http.base_url

    def url(self, route: str) -> str:
        """The full URL of a Tracking API route (``"batch"``, ``"customers"``...)."""
        return self._http.url(f"{self._prefix}/{route}")

    def batch(self, commands: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Send commands (built with :func:`customers`, :func:`event`,
        :func:`system_time`, or by hand) and return a :class:`BatchResult`.

        Every command is checked and encoded first; an
        :class:`InvalidCommandError` (wrong shape, too large, a property value
        too large, a value JSON cannot hold) is raised before anything is
        sent, as is an :class:`~analytics.errors.InvalidMessageError` for an
        empty list.  Then the commands go in requests of at most
        :data:`MAX_COMMANDS`, in order.  Commands Bloomreach refuses come back
        in the result with ``success`` False and are not retried.  A request
        that fails (4xx, or the retries run out) raises
        :class:`BloomreachError` with ``result`` and ``unanswered`` set (see
        there); the requests after it are not sent.
        """
        if commands is None or isinstance(commands, (str, bytes, Mapping)):
            raise InvalidMessageError("commands must be a non-empty list of command dicts", "commands")
        prepared = [_prepare(i, cmd) for i, cmd in enumerate(commands)]
        if not prepared:
            raise InvalidMessageError("commands must not be empty", "commands")
        result = BatchResult()
        path = f"{self._prefix}/batch"
        for start in range(0, len(prepared), MAX_COMMANDS):
            chunk = prepared[start : start + MAX_COMMANDS]
            body = batch_body([p.encoded for p in chunk])
            try:
                response = self._http.request("POST", path, body)
            except BloomreachError as exc:
                exc.result = result
                exc.unanswered = list(range(start, len(prepared)))
                raise
            result._add(start, chunk, response)
        if result.failed:
            log.debug("Bloomreach refused %d of %d commands", len(result.failed), len(result))
        return result

    def update_customer(
        self,
        customer_ids: Mapping[str, str],
        properties: Mapping[str, Any],
        update_timestamp: Optional[Timestamp] = None,
    ) -> Dict[str, Any]:
        """Update one customer's properties (``POST .../customers``); returns the answer.

        Validated as :func:`customers`.  An answer with ``success`` False
        raises :class:`BloomreachError` (status 200 or 4xx) and is not retried.
        """
        return self._single("customers", customers(customer_ids, properties, update_timestamp)["data"])

    def add_event(
        self,
        customer_ids: Mapping[str, str],
        event_type: str,
        properties: Optional[Mapping[str, Any]] = None,
        timestamp: Optional[Timestamp] = None,
    ) -> Dict[str, Any]:
        """Add one event (``POST .../customers/events``); returns the answer.

        Validated as :func:`event`; failures as :meth:`update_customer`.
        """
        return self._single("customers/events", event(customer_ids, event_type, properties, timestamp)["data"])

    def get_system_time(self) -> float:
        """Bloomreach's clock, Unix seconds (``GET .../system/time``)."""
        response = self._http.request("GET", f"{self._prefix}/system/time")
        doc = self._checked(response)
        when = doc.get("time")
        if isinstance(when, bool) or not isinstance(when, (int, float)):
            raise BloomreachError(
                f"{response.status}: the system/time answer has no time: {response.text[:200]}",
                status=response.status, body=response.text, attempts=response.attempts,
            )
        return float(when)

    def _single(self, route: str, data: Dict[str, Any]) -> Dict[str, Any]:
        try:
            body = dumps(data)
        except UnserializableValueError as exc:  # pragma: no cover - the builders encoded the properties
            raise InvalidCommandError(str(exc), exc.path or None) from None
        if len(body) >= MAX_COMMAND_BYTES:
            raise InvalidCommandError(
                f"{route}: the data is {len(body):,} bytes encoded; Bloomreach takes commands smaller than "
                f"{MAX_COMMAND_BYTES:,} bytes",
                None, None, len(body), MAX_COMMAND_BYTES,
            )
        return self._checked(self._http.request("POST", f"{self._prefix}/{route}", body))

    @staticmethod
    def _checked(response: JSONResponse) -> Dict[str, Any]:
        doc = response.json()
        if not isinstance(doc, dict) or doc.get("success") is not True:
            reasons = error_texts(doc) if isinstance(doc, dict) else []
            text = "; ".join(reasons) or response.text[:500] or "no body"
            raise BloomreachError(
                f"{response.status}: Bloomreach refused the request: {text}",
                status=response.status, body=response.text, attempts=response.attempts,
            )
        return doc

    def __repr__(self) -> str:
        return f"BloomreachClient({self.project_token!r}, base_url={self.base_url!r}, auth={self.auth_kind!r})"

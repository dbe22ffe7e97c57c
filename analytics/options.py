"""Every :class:`~analytics.Client` option, declared once.

The body of :class:`Config` is the table: each option is one line giving its
name, type, default, check (refusing a bad value with
:class:`~analytics.errors.ConfigurationError` naming it), whether it can be
changed on a live client (``live``; as a module setting it is then applied to
the shared client at once) and whether it is a module setting of the facade
(``facade``: ``analytics.timeout = 5``).  From it are derived:

* :data:`OPTIONS` (and :data:`BY_NAME`, :data:`DEFAULTS`): the table as data;
* the ``Client`` live-setting attributes and the checks of ``Client(...)``;
* the module facade's settings, their defaults and their check on assignment;
* a :class:`Config` per client: the checked values the engine reads, the
  derived ``retry`` policy and ``user_agent`` header, and :attr:`Config.explicit`,
  the options given explicitly (at creation, later on the live client, or as
  module settings of the shared client) rather than left at their default.

Adding an option is one line here plus its parameter in ``Client.__init__``
(tests/unit/test_options.py checks that the signature, the facade and the live
attributes match this table).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Mapping
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple, TypeVar, Union, cast

from ._checks import flag, header_text, http_url, number, quote, redact_url
from .clock import SYSTEM_CLOCK, Clock
from .destinations import Destination
from .errors import ConfigurationError, DeliveryError
from .retry import RetryPolicy
from .transport import Transport, as_transport
from .version import DEFAULT_USER_AGENT

__all__ = ["Option", "Config", "OPTIONS", "BY_NAME", "DEFAULTS", "DEFAULT_HOST", "DEFAULT_USER_AGENT"]

#: The US Data Pipelines endpoint; the EU one is ``https://cdp-eu.customer.io``.
DEFAULT_HOST = "https://cdp.customer.io"

#: ``on_error(error, items)``: a :class:`~analytics.errors.DeliveryError` and the messages it concerns.
OnError = Callable[[DeliveryError, List[Dict[str, Any]]], Any]
Check = Callable[[str, Any], Any]


class Option:
    """One row of the table: ``check(name, value)`` returns the value to use or raises."""

    __slots__ = ("name", "default", "check", "live", "facade", "doc")

    def __init__(self, default: Any, check: Check, live: bool = False, facade: bool = False, doc: str = "") -> None:
        self.name = ""
        self.default = default
        self.check = check
        self.live = live
        self.facade = facade
        self.doc = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def checked(self, value: Any) -> Any:
        """``value`` as the engine uses it (``host=None`` is the default host, ``'no'`` is False...)."""
        return self.check(self.name, value)

    def __repr__(self) -> str:
        return f"Option({self.name!r}, default={self.default!r}, live={self.live}, facade={self.facade})"


def _option(default: Any, check: Check, live: bool = False, facade: bool = False, doc: str = "") -> Any:
    # typed Any so that a Config field declares its checked type: `timeout: float = _option(15, ...)`
    return Option(default, check, live, facade, doc)


# --- checks (ConfigurationError naming the option; never an assert statement) --------------------------


def _write_key(name: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string")
    if re.search(r"[\x00-\x1f\x7f]", value):  # never echo the key
        raise ConfigurationError(f"{name} must not contain control characters (a newline read from a file?)")
    return value


def _host(name: str, value: Any) -> str:
    if value is None:
        return DEFAULT_HOST
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a URL such as {DEFAULT_HOST!r}, got {quote(value)}")
    return http_url(name, value)[0]


def _callback(name: str, value: Any) -> Optional[OnError]:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be a function (error, items), got {type(value).__name__}")
    return cast(Optional[OnError], value)


BeforeSend = Union[Callable[[Dict[str, Any]], Optional[Dict[str, Any]]],
                   Sequence[Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]]]


def _before_send(name: str, value: Any) -> Any:
    """A function, or a list or tuple of them (kept as a tuple), or None."""
    if value is None or callable(value):
        return value
    if isinstance(value, (list, tuple)) and all(callable(f) for f in value):
        return tuple(value) or None
    raise ConfigurationError(
        f"{name} must be a function (message) -> message or None, or a list of them, got {type(value).__name__}"
    )


def _fields(what: str) -> Check:
    def check(name: str, value: Any) -> Optional[Dict[str, Any]]:
        """A mapping with string keys (copied), or None; an empty one is None."""
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigurationError(f"{name} must be a dict with string keys, got {type(value).__name__}")
        return dict(value) or None

    return check


def _proxies(name: str, value: Any) -> Optional[Dict[str, Any]]:
    if value is not None and not isinstance(value, dict):
        shown = quote(redact_url(value)) if isinstance(value, str) else type(value).__name__
        raise ConfigurationError(f"{name} must be a dict such as {{'https': 'http://proxy:3128'}}, got {shown}")
    return value


def _count(minimum: int, allow_none: bool = False) -> Check:
    return functools.partial(number, minimum=minimum, integer=True, allow_none=allow_none)


def _seconds(minimum: float = 0, allow_none: bool = False) -> Check:
    return functools.partial(number, minimum=minimum, allow_none=allow_none)


def _retry_policy(name: str, value: Any) -> Optional[RetryPolicy]:
    if value is not None and not isinstance(value, RetryPolicy):
        raise ConfigurationError(f"{name} must be an analytics.retry.RetryPolicy")
    return value


def _transport(name: str, value: Any) -> Optional[Transport]:
    # adapted once, here: the engine then calls abort() and after_fork() without probing
    return None if value is None else as_transport(value)


def _clock(name: str, value: Any) -> Clock:
    if value is None:
        return SYSTEM_CLOCK
    if not isinstance(value, Clock):
        raise ConfigurationError(
            f"{name} must be an analytics.clock.Clock (now, sleep, wait, join), got {type(value).__name__}")
    return value


def _user_agent(name: str, value: Any) -> str:
    return DEFAULT_USER_AGENT if header_text(name, value) is None else value


def _path(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"{name} must be a file path, got {quote(value)}")
    return value


def _spool_sync(name: str, value: Any) -> str:
    if value not in ("normal", "full"):
        raise ConfigurationError(f"{name} must be 'normal' or 'full', got {quote(value)}")
    return str(value)


def _destination(name: str, value: Any) -> Optional[Destination]:
    if value is not None and not isinstance(value, Destination):
        raise ConfigurationError(
            f"{name} must be an analytics.destinations.Destination such as TrackV2(...), got {quote(value)}")
    return value


def _queue_url(name: str, value: Any) -> Optional[str]:
    if value is not None and (not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://"))):
        shown = quote(redact_url(value)) if isinstance(value, str) else quote(value)
        raise ConfigurationError(f"{name} must be a redis://, rediss:// or unix:// URL, got {shown}")
    return value


def _claim_after(name: str, value: Any) -> float:
    return float(number(name, value, 0.05))


def _prefix(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {quote(value)}")
    return value


# --- the table ------------------------------------------------------------------------------------


class Config:
    """The checked options of one client, read by the engine per batch (so a change applies to the next).

    ``Config(**given)`` checks every option (the ones not given take their
    default), then the rules between them (a ``write_key`` to send to Data
    Pipelines; a spool or a Redis queue, not both), and records the given names in :attr:`explicit`; :meth:`set`
    changes one on a live client.  Beyond the options: :attr:`retry`, the
    :class:`~analytics.retry.RetryPolicy` in use (``retry_policy``, or one made
    of ``max_retries`` and ``max_retry_time``, which then write through to it),
    and ``user_agent`` is the header to send (``None`` gives the default).
    """

    # The positional options of customerio-cdp-analytics' Client, in its order.
    write_key: Optional[str] = _option(None, _write_key, live=True, facade=True,
                                       doc="Your source's write key; required unless send=False.")
    host: str = _option(None, _host, live=True, facade=True,
                        doc="The API's base URL; None means https://cdp.customer.io.")
    debug: bool = _option(False, flag, live=True, facade=True, doc="Lower the customerio logger to DEBUG.")
    max_queue_size: int = _option(10000, _count(1), live=True, facade=True, doc="Messages the queue holds.")
    send: bool = _option(True, flag, live=True, facade=True, doc="False: check and return messages, send nothing.")
    on_error: Optional[OnError] = _option(None, _callback, live=True, facade=True,
                                          doc="on_error(error, items), called for every message not delivered.")
    gzip: bool = _option(False, flag, live=True, facade=True, doc="Compress request bodies.")
    max_retries: int = _option(10, _count(0), live=True, facade=True, doc="Retries after a batch's first attempt.")
    sync_mode: bool = _option(False, flag, live=True, facade=True, doc="Send each call in the caller's thread.")
    timeout: float = _option(15, _seconds(0.001), live=True, facade=True,
                             doc="Seconds to wait to connect and for each read.")
    proxies: Optional[Dict[str, Any]] = _option(None, _proxies, live=True, facade=True, doc="A requests proxies dict.")
    thread: int = _option(1, _count(1), facade=True, doc="Consumer threads sending batches in parallel.")
    upload_size: int = _option(100, _count(1), live=True, facade=True,
                               doc="Messages that make a batch go out; if given, also the most a batch holds.")
    upload_interval: float = _option(0.5, _seconds(), live=True, facade=True,
                                     doc="Seconds a partial batch waits for more messages.")
    # This library's keyword-only options.
    max_queue_wait: Optional[float] = _option(0.0, _seconds(allow_none=True), live=True, facade=True,
                                              doc="Seconds a call may wait for room in a full queue (None: no limit).")
    max_retry_time: float = _option(60.0, _seconds(), live=True, facade=True,
                                    doc="Seconds after which a failing batch is given up.")
    exit_timeout: Optional[float] = _option(5.0, _seconds(allow_none=True), live=True, facade=True,
                                            doc="Seconds spent delivering at interpreter exit (None: no limit).")
    pace_wait: float = _option(0.004, _seconds(), live=True, facade=True,
                               doc="Seconds one call may be slowed while the queue fills (0: no pacing).")
    max_in_flight: int = _option(8, _count(1), live=True, facade=True,
                                 doc="Requests in flight at once while a backlog exists (1: in call order).")
    retry_policy: Optional[RetryPolicy] = _option(None, _retry_policy, doc="Full control of retry waits.")
    transport: Optional[Transport] = _option(None, _transport, doc="Used instead of the built-in HTTP session.")
    clock: Clock = _option(None, _clock, doc="The engine's time (None: the system's; analytics.testing.FakeClock).")
    user_agent: str = _option(None, _user_agent, doc="The User-Agent header (None: cdp-relay/<version> (python)).")
    spool_path: Optional[str] = _option(None, _path, facade=True, doc="A SQLite file holding messages until sent.")
    spool_max_bytes: Optional[int] = _option(None, _count(1, allow_none=True), doc="Bytes the spool may hold.")
    spool_required: bool = _option(False, flag, doc="Raise SpoolError when the spool cannot be opened.")
    spool_sync: str = _option("normal", _spool_sync, doc="'full' also survives a power cut.")
    destination: Optional[Destination] = _option(None, _destination, facade=True,
                                                 doc="Another batch API to deliver to (TrackV2, Bloomreach...).")
    queue: Optional[str] = _option(None, _queue_url, doc="A redis:// URL: a queue shared by processes and hosts.")
    consume: bool = _option(True, flag, doc="Deliver from the Redis queue in this process too.")
    claim_after: float = _option(30.0, _claim_after, doc="Seconds before a dead consumer's Redis entries are taken.")
    stream_prefix: str = _option("cdp-relay", _prefix, doc="Prefix of the Redis queue's keys.")
    before_send: Optional[BeforeSend] = _option(None, _before_send, live=True, facade=True,
                                                doc="f(message) -> message or None (drop), or a list of them.")
    global_context: Optional[Dict[str, Any]] = _option(None, _fields("global_context"), live=True, facade=True,
                                             doc="Context fields added to every message (calls win).")
    global_properties: Optional[Dict[str, Any]] = _option(None, _fields("global_properties"), live=True, facade=True,
                                                doc="Properties added to every track, page and screen (calls win).")

    retry: RetryPolicy
    explicit: Set[str]

    def __init__(self, **given: Any) -> None:
        unknown = given.keys() - BY_NAME.keys()
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        for option in OPTIONS:
            setattr(self, option.name, option.checked(given.get(option.name, option.default)))
        # the rules between options
        if self.send and self.write_key is None and self.destination is None:
            raise ConfigurationError(
                "write_key is required: Client('YOUR_WRITE_KEY') or analytics.write_key = 'YOUR_WRITE_KEY' "
                "(or send=False to only validate)"
            )
        if self.spool_path is not None and self.queue is not None:
            raise ConfigurationError("use either spool_path or queue='redis://...', not both")
        #: The options given explicitly (not left at their default); :meth:`set` adds to it.
        self.explicit = set(given)
        if self.retry_policy is None:
            self.retry = RetryPolicy(max_retries=self.max_retries, max_time=self.max_retry_time)
        else:
            self.retry = self.retry_policy
            self.max_retries, self.max_retry_time = self.retry.max_retries, self.retry.max_time
        if self.destination is not None:
            self.upload_size = min(self.upload_size, self.destination.max_items)

    def set(self, name: str, value: Any) -> Any:
        """Check ``value``, make it option ``name``'s (marked explicit) and return the checked value."""
        value = BY_NAME[name].checked(value)
        setattr(self, name, value)
        self.explicit.add(name)
        if name == "max_retries":
            self.retry.max_retries = value
        elif name == "max_retry_time":
            self.retry.max_time = value
        return value

    def __repr__(self) -> str:
        return f"<Config host={self.host!r} explicit={sorted(self.explicit)}>"  # never the write key


#: The table, in the order of ``Client``'s parameters.
OPTIONS: Tuple[Option, ...] = tuple(v for v in vars(Config).values() if isinstance(v, Option))
BY_NAME: Dict[str, Option] = {option.name: option for option in OPTIONS}
DEFAULTS: Dict[str, Any] = {option.name: option.default for option in OPTIONS}

F = TypeVar("F", bound=Callable[..., None])


def records_given(init: F) -> F:
    """Decorate ``Client.__init__``: ``self._given`` is set to the names of the arguments
    the caller passed, so that ``Config.explicit`` can tell ``upload_size=100`` from the default."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            given: FrozenSet[str] = frozenset(signature.bind(self, *args, **kwargs).arguments) - {"self"}
        except TypeError:
            given = frozenset()  # init raises the usual TypeError
        self._given = given
        init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]

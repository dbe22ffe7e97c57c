"""The ``cdp-relay`` command (also ``python -m analytics``).

Commands::

    cdp-relay track | identify | page | screen | group | alias   one call, from flags or JSON
    cdp-relay import FILE        a JSON-lines or CSV file of messages, resumable, with progress
    cdp-relay collector          a local Data Pipelines endpoint with an inspector page
    cdp-relay demo               the workload ``make demo`` runs
    cdp-relay worker             deliver from a shared Redis queue (analytics.worker)

Settings come from flags, else from the environment, else the defaults:

    CDP_WRITE_KEY        --write-key        (required to send)
    CDP_HOST             --host             https://cdp.customer.io (EU: https://cdp-eu.customer.io);
                                            a bare HOST:PORT is http:// on loopback, https:// elsewhere
    CDP_GZIP             --gzip/--no-gzip   off for calls, on for import (1/0, true/false, yes/no)
    CDP_TIMEOUT          --timeout          15 seconds per request
    CDP_MAX_RETRIES      --max-retries      2 for calls (they fail fast), 10 for import and worker
    CDP_MAX_RETRY_TIME   --max-retry-time   5 s for calls, 120 s per batch for import, 60 s for worker
    CDP_QUEUE            --queue            the worker's Redis queue

Every command that sends (the six calls, import, worker) reads them the same way.

Exit status: 0 success; 1 not delivered (or bad lines in an import); 2 a
usage problem (wrong flags, missing file, no write key, an invalid message);
128 + N when stopped by signal N.  Errors are one line on stderr; ``-v``
adds the SDK's debug log (and a traceback for an internal error).

Adding a command
    Register a function in this module with :func:`command`.  Either give
    ``arguments`` (a function that adds flags to an argparse parser) and the
    function receives the parsed ``argparse.Namespace``, or leave it out and
    the function receives the rest of the command line (a ``list`` of
    strings) to parse itself, as ``collector`` and ``demo`` do::

        @command("demo", help="...", examples="examples:\\n  cdp-relay demo --serve\\n")
        def _demo(argv: List[str]) -> int:
            from .demo import main
            return main(argv, prog="cdp-relay demo")

    A command that sends adds the shared flags with ``_connection_arguments``
    and reads them with ``_connection`` (the flag, else its CDP_* variable,
    else the command's ``Defaults``), as the calls, ``import`` and ``worker`` do.

    It then shows in ``cdp-relay --help``, runs as ``cdp-relay NAME`` and
    ``python -m analytics NAME``, and returns its exit status.
"""

from __future__ import annotations

import argparse
import difflib
import http.client
import json
import logging
import os
import shlex
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple, cast

from . import messages
from ._checks import http_url
from ._worker_loop import EXAMPLES as WORKER_EXAMPLES, serve
from .client import Client
from .errors import AnalyticsError, ConfigurationError, InvalidMessageError, TransportError
from .retry import RetryPolicy
from .transport import HTTPTransport
from .version import VERSION

__all__ = ["main", "command", "Command", "COMMANDS", "Parser", "CLIError", "ENVIRONMENT"]

PROG = "cdp-relay"

#: Environment variables read when the matching flag is not given.
ENVIRONMENT: Dict[str, str] = {
    "write_key": "CDP_WRITE_KEY",
    "host": "CDP_HOST",
    "gzip": "CDP_GZIP",
    "timeout": "CDP_TIMEOUT",
    "max_retries": "CDP_MAX_RETRIES",
    "max_retry_time": "CDP_MAX_RETRY_TIME",
    "queue": "CDP_QUEUE",
}

_log_root = logging.getLogger("customerio")


class CLIError(Exception):
    """A problem to report in one line; ``code`` is the exit status (2: usage, 1: failure)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``PROG: error: ...``) and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    """A registered subcommand (see :func:`command`)."""

    name: str
    help: str
    examples: str
    run: Callable[[Any], int]
    arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
    description: str = ""
    #: for a command that parses its own argv: its parser, for the completion scripts
    parser: Optional[Callable[[], argparse.ArgumentParser]] = None


#: The registered commands, in the order ``--help`` lists them.
COMMANDS: Dict[str, Command] = {}


def command(name: str, *, help: str, examples: str,  # noqa: A002 - argparse's word
            arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None,
            description: str = "", parser: Optional[Callable[[], argparse.ArgumentParser]] = None,
            ) -> Callable[[Callable[[Any], int]], Callable[[Any], int]]:
    """Register the decorated function as ``cdp-relay NAME`` (see the module doc).

    ``parser`` (for a command without ``arguments``) returns the parser it uses, so that the
    completion scripts know its options."""

    def register(run: Callable[[Any], int]) -> Callable[[Any], int]:
        COMMANDS[name] = Command(name, help, examples, run, arguments, description or help, parser)
        return run

    return register


# --- settings: flag, else environment, else default ----------------------------------------


def _env(name: str) -> Optional[str]:
    value = os.environ.get(ENVIRONMENT[name])
    return value if value not in (None, "") else None


def _number(name: str, value: Any, convert: Callable[[str], Any], minimum: float) -> Any:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, str):
        try:
            value = convert(value)
        except ValueError:
            raise CLIError(f"{ENVIRONMENT[name]} must be a number like {flag} (got {value!r})") from None
    if value < minimum:
        raise CLIError(f"{flag} must be at least {minimum} (got {value})")
    return value


def _bool_env(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise CLIError(f"CDP_GZIP must be 1 or 0 (true/false, yes/no), not {value!r}")


@dataclass(frozen=True)
class Defaults:
    """A command's defaults for the settings every sending command reads the same way."""

    gzip: bool
    max_retries: int
    max_retry_time: float
    timeout: float = 15.0


#: One call fails fast (a refused connection is reported in about a second); an import or a
#: worker keeps trying for longer.
CALL_DEFAULTS = Defaults(gzip=False, max_retries=2, max_retry_time=5.0)
IMPORT_DEFAULTS = Defaults(gzip=True, max_retries=10, max_retry_time=120.0)
WORKER_DEFAULTS = Defaults(gzip=False, max_retries=10, max_retry_time=60.0)


@dataclass
class Connection:
    """Where and how to send: the resolved flags and environment variables."""

    write_key: Optional[str]
    host: str
    gzip: bool
    timeout: float
    max_retries: int
    max_retry_time: float


def _connection(args: argparse.Namespace, defaults: Defaults, need_key: bool) -> Connection:
    """The settings of a sending command: each flag, else its CDP_* variable, else ``defaults``."""
    key = args.write_key if args.write_key is not None else _env("write_key")
    if need_key and not key:
        raise CLIError("no write key: pass -k/--write-key KEY or set CDP_WRITE_KEY")
    host = args.host if args.host is not None else _env("host")
    try:
        host = http_url("--host", host or "https://cdp.customer.io")[0]
    except ConfigurationError as exc:
        raise CLIError(str(exc)) from None
    gzip = args.gzip if args.gzip is not None else (
        _bool_env(_env("gzip")) if _env("gzip") is not None else defaults.gzip)  # type: ignore[arg-type]
    timeout = _number("timeout", args.timeout if args.timeout is not None else _env("timeout") or defaults.timeout,
                      float, 0.001)
    retries = _number("max_retries", args.max_retries if args.max_retries is not None else
                      _env("max_retries") or defaults.max_retries, int, 0)
    retry_time = _number("max_retry_time", args.max_retry_time if args.max_retry_time is not None else
                         _env("max_retry_time") or defaults.max_retry_time, float, 0)
    return Connection(key, host, gzip, timeout, retries, retry_time)


def _connection_arguments(parser: argparse.ArgumentParser, defaults: Defaults) -> None:
    g = parser.add_argument_group("where and how to send (flags win over environment variables)")
    g.add_argument("-k", "--write-key", metavar="KEY", help="your source's write key [CDP_WRITE_KEY]")
    g.add_argument("--host", metavar="URL",
                   help="Data Pipelines endpoint, default https://cdp.customer.io; EU: https://cdp-eu.customer.io; "
                        "local collector: http://127.0.0.1:8765. A bare HOST:PORT means http:// for this machine "
                        "(127.0.0.1, localhost, ::1) and https:// for any other host [CDP_HOST]")
    g.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help=f"gzip request bodies (default {'on' if defaults.gzip else 'off'}) [CDP_GZIP]")
    g.add_argument("--timeout", type=float, metavar="S",
                   help=f"seconds per request (default {defaults.timeout:g}) [CDP_TIMEOUT]")
    g.add_argument("--max-retries", type=int, metavar="N",
                   help=f"retries of a failed request (default {defaults.max_retries}; 0: one attempt) "
                        "[CDP_MAX_RETRIES]")
    g.add_argument("--max-retry-time", type=float, metavar="S",
                   help=f"stop retrying a request after this many seconds (default {defaults.max_retry_time:g}) "
                        "[CDP_MAX_RETRY_TIME]")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the SDK's debug log on stderr")


# --- the six calls ---------------------------------------------------------------------------


def _json_object(text: str, what: str) -> Dict[str, Any]:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise CLIError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CLIError(f"{what} must be a JSON object such as '{{\"plan\": \"pro\"}}'")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _pairs(pairs: Sequence[str], flag: str) -> List[Tuple[List[str], Any, str]]:
    """``KEY=VALUE`` flags as (dotted path, typed value, the flag as given)."""
    from .importer import _infer  # the importer loads on use: a call or --help needs little of it

    out = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        path = [part.strip() for part in key.split(".")]
        if not eq or not key.strip():
            raise CLIError(f"{flag} takes KEY=VALUE, not {pair!r}")
        if not all(path):
            raise CLIError(f"{flag} {shlex.quote(pair)}: {key.strip()!r} is not a key or a dotted path "
                           "such as address.city")
        out.append((path, _infer(value), pair))
    return out


def _merge(base: Any, obj: Optional[Dict[str, Any]], pairs: List[Tuple[List[str], Any, str]],
           flag: str, json_flag: str) -> Optional[Dict[str, Any]]:
    """The object of ``json_flag`` (else ``base``, from --json) with the ``flag`` pairs set in it.

    A pair overrides a key of the JSON object; two pairs that set the same key to different values,
    or a dotted key under a key that holds a value (``-p a=1 -p a.b=2``), are refused.
    """
    if obj is None and not pairs:
        return cast(Optional[Dict[str, Any]], base)
    result: Dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    if obj is not None:
        result = dict(obj)
    given: Dict[Tuple[str, ...], Tuple[str, Any]] = {}  # path -> (the flag's text, its value)
    for path, value, text in pairs:
        key = tuple(path)
        for other, (other_text, other_value) in given.items():
            if other == key and other_value != value:
                raise CLIError(f"{flag} {shlex.quote(text)} conflicts with {flag} {shlex.quote(other_text)}: "
                               f"{'.'.join(key)} is given twice")
            shorter, longer = (other, key) if len(other) < len(key) else (key, other)
            if other != key and longer[:len(shorter)] == shorter:
                raise CLIError(f"{flag} {shlex.quote(text)} conflicts with {flag} {shlex.quote(other_text)}: "
                               f"{'.'.join(shorter)} "
                               f"cannot be both a value and an object holding {'.'.join(longer[len(shorter):])}")
        given[key] = (text, value)
        node = result
        for depth, part in enumerate(path[:-1], 1):
            child = node.get(part)
            if child is not None and not isinstance(child, dict):
                raise CLIError(f"{flag} {shlex.quote(text)}: {'.'.join(path[:depth])} is {json.dumps(child)[:40]} in "
                               f"{json_flag}, not an object")
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = value
    return result


_CALL_DOC = {
    "track": "Record that a user did something (Segment track).",
    "identify": "Say who a user is and set their traits (Segment identify).",
    "page": "Record a page view (Segment page).",
    "screen": "Record a mobile screen view (Segment screen).",
    "group": "Put a user in a group, a Customer.io object (Segment group).",
    "alias": "Merge a previous id into a user id (Segment alias).",
}

_CALL_HELP = {
    "track": "send one track call (a user did something)",
    "identify": "send one identify call (who a user is, their traits)",
    "page": "send one page call (a page view)",
    "screen": "send one screen call (a mobile screen view)",
    "group": "send one group call (a user in a group / Customer.io object)",
    "alias": "send one alias call (merge a previous id into a user id)",
}

_CALL_EXAMPLES = {
    "track": """examples:
  cdp-relay track -k KEY -u 42 -e "Signed Up" -p plan=pro -p seats=3
  CDP_WRITE_KEY=KEY cdp-relay track -u 42 -e "Order Completed" --properties '{"revenue": 39.95}'
  cdp-relay track --host http://127.0.0.1:8765 -k test -a anon-1 -e Clicked --timestamp 2024-05-01T10:00:00Z
  echo '{"userId": "42", "event": "Viewed"}' | cdp-relay track -k KEY --json -
  cdp-relay track -u 42 -e "Signed Up" --dry-run          # check and print; send nothing
""",
    "identify": """examples:
  cdp-relay identify -k KEY -u 42 -t email=ada@example.com -t plan=pro
  cdp-relay identify -u 42 --traits '{"name": "Ada", "address": {"city": "London"}}'
  cdp-relay identify -u 42 -t address.city=London         # dotted keys nest
""",
    "page": """examples:
  cdp-relay page -k KEY -u 42 --name Pricing -p url=https://example.com/pricing
  cdp-relay page -a anon-1 --category Docs --name "Getting Started"
""",
    "screen": """examples:
  cdp-relay screen -k KEY -u 42 --name Home -p build=42
""",
    "group": """examples:
  cdp-relay group -k KEY -u 42 -g acme --object-type-id 1 -t name="Acme Inc" -t plan=enterprise
""",
    "alias": """examples:
  cdp-relay alias -k KEY --previous-id anon-1 -u 42
""",
}


def _call_arguments(type_: str) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(p: argparse.ArgumentParser) -> None:
        m = p.add_argument_group("the message (flags override the fields of --json)")
        if type_ == "alias":
            m.add_argument("--previous-id", metavar="ID", help="the id to merge (required)")
            m.add_argument("-u", "--user-id", metavar="ID", help="the id to keep (required)")
        else:
            m.add_argument("-u", "--user-id", metavar="ID", help="userId (this or --anonymous-id)")
            m.add_argument("-a", "--anonymous-id", metavar="ID", help="anonymousId")
        if type_ == "track":
            m.add_argument("-e", "--event", help="the event name (required)")
        if type_ in ("page", "screen"):
            m.add_argument("--name", help="the page or screen name")
            m.add_argument("--category", help="the page or screen category")
        if type_ == "group":
            m.add_argument("-g", "--group-id", metavar="ID", help="the group id (required)")
            m.add_argument("--object-type-id", metavar="N", help="the Customer.io object type id, e.g. 1")
        if type_ in ("track", "page", "screen"):
            m.add_argument("--properties", metavar="JSON", help="properties as a JSON object")
            m.add_argument("-p", "--property", action="append", default=[], metavar="KEY=VALUE",
                           help="one property (repeatable; JSON values such as 3 or true are typed, "
                                "dotted keys nest)")
        if type_ in ("identify", "group"):
            m.add_argument("--traits", metavar="JSON", help="traits as a JSON object")
            m.add_argument("-t", "--trait", action="append", default=[], metavar="KEY=VALUE",
                           help="one trait (repeatable; JSON values are typed, dotted keys nest)")
        m.add_argument("--timestamp", metavar="ISO", help="when it happened (ISO-8601; default now)")
        m.add_argument("--message-id", metavar="ID", help="the messageId (default a new UUID)")
        m.add_argument("--context", metavar="JSON", help="context as a JSON object")
        m.add_argument("--integrations", metavar="JSON", help="integrations as a JSON object")
        m.add_argument("--json", metavar="MESSAGE",
                       help="a whole Segment-spec message as JSON, @FILE, or - for stdin")
        p.add_argument("-n", "--dry-run", action="store_true", help="check and print the message; send nothing")
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
        _connection_arguments(p, CALL_DEFAULTS)

    return arguments


def _build_call(type_: str, args: argparse.Namespace) -> Dict[str, Any]:
    message: Dict[str, Any] = _json_object(args.json, "--json") if args.json is not None else {}
    given = message.get("type")
    if given is not None and given != type_:
        raise CLIError(f"the --json message is a {given!r} call; use cdp-relay {given} (or drop its type)")
    message["type"] = type_
    simple = {"user_id": "userId", "anonymous_id": "anonymousId", "event": "event", "name": "name",
              "category": "category", "group_id": "groupId", "object_type_id": "objectTypeId",
              "previous_id": "previousId", "timestamp": "timestamp", "message_id": "messageId"}
    for attr, field_name in simple.items():
        value = getattr(args, attr, None)
        if value is not None:
            message[field_name] = value
    for field_name in ("context", "integrations"):
        value = getattr(args, field_name)
        if value is not None:
            message[field_name] = _json_object(value, f"--{field_name}")
    if hasattr(args, "properties"):
        obj = _json_object(args.properties, "--properties") if args.properties is not None else None
        merged = _merge(message.get("properties"), obj, _pairs(args.property, "-p/--property"), "-p",
                        "--properties" if obj is not None else "--json")
        if merged is not None:
            message["properties"] = merged
    if hasattr(args, "traits"):
        obj = _json_object(args.traits, "--traits") if args.traits is not None else None
        merged = _merge(message.get("traits"), obj, _pairs(args.trait, "-t/--trait"), "-t",
                        "--traits" if obj is not None else "--json")
        if merged is not None:
            message["traits"] = merged
    return message


#: The message fields (wire names and the library's parameter names) as the flags that set them.
_FLAGS = {
    "userId": "-u/--user-id", "user_id": "-u/--user-id",
    "anonymousId": "-a/--anonymous-id", "anonymous_id": "-a/--anonymous-id",
    "event": "-e/--event", "previousId": "--previous-id", "previous_id": "--previous-id",
    "groupId": "-g/--group-id", "group_id": "-g/--group-id",
    "objectTypeId": "--object-type-id", "object_type_id": "--object-type-id",
    "messageId": "--message-id", "message_id": "--message-id", "timestamp": "--timestamp",
    "name": "--name", "category": "--category", "context": "--context", "integrations": "--integrations",
    "properties": "-p/--property or --properties", "traits": "-t/--trait or --traits",
}


#: Client options as the flags that set them, for a ConfigurationError met by a command.
_OPTION_FLAGS = {
    "write_key": "-k/--write-key", "host": "--host", "timeout": "--timeout", "max_retries": "--max-retries",
    "max_retry_time": "--max-retry-time", "queue": "--queue", "thread": "--threads", "claim_after": "--claim-after",
    "stream_prefix": "--stream-prefix", "exit_timeout": "--exit-timeout", "upload_size": "--batch-size",
}


def _option_error(exc: ConfigurationError) -> CLIError:
    """A Client option refused by its check, as a usage error naming the flag (its first word)."""
    text = str(exc)
    name, sep, rest = text.partition(" ")
    return CLIError(f"{_OPTION_FLAGS.get(name, name)}{sep}{rest}")


def _in_flags(text: str) -> str:
    """A message check's error with the fields named as the flags that set them."""
    from .importer import rename_fields  # the importer loads on use

    return rename_fields(text, _FLAGS)


class _Recorder:
    """The client's HTTP transport, remembering every attempt: the line printed after a send says
    where the message went and what the server answered."""

    def __init__(self) -> None:
        self.inner = HTTPTransport()
        self.attempts: List[Tuple[str, Optional[Any], float, int, Optional[Exception]]] = []

    def post(self, url: str, body: bytes, headers: Dict[str, str], timeout: float,
             proxies: Optional[Dict[str, str]]) -> Any:
        started = time.monotonic()
        try:
            response = self.inner.post(url, body, headers, timeout, proxies)
        except Exception as exc:
            self.attempts.append((url, None, time.monotonic() - started, len(body), exc))
            raise
        self.attempts.append((url, response, time.monotonic() - started, len(body), None))
        return response

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    def after_fork(self) -> None:
        self.inner.after_fork()


def _answer_text(body: bytes, limit: int) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def _report_send(prefix: str, recorder: _Recorder, verbose: bool) -> None:
    """One line: where the message went and what the server answered; with -v every attempt."""
    if not recorder.attempts:
        return
    url, response, seconds, size, _ = recorder.attempts[-1]
    count = len(recorder.attempts)
    tries = f", {count} attempts" if count > 1 else ""
    if response is not None:
        reason = http.client.responses.get(response.status, "")
        answer = _answer_text(response.body, 120)
        print(f"{prefix}: sent to {url}: {response.status} {reason}".rstrip()
              + (f" {answer}" if answer else "") + f" ({seconds * 1000:.0f} ms{tries})", file=sys.stderr)
    if verbose:
        for number, (url, response, seconds, size, error) in enumerate(recorder.attempts, 1):
            if response is None:
                print(f"{prefix}:   attempt {number}: POST {url} ({size} bytes): no answer after "
                      f"{seconds * 1000:.0f} ms: {error}", file=sys.stderr)
                continue
            print(f"{prefix}:   attempt {number}: POST {url} ({size} bytes): {response.status} in "
                  f"{seconds * 1000:.0f} ms", file=sys.stderr)
            for name, value in response.headers.items():
                print(f"{prefix}:     {name}: {value}", file=sys.stderr)
            print(f"{prefix}:     body: {_answer_text(response.body, 2000) or '(empty)'}", file=sys.stderr)


def _send_call(type_: str, args: argparse.Namespace) -> int:
    from .importer import describe_delivery_error, send_message  # the importer loads on use (csv, hashlib...)

    prefix = f"{PROG} {type_}"
    message = _build_call(type_, args)
    conn = _connection(args, CALL_DEFAULTS, need_key=not args.dry_run)
    failures: List[Exception] = []
    recorder = _Recorder()
    try:
        client = Client(
            conn.write_key, host=conn.host, send=not args.dry_run, sync_mode=True, gzip=conn.gzip,
            timeout=conn.timeout, on_error=lambda error, items: failures.append(error), exit_timeout=0,
            transport=recorder,
            # one call: short waits between the few retries, so a dead endpoint is reported at once
            retry_policy=RetryPolicy(max_retries=conn.max_retries, max_time=conn.max_retry_time, base=0.2, cap=2.0),
        )
    except ConfigurationError as exc:
        raise _option_error(exc) from None
    try:
        try:
            ok, built, unused = send_message(client, message)
        except InvalidMessageError as exc:
            raise CLIError(f"invalid {type_}: {_in_flags(str(exc))}") from None
    finally:
        client.shutdown(timeout=0)
    for name in unused:
        print(f"{prefix}: warning: {name!r} is not a field of a {type_} call; ignored", file=sys.stderr)
    if not ok:
        error = failures[-1] if failures else None
        why = describe_delivery_error(error, conn.host) if error is not None else "the message was not sent"
        if isinstance(error, TransportError):
            why += " (retry longer with --max-retries N and --max-retry-time S)"
        if args.verbose:
            _report_send(prefix, recorder, verbose=True)
        raise CLIError(f"not delivered: {why}", code=1)
    if not args.quiet:
        print(json.dumps(messages.as_sent(built), ensure_ascii=False))
        sys.stdout.flush()
        if args.dry_run:
            print(f"{prefix}: dry run: the message above is valid and was NOT sent (drop --dry-run to send it "
                  f"to {conn.host})", file=sys.stderr)
        else:
            _report_send(prefix, recorder, args.verbose)
    return 0


def _register_call(type_: str) -> None:
    def run(args: argparse.Namespace) -> int:
        return _send_call(type_, args)

    doc = _CALL_DOC[type_]
    command(type_, help=_CALL_HELP[type_], examples=_CALL_EXAMPLES[type_],
            arguments=_call_arguments(type_),
            description=doc + " Prints the message as sent (JSON) on success.")(run)


for _type in ("track", "identify", "page", "screen", "group", "alias"):
    _register_call(_type)


# --- import ------------------------------------------------------------------------------------

_IMPORT_EXAMPLES = """examples:
  cdp-relay import events.jsonl -k KEY
      send every message; a rerun after an interruption resumes (events.jsonl.checkpoint)
  cdp-relay import events.jsonl --dry-run
      check every line and report the bad ones; send nothing
  cdp-relay import users.csv --type identify -k KEY
      CSV: columns userId, traits.email, traits.plan...; every row an identify
  zcat export.jsonl.gz | cdp-relay import - -k KEY --checkpoint export.checkpoint
      from stdin (give --checkpoint to make it resumable; .gz files are read directly too)
  cdp-relay import events.jsonl --host http://127.0.0.1:8765 -k test
      try it against the local collector first (cdp-relay collector --port 8765)
  cdp-relay import events.jsonl -k KEY --bad-lines events.bad.jsonl --accept-bad-lines
      set the bad lines aside (with their reasons) and succeed; fix and import them later

file formats:
  JSON lines: one Segment-spec message per line ({"type": "track", "userId": "42",
  "event": "Signed Up", "properties": {...}, "timestamp": "2024-05-01T10:00:00Z"}).
  CSV: a header of message fields (type, userId, anonymousId, event, name, timestamp,
  messageId, groupId, previousId...) and dotted paths (properties.plan, traits.email,
  context.ip); columns properties/traits/context hold JSON objects; cells that are JSON
  numbers, true/false or objects are typed ("col:string" keeps text).
  Timestamps and messageIds in the file are kept; lines without a messageId get one
  derived from the file (its first 64 KiB, or --id-namespace), their line number and
  content: the same on every run of the same (even moved or appended) file, another
  in another file.

exit status: 0 all delivered (bad lines set aside with --accept-bad-lines); 1 bad or
undelivered lines (listed with line numbers); 2 usage problem; 130/143 interrupted
(rerun to resume).
"""


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="JSON lines or CSV of Segment-spec messages (.gz ok); - for stdin")
    p.add_argument("--format", choices=["auto", "jsonl", "csv", "tsv"], default="auto",
                   help="file format (default: from the name; .csv/.tsv or JSON lines)")
    p.add_argument("--type", choices=["identify", "track", "page", "screen", "group", "alias"],
                   help="the type of messages that have none (e.g. a CSV of users: identify)")
    p.add_argument("-n", "--dry-run", action="store_true", help="check every line, send nothing")
    cp = p.add_mutually_exclusive_group()
    cp.add_argument("--checkpoint", metavar="PATH", help="where to record progress (default FILE.checkpoint)")
    cp.add_argument("--no-checkpoint", action="store_true", help="do not record progress (a rerun sends all)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and send everything")
    p.add_argument("--id-namespace", metavar="NAME",
                   help="name the file in the messageIds made for lines without one: the same NAME gives the "
                        "same ids (default: the file's first 64 KiB, so a moved or appended file keeps its ids "
                        "and another file gets others)")
    p.add_argument("--batch-size", type=int, default=100, metavar="N", help="messages per request (default 100)")
    p.add_argument("--progress", choices=["auto", "bar", "plain", "none"], default="auto",
                   help="progress display (auto: a bar on a terminal, tqdm when installed; lines otherwise)")
    p.add_argument("--max-bad-lines", type=int, default=1000, metavar="N",
                   help="stop reading after this many bad lines (default 1000)")
    p.add_argument("--bad-lines", metavar="PATH",
                   help="write each bad line (and each line the server refused) to this file, as JSON lines "
                        "{\"line\", \"reason\", \"text\"}, to fix and import later")
    p.add_argument("--accept-bad-lines", action="store_true",
                   help="with --bad-lines: bad lines do not fail the run (exit 0) and a rerun does not read "
                        "them again")
    p.add_argument("--drain-timeout", type=float, default=10.0, metavar="S",
                   help="on Ctrl-C/SIGTERM, seconds to wait for queued messages (default 10)")
    _connection_arguments(p, IMPORT_DEFAULTS)


@command("import", help="send a JSON-lines or CSV file of messages (backfill), resumably",
         examples=_IMPORT_EXAMPLES, arguments=_import_arguments,
         description="Send a file of Segment-spec messages through the SDK's background engine "
                     "(backpressure: nothing is dropped), with a progress bar, a report of bad lines, "
                     "and a checkpoint so a rerun after an interruption skips what was delivered.")
def _import(args: argparse.Namespace) -> int:
    from .importer import ImportOptions, ImportProblem, format_report, run_import  # loads on use

    if args.batch_size < 1:
        raise CLIError("--batch-size must be at least 1")
    if args.max_bad_lines < 0:
        raise CLIError("--max-bad-lines must be at least 0")
    conn = _connection(args, IMPORT_DEFAULTS, need_key=not args.dry_run)
    options = ImportOptions(
        path=args.file, write_key=conn.write_key, host=conn.host, format=args.format, default_type=args.type,
        dry_run=args.dry_run, checkpoint=None if args.no_checkpoint else (args.checkpoint or ""),
        restart=args.restart, gzip=conn.gzip, timeout=conn.timeout, max_retries=conn.max_retries,
        max_retry_time=conn.max_retry_time, batch_size=args.batch_size, progress=args.progress,
        max_bad=args.max_bad_lines, drain_timeout=args.drain_timeout, id_namespace=args.id_namespace,
        bad_lines=args.bad_lines, accept_bad=args.accept_bad_lines,
    )
    if args.file == "-" and args.checkpoint is None and not args.no_checkpoint and not args.dry_run:
        print(f"{PROG} import: note: reading stdin without --checkpoint PATH: a rerun cannot resume",
              file=sys.stderr)
        options.checkpoint = None
    try:
        report = run_import(options)
    except ImportProblem as exc:
        if isinstance(exc.__cause__, ConfigurationError):
            raise _option_error(exc.__cause__) from None
        raise CLIError(str(exc)) from None
    for line in format_report(report):
        print(line, file=sys.stderr)
    return report.exit_code


# --- the commands with their own parsers -----------------------------------------------------------


def _collector_parser() -> argparse.ArgumentParser:
    from .collector.__main__ import build_parser as collector_parser  # the collector (a server) loads on use

    return collector_parser(f"{PROG} collector")


@command("collector", help="serve a local Data Pipelines endpoint with an inspector page",
         examples="examples:\n  cdp-relay collector --port 8765      then open http://127.0.0.1:8765/\n"
                  "  cdp-relay collector --help           all its options\n",
         parser=lambda: _collector_parser())
def _collector(argv: List[str]) -> int:
    from .collector.__main__ import main as collector_main  # the collector (a server) loads on use

    return collector_main(argv, prog=f"{PROG} collector")


@command("demo", help="send a realistic workload to a local collector and report",
         examples="examples:\n  cdp-relay demo            send, report, stop\n"
                  "  cdp-relay demo --serve    then keep the collector and its inspector page running\n")
def _demo(argv: List[str]) -> int:
    from .demo import main as demo_main  # the demo (and the collector it runs) loads on use

    return demo_main(argv, prog=f"{PROG} demo")


def _worker_arguments(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("the queue")
    w.add_argument("--queue", metavar="URL", help="the Redis queue, redis://HOST:PORT/DB (required) [CDP_QUEUE]")
    w.add_argument("--threads", type=int, default=1, metavar="N", help="consumer threads (default 1)")
    w.add_argument("--claim-after", type=float, default=30.0, metavar="S",
                   help="seconds before entries held by a dead worker are taken over (default 30)")
    w.add_argument("--exit-timeout", type=float, default=10.0, metavar="S",
                   help="on SIGTERM/Ctrl-C, seconds to finish the batches held (default 10)")
    w.add_argument("--stream-prefix", default="cdp-relay", metavar="PREFIX",
                   help="prefix of the queue's Redis keys (default cdp-relay)")
    w.add_argument("--report-every", type=float, default=0.0, metavar="S",
                   help="print the counters every S seconds (default never)")
    _connection_arguments(p, WORKER_DEFAULTS)


@command("worker", help="deliver from a shared Redis queue (see analytics.worker)", examples=WORKER_EXAMPLES,
         arguments=_worker_arguments,
         description="Deliver the messages web processes put in a shared Redis queue (Client(queue=..., "
                     "consume=False)). SIGTERM or Ctrl-C stops it cleanly; what it holds stays in Redis.")
def _worker(args: argparse.Namespace) -> int:
    queue = args.queue if args.queue is not None else _env("queue")
    if not queue:
        raise CLIError("no queue: pass --queue redis://HOST:PORT/DB or set CDP_QUEUE")
    conn = _connection(args, WORKER_DEFAULTS, need_key=True)
    if args.threads < 1:
        raise CLIError("--threads must be at least 1")
    try:
        client = Client(
            conn.write_key, host=conn.host, gzip=conn.gzip, timeout=conn.timeout, max_retries=conn.max_retries,
            max_retry_time=conn.max_retry_time, thread=args.threads, queue=queue, claim_after=args.claim_after,
            stream_prefix=args.stream_prefix, exit_timeout=args.exit_timeout,
        )
    except ConfigurationError as exc:
        raise _option_error(exc) from None
    if not args.verbose and not logging.getLogger().handlers:
        # a long-running worker shows the SDK's warnings (delivery problems) on stderr
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(client, args.exit_timeout, args.report_every, prog=f"{PROG} worker")


# --- shell completion ------------------------------------------------------------------------------


#: Options whose value is a file (or @FILE): completed with file names.
_FILE_METAVARS = ("FILE", "PATH", "MESSAGE")


def _completion_data() -> "List[Tuple[str, str, List[Tuple[List[str], str, List[str], str]], bool]]":
    """Per command, from the parsers: (name, help, options, takes a FILE); an option is
    (its flags, its kind: "flag", "choice", "file" or "value", its choices, its help)."""
    build_parser()
    out = []
    for cmd in COMMANDS.values():
        parser = _SUBPARSERS.get(cmd.name) if cmd.arguments is not None else None
        if parser is None and cmd.parser is not None:
            try:
                parser = cmd.parser()
            except Exception:  # a command's own parser that cannot be built: complete its name only
                parser = None
        options: List[Tuple[List[str], str, List[str], str]] = []
        takes_file = False
        for action in parser._actions if parser is not None else []:
            if not action.option_strings:
                takes_file = takes_file or action.metavar in _FILE_METAVARS
                continue
            if action.nargs == 0:
                kind, choices = "flag", []
            elif action.choices:
                kind, choices = "choice", [str(c) for c in action.choices]
            else:
                kind, choices = ("file" if action.metavar in _FILE_METAVARS else "value"), []
            text = " ".join((action.help or "").split()).replace("%(default)s", str(action.default))
            if isinstance(action, argparse._AppendAction):
                kind += "*"  # repeatable
            options.append((list(action.option_strings), kind, choices, text))
        if parser is None:
            options.append((["-h", "--help"], "flag", [], "show the help"))
        out.append((cmd.name, cmd.help, options, takes_file))
    return out


def _bash_completion() -> str:
    commands = _completion_data()
    lines = [
        f"# bash completion for {PROG} {VERSION}, generated by `{PROG} completion bash`.",
        f"# Load it with:  source <({PROG} completion bash)   (or save it as",
        f"# ~/.local/share/bash-completion/completions/{PROG}).",
        "_cdp_relay() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" i',
        '    for ((i = 1; i < COMP_CWORD; i++)); do',
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
        "    done",
        '    if [[ -z "$cmd" ]]; then',
        f'        COMPREPLY=($(compgen -W "{" ".join(name for name, *_ in commands)} --help --version" -- "$cur"))',
        "        return 0",
        "    fi",
        '    local opts="" values="" filed="" files=""',
        '    case "$cmd" in',
    ]
    for name, _, options, takes_file in commands:
        flags = " ".join(flag for strings, _, _, _ in options for flag in strings)
        valued = " ".join(flag for strings, kind, _, _ in options if kind.rstrip("*") == "value" for flag in strings)
        filed = " ".join(flag for strings, kind, _, _ in options if kind.rstrip("*") == "file" for flag in strings)
        lines.append(f'        {shlex.quote(name)}) opts={shlex.quote(flags)}; values={shlex.quote(valued)}; '
                     f'filed={shlex.quote(filed)}; files={"1" if takes_file else ""} ;;')
    lines += [
        "        *) return 0 ;;",
        "    esac",
        '    case "$cmd $prev" in',
    ]
    for name, _, options, _ in commands:
        for strings, _, choices, _ in options:
            if choices:
                pattern = "|".join(shlex.quote(f"{name} {flag}") for flag in strings)
                words = shlex.quote(" ".join(choices))
                lines.append(f'        {pattern}) COMPREPLY=($(compgen -W {words} -- "$cur")); return 0 ;;')
    lines += [
        "    esac",
        '    if [[ " $filed " == *" $prev "* ]]; then',
        '        COMPREPLY=($(compgen -f -- "$cur"))',
        "        return 0",
        "    fi",
        '    if [[ " $values " == *" $prev "* ]]; then',
        "        COMPREPLY=()  # a value to type: nothing to offer",
        "        return 0",
        "    fi",
        '    if [[ "$cur" == -* || -z "$files" ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -f -- "$cur"))',
        "    fi",
        "    return 0",
        "}",
        f"complete -o bashdefault -F _cdp_relay {PROG}",
        "",
    ]
    return "\n".join(lines)


def _zsh_text(text: str) -> str:
    """Text for the description of a single-quoted zsh _arguments spec (its first clause, escaped)."""
    if len(text) > 80:
        text = text[:77].rsplit(" ", 1)[0] + "..."
    text = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")
    return text.replace("'", "'\\''")


def _zsh_completion() -> str:
    commands = _completion_data()
    lines = [
        f"#compdef {PROG}",
        f"# zsh completion for {PROG} {VERSION}, generated by `{PROG} completion zsh`.",
        f"# Load it with:  source <({PROG} completion zsh)   (or save it as _{PROG} in a directory of $fpath).",
        "_cdp_relay() {",
        "    local -a commands",
        "    commands=(",
    ]
    for name, help_text, _, _ in commands:
        lines.append(f"        '{name}:{_zsh_text(help_text)}'")  # noqa: E501
    lines += [
        "    )",
        "    if (( CURRENT == 2 )); then",
        f"        _describe -t commands '{PROG} command' commands",
        "        return",
        "    fi",
        "    local cmd=$words[2]",
        "    shift words",
        "    (( CURRENT-- ))",
        "    case $cmd in",
    ]
    for name, _, options, takes_file in commands:
        specs = []
        for strings, kind, choices, help_text in options:
            action = {"flag": "", "choice": f":value:({' '.join(choices)})", "file": ":file:_files",
                      "value": ":value: "}[kind.rstrip("*")]
            repeat = "*" if kind.endswith("*") else ""
            for flag in strings:
                specs.append(f"'{repeat}{flag}[{_zsh_text(help_text)}]{action}'")
        if takes_file:
            specs.append("'1:file:_files'")
        lines.append(f"        {name})")
        lines.append("            _arguments -s \\")
        for spec in specs:
            lines.append(f"                {spec} \\")
        lines[-1] = lines[-1][:-2]
        lines.append("            ;;")
    lines += [
        "    esac",
        "}",
        'if [[ "$funcstack[1]" == "_cdp_relay" ]]; then',
        '    _cdp_relay "$@"',
        "else",
        f"    compdef _cdp_relay {PROG}",
        "fi",
        "",
    ]
    return "\n".join(lines)


def _shell_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")


@command("completion", help="print a bash or zsh completion script for cdp-relay",
         examples="examples:\n"
                  "  source <(cdp-relay completion bash)       # in ~/.bashrc\n"
                  "  source <(cdp-relay completion zsh)        # in ~/.zshrc (after compinit)\n"
                  "  cdp-relay completion bash > ~/.local/share/bash-completion/completions/cdp-relay\n",
         arguments=lambda p: _shell_argument(p),
         description="Print a completion script for bash or zsh, made from the commands and options of this "
                     "cdp-relay: it completes command names, options, and the values of options with choices.")
def _completion(args: argparse.Namespace) -> int:
    sys.stdout.write(_bash_completion() if args.shell == "bash" else _zsh_completion())
    return 0


# --- main ------------------------------------------------------------------------------------------


def build_parser() -> Parser:
    """The ``cdp-relay`` parser with every registered command."""
    lines = ["examples:"]
    for cmd in COMMANDS.values():
        first = next((ln.strip() for ln in cmd.examples.splitlines()[1:] if ln.strip().startswith(PROG)), "")
        if first:
            lines.append("  " + first.split("  #")[0].rstrip())
    lines.append("")
    lines.append("environment: " + ", ".join(ENVIRONMENT.values()) + " (flags win)")
    lines.append(f"'{PROG} COMMAND --help' shows each command's options and examples.")
    parser = Parser(prog=PROG, description="Tools for the cdp-relay Customer.io Data Pipelines SDK.",
                    epilog="\n".join(lines) + "\n")
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description, epilog=cmd.examples,
                           prog=f"{PROG} {cmd.name}", add_help=cmd.arguments is not None)
        if cmd.arguments is not None:
            cmd.arguments(p)
        _SUBPARSERS[cmd.name] = p
    return parser


_SUBPARSERS: Dict[str, argparse.ArgumentParser] = {}


@contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Keep the SDK's log off stderr (the command reports for itself), or show it all with -v."""
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    else:
        handler = logging.NullHandler()
    level, propagate = _log_root.level, _log_root.propagate
    _log_root.addHandler(handler)
    if verbose:
        _log_root.setLevel(logging.DEBUG)
        _log_root.propagate = False
    try:
        yield
    finally:
        _log_root.removeHandler(handler)
        _log_root.setLevel(level)
        _log_root.propagate = propagate


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``cdp-relay`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].arguments is None:
        cmd = COMMANDS[argv[0]]
        return _guarded(cmd.name, lambda: cmd.run(argv[1:]), verbose="-v" in argv or "--verbose" in argv,
                        quiet_logs=False)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"{PROG}: error: {_unknown_command(argv[0])} (see {PROG} --help)", file=sys.stderr)
        return 2
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            owner = _SUBPARSERS.get(args.command, parser) if args.command else parser
            owner.error(f"unrecognized arguments: {' '.join(extra)}{_flag_hint(owner, extra)}")
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    cmd = COMMANDS[args.command]
    return _guarded(cmd.name, lambda: cmd.run(args), verbose=getattr(args, "verbose", False), quiet_logs=True)


def _unknown_command(name: str) -> str:
    """``unknown command 'trak'; did you mean track?`` (or the list of commands)."""
    close = difflib.get_close_matches(name, list(COMMANDS), n=2, cutoff=0.6)
    if close:
        return f"unknown command {name!r}; did you mean {' or '.join(close)}?"
    return f"unknown command {name!r}; the commands are {', '.join(COMMANDS)}"


def _flag_hint(parser: argparse.ArgumentParser, extra: Sequence[str]) -> str:
    """`` (did you mean --host?)`` for a mistyped flag among ``extra``, else ""."""
    flags = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def _guarded(name: str, run: Callable[[], int], verbose: bool, quiet_logs: bool) -> int:
    prefix = f"{PROG} {name}"
    try:
        if quiet_logs:
            with _logging(verbose):
                return int(run() or 0)
        return int(run() or 0)
    except CLIError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return exc.code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout went away (cdp-relay ... | head): nothing more to say
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except (AnalyticsError, OSError) as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return 1
    except Exception as exc:  # a bug: one line, the traceback with -v
        print(f"{prefix}: internal error: {exc!r} (run with -v for the traceback)", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return 1

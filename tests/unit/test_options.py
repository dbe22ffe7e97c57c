"""Option checks: values that would make every send fail are refused at once, naming the option;
booleans are booleans; errors quote bad values briefly and never echo a password."""

from __future__ import annotations
import inspect
from pathlib import Path
from typing import Any, Dict

import pytest

import analytics
import customerio
from analytics import Client, ConfigurationError, InvalidMessageError
from analytics.destinations.bloomreach import Bloomreach
from analytics.destinations.trackv2 import TrackV2

from ..conftest import WRITE_KEY


NAN, INF = float("nan"), float("inf")


FLOAT_OPTIONS = ("timeout", "upload_interval", "max_retry_time", "max_queue_wait", "exit_timeout", "pace_wait")


BOOL_OPTIONS = ("debug", "send", "sync_mode", "gzip")


BAD: Dict[str, Any] = {
    "user agent ending in a newline": ("user_agent", "my-app/1.0\n"),
    "user agent with CRLF": ("user_agent", "my-app/1.0\r\nX-Injected: 1"),
    "user agent with a tab": ("user_agent", "my-app\t1.0"),
    "user agent not Latin-1": ("user_agent", "my-app/1.0 \u2603"),
    "user agent starting with a space": ("user_agent", " my-app/1.0"),
    "user agent not text": ("user_agent", b"my-app/1.0"),
    "host with a space": ("host", "https://cdp.customer .io"),
    "host with a control character": ("host", "https://cdp.customer.io/\x00"),
    "host not http": ("host", "ftp://cdp.customer.io"),
    "host with a port too high": ("host", "https://cdp.customer.io:99999"),
    "host with port 0": ("host", "https://cdp.customer.io:0"),
    "host with a bad IPv6 address": ("host", "http://[::1"),
    "host with a query": ("host", "https://cdp.customer.io/?region=eu"),
    "host with a fragment": ("host", "https://cdp.customer.io/#x"),
    "host with credentials": ("host", "https://user:pw@cdp.customer.io"),
    "host with no host name": ("host", "https://"),
    "host bare with a bad port": ("host", "cdp.customer.io:http"),
    "write key with a newline": ("write_key", WRITE_KEY + "\n"),
    **{f"{name} nan": (name, NAN) for name in FLOAT_OPTIONS},
    **{f"{name} inf": (name, INF) for name in FLOAT_OPTIONS},
    **{f"{name} too long for the OS": (name, 1e10) for name in FLOAT_OPTIONS},
    **{f"{name} 'no'-like text": (name, "nope") for name in BOOL_OPTIONS},
    **{f"{name} 2": (name, 2) for name in BOOL_OPTIONS},
    **{f"{name} None": (name, None) for name in BOOL_OPTIONS},
}


@pytest.mark.parametrize("name,value", list(BAD.values()), ids=list(BAD))
def test_bad_options_are_refused_at_creation(name: str, value: Any) -> None:
    """A value that would make every request fail (or mean something else) raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=name):
        Client(**{"write_key": WRITE_KEY, name: value})


SETTABLE = {k: v for k, v in BAD.items() if v[0] != "user_agent"}


@pytest.mark.parametrize("name,value", list(SETTABLE.values()), ids=list(SETTABLE))
def test_bad_options_are_refused_on_a_live_client_and_as_module_settings(name: str, value: Any) -> None:
    """``client.timeout = nan`` and ``analytics.timeout = nan`` raise at the assignment and change nothing."""
    client = Client(WRITE_KEY, send=False)
    before = getattr(client, name)
    with pytest.raises(ConfigurationError, match=name):
        setattr(client, name, value)
    assert getattr(client, name) == before
    client.shutdown(timeout=1)
    saved = getattr(analytics, name)
    with pytest.raises(ConfigurationError, match=name):
        setattr(analytics, name, value)
    assert getattr(analytics, name) == saved
    analytics.send = False
    analytics.track("u1", "Checked")  # the shared client is created with the good values
    with pytest.raises(ConfigurationError, match=name):
        setattr(analytics, name, value)


@pytest.mark.parametrize("text,expected", [("true", True), ("False", False), ("yes", True), ("NO", False),
                                           ("on", True), ("off", False), ("1", True), ("0", False),
                                           (1, True), (0, False), (True, True), (False, False)])
def test_boolean_options_parse_their_documented_forms_strictly(text: Any, expected: bool) -> None:
    """'no', 'false', '0' (and 0) turn a boolean option off; 'yes', 'true', '1' turn it on."""
    client = Client(WRITE_KEY, send=False, debug=text, gzip=text, sync_mode=text)
    assert (client.debug, client.gzip, client.sync_mode) == (expected,) * 3
    assert all(type(v) is bool for v in (client.debug, client.gzip, client.sync_mode))
    client.shutdown(timeout=1)


@pytest.mark.parametrize("host,url", [("localhost:8080", "http://localhost:8080"),
                                      ("127.0.0.1:8765", "http://127.0.0.1:8765"),
                                      ("[::1]:8765", "http://[::1]:8765"),
                                      ("cdp-eu.customer.io", "https://cdp-eu.customer.io"),
                                      ("proxy.example.com:8443/cdp", "https://proxy.example.com:8443/cdp"),
                                      (" https://127.0.0.1:8443/ ", "https://127.0.0.1:8443"),
                                      ("https://localhost:8443/cdp", "https://localhost:8443/cdp"),
                                      ("HTTP://[::1]:8080", "HTTP://[::1]:8080")])
def test_good_hosts_are_kept(host: str, url: str) -> None:
    """A bare host:port gets http:// for a loopback address (a local collector), https:// for any other
    host; a path prefix and an IPv6 literal are kept."""
    client = Client(WRITE_KEY, host=host, send=False)
    assert client.host == url
    client.shutdown(timeout=1)


@pytest.mark.parametrize("make", [
    lambda **kw: customerio.CustomerIO("site", "key", **kw),
    lambda **kw: customerio.APIClient("app-key", **kw),
], ids=["track", "app"])
@pytest.mark.parametrize("option,value", [("user_agent", "x\n"), ("user_agent", "\u2603"), ("timeout", NAN),
                                          ("timeout", INF)])
def test_the_customerio_clients_check_the_same_options(make: Any, option: str, value: Any) -> None:
    """The Track API and App API clients refuse the same user_agent and timeout values."""
    with pytest.raises(ConfigurationError, match=option):
        make(**{option: value})


@pytest.mark.parametrize("make", [
    lambda: customerio.CustomerIO("site", "key", host="track .customer.io"),
    lambda: customerio.APIClient("app-key", url="https://api.customer.io:99999"),
    lambda: TrackV2("site", "key", host="track .customer.io"),
    lambda: Bloomreach("token", api_token="t", base_url="https://api.exponea .com"),
], ids=["track", "app", "trackv2", "bloomreach"])
def test_the_other_clients_and_destinations_check_their_host(make: Any) -> None:
    """A host with a space or a bad port is refused by every client and destination, naming it."""
    with pytest.raises(ConfigurationError, match="host|url|base_url"):
        make()


def test_a_huge_bad_timestamp_gives_a_short_error() -> None:
    """A 10 MB bad timestamp is quoted by a short prefix and its length, not in full."""
    client = Client(WRITE_KEY, send=False)
    with pytest.raises(InvalidMessageError, match="10000000 characters") as info:
        client.track("u1", "E", timestamp="x" * 10_000_000)
    client.shutdown(timeout=1)
    assert len(str(info.value)) < 300


def test_a_huge_bad_object_type_id_gives_a_short_error() -> None:
    """A 10 MB bad objectTypeId is quoted by a short prefix, saying how long it was."""
    client = Client(WRITE_KEY, send=False)
    with pytest.raises(InvalidMessageError, match="10000001 characters") as info:
        client.group("u1", "g1", object_type_id="1" + "x" * 10_000_000)
    client.shutdown(timeout=1)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("kw", [dict(host="http://" + "h" * 10_000_000 + ":99999"),
                                dict(user_agent="a\n" * 5_000_000),
                                dict(queue="redis://127.0.0.1:6379/0", stream_prefix=("x" * 10_000_000,)),
                                dict(spool_path=["p"] * 1_000_000)], ids=["host", "user_agent", "prefix", "spool"])
def test_huge_bad_options_give_short_errors(kw: Dict[str, Any]) -> None:
    """Option errors quote a short prefix of a huge bad value."""
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY, **kw)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("queue", ["Redis://:secret@127.0.0.1:6379/0", " redis://:secret@127.0.0.1:6379/0",
                                   "http://user:secret@127.0.0.1:6379/0",
                                   "redis-sentinel://127.0.0.1/0?password=secret"])
def test_a_mistyped_redis_url_does_not_show_its_password(queue: str) -> None:
    """The ConfigurationError for a bad queue URL shows it with the password replaced by ***."""
    with pytest.raises(ConfigurationError, match="queue") as info:
        Client(WRITE_KEY, queue=queue)
    assert "secret" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("kw", [dict(host="https://user:secret@cdp .example.com"),
                                dict(host="https://user:secret@cdp.example.com:99999"),
                                dict(proxies="http://user:secret@proxy:3128")], ids=["space", "port", "proxies"])
def test_bad_host_and_proxy_urls_do_not_show_their_password(kw: Dict[str, Any]) -> None:
    """Errors about a host or proxies URL never contain its password."""
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY, **kw)
    assert "secret" not in str(info.value)


def test_a_redis_url_redis_refuses_is_shown_without_its_password() -> None:
    """A redis:// URL that Redis cannot parse is named in the error, password redacted."""
    with pytest.raises(ConfigurationError, match="notaport") as info:
        Client(WRITE_KEY, queue="redis://:secret@127.0.0.1:notaport/0")
    assert "secret" not in str(info.value) and "redis://:***@127.0.0.1:notaport/0" in str(info.value)


def test_the_bloomreach_client_checks_its_options() -> None:
    """The direct Bloomreach client refuses an infinite timeout, a bad user agent and a base URL with a space."""
    from analytics.bloomreach import BloomreachClient

    for kw, name in ((dict(timeout=INF), "timeout"), (dict(user_agent="x\r\n"), "user_agent"),
                     (dict(base_url="https://api.exponea .com"), "base_url")):
        with pytest.raises(ConfigurationError, match=name):
            BloomreachClient("token", api_token="t", **kw)


def test_boolean_module_settings_read_back_as_booleans() -> None:
    """``analytics.debug = 'no'`` is stored as False (a truthy 'no' would mislead ``if analytics.debug``)."""
    analytics.debug = "no"
    analytics.gzip = "yes"
    assert analytics.debug is False and analytics.gzip is True
    analytics.send = "false"
    analytics.track("u1", "Checked")
    assert analytics.default_client is not None and analytics.default_client.send is False


def test_the_client_signature_is_the_table() -> None:
    """Client's parameters are the table's options, in its order, with its defaults (they cannot drift)."""
    from analytics.options import OPTIONS

    params = list(inspect.signature(Client).parameters.values())
    assert [(p.name, p.default) for p in params] == [(o.name, o.default) for o in OPTIONS]
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][-1] == "upload_interval"


def test_the_live_attributes_are_the_tables_live_options() -> None:
    """Client has a checked, settable attribute for each live option and for no other."""
    from analytics.client import _Setting
    from analytics.options import OPTIONS

    settable = {name for name, value in vars(Client).items() if isinstance(value, _Setting)}
    assert settable == {o.name for o in OPTIONS if o.live}
    client = Client(WRITE_KEY, send=False)
    with pytest.raises(AttributeError):
        client.thread = 2  # type: ignore[misc]  # creation-only
    client.shutdown(timeout=1)


def test_the_engine_config_is_the_tables() -> None:
    """consumer.Config is options.Config; it checks every option, refuses unknown ones and derives retry."""
    from analytics import consumer, options

    assert consumer.Config is options.Config
    config = options.Config(write_key=WRITE_KEY, max_retries=3)
    assert (config.host, config.user_agent) == (options.DEFAULT_HOST, options.DEFAULT_USER_AGENT)
    assert (config.retry.max_retries, config.retry.max_time) == (3, 60.0)
    config.set("max_retry_time", 5)
    assert config.retry.max_time == 5
    with pytest.raises(ConfigurationError, match="timeout"):
        options.Config(timeout=NAN)
    with pytest.raises(ConfigurationError, match="max_retries"):
        config.set("max_retries", -1)
    with pytest.raises(TypeError, match="max_in_flite"):
        options.Config(max_in_flite=4)


def test_config_knows_which_options_were_given_explicitly() -> None:
    """Config.explicit holds the options passed (even at their default value) or set later, not the defaults."""
    client = Client(WRITE_KEY, None, False, send=False, upload_size=100)
    assert client._config.explicit == {"write_key", "host", "debug", "send", "upload_size"}
    client.timeout = 15
    assert "timeout" in client._config.explicit and "upload_interval" not in client._config.explicit
    client.shutdown(timeout=1)
    assert Client(send=False)._config.explicit == {"send"}


def test_module_settings_are_explicit_on_the_shared_client() -> None:
    """A module setting assigned before or after the first call is explicit on the shared client; others are not."""
    analytics.upload_size = 100  # the default value, but set on purpose
    analytics.send = False
    analytics.track("u1", "Checked")
    client = analytics.default_client
    assert client is not None and client._config.explicit == {"upload_size", "send"}
    analytics.timeout = 15
    assert client._config.explicit == {"upload_size", "send", "timeout"}


REDIS_URL = "redis://127.0.0.1:6379/0"


CREATION_BAD: Dict[str, Any] = {
    "thread 0": ("thread", dict(thread=0)),
    "spool_path a list": ("spool_path", dict(spool_path=["x"])),
    "destination a string": ("destination", dict(destination="trackv2")),
    "retry_policy a dict": ("retry_policy", dict(retry_policy={"max_retries": 1})),
    "spool_sync 'sometimes'": ("spool_sync", dict(spool_sync="sometimes")),
    "spool_max_bytes 0": ("spool_max_bytes", dict(spool_max_bytes=0)),
    "spool_required 2": ("spool_required", dict(spool_required=2)),
    "queue not Redis": ("queue", dict(queue="http://127.0.0.1:6379")),
    "claim_after too short": ("claim_after", dict(queue=REDIS_URL, claim_after=0.01)),
    "stream_prefix empty": ("stream_prefix", dict(queue=REDIS_URL, stream_prefix="")),
    "consume 'maybe'": ("consume", dict(queue=REDIS_URL, consume="maybe")),
    "stream_prefix empty, no queue": ("stream_prefix", dict(stream_prefix="")),  # README: every value is checked
    "claim_after a string, no queue": ("claim_after", dict(claim_after="30")),
}


@pytest.mark.parametrize("name,kw", list(CREATION_BAD.values()), ids=list(CREATION_BAD))
def test_bad_creation_only_options_are_refused_naming_them(name: str, kw: Dict[str, Any], tmp_path: Path) -> None:
    """A bad creation-only option raises ConfigurationError naming it, from Client() and as a module setting."""
    spool = {} if name in ("spool_path", "queue", "consume", "claim_after", "stream_prefix") else {
        "spool_path": str(tmp_path / "spool.db")}
    with pytest.raises(ConfigurationError, match=name):
        Client(WRITE_KEY, **spool, **kw)
    if name in analytics._CREATION_SETTINGS:
        before = getattr(analytics, name)
        with pytest.raises(ConfigurationError, match=name):
            setattr(analytics, name, kw[name])
        assert getattr(analytics, name) == before

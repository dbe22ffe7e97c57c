"""Shaping messages: before_send, request_context blocks, global_context and global_properties.

Delivery goes to the real collector on loopback; isolation across threads
and asyncio tasks is checked on the messages the collector stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import analytics
from analytics import Client, ConfigurationError, InvalidMessageError, MessageTooLargeError
from analytics.context import current, request_context

from ..conftest import OFFLINE_HOST, WRITE_KEY


def _stats_hold(client: Client) -> None:
    s = client.stats()
    lost = sum(s["failed"].values()) + sum(s["dropped"].values())
    assert s["accepted"] + s["recovered"] == s["delivered"] + lost + s["pending"], s


# --- before_send ------------------------------------------------------------------


def test_before_send_changes_and_drops_messages_in_the_callers_thread(make_client, collector):
    """A returned dict is what is sent; None drops it, counted under dropped['before_send'], never on_error."""
    seen_threads = set()

    def scrub(msg):
        seen_threads.add(threading.get_ident())
        if msg.get("event") == "internal":
            return None
        msg["properties"].pop("email", None)
        msg["properties"]["scrubbed"] = True
        return msg

    client = make_client(before_send=scrub)
    assert client.track("u", "Signed Up", {"email": "a@example.com", "plan": "pro"})[0]
    ok, msg = client.track("u", "internal")
    assert ok is False and msg["event"] == "internal"
    assert client.flush(timeout=10) == 0
    assert seen_threads == {threading.get_ident()}
    (sent,) = collector.messages
    assert sent["event"] == "Signed Up" and sent["properties"] == {"plan": "pro", "scrubbed": True}
    stats = client.stats()
    assert stats["dropped"]["before_send"] == 1 and stats["delivered"] == 1 and stats["accepted"] == 2
    _stats_hold(client)


def test_a_list_of_functions_runs_in_order_and_stops_at_a_drop(make_client, collector):
    """before_send=[f, g]: g gets what f returned; once one returns None the rest do not run."""
    calls = []

    def first(msg):
        calls.append("first")
        msg["properties"]["order"] = ["first"]
        return None if msg["event"] == "drop" else msg

    def second(msg):
        calls.append("second")
        msg["properties"]["order"].append("second")
        return msg

    client = make_client(before_send=[first, second])
    client.track("u", "keep")
    client.track("u", "drop")
    client.flush(timeout=10)
    assert calls == ["first", "second", "first"]
    assert [m["properties"]["order"] for m in collector.messages] == [["first", "second"]]


def test_an_exception_in_before_send_drops_the_message_logs_once_and_never_reaches_the_caller(
    make_client, collector, errors, caplog
):
    """before_send raising (or returning a non-dict) drops that message only; one warning per run of failures."""
    broken = {"on": True}

    def flaky(msg):
        if broken["on"]:
            raise KeyError("boom")
        return msg

    client = make_client(before_send=flaky)
    with caplog.at_level(logging.WARNING, logger="customerio"):
        for i in range(10):
            ok, msg = client.track("u", f"e{i}")
            assert ok is False and msg["event"] == f"e{i}"
        broken["on"] = False
        assert client.track("u", "works")[0]
    client.flush(timeout=10)
    raised = [r for r in caplog.records if "before_send raised" in r.getMessage()]
    assert len(raised) == 1
    assert any("works again; 10 message(s)" in r.getMessage() for r in caplog.records)
    assert [m["event"] for m in collector.messages] == ["works"]
    assert client.stats()["dropped"]["before_send_error"] == 10
    assert errors.calls == []
    _stats_hold(client)


def test_before_send_returning_a_non_dict_is_a_failure(make_client, collector):
    """A result that is neither a dict nor None is counted as before_send_error."""
    client = make_client(before_send=lambda msg: "not a message")
    assert client.track("u", "e")[0] is False
    assert client.stats()["dropped"]["before_send_error"] == 1


def test_the_size_limit_applies_to_what_before_send_returns():
    """A before_send that grows a message past 32 KB makes the call raise MessageTooLargeError."""

    def grow(msg):
        msg["properties"]["blob"] = "x" * 40_000
        return msg

    client = Client(WRITE_KEY, host=OFFLINE_HOST, send=False, before_send=grow)
    with pytest.raises(MessageTooLargeError):
        client.track("u", "e")


@pytest.mark.parametrize("bad", [42, "scrub", [print, 3]])
def test_a_bad_before_send_is_refused_at_once(bad):
    """before_send must be a function or a list of functions: ConfigurationError at creation and when set."""
    with pytest.raises(ConfigurationError, match="before_send"):
        Client(WRITE_KEY, host=OFFLINE_HOST, before_send=bad)
    with pytest.raises(ConfigurationError, match="before_send"):
        analytics.before_send = bad


def test_before_send_as_a_module_setting_and_live(collector):
    """analytics.before_send applies to the shared client, also when set after its first call."""
    analytics.write_key, analytics.host = WRITE_KEY, collector.url
    analytics.track("u", "before")
    analytics.before_send = lambda msg: {**msg, "properties": {"tagged": True}}
    analytics.track("u", "after")
    analytics.flush()
    by_event = {m["event"]: m for m in collector.messages}
    assert by_event["before"]["properties"] == {} and by_event["after"]["properties"] == {"tagged": True}


# --- request_context --------------------------------------------------------------


def test_request_context_fills_context_and_identity_calls_win(make_client, collector):
    """Blocks merge (inner wins), the call's context wins over them, and the block's identity fills a bare call."""
    client = make_client()
    with request_context({"ip": "203.0.113.7", "locale": "de-DE"}, user_id="u-1"):
        with request_context(page={"path": "/cart"}):
            client.track(event="Viewed Cart")
            client.track("u-2", "Explicit", context={"ip": "198.51.100.1"})
        client.identify(traits={"plan": "pro"})
        client.alias(previous_id="anon-1", user_id="u-1")
    assert current() is None
    client.track("u-3", "Outside")
    client.flush(timeout=10)
    got = {m["event"] if m["type"] == "track" else m["type"]: m for m in collector.messages}
    cart = got["Viewed Cart"]
    assert cart["userId"] == "u-1"
    assert cart["context"]["ip"] == "203.0.113.7" and cart["context"]["page"] == {"path": "/cart"}
    assert cart["context"]["library"]["name"] == "cdp-relay"
    assert got["Explicit"]["userId"] == "u-2" and got["Explicit"]["context"]["ip"] == "198.51.100.1"
    assert got["Explicit"]["context"]["locale"] == "de-DE"
    assert got["identify"]["userId"] == "u-1" and got["identify"]["context"]["ip"] == "203.0.113.7"
    assert set(got["Outside"]["context"]) == {"library"}


def test_a_lazy_identity_is_read_once_and_only_when_needed(make_client, collector):
    """user_id=<function>: called at the first call that needs it, once per block; a failure means no identity."""
    reads = []

    def who():
        reads.append(1)
        return 42

    client = make_client()
    with request_context(user_id=who):
        client.track("explicit", "e1")
        assert reads == []
        client.track(event="e2")
        client.track(event="e3")
    assert reads == [1]
    with request_context(user_id=lambda: 1 / 0):
        with pytest.raises(InvalidMessageError, match="user_id or anonymous_id"):
            client.track(event="no identity")
    client.flush(timeout=10)
    assert sorted(m["userId"] for m in collector.messages) == ["42", "42", "explicit"]


def test_blocks_do_not_leak_across_threads_or_asyncio_tasks(make_client, collector):
    """Each thread and each task sees only its own block, even when they interleave."""
    client = make_client()
    barrier = threading.Barrier(4)

    def request(n: int) -> None:
        with request_context(ip=f"10.0.0.{n}", user_id=f"t{n}"):
            barrier.wait(5)  # all four blocks are open at once
            client.track(event="thread")

    threads = [threading.Thread(target=request, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    async def task(n: int, gate: asyncio.Event) -> None:
        with request_context(ip=f"10.1.0.{n}", user_id=f"a{n}"):
            await gate.wait()  # every task is inside its block before any tracks
            client.track(event="task")

    async def main() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(task(n, gate)) for n in range(4)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    client.flush(timeout=10)
    pairs = {(m["userId"], m["context"]["ip"]) for m in collector.messages}
    assert pairs == {(f"t{n}", f"10.0.0.{n}") for n in range(4)} | {(f"a{n}", f"10.1.0.{n}") for n in range(4)}


@pytest.mark.parametrize("bad", [dict(fields=[1, 2]), dict(fields={1: "x"}), dict(user_id=1.5), dict(user_id=True)])
def test_bad_request_context_arguments_are_refused_at_once(bad):
    """Fields must be a mapping with string keys; an identity a string, an integer or a function."""
    fields = bad.pop("fields", None)
    with pytest.raises(InvalidMessageError):
        with request_context(fields, **bad):
            pass


# --- global context and properties ----------------------------------------------------


def test_global_context_and_properties_are_added_and_calls_win(make_client, collector):
    """global_properties go on track/page/screen under the call's; global_context under blocks and calls."""
    client = make_client(global_context={"app": {"name": "shop"}, "ip": "0.0.0.0"},
                         global_properties={"release": "1.2", "plan": "free"})
    props = {"plan": "pro"}
    client.track("u", "Bought", props)
    with request_context(ip="203.0.113.9"):
        client.page("u", "Home")
    client.identify("u", {"name": "Ada"})
    client.flush(timeout=10)
    assert props == {"plan": "pro"}  # the caller's dict is not changed
    got = {m["type"]: m for m in collector.messages}
    assert got["track"]["properties"] == {"release": "1.2", "plan": "pro"}
    assert got["track"]["context"]["app"] == {"name": "shop"} and got["track"]["context"]["ip"] == "0.0.0.0"
    assert got["page"]["properties"] == {"release": "1.2", "plan": "free"}
    assert got["page"]["context"]["ip"] == "203.0.113.9"
    assert "release" not in got["identify"]["traits"] and got["identify"]["context"]["app"] == {"name": "shop"}


@pytest.mark.parametrize("name", ["global_context", "global_properties"])
@pytest.mark.parametrize("bad", [["a"], {1: "x"}, "text"])
def test_bad_global_fields_are_refused(name, bad):
    """Both must be dicts with string keys."""
    with pytest.raises(ConfigurationError, match=name):
        Client(WRITE_KEY, host=OFFLINE_HOST, **{name: bad})

"""Whether green threads moved to a new loop (gunicorn's green workers, after ``post_fork``): analytics.engine.hosts.

eventlet and gevent are stood in for by modules put in ``sys.modules``:
:mod:`analytics.engine.hosts` only looks there.
"""

from __future__ import annotations

import sys
import threading
import types

import pytest

from analytics.engine import hosts


class _Hubs:
    """Stands in for ``eventlet.hubs``: one hub per test, replaced by :meth:`use_hub`."""

    def __init__(self) -> None:
        self.hub = object()

    def get_hub(self) -> object:
        return self.hub

    def use_hub(self) -> None:
        self.hub = object()


@pytest.fixture
def eventlet(monkeypatch):
    hubs = _Hubs()
    patcher = types.SimpleNamespace(is_monkey_patched=lambda name: name == "thread")
    monkeypatch.setitem(sys.modules, "eventlet.patcher", patcher)
    monkeypatch.setitem(sys.modules, "eventlet.hubs", hubs)
    monkeypatch.delitem(sys.modules, "gevent.monkey", raising=False)
    return hubs


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(5)
    return out[0]


def test_no_green_loop_without_gevent_or_eventlet(monkeypatch):
    for name in ("eventlet.patcher", "eventlet.hubs", "gevent.monkey"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert hosts.green_loop() is None


def test_a_new_eventlet_hub_in_the_same_thread_is_a_replacement_and_another_thread_is_not(eventlet):
    built = hosts.green_loop()
    assert built is not None and built[0] == "eventlet"
    assert not hosts.loop_replaced(built)
    eventlet.use_hub()
    assert hosts.loop_replaced(built)
    assert not _in_thread(lambda: hosts.loop_replaced(built))  # another OS thread's hub is its own


def test_gevent_patching_after_the_engine_was_built_is_a_replacement(monkeypatch):
    patched = {"threading": False}
    monkey = types.SimpleNamespace(is_module_patched=lambda name: patched.get(name, False))
    monkeypatch.setitem(sys.modules, "gevent.monkey", monkey)
    monkeypatch.delitem(sys.modules, "eventlet.patcher", raising=False)
    built = hosts.green_loop()
    assert built is not None and built[0] == "threads"
    assert not hosts.loop_replaced(built)
    patched["threading"] = True
    assert hosts.loop_replaced(built)
    assert not hosts.loop_replaced(hosts.green_loop())

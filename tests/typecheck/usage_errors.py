"""Mistakes mypy --strict must report against the documented API (tests/test_typing.py checks that
each line marked ``# error: CODE`` gets an error with that code, and no other line does)."""

from __future__ import annotations

import analytics
from customerio.analytics.client import Client


def wrong_callback(code: int) -> None:
    print(code)


def mistakes() -> None:
    analytics.track("u", "e", {}, contxt={})  # error: call-arg
    analytics.identify("u", traits="plan=pro")  # error: arg-type
    analytics.timeout = "5"  # error: assignment
    analytics.on_error = wrong_callback  # error: assignment
    client = Client("KEY")
    client.track("u", "e", propertys={})  # error: call-arg
    client.queue.maxsize = 5  # error: misc
    count: str = analytics.flush()  # error: assignment
    print(count, analytics.stats()["delivred"])  # error: typeddict-item

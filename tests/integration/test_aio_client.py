"""analytics.aio: the asyncio Data Pipelines client and the awaitable facade functions, against
a real collector on loopback.  The event loop is watched by a probe task while things wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator, List, Tuple

import pytest

import analytics
from analytics import Client, RetryPolicy
from analytics import aio
from analytics.aio import AsyncClient, run_in_thread
from analytics.collector import Collector
from analytics.errors import ConfigurationError

from ..conftest import WRITE_KEY


class LagProbe:
    """A task that sleeps 5 ms at a time and records how late the loop woke it."""

    def __init__(self) -> None:
        self.lags: List[float] = []
        self._task: Any = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append(time.perf_counter() - started - 0.005)

    def start(self) -> "LagProbe":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> Tuple[int, float]:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return len(self.lags), max(self.lags, default=0.0)


def make(collector: Collector, **kw: Any) -> AsyncClient:
    kw.setdefault("retry_policy", RetryPolicy(max_retries=5, max_time=10, base=0.01, cap=0.05))
    return AsyncClient(WRITE_KEY, host=collector.url, **kw)


def test_calls_are_plain_and_flush_delivers(collector: Collector):
    """track() and friends return (success, message) at once; await flush() delivers them all."""
    async def main() -> Tuple[Any, int]:
        async with make(collector) as client:
            result = client.track("user-1", "Signed Up", {"plan": "pro"})
            client.identify("user-1", {"email": "a@example.com"})
            client.page("user-1", "Docs", "Install")
            client.screen("user-1", "Home")
            client.group("user-1", "acme", {"name": "Acme"})
            client.alias("anon-1", "user-1")
            pending = await client.flush(timeout=10)
            return result, pending

    (ok, message), pending = asyncio.run(main())
    assert ok and message["event"] == "Signed Up" and pending == 0
    assert [m["type"] for m in collector.messages] == ["track", "identify", "page", "screen", "group", "alias"]


def test_flush_does_not_block_the_event_loop(collector: Collector):
    """While await flush() waits for a slow server (300 ms per request), the loop keeps
    running: the probe ticks throughout and is never held up for long."""
    collector.delay = 0.3

    async def main() -> Tuple[float, int, float, int]:
        async with make(collector) as client:
            for i in range(50):
                client.track(f"user-{i}", "Clicked")
            probe = LagProbe().start()
            started = time.perf_counter()
            pending = await client.flush(timeout=10)
            waited = time.perf_counter() - started
            ticks, worst = await probe.stop()
            return waited, ticks, worst, pending

    waited, ticks, worst, pending = asyncio.run(main())
    assert pending == 0 and waited >= 0.28
    assert ticks >= 20  # a blocked loop would have ticked once or not at all
    assert worst < 0.1, f"the loop was held up for {worst * 1000:.0f} ms"
    assert len(collector.messages) == 50


def test_flush_timeout_returns_the_pending_count(collector: Collector):
    """flush(timeout) returns the messages still pending at the deadline, without waiting longer."""
    collector.delay = 1.0

    async def main() -> Tuple[int, float, int]:
        async with make(collector) as client:
            client.track("user-1", "Slow")
            started = time.perf_counter()
            pending = await client.flush(timeout=0.1)
            elapsed = time.perf_counter() - started
            immediate = await client.flush(timeout=0)
            collector.delay = 0.0
            return pending, elapsed, immediate

    pending, elapsed, immediate = asyncio.run(main())
    assert pending == 1 and immediate == 1 and elapsed < 0.9


def test_cancelled_flush_does_not_hold_up_the_loop(collector: Collector):
    """Cancelling a task awaiting flush() cancels the wait; asyncio.run() then exits promptly."""
    collector.delay = 0.5

    async def main() -> bool:
        client = make(collector)
        client.track("user-1", "Waiting")
        task = asyncio.ensure_future(client.flush())
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        client.client.shutdown(timeout=0)
        return cancelled

    started = time.perf_counter()
    assert asyncio.run(main())
    assert time.perf_counter() - started < 2.0


def test_async_with_shuts_down(collector: Collector):
    """Leaving ``async with`` drains and shuts the client down; later calls report (False, msg)."""
    async def main() -> AsyncClient:
        async with make(collector) as client:
            client.track("user-1", "Bought")
        return client

    client = asyncio.run(main())
    assert len(collector.messages) == 1
    assert client.track("user-1", "Too late")[0] is False
    stats = client.stats()
    assert stats["delivered"] == 1 and stats["dropped"]["shutdown"] == 1


def test_shutdown_returns_dropped_at_the_deadline(collector: Collector):
    """await shutdown(timeout) waits at most about that long and reports what was dropped."""
    collector.delay = 2.0

    async def main() -> Tuple[int, float]:
        client = make(collector)
        client.track("user-1", "Stuck")
        started = time.perf_counter()
        dropped = await client.shutdown(timeout=0.2)
        return dropped, time.perf_counter() - started

    dropped, elapsed = asyncio.run(main())
    collector.delay = 0.0
    assert dropped == 1 and elapsed < 1.5


def test_settings_pass_through_and_wrapping_a_client(collector: Collector):
    """Settings read and write through to the wrapped Client; AsyncClient(client=...) wraps one."""
    sync = Client(WRITE_KEY, host=collector.url)
    client = AsyncClient(client=sync)
    client.gzip = True
    assert sync.gzip is True and client.upload_size == sync.upload_size and client.client is sync

    async def main() -> int:
        client.track("user-1", "Gzipped")
        return await client.shutdown(timeout=5)

    assert asyncio.run(main()) == 0
    assert collector.batches[0].compressed_size is not None


def test_options_that_would_block_the_loop_are_refused(collector: Collector):
    """sync_mode and a max_queue_wait other than 0 would make calls wait on the loop: refused."""
    with pytest.raises(ConfigurationError, match="sync_mode"):
        AsyncClient(WRITE_KEY, host=collector.url, sync_mode=True)
    with pytest.raises(ConfigurationError, match="max_queue_wait"):
        AsyncClient(WRITE_KEY, host=collector.url, max_queue_wait=1.0)
    with pytest.raises(ConfigurationError):
        AsyncClient(client="not a client")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AsyncClient(WRITE_KEY, client=Client(WRITE_KEY, send=False))


def test_facade_awaitables_flush_and_shutdown(collector: Collector):
    """aio.flush() and aio.shutdown() act on analytics.default_client without blocking the loop."""
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url

    async def main() -> Tuple[int, int, int]:
        nothing = await aio.flush()
        analytics.track("user-1", "Via facade")
        analytics.identify("user-1", {"plan": "pro"})
        pending = await aio.flush(timeout=10)
        dropped = await aio.shutdown(timeout=10)
        return nothing, pending, dropped

    nothing, pending, dropped = asyncio.run(main())
    assert (nothing, pending, dropped) == (0, 0, 0)
    shared = analytics.default_client
    assert shared is not None and shared.track("user-1", "After shutdown")[0] is False
    assert [m["type"] for m in collector.messages] == ["track", "identify"]
    assert asyncio.run(aio.shutdown()) == 0


def test_run_in_thread_passes_results_and_errors():
    """run_in_thread returns the function's value and raises its exception in the awaiting task."""
    async def main() -> None:
        assert await run_in_thread(lambda x: x * 2, 21) == 42
        with pytest.raises(ZeroDivisionError):
            await run_in_thread(lambda: 1 / 0)

    asyncio.run(main())


@pytest.fixture(autouse=True)
def _no_delay(collector: Collector) -> Iterator[None]:
    yield
    collector.delay = 0.0

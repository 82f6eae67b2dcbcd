"""Background work: @task, @timer, @cron and the stop-aware sleep."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import tether
import tether._core._tasks
from tests.conftest import WAIT, bounded
from tether.testing import VirtualClock

T = TypeVar("T")


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on an event loop whose clock jumps to the next timer when idle."""
    with VirtualClock(start=1000.0) as clock:
        return clock.run(coro)


class Ticker(tether.Service):
    """Records the loop time of every tick; can be told to overrun some ticks."""

    def __init__(self, overrun: dict[int, float] | None = None) -> None:
        self.ticks: list[float] = []
        self.overrun = overrun or {}

    async def start(self) -> None:
        self.t0 = asyncio.get_running_loop().time()

    @tether.timer(10)
    async def tick(self) -> None:
        now = asyncio.get_running_loop().time()
        self.ticks.append(now - self.t0)
        extra = self.overrun.get(len(self.ticks))
        if extra:
            await asyncio.sleep(extra)
        if len(self.ticks) >= 8:
            self.request_stop()


def test_timer_ticks_on_a_fixed_schedule_without_drift() -> None:
    """Tick n is due at t0 + n x interval, however long each tick takes."""

    class SlowTicks(Ticker):
        @tether.timer(10)
        async def tick(self) -> None:
            await super().tick()
            await asyncio.sleep(3)  # each tick takes 3 s: a sleeping loop would drift

    async def main() -> list[float]:
        service = SlowTicks()
        await service.run()
        return service.ticks

    ticks = run_virtual(main())
    assert ticks == [10.0 * n for n in range(1, 9)]


def test_overrunning_tick_skips_missed_ticks_and_counts_them() -> None:
    """A tick that runs 2.5 intervals skips the missed ticks instead of stacking runs."""

    async def main() -> tuple[list[float], int, list[tether.LifecycleEvent]]:
        service = Ticker(overrun={2: 25.0})
        events: list[tether.LifecycleEvent] = []
        with tether.subscribe(events.append):
            async with service:
                await service.wait()
                skipped = tether.status(service).skipped_ticks
        return service.ticks, skipped, events

    ticks, skipped, events = run_virtual(main())
    # Tick 2 ran 20..45; ticks due at 30 and 40 were skipped; the next is due at 50.
    assert ticks == [10.0, 20.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert skipped == 2
    (event,) = [e for e in events if e.kind is tether.EventKind.TIMER_SKIPPED]
    assert event.count == 2


def test_immediate_timer_ticks_at_start() -> None:
    """immediate=True puts the first tick at t0."""

    class Immediate(Ticker):
        @tether.timer(5, immediate=True)
        async def tick(self) -> None:
            await super().tick()

    async def main() -> list[float]:
        service = Immediate()
        await service.run()
        return service.ticks

    assert run_virtual(main()) == [5.0 * n for n in range(8)]


def test_timer_stops_with_its_service() -> None:
    """Once the service stops, no tick runs and the timer task is gone."""

    async def main() -> tuple[int, int]:
        service = Ticker()
        async with service:
            await asyncio.sleep(25)
        count = len(service.ticks)
        await asyncio.sleep(100)
        return count, len(service.ticks)

    before, after = run_virtual(main())
    assert before == 2
    assert after == 2


def test_timer_exception_crashes_the_stack() -> None:
    """A tick that raises crashes the stack like any background task."""

    class Failing(tether.Service):
        @tether.timer(1)
        async def tick(self) -> None:
            raise ValueError("tick failed")

    with pytest.raises(ValueError, match="tick failed"):
        run_virtual(Failing().run())


def test_timer_rejects_bad_intervals() -> None:
    """Intervals must be positive, finite numbers of seconds."""
    for bad in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="positive, finite"):
            tether.timer(bad)
    with pytest.raises(TypeError, match="a number of seconds"):
        tether.timer("10s")  # type: ignore[arg-type]


def test_timer_interval_can_come_from_the_service() -> None:
    """A callable interval is read from the service when it starts (e.g. from config)."""

    class Configured(Ticker):
        def __init__(self, every: float) -> None:
            super().__init__()
            self.every = every

        @tether.timer(lambda self: self.every)
        async def tick(self) -> None:
            await super().tick()

    async def main() -> list[float]:
        service = Configured(every=2.5)
        await service.run()
        return service.ticks

    assert run_virtual(main()) == [2.5 * n for n in range(1, 9)]


async def test_timer_interval_from_the_service_is_validated() -> None:
    """A bad interval read at start fails the start, naming the service and method."""

    class Bad(tether.Service):
        @tether.timer(lambda self: -1)
        async def tick(self) -> None:  # pragma: no cover
            pass

    with pytest.raises(ValueError, match=r"Bad\.tick: the interval must be a positive"):
        await Bad().run()


def test_sleep_returns_early_when_the_service_stops() -> None:
    """sleep() returns True after the full time, False as soon as a stop begins."""
    results: list[tuple[bool, float]] = []

    class Sleeper(tether.Service):
        @tether.task
        async def loop(self) -> None:
            clock = asyncio.get_running_loop()
            while True:
                began = clock.time()
                slept = await self.sleep(30)
                results.append((slept, clock.time() - began))
                if not slept:
                    return

    async def main() -> None:
        async with Sleeper():
            await asyncio.sleep(45)

    run_virtual(main())
    assert results == [(True, 30.0), (False, 15.0)]


async def test_task_decorator_runs_after_start_and_is_cancelled_on_stop() -> None:
    """@task methods start once start() returned and are cancelled when it stops."""
    order: list[str] = []

    class Worker(tether.Service):
        async def start(self) -> None:
            order.append("start")

        @tether.task
        async def work(self) -> None:
            order.append("task")
            try:
                await asyncio.sleep(WAIT * 10)
            finally:
                order.append("cancelled")

    async with Worker() as worker:
        await bounded(_until(lambda: "task" in order))
        assert tether.status(worker).tasks[0].get_name() == "Worker.work"
    assert order == ["start", "task", "cancelled"]


async def test_task_decorator_crash_crashes_the_stack() -> None:
    """An exception in a @task method is a crash."""

    class Worker(tether.Service):
        @tether.task
        async def work(self) -> None:
            raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        await bounded(Worker().run())


async def test_task_decorator_needs_an_async_method() -> None:
    """@task on a plain function is an error naming class and method."""

    class Wrong(tether.Service):
        @tether.task  # type: ignore[type-var]
        def work(self) -> None:  # pragma: no cover
            pass

    with pytest.raises(tether.HookError, match=r"Wrong\.work is marked @task"):
        await Wrong().run()


def test_task_decorator_on_blocking_service_is_an_error() -> None:
    """A BlockingService has no loop to run tasks on."""

    class Wrong(tether.BlockingService):
        @tether.task
        async def work(self) -> None:  # pragma: no cover
            pass

    with pytest.raises(tether.HookError, match="BlockingService has no"):
        with Wrong():
            pass  # pragma: no cover


def _follow_virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make cron's wall clock advance with the virtual loop clock."""
    base = dt.datetime(2026, 1, 1, 12, 3, 27, tzinfo=dt.UTC)

    def now(tz: dt.tzinfo | None) -> dt.datetime:
        elapsed = asyncio.get_running_loop().time() - 1000.0
        return (base + dt.timedelta(seconds=elapsed)).astimezone(tz)

    monkeypatch.setattr(tether._core._tasks, "_now", now)


def test_cron_runs_on_its_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """@cron('*/5 * * * *') fires at each five-minute mark."""
    _follow_virtual_clock(monkeypatch)
    fired: list[float] = []

    class Reports(tether.Service):
        @tether.cron("*/5 * * * *")
        async def report(self) -> None:
            fired.append(asyncio.get_running_loop().time())
            if len(fired) == 3:
                self.request_stop()

    run_virtual(Reports().run())
    # Started at 12:03:27 (virtual 1000.0): fires at 12:05, 12:10 and 12:15.
    assert fired == [1000.0 + 93, 1000.0 + 393, 1000.0 + 693]


def test_cron_skips_runs_missed_by_a_slow_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that outlasts several cron slots skips them, counted, never stacked."""
    _follow_virtual_clock(monkeypatch)
    fired: list[float] = []

    class Slow(tether.Service):
        @tether.cron("* * * * *")
        async def report(self) -> None:
            fired.append(asyncio.get_running_loop().time())
            if len(fired) == 1:
                await asyncio.sleep(150)  # covers the 12:05 and 12:06 slots
            if len(fired) == 2:
                self.request_stop()

    async def main() -> int:
        service = Slow()
        async with service:
            await service.wait()
            return tether.status(service).skipped_ticks

    skipped = run_virtual(main())
    assert fired == [1000.0 + 33, 1000.0 + 213]  # 12:04, then 12:07
    assert skipped == 2


def test_cron_rejects_a_malformed_expression() -> None:
    """A bad cron line is refused at decoration time, with the expected form."""
    with pytest.raises(ValueError, match="five fields"):
        tether.cron("every five minutes")


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0)

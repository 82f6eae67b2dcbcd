"""The virtual clock: an event loop whose time jumps to the next timer when it is idle."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

import tether
from tests.testing.testing_support import readme_example, run, setup
from tether.testing import VirtualClock, VirtualClockLoop


def test_sleeps_take_no_real_time_and_land_on_their_deadlines() -> None:
    """An hour of sleeping runs at once; time() reads each deadline exactly."""
    readings: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for seconds in (3600, 0.25, 86400 * 3):
            await asyncio.sleep(seconds)
            readings.append(loop.time())

    began = time.monotonic()
    with VirtualClock(start=100.0) as clock:
        clock.run(main())
    assert readings == [3700.0, 3700.25, 3700.25 + 86400 * 3]
    assert time.monotonic() - began < 5  # three days of virtual time


def test_timers_fire_in_deadline_order() -> None:
    """Concurrent sleepers wake in the order of their deadlines, not of their creation."""
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        woke.append(name)

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(sleeper("late", 30))
            group.create_task(sleeper("early", 10))
            group.create_task(sleeper("middle", 20))

    with VirtualClock() as clock:
        clock.run(main())
    assert woke == ["early", "middle", "late"]


def test_timeouts_expire_on_virtual_time() -> None:
    """asyncio.timeout() expires at its virtual deadline, instantly."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.Event().wait()
        return loop.time()

    with VirtualClock() as clock:
        assert clock.run(main()) == 30.0


def test_advance_moves_the_clock_and_due_timers_fire() -> None:
    """advance() jumps by hand; a timer it passes fires on the next iteration."""

    async def main(clock: VirtualClock) -> float:
        sleeper = asyncio.create_task(asyncio.sleep(50))
        await asyncio.sleep(0)
        clock.advance(60)
        await sleeper
        return clock.time()

    with VirtualClock(autojump_threshold=math.inf) as clock:
        assert clock.run(main(clock)) == 60.0


def test_the_clock_is_monotonic() -> None:
    """A negative advance or threshold is refused with the reason."""
    with VirtualClock() as clock, pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="autojump_threshold must be 0 or more"):
        VirtualClockLoop(autojump_threshold=-0.5)


def test_without_autojump_only_advance_moves_time() -> None:
    """autojump_threshold=inf: the loop waits for I/O or a wakeup, never jumps alone."""

    async def main(loop: VirtualClockLoop) -> float:
        def later() -> None:  # another thread moves the clock, through the loop
            loop.call_soon_threadsafe(loop.advance, 5)

        threading.Thread(target=later).start()
        await asyncio.sleep(5)
        return loop.time()

    with VirtualClock(autojump_threshold=math.inf) as clock:
        assert clock.run(main(clock.get_loop())) == 5.0


def test_the_threshold_lets_a_thread_finish_before_the_clock_jumps() -> None:
    """With an allowance of real time, a worker thread beats a pending virtual timeout."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await asyncio.wait_for(asyncio.to_thread(lambda: "done"), timeout=30)
        assert loop.time() == began  # the reply came first: no jump
        return result

    with VirtualClock(autojump_threshold=5) as clock:
        assert clock.run(main()) == "done"


def test_time_reads_start_until_the_loop_exists() -> None:
    """time() before any run is the start; repr shows it."""
    clock = VirtualClock(start=42.0)
    assert clock.time() == 42.0
    assert repr(clock) == "<VirtualClock time=42.0>"
    clock.close()


def test_timers_run_on_virtual_time(virtual_clock: VirtualClock) -> None:
    """The virtual_clock fixture runs a service's @timer ticks on exact virtual deadlines."""
    ticks: list[float] = []

    class Ticker(tether.Service):
        @tether.timer(10)
        async def tick(self) -> None:
            ticks.append(asyncio.get_running_loop().time())
            if len(ticks) == 6:
                self.request_stop()

    virtual_clock.run(Ticker().run())
    assert ticks == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_the_fixture_reports_tasks_left_on_its_loop(pytester: pytest.Pytester) -> None:
    """A task left pending on virtual_clock's loop is a leak, found before the loop closes."""
    setup(pytester)
    pytester.makepyfile(
        test_clock="""
        import asyncio
        import leaky

        def test_leaves_a_task(virtual_clock):
            async def main():
                asyncio.create_task(leaky.forever(), name="ticker")

            virtual_clock.run(main())
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*left 1 task behind*", "  - task 'ticker' running forever()*"])


def test_async_tests_run_on_it_through_pytest_asyncio_loop_factories(
    pytester: pytest.Pytester,
) -> None:
    """The README's conftest hook: marked async tests get a VirtualClockLoop."""
    import pytest_asyncio.plugin

    if not hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):  # pragma: no cover
        pytest.skip("this pytest-asyncio has no pytest_asyncio_loop_factories hook")
    setup(
        pytester,
        ini="markers =\n    virtual_time: run the test on a virtual clock",
        conftest=readme_example("conftest-virtual-time"),
    )
    pytester.makepyfile(
        test_timers="""
        import asyncio
        import pytest
        from tether.testing import VirtualClockLoop

        @pytest.mark.virtual_time
        async def test_a_day_passes():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, VirtualClockLoop)
            await asyncio.sleep(86400)
            assert loop.time() == 86400

        async def test_real_time():
            assert not isinstance(asyncio.get_running_loop(), VirtualClockLoop)
        """
    )
    run(pytester, "--strict-markers").assert_outcomes(passed=2)

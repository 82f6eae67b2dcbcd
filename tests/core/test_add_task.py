"""add_task's bookkeeping: what it keeps, what it forgets, and how a crash is reported."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

import pytest

import tether
from tests.conftest import bounded
from tether._core._base import record


class Owner(tether.Service):
    pass


async def test_finished_tasks_leave_the_running_set() -> None:
    """A task that returns, raises CancelledError or is cancelled mid-way is forgotten."""

    async def quick() -> int:
        return 7

    async def forever() -> None:
        await asyncio.Event().wait()

    async with Owner() as owner:
        done = owner.add_task(quick())
        hanging = owner.add_task(forever())
        assert await bounded(done) == 7
        await asyncio.sleep(0)  # let `hanging` reach its first await
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bounded(hanging)
        assert tether.status(owner).tasks == ()


async def test_tasks_cancelled_before_their_first_step_do_not_pile_up() -> None:
    """Such a task never runs its bookkeeping; add_task prunes them as the set grows."""

    async def never() -> None:
        raise AssertionError("cancelled before it began")

    async with Owner() as owner:
        for _ in range(2000):
            owner.add_task(never()).cancel()
            await asyncio.sleep(0)

        tasks = record(owner).tasks
        assert tasks is not None
        assert len(tasks) <= 128, len(tasks)
        assert tether.status(owner).tasks == ()


async def test_a_crashing_task_is_reported_once_and_not_as_never_retrieved() -> None:
    """The crash reaches wait(); asyncio does not also log 'exception was never retrieved'."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        async def boom() -> None:
            raise RuntimeError("boom")

        owner = Owner()
        with pytest.raises(RuntimeError, match="boom") as caught:
            async with owner:
                owner.add_task(boom(), name="boomer")
                await bounded(owner.wait())
        assert any("background task 'boomer' of Owner" in n for n in caught.value.__notes__)
        del caught
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_awaiting_a_crashed_task_gives_its_exception() -> None:
    """The Task add_task returns behaves like create_task's: awaiting it raises."""

    async def boom() -> None:
        raise ValueError("bad")

    owner = Owner()
    with pytest.raises(ValueError, match="bad"):
        async with owner:
            task = owner.add_task(boom())
            with pytest.raises(ValueError, match="bad"):
                await bounded(task)
            await bounded(owner.wait())


async def test_with_a_task_factory_the_factory_is_used_and_unstarted_tasks_are_pruned() -> None:
    """A loop's task factory makes the tasks; cancelled-before-start ones are still forgotten."""
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    async def never() -> None:
        raise AssertionError("cancelled before it began")

    # Through a factory the cancellation reaches tether's wrapper only, so the test
    # closes the coroutines itself (else each would warn that it was never awaited).
    given: list[Coroutine[Any, Any, None]] = []
    loop.set_task_factory(factory)
    try:
        async with Owner() as owner:
            for _ in range(1000):
                given.append(never())
                owner.add_task(given[-1]).cancel()
                await asyncio.sleep(0)
            tasks = record(owner).tasks
            assert tasks is not None
            assert len(tasks) <= 128, len(tasks)
        assert len(made) >= 1000
    finally:
        loop.set_task_factory(None)
        for coro in given:
            coro.close()


async def test_a_supervised_task_cancelled_before_it_began_is_one_shutdown_exit() -> None:
    """A task that never ran still ends its child's run (OTP's shutdown: a permanent
    child restarts), and cancelling it twice makes one exit, not two."""

    class Child(tether.Service):
        restart = tether.Restart.PERMANENT

    async def never() -> None:
        raise AssertionError("cancelled before it began")

    child = Child()
    restarted = asyncio.Event()
    events: list[tether.LifecycleEvent] = []

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.RESTART:
            events.append(event)
            restarted.set()

    with tether.subscribe(on_event):
        async with tether.Supervisor([child], max_restarts=5, max_seconds=60):
            task = child.add_task(never())
            task.cancel()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await bounded(task)
            await bounded(restarted.wait())
    assert [event.count for event in events] == [1]
    assert tether.status(child).restarts == 1

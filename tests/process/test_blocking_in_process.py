"""The blocked-loop detector of `tether.run(..., blocking_timeout=)`, run in this process.

Each service blocks the loop with a real `time.sleep` (the scenario under test) in a
background task, a hook, or a plain callback; the detector must name it, count it and
publish it. The signals and systemd side are held by `test_blocking.py`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

import tether

BLOCK = 0.3  # seconds each service blocks the loop for; the timeout is a third of it
TIMEOUT = 0.1


class Sleeper(tether.Service):
    """Blocks the loop once from its background task, then asks to stop."""

    @tether.task
    async def work(self) -> None:
        await asyncio.sleep(0)
        self.crunch()
        await asyncio.sleep(0)
        self.request_stop()

    def crunch(self) -> None:
        time.sleep(BLOCK)


class Helper:
    """Not a service: its blocking code is charged to the service that called it."""

    def parse(self) -> None:
        time.sleep(BLOCK)


class Caller(tether.Service):
    def __init__(self, helper: Helper, other: tether.Service) -> None:
        self.helper = helper
        self.other = other

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.other]

    @tether.task
    async def work(self) -> None:
        self.helper.parse()
        self.request_stop()


class SlowStart(tether.Service):
    """Blocks the loop in its start hook."""

    async def start(self) -> None:
        time.sleep(BLOCK)  # noqa: ASYNC251 - the block under test

    async def on_started(self) -> None:
        self.request_stop()


class SlowStop(tether.Service):
    """Blocks the loop in its stop hook."""

    async def on_started(self) -> None:
        self.request_stop()

    async def stop(self) -> None:
        time.sleep(BLOCK)  # noqa: ASYNC251 - the block under test


class FromCallback(tether.Service):
    """Blocks the loop in a plain callback (no task) scheduled by one of its methods."""

    async def start(self) -> None:
        asyncio.get_running_loop().call_soon(self.late)

    def late(self) -> None:
        time.sleep(BLOCK)
        self.request_stop()


def run(root: tether.Service, timeout: float = TIMEOUT) -> list[tether.LifecycleEvent]:
    """`tether.run` it with the detector on; the LOOP_BLOCKED events published."""
    events: list[tether.LifecycleEvent] = []

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.LOOP_BLOCKED:
            events.append(event)

    with tether.subscribe(on_event), pytest.raises(SystemExit) as exited:
        tether.run(root, loop="asyncio", log_level="warning", blocking_timeout=timeout)
    assert exited.value.code == 0
    return events


def test_a_task_that_blocks_is_named_counted_and_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The warning names the service, its task and the line; status counts it."""
    sleeper = Sleeper()
    with caplog.at_level(logging.WARNING, logger="tether.blocking"):
        events = run(sleeper)
    [event] = events
    assert event.service is sleeper
    assert event.duration is not None
    assert TIMEOUT <= event.duration < 10
    assert event.count == 1
    assert event.detail is not None
    assert "test_blocking_in_process.py:" in event.detail
    assert event.detail.endswith(" in crunch")
    snap = tether.status(sleeper)
    assert snap.loop_blocks == 1
    assert math.isclose(snap.longest_block, event.duration)
    [record] = [r for r in caplog.records if "has not turned" in r.getMessage()]
    message = record.getMessage()
    assert "Sleeper (its task 'Sleeper.work')" in message
    assert "in work\n    self.crunch()" in message
    assert "in crunch\n    time.sleep(BLOCK)" in message


def test_code_of_a_plain_object_is_charged_to_the_service_calling_it() -> None:
    """A helper's method blocks: the service whose task called it is named, not its dependency."""
    other = tether.Service()
    caller = Caller(Helper(), other)
    [event] = run(caller)
    assert event.service is caller
    assert event.detail is not None
    assert event.detail.endswith(" in parse")
    assert tether.status(caller).loop_blocks == 1
    assert tether.status(other).loop_blocks == 0


def test_each_block_is_counted_and_the_longest_kept() -> None:
    """Two blocks of one service: two events, numbered; the status keeps the longest."""

    class Twice(tether.Service):
        @tether.task
        async def work(self) -> None:
            time.sleep(BLOCK)  # noqa: ASYNC251 - the block under test
            await asyncio.sleep(TIMEOUT)  # the loop turns: the first block is over
            time.sleep(BLOCK * 2)  # noqa: ASYNC251 - the block under test
            await asyncio.sleep(0)
            self.request_stop()

    twice = Twice()
    events = run(twice)
    assert [event.count for event in events] == [1, 2]
    assert tether.status(twice).loop_blocks == 2
    durations = [event.duration or 0.0 for event in events]
    assert tether.status(twice).longest_block == max(durations)


@pytest.mark.parametrize(("service", "hook"), [(SlowStart, "start"), (SlowStop, "stop")])
def test_a_hook_that_blocks_is_named_as_that_hook(
    service: type[tether.Service], hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Blocking in start or stop: the service and the hook are named."""
    instance = service()
    with caplog.at_level(logging.WARNING, logger="tether.blocking"):
        [event] = run(instance)
    assert event.service is instance
    assert f"{service.__name__} (its {hook} hook)" in caplog.text
    assert tether.status(instance).loop_blocks == 1


def test_a_callback_without_a_task_is_named_by_the_code_it_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No task runs: the service is the one whose method blocks."""
    instance = FromCallback()
    with caplog.at_level(logging.WARNING, logger="tether.blocking"):
        [event] = run(instance)
    assert event.service is instance
    assert "FromCallback (in a callback (no task))" in caplog.text


def test_short_pauses_are_not_reported() -> None:
    """A loop that keeps turning, however busy, reports nothing (steps far below 1 s)."""

    class Busy(tether.Service):
        @tether.task
        async def work(self) -> None:
            for _ in range(20):
                time.sleep(0.005)  # noqa: ASYNC251 - the block under test
                await asyncio.sleep(0)
            self.request_stop()

    busy = Busy()
    assert run(busy, timeout=1.0) == []
    assert tether.status(busy).loop_blocks == 0


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, "1", True])
def test_blocking_timeout_must_be_a_positive_number(value: object) -> None:
    """Refused before anything runs, naming the option."""
    with pytest.raises(ValueError, match="blocking_timeout must be a positive"):
        tether.run(Sleeper(), blocking_timeout=value)  # type: ignore[arg-type]

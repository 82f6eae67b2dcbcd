"""Engine faults: cancellation from outside, crashes during startup, events, leftovers."""

from __future__ import annotations

import asyncio
import gc

import pytest

import tether
from tests.conftest import WAIT, Log, Node, SlowNode, bounded
from tether._core._base import class_info


async def test_cancelling_a_start_rolls_back_and_propagates(log: Log) -> None:
    """Cancelling the task that is starting a graph stops what started, then re-raises."""
    gate = asyncio.Event()

    class Blocks(Node):
        async def start(self) -> None:
            self.log.append("start-begin:blocks")
            gate.set()
            await asyncio.sleep(WAIT * 10)

    below = Node("below", log)
    root = Node("root", log, [below, Blocks("blocks", log)])
    task = asyncio.create_task(root.__aenter__())
    await bounded(gate.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert log == ["start:below", "start-begin:blocks", "stop:below"]
    assert not below.running
    assert not root.running


async def test_cancelling_a_concurrent_start_cancels_every_hook(log: Log) -> None:
    """Cancelled from outside while several hooks run: all are cancelled, none left."""
    gate = asyncio.Event()
    cancelled: list[str] = []

    class Blocks(Node):
        async def start(self) -> None:
            gate.set()
            try:
                await asyncio.sleep(WAIT * 10)
            except asyncio.CancelledError:
                cancelled.append(self.label)
                raise

    root = Node("root", log, [[Blocks("a", log), Blocks("b", log), Node("quick", log)]])
    task = asyncio.create_task(root.run())
    await bounded(gate.wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert sorted(cancelled) == ["a", "b"]
    assert log.of("stop") == ["quick"]


async def test_cancelling_during_stop_finishes_the_stop_first(log: Log) -> None:
    """A stop interrupted by cancellation still completes, then the cancellation propagates."""
    stopping = asyncio.Event()

    class SlowStop(Node):
        async def stop(self) -> None:
            stopping.set()
            await asyncio.sleep(0.01)
            await super().stop()

    below = Node("below", log)
    root = SlowStop("root", log, [below])
    await root.__aenter__()
    task = asyncio.create_task(root.__aexit__(None, None, None))
    await bounded(stopping.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert log.of("stop") == ["root", "below"]
    assert not below.running


async def test_run_cancelled_while_running_stops_gracefully(log: Log) -> None:
    """Cancelling run() (as Ctrl-C does under asyncio.run) stops the graph in order."""
    root = Node("root", log, [Node("below", log)])
    task = asyncio.create_task(root.run())
    while not root.running:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert log.of("stop") == ["root", "below"]


async def test_task_crash_during_startup_fails_the_start(log: Log) -> None:
    """A task crashing while the graph is still starting aborts the start and rolls back."""
    crashed = asyncio.Event()

    class CrashesEarly(Node):
        async def start(self) -> None:
            await super().start()
            self.add_task(self.boom())

        async def boom(self) -> None:
            crashed.set()
            raise ConnectionError("lost it")

    class WaitsForCrash(Node):
        async def start(self) -> None:
            self.log.append("start-begin:waits")
            await crashed.wait()
            await asyncio.sleep(WAIT * 10)  # cancelled by the abort

    early = CrashesEarly("early", log)
    root = Node("root", log, [early, WaitsForCrash("waits", log)])
    with pytest.raises(ConnectionError, match="lost it"):
        await bounded(root.run())
    assert log.of("stop") == ["early"]
    assert tether.status(early).state is tether.ServiceState.FAILED
    assert not root.running


async def test_hook_raising_cancelled_error_itself_is_a_failure(log: Log) -> None:
    """A start hook whose own work was cancelled fails the start; it is not our cancellation."""

    class InnerCancel(Node):
        async def start(self) -> None:
            inner = asyncio.ensure_future(asyncio.sleep(WAIT * 10))
            inner.cancel()
            await inner

    with pytest.raises(asyncio.CancelledError):
        await bounded(Node("root", log, [Node("a", log), InnerCancel("b", log)]).run())
    assert log.of("stop") == ["a"]
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_state_events_follow_each_service(log: Log) -> None:
    """Every state change is published, in order, with the duration of the transition."""
    events: list[tether.LifecycleEvent] = []
    b = Node("b", log)
    a = Node("a", log, [b])
    with tether.subscribe(events.append):
        async with a:
            pass
    states = [
        (e.service.label, e.state.value)  # type: ignore[union-attr]
        for e in events
        if e.kind is tether.EventKind.STATE
    ]
    assert states == [
        ("b", "starting"),
        ("b", "running"),
        ("a", "starting"),
        ("a", "running"),
        ("a", "stopping"),
        ("a", "stopped"),
        ("b", "stopping"),
        ("b", "stopped"),
    ]


async def test_phase_events_frame_each_start_reload_and_stop(log: Log) -> None:
    """A start, a reload and a stop each begin and end with a phase event naming the root."""
    events: list[tether.LifecycleEvent] = []

    class Reloads(Node):
        def on_reload(self) -> None:
            self.log.append("reload")

    b = Reloads("b", log)
    a = Node("a", log, [b])
    with tether.subscribe(events.append):
        async with a:
            await tether.reload(a)
    phases = [
        (e.kind.value, e.stage, e.service.label, e.count)  # type: ignore[union-attr]
        for e in events
        if e.kind in (tether.EventKind.PHASE_BEGIN, tether.EventKind.PHASE_END)
    ]
    assert phases == [
        ("phase_begin", "start", "a", 2),
        ("phase_end", "start", "a", None),
        ("phase_begin", "reload", "a", 2),
        ("phase_end", "reload", "a", None),
        ("phase_begin", "stop", "a", 2),
        ("phase_end", "stop", "a", None),
    ]
    kinds = [e.kind for e in events]
    assert kinds[0] is tether.EventKind.PHASE_BEGIN
    assert kinds[-1] is tether.EventKind.PHASE_END
    ends = [e for e in events if e.kind is tether.EventKind.PHASE_END]
    assert all(e.duration is not None and e.duration >= 0 and e.error is None for e in ends)


async def test_a_failed_start_ends_its_phase_with_the_error(log: Log) -> None:
    """The start phase of a failed start ends after the rollback, carrying the failure."""
    events: list[tether.LifecycleEvent] = []

    class Fails(Node):
        async def start(self) -> None:
            raise ValueError("no")

    root = Node("root", log, [Node("a", log), Fails("f", log)])
    with tether.subscribe(events.append), pytest.raises(ValueError, match="no"):
        async with root:
            pass
    phases = [e for e in events if e.kind.value.startswith("phase")]
    assert [(e.kind.value, e.stage) for e in phases] == [
        ("phase_begin", "start"),
        ("phase_end", "start"),
    ]
    assert isinstance(phases[1].error, ValueError)
    # The rollback's stop belongs to the start: its events come before the phase ends.
    stopped = next(
        i
        for i, e in enumerate(events)
        if e.kind is tether.EventKind.STATE and e.state is tether.ServiceState.STOPPED
    )
    assert stopped < events.index(phases[1])


async def test_starting_a_graph_that_already_runs_publishes_no_phase(log: Log) -> None:
    """A root whose graph runs already (shared) starts nothing: no phase is announced."""
    events: list[tether.LifecycleEvent] = []
    shared = Node("shared", log)
    first = Node("first", log, [shared])
    async with first:
        with tether.subscribe(events.append):
            async with shared:
                pass
    assert not [e for e in events if e.kind.value.startswith("phase")]


async def test_failed_start_and_crash_are_published_with_their_error(log: Log) -> None:
    """FAILED state events carry the error; task crashes name the task."""
    events: list[tether.LifecycleEvent] = []

    class Crashing(Node):
        async def start(self) -> None:
            self.add_task(self.boom(), name="boomer")

        async def boom(self) -> None:
            raise ValueError("crash")

    with tether.subscribe(events.append), pytest.raises(ValueError, match="crash"):
        await bounded(Crashing("c", log).run())
    (crash,) = [e for e in events if e.kind is tether.EventKind.TASK_CRASHED]
    assert crash.detail == "boomer"
    assert isinstance(crash.error, ValueError)
    failed = [e for e in events if e.state is tether.ServiceState.FAILED]
    assert len(failed) == 1
    assert failed[0].error is crash.error


async def test_subscriber_errors_are_logged_not_raised(
    log: Log, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken subscriber never disturbs the engine."""

    def broken(event: tether.LifecycleEvent) -> None:
        raise RuntimeError("subscriber bug")

    with tether.subscribe(broken):
        async with Node("a", log):
            pass
    assert log == ["start:a", "stop:a"]
    assert "subscriber" in caplog.text


async def test_subscriptions_are_scoped_to_their_block(log: Log) -> None:
    """Outside its `with` block a subscriber hears nothing."""
    events: list[tether.LifecycleEvent] = []
    with tether.subscribe(events.append):
        pass
    async with Node("a", log):
        pass
    assert events == []


async def test_no_task_is_left_behind(log: Log) -> None:
    """After a graph with tasks, timers and concurrent hooks stops, no task of it remains."""

    class Busy(SlowNode):
        async def start(self) -> None:
            await super().start()
            self.add_task(asyncio.sleep(WAIT * 10))

        @tether.timer(0.001)
        async def tick(self) -> None:
            await asyncio.sleep(0)

    before = asyncio.all_tasks()
    async with Node("root", log, [[Busy("a", log), Busy("b", log)], Busy("c", log)]):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before


async def test_stopped_services_are_garbage_collected(log: Log) -> None:
    """The engine keeps no reference to a graph once it stopped and the user dropped it."""
    import weakref

    root = Node("root", log, [Node("below", log)])
    async with root:
        pass
    ref = weakref.ref(root.deps[0])
    del root
    gc.collect()
    assert ref() is None


async def test_siblings_of_a_suspending_class_start_concurrently(log: Log) -> None:
    """The first instance probes its class; once it suspends, its siblings run alongside."""
    in_start = 0
    most = 0
    release = asyncio.Event()

    class Slow(tether.Service):
        async def start(self) -> None:
            nonlocal in_start, most
            in_start += 1
            most = max(most, in_start)
            if most == 5:
                release.set()
            await bounded(release.wait())
            in_start -= 1

    async with Node("root", log, [[Slow() for _ in range(5)]]):
        pass
    assert most == 5


async def test_a_class_that_stops_finishing_at_once_is_still_started_correctly(log: Log) -> None:
    """A class learned as never suspending that suspends later still starts, in order."""
    suspend = False

    class Sometimes(Node):
        async def start(self) -> None:
            if suspend:
                await asyncio.sleep(0)
            await super().start()

    class_info(Sometimes).start_mode = 1  # learned: never suspends
    suspend = True
    members = [Sometimes(f"s{i}", log) for i in range(3)]
    async with Node("root", log, [members, Node("after", log)]):
        assert all(m.running for m in members)
    assert log.of("start")[-2:] == ["after", "root"]
    assert sorted(log.of("start")[:3]) == ["s0", "s1", "s2"]
    assert class_info(Sometimes).start_mode == -1


async def test_hooks_run_in_a_copy_of_the_starters_context(log: Log) -> None:
    """A contextvar a hook sets never leaks into the code that started the graph."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller")
    seen: list[str] = []

    class Sets(tether.Service):
        async def start(self) -> None:
            seen.append(var.get())
            var.set("hook")

    var.set("starter")
    async with Node("root", log, [Sets(), [Sets(), Sets()]]):
        assert var.get() == "starter"
    assert seen == ["starter"] * 3

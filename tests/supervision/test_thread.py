"""ServiceThread: a service graph in its own thread and loop, as a node of the parent graph."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import WAIT, Log, Node, bounded

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


class Where(Node):
    """Logs its hooks and records the thread and loop they ran in."""

    def __init__(self, name: str, log: Log, deps: list[Any] | None = None) -> None:
        super().__init__(name, log, deps or [])
        self.threads: list[int] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.seen_ids: list[str] = []

    async def start(self) -> None:
        self.threads.append(threading.get_ident())
        self.loops.append(asyncio.get_running_loop())
        self.seen_ids.append(request_id.get())
        await super().start()

    async def stop(self) -> None:
        self.threads.append(threading.get_ident())
        await super().stop()

    async def double(self, x: int) -> tuple[int, int]:
        return x * 2, threading.get_ident()


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and (thread.is_alive() or thread in threading.enumerate())


async def test_the_thread_runs_its_graph_in_its_own_thread_and_loop(log: Log) -> None:
    """The wrapped service and its dependencies start in the thread's loop, in order."""
    below = Where("below", log)
    inner = Where("inner", log, [below])
    worker = tether.ServiceThread(inner)
    async with Node("root", log, [Node("before", log), worker]):
        assert worker.thread is not None
        assert worker.running
        assert inner.running
        assert below.running
        assert inner.threads == below.threads == [worker.thread.ident]
        assert inner.loops[0] is not asyncio.get_running_loop()
        assert inner.loops[0] is below.loops[0] is worker.loop
    assert log.of("start") == ["before", "below", "inner", "root"]
    assert log.of("stop") == ["root", "inner", "below", "before"]
    assert inner.threads[-1] == worker.thread.ident  # stopped in the thread too


async def test_stopping_leaves_no_thread_and_closes_its_loop(log: Log) -> None:
    """After the stop, the thread was joined and its loop closed."""
    inner = Where("inner", log)
    worker = tether.ServiceThread(inner)
    async with worker:
        loop = worker.loop
        thread = worker.thread
        assert loop is not None
        assert _alive(thread)
    assert not _alive(thread)
    assert loop.is_closed()
    assert worker.loop is None
    assert tether.status(worker).state is tether.ServiceState.STOPPED
    assert tether.status(inner).state is tether.ServiceState.STOPPED


async def test_a_crash_in_the_thread_reaches_the_parent_and_leaves_no_thread(log: Log) -> None:
    """A task raising in the thread: the parent's run() raises it; everything stops."""

    class Crashes(Node):
        async def start(self) -> None:
            await super().start()
            self.add_task(self.boom(), name="boom")

        async def boom(self) -> None:
            raise RuntimeError("broken in the thread")

    worker = tether.ServiceThread(Crashes("crashes", log))
    root = Node("root", log, [worker])
    with pytest.raises(RuntimeError, match="broken in the thread") as caught:
        await bounded(root.run())
    assert not _alive(worker.thread)
    assert log.of("stop") == ["root", "crashes"]
    assert tether.status(worker).state is tether.ServiceState.FAILED
    assert any("background task 'boom'" in note for note in caught.value.__notes__)


async def test_a_failed_start_in_the_thread_rolls_back_there_and_leaves_no_thread(
    log: Log,
) -> None:
    """The thread's start fails: it rolls back in the thread, then the parent rolls back."""

    class Fails(Node):
        async def start(self) -> None:
            raise OSError("no port")

    below = Where("below", log)
    worker = tether.ServiceThread(Fails("fails", log, [below]))
    before = Node("before", log)
    with pytest.raises(OSError, match="no port"):
        async with Node("root", log, [before, worker]):
            pass  # pragma: no cover
    assert log.of("start") == ["before", "below"]
    assert log.of("stop") == ["below", "before"]
    assert below.threads[0] == below.threads[1] != threading.get_ident()
    assert not _alive(worker.thread)
    assert tether.status(worker).state is tether.ServiceState.FAILED


async def test_a_parent_failure_cancels_a_thread_still_starting(log: Log) -> None:
    """A sibling fails while the thread's start waits: it is cancelled there; no thread."""
    waiting = threading.Event()
    outcome: list[str] = []

    class Slow(Node):
        async def start(self) -> None:
            waiting.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

    class FailsLater(Node):
        async def start(self) -> None:
            await asyncio.get_running_loop().run_in_executor(None, waiting.wait, WAIT)
            raise ValueError("sibling failed")

    below = Where("below", log)
    worker = tether.ServiceThread(Slow("slow", log, [below]))
    with pytest.raises(ValueError, match="sibling failed"):
        async with Node("root", log, [[worker, FailsLater("fails", log)]]):
            pass  # pragma: no cover
    assert outcome == ["cancelled"]
    assert log.of("stop") == ["below"]  # rolled back in the thread
    assert not _alive(worker.thread)


async def test_call_runs_functions_in_the_thread_and_returns_their_results(log: Log) -> None:
    """call() takes coroutine functions, plain functions and coroutines; errors propagate."""
    inner = Where("inner", log)
    worker = tether.ServiceThread(inner)

    def plain(a: int, *, b: int) -> tuple[int, int]:
        return a + b, threading.get_ident()

    async def fails() -> None:
        raise KeyError("missing")

    async with worker:
        assert worker.thread is not None
        ident = worker.thread.ident
        assert await bounded(worker.call(inner.double, 21)) == (42, ident)
        assert await bounded(worker.call(plain, 1, b=2)) == (3, ident)
        assert await bounded(worker.call(inner.double(5))) == (10, ident)
        with pytest.raises(KeyError, match="missing"):
            await bounded(worker.call(fails))
        with pytest.raises(TypeError, match="takes a function or a coroutine"):
            await worker.call(42)  # type: ignore[call-overload]


async def test_call_parent_runs_in_the_parent_loop(log: Log) -> None:
    """From the thread, call_parent() reaches the parent's loop; current() finds the thread."""
    parent_loop = asyncio.get_running_loop()
    answers: list[Any] = []

    async def in_parent(x: int) -> tuple[int, bool]:
        return x + 1, asyncio.get_running_loop() is parent_loop

    class Asks(Node):
        async def start(self) -> None:
            here = tether.ServiceThread.current()
            assert here is not None
            answers.append(await here.call_parent(in_parent, 1))
            answers.append(asyncio.get_running_loop() is parent_loop)

    worker = tether.ServiceThread(Asks("asks", log))
    assert tether.ServiceThread.current() is None
    async with worker:
        pass
    assert answers == [(2, True), False]


async def test_call_needs_a_running_thread(log: Log) -> None:
    """Calling into a thread that is not running is a clear error, and closes the coroutine."""
    inner = Where("inner", log)
    worker = tether.ServiceThread(inner)
    coro = inner.double(1)
    with pytest.raises(tether.ServiceStateError, match=r"call\(\) needs a running thread"):
        await worker.call(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # no "never awaited" warning


async def test_cancelling_a_call_cancels_it_in_the_thread(log: Log) -> None:
    """The caller's cancellation reaches the coroutine running in the thread."""
    entered = asyncio.Event()
    cancelled = threading.Event()
    parent_loop = asyncio.get_running_loop()

    async def forever() -> None:
        parent_loop.call_soon_threadsafe(entered.set)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with tether.ServiceThread(Where("inner", log)) as worker:
        call = asyncio.create_task(worker.call(forever))
        await bounded(entered.wait())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await asyncio.to_thread(cancelled.wait, WAIT)


async def test_a_call_in_flight_when_the_thread_stops_raises_a_state_error(log: Log) -> None:
    """A call still running when the thread's graph has stopped is cancelled, and says so."""
    entered = asyncio.Event()
    parent_loop = asyncio.get_running_loop()

    async def forever() -> None:
        parent_loop.call_soon_threadsafe(entered.set)
        await asyncio.Event().wait()

    worker = tether.ServiceThread(Where("inner", log))
    async with worker:
        call = asyncio.create_task(worker.call(forever))
        await bounded(entered.wait())
    with pytest.raises(tether.ServiceStateError, match="thread ended before the call finished"):
        await bounded(call)


async def test_context_variables_are_carried_into_the_thread(log: Log) -> None:
    """Hooks in the thread and calls into it see the caller's context variables."""
    inner = Where("inner", log)
    worker = tether.ServiceThread(inner)
    request_id.set("started-with")
    async with worker:
        request_id.set("called-with")
        assert await bounded(worker.call(request_id.get)) == "called-with"
    assert inner.seen_ids == ["started-with"]


async def test_events_of_the_thread_reach_the_parent_subscribers_on_the_parent_thread(
    log: Log,
) -> None:
    """Lifecycle events of the thread's graph are delivered in the parent's thread, in order."""
    inner = Where("inner", log)
    delivered: list[tuple[tether.LifecycleEvent, int]] = []
    with tether.subscribe(lambda event: delivered.append((event, threading.get_ident()))):
        async with tether.ServiceThread(inner):
            pass
    states = [e.state for e, _ in delivered if e.service is inner and e.kind == "state"]
    assert states == ["starting", "running", "stopping", "stopped"]
    assert {ident for _, ident in delivered} == {threading.get_ident()}


async def test_a_stop_requested_inside_the_thread_stops_the_parent(log: Log) -> None:
    """request_stop() of the thread's root makes the parent's wait() return."""

    class Quits(Node):
        async def start(self) -> None:
            await super().start()
            self.add_task(self.quit())

        async def quit(self) -> None:
            self.request_stop()

    worker = tether.ServiceThread(Quits("quits", log))
    await bounded(Node("root", log, [worker]).run())
    assert log.of("stop") == ["root", "quits"]
    assert not _alive(worker.thread)


def stuck_here(release: threading.Event) -> None:
    """Blocks the thread's event loop until released (a bug the heartbeat reports)."""
    release.wait(WAIT)


async def test_a_stalled_thread_is_reported_with_where_it_is_stuck(
    log: Log, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat warns, naming the function the thread is stuck in, and publishes it."""
    release = threading.Event()
    stalled = asyncio.Event()
    events: list[tether.LifecycleEvent] = []

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.THREAD_STALLED:
            events.append(event)
            stalled.set()

    worker = tether.ServiceThread(Where("inner", log), heartbeat=0.05)
    with tether.subscribe(on_event), caplog.at_level(logging.WARNING, logger="tether"):
        async with worker:
            blocked = asyncio.create_task(worker.call(stuck_here, release))
            try:
                await bounded(stalled.wait())
            finally:
                release.set()
            await bounded(blocked)
    assert events[0].service is worker
    assert events[0].detail is not None
    assert "stuck_here" in events[0].detail
    assert "test_thread.py" in events[0].detail
    warning = next(r for r in caplog.records if "has not answered" in r.getMessage())
    assert "stuck_here" in warning.getMessage()


async def test_a_thread_stalled_past_stall_timeout_crashes_the_parent(log: Log) -> None:
    """With stall_timeout, a loop that does not answer crashes the node with the location."""
    release = threading.Event()

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.TASK_CRASHED:
            release.set()  # let the thread's loop go, so that the thread can stop

    class Blocks(Node):
        async def start(self) -> None:
            await super().start()
            self.add_task(self.block())

        async def block(self) -> None:
            stuck_here(release)

    worker = tether.ServiceThread(Blocks("blocks", log), heartbeat=0.05, stall_timeout=0.2)
    with tether.subscribe(on_event):
        with pytest.raises(tether.ThreadStalledError, match=r"stuck at .*stuck_here"):
            await bounded(Node("root", log, [worker]).run())
    assert not _alive(worker.thread)


async def test_the_status_tree_shows_the_thread_graph(log: Log) -> None:
    """The live picture lists the thread's services under the ServiceThread."""
    worker = tether.ServiceThread(Where("inner", log, [Where("below", log)]))
    async with Node("root", log, [worker]) as root:
        tree = tether.status_tree(root)
    lines = tree.splitlines()
    thread_line = next(i for i, line in enumerate(lines) if "ServiceThread[Where]" in line)
    assert sum("Where  running" in line for line in lines[thread_line + 1 :]) == 2
    assert len(lines) >= 5  # root, thread, its two tasks, inner, below


async def test_reload_reaches_the_thread_graph(log: Log) -> None:
    """tether.reload() of the parent runs the reload stage of the thread's services there."""
    reloaded: list[int] = []

    class Reloads(Node):
        async def on_reload(self) -> None:
            reloaded.append(threading.get_ident())

    worker = tether.ServiceThread(Reloads("r", log))
    async with Node("root", log, [worker]) as root:
        await bounded(tether.reload(root))
        assert worker.thread is not None
        assert reloaded == [worker.thread.ident]


async def test_a_service_belongs_to_one_loop(log: Log) -> None:
    """A service running in a thread's graph cannot be shared by the parent's graph."""
    shared = Where("shared", log)
    worker = tether.ServiceThread(Where("inner", log, [shared]))
    async with worker:
        with pytest.raises(tether.ServiceStateError, match="runs in another event loop"):
            async with Node("root", log, [shared]):
                pass  # pragma: no cover
    assert log.of("start").count("root") == 0


async def test_a_thread_service_starts_again_after_it_stopped(log: Log) -> None:
    """Each run gets a new thread and loop."""
    worker = tether.ServiceThread(Where("inner", log))
    async with worker:
        first = worker.thread
    async with worker:
        second = worker.thread
        assert second is not first
    assert not _alive(first)
    assert not _alive(second)
    assert log.of("start") == ["inner", "inner"]


def test_bad_arguments_are_clear_errors() -> None:
    """A class instead of an instance, or a bad interval, is refused at construction."""
    with pytest.raises(tether.DefinitionError, match=r"ServiceThread\(Where\(\)\)"):
        tether.ServiceThread(Where)  # type: ignore[type-var]
    with pytest.raises(tether.DefinitionError, match="heartbeat must be a positive"):
        tether.ServiceThread(Where("x", Log()), heartbeat=0)
    with pytest.raises(tether.DefinitionError, match="at least the heartbeat"):
        tether.ServiceThread(Where("x", Log()), heartbeat=1, stall_timeout=0.5)


def test_blocking_services_run_in_the_threads_graph(log: Log) -> None:
    """A ServiceThread started from a blocking-free program: asyncio.run in the test."""

    class Store(tether.BlockingService):
        def start(self) -> None:
            log.append(f"start:store:{threading.current_thread().name}")

        def stop(self) -> None:
            log.append("stop:store")

    async def main() -> None:
        async with tether.ServiceThread(Where("inner", log, [Store()])):
            pass

    asyncio.run(main())
    assert log[0].startswith("start:store:")
    assert "tether" not in log[0]  # a worker thread of the thread's loop, not the loop's
    assert log.of("stop") == ["inner", "store"]


# ------------------------------------------------ blocking services in an async graph


async def test_blocking_hooks_of_every_stage_leave_the_loop_running(log: Log) -> None:
    """start, a custom stage and stop of a BlockingService run in a worker thread: the loop
    runs a callback the hook asks for while the hook still blocks, and contextvars carry."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, bool, str]] = []

    def loop_answers() -> bool:
        # Only a free loop runs this callback while the hook waits for it.
        answered = threading.Event()
        loop.call_soon_threadsafe(answered.set)
        return answered.wait(WAIT)

    class Blocks(tether.BlockingService):
        def start(self) -> None:
            seen.append(("start", loop_answers(), request_id.get()))

        def on_started(self) -> None:
            seen.append(("started", loop_answers(), request_id.get()))

        def stop(self) -> None:
            seen.append(("stop", loop_answers(), request_id.get()))

    request_id.set("outer")
    async with Node("root", log, [Blocks()]):
        pass
    assert seen == [
        ("start", True, "outer"),
        ("started", True, "outer"),
        ("stop", True, "outer"),
    ]


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    """The README's threads example, run as a program, prints what the README says."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("<!-- threads-example: app.py -->\n```python\n", 1)[1].split("```")[0]
    (tmp_path / "app.py").write_text(code)
    done = subprocess.run(  # noqa: S603 - the running interpreter, the README's code
        [sys.executable, str(tmp_path / "app.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["crunch up in tether Crunch", "2 + 3 = 5"]


def test_check_and_graph_see_the_thread_graph(log: Log) -> None:
    """tether.check validates the thread's graph before anything starts; graph draws it."""
    a = Node("a", log)
    b = Node("b", log, [a])
    a.deps.append(b)
    with pytest.raises(tether.DependencyCycleError, match="Node -> Node -> Node"):
        tether.check(Node("root", log, [tether.ServiceThread(Node("inner", log, [b]))]))
    picture = tether.graph(Node("root", log, [tether.ServiceThread(Where("inner", log))]))
    assert picture.splitlines()[1:3] == [
        "└── 1 ServiceThread[Where] (reload)",
        "    └── 1 Where",
    ]


async def test_a_stop_error_in_the_thread_is_raised_by_the_parent_stop(log: Log) -> None:
    """A stop hook raising in the thread: the parent's stop raises it once; all stops."""

    class StopFails(Node):
        async def stop(self) -> None:
            await super().stop()
            raise OSError("flush failed")

    below = Where("below", log)
    worker = tether.ServiceThread(StopFails("fails", log, [below]))
    with pytest.raises(OSError, match="flush failed") as caught:
        async with Node("root", log, [worker]):
            pass
    assert log.of("stop") == ["root", "fails", "below"]
    assert not _alive(worker.thread)
    assert not [n for n in caught.value.__notes__ if "also raised" in n]  # reported once


def test_the_thread_loop_is_uvloop_when_the_parent_runs_on_uvloop(log: Log) -> None:
    """A ServiceThread under uvloop gets a uvloop loop too; asyncio's default otherwise."""
    uvloop = pytest.importorskip("uvloop")
    inner = Where("inner", log)
    node = tether.ServiceThread(inner, heartbeat=None)

    async def main() -> None:
        async with node:
            pass

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert type(inner.loops[0]).__module__.startswith("uvloop")
    assert inner.threads[0] != threading.get_ident()

    plain = Where("plain", log)
    other = tether.ServiceThread(plain, heartbeat=None)

    async def plain_main() -> None:
        async with other:
            pass

    asyncio.run(plain_main())
    assert not type(plain.loops[0]).__module__.startswith("uvloop")


# rloop 0.5 drops its internal socket pair without closing it, each time a loop stops.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_the_thread_loop_is_of_a_third_party_parents_kind(log: Log) -> None:
    """Under rloop (run without tether's runner), the thread's loop is an rloop loop too."""
    rloop = pytest.importorskip("rloop")
    inner = Where("inner", log)
    node = tether.ServiceThread(inner, heartbeat=0.05)

    async def main() -> None:
        async with node:
            assert await node.call(inner.double, 2) == (4, inner.threads[0])

    with asyncio.Runner(loop_factory=rloop.new_event_loop) as runner:
        runner.run(main())
    assert type(inner.loops[0]) is rloop.RLoop
    assert inner.threads[0] != threading.get_ident()
    assert not _alive(node.thread)


def test_loop_factory_chooses_the_threads_loop(log: Log) -> None:
    """`loop_factory=` overrides the parent's kind: here asyncio's loop under uvloop."""
    uvloop = pytest.importorskip("uvloop")
    inner = Where("inner", log)
    node = tether.ServiceThread(inner, heartbeat=None, loop_factory=asyncio.new_event_loop)

    async def main() -> None:
        async with node:
            pass

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert type(inner.loops[0]).__module__.startswith("asyncio")


async def test_a_loop_factory_that_fails_in_the_thread_fails_the_start_saying_why(
    log: Log,
) -> None:
    """The factory's own error propagates from start, with a note naming the remedy."""

    def main_thread_only() -> asyncio.AbstractEventLoop:
        raise RuntimeError("this loop runs in the main thread only")

    node = tether.ServiceThread(Where("inner", log), loop_factory=main_thread_only)
    with pytest.raises(RuntimeError, match="main thread only") as caught:
        async with node:
            pass
    assert any("loop_factory=asyncio.new_event_loop" in note for note in caught.value.__notes__)
    assert not _alive(node.thread)


def test_loop_factory_must_be_callable(log: Log) -> None:
    """Anything else is refused when the ServiceThread is created."""
    with pytest.raises(tether.DefinitionError, match="loop_factory= takes a callable"):
        tether.ServiceThread(Where("inner", log), loop_factory="rloop")  # type: ignore[arg-type]

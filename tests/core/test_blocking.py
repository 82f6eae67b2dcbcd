"""BlockingService: facet's BlockingServiceMixin contract, and blocking code in async graphs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import tether
from tests.conftest import Log, Node, bounded
from tether import BlockingService as BlockingServiceMixin


class BNode(BlockingServiceMixin):
    def __init__(self, name: str, log: Log, deps: list[Any] | None = None) -> None:
        self.label = name
        self.log = log
        self.deps = deps or []
        self.value = 0

    @property
    def dependencies(self) -> list[Any]:
        return self.deps

    def start(self) -> None:
        self.value += 1
        self.log.append(f"start:{self.label}")

    def stop(self) -> None:
        self.value -= 1
        self.log.append(f"stop:{self.label}")


def test_with_starts_dependencies_first_and_stops_them_last(log: Log) -> None:
    """facet's blocking example: b started, a started, a stopped, b stopped."""
    b = BNode("b", log)
    with BNode("a", log, [b]) as a:
        assert a.running
        assert b.value == 1
    assert log == ["start:b", "start:a", "stop:a", "stop:b"]
    assert not a.running
    assert b.value == 0


def test_nested_lists_run_one_at_a_time_in_order(log: Log) -> None:
    """Without an event loop, members of a nested list start in the order listed."""
    with BNode("a", log, [[BNode("b", log), BNode("c", log)], BNode("d", log)]):
        pass
    assert log.of("start") == ["b", "c", "d", "a"]
    assert log.of("stop") == ["a", "d", "c", "b"]


def test_failed_start_rolls_back_in_reverse(log: Log) -> None:
    """A failing start stops what started, never calls its own stop, raises the original."""

    class Fails(BNode):
        def start(self) -> None:
            raise OSError("no disk")

    x = BNode("x", log)
    later = BNode("later", log)
    with pytest.raises(OSError, match="no disk"):
        with BNode("root", log, [x, Fails("fails", log), later]):
            pass  # pragma: no cover
    assert log == ["start:x", "stop:x"]
    assert tether.status(later).state is tether.ServiceState.CREATED


def test_stop_error_does_not_abandon_teardown(log: Log) -> None:
    """Every service stops even when one stop raises; the error is raised after."""

    class StopFails(BNode):
        def stop(self) -> None:
            super().stop()
            raise RuntimeError("stop failed")

    with pytest.raises(RuntimeError, match="stop failed"):
        with BNode("root", log, [BNode("b", log), StopFails("c", log)]):
            pass
    assert log.of("stop") == ["root", "c", "b"]


def test_shared_dependency_is_reference_counted(log: Log) -> None:
    """facet: a second root sharing a running dependency does not stop it."""
    c = BNode("c", log)
    with BNode("a", log, [c]):
        with BNode("b", log, [c]):
            pass
        assert c.running
    assert not c.running
    assert log.of("start").count("c") == 1


def test_run_blocks_until_request_stop_from_another_thread(log: Log) -> None:
    """run() returns when another thread calls request_stop()."""
    service = BNode("a", log)
    started = threading.Event()

    class Watcher(BNode):
        def start(self) -> None:
            super().start()
            started.set()

    watcher = Watcher("w", log)
    service.deps.append(watcher)

    def stopper() -> None:
        assert started.wait(5)
        watcher.request_stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    service.run()
    thread.join(5)
    assert log.of("stop") == ["a", "w"]


def test_wait_with_timeout_returns_false(log: Log) -> None:
    """wait(timeout) returns False when nobody asked to stop."""
    with BNode("a", log) as a:
        assert a.wait(0.01) is False
        a.request_stop()
        assert a.wait(0.01) is True


def test_wait_before_start_is_an_error(log: Log) -> None:
    """wait() needs a started service."""
    with pytest.raises(tether.ServiceStateError, match="needs a started service"):
        BNode("a", log).wait(0)


def test_async_service_in_a_with_graph_is_an_error(log: Log) -> None:
    """An async Service cannot be started without an event loop; nothing starts."""
    with pytest.raises(tether.HookError, match=r"async tether\.Service and cannot be started"):
        with BNode("a", log, [BNode("b", log), Node("async", log)]):
            pass  # pragma: no cover
    assert log == []


async def test_blocking_hooks_run_in_a_worker_thread_inside_an_async_graph(log: Log) -> None:
    """In an async graph, blocking hooks run off the loop: the loop keeps running meanwhile."""
    loop_thread = threading.get_ident()
    seen: list[int] = []
    loop_ran = threading.Event()

    class Blocks(BNode):
        def start(self) -> None:
            seen.append(threading.get_ident())
            # Set by a task on the event loop: it can only run if this hook does not
            # block the loop. On the loop's own thread this would wait the full 5 s.
            assert loop_ran.wait(5), "the event loop did not run while the hook blocked"
            super().start()

    async def on_the_loop() -> None:
        while not seen:
            await asyncio.sleep(0)
        loop_ran.set()

    task = asyncio.create_task(on_the_loop())
    async with Node("root", log, [Blocks("slow", log)]):
        assert log.of("start") == ["slow", "root"]
    await bounded(task)
    assert seen
    assert seen[0] != loop_thread


async def test_blocking_stop_past_the_timeout_is_reported(log: Log) -> None:
    """A blocking stop hook cannot be cancelled: it is reported and the rest stops."""
    release = threading.Event()

    class Stuck(BNode):
        graceful_shutdown_timeout = 0.05

        def stop(self) -> None:
            release.wait(5)

    below = BNode("below", log)
    try:
        with pytest.raises(tether.StopTimeoutError, match="worker thread"):
            async with Node("root", log, [Stuck("stuck", log, [below])]):
                pass
        assert log.of("stop") == ["root", "below"]
    finally:
        release.set()


async def test_contextvars_reach_blocking_hooks(log: Log) -> None:
    """Context variables set by the caller are visible in hooks run in threads."""
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str] = []

    class Reads(BNode):
        def start(self) -> None:
            seen.append(request_id.get("unset"))

    request_id.set("abc")
    async with Node("root", log, [Reads("r", log)]):
        pass
    assert seen == ["abc"]
    await bounded(asyncio.sleep(0))

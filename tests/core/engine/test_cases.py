"""The engine under overlapping operations: each case a user met, held by a named test.

Every test here failed on the engine before "engine v2": roots entered and left at the
same time, a service shared between concurrent branches, blocking services beside a
failing sibling, the first failure of a start, and task cleanup within the timeout.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from typing import Any

import pytest

import tether
from tests.conftest import WAIT, Log, Node, SlowNode, bounded
from tether.testing import VirtualClock


class Gated(Node):
    """Starts only once its gate opens."""

    def __init__(self, name: str, log: Log, gate: asyncio.Event, deps: Any = ()) -> None:
        super().__init__(name, log, deps)
        self.gate = gate

    async def start(self) -> None:
        self.log.append(f"start-begin:{self.label}")
        await self.gate.wait()
        self.log.append(f"start:{self.label}")


async def test_concurrent_entry_of_roots_sharing_slow_and_fast_services(log: Log) -> None:
    """Case 1: A needs a slow service, B a fast one, C both; all entered at once."""
    gate = asyncio.Event()
    slow = Gated("slow", log, gate)
    fast = SlowNode("fast", log)
    a = Node("a", log, [slow])
    b = Node("b", log, [fast])
    c = Node("c", log, [[slow, fast]])
    entering = asyncio.gather(a.__aenter__(), b.__aenter__(), c.__aenter__())
    await bounded(asyncio.sleep(0))
    for _ in range(10):
        await asyncio.sleep(0)
    gate.set()
    await bounded(entering)
    assert all(r.running for r in (a, b, c))
    await bounded(asyncio.gather(*(r.__aexit__(None, None, None) for r in (a, b, c))))
    assert log.of("start").count("slow") == 1
    assert log.of("stop").count("slow") == 1
    assert not slow.running
    assert not fast.running


@pytest.mark.parametrize("first", ["api", "db"])
async def test_roots_left_together_stop_the_dependent_before_its_dependency(
    log: Log, first: str
) -> None:
    """Case 2: roots api (needs db) and db itself, left at once: db stops after api."""
    db = SlowNode("db", log)
    api = SlowNode("api", log, [db])
    await bounded(db.__aenter__())
    await bounded(api.__aenter__())
    leaving = [api, db] if first == "api" else [db, api]
    await bounded(asyncio.gather(*(r.__aexit__(None, None, None) for r in leaving)))
    assert log.index("stop:api") < log.index("stop-begin:db")
    assert log.of("stop-begin") == ["api", "db"]
    assert not db.running
    assert not api.running


@pytest.mark.parametrize("first", ["x", "d"])
async def test_roots_left_together_leave_nothing_running(log: Log, first: str) -> None:
    """Case 3: x needs [a, b] then c, c needs d, d is a root too: leaving both stops all."""
    d = SlowNode("d", log)
    c = SlowNode("c", log, [d])
    a = SlowNode("a", log)
    b = SlowNode("b", log)
    x = SlowNode("x", log, [[a, b], c])
    await bounded(x.__aenter__())
    await bounded(d.__aenter__())
    leaving = [x, d] if first == "x" else [d, x]
    await bounded(asyncio.gather(*(r.__aexit__(None, None, None) for r in leaving)))
    services = {"a": a, "b": b, "c": c, "d": d, "x": x}
    assert [name for name, s in services.items() if s.running] == []
    assert sorted(log.of("stop")) == sorted(services)
    for dependent, dependency in [("x", "a"), ("x", "b"), ("x", "c"), ("c", "d")]:
        assert log.index(f"stop:{dependent}") < log.index(f"stop-begin:{dependency}")


async def test_a_shared_item_does_not_let_later_items_skip_earlier_ones(log: Log) -> None:
    """Case 4: p needs [a, b, c]; b is reached first by a concurrent branch q."""
    a = SlowNode("a", log)
    b = SlowNode("b", log)
    c = SlowNode("c", log)
    q = SlowNode("q", log, [b])
    p = SlowNode("p", log, [a, b, c])
    root = SlowNode("root", log, [[q, p]])
    async with root:
        pass
    assert log.index("start:a") < log.index("start-begin:c")
    assert log.index("start:b") < log.index("start-begin:c")
    # Stopping is the exact reverse: c stops before a and b begin to stop.
    assert log.index("stop:c") < log.index("stop-begin:a")
    assert log.index("stop:c") < log.index("stop-begin:b")


class Blocker(tether.BlockingService):
    """A blocking service whose start waits, in its worker thread, for a release."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.began = threading.Event()
        self.release = threading.Event()

    def start(self) -> None:
        self.began.set()
        self.release.wait(WAIT)
        self.log.append("start:blocker")

    def stop(self) -> None:
        self.log.append("stop:blocker")


async def _until(condition: threading.Event) -> None:
    while not condition.is_set():
        await asyncio.sleep(0.001)


async def test_blocking_start_finishing_after_a_sibling_failed_is_stopped(log: Log) -> None:
    """Case 5: a blocking start outliving a failed sibling is waited for, then stopped."""
    blocker = Blocker(log)
    failed = asyncio.Event()

    class Fails(Node):
        async def start(self) -> None:
            await bounded(_until(blocker.began))
            failed.set()
            raise RuntimeError("sibling failed")

    root = Node("root", log, [[blocker, Fails("fails", log)]])
    entering = asyncio.create_task(root.__aenter__())
    await bounded(failed.wait())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not entering.done(), "the start raised while a blocking start still ran"
    blocker.release.set()
    with pytest.raises(RuntimeError, match="sibling failed"):
        await bounded(entering)
    assert log == ["start:blocker", "stop:blocker"]
    assert not blocker.running
    # A later root starts it again as a new run, after the stop.
    blocker.release.set()
    async with Node("later", log, [blocker]):
        assert blocker.running
    assert log == [
        "start:blocker",
        "stop:blocker",
        "start:blocker",
        "start:later",
        "stop:later",
        "stop:blocker",
    ]


async def test_a_failure_before_queued_blocking_siblings_began_leaves_nothing_unawaited(
    log: Log,
) -> None:
    """Case 5: blocking siblings never begun when a sibling fails leave no coroutine."""

    class Quick(tether.BlockingService):
        def __init__(self, name: str) -> None:
            self.name = name

        def start(self) -> None:
            log.append(f"start:{self.name}")

        def stop(self) -> None:
            log.append(f"stop:{self.name}")

    class FailsAtOnce(Node):
        async def start(self) -> None:
            raise RuntimeError("at once")

    siblings: list[Any] = [FailsAtOnce("fails", log), *(Quick(f"q{i}") for i in range(8))]
    root = Node("root", log, [siblings])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="at once"):
            await bounded(root.__aenter__())
        gc.collect()
    assert [str(w.message) for w in caught] == []
    for sibling in siblings[1:]:
        assert not sibling.running
        assert log.count(f"start:{sibling.name}") == log.count(f"stop:{sibling.name}")


@pytest.mark.parametrize("pauses", [0, 1, 3])
async def test_the_first_failure_propagates_when_the_failing_start_spawned_a_task(
    log: Log, pauses: int
) -> None:
    """Case 6: the start that failed first is raised, though it had tasks to clean up."""

    async def slow_to_cancel() -> None:
        try:
            await asyncio.sleep(WAIT * 10)
        except asyncio.CancelledError:
            for _ in range(5):
                await asyncio.sleep(0)
            raise

    class First(Node):
        async def start(self) -> None:
            for _ in range(pauses):
                await asyncio.sleep(0)
            self.add_task(slow_to_cancel())
            raise LookupError("first")

    class Later(Node):
        async def start(self) -> None:
            for _ in range(pauses + 1):
                await asyncio.sleep(0)
            raise KeyError("later")

    root = Node("root", log, [[First("first", log), Later("later", log)]])
    with pytest.raises(LookupError, match="first"):
        await bounded(root.__aenter__())


def test_task_cleanup_takes_the_time_graceful_shutdown_timeout_allows() -> None:
    """Case 7: a task needing 1.2 s after cancellation, under the default 10 s, is awaited."""
    log = Log()

    class Worker(Node):
        async def start(self) -> None:
            await super().start()
            self.add_task(self.work())

        async def work(self) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(1.2)
                self.log.append("task:done")
                raise

    db = Node("db", log)
    worker = Worker("worker", log, [db])

    async def main() -> None:
        async with worker:
            pass

    with VirtualClock() as clock:
        clock.run(main())
    assert log == ["start:db", "start:worker", "stop:worker", "task:done", "stop:db"]
    assert tether.status(worker).error is None


async def test_a_hook_can_wait_for_another_root_sharing_what_its_start_brought_up(
    log: Log,
) -> None:
    """A start hook awaiting a task that enters a root needing a service this start
    brought up already (an ASGI lifespan, say): that service is shared, not waited for."""
    db = Node("db", log)
    lifespan = Node("lifespan", log, [db])

    class Server(Node):
        async def start(self) -> None:
            await bounded(asyncio.create_task(lifespan.__aenter__()))
            await super().start()

        async def stop(self) -> None:
            await super().stop()
            await bounded(lifespan.__aexit__(None, None, None))

    async with Server("server", log, [db]):
        assert lifespan.running
    assert log == [
        "start:db",
        "start:lifespan",
        "start:server",
        "stop:server",
        "stop:lifespan",
        "stop:db",
    ]


async def test_a_failed_start_leaves_running_what_another_root_took_meanwhile(
    log: Log,
) -> None:
    """The start fails after another root took a service it brought up: that stays."""
    db = Node("db", log)
    lifespan = Node("lifespan", log, [db])

    class Server(Node):
        async def start(self) -> None:
            await bounded(asyncio.create_task(lifespan.__aenter__()))
            raise RuntimeError("server failed")

    with pytest.raises(RuntimeError, match="server failed"):
        await bounded(Server("server", log, [db]).__aenter__())
    assert db.running
    assert lifespan.running
    await bounded(lifespan.__aexit__(None, None, None))
    assert log == ["start:db", "start:lifespan", "stop:lifespan", "stop:db"]

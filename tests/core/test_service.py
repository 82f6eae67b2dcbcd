"""The core contract of Service, as DESIGN.md fixes it and facet documents it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tether
from tests.conftest import WAIT, Log, Node, SlowNode, bounded
from tether import Service as ServiceMixin  # facet programs import it under this name


class Simple(ServiceMixin):
    def __init__(self) -> None:
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


async def test_context_manager_starts_and_stops() -> None:
    """`async with` runs start on entry and stop on exit, and `running` follows."""
    service = Simple()
    assert service.running is False
    async with service as entered:
        assert entered is service
        assert service.started is True
        assert service.stopped is False
        assert service.running is True
    assert service.stopped is True
    assert service.running is False


async def test_mixin_needs_no_super_init() -> None:
    """A subclass with its own __init__ and no super().__init__() works (facet's mixin rule)."""

    class Plain(ServiceMixin):
        def __init__(self, value: int) -> None:
            self.value = value

    async with Plain(3) as plain:
        assert plain.value == 3


async def test_base_service_is_usable_as_is() -> None:
    """The default hooks do nothing, so the base class itself starts and stops."""
    async with ServiceMixin() as service:
        assert service.running


async def test_dependencies_start_first_and_stop_last(log: Log) -> None:
    """B, a dependency of A, starts before A and stops after it (facet's readme example)."""
    b = Node("b", log)
    a = Node("a", log, [b])
    async with a:
        assert log == ["start:b", "start:a"]
        assert b.running
    assert log == ["start:b", "start:a", "stop:a", "stop:b"]


async def test_top_level_items_start_in_order_written(log: Log) -> None:
    """Top-level items start one after another and stop in exact reverse."""
    b, c, d = Node("b", log), Node("c", log), Node("d", log)
    async with Node("a", log, [b, c, d]):
        pass
    assert log.of("start") == ["b", "c", "d", "a"]
    assert log.of("stop") == ["a", "d", "c", "b"]


async def test_nested_list_members_start_concurrently(log: Log) -> None:
    """[[b, c], d]: b and c start in parallel, then d, then a; stopping is the mirror."""
    b, c, d = SlowNode("b", log), SlowNode("c", log), SlowNode("d", log)
    async with SlowNode("a", log, [[b, c], d]):
        pass
    starts = log[: log.index("start:a") + 1]
    # b and c both began before either finished: they ran concurrently.
    assert starts.index("start-begin:c") < starts.index("start:b")
    assert starts.index("start-begin:b") < starts.index("start:c")
    # d began only after b and c had both finished.
    assert starts.index("start-begin:d") > max(starts.index("start:b"), starts.index("start:c"))
    stops = log[log.index("stop-begin:a") :]
    assert stops.index("stop:a") < stops.index("stop-begin:d")
    assert stops.index("stop:d") < min(stops.index("stop-begin:b"), stops.index("stop-begin:c"))
    assert stops.index("stop-begin:c") < stops.index("stop:b")


async def test_sequential_order_covers_whole_subtrees(log: Log) -> None:
    """In [b, c], everything c needs that b did not starts after b (facet's recursion)."""
    e = Node("e", log)
    b, c = Node("b", log), Node("c", log, [e])
    async with Node("a", log, [b, c]):
        pass
    assert log.of("start") == ["b", "e", "c", "a"]
    assert log.of("stop") == ["a", "c", "e", "b"]


async def test_diamond_starts_and_stops_shared_service_once(log: Log) -> None:
    """A service reachable from several dependents is one node (facet's diamond test)."""
    c = Node("c", log)
    b1, b2 = Node("b1", log, [c]), Node("b2", log, [c])
    async with Node("a", log, [b1, b2]):
        pass
    assert log.of("start") == ["c", "b1", "b2", "a"]
    assert log.of("stop") == ["a", "b2", "b1", "c"]


async def test_second_root_does_not_stop_a_shared_running_dependency(log: Log) -> None:
    """Reference counting across roots: B(c) leaving does not stop c while A still runs."""
    c = Node("c", log)
    a = Node("a", log, [c])
    async with a:
        async with Node("b", log, [c]):
            assert c.running
        assert c.running
        assert log.of("stop") == ["b"]
    assert not c.running
    assert log.of("stop") == ["b", "a", "c"]
    assert log.of("start") == ["c", "a", "b"]


async def test_shared_dependency_stops_after_the_last_root(log: Log) -> None:
    """Roots left in any order: the shared service stops with whichever leaves last."""
    c = Node("c", log)
    a, b = Node("a", log, [c]), Node("b", log, [c])
    await a.__aenter__()
    await b.__aenter__()
    await a.__aexit__(None, None, None)
    assert c.running
    await b.__aexit__(None, None, None)
    assert not c.running
    assert log.of("stop") == ["a", "b", "c"]


async def test_entering_a_running_dependency_as_root_is_counted(log: Log) -> None:
    """A running dependency may be entered on its own; leaving it does not stop it."""
    c = Node("c", log)
    async with Node("a", log, [c]):
        async with c:
            assert c.running
        assert c.running
    assert not c.running
    assert log.of("start") == ["c", "a"]


async def test_entering_a_root_twice_is_an_error() -> None:
    """A service already running as a root cannot be entered again: started twice."""
    service = Simple()
    async with service:
        with pytest.raises(tether.ServiceStateError, match="already running as a root"):
            await service.__aenter__()
        assert service.running
    assert not service.running


async def test_run_returns_after_request_stop(log: Log) -> None:
    """run() starts the graph, returns once request_stop() is called, and stops it."""
    service = Node("a", log, [Node("b", log)])

    async def stop_soon() -> None:
        while not service.running:
            await asyncio.sleep(0)
        service.request_stop()

    stopper = asyncio.create_task(stop_soon())
    await bounded(service.run())
    await stopper
    assert log == ["start:b", "start:a", "stop:a", "stop:b"]


async def test_request_stop_on_a_dependency_ends_the_roots_wait(log: Log) -> None:
    """A dependency asking to stop makes its dependents' wait() return."""
    b = Node("b", log)
    a = Node("a", log, [b])
    async with a:
        b.request_stop()
        await bounded(a.wait())
    assert log.of("stop") == ["a", "b"]


async def test_request_stop_is_a_noop_when_not_running() -> None:
    """request_stop() before start or after stop changes nothing."""
    service = Simple()
    service.request_stop()
    async with service:
        assert service.running
    service.request_stop()


async def test_request_stop_from_another_thread() -> None:
    """request_stop() is safe to call from a thread other than the loop's."""
    service = Simple()
    async with service:
        await asyncio.to_thread(service.request_stop)
        await bounded(service.wait())


async def test_wait_before_start_is_an_error() -> None:
    """wait() on a service that never started names the mistake and the fix."""
    with pytest.raises(tether.ServiceStateError, match=r"async with service"):
        await Simple().wait()


async def test_wait_after_stop_returns_at_once() -> None:
    """A stopped service's wait() does not block."""
    service = Simple()
    async with service:
        pass
    await bounded(service.wait())


class StartFails(ServiceMixin):
    def __init__(self, log: Log | None = None, name: str = "broken") -> None:
        self.log = log if log is not None else Log()
        self.label = name
        self.stop_called = False

    async def start(self) -> None:
        self.log.append(f"start:{self.label}")
        raise RuntimeError(f"{self.label} cannot start")

    async def stop(self) -> None:  # pragma: no cover - must never run
        self.stop_called = True


async def test_failed_start_propagates_and_never_calls_its_stop() -> None:
    """The original exception propagates; the failing service's stop is not called."""
    service = StartFails()
    with pytest.raises(RuntimeError, match="broken cannot start") as info:
        await service.run()
    assert service.stop_called is False
    assert service.running is False
    assert tether.status(service).state is tether.ServiceState.FAILED
    assert any("StartFails.start" in note for note in info.value.__notes__)


async def test_failed_start_stops_started_services_in_reverse(log: Log) -> None:
    """Everything this start brought up is stopped in reverse; later ones never start."""
    x, y = Node("x", log), Node("y", log)
    broken = StartFails(log)
    later = Node("later", log)
    root = Node("root", log, [x, y, broken, later])
    with pytest.raises(RuntimeError):
        async with root:
            pytest.fail("the body must not run")  # pragma: no cover
    assert log.of("start") == ["x", "y", "broken"]
    assert log.of("stop") == ["y", "x"]
    assert not broken.stop_called
    for service in (x, y, later, root):
        assert not service.running
    assert tether.status(later).state is tether.ServiceState.CREATED


async def test_failed_start_earlier_leaves_later_services_unstarted(log: Log) -> None:
    """facet: a broken first dependency means the valid second one never starts."""
    valid = Node("valid", log)
    root = Node("root", log, [StartFails(log), valid])
    with pytest.raises(RuntimeError):
        await root.run()
    assert log.of("start") == ["broken"]
    assert log.of("stop") == []


async def test_failed_start_in_a_parallel_group_cancels_and_rolls_back(log: Log) -> None:
    """A concurrent sibling that already started is stopped; one still starting is cancelled."""

    class Quick(Node):
        pass

    class Hanging(Node):
        async def start(self) -> None:
            self.log.append(f"start-begin:{self.label}")
            try:
                await asyncio.sleep(WAIT * 10)
            finally:
                self.log.append(f"start-cancelled:{self.label}")

    class LateFail(StartFails):
        async def start(self) -> None:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            await super().start()

    quick, hanging = Quick("quick", log), Hanging("hanging", log)
    root = Node("root", log, [[quick, LateFail(log), hanging]])
    with pytest.raises(RuntimeError, match="broken cannot start"):
        await bounded(root.run())
    assert "start-cancelled:hanging" in log
    assert log.of("stop") == ["quick"]
    assert tether.status(hanging).state is tether.ServiceState.FAILED
    assert not root.running


async def test_concurrent_start_failures_raise_the_first_and_note_the_others(log: Log) -> None:
    """Several concurrent failures: the first propagates, the others become notes."""

    class FailsAfter(ServiceMixin):
        def __init__(self, label: str, steps: int) -> None:
            self.label = label
            self.steps = steps

        async def start(self) -> None:
            for _ in range(self.steps):
                await asyncio.sleep(0)
            raise ValueError(self.label)

    class Shielded(ServiceMixin):
        async def start(self) -> None:
            # Fails during cancellation too: its error must not be lost.
            try:
                await asyncio.sleep(WAIT * 10)
            finally:
                raise KeyError("second")

    root = Node("root", log, [[FailsAfter("first", 2), Shielded()]])
    with pytest.raises(ValueError, match="first") as info:
        await bounded(root.run())
    assert any("KeyError" in note for note in info.value.__notes__)


async def test_background_task_crash_ends_wait_and_run() -> None:
    """A task that raises crashes the stack: run() raises it and everything stops."""

    class Crashing(ServiceMixin):
        async def start(self) -> None:
            self.add_task(self.boom())

        async def boom(self) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("task failed")

    service = Crashing()
    with pytest.raises(RuntimeError, match="task failed"):
        await bounded(service.run())
    assert not service.running
    with pytest.raises(RuntimeError, match="task failed"):
        async with service:
            await bounded(service.wait())


async def test_crash_of_a_dependency_task_reaches_the_root(log: Log) -> None:
    """A crash deep in the graph makes the root's wait() raise, then all stops."""

    class Worker(Node):
        async def start(self) -> None:
            await super().start()
            self.add_task(self.fail())

        async def fail(self) -> None:
            await asyncio.sleep(0)
            raise OSError("disk gone")

    worker = Worker("worker", log)
    root = Node("root", log, [Node("mid", log, [worker])])
    with pytest.raises(OSError, match="disk gone"):
        await bounded(root.run())
    assert log.of("stop") == ["root", "mid", "worker"]


async def test_crash_in_a_shared_service_reaches_every_root(log: Log) -> None:
    """Two roots share a service whose task crashes: both roots' wait() raise it."""

    class Shared(Node):
        async def start(self) -> None:
            await super().start()
            self.crash_now = asyncio.Event()
            self.add_task(self.crash_later())

        async def crash_later(self) -> None:
            await self.crash_now.wait()
            raise RuntimeError("shared crashed")

    shared = Shared("shared", log)
    a, b = Node("a", log, [shared]), Node("b", log, [shared])
    async with a, b:
        shared.crash_now.set()
        for root in (a, b):
            with pytest.raises(RuntimeError, match="shared crashed"):
                await bounded(root.wait())


async def test_crash_surfaces_on_exit_when_nobody_waited() -> None:
    """If the body never called wait(), leaving the block raises the crash."""

    class Crashing(ServiceMixin):
        async def start(self) -> None:
            self.add_task(self.boom())

        async def boom(self) -> None:
            raise RuntimeError("unnoticed")

    service = Crashing()
    with pytest.raises(RuntimeError, match="unnoticed"):
        async with service:
            await asyncio.sleep(0)
            await asyncio.sleep(0)


async def test_tasks_are_cancelled_and_awaited_before_stop_completes() -> None:
    """On stop, every background task is cancelled and awaited (facet's task test)."""

    class WithTask(ServiceMixin):
        def __init__(self) -> None:
            self.cancelled = 0

        async def forever(self) -> None:
            try:
                await asyncio.sleep(WAIT * 10)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

        async def start(self) -> None:
            self.task = self.add_task(self.forever())
            await asyncio.sleep(0)

    service = WithTask()
    async with service:
        pass
    assert service.cancelled == 1
    assert service.task.done()


async def test_task_finishing_normally_is_not_a_crash() -> None:
    """A task that returns is simply forgotten; the service keeps running."""

    class OneShot(ServiceMixin):
        async def start(self) -> None:
            self.done = asyncio.Event()
            self.add_task(self.work())

        async def work(self) -> None:
            self.done.set()

    async with OneShot() as service:
        await bounded(service.done.wait())
        await asyncio.sleep(0)
        assert service.running
        assert tether.status(service).tasks == ()


async def test_add_task_rejects_what_is_not_a_coroutine() -> None:
    """add_task(func) instead of add_task(func()) gets an error showing the fix."""

    class Svc(ServiceMixin):
        async def work(self) -> None:  # pragma: no cover - never called
            pass

    async with Svc() as service:
        with pytest.raises(TypeError, match=r"Call it: add_task\(work\(\.\.\.\)\)"):
            service.add_task(service.work)  # type: ignore[arg-type]


async def test_add_task_on_a_stopped_service_is_an_error() -> None:
    """A task added to a service that is not running would leak; it is refused."""

    async def work() -> None:  # pragma: no cover - closed, never run
        pass

    with pytest.raises(tether.ServiceStateError, match="created"):
        Simple().add_task(work())


async def test_stop_hook_past_the_timeout_is_cancelled_and_the_rest_stops(log: Log) -> None:
    """A stop hook that hangs is cancelled at graceful_shutdown_timeout; the rest stops."""

    class Hangs(Node):
        graceful_shutdown_timeout = 0.05

        async def stop(self) -> None:
            self.log.append("stop-begin:hangs")
            try:
                await asyncio.sleep(WAIT * 10)
            except asyncio.CancelledError:
                self.log.append("stop-cancelled:hangs")
                raise

    below = Node("below", log)
    root = Node("root", log, [Hangs("hangs", log, [below])])
    with pytest.raises(tether.StopTimeoutError, match=r"Hangs\.stop .*0\.05s") as info:
        async with root:
            pass
    assert "stop-cancelled:hangs" in log
    assert log.of("stop") == ["root", "below"]
    assert "graceful_shutdown_timeout" in str(info.value)


async def test_stop_hook_that_swallows_cancellation_is_abandoned(log: Log) -> None:
    """A stop hook that ignores its cancellation is abandoned; teardown goes on."""

    class Stubborn(Node):
        graceful_shutdown_timeout = 0.05

        async def stop(self) -> None:
            while True:
                try:
                    await asyncio.sleep(WAIT * 10)
                except asyncio.CancelledError:
                    self.log.append("swallowed")

    below = Node("below", log)
    with pytest.raises(tether.StopTimeoutError, match="abandoned"):
        async with Node("root", log, [Stubborn("stubborn", log, [below])]):
            pass
    assert log.of("stop") == ["root", "below"]
    assert "swallowed" in log


async def test_task_that_swallows_cancellation_is_reported_by_name(log: Log) -> None:
    """A background task that ignores cancellation is named in the error; stop goes on."""

    class Stubborn(Node):
        graceful_shutdown_timeout = 0.05

        async def start(self) -> None:
            self.release = asyncio.Event()
            self.add_task(self.ignore_cancel(), name="stubborn-loop")

        async def ignore_cancel(self) -> None:
            while not self.release.is_set():
                try:
                    await self.release.wait()
                except asyncio.CancelledError:
                    continue

    below = Node("below", log)
    stubborn = Stubborn("stubborn", log, [below])
    try:
        with pytest.raises(tether.StopTimeoutError, match="stubborn-loop"):
            async with Node("root", log, [stubborn]):
                pass
        assert log.of("stop") == ["root", "stubborn", "below"]
    finally:
        stubborn.release.set()
        await asyncio.sleep(0)


async def test_stop_errors_do_not_abandon_teardown(log: Log) -> None:
    """A stop hook that raises: every other service still stops; the error is raised after."""

    class StopFails(Node):
        async def stop(self) -> None:
            await super().stop()
            raise RuntimeError(f"{self.label} stop failed")

    root = Node("root", log, [StopFails("first", log), Node("mid", log), StopFails("last", log)])
    with pytest.raises(RuntimeError, match="last stop failed") as info:
        async with root:
            pass
    assert log.of("stop") == ["root", "last", "mid", "first"]
    assert any("first stop failed" in note for note in info.value.__notes__)
    assert not any(s.running for s in root.deps)


async def test_timeout_never_hides_the_crash_that_caused_the_stop(log: Log) -> None:
    """A crash stops the graph; a stop timeout during that is a note, not the error."""

    class Crashing(Node):
        async def start(self) -> None:
            self.add_task(self.boom())

        async def boom(self) -> None:
            raise LookupError("the real cause")

    class Slow(Node):
        graceful_shutdown_timeout = 0.02

        async def stop(self) -> None:
            await asyncio.sleep(WAIT * 10)

    root = Node("root", log, [Slow("slow", log), Crashing("crashing", log)])
    with pytest.raises(LookupError, match="the real cause") as info:
        await bounded(root.run())
    assert any("StopTimeoutError" in note for note in info.value.__notes__)


async def test_body_exception_propagates_with_stop_errors_as_notes(log: Log) -> None:
    """An exception in the `async with` body wins; stop errors are attached to it."""

    class StopFails(Node):
        async def stop(self) -> None:
            raise RuntimeError("stop failed")

    with pytest.raises(KeyError) as info:
        async with Node("root", log, [StopFails("dep", log)]):
            raise KeyError("body")
    assert any("stop failed" in note for note in info.value.__notes__)


async def test_service_starts_again_after_a_clean_stop(log: Log) -> None:
    """A stopped service can run again, with fresh tasks and state."""
    service = Node("a", log, [Node("b", log)])
    for _ in range(3):
        async with service:
            assert service.running
    assert log.of("start") == ["b", "a"] * 3


async def test_service_starts_again_after_a_crash() -> None:
    """facet's own tests run a crashed service again; so can we."""

    class Crashing(ServiceMixin):
        async def start(self) -> None:
            self.add_task(self.boom())

        async def boom(self) -> None:
            raise RuntimeError("boom")

    service = Crashing()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="boom"):
            await bounded(service.run())


async def test_service_starts_again_after_a_failed_start() -> None:
    """A failed start leaves the service ready for another attempt."""

    class Flaky(ServiceMixin):
        attempts = 0

        async def start(self) -> None:
            type(self).attempts += 1
            if self.attempts == 1:
                raise RuntimeError("first attempt")

    service = Flaky()
    with pytest.raises(RuntimeError):
        async with service:
            pass  # pragma: no cover
    async with service:
        assert service.running


async def test_service_starts_again_after_a_stop_timeout() -> None:
    """Even a stop that timed out leaves the service startable."""

    class Slow(ServiceMixin):
        graceful_shutdown_timeout = 0.02
        slow = True

        async def stop(self) -> None:
            if self.slow:
                await asyncio.sleep(WAIT * 10)

    service = Slow()
    with pytest.raises(tether.StopTimeoutError):
        async with service:
            pass
    service.slow = False
    async with service:
        assert service.running


async def test_starting_a_service_from_its_own_stop_hook_is_an_error() -> None:
    """Starting a service from its own stop hook would wait for itself: refused."""

    class Reentrant(ServiceMixin):
        async def stop(self) -> None:
            async with self:
                pass  # pragma: no cover

    with pytest.raises(tether.ServiceStateError, match="waiting for this very code"):
        async with Reentrant():
            pass


async def test_concurrent_roots_sharing_a_dependency_start_it_once(log: Log) -> None:
    """Two roots started at once share their dependency: one start, one stop."""
    shared = SlowNode("shared", log)
    a, b = Node("a", log, [shared]), Node("b", log, [shared])
    await bounded(asyncio.gather(a.__aenter__(), b.__aenter__()))
    assert log.of("start").count("shared") == 1
    await a.__aexit__(None, None, None)
    await b.__aexit__(None, None, None)
    assert log.of("stop").count("shared") == 1


async def test_graceful_shutdown_timeout_must_be_positive() -> None:
    """A malformed graceful_shutdown_timeout is reported with the service's name."""

    class Bad(ServiceMixin):
        graceful_shutdown_timeout = -1

        async def stop(self) -> None:
            await asyncio.sleep(0)

    with pytest.raises(tether.TetherError, match=r"Bad\.graceful_shutdown_timeout"):
        async with Bad():
            pass


async def test_repr_shows_state_uptime_and_tasks() -> None:
    """repr() tells state, uptime and task count, like asyncio's TaskGroup does."""

    class Svc(ServiceMixin):
        async def start(self) -> None:
            self.add_task(asyncio.sleep(WAIT * 10))

    service = Svc()
    assert repr(service) == "<Svc state=created>"
    async with service:
        assert repr(service).startswith("<Svc state=running uptime=")
        assert repr(service).endswith("tasks=1>")
    assert repr(service) == "<Svc state=stopped>"


async def test_name_attribute_appears_in_errors() -> None:
    """A service with a `name` is shown as Class[name] in messages."""

    class Db(ServiceMixin):
        def __init__(self, name: str) -> None:
            self.name = name

        async def start(self) -> None:
            raise RuntimeError("no")

    with pytest.raises(RuntimeError) as info:
        await Db("primary").run()
    assert any("Db[primary].start" in note for note in info.value.__notes__)


async def test_status_reports_state_uptime_tasks_and_dependencies(log: Log) -> None:
    """tether.status() is a snapshot of a service for humans and health endpoints."""
    dep = Node("dep", log)

    class Svc(Node):
        async def start(self) -> None:
            self.add_task(asyncio.sleep(WAIT * 10), name="sleeper")

    service = Svc("svc", log, [dep])
    async with service:
        snapshot = tether.status(service)
        assert snapshot.state is tether.ServiceState.RUNNING
        assert snapshot.uptime is not None
        assert snapshot.uptime >= 0
        assert [t.get_name() for t in snapshot.tasks] == ["sleeper"]
        assert snapshot.dependencies == (dep,)
        assert snapshot.error is None
    snapshot = tether.status(service)
    assert snapshot.state is tether.ServiceState.STOPPED
    assert snapshot.uptime is None


async def test_hundred_thousand_chain_has_no_recursion_limit() -> None:
    """100,000 services in a chain start and stop: the engine never recurses."""
    services: list[Any] = [ServiceMixin()]

    class Link(ServiceMixin):
        def __init__(self, dep: Any) -> None:
            self.dep = dep

        @property
        def dependencies(self) -> list[Any]:
            return [self.dep]

    for _ in range(100_000):
        services.append(Link(services[-1]))
    async with services[-1]:
        assert services[0].running
    assert not services[0].running


def test_cancel_grace_is_how_long_a_cancelled_stop_may_take() -> None:
    """Past graceful_shutdown_timeout the hook is cancelled; it then has cancel_grace
    seconds to finish its cleanup: within it, a timeout; past it, abandoned."""
    from tether.testing import VirtualClock

    def run(grace: float) -> tuple[str, list[str]]:
        log = Log()

        class SlowCleanup(Node):
            graceful_shutdown_timeout = 1.0
            cancel_grace = grace

            async def stop(self) -> None:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    await asyncio.sleep(2.0)  # its cleanup takes two seconds
                    self.log.append("cleaned up")
                    raise

        async def main() -> str:
            try:
                async with Node("root", log, [SlowCleanup("slow", log)]):
                    pass
            except tether.StopTimeoutError as exc:
                return str(exc)
            return "no error"

        with VirtualClock() as clock:
            return clock.run(main()), list(log)

    message, log = run(grace=5.0)
    assert "it was cancelled" in message
    assert "cleaned up" in log
    message, log = run(grace=0.5)
    assert "abandoned" in message
    assert "cancel_grace=0.5s" in message
    assert "cleaned up" not in log

"""Lifecycle stages: built-in ones, custom ones placed anywhere, each direction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tether
from tests.conftest import WAIT, Log, bounded
from tether._core._engine import run_exit, run_init


class Staged(tether.Service):
    """Logs every built-in stage it takes part in."""

    def __init__(self, name: str, log: Log, deps: list[Any] | None = None) -> None:
        self.label = name
        self.log = log
        self.deps = deps or []

    @property
    def dependencies(self) -> list[Any]:
        return self.deps

    def on_init(self) -> None:
        self.log.append(f"init:{self.label}")

    async def start(self) -> None:
        self.log.append(f"start:{self.label}")

    async def on_started(self) -> None:
        self.log.append(f"started:{self.label}")

    def on_reload(self) -> None:  # a sync hook: allowed for this stage
        self.log.append(f"reload:{self.label}")

    async def on_stopping(self) -> None:
        self.log.append(f"stopping:{self.label}")

    async def stop(self) -> None:
        self.log.append(f"stop:{self.label}")

    def on_exit(self) -> None:
        self.log.append(f"exit:{self.label}")


async def test_builtin_stages_run_in_table_order_and_direction(log: Log) -> None:
    """start and started forward; stopping and stop backward; started after all started."""
    b = Staged("b", log)
    a = Staged("a", log, [b])
    async with a:
        assert log == ["start:b", "start:a", "started:b", "started:a"]
        log.clear()
    assert log == ["stopping:a", "stopping:b", "stop:a", "stop:b"]


async def test_reload_runs_forward_over_the_running_graph(log: Log) -> None:
    """tether.reload() calls on_reload, dependencies first; services keep running."""
    b = Staged("b", log)
    a = Staged("a", log, [b])
    async with a:
        log.clear()
        await tether.reload(a)
        assert log == ["reload:b", "reload:a"]
        assert a.running
        assert b.running


async def test_failing_reload_hook_runs_the_others_and_raises(log: Log) -> None:
    """Every reload hook runs; the first error is raised, the services keep running."""

    class BadReload(Staged):
        def on_reload(self) -> None:
            raise ValueError("bad config")

    b = BadReload("b", log)
    a = Staged("a", log, [b])
    async with a:
        log.clear()
        with pytest.raises(ValueError, match="bad config") as info:
            await tether.reload(a)
        assert log == ["reload:a"]
        assert a.running
        assert any("BadReload.on_reload" in note for note in info.value.__notes__)


async def test_reload_of_a_service_that_is_not_running_is_an_error(log: Log) -> None:
    """Reloading needs a running graph."""
    with pytest.raises(tether.ServiceStateError, match="created"):
        await tether.reload(Staged("a", log))


def test_init_and_exit_phases_run_sync_forward_and_backward(log: Log) -> None:
    """The runner's init (forward) and exit (backward) phases, with no event loop."""
    b = Staged("b", log)
    a = Staged("a", log, [b])
    run_init(a)
    run_exit(a)
    assert log == ["init:b", "init:a", "exit:a", "exit:b"]


def test_exit_phase_runs_every_hook_and_raises_the_first_error(log: Log) -> None:
    """A failing exit hook does not skip the others."""

    class BadExit(Staged):
        def on_exit(self) -> None:
            raise RuntimeError("exit failed")

    b = Staged("b", log)
    a = BadExit("a", log, [b])
    with pytest.raises(RuntimeError, match="exit failed"):
        run_exit(a)
    assert log == ["exit:b"]


def test_init_phase_stops_at_the_first_error(log: Log) -> None:
    """A failing init hook stops the init phase: later services are not initialised."""

    class BadInit(Staged):
        def on_init(self) -> None:
            raise RuntimeError("init failed")

    a = Staged("a", log, [BadInit("b", log)])
    with pytest.raises(RuntimeError, match="init failed"):
        run_init(a)
    assert log == []


# A systemPY-style set of custom stages, as in the seed's example.
BEFORE_STARTED = tether.Stage("before_started", before=tether.STARTED, direction="forward")
BEFORE_STOPPING = tether.Stage("before_stopping", before=tether.STOPPING, direction="gather")
AFTER_STOP = tether.Stage("after_stop", after=tether.STOP, direction="backward")
ALSO_AFTER_STOP = tether.Stage("also_after_stop", after=tether.STOP, direction="backward")
AFTER_ALSO = tether.Stage("after_also", after=ALSO_AFTER_STOP, direction="backward")


class Custom(Staged):
    @BEFORE_STARTED
    def before_started(self) -> None:
        self.log.append(f"before_started:{self.label}")

    @BEFORE_STOPPING
    async def before_stopping(self) -> None:
        self.log.append(f"before_stopping-begin:{self.label}")
        await asyncio.sleep(0)
        self.log.append(f"before_stopping:{self.label}")

    @AFTER_STOP
    def after_stop(self) -> None:
        self.log.append(f"after_stop:{self.label}")

    @ALSO_AFTER_STOP
    def also_after_stop(self) -> None:
        self.log.append(f"also_after_stop:{self.label}")

    @AFTER_ALSO
    def after_also(self) -> None:
        self.log.append(f"after_also:{self.label}")


async def test_custom_stages_take_their_place_and_direction(log: Log) -> None:
    """Custom stages run where they were placed, in their direction, sync or async."""
    b = Custom("b", log)
    a = Custom("a", log, [b])
    async with a:
        assert log == [
            "start:b",
            "start:a",
            "before_started:b",
            "before_started:a",
            "started:b",
            "started:a",
        ]
        log.clear()
    assert log[:4] == [
        "before_stopping-begin:a",
        "before_stopping-begin:b",
        "before_stopping:a",
        "before_stopping:b",
    ]  # gather: both began before either ended
    assert log[4:] == [
        "stopping:a",
        "stopping:b",
        "stop:a",
        "stop:b",
        "after_stop:a",
        "after_stop:b",
        "also_after_stop:a",
        "also_after_stop:b",
        "after_also:a",
        "after_also:b",
    ]


async def test_subclass_override_stays_bound_to_the_stage(log: Log) -> None:
    """Overriding a marked method by name keeps it as the stage's hook."""

    class Override(Custom):
        def before_started(self) -> None:
            self.log.append("overridden")

    async with Override("o", log):
        assert "overridden" in log


async def test_services_without_a_custom_stage_are_unaffected(log: Log) -> None:
    """A stage with no hooks in a graph costs nothing and changes nothing."""
    async with Staged("plain", log):
        pass
    assert log == ["start:plain", "started:plain", "stopping:plain", "stop:plain"]


async def test_failure_in_a_start_phase_stage_rolls_back(log: Log) -> None:
    """A started hook that raises stops everything that started, in reverse."""

    class BadStarted(Staged):
        async def on_started(self) -> None:
            raise RuntimeError("not ready")

    b = Staged("b", log)
    a = BadStarted("a", log, [b])
    with pytest.raises(RuntimeError, match="not ready"):
        async with a:
            pass  # pragma: no cover
    assert log.of("stop") == ["a", "b"]
    assert not a.running
    assert not b.running


async def test_stopping_stage_hook_past_the_timeout_is_cancelled(log: Log) -> None:
    """Stop-phase hooks are bounded by graceful_shutdown_timeout too."""

    class SlowStopping(Staged):
        graceful_shutdown_timeout = 0.02

        async def on_stopping(self) -> None:
            await asyncio.sleep(WAIT * 10)

    with pytest.raises(tether.StopTimeoutError, match=r"SlowStopping\.on_stopping"):
        async with SlowStopping("a", log):
            pass
    assert log.of("stop") == ["a"]


def test_stage_needs_exactly_one_anchor() -> None:
    """A stage must be placed before or after another stage, not both, not neither."""
    with pytest.raises(TypeError, match="exactly one of before= or after="):
        tether.Stage("floating")
    with pytest.raises(TypeError, match="exactly one of before= or after="):
        tether.Stage("both", before=tether.START, after=tether.STOP)


def test_stage_rejects_bad_direction_and_name() -> None:
    """Direction and name are validated with the accepted values in the message."""
    with pytest.raises(ValueError, match="'forward', 'backward', 'gather'"):
        tether.Stage("x", after=tether.START, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identifier"):
        tether.Stage("not a name", after=tether.START)
    with pytest.raises(TypeError, match="relative to another Stage"):
        tether.Stage("x", after="start")  # type: ignore[arg-type]


def test_builtin_stages_are_not_decorators() -> None:
    """Built-in stages call fixed method names; decorating with them is explained."""
    with pytest.raises(TypeError, match="calls the method named 'on_started'"):

        @tether.STARTED
        def whatever(self: Any) -> None:  # pragma: no cover
            pass


def test_two_hooks_for_one_stage_is_an_error() -> None:
    """One class, one hook per stage."""

    class Twice(tether.BlockingService):
        @AFTER_STOP
        def one(self) -> None:  # pragma: no cover
            pass

        @AFTER_STOP
        def two(self) -> None:  # pragma: no cover
            pass

    with pytest.raises(tether.HookError, match="two hooks for stage 'after_stop'"):
        with Twice():
            pass  # pragma: no cover


def test_custom_stage_around_init_must_be_sync() -> None:
    """A stage placed around init inherits its rule: no event loop, sync hooks only."""
    early = tether.Stage("early", before=tether.INIT)

    class AsyncEarly(tether.Service):
        @early
        async def prepare(self) -> None:  # pragma: no cover
            pass

    with pytest.raises(tether.HookError, match=r"AsyncEarly\.prepare is async"):
        run_init(AsyncEarly())


def test_custom_stage_runs_in_the_init_phase(log: Log) -> None:
    """A sync stage placed after init runs in the runner's init phase."""
    after_init = tether.Stage("after_init", after=tether.INIT)

    class Early(Staged):
        @after_init
        def prepared(self) -> None:
            self.log.append(f"after_init:{self.label}")

    run_init(Early("e", log))
    assert log == ["init:e", "after_init:e"]


async def test_hook_returning_an_awaitable_is_awaited(log: Log) -> None:
    """A plain function hook that returns an awaitable has it awaited."""

    class Returns(Staged):
        def on_started(self) -> Any:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            self.log.append("returned-future")
            return fut

    async with Returns("r", log):
        pass
    assert "returned-future" in log


async def test_stage_events_are_published(log: Log) -> None:
    """Each stage that runs is announced with begin and end events."""
    events: list[tether.LifecycleEvent] = []
    with tether.subscribe(events.append):
        async with Custom("c", log):
            pass
    stages = [e.stage for e in events if e.kind is tether.EventKind.STAGE_BEGIN]
    assert stages == [
        "start",
        "before_started",
        "started",
        "before_stopping",
        "stopping",
        "stop",
        "after_stop",
        "also_after_stop",
        "after_also",
    ]


async def test_stage_repr_shows_placement() -> None:
    """repr() of a custom stage says where it sits and how it runs."""
    assert repr(BEFORE_STOPPING) == "<Stage before_stopping before=stopping gather>"
    assert repr(tether.STARTED) == "<Stage started>"
    await bounded(asyncio.sleep(0))

"""Supervision: restart types, strategies, intensity and backoff, held against Erlang/OTP rules.

The property tests drive random exit sequences (several children may exit in one loop
iteration) through a real supervisor on a virtual clock and compare the observed stops
and starts with a small reference model of OTP's supervisor (``supervisor.erl``:
``do_restart``, ``restart/2`` per strategy, ``add_restart``, and the pid check that
drops an exit of a child restarted since).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tests.conftest import Log
from tether import Restart, Strategy
from tether.testing import VirtualClockLoop

EXITS = ("exception", "normal", "shutdown")


class Child(tether.Service):
    """A supervised child that logs its starts and stops and exits when told to.

    ``exit_with(kind)``: ``exception`` makes its task raise, ``normal`` makes it request
    its own stop, ``shutdown`` cancels its task from outside. ``listening`` is set once
    its task waits for that word, so exits told to several children happen in the order
    told.
    """

    def __init__(
        self,
        label: str,
        log: Log,
        restart: Restart = Restart.PERMANENT,
        deps: Iterable[tether.ServiceBase] = (),
    ) -> None:
        self.label = label
        self.log = log
        self.restart = restart
        self.deps = list(deps)
        self.fail_starts = 0
        self.command: asyncio.Future[str] | None = None
        self.body: asyncio.Task[Any] | None = None
        self.listening = asyncio.Event()
        self.started_at = 0.0

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        return self.deps

    timeout = 10.0
    name: str  # when set, errors and logs show it: Child[name]

    @property
    def graceful_shutdown_timeout(self) -> float:
        return self.timeout

    async def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            self.log.append(f"start-failed:{self.label}")
            raise RuntimeError(f"{self.label} cannot start")
        self.log.append(f"start:{self.label}")
        self.started_at = asyncio.get_running_loop().time()
        self.command = asyncio.get_running_loop().create_future()
        self.listening = asyncio.Event()
        self.body = self.add_task(self._body(self.command), name=f"{self.label}.body")

    async def stop(self) -> None:
        self.log.append(f"stop:{self.label}")

    async def _body(self, command: asyncio.Future[str]) -> None:
        self.listening.set()
        kind = await command
        if kind == "exception":
            raise ValueError(f"{self.label} failed")
        if kind == "normal":
            self.request_stop()
        await asyncio.Event().wait()

    def exit_with(self, kind: str) -> None:
        if kind == "shutdown":
            assert self.body is not None
            self.body.cancel()
        else:
            assert self.command is not None
            self.command.set_result(kind)


def run_virtual(coro: Any) -> Any:
    """Run ``coro`` on a virtual clock starting at 0."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(coro)


async def settle(supervisor: tether.Supervisor, log: Log, length: int) -> None:
    """Let the supervisor react until ``log`` has ``length`` entries and it is idle.

    Only loop turns pass (no virtual time): a bounded number of them, so a missing
    reaction fails instead of hanging.
    """
    rec = supervisor.__dict__["_tether"]
    for _ in range(2000):
        wake = supervisor._wake
        idle = not supervisor._pending and rec.op is None and not (wake and wake.is_set())
        if len(log) >= length and idle:
            break
        await asyncio.sleep(0)
    for _ in range(20):  # and nothing more happens
        await asyncio.sleep(0)


# ------------------------------------------------------------ the OTP reference


@dataclasses.dataclass
class Outcome:
    log: list[str]
    escalated: bool


Batch = list[tuple[int, str]]
"""Exits at one instant, in one loop iteration: (child, exit kind), in the order they happen."""


def otp_model(
    types: list[Restart],
    strategy: Strategy,
    intensity: int,
    period: float,
    events: list[tuple[float, Batch]],
) -> Outcome:
    """What OTP's supervisor does with these exits (children independent of each other).

    ``events`` are (time, batch). An exit of a child that is not running is skipped.
    The exits of a batch reach the supervisor's mailbox together and are handled one
    at a time, in order; each names the run (pid) that exited, and when a strategy has
    stopped that run meanwhile the message no longer matches a child and is ignored.
    The failed child itself is still running in tether when its supervisor hears of
    it, so it is stopped too, in its place in reverse start order.
    """
    n = len(types)
    running = [True] * n
    removed = [False] * n
    runs = [0] * n  # the pid of each child: which run it is in
    restarts: list[float] = []
    log: list[str] = []
    for now, batch in events:
        mailbox = [(i, kind, runs[i]) for i, kind in batch if running[i]]
        for i, kind, run in mailbox:
            if not running[i] or runs[i] != run:
                continue  # an EXIT from a pid that is no longer the child's
            restart = types[i] is Restart.PERMANENT or (
                types[i] is Restart.TRANSIENT and kind == "exception"
            )
            if not restart:  # do_restart(_, normal|shutdown, ...) / do_restart(temporary, ...)
                log.append(f"stop:{i}")
                running[i] = False
                removed[i] = types[i] is Restart.TEMPORARY
                continue
            restarts = [t for t in restarts if t >= now - period] + [now]  # add_restart
            if len(restarts) > intensity:
                log.extend(f"stop:{j}" for j in reversed(range(n)) if running[j])
                return Outcome(log, escalated=True)
            if strategy is Strategy.ONE_FOR_ONE:
                group = [i]
            elif strategy is Strategy.ONE_FOR_ALL:
                group = list(range(n))
            else:
                group = list(range(i, n))
            for j in reversed(group):  # terminate_children: temporary ones are removed
                if running[j]:
                    log.append(f"stop:{j}")
                    running[j] = False
                    removed[j] = types[j] is Restart.TEMPORARY
            for j in group:  # start_children: every child still in the list
                if not removed[j]:
                    log.append(f"start:{j}")
                    running[j] = True
                    runs[j] += 1
    return Outcome(log, escalated=False)


async def observe(
    types: list[Restart],
    strategy: Strategy,
    intensity: int,
    period: float,
    events: list[tuple[float, Batch]],
) -> Outcome:
    """Run the same exits through a real supervisor and record what it does.

    The exits of a batch are told in one go, so they happen in one loop iteration,
    before the supervisor hears of any.
    """
    log = Log()
    children = [Child(str(i), log, restart) for i, restart in enumerate(types)]
    supervisor = tether.Supervisor(
        children, strategy=strategy, max_restarts=intensity, max_seconds=period
    )
    loop = asyncio.get_running_loop()
    escalated = False
    try:
        async with supervisor:
            assert log == [f"start:{i}" for i in range(len(types))]
            log.clear()
            for at, batch in events:
                exiting = [(children[i], kind) for i, kind in batch if children[i].running]
                if not exiting:
                    continue
                for child, _ in exiting:  # its task is up (no virtual time passes)
                    await asyncio.wait_for(child.listening.wait(), 5)
                await asyncio.sleep(max(0.0, at - loop.time()))
                assert loop.time() == at
                before = len(log)
                for child, kind in exiting:
                    child.exit_with(kind)
                await settle(supervisor, log, before + 1)
                if supervisor.__dict__["_tether"].crash is not None:
                    break
            done = len(log)
    except tether.RestartIntensityError:
        escalated = True
        done = len(log)
    return Outcome(log[:done], escalated)


def events_strategy(n: int) -> st.SearchStrategy[list[tuple[float, Batch]]]:
    exit_ = st.tuples(st.integers(0, n - 1), st.sampled_from(EXITS))
    batch = st.lists(exit_, min_size=1, max_size=n, unique_by=lambda e: e[0])
    step = st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]), batch)

    def timed(steps: list[tuple[float, Batch]]) -> list[tuple[float, Batch]]:
        now = 0.0
        out = []
        for delay, exits in steps:
            now += delay
            out.append((now, exits))
        return out

    return st.lists(step, min_size=1, max_size=12).map(timed)


@st.composite
def scenarios(draw: st.DrawFn, strategy: Strategy) -> tuple[Any, ...]:
    n = draw(st.integers(1, 4))
    types = draw(st.lists(st.sampled_from(list(Restart)), min_size=n, max_size=n))
    intensity = draw(st.integers(0, 6))
    period = draw(st.sampled_from([1.0, 3.0, 5.0, 10.0]))
    events = draw(events_strategy(n))
    return types, strategy, intensity, period, events


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("strategy", list(Strategy))
def test_random_exit_sequences_match_the_otp_reference(strategy: Strategy) -> None:
    """For each strategy, random exits (kind, child, time; several at once) give OTP's result."""

    @PROPERTY
    @given(scenarios(strategy))
    def check(scenario: tuple[Any, ...]) -> None:
        types, strat, intensity, period, events = scenario
        expected = otp_model(types, strat, intensity, period, events)
        observed = run_virtual(observe(types, strat, intensity, period, events))
        assert observed == expected

    check()


# ---------------------------------------------------- restart types x exit kinds

CELLS = {
    (Restart.PERMANENT, "exception"): True,
    (Restart.PERMANENT, "normal"): True,
    (Restart.PERMANENT, "shutdown"): True,
    (Restart.TRANSIENT, "exception"): True,
    (Restart.TRANSIENT, "normal"): False,
    (Restart.TRANSIENT, "shutdown"): False,
    (Restart.TEMPORARY, "exception"): False,
    (Restart.TEMPORARY, "normal"): False,
    (Restart.TEMPORARY, "shutdown"): False,
}


@pytest.mark.parametrize(("restart", "kind"), list(CELLS))
async def test_restart_type_and_exit_kind_decide_the_restart(restart: Restart, kind: str) -> None:
    """Each of the nine cells: restarted or left down, its sibling untouched, counted."""
    log = Log()
    child = Child("x", log, restart)
    sibling = Child("y", log)
    supervisor = tether.Supervisor([child, sibling], max_restarts=5)
    async with supervisor:
        log.clear()
        child.exit_with(kind)
        expected = ["stop:x", "start:x"] if CELLS[restart, kind] else ["stop:x"]
        await settle(supervisor, log, len(expected))
        assert log == expected
        assert sibling.running
        assert child.running is CELLS[restart, kind]
        assert tether.status(child).restarts == (1 if CELLS[restart, kind] else 0)
        assert tether.status(sibling).restarts == 0
        assert supervisor.running


async def test_restart_counts_show_in_status_and_the_status_tree() -> None:
    """Record.restarts counts each restart; tether.status and status_tree show the truth."""
    log = Log()
    child = Child("x", log)
    supervisor = tether.Supervisor([child], max_restarts=10)
    async with supervisor:
        for n in range(1, 4):
            child.exit_with("exception")
            await settle(supervisor, log, 1 + 2 * n)
            assert tether.status(child).restarts == n
        assert "Child  running" in tether.status_tree(supervisor)
        assert "restarts 3" in tether.status_tree(supervisor)


async def test_every_restart_is_published_and_logged_with_cause_and_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A RESTART event per restarted child carries the cause and the count; logs say both."""
    log = Log()
    a, b = Child("a", log), Child("b", log)
    supervisor = tether.Supervisor([a, b], strategy="rest_for_one", max_restarts=5)
    events: list[tether.LifecycleEvent] = []
    with tether.subscribe(events.append):
        async with supervisor:
            a.exit_with("exception")
            await settle(supervisor, log, 6)
    restarts = [e for e in events if e.kind is tether.EventKind.RESTART]
    assert [(e.service, e.count) for e in restarts] == [(a, 1), (b, 1)]
    assert isinstance(restarts[0].error, ValueError)
    assert restarts[0].detail == "ValueError: a failed"
    assert restarts[1].detail == "Child exited (ValueError: a failed); strategy rest_for_one"
    assert "Child restarted by Supervisor (restart 1): ValueError: a failed" in caplog.text


# ------------------------------------------------------------------- intensity


def test_escalation_on_exactly_the_n_plus_first_restart_within_the_window() -> None:
    """max_restarts=3 in 10 s: three restarts pass, the fourth within 10 s escalates."""

    async def main() -> tuple[list[float], float | None]:
        log = Log()
        child = Child("x", log)
        supervisor = tether.Supervisor([child], max_restarts=3, max_seconds=10)
        loop = asyncio.get_running_loop()
        restarted: list[float] = []
        gave_up = None
        try:
            async with supervisor:
                for at in (0.0, 3.0, 6.0, 9.0, 9.5):
                    await asyncio.sleep(at - loop.time())
                    child.exit_with("exception")
                    await settle(supervisor, log, len(log) + 1)
                    if not supervisor.running or supervisor.__dict__["_tether"].crash:
                        gave_up = loop.time()
                        break
                    restarted.append(loop.time())
                    assert tether.status(child).restarts == len(restarted)
        except tether.RestartIntensityError as exc:
            assert isinstance(exc.__cause__, ValueError)
            assert "4 restarts within 10s exceed max_restarts=3" in str(exc)
        return restarted, gave_up

    restarted, gave_up = run_virtual(main())
    assert restarted == [0.0, 3.0, 6.0]
    assert gave_up == 9.0


def test_evenly_spaced_crashes_within_the_intensity_never_escalate() -> None:
    """Crashes spaced just over max_seconds / max_restarts apart go on forever."""

    async def main() -> int:
        log = Log()
        child = Child("x", log)
        supervisor = tether.Supervisor([child], max_restarts=3, max_seconds=10)
        async with supervisor:
            for _ in range(50):
                await asyncio.sleep(10 / 3 + 0.01)
                child.exit_with("exception")
                await settle(supervisor, log, len(log) + 2)
                assert child.running
            return tether.status(child).restarts

    assert run_virtual(main()) == 50


def test_a_restart_exactly_max_seconds_ago_still_counts() -> None:
    """As OTP's add_restart keeps restarts at Now - Period or later, the edge is inside."""

    async def main() -> bool:
        log = Log()
        child = Child("x", log)
        supervisor = tether.Supervisor([child], max_restarts=2, max_seconds=10)
        try:
            async with supervisor:
                for _ in range(3):
                    child.exit_with("exception")
                    await settle(supervisor, log, len(log) + 1)
                    await asyncio.sleep(5)
        except tether.RestartIntensityError:
            return True
        return False

    assert run_virtual(main()) is True


def test_default_intensity_is_otps_one_restart_in_five_seconds() -> None:
    """Supervisor() defaults: max_restarts=1, max_seconds=5, one_for_one, no backoff."""
    supervisor = tether.Supervisor([])
    assert (supervisor.max_restarts, supervisor.max_seconds) == (1, 5.0)
    assert supervisor.strategy is Strategy.ONE_FOR_ONE
    assert supervisor.backoff is None


async def test_giving_up_stops_children_in_reverse_and_fails_the_root() -> None:
    """Intensity exhausted: every child stops, last first; wait() raises the error."""
    log = Log()
    children = [Child(str(i), log) for i in range(3)]
    supervisor = tether.Supervisor(children, max_restarts=0)
    with pytest.raises(tether.RestartIntensityError, match="max_restarts=0") as caught:
        async with supervisor:
            log.clear()
            children[1].exit_with("exception")
            await asyncio.wait_for(supervisor.wait(), 5)
    assert log == ["stop:2", "stop:1", "stop:0"]
    assert isinstance(caught.value.__cause__, ValueError)


# ---------------------------------------------------------- escalation to a parent


async def test_a_parent_restarts_a_permanent_child_supervisor_that_gave_up() -> None:
    """The failure escalates: the parent stops the child supervisor and starts it again."""
    log = Log()
    worker = Child("w", log)
    inner = tether.Supervisor([worker], max_restarts=0, name="inner")
    outer = tether.Supervisor([inner], max_restarts=5, name="outer")
    async with outer:
        log.clear()
        worker.exit_with("exception")
        await settle(outer, log, 2)
        for _ in range(200):
            if tether.status(inner).restarts:
                break
            await asyncio.sleep(0)
        assert log == ["stop:w", "start:w"]
        assert tether.status(inner).restarts == 1
        assert inner.running
        assert worker.running
        assert outer.running


async def test_a_transient_child_supervisor_that_gave_up_stays_down() -> None:
    """OTP: a supervisor that gives up exits with reason shutdown, normal for transient."""
    log = Log()
    worker = Child("w", log)
    inner = tether.Supervisor([worker], max_restarts=0, restart="transient", name="inner")
    other = Child("o", log)
    outer = tether.Supervisor([inner, other], max_restarts=5, name="outer")
    async with outer:
        log.clear()
        worker.exit_with("exception")
        for _ in range(200):
            if tether.status(inner).state is not tether.ServiceState.RUNNING:
                break
            await asyncio.sleep(0)
        assert not inner.running
        assert tether.status(inner).restarts == 0
        assert other.running
        assert log == ["stop:w"]


# -------------------------------------------------------------- the dependents rule


async def test_one_for_one_restarts_dependents_around_the_failed_child() -> None:
    """A child that depends on the failed one stops before it and starts after it."""
    log = Log()
    db = Child("db", log)
    api = Child("api", log, deps=[db])
    other = Child("other", log)
    supervisor = tether.Supervisor([db, api, other], max_restarts=5)
    async with supervisor:
        log.clear()
        db.exit_with("exception")
        await settle(supervisor, log, 4)
        assert log == ["stop:api", "stop:db", "start:db", "start:api"]
        assert tether.status(api).restarts == 1
        assert tether.status(other).restarts == 0


async def test_dependents_listed_first_still_stop_first() -> None:
    """Order follows what the engine starts first, not only the order listed."""
    log = Log()
    db = Child("db", log)
    api = Child("api", log, deps=[db])
    supervisor = tether.Supervisor([api, db], strategy="one_for_all", max_restarts=5)
    async with supervisor:
        assert log == ["start:db", "start:api"]
        log.clear()
        api.exit_with("exception")
        await settle(supervisor, log, 4)
        assert log == ["stop:api", "stop:db", "start:db", "start:api"]


async def test_dependents_through_a_service_of_their_own_are_restarted_too() -> None:
    """api -> cache -> db, only db and api are children: a db failure restarts all three."""
    log = Log()
    db = Child("db", log)
    cache = Child("cache", log, deps=[db])
    api = Child("api", log, deps=[cache])
    supervisor = tether.Supervisor([db, api], max_restarts=5)
    async with supervisor:
        log.clear()
        db.exit_with("exception")
        await settle(supervisor, log, 6)
        assert log == [
            "stop:api",
            "stop:cache",
            "stop:db",
            "start:db",
            "start:cache",
            "start:api",
        ]


async def test_a_child_that_stays_down_takes_its_dependents_down() -> None:
    """A transient db that stops normally stays down; api, needing it, stops too."""
    log = Log()
    db = Child("db", log, Restart.TRANSIENT)
    api = Child("api", log, deps=[db])
    other = Child("other", log)
    supervisor = tether.Supervisor([db, api, other], max_restarts=5)
    async with supervisor:
        log.clear()
        db.exit_with("normal")
        await settle(supervisor, log, 2)
        assert log == ["stop:api", "stop:db"]
        assert not api.running
        assert other.running


async def test_a_failing_dependent_restarts_alone() -> None:
    """Only dependents follow: a failure of api leaves db running."""
    log = Log()
    db = Child("db", log)
    api = Child("api", log, deps=[db])
    supervisor = tether.Supervisor([db, api], max_restarts=5)
    async with supervisor:
        log.clear()
        api.exit_with("exception")
        await settle(supervisor, log, 2)
        assert log == ["stop:api", "start:api"]


async def test_a_dependent_outside_the_supervisor_is_refused_when_it_starts() -> None:
    """A service outside that needs a child would keep a dead dependency: an error, rolled back."""
    log = Log()
    db = Child("db", log)
    supervisor = tether.Supervisor([db])
    reporter = Child("reporter", log, deps=[db])
    root = Child("root", log, deps=[supervisor, reporter])
    with pytest.raises(tether.DefinitionError, match=r"Child depend\(s\) on Child, a child of"):
        async with root:
            pass
    assert not db.running
    assert log == ["start:db", "stop:db"] or log[-1] == "stop:db"


# ------------------------------------------- dependents outside, attached later


class SlowStop(Child):
    """A child whose stop hook waits for ``gate`` (logging when it begins and ends)."""

    def __init__(self, label: str, log: Log, deps: Iterable[tether.ServiceBase] = ()) -> None:
        super().__init__(label, log, deps=deps)
        self.gate = asyncio.Event()

    async def stop(self) -> None:
        self.log.append(f"stop-begin:{self.label}")
        await self.gate.wait()
        self.log.append(f"stop-end:{self.label}")


def restarted_event(child: tether.ServiceBase) -> tuple[asyncio.Event, Any]:
    """An event set when ``child``'s RESTART is published, and its subscription."""
    done = asyncio.Event()

    def on_event(event: tether.LifecycleEvent) -> None:
        if event.kind is tether.EventKind.RESTART and event.service is child:
            done.set()

    return done, tether.subscribe(on_event)


def test_a_second_root_on_a_child_is_told_and_the_restart_waits_until_it_stops() -> None:
    """A root started later that needs a child: its wait() raises, then the child restarts.

    The supervisor does not stop the child under that root: it waits, without polling
    (no virtual time passes), until the root has let go, then restarts it.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        log = Log()
        db = Child("db", log)
        supervisor = tether.Supervisor([db], max_restarts=5)
        reporter = Child("reporter", log, deps=[db])
        restarted, subscription = restarted_event(db)
        with subscription:
            async with supervisor:
                async with reporter:
                    log.clear()
                    db.exit_with("exception")
                    with pytest.raises(ValueError, match="db failed"):
                        await asyncio.wait_for(reporter.wait(), 5)
                    await asyncio.sleep(1.234)  # the virtual clock moves only once all is idle
                    assert log == []
                    assert db.running
                    assert supervisor.running
                    stopped_at = loop.time()
                await asyncio.wait_for(restarted.wait(), 5)
                assert loop.time() == stopped_at
                assert log == ["stop:reporter", "stop:db", "start:db"]
                assert db.running
                assert tether.status(db).restarts == 1

    run_virtual(main())


def test_a_child_is_stopped_only_once_an_outside_dependent_finished_stopping() -> None:
    """The hold goes when the dependent's stop begins; the child waits for its stop hook."""

    async def main() -> None:
        log = Log()
        db = Child("db", log)
        supervisor = tether.Supervisor([db], max_restarts=5)
        reporter = SlowStop("reporter", log, deps=[db])
        restarted, subscription = restarted_event(db)
        with subscription:
            async with supervisor:
                await reporter.__aenter__()
                log.clear()
                db.exit_with("exception")
                with pytest.raises(ValueError, match="db failed"):
                    await asyncio.wait_for(reporter.wait(), 5)
                leaving = asyncio.create_task(reporter.__aexit__(None, None, None))
                await asyncio.sleep(1)  # idle: the reporter's stop hook waits for its gate
                assert log == ["stop-begin:reporter"]
                assert db.running
                reporter.gate.set()
                await asyncio.wait_for(restarted.wait(), 5)
                await leaving
                assert log == ["stop-begin:reporter", "stop-end:reporter", "stop:db", "start:db"]

    run_virtual(main())


def test_an_outside_dependent_that_never_lets_go_fails_the_supervisor_in_bounded_time() -> None:
    """After the child's graceful_shutdown_timeout, an error names what still holds it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        log = Log()
        db = Child("db", log)
        db.timeout = 2.0
        supervisor = tether.Supervisor([db], max_restarts=5, name="sup")
        reporter = Child("reporter", log, deps=[db])
        reporter.name = "reporter"
        async with supervisor:
            async with reporter:
                log.clear()
                db.exit_with("exception")
                with pytest.raises(ValueError, match="db failed"):
                    await asyncio.wait_for(reporter.wait(), 5)
                message = (
                    r"Supervisor\[sup\] cannot restart Child: Child\[reporter\], outside the "
                    r"supervisor, still depend\(s\) on it 2s after being told it exited"
                )
                with pytest.raises(tether.ServiceStateError, match=message):
                    await asyncio.wait_for(supervisor.wait(), 30)
                assert loop.time() == 2.0
                assert db.running  # never stopped under its dependent
                assert log == []
        assert log == ["stop:reporter", "stop:db"]

    run_virtual(main())


def test_an_outside_dependent_still_stopping_is_named_when_the_bound_passes() -> None:
    """A dependent that let go but whose stop hook hangs is reported as still stopping."""

    async def main() -> None:
        log = Log()
        db = Child("db", log)
        db.timeout = 3.0
        supervisor = tether.Supervisor([db], max_restarts=5)
        reporter = SlowStop("reporter", log, deps=[db])
        reporter.timeout = 60.0
        reporter.name = "slow"
        async with supervisor:
            await reporter.__aenter__()
            db.exit_with("exception")
            with pytest.raises(ValueError, match="db failed"):
                await asyncio.wait_for(reporter.wait(), 5)
            leaving = asyncio.create_task(reporter.__aexit__(None, None, None))
            with pytest.raises(
                tether.ServiceStateError,
                match=r"SlowStop\[slow\], outside the supervisor, is still stopping 3s",
            ):
                await asyncio.wait_for(supervisor.wait(), 30)
            reporter.gate.set()
            await leaving

    run_virtual(main())


# -------------------------------------------------------- simultaneous exits


async def crash_together(
    strategy: str, crashing: list[int], max_restarts: int = 5
) -> tuple[list[str], list[int], bool]:
    """Children 0, 1, 2 under ``strategy``; ``crashing`` fail in one loop iteration, in order.

    Returns the log, each child's restart count, and whether the supervisor gave up.
    """
    log = Log()
    children = [Child(str(i), log) for i in range(3)]
    supervisor = tether.Supervisor(children, strategy=strategy, max_restarts=max_restarts)
    gave_up = False
    try:
        async with supervisor:
            log.clear()
            for child in children:
                await asyncio.wait_for(child.listening.wait(), 5)
            for i in crashing:
                children[i].exit_with("exception")
            await settle(supervisor, log, 1)
            seen = list(log)
            restarts = [tether.status(c).restarts for c in children]
    except tether.RestartIntensityError:
        gave_up = True
        seen = list(log)
        restarts = [tether.status(c).restarts for c in children]
    return seen, restarts, gave_up


async def test_one_for_one_restarts_simultaneous_crashes_one_after_another() -> None:
    """OTP handles each EXIT in turn: two restarts, each counted."""
    log, restarts, gave_up = await crash_together("one_for_one", [0, 2])
    assert log == ["stop:0", "start:0", "stop:2", "start:2"]
    assert restarts == [1, 0, 1]
    assert not gave_up


async def test_one_for_one_counts_each_simultaneous_crash_in_the_intensity() -> None:
    """max_restarts=1: the second of two crashes at once is one restart too many."""
    log, _, gave_up = await crash_together("one_for_one", [0, 2], max_restarts=1)
    assert gave_up
    assert log == ["stop:0", "start:0", "stop:2", "stop:1", "stop:0"]


async def test_one_for_all_restarts_once_for_simultaneous_crashes() -> None:
    """The second crash is an exit of a run the first restart replaced: OTP ignores it."""
    log, restarts, gave_up = await crash_together("one_for_all", [0, 2], max_restarts=1)
    assert log == ["stop:2", "stop:1", "stop:0", "start:0", "start:1", "start:2"]
    assert restarts == [1, 1, 1]
    assert not gave_up


async def test_rest_for_one_simultaneous_crashes_in_the_order_heard() -> None:
    """0 then 2: one round covers both. 2 then 0: two rounds, as OTP's mailbox order gives."""
    log, restarts, _ = await crash_together("rest_for_one", [0, 2])
    assert log == ["stop:2", "stop:1", "stop:0", "start:0", "start:1", "start:2"]
    assert restarts == [1, 1, 1]
    log, restarts, _ = await crash_together("rest_for_one", [2, 0])
    assert log == [
        *("stop:2", "start:2"),
        *("stop:2", "stop:1", "stop:0", "start:0", "start:1", "start:2"),
    ]
    assert restarts == [1, 1, 2]


class CrashOnStop(Child):
    """A child whose stop hook makes another child crash (an exit heard mid-round)."""

    other: Child | None = None

    async def stop(self) -> None:
        await super().stop()
        other = self.other
        if other is not None and other.running:
            self.other = None
            other.exit_with("exception")
            await asyncio.sleep(0)  # its task crashes while this round goes on
            if other.__dict__["_tether"].exit_requested:
                self.log.append(f"crashed:{other.label}")


@pytest.mark.parametrize(
    ("strategy", "expected", "restarts"),
    [
        # 0 was not touched by 2's round: its exit is current, handled next.
        ("one_for_one", ["stop:2", "crashed:0", "start:2", "stop:0", "start:0"], [1, 0, 1]),
        # 0 was stopped and started again by 2's round: its exit is for the old run.
        (
            "one_for_all",
            ["stop:2", "crashed:0", "stop:1", "stop:0", "start:0", "start:1", "start:2"],
            [1, 1, 1],
        ),
    ],
)
async def test_an_exit_heard_during_a_round_counts_only_for_a_run_still_current(
    strategy: str, expected: list[str], restarts: list[int]
) -> None:
    """Child 2 crashes; while it is stopped, child 0 crashes too."""
    log = Log()
    first, middle = Child("0", log), Child("1", log)
    last = CrashOnStop("2", log)
    supervisor = tether.Supervisor([first, middle, last], strategy=strategy, max_restarts=5)
    async with supervisor:
        log.clear()
        last.other = first
        last.exit_with("exception")
        await settle(supervisor, log, len(expected))
        assert log == expected
        assert [tether.status(c).restarts for c in (first, middle, last)] == restarts
        assert all(c.running for c in (first, middle, last))


# -------------------------------------------------------------- failed restarts


async def test_a_start_that_fails_on_restart_counts_as_another_failure() -> None:
    """OTP retries a child whose restart failed, counting each attempt in the intensity."""
    log = Log()
    a, b = Child("a", log), Child("b", log)
    supervisor = tether.Supervisor([a, b], strategy="rest_for_one", max_restarts=3)
    async with supervisor:
        log.clear()
        a.fail_starts = 1
        a.exit_with("exception")
        await settle(supervisor, log, 5)
        assert log == ["stop:b", "stop:a", "start-failed:a", "start:a", "start:b"]
        assert tether.status(a).restarts == 1
        assert supervisor.running


async def test_restarts_that_keep_failing_to_start_exhaust_the_intensity() -> None:
    """A child that never starts again makes the supervisor give up, not loop."""
    log = Log()
    a = Child("a", log)
    supervisor = tether.Supervisor([a], max_restarts=2)
    with pytest.raises(tether.RestartIntensityError) as caught:
        async with supervisor:
            log.clear()
            a.fail_starts = 100
            a.exit_with("exception")
            await asyncio.wait_for(supervisor.wait(), 5)
    assert log == ["stop:a", "start-failed:a", "start-failed:a"]
    assert isinstance(caught.value.__cause__, RuntimeError)


# -------------------------------------------------------------------- backoff


def test_backoff_delays_restarts_exponentially_up_to_its_cap() -> None:
    """Delays 1, 2, 4, 4 s between failure and replacement, on a virtual clock."""

    async def main() -> list[float]:
        log = Log()
        child = Child("x", log)
        supervisor = tether.Supervisor(
            [child],
            max_restarts=10,
            max_seconds=100,
            backoff=tether.Backoff(initial=1, maximum=4, factor=2),
        )
        loop = asyncio.get_running_loop()
        delays: list[float] = []
        async with supervisor:
            for _ in range(4):
                failed_at = loop.time()
                child.exit_with("exception")
                for _ in range(1000):
                    await asyncio.sleep(0.01)
                    if child.running and tether.status(child).restarts > len(delays):
                        break
                delays.append(child.started_at - failed_at)
        return delays

    assert run_virtual(main()) == pytest.approx([1.0, 2.0, 4.0, 4.0], abs=1e-9)


def test_backoff_delay_formula() -> None:
    """initial * factor**(n-1), capped at maximum."""
    backoff = tether.Backoff(initial=0.5, maximum=3.0, factor=3.0)
    assert [backoff.delay(n) for n in range(1, 5)] == [0.5, 1.5, 3.0, 3.0]
    assert tether.Backoff(initial=1, maximum=2).delay(10_000) == 2.0


async def test_stopping_during_a_backoff_stops_at_once() -> None:
    """A long backoff never holds up a stop: the graph stops while the child is down."""
    log = Log()
    child = Child("x", log)
    supervisor = tether.Supervisor(
        [child], max_restarts=5, backoff=tether.Backoff(initial=3600, maximum=3600)
    )
    async with supervisor:
        log.clear()
        child.exit_with("exception")
        await settle(supervisor, log, 1)
    assert log == ["stop:x"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"strategy": "one_for_some"}, ValueError, "not a known strategy"),
        ({"strategy": 3}, TypeError, "takes a tether.Strategy"),
        ({"max_restarts": -1}, ValueError, "must be 0 or more"),
        ({"max_restarts": 1.5}, TypeError, "must be an int"),
        ({"max_seconds": 0}, ValueError, "positive, finite"),
        ({"backoff": 2.0}, TypeError, "tether.Backoff"),
        ({"restart": "sometimes"}, ValueError, "not a known restart"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad argument gets an error naming it."""
    with pytest.raises(error, match=message):
        tether.Supervisor([], **kwargs)


def test_children_must_be_services() -> None:
    """Not a service, a class, a nested list, a duplicate: each named with its position."""
    log = Log()
    child = Child("x", log)
    with pytest.raises(TypeError, match=r"children\[1\] is 'db' \(str\), not a service"):
        tether.Supervisor([child, "db"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"did you mean Child\(\)"):
        tether.Supervisor([Child])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="nested lists are not allowed"):
        tether.Supervisor([[child]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="listed twice"):
        tether.Supervisor([child, child])
    with pytest.raises(TypeError, match="takes a list of services"):
        tether.Supervisor(child)  # type: ignore[arg-type]


def test_a_restart_attribute_that_is_not_a_restart_type_is_refused() -> None:
    """A service with a `restart` of its own (say, a method) is told to rename it."""

    class Odd(tether.Service):
        def restart(self) -> None: ...

    with pytest.raises(tether.DefinitionError, match="rename it"):
        tether.Supervisor([Odd()])


def test_bad_backoff_is_refused() -> None:
    """Negative, infinite or inverted backoff values name the parameter."""
    with pytest.raises(ValueError, match="initial"):
        tether.Backoff(initial=-1)
    with pytest.raises(ValueError, match="factor"):
        tether.Backoff(factor=0.5)
    with pytest.raises(ValueError, match="smaller than initial"):
        tether.Backoff(initial=5, maximum=1)
    with pytest.raises(TypeError, match="maximum"):
        tether.Backoff(maximum="10")  # type: ignore[arg-type]


async def test_a_child_cannot_have_two_supervisors() -> None:
    """The second supervisor to start with a running, supervised child is refused."""
    log = Log()
    child = Child("x", log)
    first = tether.Supervisor([child], name="first")
    second = tether.Supervisor([child], name="second")
    async with first:
        with pytest.raises(tether.DefinitionError, match=r"supervised by Supervisor\[first\]"):
            async with second:
                pass
        assert child.running


# -------------------------------------------------------- unsupervised behaviour


async def test_without_a_supervisor_a_cancelled_task_is_not_an_exit() -> None:
    """Outside supervision nothing changes: a cancelled task leaves its service running."""
    log = Log()
    child = Child("x", log)
    async with child:
        child.exit_with("shutdown")
        for _ in range(10):
            await asyncio.sleep(0)
        assert child.running


# ------------------------------------------- stopping after restarts, and give-up causes


class SlowStopChild(Child):
    """A child whose stop suspends between its first and last line (overlaps would show)."""

    async def stop(self) -> None:
        self.log.append(f"stop-begin:{self.label}")
        for _ in range(3):
            await asyncio.sleep(0)
        self.log.append(f"stop:{self.label}")


def _stops(log: Log) -> list[str]:
    return [entry for entry in log if entry.startswith("stop")]


def _one_at_a_time_in_reverse(labels: list[str]) -> list[str]:
    return [
        entry for label in reversed(labels) for entry in (f"stop-begin:{label}", f"stop:{label}")
    ]


@pytest.mark.parametrize("restarted", [0, 1, 2])
@pytest.mark.parametrize("strategy", list(Strategy))
async def test_after_a_restart_stopping_runs_one_child_at_a_time_in_reverse_start_order(
    restarted: int, strategy: Strategy
) -> None:
    """OTP's rule holds after any restart: the supervisor stops its children last-started
    first, each one's stop done before the next begins (plain list order is the order)."""
    log = Log()
    labels = ["a", "b", "c"]
    children = [SlowStopChild(label, log) for label in labels]
    supervisor = tether.Supervisor(children, strategy=strategy, max_restarts=5)
    async with supervisor:
        children[restarted].exit_with("exception")
        await settle(supervisor, log, len(log) + 2)
        assert tether.status(children[restarted]).restarts == 1
        log.clear()
    assert _stops(log) == _one_at_a_time_in_reverse(labels)


async def test_after_several_restarts_stopping_still_follows_the_list() -> None:
    """Restarting the last child, then the first: the stop order is still c, b, a."""
    log = Log()
    labels = ["a", "b", "c"]
    children = [SlowStopChild(label, log) for label in labels]
    supervisor = tether.Supervisor(children, max_restarts=5)
    async with supervisor:
        for index in (2, 0, 1):
            children[index].exit_with("exception")
            await settle(supervisor, log, len(log) + 2)
        log.clear()
    assert _stops(log) == _one_at_a_time_in_reverse(labels)


async def test_after_a_restart_with_its_dependent_stopping_still_follows_the_list() -> None:
    """db restarts with api, which depends on it: the stop is still other, api, db, cache."""
    log = Log()
    cache = SlowStopChild("cache", log)
    db = SlowStopChild("db", log)
    api = SlowStopChild("api", log, deps=[db])
    other = SlowStopChild("other", log)
    supervisor = tether.Supervisor([cache, db, api, other], max_restarts=5)
    async with supervisor:
        db.exit_with("exception")
        await settle(supervisor, log, len(log) + 4)
        assert tether.status(api).restarts == 1
        log.clear()
    assert _stops(log) == _one_at_a_time_in_reverse(["cache", "db", "api", "other"])


async def test_a_nested_give_up_keeps_the_chain_to_the_first_failure() -> None:
    """outer gives up because inner gave up because w failed: the root error leads there."""
    log = Log()
    worker = Child("w", log)
    inner = tether.Supervisor([worker], max_restarts=0, name="inner")
    outer = tether.Supervisor([inner], max_restarts=0, name="outer")
    with pytest.raises(tether.RestartIntensityError) as caught:
        async with outer:
            worker.exit_with("exception")
            await asyncio.wait_for(outer.wait(), 5)
    error = caught.value
    assert "Supervisor[outer] gave up" in str(error)
    assert "Supervisor[inner] (it gave up" in str(error)
    assert "ValueError: w failed" in str(error)
    inner_error = error.__cause__
    assert isinstance(inner_error, tether.RestartIntensityError)
    assert "Supervisor[inner] gave up" in str(inner_error)
    assert isinstance(inner_error.__cause__, ValueError)
    assert str(inner_error.__cause__) == "w failed"


async def test_a_give_up_three_levels_deep_chains_every_level() -> None:
    """Each supervisor's error is caused by the one below, down to the child's exception."""
    log = Log()
    worker = Child("w", log)
    level3 = tether.Supervisor([worker], max_restarts=0, name="3")
    level2 = tether.Supervisor([level3], max_restarts=0, name="2")
    level1 = tether.Supervisor([level2], max_restarts=0, name="1")
    with pytest.raises(tether.RestartIntensityError) as caught:
        async with level1:
            worker.exit_with("exception")
            await asyncio.wait_for(level1.wait(), 5)
    chain: list[BaseException] = []
    current: BaseException | None = caught.value
    while current is not None:
        chain.append(current)
        current = current.__cause__
    assert [type(e).__name__ for e in chain] == [
        "RestartIntensityError",
        "RestartIntensityError",
        "RestartIntensityError",
        "ValueError",
    ]
    assert [str(e).split(" gave up")[0] for e in chain[:3]] == [
        "Supervisor[1]",
        "Supervisor[2]",
        "Supervisor[3]",
    ]

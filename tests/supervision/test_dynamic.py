"""Dynamic supervision: children added and removed while a supervisor runs.

OTP's `start_child`, `terminate_child`, `restart_child` and `delete_child`, and
Elixir's `DynamicSupervisor` (`max_children`, children that end are removed). The
property test runs random sequences of those calls and of child exits through a real
supervisor on a virtual clock and compares what it does with a reference model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import weakref
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tests.conftest import Log, bounded
from tests.supervision.test_supervise import Child, run_virtual, settle
from tether import Restart, Strategy


class Db(tether.Service):
    """A shared dependency, logging its start and stop."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("start:db")

    async def stop(self) -> None:
        self.log.append("stop:db")


class Session(tether.Service):
    """One per connection: built by the container, which injects the database."""

    restart = Restart.TEMPORARY

    def __init__(self, db: Db, peer: str = "?") -> None:
        self.db = db
        self.peer = peer

    async def start(self) -> None:
        self.db.log.append(f"start:{self.peer}")

    async def stop(self) -> None:
        self.db.log.append(f"stop:{self.peer}")


def labels(supervisor: tether.Supervisor) -> list[str]:
    return [getattr(child, "label", type(child).__name__) for child in supervisor.which_children()]


# ------------------------------------------------------------------ adding


async def test_start_child_starts_it_and_appends_it_to_the_children() -> None:
    """The child runs when start_child returns, listed after the children given."""
    log = Log()
    a = Child("a", log)
    supervisor = tether.Supervisor([a])
    async with supervisor:
        b = Child("b", log)
        assert await supervisor.start_child(b) is b
        assert b.running
        assert labels(supervisor) == ["a", "b"]
        assert log == ["start:a", "start:b"]
        assert "children=1+1" in repr(supervisor)


async def test_a_class_is_built_by_the_container_with_its_dependencies_injected() -> None:
    """The container builds a new child per call; keyword arguments fill parameters."""
    log = Log()
    container = tether.Container()
    container.add(log)
    db = container.get(Db)
    supervisor = tether.Supervisor([db], container=container)
    async with supervisor:
        first = await supervisor.start_child(Session, peer="p1")
        second = await supervisor.start_child(Session, peer="p2")
        assert first is not second
        assert first.db is db
        assert second.db is db
        assert tether.status(first).dependencies == (db,)
        assert log == ["start:db", "start:p1", "start:p2"]
    assert log[3:] == ["stop:p2", "stop:p1", "stop:db"]


async def test_a_class_without_a_container_is_refused_with_the_fix() -> None:
    """Nothing guesses a container: the error says to give one or pass an instance."""
    supervisor = tether.Supervisor()
    async with supervisor:
        with pytest.raises(TypeError, match=r"container=container.*Session\(\.\.\.\)"):
            await supervisor.start_child(Session)
        with pytest.raises(TypeError, match="keyword arguments only with a class"):
            await supervisor.start_child(Child("x", Log()), peer="p")  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="a service or a service class"):
            await supervisor.start_child(42)  # type: ignore[call-overload]


async def test_the_dependencies_a_child_needs_start_with_it() -> None:
    """A dependency that does not run yet is started by the child's start, and stopped after."""
    log = Log()
    db = Db(log)
    supervisor = tether.Supervisor()
    async with supervisor:
        await supervisor.start_child(Child("p", log, deps=[db]))
        assert log == ["start:db", "start:p"]
    assert log == ["start:db", "start:p", "stop:p", "stop:db"]


async def test_max_children_refuses_the_next_child_until_one_ends() -> None:
    """Elixir's max_children: MaxChildrenError, nothing started; room again once one ends."""
    log = Log()
    supervisor = tether.Supervisor(max_children=2)
    async with supervisor:
        first = await supervisor.start_child(Child("1", log, Restart.TEMPORARY))
        await supervisor.start_child(Child("2", log, Restart.TEMPORARY))
        extra = Child("3", log, Restart.TEMPORARY)
        with pytest.raises(tether.MaxChildrenError, match="max_children"):
            await supervisor.start_child(extra)
        assert not extra.running
        first.exit_with("normal")
        await settle(supervisor, log, 3)
        await supervisor.start_child(extra)
        assert labels(supervisor) == ["2", "3"]


async def test_concurrent_start_child_calls_take_turns_and_respect_max_children() -> None:
    """Calls made at once each start one child; past the bound they fail, none half-started."""
    log = Log()
    supervisor = tether.Supervisor(max_children=5)
    async with supervisor:
        children = [Child(str(i), log) for i in range(8)]
        results = await bounded(
            asyncio.gather(*(supervisor.start_child(c) for c in children), return_exceptions=True)
        )
        refused = [r for r in results if isinstance(r, tether.MaxChildrenError)]
        assert len(refused) == 3
        assert len(supervisor.which_children()) == 5
        assert sum(c.running for c in children) == 5


async def test_a_failing_start_raises_and_leaves_nothing_behind() -> None:
    """The child's exception is raised; what its start brought up is stopped; it is not added."""
    log = Log()
    db = Db(log)
    broken = Child("broken", log, deps=[db])
    broken.fail_starts = 1
    supervisor = tether.Supervisor()
    async with supervisor:
        with pytest.raises(RuntimeError, match="broken cannot start"):
            await supervisor.start_child(broken)
        assert supervisor.which_children() == []
        assert log == ["start:db", "start-failed:broken", "stop:db"]
        assert supervisor.running
        await supervisor.start_child(broken)  # and it can be given again
        assert broken.running


async def test_start_child_refuses_what_cannot_become_a_child() -> None:
    """A supervisor that does not run, a child twice, a running service, another's child."""
    log = Log()
    supervisor = tether.Supervisor()
    with pytest.raises(tether.ServiceStateError, match="needs a running supervisor"):
        await supervisor.start_child(Child("x", log))
    other_child = Child("o", log)
    async with tether.Supervisor([other_child]), supervisor:
        child = await supervisor.start_child(Child("x", log))
        with pytest.raises(tether.ServiceStateError, match=r"a child of .* already"):
            await supervisor.start_child(child)
        running = Child("r", log)
        async with running:
            with pytest.raises(tether.ServiceStateError, match="running already"):
                await supervisor.start_child(running)
        with pytest.raises(tether.DefinitionError, match="supervised by"):
            await supervisor.start_child(other_child)
    with pytest.raises(tether.ServiceStateError, match="needs a running supervisor"):
        await supervisor.start_child(Child("y", log))


class Spawner(Child):
    """Calls start_child from its start hook when restarted (the supervisor waits for it)."""

    supervisor: tether.Supervisor
    starts = 0

    async def start(self) -> None:
        await super().start()
        self.starts += 1
        if self.starts > 1:
            try:
                await self.supervisor.start_child(Child("late", self.log))
            except tether.ServiceStateError as exc:
                self.log.append(f"refused:{'wait for itself' in str(exc)}")


@pytest.mark.parametrize("suspend", [False, True])
async def test_start_child_from_a_hook_the_supervisor_waits_for_is_an_error_not_a_hang(
    suspend: bool,
) -> None:
    """A restart runs the child's start hook; calling start_child there would wait for itself.

    Whether the hook runs in the supervisor's task or, once it suspended, in a task of
    its own.
    """

    class Suspending(Spawner):
        async def start(self) -> None:
            await asyncio.sleep(0)
            await super().start()

    log = Log()
    spawner = (Suspending if suspend else Spawner)("s", log)
    supervisor = tether.Supervisor([spawner], max_restarts=5)
    spawner.supervisor = supervisor
    async with supervisor:
        log.clear()
        spawner.exit_with("exception")
        await settle(supervisor, log, 3)
        assert log == ["stop:s", "start:s", "refused:True"]
        assert labels(supervisor) == ["s"]


# ------------------------------------------------------------ order of stops


async def test_stopping_stops_added_children_first_last_added_first_one_at_a_time() -> None:
    """OTP's order: the added children in reverse, then the given ones in reverse."""
    log = Log()
    a, b = Child("a", log), Child("b", log)
    supervisor = tether.Supervisor([a, b])
    async with supervisor:
        for label in ("c", "d", "e"):
            await supervisor.start_child(Child(label, log))
        log.clear()
    assert log == ["stop:e", "stop:d", "stop:c", "stop:b", "stop:a"]


async def test_the_order_holds_after_children_were_removed_and_restarted() -> None:
    """Removing one links its neighbours; a restarted one keeps its place in the list."""
    log = Log()
    supervisor = tether.Supervisor([Child("a", log)], max_restarts=5)
    async with supervisor:
        added = [await supervisor.start_child(Child(label, log)) for label in "bcde"]
        await supervisor.terminate_child(added[1])  # c
        added[0].exit_with("exception")  # b restarts, in its place
        await settle(supervisor, log, 8)
        assert labels(supervisor) == ["a", "b", "d", "e"]
        log.clear()
    assert log == ["stop:e", "stop:d", "stop:b", "stop:a"]


async def test_a_dependent_of_the_supervisor_stops_before_its_added_children() -> None:
    """The supervisor depends on its added children: what needs it stops before them."""
    log = Log()
    supervisor = tether.Supervisor()
    app = Child("app", log, deps=[supervisor])
    async with app:
        await supervisor.start_child(Child("x", log))
        log.clear()
    assert log == ["stop:app", "stop:x"]


async def test_a_child_shared_with_another_root_outlives_the_supervisor() -> None:
    """An added child another root needs keeps running when the supervisor stops."""
    log = Log()
    supervisor = tether.Supervisor()
    child = Child("x", log)
    async with supervisor:
        await supervisor.start_child(child)
        user = Child("user", log, deps=[child])
        await user.__aenter__()
    assert child.running
    await user.__aexit__(None, None, None)
    assert not child.running


# ------------------------------------------------------- exits and restarts


@pytest.mark.parametrize(
    ("restart", "kind", "restarted"),
    [
        (Restart.PERMANENT, "exception", True),
        (Restart.PERMANENT, "normal", True),
        (Restart.TRANSIENT, "exception", True),
        (Restart.TRANSIENT, "normal", False),
        (Restart.TRANSIENT, "shutdown", False),
        (Restart.TEMPORARY, "exception", False),
        (Restart.TEMPORARY, "normal", False),
    ],
)
async def test_an_added_child_that_is_not_restarted_is_removed(
    restart: Restart, kind: str, restarted: bool
) -> None:
    """Restart types as for given children; one that stays down leaves the supervisor."""
    log = Log()
    supervisor = tether.Supervisor(max_restarts=5)
    async with supervisor:
        child = await supervisor.start_child(Child("x", log, restart))
        log.clear()
        child.exit_with(kind)
        expected = ["stop:x", "start:x"] if restarted else ["stop:x"]
        await settle(supervisor, log, len(expected))
        assert log == expected
        assert labels(supervisor) == (["x"] if restarted else [])
        assert tether.status(child).restarts == (1 if restarted else 0)


async def test_restart_intensity_counts_added_children_and_gives_up() -> None:
    """One restart too many stops every child in reverse and raises RestartIntensityError."""
    log = Log()
    supervisor = tether.Supervisor([Child("a", log)], max_restarts=1)
    with pytest.raises(tether.RestartIntensityError, match="x failed"):
        async with supervisor:
            child = await supervisor.start_child(Child("x", log))
            await supervisor.start_child(Child("y", log))
            log.clear()
            child.exit_with("exception")
            await settle(supervisor, log, 2)
            child.exit_with("exception")
            await bounded(supervisor.wait())
    assert log == ["stop:x", "start:x", "stop:y", "stop:x", "stop:a"]


async def test_one_for_all_restarts_added_children_too_and_drops_temporary_ones() -> None:
    """Every child restarts in order; a TEMPORARY one is stopped and removed (OTP)."""
    log = Log()
    a = Child("a", log)
    supervisor = tether.Supervisor([a], strategy=Strategy.ONE_FOR_ALL, max_restarts=5)
    async with supervisor:
        await supervisor.start_child(Child("t", log, Restart.TEMPORARY))
        await supervisor.start_child(Child("p", log))
        log.clear()
        a.exit_with("exception")
        await settle(supervisor, log, 5)
        assert log == ["stop:p", "stop:t", "stop:a", "start:a", "start:p"]
        assert labels(supervisor) == ["a", "p"]


async def test_rest_for_one_restarts_the_children_added_after_the_failed_one() -> None:
    """A given child's failure takes every added child with it; an added one's, those after."""
    log = Log()
    a = Child("a", log)
    supervisor = tether.Supervisor([a], strategy="rest_for_one", max_restarts=5)
    async with supervisor:
        b = await supervisor.start_child(Child("b", log))
        await supervisor.start_child(Child("c", log))
        log.clear()
        b.exit_with("exception")
        await settle(supervisor, log, 4)
        assert log == ["stop:c", "stop:b", "start:b", "start:c"]


async def test_an_added_child_that_depends_on_a_failed_one_restarts_around_it() -> None:
    """Dependents follow, found from who holds the failed child, whatever the strategy."""
    log = Log()
    db = Child("db", log)
    supervisor = tether.Supervisor([db], max_restarts=5)
    async with supervisor:
        await supervisor.start_child(Child("api", log, deps=[db]))
        await supervisor.start_child(Child("other", log))
        log.clear()
        db.exit_with("exception")
        await settle(supervisor, log, 4)
        assert log == ["stop:api", "stop:db", "start:db", "start:api"]


async def test_added_children_that_need_a_child_left_down_are_removed() -> None:
    """A transient db stops normally and stays down: the sessions needing it go for good."""
    log = Log()
    db = Child("db", log, Restart.TRANSIENT)
    supervisor = tether.Supervisor([db], max_restarts=5)
    async with supervisor:
        await supervisor.start_child(Child("s", log, deps=[db]))
        log.clear()
        db.exit_with("normal")
        await settle(supervisor, log, 2)
        assert log == ["stop:s", "stop:db"]
        assert labels(supervisor) == ["db"]


# ------------------------------------------- terminate, restart, delete


async def test_terminate_child_removes_an_added_child() -> None:
    """It stops, and leaves the supervisor (Elixir's DynamicSupervisor.terminate_child)."""
    log = Log()
    supervisor = tether.Supervisor()
    async with supervisor:
        child = await supervisor.start_child(Child("x", log))
        await supervisor.terminate_child(child)
        assert not child.running
        assert supervisor.which_children() == []
        with pytest.raises(tether.ServiceStateError, match="not a child"):
            await supervisor.terminate_child(child)


async def test_a_given_child_terminated_stays_listed_until_restarted_or_deleted() -> None:
    """OTP: terminate keeps the child; restart_child starts it; delete_child removes it."""
    log = Log()
    a, b = Child("a", log), Child("b", log)
    supervisor = tether.Supervisor([a, b])
    async with supervisor:
        await supervisor.terminate_child(a)
        assert labels(supervisor) == ["a", "b"]
        assert not a.running
        with pytest.raises(tether.ServiceStateError, match="only a child that is down"):
            await supervisor.restart_child(b)
        with pytest.raises(tether.ServiceStateError, match="terminate_child it first"):
            await supervisor.delete_child(b)
        await supervisor.restart_child(a)
        assert a.running
        assert tether.status(a).restarts == 0
        await supervisor.terminate_child(a)
        await supervisor.delete_child(a)
        assert labels(supervisor) == ["b"]
    assert log == ["start:a", "start:b", "stop:a", "start:a", "stop:a", "stop:b"]
    async with supervisor:  # a given child comes back when the supervisor starts again
        assert labels(supervisor) == ["a", "b"]


async def test_terminate_child_stops_the_children_that_depend_on_it_first() -> None:
    """A child must not outlive what it needs: its dependents stop before it."""
    log = Log()
    db = Child("db", log)
    supervisor = tether.Supervisor([db])
    async with supervisor:
        await supervisor.start_child(Child("s1", log, deps=[db]))
        await supervisor.start_child(Child("s2", log, deps=[db]))
        log.clear()
        await supervisor.terminate_child(db)
        assert log == ["stop:s2", "stop:s1", "stop:db"]
        assert labels(supervisor) == ["db"]


async def test_a_child_that_needs_a_terminated_child_is_refused_until_it_runs() -> None:
    """It would start that child unsupervised: refused, nothing left running."""
    log = Log()
    db = Child("db", log)
    supervisor = tether.Supervisor([db])
    async with supervisor:
        await supervisor.terminate_child(db)
        session = Child("s", log, deps=[db])
        with pytest.raises(tether.ServiceStateError, match=r"needs Child.*restart_child"):
            await supervisor.start_child(session)
        assert not db.running
        assert not session.running
        await supervisor.restart_child(db)
        await supervisor.start_child(session)
        assert session.running


async def test_a_removed_child_is_not_kept_alive_by_the_supervisor() -> None:
    """Nothing of the supervisor refers to a child once it left (no edge, no list entry)."""
    log = Log()
    supervisor = tether.Supervisor([Child("a", log)])
    async with supervisor:
        kept = await supervisor.start_child(Child("first", log))
        middle = await supervisor.start_child(Child("middle", log))
        await supervisor.start_child(Child("last", log))
        gone = weakref.ref(middle)
        await supervisor.terminate_child(middle)
        del middle
        gc.collect()
        assert gone() is None
        assert kept.running


# -------------------------------------------------------------- visibility


async def test_added_children_show_in_the_status_tree_and_reload() -> None:
    """They are dependencies of the supervisor: pictures show them, reload reaches them."""
    reloaded: list[str] = []

    class Reloading(Child):
        async def on_reload(self) -> None:
            reloaded.append(self.label)

    log = Log()
    supervisor = tether.Supervisor()
    async with supervisor:
        await supervisor.start_child(Reloading("x", log))
        assert "Reloading  running" in tether.status_tree(supervisor)
        await tether.reload(supervisor)
        assert reloaded == ["x"]


async def test_a_parent_restart_brings_the_supervisor_back_with_its_given_children_only() -> None:
    """OTP: children added at run time belong to that run of the supervisor."""
    log = Log()
    a = Child("a", log)
    inner = tether.Supervisor([a], max_restarts=0)
    outer = tether.Supervisor([inner], max_restarts=5)
    async with outer:
        await inner.start_child(Child("x", log))
        log.clear()
        a.exit_with("exception")  # inner gives up; outer restarts it
        await settle(outer, log, 3)
        assert labels(inner) == ["a"]
        assert log == ["stop:x", "stop:a", "start:a"]


# ------------------------------------------------------- the OTP reference


@dataclasses.dataclass
class Entry:
    label: str
    restart: Restart
    dynamic: bool
    running: bool = True
    run: int = 0
    removed: bool = False  # a TEMPORARY child given to the supervisor, down: not started again


@dataclasses.dataclass
class Outcome:
    log: list[str]
    escalated: bool


Step = tuple[Any, ...]
"""("add", restart) | ("terminate", i) | ("restart", i) | ("delete", i) | ("exits", batch)."""


def dynamic_model(
    given: list[Restart],
    strategy: Strategy,
    intensity: int,
    period: float,
    steps: list[tuple[float, Step]],
) -> Outcome:
    """What the supervisor should do: OTP's rules, and Elixir's removal of ended children.

    Children given to the supervisor behave as in an OTP supervisor (terminate keeps
    them, restart and delete apply); children added with start_child are removed as
    soon as they are down for good (an exit not restarted, a terminate, a TEMPORARY one
    stopped by a strategy), as in a DynamicSupervisor. Indices pick children in the
    current list, modulo its length.
    """
    entries = [Entry(str(i), restart, dynamic=False) for i, restart in enumerate(given)]
    log: list[str] = []
    restarts: list[float] = []
    added = 0

    def down(entry: Entry) -> None:
        entry.running = False
        if entry.dynamic:
            entries.remove(entry)
        elif entry.restart is Restart.TEMPORARY:
            entry.removed = True

    for now, step in steps:
        kind = step[0]
        if kind == "add":
            entry = Entry(f"d{added}", step[1], dynamic=True)
            added += 1
            entries.append(entry)
            log.append(f"start:{entry.label}")
            continue
        if not entries:
            continue
        if kind in ("terminate", "restart", "delete"):
            entry = entries[step[1] % len(entries)]
            if kind == "terminate":
                if entry.running:
                    log.append(f"stop:{entry.label}")
                down(entry)
            elif kind == "restart" and not entry.running:
                log.append(f"start:{entry.label}")
                entry.running, entry.removed = True, False
                entry.run += 1
            elif kind == "delete" and not entry.running:
                entries.remove(entry)
            continue
        picked = list({id(e): e for e in (entries[i % len(entries)] for i, _ in step[1])}.values())
        kinds = {id(entries[i % len(entries)]): k for i, k in reversed(step[1])}
        mailbox = [(e, kinds[id(e)], e.run) for e in picked if e.running]
        for entry, exit_kind, run in mailbox:
            if not entry.running or entry.run != run or entry not in entries:
                continue
            restart = entry.restart is Restart.PERMANENT or (
                entry.restart is Restart.TRANSIENT and exit_kind == "exception"
            )
            if not restart:
                log.append(f"stop:{entry.label}")
                down(entry)
                continue
            restarts = [t for t in restarts if t >= now - period] + [now]
            if len(restarts) > intensity:
                log.extend(f"stop:{e.label}" for e in reversed(entries) if e.running)
                return Outcome(log, escalated=True)
            if strategy is Strategy.ONE_FOR_ONE:
                group = [entry]
            elif strategy is Strategy.ONE_FOR_ALL:
                group = list(entries)
            else:
                group = entries[entries.index(entry) :]
            for other in reversed(group):
                if other.running:
                    log.append(f"stop:{other.label}")
                    other.running = False
                if other.restart is Restart.TEMPORARY:
                    down(other)
            for other in group:
                if other in entries and not other.removed:
                    log.append(f"start:{other.label}")
                    other.running = True
                    other.run += 1
    return Outcome(log, escalated=False)


async def observe(
    given: list[Restart],
    strategy: Strategy,
    intensity: int,
    period: float,
    steps: list[tuple[float, Step]],
) -> Outcome:
    """Run the same steps through a real supervisor and record what it does."""
    log = Log()
    children = [Child(str(i), log, restart) for i, restart in enumerate(given)]
    supervisor = tether.Supervisor(
        children, strategy=strategy, max_restarts=intensity, max_seconds=period
    )
    loop = asyncio.get_running_loop()
    added = 0
    escalated = False
    try:
        async with supervisor:
            log.clear()
            for at, step in steps:
                await asyncio.sleep(max(0.0, at - loop.time()))
                kind = step[0]
                current: list[Any] = supervisor.which_children()
                if kind == "add":
                    await supervisor.start_child(Child(f"d{added}", log, step[1]))
                    added += 1
                    continue
                if not current:
                    continue
                if kind in ("terminate", "restart", "delete"):
                    child = current[step[1] % len(current)]
                    if kind == "terminate":
                        await supervisor.terminate_child(child)
                    elif kind == "restart" and not child.running:
                        await supervisor.restart_child(child)
                    elif kind == "delete" and not child.running:
                        await supervisor.delete_child(child)
                    continue
                exiting: dict[int, tuple[Child, str]] = {}
                for i, exit_kind in step[1]:
                    child = current[i % len(current)]
                    if child.running and id(child) not in exiting:
                        exiting[id(child)] = (child, exit_kind)
                if not exiting:
                    continue
                for child, _ in exiting.values():
                    await asyncio.wait_for(child.listening.wait(), 5)
                before = len(log)
                for child, exit_kind in exiting.values():
                    child.exit_with(exit_kind)
                await settle(supervisor, log, before + 1)
                if supervisor.__dict__["_tether"].crash is not None:
                    break
            done = len(log)
    except tether.RestartIntensityError:
        escalated = True
        done = len(log)
    return Outcome(log[:done], escalated)


@st.composite
def dynamic_scenarios(draw: st.DrawFn, strategy: Strategy) -> tuple[Any, ...]:
    given = draw(st.lists(st.sampled_from(list(Restart)), min_size=0, max_size=3))
    intensity = draw(st.integers(0, 6))
    period = draw(st.sampled_from([1.0, 3.0, 5.0, 10.0]))
    exit_ = st.tuples(st.integers(0, 7), st.sampled_from(("exception", "normal", "shutdown")))
    step = st.one_of(
        st.tuples(st.just("add"), st.sampled_from(list(Restart))),
        st.tuples(st.sampled_from(("terminate", "restart", "delete")), st.integers(0, 7)),
        st.tuples(st.just("exits"), st.lists(exit_, min_size=1, max_size=3)),
    )
    timed = st.lists(
        st.tuples(st.sampled_from([0.0, 0.5, 2.0, 5.0]), step), min_size=1, max_size=14
    )
    now = 0.0
    steps = []
    for delay, one in draw(timed):
        now += delay
        steps.append((now, one))
    return given, strategy, intensity, period, steps


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("strategy", list(Strategy))
def test_random_calls_and_exits_match_the_reference(strategy: Strategy) -> None:
    """Random start/terminate/restart/delete calls and exits give the model's stops and starts."""

    @PROPERTY
    @given(dynamic_scenarios(strategy))
    def check(scenario: tuple[Any, ...]) -> None:
        expected = dynamic_model(*scenario)
        observed = run_virtual(observe(*scenario))
        assert observed == expected

    check()

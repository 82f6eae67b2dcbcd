"""The order of stops under dynamic supervision, on random shapes.

A supervisor is given up to three children, then random calls add children (each with
a tree of services only it uses, and services shared with other children, given or
added), terminate, restart and delete them, and children exit on their own; one added
child may be a supervisor with children of its own. Then the supervisor stops (in some
examples after a given child crashed, restarting its siblings or making the supervisor
give up). Every hook journals when it begins and ends, suspending a random number of
times in between. The checks are the documented order, on every example:

* every service that started stopped exactly once per run; nothing runs at the end;
* a service starts only once its dependencies run, and begins to stop only once
  everything running that depends on it has stopped (a shared service outlives its
  last user);
* the added children present when the supervisor stops stop the last added first, one
  at a time, each with all it brought up for itself (its own services, or the children
  of an added supervisor) before the one added before it begins;
* then the given children, in reverse, each with its own services first.

``TETHER_PROPERTY_EXAMPLES`` sets how many examples the test runs (default 100).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tests.conftest import Log, bounded
from tests.supervision.test_supervise import Child, run_virtual
from tether import Restart, Strategy

EXAMPLES = int(os.environ.get("TETHER_PROPERTY_EXAMPLES", "100"))
POOL = 3  # services shared between children


# ------------------------------------------------------------------- services


class Marked(Child):
    """A child (or a service of one) that journals the begin and end of its hooks.

    Each hook suspends `suspends` times between the two marks.
    """

    def __init__(
        self,
        label: str,
        log: Log,
        restart: Restart = Restart.PERMANENT,
        deps: Iterable[tether.ServiceBase] = (),
        suspends: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__(label, log, restart, deps)
        self.suspends = suspends

    async def start(self) -> None:
        self.log.append(f"start-begin:{self.label}")
        for _ in range(self.suspends[0]):
            await asyncio.sleep(0)
        await super().start()  # journals start:label, the end of the start

    async def stop(self) -> None:
        self.log.append(f"stop-begin:{self.label}")
        for _ in range(self.suspends[1]):
            await asyncio.sleep(0)
        await super().stop()  # journals stop:label, the end of the stop


class MarkedSupervisor(tether.Supervisor):
    """A supervisor that journals its own hooks as `Marked` does."""

    label: str
    log: Log

    async def start(self) -> None:
        self.log.append(f"start-begin:{self.label}")
        await super().start()
        self.log.append(f"start:{self.label}")

    async def stop(self) -> None:
        self.log.append(f"stop-begin:{self.label}")
        await super().stop()
        self.log.append(f"stop:{self.label}")


def marked_supervisor(label: str, log: Log, children: list[Marked], **options: Any) -> Any:
    supervisor = MarkedSupervisor(children, max_restarts=1000, **options)
    supervisor.label = label
    supervisor.log = log
    return supervisor


# -------------------------------------------------------------------- shapes


@dataclasses.dataclass(frozen=True)
class Own:
    """A service only its owner uses, with services of its own (and shared ones)."""

    suspends: tuple[int, int]
    shared: tuple[int, ...]
    own: tuple[Own, ...]


@dataclasses.dataclass(frozen=True)
class Spec:
    """A child: restart type, hooks, its own services, shared ones, given children it needs.

    `inner` makes it a supervisor with those children (then `own` and `shared` are
    unused).
    """

    restart: Restart
    suspends: tuple[int, int]
    own: tuple[Own, ...]
    shared: tuple[int, ...]
    needs: tuple[int, ...] = ()
    inner: tuple[Spec, ...] | None = None


suspends = st.tuples(st.integers(0, 3), st.integers(0, 3))
shared = st.lists(st.integers(0, POOL - 1), max_size=2, unique=True).map(tuple)
leaf = st.builds(Own, suspends, shared, st.just(()))
own = st.lists(
    st.builds(Own, suspends, shared, st.lists(leaf, max_size=2).map(tuple)), max_size=2
).map(tuple)
unshared = st.lists(
    st.builds(
        Own,
        suspends,
        st.just(()),
        st.lists(st.builds(Own, suspends, st.just(()), st.just(())), max_size=2).map(tuple),
    ),
    max_size=2,
).map(tuple)
restarts = st.sampled_from(list(Restart))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    given_count = draw(st.integers(0, 3))
    given = [
        draw(st.builds(Spec, restarts, suspends, own.map(lambda o: o[:1]), shared))
        for _ in range(given_count)
    ]
    needs = st.lists(st.integers(0, 2), max_size=1).map(tuple) if given_count else st.just(())
    added = st.builds(Spec, restarts, suspends, own, shared, needs)
    nested = st.builds(
        Spec,
        restarts,
        st.just((0, 0)),
        st.just(()),
        st.just(()),
        st.just(()),
        st.lists(
            st.builds(Spec, restarts, suspends, own.map(lambda o: o[:1]), shared),
            min_size=1,
            max_size=2,
        ).map(tuple),
    )
    index = st.integers(0, 7)
    kinds = st.sampled_from(("normal", "exception"))
    step = st.one_of(
        st.tuples(st.just("add"), added),
        st.tuples(st.sampled_from(("terminate", "restart", "delete")), index),
        st.tuples(st.just("exit"), index, kinds),
        # Left out: a child added to the inner supervisor sharing a service with an
        # outer child's own services stops before the inner supervisor does (see the
        # xfail test in test_dynamic_races.py, ..._shares_with_an_outer_child...).
        st.tuples(st.just("inner-add"), st.builds(Spec, restarts, suspends, unshared, st.just(()))),
        st.tuples(st.just("inner-exit"), index, kinds),
    )
    steps = draw(st.lists(step, max_size=12))
    if draw(st.booleans()):  # one added child is a supervisor, at a random point
        steps.insert(draw(st.integers(0, len(steps))), ("add", draw(nested)))
    ending = draw(st.sampled_from(("stop", "crash", "give-up")) if given_count else st.just("stop"))
    return {
        "strategy": draw(st.sampled_from(list(Strategy))),
        "pool": [draw(suspends) for _ in range(POOL)],
        "given": given,
        "steps": steps,
        "ending": (ending, draw(st.integers(0, 2))),
    }


# ------------------------------------------------------------------- running


class World:
    """The services of one example, what each depends on, and what each brought up."""

    def __init__(self, log: Log, pool: list[tuple[int, int]]) -> None:
        self.log = log
        self.services: dict[str, tether.ServiceBase] = {}
        self.owned: dict[str, set[str]] = {}  # a child -> the services only it uses
        self.pool = [self.marked(f"s{i}", Restart.PERMANENT, (), s) for i, s in enumerate(pool)]
        self.shared = {f"s{i}" for i in range(len(pool))}
        self.added = 0

    def marked(
        self, label: str, restart: Restart, deps: Iterable[Any], suspends: tuple[int, int]
    ) -> Marked:
        service = Marked(label, self.log, restart, deps, suspends)
        self.services[label] = service
        return service

    def own(self, label: str, shapes: tuple[Own, ...], into: set[str]) -> list[Marked]:
        made = []
        for i, shape in enumerate(shapes):
            name = f"{label}.p{i}"
            deps = [*self.own(name, shape.own, into), *(self.pool[j] for j in shape.shared)]
            made.append(self.marked(name, Restart.PERMANENT, deps, shape.suspends))
            into.add(name)
        return made

    def child(self, label: str, spec: Spec, needs: Iterable[Any] = ()) -> Any:
        mine: set[str] = set()
        self.owned[label] = mine
        if spec.inner is not None:
            inner = [self.child(f"{label}.n{i}", s) for i, s in enumerate(spec.inner)]
            for i in range(len(inner)):
                mine |= {f"{label}.n{i}"} | self.owned[f"{label}.n{i}"]
            supervisor = marked_supervisor(label, self.log, inner, restart=spec.restart)
            self.services[label] = supervisor
            return supervisor
        deps = [
            *self.own(label, spec.own, mine),
            *(self.pool[j] for j in spec.shared),
            *needs,
        ]
        return self.marked(label, spec.restart, deps, spec.suspends)

    def uses_pool(self, label: str) -> bool:
        """Whether `label` or one of its own services depends on a shared one."""
        return any(
            dep in self.shared
            for name in {label} | self.owned[label]
            for dep in self.dependencies(name)
        )

    def next_label(self) -> str:
        self.added += 1
        return f"d{self.added - 1}"

    def dependencies(self, label: str) -> list[str]:
        """What `label` depends on (for a child service; not a supervisor's children)."""
        service = self.services[label]
        if isinstance(service, tether.Supervisor):
            return []
        assert isinstance(service, Marked)
        return [dep.label for dep in service.deps]  # type: ignore[attr-defined]


def idle(supervisor: tether.Supervisor) -> bool:
    rec = supervisor.__dict__["_tether"]
    wake = supervisor._wake
    return not supervisor._pending and rec.op is None and not (wake and wake.is_set())


async def settle(supervisors: list[tether.Supervisor]) -> None:
    """Let the supervisors react until each has been idle for a while (loop turns only)."""
    quiet = 0
    for _ in range(20_000):
        if all(idle(s) for s in supervisors if s.running):
            quiet += 1
            if quiet >= 40:
                return
        else:
            quiet = 0
        await asyncio.sleep(0)
    raise AssertionError("the supervisors did not settle")


@dataclasses.dataclass
class Run:
    log: Log
    world: World
    root: tether.Supervisor
    final: int  # where the final stop begins in the log
    present: dict[str, list[str]]  # a supervisor -> its children when the final stop began
    given: dict[str, list[str]]  # a supervisor -> the children it was given
    stopped_normally: bool
    nested: list[str]


def label_of(service: object) -> str:
    label = getattr(service, "label", None)
    assert isinstance(label, str)
    return label


def labels(supervisor: tether.Supervisor) -> list[str]:
    return [label_of(child) for child in supervisor.which_children()]


async def tell(child: Any, kind: str) -> None:
    """Make `child` exit on its own, as `kind` says, if it runs and listens."""
    if isinstance(child, tether.Supervisor):
        child.request_stop()
        return
    if not child.running or child.command is None or child.command.done():
        return
    await bounded(child.listening.wait())
    child.exit_with(kind)


async def drive(scenario: dict[str, Any]) -> Run:
    log = Log()
    world = World(log, scenario["pool"])
    given = [world.child(f"g{i}", spec) for i, spec in enumerate(scenario["given"])]
    root = marked_supervisor("root", log, given, strategy=scenario["strategy"])
    world.services["root"] = root
    nested: list[tether.Supervisor] = []
    present: dict[str, list[str]] = {}
    final = 0
    stopped_normally = True
    try:
        async with root:
            for step in scenario["steps"]:
                kind = step[0]
                current: list[Any] = root.which_children()
                inner = nested[0] if nested and nested[0].running else None
                if kind == "add":
                    spec: Spec = step[1]
                    if spec.inner is not None and nested:
                        continue  # one added supervisor at most
                    needs = [given[i % len(given)] for i in spec.needs] if given else []
                    if not all(n.running for n in needs):
                        # Left out: start_child refusing a child that needs a terminated
                        # one starts and stops that one, which cuts the stop order of the
                        # given children around it (see the xfail test in
                        # test_dynamic_races.py, a_refused_start_child...).
                        continue
                    child = world.child(world.next_label(), spec, needs)
                    if spec.inner is not None:
                        nested.append(child)
                    await bounded(root.start_child(child))
                elif kind == "inner-add" and inner is not None:
                    label = f"{label_of(inner)}.x{world.next_label()}"
                    child = world.child(label, step[1])
                    world.owned[label_of(inner)] |= {label} | world.owned[label]
                    await bounded(inner.start_child(child))
                elif kind == "inner-exit" and inner is not None and inner.which_children():
                    children = inner.which_children()
                    await tell(children[step[1] % len(children)], step[2])
                elif kind == "exit" and current:
                    await tell(current[step[1] % len(current)], step[2])
                elif kind in ("terminate", "restart", "delete") and current:
                    child = current[step[1] % len(current)]
                    if kind == "terminate":
                        if child in given and world.uses_pool(label_of(child)):
                            # Left out (open): a shared service that stops with a given
                            # child terminated and comes back with an added child is
                            # taken as that child's own, and the stop order breaks
                            # around it (see the report of this test's commit).
                            continue
                        await bounded(root.terminate_child(child))
                    elif not child.running:
                        if kind == "restart":
                            await bounded(root.restart_child(child))
                        else:
                            await bounded(root.delete_child(child))
                await settle([root, *nested])
            ending, which = scenario["ending"]
            crashing = given[which % len(given)] if given else None
            if (
                ending == "give-up"
                and crashing is not None
                and crashing.running
                and crashing.restart is not Restart.TEMPORARY  # one it would restart
            ):
                # The supervisor stops its children itself, in the same order.
                root.max_restarts = 0
                stopped_normally = False
            elif ending == "crash" and crashing is not None:
                await tell(crashing, "exception")
                await settle([root, *nested])
            present = {label_of(s): labels(s) for s in [root, *nested] if s.running}
            final = len(log)
            if not stopped_normally:
                await tell(crashing, "exception")
                await bounded(root.wait())
    except tether.RestartIntensityError:
        assert not stopped_normally
    given_to = {label_of(s): [label_of(c) for c in s.children] for s in [root, *nested]}
    return Run(
        log, world, root, final, present, given_to, stopped_normally, [label_of(s) for s in nested]
    )


# ------------------------------------------------------------------- checking


def runs(log: Log) -> dict[str, list[tuple[int, int, int, int]]]:
    """Each service's runs: (start-begin, start-end, stop-begin, stop-end) indices.

    Asserts the marks alternate: started and stopped exactly once per run.
    """
    marks: dict[str, list[tuple[str, int]]] = {}
    for index, entry in enumerate(log):
        kind, label = entry.split(":", 1)
        marks.setdefault(label, []).append((kind, index))
    found: dict[str, list[tuple[int, int, int, int]]] = {}
    cycle = ["start-begin", "start", "stop-begin", "stop"]
    for label, seen in marks.items():
        kinds = [kind for kind, _ in seen]
        assert len(kinds) % 4 == 0, (label, kinds)
        assert kinds == cycle * (len(kinds) // 4), (label, kinds)
        at = [index for _, index in seen]
        found[label] = [tuple(at[i : i + 4]) for i in range(0, len(at), 4)]  # type: ignore[misc]
    return found


def up_at(intervals: list[tuple[int, int, int, int]], index: int) -> bool:
    """Whether a run (from its start's begin to its stop's end) covers `index`."""
    return any(run[0] < index < run[3] for run in intervals)


def check_dependencies(run: Run, spans: dict[str, list[tuple[int, int, int, int]]]) -> None:
    """Starts after the dependencies are up; stops after every dependent is down."""
    world = run.world
    dependents: dict[str, list[str]] = {}
    for label in spans:
        for dep in world.dependencies(label):
            dependents.setdefault(dep, []).append(label)
    for label, intervals in spans.items():
        for begin, _, _, _ in intervals:
            for dep in world.dependencies(label):
                assert any(r[1] < begin < r[3] for r in spans.get(dep, [])), (
                    f"{label} began to start while its dependency {dep} was not up"
                )
        for _, _, stop_begin, _ in intervals:
            for user in dependents.get(label, []):
                what = "shared service" if label in world.shared else "service"
                assert not up_at(spans[user], stop_begin), (
                    f"the {what} {label} began to stop while {user}, which needs it, was up"
                )


def last_end(
    spans: dict[str, list[tuple[int, int, int, int]]], labels: set[str], after: int
) -> int:
    """The last end of a stop among `labels` at or after `after` (-1: none)."""
    ends = [r[3] for label in labels for r in spans.get(label, []) if r[3] >= after]
    return max(ends, default=-1)


def stop_begin(spans: dict[str, list[tuple[int, int, int, int]]], label: str, after: int) -> int:
    begins = [r[2] for r in spans.get(label, []) if r[2] >= after]
    assert len(begins) == 1, f"{label} stopped {len(begins)} times in the final stop"
    return begins[0]


def check_final_order(
    run: Run, spans: dict[str, list[tuple[int, int, int, int]]], sup: str
) -> None:
    """The final stop of `sup`: added children last first, then given ones, each with its own."""
    world, final = run.world, run.final
    given = [label for label in run.present[sup] if label in run.given[sup]]
    added = [label for label in run.present[sup] if label not in run.given[sup]]

    def stopping(label: str) -> bool:  # it was running when the final stop began
        return any(r[1] < final < r[2] for r in spans.get(label, []))

    order = [label for label in given + added if stopping(label)]

    # Left out (open): once a given child (or a service of one) has started again, it
    # may begin to stop before the added children have: started after them, the
    # engine's exact reverse of the start puts it first, where OTP's list puts it after
    # them. The given children among themselves keep their reverse order (the stop
    # looks through one that started again: `_through` in the engine's passes).
    restarted = any(
        len([r for r in spans.get(name, []) if r[0] < final]) > 1
        for label in run.given[sup]
        for name in {label} | world.owned.get(label, set())
    )
    for before, after in itertools.pairwise(order):
        if restarted and before in given and after in added:
            continue
        whole = {after} | world.owned.get(after, set())
        begin = stop_begin(spans, before, final)
        end = last_end(spans, whole, final)
        assert end < begin, (
            f"in {sup}'s stop, {before} began to stop (at {begin}) before {after} and all "
            f"it brought up had stopped (at {end})"
        )
    if sup != "root" or run.stopped_normally:
        end = stop_begin(spans, sup, final)
        for label in order:
            if sup != "root" and label in added:
                # Left out (open): a child added to the inner supervisor can stop before
                # it when an outer child added after the inner supervisor brought up
                # services of its own (xfail test in test_dynamic_races.py).
                continue
            assert stop_begin(spans, label, final) > end, f"{label} stopped before its supervisor"


def check(run: Run) -> None:
    spans = runs(run.log)
    for label, service in run.world.services.items():
        assert not service.running, f"{label} still runs"
    assert not run.root.running
    check_dependencies(run, spans)
    check_final_order(run, spans, "root")
    for sup in run.nested:
        if sup in run.present:
            check_final_order(run, spans, sup)


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(scenarios())
def test_random_shapes_stop_in_the_documented_order(scenario: dict[str, Any]) -> None:
    """Added children last first, each with what it brought up; given ones after, reversed."""
    check(run_virtual(drive(scenario)))

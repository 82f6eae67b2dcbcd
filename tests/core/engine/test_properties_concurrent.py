"""Property tests of the engine under overlapping operations.

Random DAGs with random nesting and shared services, some of them blocking services;
several roots entered and left concurrently at random moments; random start failures
and task crashes. Every hook journals what it does, with the operation it ran for
(context variables set by each root's task reach every hook it causes). The checks are
the rules of docs/engine.md, each on every edge and every group:

* every service runs start, then stop, alternately: started and stopped exactly once
  per run, never started while up, nothing left up at the end;
* a service starts only while every dependency is up, and a dependency begins to stop
  only once every dependent is down;
* within one operation, a service starts after everything the order written puts
  before it (an independent recursive model of the rules computes that relation), and
  the services one stop brings down stop in exact reverse of how they started;
* a failed start raises its first failure;
* nothing is left never-awaited or unretrieved (asyncio debug mode, warnings recorded).

``TETHER_PROPERTY_EXAMPLES`` sets how many examples each test runs (default 150).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import itertools
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tests.conftest import WAIT

from .conftest import loop_factories
from .model import Graph, closure, deps_of, graphs, must_start_after, transitive

EXAMPLES = int(os.environ.get("TETHER_PROPERTY_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ENTRY: contextvars.ContextVar[int] = contextvars.ContextVar("entry", default=-1)
EXIT: contextvars.ContextVar[int] = contextvars.ContextVar("exit", default=-1)


class StartFailedError(Exception):
    pass


class CrashError(Exception):
    pass


@dataclass
class Event:
    index: int
    kind: str
    node: int
    entry: int
    exit: int
    error: BaseException | None = None


@dataclass
class Journal:
    events: list[Event] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, kind: str, node: int, error: BaseException | None = None) -> None:
        # list.append and next() on a count are atomic: blocking hooks log from threads.
        self.events.append(Event(next(self.counter), kind, node, ENTRY.get(), EXIT.get(), error))


@dataclass
class Plan:
    graph: Graph
    blocking: set[int]
    pauses: list[int]
    fails: set[int]
    crashes: set[int]
    roots: list[int]
    delays: list[tuple[int, int]]
    loop: str = "asyncio"


@st.composite
def plans(draw: st.DrawFn, *, failures: bool, max_roots: int = 3) -> Plan:
    graph = draw(graphs())
    n = len(graph)
    blocking = set(draw(st.lists(st.integers(0, n - 1), max_size=n // 3)))
    asynchronous = [i for i in range(n) if i not in blocking]
    if not asynchronous:
        blocking.discard(0)
        asynchronous = [0]
    roots = draw(
        st.lists(
            st.sampled_from(asynchronous),
            min_size=1,
            max_size=min(max_roots, len(asynchronous)),
            unique=True,
        )
    )
    pauses = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    fails: set[int] = set()
    crashes: set[int] = set()
    if failures:
        fails = set(draw(st.lists(st.integers(0, n - 1), max_size=2)))
        crashes = set(draw(st.lists(st.sampled_from(asynchronous), max_size=2)))
    delays = [
        (draw(st.integers(0, 6)), draw(st.integers(0, 6))) for _ in roots
    ]  # turns before entering, turns held
    loop = draw(st.sampled_from(sorted(loop_factories())))
    return Plan(graph, blocking, pauses, fails, crashes, roots, delays, loop)


# --------------------------------------------------------------------- services


def build(plan: Plan, journal: Journal) -> list[Any]:
    nodes: list[Any] = []
    for i in range(len(plan.graph)):
        cls = BlockingVertex if i in plan.blocking else Vertex
        nodes.append(cls(i, plan, journal))
    for i, node in enumerate(nodes):
        node.items = [
            nodes[item] if isinstance(item, int) else [nodes[m] for m in item]
            for item in plan.graph[i]
        ]
    return nodes


class Vertex(tether.Service):
    def __init__(self, index: int, plan: Plan, journal: Journal) -> None:
        self.index = index
        self.pauses = plan.pauses[index]
        self.fails = index in plan.fails
        self.crashes = index in plan.crashes
        self.journal = journal
        self.items: list[Any] = []

    @property
    def dependencies(self) -> list[Any]:
        return self.items

    async def _pause(self) -> None:
        for _ in range(self.pauses):
            await asyncio.sleep(0)

    async def start(self) -> None:
        self.journal.add("start-begin", self.index)
        try:
            await self._pause()
            self._maybe_fail()
        except BaseException as exc:
            self.journal.add("start-fail", self.index, exc)
            raise
        if self.crashes:
            self.add_task(self._crash())
        self.journal.add("start-end", self.index)

    def _maybe_fail(self) -> None:
        if self.fails:
            raise StartFailedError(self.index)

    async def _crash(self) -> None:
        await self._pause()
        error = CrashError(self.index)
        self.journal.add("crash", self.index, error)
        raise error

    async def stop(self) -> None:
        self.journal.add("stop-begin", self.index)
        await self._pause()
        self.journal.add("stop-end", self.index)


class BlockingVertex(tether.BlockingService):
    def __init__(self, index: int, plan: Plan, journal: Journal) -> None:
        self.index = index
        self.pauses = plan.pauses[index]
        self.fails = index in plan.fails
        self.journal = journal
        self.items: list[Any] = []

    @property
    def dependencies(self) -> list[Any]:
        return self.items

    def start(self) -> None:
        self.journal.add("start-begin", self.index)
        time.sleep(self.pauses / 10000)
        if self.fails:
            error = StartFailedError(self.index)
            self.journal.add("start-fail", self.index, error)
            raise error
        self.journal.add("start-end", self.index)

    def stop(self) -> None:
        self.journal.add("stop-begin", self.index)
        time.sleep(self.pauses / 10000)
        self.journal.add("stop-end", self.index)


# ----------------------------------------------------------------------- checks


def check_runs(plan: Plan, events: list[Event]) -> None:
    """Alternation per service; dependencies up at a start, dependents down at a stop."""
    n = len(plan.graph)
    dependents = {i: {j for j in range(n) if i in deps_of(plan.graph, j)} for i in range(n)}
    state = dict.fromkeys(range(n), "down")
    moves = {
        ("down", "start-begin"): "starting",
        ("starting", "start-end"): "up",
        ("starting", "start-fail"): "down",
        ("up", "stop-begin"): "stopping",
        ("stopping", "stop-end"): "down",
    }
    for event in events:
        if event.kind == "crash":
            continue
        node = event.node
        if event.kind == "start-begin":
            for dep in deps_of(plan.graph, node):
                assert state[dep] == "up", (event, dep, state[dep])
        if event.kind == "stop-begin":
            for dependent in dependents[node]:
                assert state[dependent] == "down", (event, dependent, state[dependent])
        moved = moves.get((state[node], event.kind))
        assert moved is not None, (event, state[node])
        state[node] = moved
    assert all(s == "down" for s in state.values()), state


@dataclass
class Run:
    """One run of one service: the operation that started it, and the stop that ended it."""

    node: int
    entry: int
    began: int
    up: int
    stop_group: tuple[int, int] | None = None
    stopping: int = -1
    down: int = -1


def runs_of(events: list[Event]) -> list[Run]:
    runs: list[Run] = []
    current: dict[int, Run] = {}
    begins: dict[int, int] = {}
    for event in events:
        if event.kind == "start-begin":
            begins[event.node] = event.index
        elif event.kind == "start-end":
            run = Run(event.node, event.entry, begins[event.node], event.index)
            runs.append(run)
            current[event.node] = run
        elif event.kind == "stop-begin":
            current[event.node].stopping = event.index
            current[event.node].stop_group = (event.entry, event.exit)
        elif event.kind == "stop-end":
            current.pop(event.node).down = event.index
    return runs


def check_order_written(plan: Plan, events: list[Event], entered: set[int]) -> None:
    """Within each start that succeeded, and each stop, the order written holds."""
    runs = runs_of(events)
    for entry in entered:
        root = plan.roots[entry]
        ours = {run.node: run for run in runs if run.entry == entry}
        new = set(ours)
        running = closure(plan.graph, root) - new
        after = must_start_after(plan.graph, root, running)
        assert set(after) == new, (entry, sorted(after), sorted(new))
        for node, before in after.items():
            for pred in before & new:
                assert ours[pred].up < ours[node].began, ("start", entry, pred, node)
        full = transitive(after)
        for node, run in ours.items():
            for pred in full.get(node, set()) & new:
                other = ours[pred]
                if run.stop_group is not None and run.stop_group == other.stop_group:
                    assert run.down < other.stopping, ("stop", entry, node, pred)


def check_first_failure(plan: Plan, events: list[Event], raised: dict[int, BaseException]) -> None:
    for entry, exc in raised.items():
        failures = [
            e
            for e in events
            if e.entry == entry
            and e.error is not None
            and not isinstance(e.error, asyncio.CancelledError)
            and e.kind in ("start-fail", "crash")
        ]
        position = next(i for i, e in enumerate(failures) if e.error is exc)
        # A blocking start fails in its thread; the loop hears of it a little later.
        assert all(e.node in plan.blocking for e in failures[:position]), (entry, failures)


# ------------------------------------------------------------------------ runner


def run_plan(plan: Plan) -> tuple[list[Event], set[int], dict[int, BaseException]]:
    journal = Journal()
    nodes = build(plan, journal)
    entered: set[int] = set()
    raised: dict[int, BaseException] = {}
    problems: list[dict[str, Any]] = []

    async def one_root(entry: int) -> None:
        ENTRY.set(entry)
        root = nodes[plan.roots[entry]]
        wait_first, hold = plan.delays[entry]
        for _ in range(wait_first):
            await asyncio.sleep(0)
        try:
            await root.__aenter__()
        except (StartFailedError, CrashError) as exc:
            raised[entry] = exc
            return
        entered.add(entry)
        for _ in range(hold):
            await asyncio.sleep(0)
        EXIT.set(entry)
        with contextlib.suppress(CrashError):
            await root.__aexit__(None, None, None)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
        runs = [asyncio.create_task(one_root(i)) for i in range(len(plan.roots))]
        await asyncio.wait_for(asyncio.gather(*runs), WAIT)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with asyncio.Runner(loop_factory=loop_factories()[plan.loop], debug=True) as runner:
            runner.run(main())
        gc.collect()
    assert problems == []
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert not any(node.running for node in nodes)
    return journal.events, entered, raised


@SETTINGS
@given(plan=plans(failures=False))
def test_concurrent_roots_keep_every_rule(plan: Plan) -> None:
    """Roots entered and left at random moments: every rule, on every edge and group."""
    events, entered, raised = run_plan(plan)
    assert raised == {}
    assert entered == set(range(len(plan.roots)))
    check_runs(plan, events)
    check_order_written(plan, events, entered)


@SETTINGS
@given(plan=plans(failures=True))
def test_concurrent_roots_with_failures_and_crashes_keep_every_rule(plan: Plan) -> None:
    """Start failures and task crashes anywhere: rolled back exactly, first failure raised."""
    events, entered, raised = run_plan(plan)
    check_runs(plan, events)
    check_order_written(plan, events, entered)
    check_first_failure(plan, events, raised)


@SETTINGS
@given(plan=plans(failures=False, max_roots=1))
def test_one_root_follows_the_model_exactly(plan: Plan) -> None:
    """One root alone: exactly the model's services start, in its order, and stop in reverse."""
    events, entered, _ = run_plan(plan)
    assert entered == {0}
    started = {e.node for e in events if e.kind == "start-end"}
    assert started == closure(plan.graph, plan.roots[0])
    check_runs(plan, events)
    check_order_written(plan, events, entered)

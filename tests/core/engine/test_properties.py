"""Property tests: random DAGs with random nesting, interleavings, failures and crashes.

An independent, recursive model of the order written (``model.py``) computes, for each
service, the set of services that must have started before it (its dependencies, and
everything the items written before its item needed). The engine's real start and stop
logs must respect that relation in both directions. ``test_properties_concurrent``
does the same for several roots entered and left at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tests.conftest import WAIT

from .model import Graph, closure, graphs, must_start_after

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)


class Events:
    def __init__(self) -> None:
        self.entries: list[tuple[str, int]] = []

    def add(self, what: str, node: int) -> None:
        self.entries.append((what, node))

    def index(self, what: str, node: int) -> int:
        return self.entries.index((what, node))

    def count(self, what: str, node: int) -> int:
        return self.entries.count((what, node))


class Vertex(tether.Service):
    def __init__(self, index: int, events: Events, pauses: int) -> None:
        self.index = index
        self.events = events
        self.pauses = pauses
        self.items: list[Any] = []
        self.fail_start = False
        self.crash = False

    @property
    def dependencies(self) -> list[Any]:
        return self.items

    async def _pause(self) -> None:
        for _ in range(self.pauses):
            await asyncio.sleep(0)

    async def start(self) -> None:
        self.events.add("start-begin", self.index)
        await self._pause()
        if self.fail_start:
            raise RuntimeError(f"start of {self.index} failed")
        if self.crash:
            self.add_task(self._crash())
        self.events.add("start-end", self.index)

    async def _crash(self) -> None:
        await self._pause()
        raise LookupError(f"task of {self.index} crashed")

    async def stop(self) -> None:
        self.events.add("stop-begin", self.index)
        await self._pause()
        self.events.add("stop-end", self.index)


def build(graph: Graph, pauses: list[int], events: Events) -> list[Vertex]:
    nodes = [Vertex(i, events, pauses[i % len(pauses)]) for i in range(len(graph))]
    for node, items in zip(nodes, graph, strict=True):
        node.items = [
            nodes[item] if isinstance(item, int) else [nodes[m] for m in item] for item in items
        ]
    return nodes


pauses_strategy = st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=5)


@SETTINGS
@given(graph=graphs(), pauses=pauses_strategy)
def test_random_graph_starts_and_stops_in_dependency_order(graph: Graph, pauses: list[int]) -> None:
    """Every service starts after what it must follow, stops before it, each exactly once."""
    events = Events()
    nodes = build(graph, pauses, events)

    async def main() -> None:
        async with nodes[0]:
            assert all(nodes[i].running for i in closure(graph, 0))

    asyncio.run(asyncio.wait_for(main(), WAIT))
    reached = closure(graph, 0)
    for i in range(len(graph)):
        expected = 1 if i in reached else 0
        for what in ("start-begin", "start-end", "stop-begin", "stop-end"):
            assert events.count(what, i) == expected, (what, i)
    for node, before in must_start_after(graph, 0, set()).items():
        for dep in before:
            assert events.index("start-end", dep) < events.index("start-begin", node)
            assert events.index("stop-end", node) < events.index("stop-begin", dep)
    assert not any(n.running for n in nodes)


@SETTINGS
@given(graph=graphs(), pauses=pauses_strategy, data=st.data())
def test_random_start_failure_rolls_back_exactly_what_started(
    graph: Graph, pauses: list[int], data: st.DataObject
) -> None:
    """A start failing anywhere: started services stop once, others never start or stop."""
    events = Events()
    nodes = build(graph, pauses, events)
    reached = sorted(closure(graph, 0))
    broken = data.draw(st.sampled_from(reached))
    nodes[broken].fail_start = True

    async def main() -> None:
        try:
            async with nodes[0]:
                raise AssertionError("must not start")  # pragma: no cover
        except RuntimeError as exc:
            assert str(exc) == f"start of {broken} failed"
        else:  # pragma: no cover
            raise AssertionError("no exception")

    asyncio.run(asyncio.wait_for(main(), WAIT))
    for i in range(len(graph)):
        started = events.count("start-end", i)
        assert started <= 1
        assert events.count("stop-begin", i) == started, i
        assert not nodes[i].running
    assert events.count("start-end", broken) == 0
    assert events.count("stop-begin", broken) == 0
    for node in range(len(graph)):
        if events.count("stop-begin", node):
            for dep in must_start_after(graph, 0, set()).get(node, ()):
                assert events.index("stop-end", node) < events.index("stop-begin", dep)


@SETTINGS
@given(graph=graphs(), pauses=pauses_strategy, data=st.data())
def test_random_task_crashes_stop_everything_and_raise_one_of_them(
    graph: Graph, pauses: list[int], data: st.DataObject
) -> None:
    """Tasks crashing in any services: run() raises one crash and all stops once."""
    events = Events()
    nodes = build(graph, pauses, events)
    reached = sorted(closure(graph, 0))
    crashing = data.draw(st.sets(st.sampled_from(reached), min_size=1))
    for index in crashing:
        nodes[index].crash = True

    async def main() -> None:
        try:
            await nodes[0].run()
        except LookupError as exc:
            assert any(str(exc) == f"task of {i} crashed" for i in crashing)
        except RuntimeError:  # pragma: no cover
            raise
        else:  # pragma: no cover
            raise AssertionError("no crash surfaced")

    asyncio.run(asyncio.wait_for(main(), WAIT))
    for i in range(len(graph)):
        assert events.count("stop-begin", i) == events.count("start-end", i)
        assert not nodes[i].running


@SETTINGS
@given(graph=graphs(max_nodes=8), pauses=pauses_strategy, exit_first=st.booleans())
def test_two_roots_share_services_by_reference_count(
    graph: Graph, pauses: list[int], exit_first: bool
) -> None:
    """Two roots over one graph: a shared service stops only after the last root needing it."""
    if len(graph) < 2:
        graph = [*graph, []]
    events = Events()
    nodes = build(graph, pauses, events)
    first, second = (0, 1) if exit_first else (1, 0)
    need = {0: closure(graph, 0), 1: closure(graph, 1)}

    async def main() -> None:
        await nodes[0].__aenter__()
        await nodes[1].__aenter__()
        for i in need[0] | need[1]:
            assert nodes[i].running
        await nodes[first].__aexit__(None, None, None)
        for i in range(len(graph)):
            assert nodes[i].running == (i in need[second]), i
        await nodes[second].__aexit__(None, None, None)

    asyncio.run(asyncio.wait_for(main(), WAIT))
    for i in range(len(graph)):
        expected = 1 if i in need[0] | need[1] else 0
        assert events.count("start-begin", i) == expected
        assert events.count("stop-begin", i) == expected
        assert not nodes[i].running

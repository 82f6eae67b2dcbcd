"""Pictures of a graph: the declared shape with ordering groups, and the live status."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

import tether
from tests.conftest import Log, Node

WARM_UP = tether.Stage("warm_up_picture", after=tether.STARTED)


class Named(tether.Service):
    def __init__(self, name: str, deps: list[Any] | None = None) -> None:
        self.name = name
        self.deps = deps or []

    @property
    def dependencies(self) -> list[Any]:
        return self.deps


class Warm(Named):
    @WARM_UP
    async def fill(self) -> None: ...

    async def on_reload(self) -> None: ...


def sample() -> Named:
    """api needs db first, then cache and queue together; cache needs db too."""
    db = Named("db")
    return Named("api", [db, [Warm("cache", [db]), Named("queue")]])


def test_text_shows_order_groups_and_shared_services_once() -> None:
    """Siblings carry their group number; a shared service is drawn once."""
    assert tether.graph(sample()).splitlines() == [
        "Named[api]",
        "├── 1 Named[db]",
        "├── 2 Warm[cache] (reload, warm_up_picture)",
        "│   └── 1 Named[db] (see above)",
        "└── 2 Named[queue]",
        "(numbers give the start order among siblings; equal numbers start concurrently)",
    ]


def test_dot_has_one_node_per_service_and_numbered_edges() -> None:
    """DOT: nodes labelled by name (and extra stages), edges labelled by group."""
    dot = tether.graph(sample(), format="dot")
    assert dot.startswith("digraph tether {")
    assert dot.endswith("}")
    assert 's2 [label="Warm[cache] (reload, warm_up_picture)"];' in dot
    edges = re.findall(r"s(\d) -> s(\d) \[label=\"(\d)\"\]", dot)
    assert edges == [("0", "1", "1"), ("0", "2", "2"), ("0", "3", "2"), ("2", "1", "1")]


def test_mermaid_has_numbered_edges() -> None:
    """Mermaid: a flowchart with the group number on every edge."""
    mermaid = tether.graph(sample(), format="mermaid")
    assert mermaid.splitlines()[0] == "flowchart TD"
    assert '  s1["Named[db]"]' in mermaid
    assert "  s0 -->|2| s3" in mermaid


def test_labels_are_escaped_for_dot_and_mermaid() -> None:
    """Quotes in names cannot break the DOT or Mermaid syntax."""
    root = Named('say "hi"')
    assert 'label="Named[say \\"hi\\"]"' in tether.graph(root, format="dot")
    assert '["Named[say #quot;hi#quot;]"]' in tether.graph(root, format="mermaid")


def test_a_long_chain_draws_without_recursion() -> None:
    """A chain deeper than the recursion limit is drawn (iteratively)."""
    node = Named("n0")
    for i in range(1, 3000):
        node = Named(f"n{i}", [node])
    assert len(tether.graph(node).splitlines()) == 3001


def test_graph_validates_first() -> None:
    """A cycle raises its precise error instead of drawing a picture."""
    a, b = Named("a"), Named("b")
    a.deps, b.deps = [b], [a]
    cycle = r"Named\[a\] -> Named\[b\] -> Named\[a\]"
    with pytest.raises(tether.DependencyCycleError, match=cycle):
        tether.graph(a)


def test_unknown_format_is_refused() -> None:
    """Only text, dot and mermaid exist; anything else names the choices."""
    with pytest.raises(ValueError, match="format must be one of text, dot, mermaid, got 'png'"):
        tether.graph(Named("a"), format="png")  # type: ignore[arg-type]


class Busy(tether.Service):
    @tether.task
    async def consume(self) -> None:
        while await self.sleep(3600):
            pass


async def test_status_tree_shows_state_uptime_restarts_and_tasks(log: Log) -> None:
    """The live tree: each service's state, uptime, restarts; tasks with their place."""
    busy = Busy()
    root = Node("root", log, [busy, Node("db", log)])
    async with root:
        await asyncio.sleep(0)
        lines = tether.status_tree(root).splitlines()
    assert re.fullmatch(r"Node  running  up \d+\.\ds  restarts 0", lines[0])
    assert re.fullmatch(r"├── Busy  running  up \d+\.\ds  restarts 0", lines[1])
    assert re.fullmatch(
        r"│   └── task 'Busy\.consume' at \S*test_picture\.py:\d+ in consume", lines[2]
    )
    assert re.fullmatch(r"└── Node  running  up \d+\.\ds  restarts 0", lines[3])


async def test_status_tree_after_a_stop_shows_the_final_states(log: Log) -> None:
    """Once stopped, the tree shows stopped services and no uptime."""
    root = Node("root", log, [Node("db", log)])
    async with root:
        pass
    assert tether.status_tree(root).splitlines() == [
        "Node  stopped  restarts 0",
        "└── Node  stopped  restarts 0",
    ]

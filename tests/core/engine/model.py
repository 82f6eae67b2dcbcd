"""An independent model of the order written, shared by the engine's property tests.

A graph is, for each node ``i``, a list of items: a node index (> ``i``) or a list of
node indices (> ``i``); edges only point to higher indices, so there is no cycle.
"""

from __future__ import annotations

from hypothesis import strategies as st

Graph = list[list[int | list[int]]]


def items_of(graph: Graph, node: int) -> list[list[int]]:
    return [[item] if isinstance(item, int) else item for item in graph[node]]


def deps_of(graph: Graph, node: int) -> set[int]:
    return {m for members in items_of(graph, node) for m in members}


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 9) -> Graph:
    n = draw(st.integers(min_value=1, max_value=max_nodes))
    graph: Graph = []
    for i in range(n):
        later = list(range(i + 1, n))
        items: list[int | list[int]] = []
        if later:
            for _ in range(draw(st.integers(min_value=0, max_value=3))):
                if draw(st.booleans()):
                    items.append(draw(st.sampled_from(later)))
                else:
                    items.append(draw(st.lists(st.sampled_from(later), min_size=0, max_size=3)))
        graph.append(items)
    return graph


def closure(graph: Graph, root: int) -> set[int]:
    found = {root}
    stack = [root]
    while stack:
        for dep in deps_of(graph, stack.pop()):
            if dep not in found:
                found.add(dep)
                stack.append(dep)
    return found


def must_start_after(graph: Graph, root: int, running: set[int]) -> dict[int, set[int]]:
    """The rules of the order written, as an independent recursive model.

    Depth-first in the order written; a service is brought up by the first item that
    reaches it; it must start after its dependencies and after everything the items
    written before its item needed (cumulatively, whoever brought those up), and
    inherits the same from the items around its parent. Running services are given.
    """
    seen: set[int] = set()
    after: dict[int, set[int]] = {}

    def needed(member: int) -> set[int]:
        return {n for n in closure(graph, member) if n not in running}

    def visit(node: int, gate: frozenset[int]) -> None:
        seen.add(node)
        current = set(gate)
        deps: set[int] = set()
        for members in items_of(graph, node):
            for member in members:
                if member in running:
                    continue
                deps.add(member)
                if member not in seen:
                    visit(member, frozenset(current))
            for member in members:
                if member not in running:
                    current |= needed(member)
        after[node] = deps | gate

    if root not in running:
        visit(root, frozenset())
    return after


def transitive(after: dict[int, set[int]]) -> dict[int, set[int]]:
    full: dict[int, set[int]] = {}
    for node, direct in after.items():
        found: set[int] = set()
        stack = list(direct)
        while stack:
            pred = stack.pop()
            if pred not in found:
                found.add(pred)
                stack.extend(after.get(pred, ()))
        full[node] = found
    return full

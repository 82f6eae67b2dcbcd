"""Pictures of a graph: its declared shape (text, DOT, Mermaid) and its live status.

The declared picture walks `dependencies` as written, so it shows the ordering groups:
top-level items start one after another, members of a nested list concurrently. The
live picture walks what each running service actually depends on (`status()`), with
state, uptime, restarts and where each background task is suspended.
"""

from __future__ import annotations

from typing import Literal

from tether._core._base import ServiceBase, record
from tether._core._frames import suspended_at
from tether._core._graph import _items, check
from tether._core._records import Record, display_name
from tether._core._service import status
from tether._core._stages import START, STOP
from tether._supervision._supervisor import added_children

__all__ = ["FORMATS", "graph", "graph_records", "status_tree"]

GraphFormat = Literal["text", "dot", "mermaid"]
FORMATS: tuple[GraphFormat, ...] = ("text", "dot", "mermaid")

_LEGEND = "numbers give the start order among siblings; equal numbers start concurrently"


# ------------------------------------------------------------------ declared graph


class _Edge:
    __slots__ = ("child", "group", "parent")

    def __init__(self, parent: int, child: int, group: int) -> None:
        self.parent = parent
        self.child = child
        self.group = group


class _Shape:
    """The declared graph: services in first-reached order and the edges between them."""

    def __init__(self, root: ServiceBase) -> None:
        self.services: list[ServiceBase] = []
        self.index: dict[int, int] = {}
        self.children: list[list[tuple[int, int]]] = []
        self.edges: list[_Edge] = []
        self._add(root)
        i = 0
        while i < len(self.services):
            service = self.services[i]
            for group, members in enumerate(_declared_groups(service), 1):
                for member in members:
                    child = self._add(member)
                    self.children[i].append((group, child))
                    self.edges.append(_Edge(i, child, group))
            i += 1

    def _add(self, service: ServiceBase) -> int:
        key = id(service)
        found = self.index.get(key)
        if found is not None:
            return found
        self.index[key] = len(self.services)
        self.services.append(service)
        self.children.append([])
        return len(self.services) - 1


def _declared_groups(service: ServiceBase) -> list[list[ServiceBase]]:
    """`dependencies` as ordering groups (implicit, injected ones included)."""
    groups: list[list[ServiceBase]] = []
    for item in _items(record(service)):
        if isinstance(item, ServiceBase):
            groups.append([item])
        else:
            groups.append([m for m in item if isinstance(m, ServiceBase)])
    subgraph = getattr(service, "_tether_subgraph", None)
    if subgraph is not None:  # a ServiceThread: the graph its thread runs, started last
        groups.append(list(subgraph()))
    return groups


def _extra_stages(service: ServiceBase) -> list[str]:
    hooks = record(service).info.hooks
    return [stage.name for stage in hooks if stage is not START and stage is not STOP]


def _label(service: ServiceBase) -> str:
    extra = _extra_stages(service)
    name = display_name(service)
    return f"{name} ({', '.join(extra)})" if extra else name


def graph(root: ServiceBase, *, format: GraphFormat = "text") -> str:  # noqa: A002
    """Draw the dependency graph of `root` as text, Graphviz DOT or Mermaid.

    The graph is validated first (as [`check`][tether.check] does), so a cycle or a
    malformed service raises its precise error instead of a picture. Edges carry the
    ordering group: siblings with different numbers start one after another in that
    order, siblings with the same number start concurrently. Hooks for stages other
    than `start` and `stop` are listed beside each service's name. A service
    reached from several dependents is drawn once (`(see above)` in text):

    ```python
    print(tether.graph(Api(), format="mermaid"))
    ```
    """
    if format not in FORMATS:
        raise ValueError(f"graph() format must be one of {', '.join(FORMATS)}, got {format!r}.")
    check(root)
    shape = _Shape(root)
    if format == "dot":
        return _dot(shape)
    if format == "mermaid":
        return _mermaid(shape)
    return _text(shape)


def _text(shape: _Shape) -> str:
    lines = [_label(shape.services[0])]
    shown = {0}
    # One frame per node being drawn: (its children, next child, prefix for them).
    # Iterative, so a chain of any depth draws without touching the recursion limit.
    stack: list[tuple[list[tuple[int, int]], list[int], str]] = [(shape.children[0], [0], "")]
    while stack:
        children, cursor, prefix = stack[-1]
        if cursor[0] >= len(children):
            stack.pop()
            continue
        group, child = children[cursor[0]]
        cursor[0] += 1
        last = cursor[0] == len(children)
        branch = "└── " if last else "├── "
        service = shape.services[child]
        if child in shown:
            lines.append(f"{prefix}{branch}{group} {display_name(service)} (see above)")
            continue
        shown.add(child)
        lines.append(f"{prefix}{branch}{group} {_label(service)}")
        if shape.children[child]:
            stack.append((shape.children[child], [0], prefix + ("    " if last else "│   ")))
    lines.append(f"({_LEGEND})")
    return "\n".join(lines)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(shape: _Shape) -> str:
    lines = [
        "digraph tether {",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica"];',
        f"  label={_dot_quote('edge labels: ' + _LEGEND)};",
        "  labelloc=b;",
    ]
    lines += [f"  s{i} [label={_dot_quote(_label(s))}];" for i, s in enumerate(shape.services)]
    lines += [f'  s{e.parent} -> s{e.child} [label="{e.group}"];' for e in shape.edges]
    lines.append("}")
    return "\n".join(lines)


def _mermaid_quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _mermaid(shape: _Shape) -> str:
    lines = ["flowchart TD", f"  %% {_LEGEND}"]
    lines += [f"  s{i}[{_mermaid_quote(_label(s))}]" for i, s in enumerate(shape.services)]
    lines += [f"  s{e.parent} -->|{e.group}| s{e.child}" for e in shape.edges]
    return "\n".join(lines)


# ------------------------------------------------------------------- live status


ADDED_SHOWN = 10
"""How many children added at run time the status tree shows under a supervisor."""


def graph_records(root: ServiceBase, *, added: bool = True) -> list[Record]:
    """The records of `root` and everything it runs with (its last or current run).

    `added=False` leaves out the children a supervisor's `start_child` added, and what
    only they reach: the reports count those per supervisor instead.
    """
    first = record(root)
    seen = {id(first)}
    order = [first]
    i = 0
    while i < len(order):
        skip = () if added else added_children(order[i].service)
        for dep in order[i].deps:
            if id(dep) not in seen and dep not in skip:
                seen.add(id(dep))
                order.append(dep)
        i += 1
    return order


def _unshown(service: ServiceBase, deps: list[ServiceBase]) -> str | None:
    """Past `ADDED_SHOWN` children added to `service`: drop the rest from `deps`, count them."""
    added = added_children(service)
    if len(added) <= ADDED_SHOWN:
        return None
    shown = 0
    counts: dict[str, int] = {}
    kept = []
    for dep in deps:
        rec = record(dep)
        if rec not in added:
            kept.append(dep)
        elif shown < ADDED_SHOWN:
            shown += 1
            kept.append(dep)
        else:
            counts[rec.state.value] = counts.get(rec.state.value, 0) + 1
    deps[:] = kept
    states = ", ".join(f"{n} {state}" if len(counts) > 1 else state for state, n in counts.items())
    return f"… and {sum(counts.values())} more children added ({states})"


def status_tree(root: ServiceBase) -> str:
    """The live status of `root` and everything it runs with, as a text tree.

    One line per service with its state, uptime and restarts, and one line per running
    background task saying where it is suspended (the innermost frame of your code).
    Under a supervisor, the children `start_child` added are shown up to ten, then
    counted by state in one line.
    This is what the runner prints on SIGUSR1:

    ```python
    Api  running  up 12.3s  restarts 0
    └── Database  running  up 12.4s  restarts 0
        └── task 'Database.keepalive' at app.py:30 in keepalive
    ```
    """
    lines: list[str] = []
    shown: set[int] = set()
    stack: list[tuple[ServiceBase | str, str, str]] = [(root, "", "")]
    while stack:
        service, lead, prefix = stack.pop()
        if isinstance(service, str):  # a line of its own: the children not shown
            lines.append(lead + service)
            continue
        snap = status(service)
        if id(service) in shown:
            lines.append(f"{lead}{snap.name} (see above)")
            continue
        shown.add(id(service))
        parts = [snap.name, snap.state.value]
        if snap.uptime is not None:
            parts.append(f"up {snap.uptime:.1f}s")
        parts.append(f"restarts {snap.restarts}")
        if snap.skipped_ticks:
            parts.append(f"skipped ticks {snap.skipped_ticks}")
        if snap.loop_blocks:
            parts.append(
                f"blocked the event loop {snap.loop_blocks}x (longest {snap.longest_block:.2f}s)"
            )
        if snap.error is not None:
            parts.append(f"error {type(snap.error).__name__}: {snap.error}")
        lines.append(lead + "  ".join(parts))
        tasks = sorted(snap.tasks, key=lambda t: t.get_name())
        deps = list(snap.dependencies)
        subgraph = getattr(service, "_tether_subgraph", None)
        if subgraph is not None:  # a ServiceThread: the graph its thread runs
            deps.extend(subgraph())
        more = _unshown(service, deps)
        children = len(tasks) + len(deps) + (more is not None)
        for n, task in enumerate(tasks):
            branch = "└── " if n == children - 1 else "├── "
            lines.append(f"{prefix}{branch}task {task.get_name()!r} {suspended_at(task)}")
        pushed: list[tuple[ServiceBase | str, str, str]] = []
        for n, dep in enumerate(deps, len(tasks)):
            last = n == children - 1
            branch = "└── " if last else "├── "
            pushed.append((dep, prefix + branch, prefix + ("    " if last else "│   ")))
        stack.extend(reversed(pushed))
        if more is not None:  # the last line under `service`: below its subtrees
            stack.insert(len(stack) - len(pushed), (more, prefix + "└── ", ""))
    return "\n".join(lines)

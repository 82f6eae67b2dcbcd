"""Collecting `dependencies` into a DAG: ordering rules, validation and cycle errors.

The walk is iterative (a chain of 100,000 services never touches the recursion limit)
and depth-first in the order written, which is facet's start order. It records on each
newly reached service:

* `deps`: the services it depends on, deduplicated, in the order written;
* `after`: what must have started before it: its dependencies, and the barrier of
  the sequential group it was reached under.

facet's rule "top-level items start one after another" applies to whole subtrees: a
service reached while walking the second top-level item of `A` (and not reached
before) starts only after every service of the first item has started. Members of a
nested list share one barrier, so they and their subtrees start concurrently.
"""

from __future__ import annotations

from collections.abc import Collection as Collection_
from collections.abc import Iterable, Iterator
from typing import Any

from ._base import ServiceBase, record
from ._errors import DependencyCycleError, DependencyError
from ._records import (
    _EMPTY,
    _HOLDERS_AS_LIST,
    Barrier,
    Node,
    Record,
    ServiceState,
    check_timeout,
    class_label,
    display_name,
    hold,
    unhold,
)
from ._scheduler import OpKind

__all__ = ["Collection", "check", "collect", "path_to", "undo"]

_RUNNING = ServiceState.RUNNING
_NONE: list[Record] = []  # the deps of a leaf, while it is walked; never mutated
_START = OpKind.START


class Collection:
    """The result of one walk from a root."""

    __slots__ = ("barriers", "busy", "crashed", "done", "new", "reached")

    def __init__(self) -> None:
        self.done = object()
        """Marks the services whose walk finished in this collection."""
        self.new: list[Record] = []
        """Services to start, in a valid start order (post-order)."""
        self.barriers: list[Barrier] = []
        self.busy: list[Record] = []
        """Services another operation is starting, stopping or reloading right now."""
        self.crashed: list[Record] = []
        """Running services reached that have crashed already."""
        self.reached: list[Record] = []
        """Running services reached (not descended into)."""


def _items(rec: Record) -> list[Any] | tuple[Any, ...]:
    service = rec.service
    try:
        deps = service.dependencies
    except Exception as exc:
        exc.add_note(f"tether: raised while reading {display_name(service)}.dependencies")
        raise
    if type(deps) is list or type(deps) is tuple:
        if rec.implicit:
            return _with_implicit(rec, deps)
        return deps
    if isinstance(deps, ServiceBase):
        raise DependencyError(
            f"{display_name(service)}.dependencies returned a single service "
            f"({display_name(deps)}); return an iterable such as [{display_name(deps)}]."
        )
    given: object = deps
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        hint = " It is a method: decorate it with @property." if callable(deps) else ""
        raise DependencyError(
            f"{display_name(service)}.dependencies must return an iterable of services "
            f"or lists of services, got {deps!r} ({type(deps).__name__}).{hint}"
        )
    items = list(given)
    return _with_implicit(rec, items) if rec.implicit else items


def _with_implicit(rec: Record, items: list[Any] | tuple[Any, ...]) -> list[Any]:
    listed: set[int] = set()
    for item in items:
        if isinstance(item, ServiceBase):
            listed.add(id(item))
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes):
            listed.update(id(member) for member in item)
    extra = [s for s in rec.implicit if id(s) not in listed]
    return [extra, *items] if extra else list(items)


def _describe(item: object) -> str:
    if isinstance(item, type) and issubclass(item, ServiceBase):
        name = class_label(item)
        return f"the class {name}, not an instance; did you mean {name}()?"
    return f"{item!r} ({type(item).__name__}), not a service"


def _members(parent: Record, index: int, item: object) -> list[Any] | tuple[Any, ...]:
    """The members of a nested list (checked one by one as the walk reaches them)."""
    if type(item) is list or type(item) is tuple:
        return item
    if isinstance(item, str | bytes) or not isinstance(item, Iterable):
        raise DependencyError(
            f"{display_name(parent.service)}.dependencies[{index}] is {_describe(item)}. "
            f"Each item must be a service, or a list of services to start concurrently."
        )
    return list(item)


def _member_error(parent: Record, index: int, position: int, member: object) -> DependencyError:
    where = f"{display_name(parent.service)}.dependencies[{index}][{position}]"
    if isinstance(member, str | bytes) or not isinstance(member, Iterable):
        return DependencyError(
            f"{where} is {_describe(member)}. Members of a nested list must be services."
        )
    return DependencyError(
        f"{where} is a nested {type(member).__name__}; only one level of nesting is "
        f"allowed: top-level items start in order, members of a nested list "
        f"concurrently."
    )


def collect(root: Record, op: object) -> Collection:
    """Walk from `root` and plan what a start from it involves, for the operation `op`.

    The walk is depth-first in the order written. Services that are not running and
    not busy are *new*: they are marked as members of `op`, and each gets its edges
    (`deps`, `after`), its count of new predecessors (`pending`) and its holds on
    its dependencies. Running services are reached but not descended into (their
    subtree runs already). Services busy in another operation are listed in `busy`;
    the walk is then undone, and the caller waits for that operation and walks again.

    The order written becomes gates: the items of a service's `dependencies` after
    the first wait for a gate that opens once every earlier item has started (with
    everything it needed). A service is brought up by the first item, in the order
    written, that reaches it; every new service it needs inherits that item's gate.
    A service reached again later is waited for by the later item's gate, so items
    written after it never skip items written before it.

    Raises DependencyError, DependencyCycleError or HookError before anything changes.
    """
    result = Collection()
    try:
        _walk(root, op, result)
    except BaseException:
        undo(result)
        raise
    if result.busy:
        undo(result)
    return result


def _walk(root: Record, op: object, result: Collection) -> None:
    if not _enter(root, op, result):
        return
    # One frame per service being walked, as a list (cheaper than an object):
    # [record, items, next item index, nested members or None, next member index,
    #  inherited gate, current gate, deps so far, op members of the current group,
    #  whether the current group has members reached earlier]
    stack: list[list[Any]] = [[root, (), 0, None, 0, None, None, [], None, False]]
    try:
        stack[0][1] = _items(root)
        _walk_frames(stack, op, result)
    except BaseException:
        for frame in stack:  # entered, never finished
            frame[0].member = None
        raise


def _walk_frames(stack: list[list[Any]], op: object, result: Collection) -> None:
    done = result.done
    while stack:
        frame = stack[-1]
        rec: Record = frame[0]
        items = frame[1]
        i: int = frame[2]
        members: list[Any] | tuple[Any, ...] | None = frame[3]
        j: int = frame[4]
        gate: Node | None = frame[6]
        deps: list[Record] = frame[7]
        group: list[Node] | None = frame[8]
        shared: bool = frame[9]
        child: Record | None = None
        child_items: list[Any] | tuple[Any, ...] = ()
        while True:
            if members is not None:
                assert group is not None
                while j < len(members):
                    member = members[j]
                    if not isinstance(member, ServiceBase):
                        raise _member_error(rec, i - 1, j, member)
                    dep = member.__dict__.get("_tether") or record(member)
                    j += 1
                    deps.append(dep)
                    mark = dep.mark
                    if mark is done:
                        if dep.member is op:
                            group.append(dep)  # new, brought up earlier by another item
                            shared = True
                    elif mark is op:
                        raise _cycle_error(stack, dep)
                    elif (
                        dep.op is None and dep.state is not _RUNNING and dep.info.error is None
                    ) or _enter(dep, op, result):
                        dep.mark = op
                        dep.member = op
                        dep.gsucc = None
                        group.append(dep)
                        child_items = _items(dep)
                        if not child_items:  # a leaf: done without a frame of its own
                            _finish(dep, _NONE, gate, op, result)
                            continue
                        child = dep
                        break
                if child is not None:
                    break
                members = None
                if group and i < len(items):  # the last item needs no gate after it
                    gate = _group_gate(
                        rec, i, group, gate if shared else None, op=op, result=result
                    )
                group = None
                shared = False
            if i >= len(items):
                break
            item = items[i]
            i += 1
            if isinstance(item, ServiceBase):
                dep = item.__dict__.get("_tether") or record(item)
                deps.append(dep)
                mark = dep.mark
                if mark is done:
                    if dep.member is op and i < len(items):
                        # Brought up earlier by another item: the next items wait for
                        # it and for everything written before it.
                        gate = (
                            dep
                            if gate is None
                            else _group_gate(rec, i, [dep], gate, op=op, result=result)
                        )
                elif mark is op:
                    raise _cycle_error(stack, dep)
                elif (
                    dep.op is None and dep.state is not _RUNNING and dep.info.error is None
                ) or _enter(dep, op, result):
                    dep.mark = op
                    dep.member = op
                    dep.gsucc = None
                    child_items = _items(dep)
                    if not child_items:  # a leaf: done without a frame of its own
                        _finish(dep, _NONE, gate, op, result)
                        gate = dep
                        continue
                    child = dep
                    break
            else:
                members = _members(rec, i - 1, item)
                j = 0
                group = []
                shared = False
        if child is not None:
            frame[2] = i
            frame[3] = members
            frame[4] = j
            frame[7] = deps
            frame[8] = group
            frame[9] = shared
            # A single item brought up here: the items after it wait for it (it waits
            # for the current gate itself).
            frame[6] = gate if members is not None else child
            stack.append([child, child_items, 0, None, 0, gate, gate, [], None, False])
            continue
        stack.pop()
        if len(deps) > 1:
            deps = list(dict.fromkeys(deps))
        _finish(rec, deps, frame[5], op, result)


def _group_gate(
    owner: Record,
    item: int,
    group: list[Node],
    gate: Node | None,
    *,
    op: object,
    result: Collection,
) -> Node:
    """The gate the items after `item` wait for: `group` started, and `gate` open.

    `gate` is None when every member of the group was brought up under the current
    gate already (so waiting for them waits for it).
    """
    if gate is None and len(group) == 1:
        return group[0]
    after: list[Node] = list(group) if gate is None else [gate, *group]
    barrier = Barrier(owner, item, after)
    barrier.member = op
    barrier.pending = len(after)
    for pred in after:
        succ = pred.gsucc
        if succ is None:
            pred.gsucc = [barrier]
        else:
            succ.append(barrier)
    result.barriers.append(barrier)
    return barrier


def _finish(
    rec: Record, deps: list[Record], gate: Node | None, op: object, result: Collection
) -> None:
    """`rec`'s walk is complete: its edges, its holds, its count of new predecessors."""
    pending = 0
    for dep in deps:
        holders = dep.holders
        if holders is _EMPTY:
            dep.holders = [rec]
        elif type(holders) is list and len(holders) < _HOLDERS_AS_LIST:
            holders.append(rec)
        else:
            hold(dep, rec)
        if dep.member is op:
            pending += 1
    kept = tuple(deps) if deps else _EMPTY  # a tuple: smaller than the list it was
    if gate is None:
        rec.after = kept
    else:
        rec.after = (*kept, gate)
        pending += 1
        succ = gate.gsucc
        if succ is None:
            gate.gsucc = [rec]
        else:
            succ.append(rec)
    rec.deps = kept
    rec.pending = pending
    rec.mark = result.done
    result.new.append(rec)


def _enter(rec: Record, op: object, result: Collection) -> bool:
    """Classify `rec` when first reached; True if it is new and must be walked."""
    op_now = rec.op
    if op_now is not None and (rec.state is not _RUNNING or op_now.kind is not _START):
        rec.mark = result.done
        result.busy.append(rec)
        return False
    # Running: started already, even if the start that brought it up has not ended yet
    # (waiting for that start could wait for the very code that walks: a hook of it).
    if rec.state is _RUNNING:
        rec.mark = result.done
        result.reached.append(rec)
        if rec.crash is not None:
            result.crashed.append(rec)
        return False
    error = rec.info.error
    if error is not None:
        raise error
    rec.mark = op
    rec.member = op
    rec.gsucc = None
    return True


def undo(result: Collection) -> None:
    """Forget a walk that will not be used: its holds and its marks."""
    for rec in result.new:
        for dep in rec.deps:
            unhold(dep, rec)
        rec.member = None
        rec.gsucc = None
    for barrier in result.barriers:
        barrier.member = None


def _cycle_error(stack: list[list[Any]], dep: Record) -> DependencyCycleError:
    path: list[Record] = [f[0] for f in stack]
    start = next(i for i, r in enumerate(path) if r is dep)
    cycle = [*path[start:], dep]
    shown = " -> ".join(display_name(r.service) for r in cycle)
    return DependencyCycleError(
        f"Dependency cycle: {shown}. Break it by removing one of these dependencies.",
        tuple(r.service for r in cycle),
    )


def check(root: ServiceBase) -> None:
    """Build and validate the graph of `root` without starting anything.

    Raises what starting it would raise before any hook runs: a
    [`DependencyCycleError`][tether.DependencyCycleError] showing the cycle, a
    [`DependencyError`][tether.DependencyError] naming the item that is not a service, a
    [`HookError`][tether.HookError] naming a hook of the wrong kind, a
    [`DefinitionError`][tether.DefinitionError] for a `graceful_shutdown_timeout` that is not a
    positive number. Services already running are taken as valid (their subtree runs):

    ```python
    tether.check(Api())  # in a test: the production graph is well-formed
    ```
    """
    given: object = root
    if not isinstance(given, ServiceBase):
        raise DependencyError(
            f"check() takes a service, got {_describe(given)}."
            if isinstance(given, type)
            else f"check() takes a service, got {given!r} ({type(given).__name__})."
        )
    collection = collect(record(root), object())
    undo(collection)
    for rec in collection.new:
        check_timeout(rec.service)
        subgraph = getattr(rec.service, "_tether_subgraph", None)
        if subgraph is not None:  # a ServiceThread: the graph its thread will start
            for service in subgraph():
                check(service)


def path_to(root: Record, targets: Collection_[Record]) -> list[Record] | None:
    """A path of dependencies from `root` to one of `targets`, or None if none is needed.

    Depth-first in the order written, through the services that do not run (their
    `dependencies`, as a start would read them); a running service is not descended
    into: `targets` must hold the running ones that count (a supervisor's check that a
    child it adds does not need it finds those through the holders). Changes nothing.
    """
    if root in targets:
        return [root]
    seen: set[Record] = {root}
    stack: list[tuple[Record, Iterator[Record]]] = [(root, _dependencies_of(root))]
    while stack:
        deps = stack[-1][1]
        dep = next(deps, None)
        if dep is None:
            stack.pop()
            continue
        if dep in seen:
            continue
        seen.add(dep)
        if dep in targets:
            return [*(frame[0] for frame in stack), dep]
        if dep.state is not _RUNNING:
            stack.append((dep, _dependencies_of(dep)))
    return None


def _dependencies_of(rec: Record) -> Iterator[Record]:
    for index, item in enumerate(_items(rec)):
        if isinstance(item, ServiceBase):
            yield record(item)
            continue
        for position, member in enumerate(_members(rec, index, item)):
            if not isinstance(member, ServiceBase):
                raise _member_error(rec, index, position, member)
            yield record(member)

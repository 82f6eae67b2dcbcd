"""Collecting ``dependencies`` into a DAG: ordering rules, validation and cycle errors.

The walk is iterative (a chain of 100,000 services never touches the recursion limit)
and depth-first in the order written, which is facet's start order. It records on each
newly reached service:

* ``deps``: the services it depends on, deduplicated, in the order written;
* ``after``: what must have started before it: its dependencies, and the barrier of
  the sequential group it was reached under.

facet's rule "top-level items start one after another" applies to whole subtrees: a
service reached while walking the second top-level item of ``A`` (and not reached
before) starts only after every service of the first item has started. Members of a
nested list share one barrier, so they and their subtrees start concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._errors import DependencyCycleError, DependencyError
from ._service import (
    _EMPTY,
    Barrier,
    Node,
    Record,
    ServiceBase,
    ServiceState,
    check_timeout,
    class_label,
    display_name,
    record,
)

__all__ = ["Collection", "check", "collect"]

_RUNNING = ServiceState.RUNNING


class Collection:
    """The result of one walk from a root."""

    __slots__ = ("barriers", "busy", "crashed", "new", "reached")

    def __init__(self) -> None:
        self.new: list[Record] = []
        """Services to start, in a valid start order (post-order)."""
        self.barriers: list[Barrier] = []
        self.busy: list[Record] = []
        """Services another operation is starting or stopping right now."""
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


def _members(parent: Record, index: int, item: object) -> list[Any]:
    if isinstance(item, str | bytes) or not isinstance(item, Iterable):
        raise DependencyError(
            f"{display_name(parent.service)}.dependencies[{index}] is {_describe(item)}. "
            f"Each item must be a service, or a list of services to start concurrently."
        )
    members = list(item)
    for position, member in enumerate(members):
        if isinstance(member, ServiceBase):
            continue
        where = f"{display_name(parent.service)}.dependencies[{index}][{position}]"
        if isinstance(member, str | bytes) or not isinstance(member, Iterable):
            raise DependencyError(
                f"{where} is {_describe(member)}. Members of a nested list must be services."
            )
        raise DependencyError(
            f"{where} is a nested {type(member).__name__}; only one level of nesting is "
            f"allowed: top-level items start in order, members of a nested list "
            f"concurrently."
        )
    return members


def _group_barrier(new_members: list[Record], result: Collection) -> Node:
    if len(new_members) == 1:
        return new_members[0]
    barrier = Barrier()
    barrier.after = new_members
    result.barriers.append(barrier)
    return barrier


def collect(root: Record, token: object) -> Collection:
    """Walk from ``root`` and return what a start from it involves.

    Running services are reached but not descended into (their subtree runs already).
    Services busy in another operation are listed in ``busy``; the caller waits for
    that operation and walks again. Raises DependencyError, DependencyCycleError or
    HookError before anything changes state.
    """
    done = object()  # marks services whose walk finished in this collection
    result = Collection()
    if not _enter(root, token, done, result):
        return result
    new = result.new
    # One frame per service being walked, as a list (cheaper than an object):
    # [record, items, next item index, nested members or None, next member index,
    #  inherited barrier, current group's barrier, deps so far, new members of group]
    stack: list[list[Any]] = [[root, _items(root), 0, None, 0, None, None, [], None]]
    while stack:
        frame = stack[-1]
        rec: Record = frame[0]
        items = frame[1]
        i: int = frame[2]
        members: list[Any] | None = frame[3]
        j: int = frame[4]
        group_barrier: Node | None = frame[6]
        deps: list[Record] = frame[7]
        group_new: list[Record] | None = frame[8]
        child: Record | None = None
        child_items: list[Any] | tuple[Any, ...] = ()
        while True:
            if members is not None:
                assert group_new is not None
                while j < len(members):
                    dep = record(members[j])
                    j += 1
                    deps.append(dep)
                    mark = dep.mark
                    if mark is done:
                        if dep.op is None and dep.state is not _RUNNING:
                            group_new.append(dep)  # new, reached earlier
                    elif mark is token:
                        raise _cycle_error(stack, dep)
                    elif _enter(dep, token, done, result):
                        group_new.append(dep)
                        child_items = _items(dep)
                        if not child_items:  # a leaf: done without a frame of its own
                            _finish(dep, _EMPTY, group_barrier, done, new)
                            continue
                        child = dep
                        break
                if child is not None:
                    break
                members = None
                if group_new:
                    group_barrier = _group_barrier(group_new, result)
                group_new = None
            if i >= len(items):
                break
            item = items[i]
            i += 1
            if isinstance(item, ServiceBase):
                dep = record(item)
                deps.append(dep)
                mark = dep.mark
                if mark is done:
                    if dep.op is None and dep.state is not _RUNNING:
                        group_barrier = dep  # new, reached earlier
                elif mark is token:
                    raise _cycle_error(stack, dep)
                elif _enter(dep, token, done, result):
                    child_items = _items(dep)
                    if not child_items:  # a leaf: done without a frame of its own
                        _finish(dep, _EMPTY, group_barrier, done, new)
                        group_barrier = dep
                        continue
                    child = dep
                    break
            else:
                members = _members(rec, i - 1, item)
                j = 0
                group_new = []
        if child is not None:
            frame[2] = i
            frame[3] = members
            frame[4] = j
            frame[7] = deps
            frame[8] = group_new
            # A singleton group's barrier for the items after it is the child itself.
            frame[6] = group_barrier if members is not None else child
            stack.append([child, child_items, 0, None, 0, group_barrier, group_barrier, [], None])
            continue
        stack.pop()
        if len(deps) > 1:
            deps = list(dict.fromkeys(deps))
        _finish(rec, deps, frame[5], done, new)
    return result


def _finish(
    rec: Record, deps: list[Record], barrier: Node | None, done: object, new: list[Record]
) -> None:
    """``rec``'s walk is complete: record its edges and add it to the start order."""
    rec.deps = deps
    rec.after = deps if barrier is None else [*deps, barrier]
    rec.mark = done
    new.append(rec)


def _enter(rec: Record, token: object, done: object, result: Collection) -> bool:
    """Classify ``rec`` when first reached; True if it is new and must be walked."""
    if rec.op is not None:
        rec.mark = done
        result.busy.append(rec)
        return False
    if rec.state is _RUNNING:
        rec.mark = done
        result.reached.append(rec)
        if rec.crash is not None:
            result.crashed.append(rec)
        return False
    error = rec.info.error
    if error is not None:
        raise error
    rec.mark = token
    return True


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
    """Build and validate the graph of ``root`` without starting anything.

    Raises what starting it would raise before any hook runs: a
    :class:`~tether.DependencyCycleError` showing the cycle, a
    :class:`~tether.DependencyError` naming the item that is not a service, a
    :class:`~tether.HookError` naming a hook of the wrong kind, a
    :class:`~tether.DefinitionError` for a ``graceful_shutdown_timeout`` that is not a
    positive number. Services already running are taken as valid (their subtree runs)::

        tether.check(Api())  # in a test: the production graph is well-formed
    """
    given: object = root
    if not isinstance(given, ServiceBase):
        raise DependencyError(
            f"check() takes a service, got {_describe(given)}."
            if isinstance(given, type)
            else f"check() takes a service, got {given!r} ({type(given).__name__})."
        )
    collection = collect(record(root), object())
    for rec in collection.new:
        check_timeout(rec.service)
        subgraph = getattr(rec.service, "_tether_subgraph", None)
        if subgraph is not None:  # a ServiceThread: the graph its thread will start
            for service in subgraph():
                check(service)

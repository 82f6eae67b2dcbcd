"""A supervisor's list of children: the ones it was given, then those added while it runs.

OTP's supervisor keeps its children in one list, in start order: the static ones
first, then each one `start_child` added, at the end. Strategies read that order
(`rest_for_one` restarts a child and those after it) and a stop runs it backwards.
`Children` keeps that list for a [`Supervisor`][tether.Supervisor], with what the
engine needs to keep the order in a stop:

* a dynamic child is a dependency of the supervisor (`attach`), so the supervisor's
  stop reaches it, after the supervisor's own stop and before any static child;
* each dynamic child also waits for the one added before it (the last static child
  for the first one: `order_after`), so the dynamic children stop one at a time, the
  last added first, as the static ones do. Removing a child links its successor to
  its predecessor, so a removed child is not kept alive by an edge.

Adding, finding and removing a dynamic child costs O(1) however many there are; so do
the supervisor's reactions to one child's exit under `one_for_one` (the children that
depend on it are found from its holders, not by scanning the list).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tether._core._records import (
    Barrier,
    Node,
    Record,
    ServiceState,
    attach,
    detach,
    order_after,
)

__all__ = ["Children", "brought_up", "running_dependents"]


class _Slot:
    """Where a dynamic child sits: its position for sorting, and its neighbours.

    `place` stands for the child before it, for the services the child's start
    brought up that only it uses: they stop before that child too, as OTP stops a
    child with all it has before the next. Moving the child (its predecessor removed)
    moves them with it, by changing `place` alone.
    """

    __slots__ = ("brought", "next", "place", "position", "prev")

    def __init__(self, position: int, prev: Record | None) -> None:
        self.position = position
        self.prev = prev
        self.next: Record | None = None
        self.place: Barrier | None = None  # made for the first child that brings some up


class Children:
    """The children of one supervisor's run, in start order: static, then dynamic."""

    __slots__ = ("_last", "_next_position", "_static_set", "deleted", "dynamic", "static")

    def __init__(self) -> None:
        self.static: list[Record] = []
        self._static_set: dict[Record, int] = {}
        self.deleted: set[Record] = set()
        self.dynamic: dict[Record, _Slot] = {}
        self._last: Record | None = None
        self._next_position = 0

    def reset(self, static: list[Record]) -> None:
        """A new run: the static children (in start order) and no dynamic ones."""
        self.static = static
        self._static_set = {rec: i for i, rec in enumerate(static)}
        self.deleted = set()
        self.dynamic = {}
        self._last = None
        self._next_position = len(static)

    def forget_dynamic(self) -> None:
        """The supervisor stops: the engine stops the dynamic children; the list forgets them."""
        self.dynamic = {}
        self._last = None

    def __contains__(self, rec: object) -> bool:
        if rec in self.dynamic:
            return True
        return rec in self._static_set and rec not in self.deleted

    def __len__(self) -> int:
        return len(self.static) - len(self.deleted) + len(self.dynamic)

    def __iter__(self) -> Iterator[Record]:
        """The children in start order."""
        deleted = self.deleted
        for rec in self.static:
            if rec not in deleted:
                yield rec
        yield from self.dynamic

    def order(self) -> list[Record]:
        """The children in start order, as a list."""
        return list(self)

    def is_dynamic(self, rec: Record) -> bool:
        return rec in self.dynamic

    def sort(self, records: Iterable[Record]) -> list[Record]:
        """`records` (children) in start order."""
        static, dynamic = self._static_set, self.dynamic

        def position(rec: Record) -> int:
            slot = dynamic.get(rec)
            return slot.position if slot is not None else static[rec]

        return sorted(records, key=position)

    # ------------------------------------------------------------- dynamic ones

    def add(self, own: Record, rec: Record) -> None:
        """`rec`, just started as a root, joins the end of the list and `own`'s dependencies.

        The caller has let go of `rec`'s root hold; `own` holds it from now on.
        """
        slot = _Slot(self._next_position, self._last)
        self._next_position += 1
        if self._last is not None:
            self.dynamic[self._last].next = rec
        self._last = rec
        self.dynamic[rec] = slot
        attach(own, rec)
        self.keep_place(rec)
        self.place_brought(own, rec)

    def keep_place(self, rec: Record) -> None:
        """`rec` (a dynamic child, just started again) waits for the child before it.

        Its start as a root of its own forgot that edge; with it, a stop that takes both
        stops `rec` first, and what `rec` brought up (see `place_brought`) too.
        """
        before = self._before(rec)
        order_after(rec, (before,) if before is not None else ())
        place = self.dynamic[rec].place
        if place is not None:
            place.after = (before,) if before is not None else ()

    def lose_place(self, rec: Record) -> None:
        """`rec` (a dynamic child) stops alone: nothing leads to the children before it.

        Neither its edge nor those of what it brought up: planning its stop would walk
        the list of running children through them.
        """
        order_after(rec, ())
        place = self.dynamic[rec].place
        if place is not None:
            place.after = ()

    def place_brought(self, own: Record, rec: Record) -> None:
        """What the start of `rec` (a dynamic child) brought up for it alone keeps its place.

        Those services stop before the child before `rec`, as `rec` does.
        """
        brought = brought_up(rec, self, own)
        if not brought:
            return
        slot = self.dynamic[rec]
        place = slot.place
        if place is None:
            before = self._before(rec)
            place = slot.place = Barrier(own, slot.position, [] if before is None else [before])
        for node in brought:
            if place not in node.after:
                node.after = (*node.after, place)

    def _before(self, rec: Record) -> Node | None:
        prev = self.dynamic[rec].prev
        if prev is not None:
            return prev
        return self.static[-1] if self.static else None

    def remove(self, own: Record, rec: Record) -> None:
        """`rec` (a dynamic child, down) leaves the list and `own`'s dependencies."""
        slot = self.dynamic.pop(rec)
        prev, after = slot.prev, slot.next
        if prev is not None:
            self.dynamic[prev].next = after
        if after is not None:
            self.dynamic[after].prev = prev
            self.keep_place(after)  # it waited for `rec`: now for what `rec` waited for
        else:
            self._last = prev
        rec.after = rec.deps  # its edge to its predecessor would keep that one alive
        if slot.place is not None:
            slot.place.after = ()  # and so would that of what it brought up
        detach(own, rec)

    def delete_static(self, own: Record, rec: Record) -> None:
        """A static child (down) leaves the list until the supervisor's next start."""
        self.deleted.add(rec)
        detach(own, rec)


def brought_up(rec: Record, children: Children, own: Record) -> list[Record]:
    """The running services `rec` depends on, directly or not, that only it uses.

    Those its start brought up for itself: held by `rec` or by others of them alone,
    neither children of the supervisor `own` nor roots. A service shared with
    another one is left out at its first other holder, so a dependency shared by
    thousands of children costs one look.
    """
    found: list[Record] = []
    inside: set[Record] = {rec}
    seen: set[Record] = {rec, own}
    queue: list[Record] = list(rec.deps)
    i = 0
    while i < len(queue):
        dep = queue[i]
        i += 1
        if dep in seen:
            continue
        seen.add(dep)
        if dep.state is not ServiceState.RUNNING or dep.root_holds or dep in children:
            continue
        if all(holder in inside for holder in dep.holders):
            inside.add(dep)
            found.append(dep)
            queue.extend(dep.deps)
    return found


def running_dependents(targets: Iterable[Record], children: Children, own: Record) -> set[Record]:
    """The children that run and depend on one of `targets`, directly or not.

    Found from the holders of `targets` (a running service holds what it depends on),
    through services of their own and other children, never up through the
    supervisor `own` itself: the cost is the size of what depends on `targets`.
    """
    found: set[Record] = set()
    seen: set[Record] = {own}
    stack = list(targets)
    seen.update(stack)
    while stack:
        rec = stack.pop()
        for holder in rec.holders:
            if holder in seen:
                continue
            seen.add(holder)
            if holder in children:
                found.add(holder)
            stack.append(holder)
    return found

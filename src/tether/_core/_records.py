"""The engine's records: what it keeps per service, its ordering barriers, and names.

A `Record` lives in the service's `__dict__`, created on first use (services are
mixins with no `__init__` of tether's); a `ClassInfo` is kept on each service class.
The engine's modules read and write them. At runtime this module imports only the
errors: the service and operation types it names are imported for type checking.
"""

from __future__ import annotations

import asyncio
import enum
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, overload

from ._errors import DefinitionError, HookError

if TYPE_CHECKING:
    from ._base import ServiceBase
    from ._scheduler import Operation
    from ._stages import Stage
    from ._tasks import TaskSpec

__all__ = [
    "Barrier",
    "ClassInfo",
    "Edges",
    "Members",
    "Node",
    "Record",
    "ServiceState",
    "attach",
    "detach",
    "display_name",
    "hold",
    "order_after",
    "unhold",
]


class ServiceState(enum.StrEnum):
    """Where a service is in its lifecycle."""

    CREATED = "created"
    """Never started."""
    STARTING = "starting"
    """Its `start` hook is running."""
    RUNNING = "running"
    """Started; its tasks and timers run."""
    STOPPING = "stopping"
    """Its `stop` hook is running, or its tasks are being cancelled."""
    STOPPED = "stopped"
    """Stopped cleanly; it can be started again."""
    FAILED = "failed"
    """Its last run ended badly (failed start, crashed task, failed or late stop); it
    can be started again."""


# --------------------------------------------------------------------------- records


class Node:
    """A vertex the engine schedules: a service's record or an ordering barrier.

    `after` lists the nodes that must have started before this one: its
    dependencies, and the gate of the group it was brought up in (what the items
    written before it needed). Stopping follows the same edges in reverse. `gsucc`
    lists the nodes that have this one in their `after` for ordering rather than as
    a dependency (its dependents are found through `holders`). `member`,
    `pending` and `next` are scratch space of the operation that owns the node.
    """

    __slots__ = ("after", "gsucc", "member", "next", "pending")

    after: Sequence[Node]
    gsucc: list[Node] | None
    member: object
    pending: int
    next: list[Node] | None

    def __init__(self) -> None:
        self.after = _EMPTY
        self.gsucc = None
        self.member = None
        self.pending = 0
        self.next = None


class Barrier(Node):
    """Stands for "every item written before this point has started" (facet's groups).

    `owner` is the service whose `dependencies` wrote the items, `item` the index
    of the first item that waits for it; both only name it in messages.
    """

    __slots__ = ("item", "owner")

    owner: Record
    item: int

    def __init__(self, owner: Record, item: int, after: list[Node]) -> None:
        super().__init__()
        self.owner = owner
        self.item = item
        self.after = after

    def __repr__(self) -> str:
        return f"<Barrier before {self.owner.name}.dependencies[{self.item}]>"


class Supervising(Protocol):
    """What the engine asks of whoever supervises a service (see `Record.supervisor`).

    The engine never imports supervision: a supervisor registers itself on the records
    of its children, and the engine tells it about their exits through these methods.
    """

    def child_exited(self, rec: Record, exc: BaseException | None) -> Iterable[Record]:
        """`rec` exited (`exc` None: it asked to stop); return who else hears of it."""
        ...

    def child_cancelled(self, rec: Record, task: asyncio.Task[Any]) -> None:
        """A background task of `rec` ended cancelled while `rec` ran."""
        ...


class RunExtras:
    """The per-run state most services never need, kept apart to keep records small."""

    __slots__ = (
        "crash_raised",
        "exit_event",
        "longest_block",
        "loop_blocks",
        "prune_at",
        "skipped_ticks",
        "sleepers",
        "thread_exit",
    )

    def __init__(self) -> None:
        self.crash_raised = False
        self.exit_event: asyncio.Event | None = None
        self.thread_exit: threading.Event | None = None
        self.sleepers: set[asyncio.Future[bool]] | None = None
        self.prune_at = 64
        self.skipped_ticks = 0
        self.loop_blocks = 0
        self.longest_block = 0.0


class Record(Node):
    """Everything the engine knows about one service; lives in the service's __dict__.

    Containers that most services never need (tasks, events, the per-run extras) are
    created on first use: a graph of 100,000 services should not cost 500,000
    allocations, and a running service should keep little memory.
    """

    __slots__ = (
        "changed_at",
        "crash",
        "deadline",
        "deps",
        "error",
        "exit_requested",
        "extras",
        "holders",
        "implicit",
        "info",
        "loop",
        "mark",
        "op",
        "released",
        "restarts",
        "root_holds",
        "seq",
        "service",
        "started_at",
        "state",
        "stopping",
        "supervisor",
        "task",
        "tasks",
    )

    service: ServiceBase
    info: ClassInfo
    state: ServiceState
    op: Operation | None
    """The operation that owns the service right now (starting, stopping, reloading)."""
    mark: object
    """Scratch of the synchronous walks (collecting a graph, planning a stop)."""
    deps: Sequence[Record]
    """What it depends on in this run: a tuple, or `Members` once `attach` added to it."""
    holders: tuple[()] | list[Record] | dict[Record, None]
    """The dependents that hold this service: from the moment their start is planned
    until their stop has finished. A service stops when nothing holds it any more. A
    list while short, a dict past that (see `hold` and `unhold`)."""
    implicit: tuple[ServiceBase, ...]
    """Dependencies added by tether itself (the injector), besides `dependencies`."""
    root_holds: int
    tasks: set[asyncio.Task[Any]] | None
    exit_requested: bool
    crash: BaseException | None
    extras: RunExtras | None
    stopping: bool
    loop: asyncio.AbstractEventLoop | None
    started_at: float | None
    released: list[asyncio.Future[None]] | None
    """Resolved, then cleared, when a holder lets go of this service (`wait_released`)."""
    restarts: int
    error: BaseException | None
    supervisor: Supervising | None
    """The supervisor this service is a child of, while that supervisor runs."""
    seq: int
    """When it last reached RUNNING, as a process-wide sequence number."""
    changed_at: float
    """perf_counter() of the last state change while events were published, else 0."""
    task: asyncio.Task[Any] | None
    """The task running this service's start or stop in a task of its own, if any."""
    deadline: float
    """Loop time by which the running stop hook must have returned (inf otherwise)."""

    def __init__(self, service: ServiceBase, info: ClassInfo) -> None:
        self.after = self.deps = _EMPTY
        self.gsucc = None
        self.seq = 0
        self.changed_at = 0.0
        self.member = None
        self.pending = 0
        self.next = None
        self.service = service
        self.info = info
        self.state = ServiceState.CREATED
        self.op = None
        self.mark = None
        self.holders = _EMPTY
        self.implicit = ()
        self.root_holds = 0
        self.tasks = None
        self.exit_requested = False
        self.crash = None
        self.extras = None
        self.stopping = False
        self.loop = None
        self.started_at = None
        self.restarts = 0
        self.error = None
        self.supervisor = None
        self.released = None
        self.task = None
        self.deadline = math.inf

    def reset_for_run(self) -> None:
        """Fresh per-run state: each run begins with new tasks, flags and events."""
        self.tasks = None
        self.exit_requested = False
        self.crash = None
        self.extras = None
        if self.info.blocking:
            self.more().thread_exit = threading.Event()
        self.stopping = False
        self.started_at = None
        self.error = None

    def more(self) -> RunExtras:
        """This run's extras, created on first use."""
        extras = self.extras
        if extras is None:
            extras = self.extras = RunExtras()
        return extras

    # The extras read as attributes of the record (None, False or 0 until set).

    @property
    def exit_event(self) -> asyncio.Event | None:
        return None if self.extras is None else self.extras.exit_event

    @exit_event.setter
    def exit_event(self, value: asyncio.Event | None) -> None:
        self.more().exit_event = value

    @property
    def thread_exit(self) -> threading.Event | None:
        return None if self.extras is None else self.extras.thread_exit

    @property
    def sleepers(self) -> set[asyncio.Future[bool]] | None:
        return None if self.extras is None else self.extras.sleepers

    @sleepers.setter
    def sleepers(self, value: set[asyncio.Future[bool]] | None) -> None:
        self.more().sleepers = value

    @property
    def crash_raised(self) -> bool:
        return False if self.extras is None else self.extras.crash_raised

    @crash_raised.setter
    def crash_raised(self, value: bool) -> None:
        self.more().crash_raised = value

    @property
    def prune_at(self) -> int:
        return 64 if self.extras is None else self.extras.prune_at

    @prune_at.setter
    def prune_at(self, value: int) -> None:
        self.more().prune_at = value

    @property
    def skipped_ticks(self) -> int:
        return 0 if self.extras is None else self.extras.skipped_ticks

    @skipped_ticks.setter
    def skipped_ticks(self, value: int) -> None:
        self.more().skipped_ticks = value

    @property
    def loop_blocks(self) -> int:
        return 0 if self.extras is None else self.extras.loop_blocks

    @property
    def longest_block(self) -> float:
        return 0.0 if self.extras is None else self.extras.longest_block

    def count_block(self, seconds: float) -> None:
        """Its code kept the event loop from turning for `seconds` (the runner's detector)."""
        extras = self.more()
        extras.loop_blocks += 1
        extras.longest_block = max(extras.longest_block, seconds)

    @property
    def name(self) -> str:
        return display_name(self.service)

    def __repr__(self) -> str:
        return f"<Record {self.name} {self.state.value}>"


class ClassInfo:
    """What a service class brings: its hooks per stage, its tasks, and any mistake in them.

    Built once per class and cached on it. Validation errors are kept and raised when
    the class is first used in a graph, before anything starts.
    """

    __slots__ = (
        "blocking",
        "custom_stages",
        "error",
        "hooks",
        "spawns",
        "start",
        "start_mode",
        "stop",
        "stop_mode",
        "timeout",
    )

    blocking: bool
    hooks: dict[Stage, str]
    custom_stages: frozenset[Stage]
    spawns: tuple[tuple[str, TaskSpec], ...]
    start: str | None
    stop: str | None
    error: HookError | None
    start_mode: int
    """Whether the start hook has ever suspended (see the scheduler); learned at run time."""
    stop_mode: int
    timeout: float | None
    """`graceful_shutdown_timeout` when the class keeps the default (None: ask each one)."""


_HOLDERS_AS_LIST: Final = 8
"""Up to this many holders are a list (small); past it, a dict (fast to remove from)."""


def hold(dep: Record, rec: Record) -> None:
    """`rec` holds `dep` (it depends on it and has not finished stopping)."""
    holders = dep.holders
    if isinstance(holders, tuple):
        dep.holders = [rec]
        return
    if isinstance(holders, list):
        if len(holders) < _HOLDERS_AS_LIST:
            holders.append(rec)
            return
        holders = dep.holders = dict.fromkeys(holders)
    holders[rec] = None


def unhold(dep: Record, rec: Record) -> bool:
    """`rec` lets go of `dep`; False if it did not hold it."""
    holders = dep.holders
    if isinstance(holders, tuple):
        return False
    if isinstance(holders, list):
        try:
            holders.remove(rec)
        except ValueError:
            return False
        return True
    if rec in holders:
        del holders[rec]
        return True
    return False


_EMPTY: tuple[Any, ...] = ()  # the edges of records that have no dependencies


# ------------------------------------------------------- dependencies added at run time


class Members(Sequence["Record"]):
    """The dependencies of a record that gained some while running (see `attach`).

    An ordered set: it reads as the tuple the graph walk makes (in order, `[-1]` the
    last), but adding and removing one costs O(1), so a supervisor can have thousands
    of children come and go.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Record]) -> None:
        self._items: dict[Record, None] = dict.fromkeys(items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._items)

    def __reversed__(self) -> Iterator[Record]:
        return reversed(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        if index == -1 and self._items:
            return next(reversed(self._items))
        return tuple(self._items)[index]

    def __repr__(self) -> str:
        return f"Members({list(self._items)!r})"


class Edges(Sequence[Node]):
    """`after` of a record whose `deps` are `Members`: those, then the gate(s) of its group.

    A view: it follows the members as they change, and keeps the gate last, so
    `after[-1]` is the gate when `len(after) > len(deps)`, as in the tuples.
    """

    __slots__ = ("deps", "trailing")

    def __init__(self, deps: Members, trailing: tuple[Node, ...]) -> None:
        self.deps = deps
        self.trailing = trailing

    def __len__(self) -> int:
        return len(self.deps) + len(self.trailing)

    def __iter__(self) -> Iterator[Node]:
        yield from self.deps
        yield from self.trailing

    @overload
    def __getitem__(self, index: int) -> Node: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Node]: ...
    def __getitem__(self, index: int | slice) -> Node | Sequence[Node]:
        if index == -1:
            return self.trailing[-1] if self.trailing else self.deps[-1]
        return (*self.deps, *self.trailing)[index]

    def __contains__(self, item: object) -> bool:
        return item in self.deps or item in self.trailing

    def __repr__(self) -> str:
        return f"Edges({list(self)!r})"


def attach(parent: Record, child: Record) -> None:
    """`parent` depends on `child` from now on, as if its `dependencies` had listed it.

    Both run: `child` was started on its own (by a supervisor's `start_child`). It
    joins `parent.deps` and `parent.after` (after the other dependencies, before the
    gate of `parent`'s group), and `parent` holds it. So what the engine does with
    dependencies reaches it: a stop of `parent` stops it after `parent` (unless
    something else still holds it), a reload reaches it, pictures show it. The caller
    lets go of whatever hold it had on `child` (its root hold) itself. The next run
    of `parent` has the dependencies its `dependencies` lists, as always.
    """
    deps = parent.deps
    if not isinstance(deps, Members):
        members = Members(deps)
        parent.after = _edges(members, tuple(parent.after[len(deps) :]))
        parent.deps = deps = members
    deps._items[child] = None
    hold(child, parent)


def detach(parent: Record, child: Record) -> None:
    """Undo `attach`: `parent` no longer depends on `child`, nor holds it.

    For a `child` that has stopped, or that something else holds: a running service
    that nothing holds any more is not stopped by this.
    """
    deps = parent.deps
    if isinstance(deps, Members):
        deps._items.pop(child, None)
    unhold(child, parent)


def order_after(rec: Record, nodes: Sequence[Node]) -> None:
    """`rec` waits for `nodes` too: its edges become its dependencies, then `nodes`.

    For a service a supervisor started as a root of its own (which has no gate): the
    nodes stand for its place in the supervisor's list, so it starts after them (had
    it started with them) and a stop that takes both stops it first.
    """
    rec.after = _edges(rec.deps, tuple(nodes))


def _edges(deps: Sequence[Record], trailing: tuple[Node, ...]) -> Sequence[Node]:
    if not trailing:
        return deps
    if isinstance(deps, Members):
        return Edges(deps, trailing)
    return (*deps, *trailing)


def display_name(service: object) -> str:
    """How errors and logs name a service: its class, and its `name` if it has one."""
    label = class_label(type(service))
    try:
        own = service.__dict__.get("name")
    except AttributeError:
        own = None
    if isinstance(own, str) and own:
        short = own if len(own) <= 40 else own[:37] + "..."
        return f"{label}[{short}]"
    return label


def class_label(cls: type) -> str:
    """A class's qualified name without the `<locals>` of a defining function."""
    return cls.__qualname__.rsplit("<locals>.", 1)[-1]


def check_grace(service: ServiceBase) -> float:
    """`cancel_grace` validated: a number of seconds, zero or more."""
    value: object = service.cancel_grace
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise DefinitionError(
            f"{display_name(service)}.cancel_grace must be a number of seconds, zero or "
            f"more, got {value!r}."
        )
    return float(value)


def check_timeout(service: ServiceBase) -> float:
    """`graceful_shutdown_timeout` validated: a positive number of seconds."""
    value: object = service.graceful_shutdown_timeout
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DefinitionError(
            f"{display_name(service)}.graceful_shutdown_timeout must be a positive "
            f"number of seconds (math.inf for no limit), got {value!r}."
        )
    return float(value)

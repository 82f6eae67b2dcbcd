"""Operations, and running one stage over a DAG: order, concurrency, cancellation.

An *operation* is one start, stop or reload of a root. It owns (claims) the services it
changes until it ends; an operation that needs a service another one owns waits for
that one to end and plans again (see `_engine`). Within an operation, a stage is a
pass over the nodes it owns: `forward` follows the `after` edges, `backward`
reverses them, `gather` ignores them. Every pass is Kahn's algorithm: a node runs
once everything it waits for has finished, independent nodes run concurrently.

The `start` and `stop` stages have passes of their own, tuned for speed
(`_passes`); this module holds what every pass shares and the generic pass that runs
every other stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import heapq
import itertools
import math
import sys
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, Final

from ._events import _subscribers
from ._records import Barrier, ClassInfo, Node, Record
from ._stages import Direction

__all__ = [
    "EAGER",
    "SUSPENDS",
    "SYNC",
    "UNKNOWN",
    "Begin",
    "OpKind",
    "Operation",
    "cancel_and_wait",
    "drive",
    "drive_sync",
    "guarded",
    "resume",
    "spawner",
]

# What is known of a class's hook for a stage: has it ever suspended?
UNKNOWN: Final = 0
SYNC: Final = 1
SUSPENDS: Final = -1

EAGER: Final = sys.version_info >= (3, 12)
"""Whether tasks can start eagerly (their first step runs at creation, Python 3.12+)."""


class OpKind(enum.Enum):
    START = "start"
    STOP = "stop"
    RELOAD = "reload"
    CLAIM = "claim"
    """A service held by code outside the engine for a while (a supervisor's round)."""
    SYNC = "sync"


class Operation:
    """One start, stop or reload in progress: what it owns and how it is going."""

    __slots__ = (
        "aborted",
        "adopted",
        "armed",
        "barriers",
        "done",
        "driver",
        "errors",
        "expired",
        "extra",
        "failure",
        "finished",
        "inflight",
        "infos",
        "inline",
        "inline_coro",
        "kind",
        "loop",
        "orphans",
        "probes",
        "records",
        "requeue",
        "self_cancels",
        "started",
        "subs",
        "tasks",
        "timer",
        "waiters",
        "wake",
    )

    def __init__(self, kind: OpKind, loop: asyncio.AbstractEventLoop | None) -> None:
        self.kind = kind
        self.loop = loop
        self.records: list[Record] = []
        self.barriers: list[Barrier] = []
        self.infos: set[ClassInfo] = set()
        self.started: list[Record] = []
        self.subs = bool(_subscribers.get())
        """Whether anyone listens to lifecycle events here (read once: hot paths skip them)."""
        self.errors: list[BaseException] = []
        self.failure: BaseException | None = None
        self.aborted = False
        self.finished = False
        self.driver: asyncio.Task[Any] | None = None
        self.inflight = 0
        """Nodes whose work runs in tasks of their own and has not been reported."""
        self.done: list[Node] = []
        """Nodes whose task has reported, for the driver to advance from."""
        self.tasks: list[Record] = []
        """Records whose work was given a task (`rec.task`) during the current pass."""
        self.probes: dict[ClassInfo, list[Record]] = {}
        self.requeue: list[Node] = []
        self.inline: Record | None = None
        self.inline_coro: Coroutine[Any, Any, Any] | None = None
        self.self_cancels = 0
        self.timer: asyncio.TimerHandle | None = None
        self.armed = math.inf
        self.expired: dict[Record, int] = {}
        self.extra: dict[Node, list[Node]] = {}
        """Predecessors a stop waits for through services that keep running."""
        self.orphans: list[Record] = []
        """Services a stop of this operation left with no holder: they stop with it."""
        self.adopted: set[Record] = set()
        """Orphans this stop took in while running (their earlier stages run late)."""
        self.wake: asyncio.Future[None] | None = None
        self.waiters: list[asyncio.Future[None]] | None = None

    def claim(self, records: list[Record], barriers: Iterable[Barrier] = ()) -> None:
        """Own `records` (and the barriers between them) until `release`."""
        for rec in records:
            rec.op = self
            rec.member = self
            self.infos.add(rec.info)
        for barrier in barriers:
            barrier.member = self
            self.barriers.append(barrier)
        self.records = records

    def release(self) -> None:
        """Give the records back; whoever waits for this operation goes on."""
        for rec in self.records:
            if rec.op is self:
                rec.op = None
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiters = self.waiters
        if waiters:
            self.waiters = None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def owns(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether `task` is one this operation is running (or waiting for)."""
        if task is None:
            return False
        return task is self.driver or any(rec.task is task for rec in self.records)

    def abort(self, exc: BaseException) -> None:
        """Stop a start at its first failure: nothing new begins, running work is cancelled."""
        if self.failure is None:
            self.failure = exc
        elif exc is not self.failure and not isinstance(exc, asyncio.CancelledError):
            self.errors.append(exc)
        if self.aborted:
            return
        self.aborted = True
        current = asyncio.current_task()
        for rec in self.tasks:
            task = rec.task
            if task is not None and task is not current:
                task.cancel()
        self.wakeup()

    def wakeup(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def report(self, node: Node) -> None:
        """A node's work, running in a task of its own, is done: tell the driver."""
        self.done.append(node)
        wake = self.wake
        if wake is not None:
            self.wake = None
            if not wake.done():
                wake.set_result(None)

    async def wait_done(self) -> None:
        """Until this operation has ended (at once if it has)."""
        if self.finished:
            return
        assert self.loop is not None
        fut = self.loop.create_future()
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = []
        waiters.append(fut)
        await fut

    def __repr__(self) -> str:
        state = "finished" if self.finished else "aborted" if self.aborted else "running"
        return f"<Operation {self.kind.value} {state} records={len(self.records)}>"


Begin = Callable[[Node, bool], "Coroutine[Any, Any, None] | None"]
OnError = Callable[[Node, BaseException], None]


def spawner(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]:
    """How the engine creates its tasks: eagerly where Python can (3.12+), else plainly.

    A custom task factory installed on the loop is respected.
    """
    if loop.get_task_factory() is not None:
        return loop.create_task
    if EAGER:  # pragma: no cover - Python 3.12+
        return functools.partial(asyncio.Task, loop=loop, eager_start=True)  # type: ignore[call-arg]
    return functools.partial(asyncio.Task, loop=loop)


# ------------------------------------------------------------------------ planning


def plan(nodes: list[Node], op: object, direction: Direction) -> None:
    """Set `pending` on every node for one stage in `direction`.

    Forward, a node waits for its predecessors (`after`) and, when done, releases its
    successors (`next`, built here). Backward, it waits for its successors and
    releases its predecessors, found by walking `after` itself: no list is built.
    """
    for node in nodes:
        node.pending = 0
    if direction is Direction.GATHER:
        return
    if direction is Direction.FORWARD:
        for node in nodes:
            node.next = None
        for node in nodes:
            for pred in node.after:
                if pred.member is op:
                    node.pending += 1
                    succ = pred.next
                    if succ is None:
                        pred.next = [node]
                    else:
                        succ.append(node)
    else:
        for node in nodes:
            for pred in node.after:
                if pred.member is op:
                    pred.pending += 1


# ------------------------------------------------------------------------- driving


async def drive(
    op: Operation, nodes: list[Node], direction: Direction, begin: Begin, on_error: OnError
) -> None:
    """Run `begin` over `nodes` in dependency order with maximal concurrency.

    `begin(node, alone)` does the synchronous part of a node's work and returns None
    when the node is done, or a coroutine for the rest: awaited here when `alone`,
    else run in a task of its own. `on_error` hears every failure; once `op` is
    aborted nothing new begins and running work is cancelled. On return, no task of
    this stage is left. Used for every stage but `start` and `stop`.
    """
    plan(nodes, op, direction)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    spawn = spawner(loop)
    ready: deque[Node] = deque(n for n in nodes if n.pending == 0)
    inflight: dict[Node, tuple[asyncio.Task[Any], Coroutine[Any, Any, None]]] = {}
    finished: deque[tuple[Node, BaseException | None]] = deque()
    wake: list[asyncio.Future[None] | None] = [None]

    advanced: set[int] = set()

    def advance(node: Node) -> None:
        advanced.add(id(node))
        if direction is Direction.FORWARD:
            for succ in node.next or ():
                succ.pending -= 1
                if succ.pending == 0:
                    ready.append(succ)
        elif direction is Direction.BACKWARD:
            for pred in node.after:
                if pred.member is op:
                    pred.pending -= 1
                    if pred.pending == 0:
                        ready.append(pred)

    async def in_task(node: Node, coro: Coroutine[Any, Any, None]) -> None:
        error: BaseException | None = None
        try:
            await coro
        except BaseException as exc:  # reported, never lost
            error = exc
        finished.append((node, error))
        fut = wake[0]
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def settle() -> None:
        """Cancel what runs, wait for it, and close what never began."""
        try:
            await cancel_and_wait([t for t, _ in inflight.values()])
        finally:
            for node, (_, work) in inflight.items():
                work.close()  # a no-op unless its task was cancelled before its first step
                if isinstance(node, Record):
                    node.task = None
            inflight.clear()
            while finished:
                node, error = finished.popleft()
                if error is not None and not isinstance(error, asyncio.CancelledError):
                    on_error(node, error)

    op.driver = task
    try:
        while True:
            while ready and not op.aborted:
                node = ready.popleft()
                if type(node) is Barrier:
                    advance(node)
                    continue
                alone = not ready and not inflight
                try:
                    work = begin(node, alone)
                except BaseException as exc:
                    on_error(node, exc)
                    advance(node)
                    continue
                if work is None:
                    advance(node)
                elif alone:
                    try:
                        await work
                    except asyncio.CancelledError as exc:
                        if task is not None and task.cancelling():
                            raise
                        on_error(node, exc)
                    except BaseException as exc:
                        on_error(node, exc)
                    advance(node)
                else:
                    spawned = spawn(in_task(node, work))
                    if isinstance(node, Record) and not spawned.done():
                        node.task = spawned
                    inflight[node] = (spawned, work)
            if op.aborted:
                break
            if not inflight:
                stuck = _stuck(nodes, advanced)
                if stuck is None:
                    break
                ready.append(stuck)
                continue
            while not finished and not op.aborted:
                fut = wake[0] = op.wake = loop.create_future()
                try:
                    await fut
                finally:
                    wake[0] = op.wake = None
            while finished:
                node, error = finished.popleft()
                del inflight[node]
                if isinstance(node, Record):
                    node.task = None
                if error is not None:
                    on_error(node, error)
                advance(node)
        if inflight:
            await settle()
    except BaseException:
        # Cancelled from outside (or a bug): leave no task of ours behind.
        await settle()
        raise
    finally:
        op.driver = None


def _stuck(nodes: list[Node], advanced: set[int]) -> Node | None:
    """Nothing is ready yet nodes wait: their waits form a cycle; the latest-started goes.

    Edges are as the order written made them; one from a run that has ended since (a
    service started again after what waited for it) can close a cycle with a
    dependency. The record that started last is let go first: any edge it still waits
    on is such an edge.
    """
    left = [node for node in nodes if id(node) not in advanced]
    if not left:
        return None
    latest = max(left, key=lambda node: node.seq if isinstance(node, Record) else -1)
    latest.pending = 0
    return latest


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait for all of them, even if we are cancelled meanwhile.

    A task cancelled already is not cancelled again: its cleanup (awaiting a thread,
    say) may need to await, and a second cancellation would interrupt it.
    """
    if not tasks:
        return
    for t in tasks:
        if not t.cancelling():
            t.cancel()
    cancelled = False
    pending = set(tasks)
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


OnSync = Callable[[Node], bool]


def drive_sync(nodes: list[Node], op: object, direction: Direction, run: OnSync) -> None:
    """The blocking counterpart of `drive`: one node at a time.

    Among the nodes that may run next, the one that started last goes first when
    walking backward (and first-started when forward), so siblings of a concurrent
    group stop in exact reverse of their start. Ties keep the order written.
    """
    plan(nodes, op, direction)
    sign = -1 if direction is Direction.BACKWARD else 1
    order = itertools.count()
    ready: list[tuple[int, int, Node]] = []

    def push(node: Node) -> None:
        key = node.seq * sign if isinstance(node, Record) else -(1 << 62)
        heapq.heappush(ready, (key, next(order), node))

    for node in nodes:
        if node.pending == 0:
            push(node)
    advanced: set[int] = set()
    while True:
        if not ready:
            stuck = _stuck(nodes, advanced)
            if stuck is None:
                return
            push(stuck)
        node = heapq.heappop(ready)[2]
        advanced.add(id(node))
        if type(node) is not Barrier and not run(node):
            return
        if direction is Direction.FORWARD:
            for succ in node.next or ():
                succ.pending -= 1
                if succ.pending == 0:
                    push(succ)
        elif direction is Direction.BACKWARD:
            for pred in node.after:
                if pred.member is op:
                    pred.pending -= 1
                    if pred.pending == 0:
                        push(pred)


# ---------------------------------------------------------- continuing a hook


@types.coroutine
def resume(
    coro: Coroutine[Any, Any, Any], yielded: Any, context: contextvars.Context | None
) -> Generator[Any, Any, Any]:
    """Continue `coro`, stepped once in this task and suspended on `yielded`.

    Every step runs in `context` (the hook's own copy of its starter's context), or
    in the current task's context when None.
    """
    run = context.run if context is not None else _call
    while True:
        try:
            yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = run(coro.send, None)
            except StopIteration as stop:
                return stop.value


def _call(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


class HookExpiredError(Exception):
    """A guarded hook outlived its deadline (and maybe its grace period)."""

    def __init__(self, abandoned: bool) -> None:
        super().__init__()
        self.abandoned = abandoned


@types.coroutine
def guarded(
    coro: Coroutine[Any, Any, Any],
    yielded: Any,
    context: contextvars.Context | None,
    deadline: float,
    grace: float,
) -> Generator[Any, Any, None]:
    """Continue `coro` until `deadline`; then cancel it, and abandon it if it ignores that.

    Raises `HookExpiredError` when the deadline passed. Cancellation from
    outside passes through to `coro` and propagates as usual; like
    `asyncio.timeout`, the uncancel protocol tells our cancellations from anyone
    else's. Used by the stages of the stop phase other than `stop` itself.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    run = context.run if context is not None else _call
    baseline = task.cancelling()
    expiries = 0  # 1: past the deadline, hook cancelled; 2: past the grace, abandon it
    ours_pending = 0

    def expire() -> None:
        nonlocal expiries, ours_pending
        expiries += 1
        ours_pending += 1
        task.cancel()

    handle = loop.call_at(deadline, expire)
    try:
        while True:
            try:
                yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except asyncio.CancelledError as exc:
                ours = False
                if ours_pending:
                    ours_pending = 0
                    ours = task.uncancel() <= baseline
                if ours and expiries >= 2:
                    with contextlib.suppress(RuntimeError):  # it ignored GeneratorExit too
                        coro.close()
                    raise HookExpiredError(abandoned=True) from None
                if ours:
                    handle = loop.call_at(loop.time() + grace, expire)
                try:
                    yielded = run(coro.throw, exc)
                except BaseException as raised:
                    if expiries:
                        raise HookExpiredError(abandoned=False) from raised
                    if isinstance(raised, StopIteration):
                        return
                    raise
            except BaseException as exc:
                try:
                    yielded = run(coro.throw, exc)
                except StopIteration:
                    if expiries:
                        raise HookExpiredError(abandoned=False) from None
                    return
            else:
                try:
                    yielded = run(coro.send, None)
                except StopIteration:
                    if expiries:
                        raise HookExpiredError(abandoned=False) from None
                    return
    finally:
        handle.cancel()

"""Running one stage over a DAG: order, concurrency, and how each node's work is executed.

A stage is a pass over the nodes an operation owns. ``forward`` follows the ``after``
edges, ``backward`` reverses them, ``gather`` ignores them. The driver is Kahn's
algorithm: a node runs once everything it waits for has finished, independent nodes
run concurrently, and the first failure of a start stops anything new from beginning.

How a node's work runs is chosen per service class, to avoid a task where one buys
nothing (most hooks finish without ever suspending):

* a node alone in the ready set is awaited directly in the operation's task;
* for a class not yet seen, the first instance runs as a *probe* task and its siblings
  of the same class wait one loop turn for the probe's first step;
* a class whose hooks have always finished without suspending is stepped directly in
  the operation's task; should one suspend after all, it is finished there and the
  class is marked as suspending;
* a class that has suspended gets a task per node, which reports its own outcome.

Every hook runs in a copy of the context of the code that started the operation, as a
task would, whichever way it is executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import heapq
import itertools
import sys
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, Final

from ._service import Barrier, ClassInfo, Node, Record
from ._stages import Direction

__all__ = [
    "DEFER",
    "SUSPENDS",
    "SYNC",
    "UNKNOWN",
    "Begin",
    "Inline",
    "OpKind",
    "Operation",
    "drive",
    "drive_sync",
    "guarded",
    "report",
    "reporting",
    "resume",
]

# What is known of a class's hook for a stage: has it ever suspended?
UNKNOWN: Final = 0
SYNC: Final = 1
SUSPENDS: Final = -1


class OpKind(enum.Enum):
    START = "start"
    STOP = "stop"
    RELOAD = "reload"
    SYNC = "sync"


class Operation:
    """One start, stop or reload in progress: what it claimed and how it is going."""

    __slots__ = (
        "aborted",
        "barriers",
        "driver",
        "errors",
        "failure",
        "finished",
        "inflight",
        "infos",
        "inline",
        "kind",
        "loop",
        "probes",
        "records",
        "requeue",
        "self_cancels",
        "started",
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
        self.errors: list[BaseException] = []
        self.failure: BaseException | None = None
        self.aborted = False
        self.driver: asyncio.Task[Any] | None = None
        self.inflight: dict[asyncio.Task[Any], tuple[Node, Coroutine[Any, Any, None]]] = {}
        self.finished: deque[tuple[asyncio.Task[Any], BaseException | None]] = deque()
        self.probes: dict[ClassInfo, list[Node]] = {}
        self.requeue: list[Node] = []
        self.inline: Node | None = None
        self.self_cancels = 0
        self.wake: asyncio.Future[None] | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def claim(self, records: list[Record], barriers: Iterable[Barrier] = ()) -> None:
        """Own ``records`` (and the barriers between them) until :meth:`release`."""
        for rec in records:
            rec.op = self
            rec.member = self
            self.infos.add(rec.info)
        for barrier in barriers:
            barrier.member = self
            self.barriers.append(barrier)
        self.records = records

    def release(self) -> None:
        for rec in self.records:
            if rec.op is self:
                rec.op = None
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)

    def owns(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` is one this operation is running (or waiting for)."""
        return task is not None and (task is self.driver or task in self.inflight)

    def abort(self, exc: BaseException) -> None:
        """Stop a start at its first failure: nothing new begins, running work is cancelled."""
        if self.failure is None:
            self.failure = exc
        elif exc is not self.failure and not isinstance(exc, asyncio.CancelledError):
            self.errors.append(exc)
        if self.aborted:
            return
        self.aborted = True
        for task in self.inflight:
            task.cancel()
        if self.inline is not None and self.driver is not None:
            self.self_cancels += 1
            self.driver.cancel()
        else:
            self.wakeup()

    def wakeup(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait_done(self) -> None:
        assert self.loop is not None
        fut = self.loop.create_future()
        self.waiters.append(fut)
        await fut


class Inline:
    """A node's remaining work that must finish in the operation's own task."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.coro = coro


DEFER: Final = object()
"""What ``begin`` returns for a node set aside until its class's probe has stepped."""

Begin = Callable[[Node, bool], "Coroutine[Any, Any, None] | Inline | object | None"]
OnError = Callable[[Node, BaseException], None]


# ------------------------------------------------------------------------ planning


def plan(nodes: list[Node], op: object, direction: Direction) -> None:
    """Set ``pending`` on every node for one stage in ``direction``.

    Forward, a node waits for its predecessors (``after``) and, when done, releases its
    successors (``next``, built here). Backward, it waits for its successors and
    releases its predecessors, found by walking ``after`` itself: no list is built.
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
    """Run ``begin`` over ``nodes`` in dependency order with maximal concurrency.

    ``begin(node, alone)`` does the synchronous part of a node's work and returns None
    when the node is done, a coroutine for the rest (awaited here when ``alone``, else
    run as a task that reports its own outcome), an :class:`Inline` to await here in
    any case, or :data:`DEFER`. ``on_error`` hears every failure; after ``op.abort()``
    nothing new begins. On return, no task of this stage is left.
    """
    plan(nodes, op, direction)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    op.driver = task
    spawn = _spawner(loop)
    ready: deque[Node] = deque(n for n in nodes if n.pending == 0)
    inflight = op.inflight
    finished = op.finished

    def advance_forward(node: Node) -> None:
        succ = node.next
        if succ is not None:
            for s in succ:
                s.pending -= 1
                if s.pending == 0:
                    ready.append(s)

    def advance_backward(node: Node) -> None:
        for pred in node.after:
            if pred.member is op:
                pred.pending -= 1
                if pred.pending == 0:
                    ready.append(pred)

    def advance_none(node: Node) -> None:
        pass

    advance = (
        advance_forward
        if direction is Direction.FORWARD
        else advance_backward
        if direction is Direction.BACKWARD
        else advance_none
    )

    try:
        while True:
            if op.requeue:
                ready.extendleft(reversed(op.requeue))
                op.requeue.clear()
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
                elif work is DEFER:
                    continue
                elif alone or type(work) is Inline:
                    coro = work.coro if type(work) is Inline else work
                    assert isinstance(coro, Coroutine)
                    await _run_inline(op, task, node, coro, on_error)
                    advance(node)
                else:
                    assert isinstance(work, Coroutine)
                    # Not alone: the coroutine runs as a task and reports its outcome.
                    inflight[spawn(work)] = (node, work)
            if not inflight:
                break
            while not finished and not op.requeue and not op.aborted:
                op.wake = loop.create_future()
                try:
                    await op.wake
                finally:
                    op.wake = None
            aborted = op.aborted
            if aborted:
                await _cancel_and_wait([t for t in inflight if not t.done()])
            while finished:
                t, error = finished.popleft()
                node = inflight.pop(t)[0]
                if error is not None:
                    on_error(node, error)
                advance(node)
            if aborted:
                # Every task is done now; those cancelled before their first step
                # never ran, so never reported: close their coroutines.
                for node, never_run in inflight.values():
                    never_run.close()
                    on_error(node, asyncio.CancelledError())
                inflight.clear()
    except BaseException:
        # Cancelled from outside (or a bug): leave no task of ours behind.
        await _cancel_and_wait(list(inflight))
        while finished:
            t, error = finished.popleft()
            node = inflight.pop(t)[0]
            if error is not None and not isinstance(error, asyncio.CancelledError):
                on_error(node, error)
        for _, never_run in inflight.values():
            never_run.close()
        inflight.clear()
        raise
    finally:
        op.driver = None
        op.probes.clear()
        op.requeue.clear()


async def _run_inline(
    op: Operation,
    task: asyncio.Task[Any] | None,
    node: Node,
    coro: Coroutine[Any, Any, None],
    on_error: OnError,
) -> None:
    """Await one node's work in the operation's own task, telling our cancellation apart."""
    op.inline = node
    try:
        await coro
    except asyncio.CancelledError as exc:
        op.inline = None
        assert task is not None
        if op.self_cancels:
            op.self_cancels = 0
            if task.uncancel() > 0:
                raise
        elif task.cancelling():
            raise
        on_error(node, exc)
    except BaseException as exc:
        op.inline = None
        _forget_self_cancel(op, task)
        on_error(node, exc)
    else:
        op.inline = None
        _forget_self_cancel(op, task)


def _forget_self_cancel(op: Operation, task: asyncio.Task[Any] | None) -> None:
    """An inline node finished despite our cancellation: withdraw the request."""
    if op.self_cancels:
        op.self_cancels = 0
        assert task is not None
        task.uncancel()


def report(op: Operation, error: BaseException | None) -> None:
    """Tell the driver that the node running in the current task is done.

    Reporting from inside the task saves a done callback (one scheduled call) per node.
    """
    task = asyncio.current_task()
    assert task is not None
    op.finished.append((task, error))
    op.wakeup()


async def reporting(op: Operation, coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in a task of its own and report its outcome to the driver."""
    error: BaseException | None = None
    try:
        await coro
    except BaseException as exc:  # reported, never lost
        error = exc
    report(op, error)


def probe_or_defer(op: Operation, info: ClassInfo, node: Node) -> bool:
    """True if ``node`` becomes its class's probe; False if it was set aside."""
    waiting = op.probes.get(info)
    if waiting is None:
        op.probes[info] = []
        return True
    waiting.append(node)
    return False


def probed(op: Operation, info: ClassInfo) -> None:
    """The probe of ``info`` has stepped: hand the nodes set aside back to the driver."""
    waiting = op.probes.pop(info, None)
    if waiting:
        op.requeue.extend(waiting)
        op.wakeup()


def _spawner(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]:
    """How the driver creates tasks: eagerly where Python can (3.12+), else plainly.

    A custom task factory installed on the loop is respected.
    """
    if loop.get_task_factory() is not None:
        return loop.create_task
    if _EAGER:  # pragma: no cover - Python 3.12+
        return functools.partial(asyncio.Task, loop=loop, eager_start=True)  # type: ignore[call-arg]
    return functools.partial(asyncio.Task, loop=loop)


_EAGER: Final = sys.version_info >= (3, 12)


async def _cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for all of them, even if we are cancelled meanwhile."""
    if not tasks:
        return
    for t in tasks:
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


cancel_and_wait = _cancel_and_wait

OnSync = Callable[[Node], bool]


def drive_sync(nodes: list[Node], op: object, direction: Direction, run: OnSync) -> None:
    """The blocking counterpart of :func:`drive`: one node at a time.

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
    while ready:
        node = heapq.heappop(ready)[2]
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
    """Continue ``coro``, stepped once in this task and suspended on ``yielded``.

    Every step runs in ``context`` (the hook's own copy of its starter's context), or
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
    """Continue ``coro`` until ``deadline``; then cancel it, and abandon it if it ignores that.

    Raises :class:`HookExpiredError` when the deadline passed. Cancellation from
    outside passes through to ``coro`` and propagates as usual; like
    ``asyncio.timeout``, the uncancel protocol tells our cancellations from anyone
    else's.
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

"""The engine: running the stages of a phase over a graph of services.

Every operation (start a root, stop a root, reload, roll back a failed start) claims
the services it changes, runs its stages one after another, and releases them. A stage
is a pass over a DAG: ``forward`` follows the ``after`` edges, ``backward`` reverses
them, ``gather`` ignores them. The driver is Kahn's algorithm: a service runs once
everything it waits for has finished. A lone ready service with real work is awaited
inline in the operation's task; several at once each get a task of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import heapq
import itertools
import logging
import math
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, Final

from ._errors import HookError, ServiceStateError, StopTimeoutError
from ._events import EventKind, LifecycleEvent, _subscribers, publish, publishing
from ._graph import collect
from ._service import (
    Barrier,
    ClassInfo,
    Node,
    Record,
    ServiceBase,
    ServiceState,
    check_timeout,
    record,
)
from ._stages import (
    EXIT,
    INIT,
    RELOAD,
    START,
    STOP,
    Direction,
    Stage,
    _Phase,
    phase_stages,
)

__all__ = [
    "Operation",
    "add_task",
    "reload",
    "run_exit",
    "run_init",
    "signal_exit",
    "start_root",
    "start_root_sync",
    "stop_root",
    "stop_root_sync",
    "wait",
]

logger = logging.getLogger("tether")

_CREATED: Final = ServiceState.CREATED
_STARTING: Final = ServiceState.STARTING
_RUNNING: Final = ServiceState.RUNNING
_STOPPING: Final = ServiceState.STOPPING
_STOPPED: Final = ServiceState.STOPPED
_FAILED: Final = ServiceState.FAILED

# Start order across the process: stopping one thread's blocking graph walks it backwards.
_start_sequence = itertools.count(1)

# A stop hook that ignores its cancellation gets this much longer (capped by its own
# timeout) to finish before the engine abandons it and moves on.
_ABANDON_GRACE: Final = 1.0


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
        "records",
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
        self.inline: Node | None = None
        self.self_cancels = 0
        self.wake: asyncio.Future[None] | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def claim(self, records: list[Record], barriers: Iterable[Barrier] = ()) -> None:
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
        return task is not None and (task is self.driver or task in self.inflight)

    def abort(self, exc: BaseException) -> None:
        """Stop a start operation at the first failure: nothing new starts."""
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
        elif self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def wait_done(self) -> None:
        assert self.loop is not None
        fut = self.loop.create_future()
        self.waiters.append(fut)
        await fut


# ----------------------------------------------------------------------- events


_ENDINGS: Final = frozenset({_RUNNING, _STOPPED, _FAILED})


def _state(rec: Record, state: ServiceState) -> None:
    """Set ``rec``'s state and publish it, with the transition's duration when it ends one."""
    rec.state = state
    if _subscribers.get():
        now = time.perf_counter()
        began = rec.changed_at
        rec.changed_at = now
        publish(
            LifecycleEvent(
                kind=EventKind.STATE,
                service=rec.service,
                state=state,
                duration=now - began if began and state in _ENDINGS else None,
                error=rec.error if state is _FAILED else None,
            )
        )
    else:
        rec.changed_at = 0.0


def _hook_event(rec: Record, stage: Stage, started: float, error: BaseException | None) -> None:
    if publishing():
        publish(
            LifecycleEvent(
                kind=EventKind.HOOK,
                service=rec.service,
                stage=stage.name,
                duration=time.perf_counter() - started,
                error=error,
            )
        )


def _note(exc: BaseException, text: str) -> None:
    if not isinstance(exc, asyncio.CancelledError):
        exc.add_note(f"tether: {text}")


# ------------------------------------------------------------------------ planning


def _plan(nodes: list[Node], op: object, direction: Direction) -> None:
    """Set ``pending`` and ``next`` on every node for one stage in ``direction``."""
    for node in nodes:
        node.pending = 0
        node.next = None
    if direction is Direction.GATHER:
        return
    if direction is Direction.FORWARD:
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
                    succ = node.next
                    if succ is None:
                        node.next = [pred]
                    else:
                        succ.append(pred)


Begin = Callable[[Node, bool], Coroutine[Any, Any, None] | None]
OnError = Callable[[Node, BaseException], None]


async def _drive(
    op: Operation, nodes: list[Node], direction: Direction, begin: Begin, on_error: OnError
) -> None:
    """Run ``begin`` over ``nodes`` in dependency order with maximal concurrency.

    ``begin`` does the synchronous part of a node's work and returns a coroutine for
    the rest, or None when the node is done. ``on_error`` hears every failure; after
    ``op.abort()`` nothing new is begun. On return, no task of this stage is left.
    """
    _plan(nodes, op, direction)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    op.driver = task
    spawn = _spawner(loop)
    ready: deque[Node] = deque(n for n in nodes if n.pending == 0)
    inflight = op.inflight
    finished = op.finished

    def advance(node: Node) -> None:
        succ = node.next
        if succ is not None:
            for s in succ:
                s.pending -= 1
                if s.pending == 0:
                    ready.append(s)

    try:
        while True:
            while ready and not op.aborted:
                node = ready.popleft()
                if type(node) is Barrier:
                    advance(node)
                    continue
                # Alone: begin may step the hook in this task and we await the rest here.
                inline = not ready and not inflight
                try:
                    coro = begin(node, inline)
                except BaseException as exc:
                    on_error(node, exc)
                    advance(node)
                    continue
                if coro is None:
                    advance(node)
                elif inline:
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
                    advance(node)
                else:
                    inflight[spawn(_reporting(op, coro))] = (node, coro)
            if not inflight:
                break
            while not finished and not op.aborted:
                op.wake = loop.create_future()
                try:
                    await op.wake
                finally:
                    op.wake = None
            if op.aborted:
                await _cancel_and_wait([t for t in inflight if not t.done()])
            while finished:
                t, error = finished.popleft()
                node = inflight.pop(t)[0]
                if error is not None:
                    on_error(node, error)
                advance(node)
            if op.aborted:
                # Cancelled before their first step: they never got to report.
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


async def _reporting(op: Operation, coro: Coroutine[Any, Any, None]) -> None:
    """Run one node's work in its own task and report the outcome to the driver.

    Reporting from inside the task saves a done callback (one scheduled call) per node.
    """
    error: BaseException | None = None
    try:
        await coro
    except BaseException as exc:  # reported, never lost
        error = exc
    task = asyncio.current_task()
    assert task is not None
    op.finished.append((task, error))
    wake = op.wake
    if wake is not None and not wake.done():
        wake.set_result(None)


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


def _forget_self_cancel(op: Operation, task: asyncio.Task[Any] | None) -> None:
    """An inline hook finished despite our cancellation: withdraw the request."""
    if op.self_cancels:
        op.self_cancels = 0
        assert task is not None
        task.uncancel()


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


def _drive_sync(nodes: list[Node], op: object, direction: Direction, run: OnSync) -> None:
    """The blocking counterpart of :func:`_drive`: one node at a time.

    Among the nodes that may run next, the one that started last goes first when
    walking backward (and first-started when forward), so siblings of a concurrent
    group stop in exact reverse of their start. Ties keep the order written.
    """
    _plan(nodes, op, direction)
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
        succ = node.next
        if succ is not None:
            for s in succ:
                s.pending -= 1
                if s.pending == 0:
                    push(s)


OnSync = Callable[[Node], bool]


# ------------------------------------------------------------------- guarded hooks


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Continue ``coro``, already stepped once in this task and suspended on ``yielded``."""
    while True:
        try:
            yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value


class _HookExpiredError(Exception):
    """The guarded hook outlived its deadline (and maybe its grace period)."""

    def __init__(self, abandoned: bool) -> None:
        super().__init__()
        self.abandoned = abandoned


@types.coroutine
def _guarded(
    coro: Coroutine[Any, Any, Any], yielded: Any, deadline: float, grace: float
) -> Generator[Any, Any, None]:
    """Continue ``coro`` until ``deadline``; then cancel it, and abandon it if it ignores that.

    Raises ``_HookExpiredError`` when the deadline passed. Cancellation from outside passes
    through to ``coro`` and propagates as usual; like ``asyncio.timeout``, the
    uncancel protocol tells our cancellations from anyone else's.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
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
                    raise _HookExpiredError(abandoned=True) from None
                if ours:
                    handle = loop.call_at(loop.time() + grace, expire)
                try:
                    yielded = coro.throw(exc)
                except BaseException as raised:
                    if expiries:
                        raise _HookExpiredError(abandoned=False) from raised
                    if isinstance(raised, StopIteration):
                        return
                    raise
            except BaseException as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    if expiries:
                        raise _HookExpiredError(abandoned=False) from None
                    return
            else:
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    if expiries:
                        raise _HookExpiredError(abandoned=False) from None
                    return
    finally:
        handle.cancel()


# ------------------------------------------------------------------------ start


def _begin_start(op: Operation, rec: Record, inline: bool) -> Coroutine[Any, Any, None] | None:
    """Start one service: synchronously if its hook finishes without suspending."""
    _state(rec, _STARTING)
    info = rec.info
    attr = info.start
    if attr is not None:
        if info.blocking or not inline:
            return _start_async(op, rec)
        try:
            coro = getattr(rec.service, attr)()
            step = coro.send(None)
        except StopIteration:
            pass
        except BaseException as exc:
            return _start_failed(rec, exc)
        else:
            return _start_rest(op, rec, coro, step)
    _started(op, rec)
    return None


def _started(op: Operation, rec: Record) -> None:
    for attr, spec in rec.info.spawns:
        add_task(rec, spec.run(rec.service, attr, rec), f"{rec.name}.{attr}")
    rec.started_at = time.monotonic()
    rec.seq = next(_start_sequence)
    _state(rec, _RUNNING)
    op.started.append(rec)


def _start_failed(rec: Record, exc: BaseException) -> Coroutine[Any, Any, None] | None:
    """Record a failed start hook; tasks it spawned must be cancelled (asynchronously)."""
    rec.error = exc
    _note(exc, f"raised by {rec.name}.start (stage 'start')")
    if rec.tasks:
        return _discard_tasks_and_raise(rec, exc)
    _state(rec, _FAILED)
    raise exc


async def _discard_tasks_and_raise(rec: Record, exc: BaseException) -> None:
    tasks = list(rec.tasks or ())
    try:
        await _cancel_and_wait(tasks)
    finally:
        rec.tasks = None
        _state(rec, _FAILED)
    raise exc


async def _start_rest(
    op: Operation, rec: Record, coro: Coroutine[Any, Any, Any], step: Any
) -> None:
    try:
        await _resume(coro, step)
    except BaseException as exc:
        failed = _start_failed(rec, exc)
        if failed is not None:
            await failed
        raise
    _started(op, rec)


async def _start_async(op: Operation, rec: Record) -> None:
    """Start one service in a task of its own (or a worker thread for blocking ones)."""
    attr = rec.info.start
    assert attr is not None
    try:
        hook = getattr(rec.service, attr)
        if rec.info.blocking:
            await asyncio.to_thread(hook)
        else:
            await hook()
    except BaseException as exc:
        failed = _start_failed(rec, exc)
        if failed is not None:
            await failed
        raise
    _started(op, rec)


def _start_error(op: Operation) -> OnError:
    def on_error(node: Node, exc: BaseException) -> None:
        if isinstance(node, Record) and node.state is _STARTING:
            # Cancelled before its hook could report: it never started.
            node.error = node.error or exc
            _state(node, _FAILED)
        op.abort(exc)

    return on_error


def _hook_begin(stage: Stage, *, guard: bool) -> Begin:
    """``begin`` for a stage that calls a hook and changes no state."""

    def begin(node: Node, _inline: bool) -> Coroutine[Any, Any, None] | None:
        assert isinstance(node, Record)
        attr = node.info.hooks.get(stage)
        if attr is None:
            return None
        return _call_hook(node, stage, attr, guard=guard)

    return begin


async def _call_hook(rec: Record, stage: Stage, attr: str, *, guard: bool) -> None:
    began = time.perf_counter()
    service = rec.service
    try:
        hook = getattr(service, attr)
        if rec.info.blocking:
            if guard:
                await _in_thread_guarded(rec, stage, hook)
            else:
                await asyncio.to_thread(hook)
        else:
            result = hook()
            if isinstance(result, Coroutine):
                if guard:
                    await _run_guarded(rec, stage, result)
                else:
                    await result
            elif asyncio.isfuture(result) or hasattr(result, "__await__"):
                await result
    except BaseException as exc:
        _note(exc, f"raised by {rec.name}.{attr} (stage {stage.name!r})")
        _hook_event(rec, stage, began, exc)
        raise
    _hook_event(rec, stage, began, None)


def _timeout_error(rec: Record, stage: Stage, abandoned: bool) -> StopTimeoutError:
    timeout = rec.service.graceful_shutdown_timeout
    what = f"{rec.name}.{rec.info.hooks.get(stage, stage.name)}"
    tail = "; it ignored the cancellation and was abandoned" if abandoned else "; it was cancelled"
    return StopTimeoutError(
        f"{what} (stage {stage.name!r}) did not finish within graceful_shutdown_timeout="
        f"{timeout}s{tail}. The rest of the graph still stops; raise the timeout or "
        f"make the hook return sooner."
    )


async def _run_guarded(rec: Record, stage: Stage, coro: Coroutine[Any, Any, Any]) -> None:
    """Run a stop-phase hook within the service's graceful timeout."""
    try:
        step = coro.send(None)
    except StopIteration:
        return
    await _finish_guarded(rec, stage, coro, step)


async def _finish_guarded(
    rec: Record, stage: Stage, coro: Coroutine[Any, Any, Any], step: Any
) -> None:
    """Continue a suspended stop-phase hook; cancel it at the deadline, abandon it past that."""
    timeout = check_timeout(rec.service)
    if math.isinf(timeout):
        await _resume(coro, step)
        return
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        await _guarded(coro, step, deadline, min(timeout, _ABANDON_GRACE))
    except _HookExpiredError as expired:
        raise _timeout_error(rec, stage, expired.abandoned) from None


async def _in_thread_guarded(rec: Record, stage: Stage, func: Callable[[], Any]) -> None:
    loop = asyncio.get_running_loop()
    timeout: float | None = check_timeout(rec.service)
    if timeout is not None and math.isinf(timeout):
        timeout = None
    context = contextvars.copy_context()
    fut = loop.run_in_executor(None, context.run, func)
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    if not done:
        fut.add_done_callback(_retrieve)
        raise StopTimeoutError(
            f"{rec.name}.{rec.info.hooks.get(stage, stage.name)} (stage {stage.name!r}) "
            f"did not finish within graceful_shutdown_timeout="
            f"{rec.service.graceful_shutdown_timeout}s; it keeps running in its worker "
            f"thread (threads cannot be cancelled)."
        )
    fut.result()


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


# ------------------------------------------------------------------------- stop


def _begin_stop(op: Operation, rec: Record, inline: bool) -> Coroutine[Any, Any, None] | None:
    """Stop one service: synchronously if its hook finishes at once and it has no tasks."""
    _mark_stopping(rec)
    info = rec.info
    if info.stop is not None:
        if info.blocking or not inline:
            return _stop_async(op, rec)
        step = _first_stop_step(op, rec)
        if step is not None:
            return _stop_rest(op, rec, step)
    if rec.tasks:
        return _stop_rest(op, rec, None)
    _finish_stop(rec)
    return None


def _mark_stopping(rec: Record) -> None:
    rec.stopping = True
    sleepers = rec.sleepers
    if sleepers:
        for fut in sleepers:
            if not fut.done():
                fut.set_result(False)
    if not rec.exit_requested:
        rec.exit_requested = True
        if rec.exit_event is not None:
            rec.exit_event.set()
        if rec.thread_exit is not None:
            rec.thread_exit.set()
    _state(rec, _STOPPING)


def _finish_stop(rec: Record) -> None:
    if rec.crash is not None and rec.error is None:
        rec.error = rec.crash
    _state(rec, _FAILED if rec.error is not None else _STOPPED)


def _stop_failed(op: Operation, rec: Record, exc: BaseException) -> None:
    attr = rec.info.stop
    if not isinstance(exc, asyncio.CancelledError | StopTimeoutError):
        _note(exc, f"raised by {rec.name}.{attr} (stage 'stop')")
    rec.error = rec.error or exc
    op.errors.append(exc)


def _first_stop_step(op: Operation, rec: Record) -> tuple[Coroutine[Any, Any, Any], Any] | None:
    """Call the stop hook and run it until it first suspends; None if it finished."""
    attr = rec.info.stop
    assert attr is not None
    try:
        coro = getattr(rec.service, attr)()
        step = coro.send(None)
    except StopIteration:
        return None
    except BaseException as exc:
        _stop_failed(op, rec, exc)
        return None
    return coro, step


async def _stop_rest(
    op: Operation, rec: Record, step: tuple[Coroutine[Any, Any, Any], Any] | None
) -> None:
    """What is left of a stop once the hook suspended: the hook within its timeout, tasks."""
    try:
        if step is not None:
            try:
                await _finish_guarded(rec, STOP, *step)
            except BaseException as exc:
                _stop_failed(op, rec, exc)
        if rec.tasks:
            await _stop_tasks(op, rec)
    finally:
        _finish_stop(rec)


async def _stop_async(op: Operation, rec: Record) -> None:
    """Stop one service in a task of its own (or a worker thread for blocking ones)."""
    if rec.info.blocking:
        try:
            assert rec.info.stop is not None
            await _in_thread_guarded(rec, STOP, getattr(rec.service, rec.info.stop))
        except BaseException as exc:
            _stop_failed(op, rec, exc)
        await _stop_rest(op, rec, None)
        return
    await _stop_rest(op, rec, _first_stop_step(op, rec))


async def _stop_tasks(op: Operation, rec: Record) -> None:
    """Cancel the service's tasks and wait for them to finish.

    They get the service's graceful timeout (at most a second, since they only have to
    react to a cancellation); one that swallows CancelledError is reported and left.
    """
    if rec.sleepers:
        # Tasks woken from sleep() by this stop get a turn to return on their own.
        await asyncio.sleep(0)
    tasks = [t for t in rec.tasks or () if not t.done()]
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    _, pending = await asyncio.wait(tasks, timeout=min(check_timeout(rec.service), 1.0))
    if pending:
        names = ", ".join(sorted(repr(t.get_name()) for t in pending))
        exc = StopTimeoutError(
            f"{rec.name}: background task(s) {names} did not finish after being "
            f"cancelled; they swallow CancelledError and are left running. Let "
            f"CancelledError propagate out of them."
        )
        rec.error = rec.error or exc
        op.errors.append(exc)


# ------------------------------------------------------------------ operations


def _custom_stages(op: Operation) -> set[Stage]:
    stages: set[Stage] = set()
    for info in op.infos:
        stages |= info.custom_stages
    return stages


def _has_hooks(op: Operation, stage: Stage) -> bool:
    return any(stage in info.hooks for info in op.infos)


def _stage_begin(stage: Stage, count: int) -> float:
    if publishing():
        publish(LifecycleEvent(kind=EventKind.STAGE_BEGIN, stage=stage.name, count=count))
    return time.perf_counter()


def _stage_end(stage: Stage, began: float, count: int, error: BaseException | None) -> None:
    if publishing():
        publish(
            LifecycleEvent(
                kind=EventKind.STAGE_END,
                stage=stage.name,
                duration=time.perf_counter() - began,
                count=count,
                error=error,
            )
        )


def _record_begin(
    op: Operation,
    func: Callable[[Operation, Record, bool], Coroutine[Any, Any, None] | None],
) -> Begin:
    def begin(node: Node, inline: bool) -> Coroutine[Any, Any, None] | None:
        assert isinstance(node, Record)
        return func(op, node, inline)

    return begin


async def _start_phase(op: Operation) -> None:
    nodes: list[Node] = [*op.records, *op.barriers]
    on_error = _start_error(op)
    for stage in phase_stages(_Phase.START, _custom_stages(op)):
        if stage is START:
            begin = _record_begin(op, _begin_start)
        elif _has_hooks(op, stage):
            begin = _hook_begin(stage, guard=False)
        else:
            continue
        began = _stage_begin(stage, len(op.records))
        await _drive(op, nodes, stage.direction, begin, on_error)
        _stage_end(stage, began, len(op.records), op.failure)
        if op.failure is not None:
            return


async def _stop_phase(op: Operation) -> None:
    records = op.records
    barriers: list[Barrier] = []
    for rec in records:
        for pred in rec.after:
            if type(pred) is Barrier and pred.member is not op:
                pred.member = op
                barriers.append(pred)
    nodes: list[Node] = [*records, *barriers]

    def on_error(_node: Node, exc: BaseException) -> None:
        op.errors.append(exc)

    for stage in phase_stages(_Phase.STOP, _custom_stages(op)):
        if stage is STOP:
            begin = _record_begin(op, _begin_stop)
        elif _has_hooks(op, stage):
            begin = _hook_begin(stage, guard=True)
        else:
            continue
        began = _stage_begin(stage, len(records))
        await _drive(op, nodes, stage.direction, begin, on_error)
        _stage_end(stage, began, len(records), op.errors[0] if op.errors else None)


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion in its own task even if the caller is cancelled."""
    task = asyncio.get_running_loop().create_task(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


def _check_not_waiting_on_self(op: Operation, rec: Record, doing: str) -> None:
    if op.owns(asyncio.current_task()) or op.loop is not asyncio.get_running_loop():
        raise ServiceStateError(
            f"Cannot {doing}: {rec.name} is {rec.state.value} in an operation that is "
            f"waiting for this very code (for example, a service started from its own "
            f"stop hook)."
        )


async def _wait_busy(busy: list[Record], doing: str) -> None:
    """Wait for the operations that own ``busy`` to finish (never for our own)."""
    ops: dict[Operation, None] = {}
    for rec in busy:
        op = rec.op
        if op is not None:
            _check_not_waiting_on_self(op, rec, doing)
            ops[op] = None
    for op in ops:
        await op.wait_done()


def _crash_to_new_root(root: Record, crashed: list[Record]) -> None:
    for rec in crashed:
        if rec.crash is not None:
            signal_exit(root, rec.crash)
            return


async def start_root(service: ServiceBase) -> None:
    """Start ``service`` and everything it needs (``async with service``)."""
    root = record(service)
    loop = asyncio.get_running_loop()
    while True:
        if root.root_holds:
            raise ServiceStateError(
                f"{root.name} is already running as a root (entered with `async with` or "
                f"run()); a service is entered once at a time."
            )
        op = Operation(OpKind.START, loop)
        collection = collect(root, op)
        if collection.busy:
            await _wait_busy(collection.busy, f"start {root.name}")
            continue
        break
    new = collection.new
    op.claim(new, collection.barriers)
    for rec in new:
        rec.reset_for_run()
        rec.loop = loop
    for rec in new:
        for dep in rec.deps:
            dep.holders[rec] = None
    root.root_holds += 1
    if new:
        try:
            await _start_phase(op)
        except BaseException as exc:
            op.abort(exc)
        if op.failure is not None:
            root.root_holds -= 1
            await _rollback(op, root)
            raise op.failure
        op.release()
    _crash_to_new_root(root, collection.crashed)


async def _rollback(op: Operation, root: Record) -> None:
    """Undo a failed start: stop what it started, in reverse, and release its holds."""
    failure = op.failure
    assert failure is not None
    for rec in op.records:
        for dep in rec.deps:
            dep.holders.pop(rec, None)
    started = [r for r in op.started if r.state is _RUNNING]
    op.release()
    stop_op = Operation(OpKind.STOP, op.loop)
    if started:
        stop_op.claim(started)
        try:
            await _shielded(_run_stop(stop_op))
        except asyncio.CancelledError:
            if not isinstance(failure, asyncio.CancelledError):
                raise
    if isinstance(failure, asyncio.CancelledError):
        for exc in [*op.errors, *stop_op.errors]:
            logger.error("tether: error while rolling back %s", root.name, exc_info=exc)
        return
    for exc in [*op.errors, *stop_op.errors]:
        if exc is failure or isinstance(exc, asyncio.CancelledError):
            continue
        logger.error("tether: another error while starting %s", root.name, exc_info=exc)
        failure.add_note(f"tether: also raised while starting: {type(exc).__name__}: {exc}")


async def _run_stop(op: Operation) -> None:
    try:
        await _stop_phase(op)
    finally:
        op.release()


def _plan_stop(root: Record, op: Operation) -> list[Record] | Operation:
    """Release the root's hold and find what stops with it; or the op to wait for."""
    if root.root_holds == 0:
        raise ServiceStateError(f"{root.name} is not running as a root; nothing to stop.")
    if root.root_holds > 1 or root.holders:
        root.root_holds -= 1
        return []
    if root.op is not None:
        return root.op
    released: list[tuple[Record, Record]] = []
    stopping = [root]
    root.root_holds = 0
    i = 0
    while i < len(stopping):
        rec = stopping[i]
        i += 1
        for dep in rec.deps:
            holders = dep.holders
            if rec not in holders:
                continue
            del holders[rec]
            released.append((dep, rec))
            if not holders and not dep.root_holds and dep.state is _RUNNING:
                if dep.op is not None:
                    for d, r in released:
                        d.holders[r] = None
                    root.root_holds = 1
                    return dep.op
                stopping.append(dep)
    op.claim(stopping)
    return stopping


async def stop_root(service: ServiceBase, body_error: BaseException | None) -> None:
    """Stop ``service`` and what only it needed (leaving ``async with service``)."""
    root = record(service)
    loop = asyncio.get_running_loop()
    while True:
        op = Operation(OpKind.STOP, loop)
        planned = _plan_stop(root, op)
        if isinstance(planned, Operation):
            _check_not_waiting_on_self(planned, root, f"stop {root.name}")
            await planned.wait_done()
            continue
        break
    if planned:
        await _shielded(_run_stop(op))
    _raise_after_stop(root, op.errors, body_error)


def _raise_after_stop(
    root: Record, errors: list[BaseException], body_error: BaseException | None
) -> None:
    crash = root.crash if root.crash is not None and not root.crash_raised else None
    problems = [e for e in errors if e is not body_error]
    if crash is not None and crash is not body_error:
        if crash in problems:
            problems.remove(crash)
        problems.insert(0, crash)
    root.crash_raised = True
    if not problems:
        return
    if body_error is not None:
        for exc in problems:
            logger.error("tether: error while stopping %s", root.name, exc_info=exc)
            if not isinstance(body_error, asyncio.CancelledError):
                body_error.add_note(
                    f"tether: also raised while stopping {root.name}: {type(exc).__name__}: {exc}"
                )
        return
    primary, rest = problems[0], problems[1:]
    for exc in rest:
        logger.error("tether: error while stopping %s", root.name, exc_info=exc)
        primary.add_note(
            f"tether: also raised while stopping {root.name}: {type(exc).__name__}: {exc}"
        )
    raise primary


# --------------------------------------------------------------- blocking graphs


def _sync_claim(root: Record, doing: str) -> tuple[Operation, list[Record], list[Barrier]]:
    op = Operation(OpKind.SYNC, None)
    collection = collect(root, op)
    if collection.busy:
        busy = collection.busy[0]
        raise ServiceStateError(
            f"Cannot {doing}: {busy.name} is {busy.state.value} in another operation."
        )
    for rec in collection.new:
        if not rec.info.blocking:
            raise HookError(
                f"{rec.name} is an async tether.Service and cannot be started with "
                f"`with`; start the graph from async code (`async with`, or make the "
                f"root a Service) so its hooks have an event loop."
            )
    return op, collection.new, collection.barriers


def start_root_sync(service: ServiceBase) -> None:
    """Start a graph of blocking services in this thread (``with service``)."""
    root = record(service)
    if root.root_holds:
        raise ServiceStateError(
            f"{root.name} is already running as a root; a service is entered once at a time."
        )
    op, new, barriers = _sync_claim(root, f"start {root.name}")
    op.claim(new, barriers)
    for rec in new:
        rec.reset_for_run()
    for rec in new:
        for dep in rec.deps:
            dep.holders[rec] = None
    root.root_holds += 1
    nodes: list[Node] = [*new, *barriers]
    failure: BaseException | None = None
    try:
        for stage in phase_stages(_Phase.START, _custom_stages(op)):
            if stage is not START and not _has_hooks(op, stage):
                continue
            began = _stage_begin(stage, len(new))

            def run(node: Node, stage: Stage = stage) -> bool:
                nonlocal failure
                assert isinstance(node, Record)
                try:
                    _run_sync_hook(op, node, stage)
                except BaseException as exc:
                    failure = exc
                    return False
                return True

            _drive_sync(nodes, op, stage.direction, run)
            _stage_end(stage, began, len(new), failure)
            if failure is not None:
                break
    except BaseException as exc:  # pragma: no cover - a bug in the engine itself
        failure = exc
    if failure is None:
        op.release()
        return
    for rec in new:
        for dep in rec.deps:
            dep.holders.pop(rec, None)
    root.root_holds -= 1
    started = [r for r in op.started if r.state is _RUNNING]
    op.release()
    if started:
        stop_op = Operation(OpKind.SYNC, None)
        stop_op.claim(started)
        _stop_sync(stop_op)
        for error in stop_op.errors:
            logger.error("tether: another error while starting %s", root.name, exc_info=error)
            failure.add_note(f"tether: also raised while starting: {type(error).__name__}: {error}")
    raise failure


def _run_sync_hook(op: Operation, rec: Record, stage: Stage) -> None:
    if stage is START:
        _state(rec, _STARTING)
        began = time.perf_counter()
        attr = rec.info.start
        try:
            if attr is not None:
                getattr(rec.service, attr)()
        except BaseException as exc:
            rec.error = exc
            _note(exc, f"raised by {rec.name}.start (stage 'start')")
            _state(rec, _FAILED)
            raise
        rec.started_at = time.monotonic()
        rec.seq = next(_start_sequence)
        _state(rec, _RUNNING)
        op.started.append(rec)
        return
    if stage is STOP:
        _mark_stopping(rec)
        began = time.perf_counter()
        attr = rec.info.stop
        try:
            if attr is not None:
                getattr(rec.service, attr)()
        except BaseException as exc:
            _note(exc, f"raised by {rec.name}.{attr} (stage 'stop')")
            rec.error = rec.error or exc
            _hook_event(rec, STOP, began, exc)
            raise
        finally:
            _finish_stop(rec)
        return
    attr = rec.info.hooks.get(stage)
    if attr is None:
        return
    began = time.perf_counter()
    try:
        result = getattr(rec.service, attr)()
    except BaseException as exc:
        _note(exc, f"raised by {rec.name}.{attr} (stage {stage.name!r})")
        _hook_event(rec, stage, began, exc)
        raise
    if asyncio.iscoroutine(result):
        result.close()
        error = HookError(
            f"{rec.name}.{attr} returned a coroutine, but stage {stage.name!r} runs "
            f"without an event loop here; make it a plain function."
        )
        _hook_event(rec, stage, began, error)
        raise error
    _hook_event(rec, stage, began, None)


def _stop_sync(op: Operation) -> None:
    records = op.records
    barriers: list[Barrier] = []
    for rec in records:
        for pred in rec.after:
            if type(pred) is Barrier and pred.member is not op:
                pred.member = op
                barriers.append(pred)
    nodes: list[Node] = [*records, *barriers]
    try:
        for stage in phase_stages(_Phase.STOP, _custom_stages(op)):
            if stage is not STOP and not _has_hooks(op, stage):
                continue
            began = _stage_begin(stage, len(records))

            def run(node: Node, stage: Stage = stage) -> bool:
                assert isinstance(node, Record)
                try:
                    _run_sync_hook(op, node, stage)
                except BaseException as exc:
                    op.errors.append(exc)
                return True

            _drive_sync(nodes, op, stage.direction, run)
            _stage_end(stage, began, len(records), op.errors[0] if op.errors else None)
    finally:
        op.release()


def stop_root_sync(service: ServiceBase, body_error: BaseException | None) -> None:
    """Stop a blocking root and what only it needed (leaving ``with service``)."""
    root = record(service)
    op = Operation(OpKind.SYNC, None)
    planned = _plan_stop(root, op)
    if isinstance(planned, Operation):
        raise ServiceStateError(f"Cannot stop {root.name}: it is busy in another operation.")
    if planned:
        _stop_sync(op)
    _raise_after_stop(root, op.errors, body_error)


# ------------------------------------------------------------ init, exit, reload


def _run_sync_phase(service: ServiceBase, phase: _Phase, keep_going: bool) -> None:
    root = record(service)
    op = Operation(OpKind.SYNC, None)
    collection = collect(root, op)
    if collection.busy:
        raise ServiceStateError(f"Cannot run the {phase.value} phase: {root.name} is busy.")
    records = collection.new
    nodes: list[Node] = [*records, *collection.barriers]
    for node in nodes:
        node.member = op
    for rec in records:
        op.infos.add(rec.info)
    errors: list[BaseException] = []
    for stage in phase_stages(phase, _custom_stages(op)):
        if not _has_hooks(op, stage):
            continue
        began = _stage_begin(stage, len(records))

        def run(node: Node, stage: Stage = stage) -> bool:
            assert isinstance(node, Record)
            try:
                _run_sync_hook(op, node, stage)
            except BaseException as exc:
                errors.append(exc)
                return keep_going
            return True

        _drive_sync(nodes, op, stage.direction, run)
        _stage_end(stage, began, len(records), errors[0] if errors else None)
        if errors and not keep_going:
            break
    if errors:
        primary = errors[0]
        for exc in errors[1:]:
            logger.error("tether: error in the %s phase", phase.value, exc_info=exc)
            primary.add_note(f"tether: also raised: {type(exc).__name__}: {exc}")
        raise primary


def run_init(service: ServiceBase) -> None:
    """Run the ``init`` phase (sync, before any event loop) over the graph of ``service``.

    Stops at the first failing hook and raises it.
    """
    _run_sync_phase(service, INIT._phase, keep_going=False)


def run_exit(service: ServiceBase) -> None:
    """Run the ``exit`` phase (sync, after the event loop closed), dependents first.

    Every hook runs; the first error is raised once all have run.
    """
    _run_sync_phase(service, EXIT._phase, keep_going=True)


def _running_closure(root: Record) -> list[Record]:
    seen = {root}
    order = [root]
    i = 0
    while i < len(order):
        for dep in order[i].deps:
            if dep not in seen and dep.state is _RUNNING:
                seen.add(dep)
                order.append(dep)
        i += 1
    return order


async def reload(service: ServiceBase) -> None:
    """Run the ``reload`` phase over the running graph of ``service``, dependencies first.

    Every hook runs even if one fails; then the first error is raised with the others
    attached as notes. Services stay running either way.
    """
    root = record(service)
    if root.state is not _RUNNING:
        raise ServiceStateError(f"Cannot reload {root.name}: it is {root.state.value}.")
    loop = asyncio.get_running_loop()
    while True:
        records = _running_closure(root)
        busy = [r for r in records if r.op is not None]
        if busy:
            await _wait_busy(busy, f"reload {root.name}")
            continue
        break
    op = Operation(OpKind.RELOAD, loop)
    op.claim(records)
    nodes: list[Node] = list(records)

    def on_error(_node: Node, exc: BaseException) -> None:
        op.errors.append(exc)

    try:
        for stage in phase_stages(RELOAD._phase, _custom_stages(op)):
            if not _has_hooks(op, stage):
                continue
            began = _stage_begin(stage, len(records))
            await _drive(op, nodes, stage.direction, _hook_begin(stage, guard=False), on_error)
            _stage_end(stage, began, len(records), op.errors[0] if op.errors else None)
    finally:
        op.release()
    if op.errors:
        primary = op.errors[0]
        for exc in op.errors[1:]:
            primary.add_note(f"tether: also raised while reloading: {type(exc).__name__}: {exc}")
        raise primary


# ------------------------------------------------------------- tasks and exits


def add_task(rec: Record, coro: Coroutine[Any, Any, Any], name: str | None) -> asyncio.Task[Any]:
    """Spawn ``coro`` as a background task owned by ``rec``'s service."""
    given: object = coro
    if not asyncio.iscoroutine(given):
        hint = ""
        if callable(coro):
            hint = f" Call it: add_task({getattr(coro, '__name__', 'func')}(...))."
        raise TypeError(
            f"{rec.name}.add_task() takes a coroutine object, got {coro!r} "
            f"({type(coro).__name__}).{hint}"
        )
    state = rec.state
    if state is not _RUNNING and state is not _STARTING and state is not _STOPPING:
        coro.close()
        raise ServiceStateError(
            f"{rec.name}.add_task() needs a starting or running service, but it is "
            f"{state.value}; its tasks would have no owner to cancel them."
        )
    task = asyncio.get_running_loop().create_task(coro, name=name)
    task.add_done_callback(rec_task_done(rec))
    tasks = rec.tasks
    if tasks is None:
        rec.tasks = {task}
    else:
        tasks.add(task)
    return task


def rec_task_done(rec: Record) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        task_done(rec, task)

    return done


def task_done(rec: Record, task: asyncio.Task[Any]) -> None:
    """A background task of ``rec`` finished: a raised exception crashes the stack."""
    if rec.tasks is not None:
        rec.tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    _note(exc, f"raised by background task {task.get_name()!r} of {rec.name}")
    if publishing():
        publish(
            LifecycleEvent(
                kind=EventKind.TASK_CRASHED, service=rec.service, error=exc, detail=task.get_name()
            )
        )
    if rec.crash is None:
        rec.crash = exc
    op = rec.op
    if op is not None and op.kind is OpKind.START:
        op.abort(exc)
        return
    if op is not None and op.kind is OpKind.STOP:
        op.errors.append(exc)
        return
    if rec.state is not _RUNNING and rec.state is not _STARTING:
        logger.error("tether: a task of %s failed after it stopped", rec.name, exc_info=exc)
        return
    signal_exit(rec, exc)


def signal_exit(rec: Record, exc: BaseException | None) -> None:
    """Make ``wait()`` return (or raise ``exc``) for ``rec`` and everything depending on it."""
    seen = {rec}
    stack = [rec]
    while stack:
        current = stack.pop()
        if exc is not None and current.crash is None:
            current.crash = exc
        if not current.exit_requested:
            current.exit_requested = True
            if current.exit_event is not None:
                current.exit_event.set()
            if current.thread_exit is not None:
                current.thread_exit.set()
        for holder in current.holders:
            if holder not in seen:
                seen.add(holder)
                stack.append(holder)


async def wait(rec: Record) -> None:
    """Body of ``Service.wait()``."""
    if rec.state is _CREATED:
        raise ServiceStateError(
            f"{rec.name}.wait() needs a started service; use `async with service:` "
            f"or `await service.run()`."
        )
    if not rec.exit_requested:
        event = rec.exit_event
        if event is None:
            event = rec.exit_event = asyncio.Event()
        await event.wait()
    crash = rec.crash
    if crash is not None:
        rec.crash_raised = True
        raise crash

"""What happens to one service in each stage: its hooks, state, tasks, crashes and exits."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import math
import time
import types
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

from ._errors import HookError, ServiceStateError, StopTimeoutError
from ._events import EventKind, LifecycleEvent, _subscribers, publish, publishing
from ._scheduler import (
    DEFER,
    SUSPENDS,
    SYNC,
    UNKNOWN,
    Begin,
    HookExpiredError,
    Inline,
    Operation,
    OpKind,
    cancel_and_wait,
    guarded,
    probe_or_defer,
    probed,
    report,
    reporting,
    resume,
)
from ._service import Node, Record, ServiceState, check_timeout
from ._stages import START, STOP, Stage

__all__ = [
    "add_task",
    "begin_start",
    "begin_stop",
    "hook_begin",
    "run_sync_hook",
    "signal_exit",
    "task_crashed",
    "user_coroutine",
    "wait",
]

logger = logging.getLogger("tether")

_CREATED: Final = ServiceState.CREATED
_STARTING: Final = ServiceState.STARTING
_RUNNING: Final = ServiceState.RUNNING
_STOPPING: Final = ServiceState.STOPPING
_STOPPED: Final = ServiceState.STOPPED
_FAILED: Final = ServiceState.FAILED
_ENDINGS: Final = frozenset({_RUNNING, _STOPPED, _FAILED})
_COROUTINE: Final = types.CoroutineType
_current_task: Final = asyncio.current_task
_get_running_loop: Final = asyncio.get_running_loop
_coroutine_state: Final = inspect.getcoroutinestate
_CREATED_CORO: Final = inspect.CORO_CREATED
_PRUNE_AT: Final = 64

# A stop hook that ignores its cancellation gets this much longer (capped by its own
# timeout) to finish before the engine abandons it and moves on.
_ABANDON_GRACE: Final = 1.0

# Start order across the process: stopping one thread's blocking graph walks it backwards.
_start_sequence = itertools.count(1)


def _supervision() -> Any:
    """The supervision module: loaded by then, since only a Supervisor sets ``supervisor``."""
    from . import _supervise  # noqa: PLC0415 - `import tether` does not load supervision

    return _supervise


# ------------------------------------------------------------------------ events


def set_state(rec: Record, state: ServiceState) -> None:
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


def note(exc: BaseException, text: str) -> None:
    """Attach ``text`` to ``exc`` as a note (never to a cancellation)."""
    if not isinstance(exc, asyncio.CancelledError):
        exc.add_note(f"tether: {text}")


# ------------------------------------------------------------------------- start


def begin_start(op: Operation, rec: Record, alone: bool) -> Any:
    """Start one service; see :func:`tether._scheduler.drive` for what it returns."""
    info = rec.info
    attr = info.start
    if attr is None:
        set_state(rec, _STARTING)
        _started(op, rec)
        return None
    if info.blocking:
        set_state(rec, _STARTING)
        coro = _start_in_thread(op, rec)
        return coro if alone else reporting(op, coro)
    mode = info.start_mode
    if not alone and mode != SYNC:
        if mode == UNKNOWN and not probe_or_defer(op, info, rec):
            return DEFER
        set_state(rec, _STARTING)
        return _start_task(op, rec, probe=mode == UNKNOWN)
    set_state(rec, _STARTING)
    context = contextvars.copy_context()
    hook = getattr(rec.service, attr)()
    try:
        step = context.run(hook.send, None)
    except StopIteration:
        if mode == UNKNOWN:
            info.start_mode = SYNC
        _started(op, rec)
        return None
    except BaseException as exc:
        cleanup = _start_failed(rec, exc)
        if cleanup is None:
            raise
        rest = _then_raise(cleanup, exc)
        return rest if alone else Inline(rest)
    info.start_mode = SUSPENDS
    rest = _start_rest(op, rec, hook, step, context)
    return rest if alone else Inline(rest)


def _started(op: Operation, rec: Record) -> None:
    for attr, spec in rec.info.spawns:
        add_task(rec, spec.run(rec.service, attr, rec), f"{rec.name}.{attr}")
    rec.started_at = time.monotonic()
    rec.seq = next(_start_sequence)
    set_state(rec, _RUNNING)
    op.started.append(rec)


def _start_failed(rec: Record, exc: BaseException) -> Coroutine[Any, Any, None] | None:
    """Record a failed start; return the cleanup of tasks it spawned, if there are any."""
    rec.error = exc
    note(exc, f"raised by {rec.name}.start (stage 'start')")
    if rec.tasks:
        return _discard_tasks(rec)
    set_state(rec, _FAILED)
    return None


async def _discard_tasks(rec: Record) -> None:
    try:
        await cancel_and_wait(list(rec.tasks or ()))
    finally:
        rec.tasks = None
        set_state(rec, _FAILED)


async def _then_raise(cleanup: Coroutine[Any, Any, None], exc: BaseException) -> None:
    await cleanup
    raise exc


async def _start_rest(
    op: Operation,
    rec: Record,
    hook: Coroutine[Any, Any, Any],
    step: Any,
    context: contextvars.Context | None,
) -> None:
    """The rest of a start whose hook suspended after its first step in this task."""
    try:
        await resume(hook, step, context)
        _started(op, rec)
    except BaseException as exc:
        cleanup = _start_failed(rec, exc)
        if cleanup is not None:
            await cleanup
        raise


async def _start_task(op: Operation, rec: Record, probe: bool) -> None:
    """A whole start in a task of its own; reports to the driver, never raises."""
    info = rec.info
    error: BaseException | None = None
    try:
        assert info.start is not None
        hook = getattr(rec.service, info.start)()
        try:
            step = hook.send(None)
        except StopIteration:
            if probe:
                info.start_mode = SYNC
            _started(op, rec)
        else:
            info.start_mode = SUSPENDS
            if probe:
                probe = False
                probed(op, info)  # siblings go on concurrently while this one waits
            await _start_rest(op, rec, hook, step, None)
    except BaseException as exc:
        error = exc
        if rec.state is _STARTING:
            cleanup = _start_failed(rec, exc)
            if cleanup is not None:
                with contextlib.suppress(BaseException):
                    await cleanup
    finally:
        if probe:
            probed(op, info)
    report(op, error)


async def _start_in_thread(op: Operation, rec: Record) -> None:
    """Start a blocking service: its hook runs in a worker thread."""
    assert rec.info.start is not None
    try:
        await asyncio.to_thread(getattr(rec.service, rec.info.start))
        _started(op, rec)
    except BaseException as exc:
        cleanup = _start_failed(rec, exc)
        if cleanup is not None:
            await cleanup
        raise


def start_error(op: Operation) -> Callable[[Node, BaseException], None]:
    """How a start stage hears a failure: the service failed, the operation aborts."""

    def on_error(node: Node, exc: BaseException) -> None:
        if isinstance(node, Record) and node.state is _STARTING:
            # Cancelled before its hook could report: it never started.
            node.error = node.error or exc
            set_state(node, _FAILED)
        op.abort(exc)

    return on_error


# -------------------------------------------------------------------- other hooks


def hook_begin(op: Operation, stage: Stage, *, guard: bool) -> Begin:
    """``begin`` for a stage that calls a hook and changes no state."""

    def begin(node: Node, alone: bool) -> Any:
        assert isinstance(node, Record)
        attr = node.info.hooks.get(stage)
        if attr is None:
            return None
        coro = _call_hook(node, stage, attr, guard=guard)
        return coro if alone else reporting(op, coro)

    return begin


async def _call_hook(rec: Record, stage: Stage, attr: str, *, guard: bool) -> None:
    began = time.perf_counter()
    try:
        hook = getattr(rec.service, attr)
        if rec.info.blocking:
            if guard:
                await _in_thread_guarded(rec, stage, hook)
            else:
                await asyncio.to_thread(hook)
        else:
            context = contextvars.copy_context()
            result = context.run(hook)
            if isinstance(result, Coroutine):
                try:
                    step = context.run(result.send, None)
                except StopIteration:
                    pass
                else:
                    if guard:
                        await _finish_guarded(rec, stage, result, step, context)
                    else:
                        await resume(result, step, context)
            elif asyncio.isfuture(result) or hasattr(result, "__await__"):
                await result
    except BaseException as exc:
        note(exc, f"raised by {rec.name}.{attr} (stage {stage.name!r})")
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


async def _finish_guarded(
    rec: Record,
    stage: Stage,
    hook: Coroutine[Any, Any, Any],
    step: Any,
    context: contextvars.Context | None,
) -> None:
    """Continue a suspended stop-phase hook; cancel it at the deadline, abandon it past that."""
    timeout = check_timeout(rec.service)
    if math.isinf(timeout):
        await resume(hook, step, context)
        return
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        await guarded(hook, step, context, deadline, min(timeout, _ABANDON_GRACE))
    except HookExpiredError as expired:
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


# -------------------------------------------------------------------------- stop


def begin_stop(op: Operation, rec: Record, alone: bool) -> Any:
    """Stop one service; see :func:`tether._scheduler.drive` for what it returns."""
    info = rec.info
    attr = info.stop
    if attr is not None and info.blocking:
        mark_stopping(rec)
        coro = _stop_in_thread(op, rec)
        return coro if alone else reporting(op, coro)
    if not alone:
        if rec.tasks:
            mark_stopping(rec)
            return _stop_task(op, rec, probe=False)
        if attr is not None and info.stop_mode != SYNC:
            probe = info.stop_mode == UNKNOWN
            if probe and not probe_or_defer(op, info, rec):
                return DEFER
            mark_stopping(rec)
            return _stop_task(op, rec, probe)
    mark_stopping(rec)
    if attr is not None:
        context = contextvars.copy_context()
        step = _first_stop_step(op, rec, context)
        if step is not None:
            rest = _stop_rest(op, rec, step, context)
            return rest if alone else Inline(rest)
    if rec.tasks:
        return _stop_rest(op, rec, None, None)
    finish_stop(rec)
    return None


def mark_stopping(rec: Record) -> None:
    """A service's stop begins: wake its sleepers and waiters, state STOPPING."""
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
    set_state(rec, _STOPPING)


def finish_stop(rec: Record) -> None:
    if rec.crash is not None and rec.error is None:
        rec.error = rec.crash
    set_state(rec, _FAILED if rec.error is not None else _STOPPED)


def _stop_failed(op: Operation, rec: Record, exc: BaseException) -> None:
    attr = rec.info.stop
    if not isinstance(exc, asyncio.CancelledError | StopTimeoutError):
        note(exc, f"raised by {rec.name}.{attr} (stage 'stop')")
    rec.error = rec.error or exc
    op.errors.append(exc)


def _first_stop_step(
    op: Operation, rec: Record, context: contextvars.Context | None
) -> tuple[Coroutine[Any, Any, Any], Any] | None:
    """Call the stop hook and run it until it first suspends; None if it finished."""
    info = rec.info
    assert info.stop is not None
    try:
        hook = getattr(rec.service, info.stop)()
        step = context.run(hook.send, None) if context is not None else hook.send(None)
    except StopIteration:
        if info.stop_mode == UNKNOWN:
            info.stop_mode = SYNC
        return None
    except BaseException as exc:
        _stop_failed(op, rec, exc)
        return None
    info.stop_mode = SUSPENDS
    return hook, step


async def _stop_rest(
    op: Operation,
    rec: Record,
    step: tuple[Coroutine[Any, Any, Any], Any] | None,
    context: contextvars.Context | None,
) -> None:
    """What is left of a stop once the hook suspended: the hook within its timeout, tasks."""
    try:
        if step is not None:
            try:
                await _finish_guarded(rec, STOP, step[0], step[1], context)
            except BaseException as exc:
                _stop_failed(op, rec, exc)
        if rec.tasks:
            await _stop_tasks(op, rec)
    finally:
        finish_stop(rec)


async def _stop_task(op: Operation, rec: Record, probe: bool) -> None:
    """A whole stop in a task of its own; errors go to ``op.errors``; reports, never raises."""
    info = rec.info
    try:
        step = None
        if info.stop is not None:
            step = _first_stop_step(op, rec, None)
            if probe:
                probe = False
                probed(op, info)
        await _stop_rest(op, rec, step, None)
    finally:
        if probe:
            probed(op, info)
        report(op, None)


async def _stop_in_thread(op: Operation, rec: Record) -> None:
    """Stop a blocking service: its hook runs in a worker thread, bounded by its timeout."""
    try:
        assert rec.info.stop is not None
        await _in_thread_guarded(rec, STOP, getattr(rec.service, rec.info.stop))
    except BaseException as exc:
        _stop_failed(op, rec, exc)
    await _stop_rest(op, rec, None, None)


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


# ---------------------------------------------------------------- blocking hooks


def run_sync_hook(op: Operation, rec: Record, stage: Stage) -> None:
    """Run one service's hook for ``stage`` in this thread (graphs without a loop)."""
    if stage is START:
        set_state(rec, _STARTING)
        attr = rec.info.start
        try:
            if attr is not None:
                getattr(rec.service, attr)()
        except BaseException as exc:
            rec.error = exc
            note(exc, f"raised by {rec.name}.start (stage 'start')")
            set_state(rec, _FAILED)
            raise
        rec.started_at = time.monotonic()
        rec.seq = next(_start_sequence)
        set_state(rec, _RUNNING)
        op.started.append(rec)
        return
    if stage is STOP:
        mark_stopping(rec)
        began = time.perf_counter()
        attr = rec.info.stop
        try:
            if attr is not None:
                getattr(rec.service, attr)()
        except BaseException as exc:
            note(exc, f"raised by {rec.name}.{attr} (stage 'stop')")
            rec.error = rec.error or exc
            _hook_event(rec, STOP, began, exc)
            raise
        finally:
            finish_stop(rec)
        return
    attr = rec.info.hooks.get(stage)
    if attr is None:
        return
    began = time.perf_counter()
    try:
        result = getattr(rec.service, attr)()
    except BaseException as exc:
        note(exc, f"raised by {rec.name}.{attr} (stage {stage.name!r})")
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


# ------------------------------------------------------------- tasks and exits


def add_task(rec: Record, coro: Coroutine[Any, Any, Any], name: str | None) -> asyncio.Task[Any]:
    """Spawn ``coro`` as a background task owned by ``rec``'s service."""
    given: object = coro
    if type(given) is not _COROUTINE and not asyncio.iscoroutine(given):
        hint = ""
        if callable(given):
            hint = f" Call it: add_task({getattr(given, '__name__', 'func')}(...))."
        raise TypeError(
            f"{rec.name}.add_task() takes a coroutine object, got {given!r} "
            f"({type(given).__name__}).{hint}"
        )
    state = rec.state
    if state is not _RUNNING and state is not _STARTING and state is not _STOPPING:
        coro.close()
        raise ServiceStateError(
            f"{rec.name}.add_task() needs a starting or running service, but it is "
            f"{state.value}; its tasks would have no owner to cancel them."
        )
    tasks = rec.tasks
    if tasks is None:
        tasks = rec.tasks = set()
    elif len(tasks) >= rec.prune_at:
        _prune(rec, tasks)
    loop = _get_running_loop()
    if loop.get_task_factory() is None:
        task: asyncio.Task[Any] = _Task(_owned(rec, tasks, coro), loop=loop, name=name)
    else:  # respect the loop's task factory (an eager one, say)
        task = loop.create_task(_owned(rec, tasks, coro), name=name)
    tasks.add(task)
    return task


class _Task(asyncio.Task):  # type: ignore[type-arg]
    """A background task; a cancellation before its first step reaches the coroutine.

    With a plain Task, cancelling before the first step throws into the wrapper only,
    and the coroutine given to ``add_task`` would be collected unawaited (a
    RuntimeWarning that ``create_task`` does not give). Here it is closed, as a plain
    Task would have done by throwing into it, and the task leaves its owner's set.
    """

    __slots__ = ()

    def cancel(self, msg: Any = None) -> bool:
        wrapper: Any = self.get_coro()
        if not self.cancelling() and _coroutine_state(wrapper) == _CREATED_CORO:
            arguments = wrapper.cr_frame.f_locals
            arguments["coro"].close()
            arguments["tasks"].discard(self)
            rec: Record = arguments["rec"]
            if rec.supervisor is not None:
                _supervision().supervised_cancel(rec, self)
        return super().cancel(msg)


def _prune(rec: Record, tasks: set[asyncio.Task[Any]]) -> None:
    """Forget finished tasks that never ran: cancelled before their first step.

    Every other task removes itself as it ends; one cancelled before it began never
    enters its wrapper. Pruning when the set doubles keeps ``add_task`` O(1) amortized.
    """
    for done in [t for t in tasks if t.done()]:
        tasks.discard(done)
    rec.prune_at = max(_PRUNE_AT, 2 * len(tasks))


async def _owned(rec: Record, tasks: set[asyncio.Task[Any]], coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a background task of ``rec``: its bookkeeping, and a crash, happen in the task.

    A wrapper rather than a done callback: a done callback costs a trip through the
    event loop's ready queue for every task, which made ``add_task`` twice as slow as
    ``create_task``. ``tasks`` is the set of the run that spawned it (a task outliving
    its run must not touch the next run's set).
    """
    task: Any = _current_task()
    try:
        return await coro
    except asyncio.CancelledError:
        if rec.supervisor is not None:
            _supervision().supervised_cancel(rec, task)
        raise
    except BaseException as exc:
        tasks.discard(task)
        task.add_done_callback(_retrieve)  # its exception is reported here, not by asyncio
        task_crashed(rec, task, exc)
        raise
    finally:
        tasks.discard(task)


_OWNED_CODE: Final = _owned.__code__


def user_coroutine(task: asyncio.Task[Any]) -> object:
    """The coroutine ``task`` runs for its owner: what was given to ``add_task``."""
    coro: Any = task.get_coro()
    if getattr(coro, "cr_code", None) is _OWNED_CODE and coro.cr_frame is not None:
        return coro.cr_frame.f_locals.get("coro", coro)
    return coro


def task_crashed(rec: Record, task: asyncio.Task[Any], exc: BaseException) -> None:
    """A background task of ``rec`` raised ``exc``: it crashes the stack."""
    note(exc, f"raised by background task {task.get_name()!r} of {rec.name}")
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
        holders: Iterable[Record] = current.holders
        if current.supervisor is not None:  # its supervisor takes the exit over
            holders = _supervision().supervised_exit(current, exc)
        for holder in holders:
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

"""What happens to one service: its state, hooks, tasks, crashes, exits and holds.

The passes of `_passes` and the generic stage driver of `_scheduler` decide *when*
a service's work runs; this module is *what* that work is.

Longer than 600 lines because every change of one service's state is made here and
nowhere else: hooks, holds, tasks, crashes and exits.
"""

from __future__ import annotations

import asyncio
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
from ._records import Node, Record, ServiceState, check_grace, check_timeout
from ._scheduler import Begin, HookExpiredError, Operation, OpKind, cancel_and_wait, guarded, resume
from ._stages import START, STOP, Stage

__all__ = [
    "add_task",
    "call_hook",
    "discard_tasks",
    "finish_stop",
    "hook_begin",
    "mark_stopping",
    "note",
    "run_sync_hook",
    "set_state",
    "signal_exit",
    "start_error",
    "started",
    "stop_failed",
    "stop_tasks",
    "task_crashed",
    "timeout_error",
    "user_coroutine",
    "wait",
    "wake_released",
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
_monotonic: Final = time.monotonic

# Start order across the process: stopping one thread's blocking graph walks it backwards.
_start_sequence = itertools.count(1)


# ------------------------------------------------------------------------ events


def set_state(rec: Record, state: ServiceState) -> None:
    """Set `rec`'s state and publish it, with the transition's duration when it ends one."""
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
    """Attach `text` to `exc` as a note (never to a cancellation)."""
    if not isinstance(exc, asyncio.CancelledError):
        exc.add_note(f"tether: {text}")


# ------------------------------------------------------------------------- start


def started(op: Operation, rec: Record) -> None:
    """`rec`'s start hook returned: its tasks begin, it runs."""
    spawns = rec.info.spawns
    if spawns:
        for attr, spec in spawns:
            add_task(rec, spec.run(rec.service, attr, rec), f"{rec.name}.{attr}")
    rec.started_at = _monotonic()
    rec.seq = next(_start_sequence)
    if op.subs:
        set_state(rec, _RUNNING)
    else:
        rec.state = _RUNNING
        rec.changed_at = 0.0
    op.started.append(rec)


async def discard_tasks(rec: Record) -> None:
    """Cancel and await the tasks of a service whose start failed."""
    try:
        await cancel_and_wait(list(rec.tasks or ()))
    finally:
        rec.tasks = None


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


def hook_begin(stage: Stage, *, guard: bool) -> Begin:
    """`begin` for a stage that calls a hook and changes no state."""

    def begin(node: Node, alone: bool) -> Any:
        del alone
        assert isinstance(node, Record)
        attr = node.info.hooks.get(stage)
        if attr is None:
            return None
        return call_hook(node, stage, attr, guard=guard)

    return begin


async def call_hook(rec: Record, stage: Stage, attr: str, *, guard: bool) -> None:
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


def timeout_error(
    rec: Record, stage: Stage, abandoned: bool, *, thread: bool = False
) -> StopTimeoutError:
    """The error of a stop-phase hook that outlived `graceful_shutdown_timeout`."""
    timeout = rec.service.graceful_shutdown_timeout
    what = f"{rec.name}.{rec.info.hooks.get(stage, stage.name)}"
    if thread:
        tail = "; it keeps running in its worker thread (threads cannot be cancelled)"
    elif abandoned:
        tail = (
            f"; it ignored the cancellation for cancel_grace={check_grace(rec.service):g}s "
            f"and was abandoned"
        )
    else:
        tail = "; it was cancelled"
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
        await guarded(hook, step, context, deadline, check_grace(rec.service))
    except HookExpiredError as expired:
        raise timeout_error(rec, stage, expired.abandoned) from None


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
        raise timeout_error(rec, stage, abandoned=True, thread=True)
    fut.result()


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


# -------------------------------------------------------------------------- stop


def mark_stopping(rec: Record, op: Operation | None = None) -> None:
    """A service's stop begins: wake its sleepers and waiters, state STOPPING."""
    rec.stopping = True
    extras = rec.extras
    if extras is not None:
        sleepers = extras.sleepers
        if sleepers:
            for fut in sleepers:
                if not fut.done():
                    fut.set_result(False)
    if not rec.exit_requested:
        rec.exit_requested = True
        if extras is not None:
            if extras.exit_event is not None:
                extras.exit_event.set()
            if extras.thread_exit is not None:
                extras.thread_exit.set()
    if op is None or op.subs:
        set_state(rec, _STOPPING)
    else:
        rec.state = _STOPPING
        rec.changed_at = 0.0


def finish_stop(op: Operation | None, rec: Record) -> None:
    """`rec` has stopped (hook and tasks): its state, and its holds let go.

    A service holds its dependencies until its stop is over, so a dependency never
    begins to stop under a dependent that is still stopping, whichever operation stops
    each of them. A dependency this lets go of last, that no root holds, stops with
    `op` (its *orphans*, which the stop pass adopts).
    """
    if rec.crash is not None and rec.error is None:
        rec.error = rec.crash
    state = _FAILED if rec.error is not None else _STOPPED
    if op is None or op.subs:
        set_state(rec, state)
    else:
        rec.state = state
        rec.changed_at = 0.0
    release_holds(rec, op)


def release_holds(rec: Record, op: Operation | None = None) -> None:
    """`rec` no longer holds its dependencies (it stopped, or never started).

    With `op`, the dependencies left running with no holder are added to
    `op.orphans`.
    """
    for dep in rec.deps:
        holders = dep.holders
        if isinstance(holders, list):
            if rec not in holders:
                continue
            holders.remove(rec)
        elif isinstance(holders, dict) and rec in holders:
            del holders[rec]
        else:
            continue
        if dep.released is not None:
            wake_released(dep)
        if (
            op is not None
            and not holders
            and not dep.root_holds
            and dep.op is None
            and dep.state is _RUNNING
        ):
            op.orphans.append(dep)


def wake_released(rec: Record) -> None:
    """Wake whoever waits for a holder of `rec` to let go (`engine.wait_released`)."""
    waiters = rec.released
    rec.released = None
    if waiters is not None:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


def stop_failed(op: Operation, rec: Record, exc: BaseException) -> None:
    """A stop hook raised (or timed out): the error is kept; the stop goes on."""
    attr = rec.info.stop
    if not isinstance(exc, asyncio.CancelledError | StopTimeoutError):
        note(exc, f"raised by {rec.name}.{attr} (stage 'stop')")
    rec.error = rec.error or exc
    op.errors.append(exc)


async def stop_tasks(op: Operation, rec: Record, deadline: float, grace: float) -> None:
    """Cancel the service's tasks and wait for them until `deadline`.

    `deadline` is when the service's stop must be over (`graceful_shutdown_timeout`
    after it began). Tasks still running then are cancelled again and get `grace`
    seconds more; one that is still running after that swallows CancelledError: it is
    reported by name and left.
    """
    if rec.sleepers:
        # Tasks woken from sleep() by this stop get a turn to return on their own.
        await asyncio.sleep(0)
    tasks = [t for t in rec.tasks or () if not t.done()]
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    loop = asyncio.get_running_loop()
    remaining = None if deadline == math.inf else max(0.0, deadline - loop.time())
    _, pending = await asyncio.wait(tasks, timeout=remaining)
    if pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace)
    if pending:
        names = ", ".join(sorted(repr(t.get_name()) for t in pending))
        exc = StopTimeoutError(
            f"{rec.name}: background task(s) {names} did not finish within "
            f"graceful_shutdown_timeout={rec.service.graceful_shutdown_timeout}s after "
            f"being cancelled, nor cancel_grace={grace:g}s after a second cancellation; "
            f"they swallow CancelledError and are left running. Let CancelledError "
            f"propagate out of them."
        )
        rec.error = rec.error or exc
        op.errors.append(exc)


# ---------------------------------------------------------------- blocking hooks


def run_sync_hook(op: Operation, rec: Record, stage: Stage) -> None:
    """Run one service's hook for `stage` in this thread (graphs without a loop)."""
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
        started(op, rec)
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
            finish_stop(op, rec)
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
    """Spawn `coro` as a background task owned by `rec`'s service."""
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
    and the coroutine given to `add_task` would be collected unawaited (a
    RuntimeWarning that `create_task` does not give). Here it is closed, as a plain
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
                rec.supervisor.child_cancelled(rec, self)
        return super().cancel(msg)


def _prune(rec: Record, tasks: set[asyncio.Task[Any]]) -> None:
    """Forget finished tasks that never ran: cancelled before their first step.

    Every other task removes itself as it ends; one cancelled before it began never
    enters its wrapper. Pruning when the set doubles keeps `add_task` O(1) amortized.
    """
    for done in [t for t in tasks if t.done()]:
        tasks.discard(done)
    rec.prune_at = max(_PRUNE_AT, 2 * len(tasks))


async def _owned(rec: Record, tasks: set[asyncio.Task[Any]], coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a background task of `rec`: its bookkeeping, and a crash, happen in the task.

    A wrapper rather than a done callback: a done callback costs a trip through the
    event loop's ready queue for every task, which made `add_task` twice as slow as
    `create_task`. `tasks` is the set of the run that spawned it (a task outliving
    its run must not touch the next run's set).
    """
    task: Any = _current_task()
    try:
        return await coro
    except asyncio.CancelledError:
        if rec.supervisor is not None:
            rec.supervisor.child_cancelled(rec, task)
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
    """The coroutine `task` runs for its owner: what was given to `add_task`."""
    coro: Any = task.get_coro()
    if getattr(coro, "cr_code", None) is _OWNED_CODE and coro.cr_frame is not None:
        return coro.cr_frame.f_locals.get("coro", coro)
    return coro


def task_crashed(rec: Record, task: asyncio.Task[Any], exc: BaseException) -> None:
    """A background task of `rec` raised `exc`: it crashes the stack."""
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
    """Make `wait()` return (or raise `exc`) for `rec` and everything depending on it."""
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
            holders = current.supervisor.child_exited(current, exc)
        for holder in holders:
            if holder not in seen:
                seen.add(holder)
                stack.append(holder)


async def wait(rec: Record) -> None:
    """Body of `Service.wait()`."""
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

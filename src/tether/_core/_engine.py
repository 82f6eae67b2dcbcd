"""Operations: starting and stopping roots, rolling back, reloading, blocking graphs.

How operations compose (the rules `docs/engine.md` states for users):

* An operation *plans* synchronously, then *claims* what it changes (`rec.op`) and
  runs. Planning never waits while holding a claim, and a running operation never
  waits for another one; so operations cannot deadlock each other.
* If planning meets a service another operation owns, or whose fate depends on one
  (a holder of it being stopped, say), nothing is claimed: the operation waits for
  that one to end, then plans again from the new state.
* A start takes its holds (a dependent on each dependency, a root hold on the root)
  while planning; a stop lets a dependent's holds go only once that dependent has
  finished stopping. A service stops when nothing holds it any more, so it never
  stops under a dependent still running or stopping, and it stops exactly when the
  last root that needs it leaves.

Longer than 600 lines because the operations (start, stop, rollback, reload, the
blocking graphs) follow the one set of rules above and are read against each other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from ._actions import (
    add_task,
    hook_begin,
    release_holds,
    run_sync_hook,
    signal_exit,
    start_error,
    task_crashed,
    wait,
)
from ._base import ServiceBase, record
from ._errors import HookError, ServiceStateError
from ._events import EventKind, LifecycleEvent, publish, publishing
from ._graph import Collection, collect, undo
from ._passes import count_stop_preds, start_pass, stop_pass
from ._records import Barrier, Node, Record, ServiceState
from ._scheduler import Operation, OpKind, drive, drive_sync
from ._stages import EXIT, INIT, RELOAD, START, STOP, Stage, _Phase, phase_stages

__all__ = [
    "Operation",
    "add_task",
    "claim",
    "hook_task",
    "reload",
    "run_exit",
    "run_init",
    "signal_exit",
    "start_root",
    "start_root_sync",
    "stop_root",
    "stop_root_sync",
    "task_crashed",
    "unclaim",
    "wait",
    "wait_released",
]

logger = logging.getLogger("tether")

_RUNNING: Final = ServiceState.RUNNING


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


def _phase_begin(op: Operation, phase: _Phase, root: Record, count: int) -> float:
    if not op.subs:
        return 0.0
    publish(
        LifecycleEvent(
            kind=EventKind.PHASE_BEGIN, service=root.service, stage=phase.value, count=count
        )
    )
    return time.perf_counter()


def _phase_end(
    op: Operation, phase: _Phase, root: Record, began: float, error: BaseException | None
) -> None:
    if op.subs:
        publish(
            LifecycleEvent(
                kind=EventKind.PHASE_END,
                service=root.service,
                stage=phase.value,
                duration=time.perf_counter() - began,
                error=error,
            )
        )


# ------------------------------------------------------------------------ waiting


def hook_task(rec: Record) -> asyncio.Task[Any] | None:
    """The task running `rec`'s current hook: its own, or its operation's driver."""
    if rec.task is not None:
        return rec.task
    op = rec.op
    return op.driver if op is not None else None


def _check_not_waiting_on_self(op: Operation, rec: Record, doing: str) -> None:
    if op.owns(asyncio.current_task()) or op.loop is not asyncio.get_running_loop():
        raise ServiceStateError(
            f"Cannot {doing}: {rec.name} is {rec.state.value} in an operation that is "
            f"waiting for this very code (for example, a service started from its own "
            f"stop hook)."
        )


async def _wait_for(ops: list[Operation], rec: Record, doing: str) -> None:
    """Wait for each operation of `ops` to end (never for one that waits for us)."""
    for op in dict.fromkeys(ops):
        _check_not_waiting_on_self(op, rec, doing)
    for op in dict.fromkeys(ops):
        await op.wait_done()


async def claim(rec: Record) -> Operation | None:
    """Own `rec` for a while (a supervisor's round of restarts); None if it is stopping.

    Waits for any operation that owns it now. Anything that wants to stop or reload
    `rec` meanwhile waits for `unclaim`.
    """
    loop = asyncio.get_running_loop()
    while True:
        op = rec.op
        if op is None:
            break
        if op.kind is OpKind.STOP:
            return None
        await op.wait_done()
    held = Operation(OpKind.CLAIM, loop)
    rec.op = held
    return held


def unclaim(rec: Record, held: Operation) -> bool:
    """Give back what `claim` returned; True if an operation was waiting for it."""
    waiting = bool(held.waiters)
    if rec.op is held:
        rec.op = None
    held.release()
    return waiting


async def wait_released(rec: Record) -> None:
    """Until a holder of `rec` lets go of it: its stop finished, or its start failed."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters = rec.released
    if waiters is None:
        waiters = rec.released = []
    waiters.append(fut)
    try:
        await fut
    finally:
        waiters = rec.released
        if waiters is not None and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                rec.released = None


# -------------------------------------------------------------------------- start


async def _start_phase(op: Operation) -> None:
    nodes: list[Node] | None = None
    for stage in phase_stages(_Phase.START, _custom_stages(op)):
        if stage is START:
            began = _stage_begin(stage, len(op.records))
            await start_pass(op, [rec for rec in op.records if not rec.pending])
            if op.failure is None:
                _check_all_started(op)
        elif _has_hooks(op, stage):
            if nodes is None:
                nodes = [*op.records, *op.barriers]
            began = _stage_begin(stage, len(op.records))
            await drive(op, nodes, stage.direction, hook_begin(stage, guard=False), start_error(op))
        else:
            continue
        _stage_end(stage, began, len(op.records), op.failure)
        if op.failure is not None:
            return


def _check_all_started(op: Operation) -> None:
    left = [rec.name for rec in op.records if rec.state is not _RUNNING]
    if left:  # pragma: no cover - a bug in the engine, said plainly rather than hidden
        raise RuntimeError(f"tether: the start pass ended with {', '.join(left)} not started")


async def start_root(service: ServiceBase) -> None:
    """Start `service` and everything it needs (`async with service`)."""
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
            await _wait_for([r.op for r in collection.busy if r.op], root, f"start {root.name}")
            continue
        break
    try:
        _check_loops(root, collection, loop)
    except BaseException:
        undo(collection)
        raise
    new = collection.new
    op.claim(new, collection.barriers)
    for rec in new:
        rec.reset_for_run()
        rec.loop = loop
    root.root_holds += 1
    if new:
        began = _phase_begin(op, _Phase.START, root, len(new))
        try:
            try:
                await _start_phase(op)
            except BaseException as exc:
                op.abort(exc)
            if op.failure is not None:
                root.root_holds -= 1
                await _rollback(op, root)
                raise op.failure
        finally:
            _phase_end(op, _Phase.START, root, began, op.failure)
        op.release()
    _crash_to_new_root(root, collection.crashed)


def _check_loops(root: Record, collection: Collection, loop: asyncio.AbstractEventLoop) -> None:
    for rec in collection.reached:
        if rec.loop is not loop:
            raise ServiceStateError(
                f"Cannot start {root.name}: it needs {rec.name}, which runs in another "
                f"event loop (another thread). A service belongs to one loop; give each "
                f"thread its own instance."
            )


def _crash_to_new_root(root: Record, crashed: list[Record]) -> None:
    for rec in crashed:
        if rec.crash is not None:
            signal_exit(root, rec.crash)
            return


async def _rollback(op: Operation, root: Record) -> None:
    """Undo a failed start: stop what it started, in reverse, and release its holds.

    What it reached running and held may have been left by every other holder
    meanwhile (a root that left while this start ran): it stops too, as it would have
    had this start never held it.
    """
    failure = op.failure
    assert failure is not None
    while True:
        planned = _plan_release(op.records, op)
        if not isinstance(planned, Operation):
            break
        await _wait_for([planned], root, f"roll back the start of {root.name}")
    for rec in op.records:
        if rec.state is not _RUNNING:
            release_holds(rec)  # never started: it holds nothing
    op.release()
    stop_op = Operation(OpKind.STOP, op.loop)
    if planned:
        stop_op.claim(planned)
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


# --------------------------------------------------------------------------- stop


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to completion in its own task even if the caller is cancelled."""
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


def _plan_ready(op: Operation) -> list[Node]:
    """Count, for the stop pass, what each service must wait for: what started after it.

    See [`count_stop_preds`][tether._core._passes.count_stop_preds]. Returns the services
    that wait for nothing.
    """
    op.extra.clear()
    for rec in op.records:
        rec.pending = 0
    for rec in op.records:
        count_stop_preds(op, rec)
    return [rec for rec in op.records if not rec.pending]


async def _stop_phase(op: Operation) -> None:
    records = op.records
    nodes: list[Node] | None = None

    def on_error(_node: Node, exc: BaseException) -> None:
        op.errors.append(exc)

    stopped = False
    for stage in phase_stages(_Phase.STOP, _custom_stages(op)):
        if stage is STOP:
            began = _stage_begin(stage, len(records))
            await stop_pass(op, _plan_ready(op))
            stopped = True
        elif _has_hooks(op, stage):
            if nodes is None or stopped:
                for rec in records:  # the stop pass marks what it finished
                    rec.member = op
                nodes = list(records)
            began = _stage_begin(stage, len(records))
            await drive(op, nodes, stage.direction, hook_begin(stage, guard=True), on_error)
        else:
            continue
        _stage_end(stage, began, len(records), op.errors[0] if op.errors else None)


async def _run_stop(op: Operation) -> None:
    try:
        await _stop_phase(op)
    finally:
        op.release()


def _plan_stop(root: Record, op: Operation) -> list[Record] | Operation:
    """Find what stops when `root` leaves; or an operation to wait for first.

    Releases the root hold only when it returns a plan (claimed by `op`). What stops:
    the root, if nothing else holds it, and what it alone needed (see
    `_plan_release`). A root that something else still holds keeps running; if
    that something is being stopped, the root stops with it (see `stop_root`).
    """
    if root.root_holds == 0:
        raise ServiceStateError(f"{root.name} is not running as a root; nothing to stop.")
    if root.op is not None:
        return root.op
    if root.root_holds > 1 or root.holders or root.state is not _RUNNING:
        root.root_holds -= 1
        return []
    root.root_holds = 0
    planned = _plan_release([root], None)
    if isinstance(planned, Operation):
        root.root_holds = 1
        return planned
    op.claim(planned)
    return planned


def _plan_release(going: list[Record], owner: Operation | None) -> list[Record] | Operation:
    """What stops when `going` (in start order) let go of what they hold.

    Each of `going` either never started (it just lets go) or runs: it stops if
    nothing but others of `going` holds it and no root does. Then every running
    service all of whose holders stop too, and that no root holds, stops: what only
    they needed. A service that stays because something else holds it stops later
    with whatever lets go of it last (`finish_stop`'s orphans).

    Returns an operation other than `owner` to wait for instead, if a service that
    would stop is busy in it, or one that starts after a stopping one in the same group
    is being stopped by it (it goes first). Only scratch marks and counters change.
    """
    inside = object()
    counted = object()
    stopping: list[Record] = []
    for rec in reversed(going):  # dependents first: they decide for what they hold
        if rec.state is _RUNNING:
            if rec.root_holds or any(h.mark is not inside for h in rec.holders):
                continue  # held from elsewhere: it keeps running
            stopping.append(rec)
        rec.mark = inside
    worklist = [rec for rec in going if rec.mark is inside]
    i = 0
    while i < len(worklist):
        rec = worklist[i]
        i += 1
        for dep in rec.deps:
            mark = dep.mark
            if mark is inside:
                continue
            if mark is not counted:
                dep.mark = counted
                dep.pending = 0
            dep.pending += 1
            if dep.pending >= len(dep.holders) and not dep.root_holds and dep.state is _RUNNING:
                busy = dep.op
                if busy is not None and busy is not owner:
                    return busy
                dep.mark = inside
                stopping.append(dep)
                worklist.append(dep)
    for rec in stopping:
        busy = _stopping_successor(rec, inside)
        if busy is not None:
            return busy
    return stopping


def _stopping_successor(rec: Record, inside: object) -> Operation | None:
    """An operation stopping a service that started after `rec` in the same group.

    Such a service stops first (the exact reverse of the start); if another operation
    is stopping it right now, `rec` waits for that one.
    """
    stack: list[Node] = list(rec.gsucc or ())
    while stack:
        node = stack.pop()
        if type(node) is Barrier:
            stack.extend(node.gsucc or ())
            continue
        assert isinstance(node, Record)
        op = node.op
        if (
            op is not None
            and op.kind is OpKind.STOP
            and node.mark is not inside
            and not op.owns(asyncio.current_task())
        ):
            return op
    return None


async def stop_root(service: ServiceBase, body_error: BaseException | None) -> None:
    """Stop `service` and what only it needed (leaving `async with service`)."""
    root = record(service)
    loop = asyncio.get_running_loop()
    while True:
        op = Operation(OpKind.STOP, loop)
        planned = _plan_stop(root, op)
        if isinstance(planned, Operation):
            await _wait_for([planned], root, f"stop {root.name}")
            continue
        break
    if planned:
        began = _phase_begin(op, _Phase.STOP, root, len(planned))
        try:
            await _shielded(_run_stop(op))
        finally:
            _phase_end(op, _Phase.STOP, root, began, op.errors[0] if op.errors else None)
    else:
        await _until_stopped_with_holders(root)
    _raise_after_stop(root, op.errors, body_error)


async def _until_stopped_with_holders(root: Record) -> None:
    """A root left while held only by services being stopped: it stops with them.

    Wait for that, so leaving a root that nothing else needs returns once it stopped,
    unless this code is part of one of those stops (a stop hook leaving a root).
    """
    current = asyncio.current_task()
    while root.state is _RUNNING or root.state is ServiceState.STOPPING:
        if root.root_holds:
            return
        op = root.op
        if op is None or op.kind is not OpKind.STOP:
            ops = [h.op for h in root.holders if h.op is not None and h.op.kind is OpKind.STOP]
            if not ops or len(ops) < len(root.holders):
                return  # something that stays holds it
            op = ops[0]
        if op.owns(current):
            return
        await op.wait_done()


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


def _sync_collect(root: Record, doing: str) -> tuple[Operation, Collection]:
    op = Operation(OpKind.SYNC, None)
    collection = collect(root, op)
    if collection.busy:
        busy = collection.busy[0]
        raise ServiceStateError(
            f"Cannot {doing}: {busy.name} is {busy.state.value} in another operation."
        )
    for rec in collection.new:
        if not rec.info.blocking:
            undo(collection)
            raise HookError(
                f"{rec.name} is an async tether.Service and cannot be started with "
                f"`with`; start the graph from async code (`async with`, or make the "
                f"root a Service) so its hooks have an event loop."
            )
    return op, collection


def _run_sync_stages(
    op: Operation, nodes: list[Node], phase: _Phase, count: int, run: Callable[[Node, Stage], bool]
) -> None:
    for stage in phase_stages(phase, _custom_stages(op)):
        if stage not in (START, STOP) and not _has_hooks(op, stage):
            continue
        began = _stage_begin(stage, count)
        failures = len(op.errors)
        drive_sync(nodes, op, stage.direction, functools.partial(_run_node, run, stage))
        error = op.failure or (op.errors[failures] if len(op.errors) > failures else None)
        _stage_end(stage, began, count, error)
        if op.failure is not None:
            return


def _run_node(run: Callable[[Node, Stage], bool], stage: Stage, node: Node) -> bool:
    return run(node, stage)


def start_root_sync(service: ServiceBase) -> None:
    """Start a graph of blocking services in this thread (`with service`)."""
    root = record(service)
    if root.root_holds:
        raise ServiceStateError(
            f"{root.name} is already running as a root; a service is entered once at a time."
        )
    op, collection = _sync_collect(root, f"start {root.name}")
    new = collection.new
    op.claim(new, collection.barriers)
    for rec in new:
        rec.reset_for_run()
    root.root_holds += 1

    def run(node: Node, stage: Stage) -> bool:
        assert isinstance(node, Record)
        try:
            run_sync_hook(op, node, stage)
        except BaseException as exc:
            op.failure = exc
            return False
        return True

    try:
        _run_sync_stages(op, [*new, *collection.barriers], _Phase.START, len(new), run)
    except BaseException as exc:  # pragma: no cover - a bug in the engine itself
        op.failure = exc
    failure = op.failure
    if failure is None:
        op.release()
        return
    root.root_holds -= 1
    planned = _plan_release(new, op)
    if isinstance(planned, Operation):  # pragma: no cover - blocking graphs do not overlap
        planned = [r for r in op.started if r.state is _RUNNING]
    for rec in new:
        if rec.state is not _RUNNING:
            release_holds(rec)
    op.release()
    if planned:
        stop_op = Operation(OpKind.SYNC, None)
        stop_op.claim(planned)
        _stop_sync(stop_op)
        for error in stop_op.errors:
            logger.error("tether: another error while starting %s", root.name, exc_info=error)
            failure.add_note(f"tether: also raised while starting: {type(error).__name__}: {error}")
    raise failure


def _stop_sync(op: Operation) -> None:

    def run(node: Node, stage: Stage) -> bool:
        assert isinstance(node, Record)
        try:
            run_sync_hook(op, node, stage)
        except BaseException as exc:
            op.errors.append(exc)
        return True

    try:
        _run_sync_stages(op, list(op.records), _Phase.STOP, len(op.records), run)
    finally:
        op.release()


def stop_root_sync(service: ServiceBase, body_error: BaseException | None) -> None:
    """Stop a blocking root and what only it needed (leaving `with service`)."""
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
    undo(collection)  # nothing starts: no holds are taken
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
                run_sync_hook(op, node, stage)
            except BaseException as exc:
                errors.append(exc)
                return keep_going
            return True

        drive_sync(nodes, op, stage.direction, run)
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
    """Run the `init` phase (sync, before any event loop) over the graph of `service`.

    Stops at the first failing hook and raises it.
    """
    _run_sync_phase(service, INIT._phase, keep_going=False)


def run_exit(service: ServiceBase) -> None:
    """Run the `exit` phase (sync, after the event loop closed), dependents first.

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
    """Run the `reload` phase over the running graph of `service`, dependencies first.

    Every hook runs even if one fails; then the first error is raised with the others
    attached as notes. Services stay running either way.
    """
    root = record(service)
    loop = asyncio.get_running_loop()
    while True:
        if root.state is not _RUNNING:
            raise ServiceStateError(f"Cannot reload {root.name}: it is {root.state.value}.")
        records = _running_closure(root)
        busy = [r.op for r in records if r.op is not None]
        if busy:
            await _wait_for(busy, root, f"reload {root.name}")
            continue
        break
    op = Operation(OpKind.RELOAD, loop)
    op.claim(records)
    nodes: list[Node] = list(records)

    def on_error(_node: Node, exc: BaseException) -> None:
        op.errors.append(exc)

    phase_began = _phase_begin(op, _Phase.RELOAD, root, len(records))
    try:
        for stage in phase_stages(RELOAD._phase, _custom_stages(op)):
            if not _has_hooks(op, stage):
                continue
            began = _stage_begin(stage, len(records))
            await drive(op, nodes, stage.direction, hook_begin(stage, guard=False), on_error)
            _stage_end(stage, began, len(records), op.errors[0] if op.errors else None)
    finally:
        _phase_end(op, _Phase.RELOAD, root, phase_began, op.errors[0] if op.errors else None)
        op.release()
    if op.errors:
        primary = op.errors[0]
        for exc in op.errors[1:]:
            primary.add_note(f"tether: also raised while reloading: {type(exc).__name__}: {exc}")
        raise primary

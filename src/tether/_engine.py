"""Operations: starting and stopping roots, rolling back, reloading, blocking graphs.

Every operation claims the services it changes (so no other operation touches them
meanwhile), runs the stages of its phase one after another over them with the
scheduler, and releases them. Starting a root holds it; stopping it releases the hold
and stops every service nothing holds any more, dependents first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from ._actions import (
    add_task,
    begin_start,
    begin_stop,
    hook_begin,
    run_sync_hook,
    signal_exit,
    start_error,
    task_crashed,
    wait,
)
from ._errors import HookError, ServiceStateError
from ._events import EventKind, LifecycleEvent, publish, publishing
from ._graph import collect
from ._scheduler import Begin, Operation, OpKind, drive, drive_sync
from ._service import Barrier, Node, Record, ServiceBase, ServiceState, record
from ._stages import EXIT, INIT, RELOAD, START, STOP, Stage, _Phase, phase_stages

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
    "task_crashed",
    "wait",
    "wait_released",
]

logger = logging.getLogger("tether")

_RUNNING: Final = ServiceState.RUNNING


def _record_begin(op: Operation, func: Callable[[Operation, Record, bool], Any]) -> Begin:
    def begin(node: Node, alone: bool) -> Any:
        assert isinstance(node, Record)
        return func(op, node, alone)

    return begin


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


async def _start_phase(op: Operation) -> None:
    nodes: list[Node] = [*op.records, *op.barriers]
    on_error = start_error(op)
    for stage in phase_stages(_Phase.START, _custom_stages(op)):
        if stage is START:
            begin = _record_begin(op, begin_start)
        elif _has_hooks(op, stage):
            begin = hook_begin(op, stage, guard=False)
        else:
            continue
        began = _stage_begin(stage, len(op.records))
        await drive(op, nodes, stage.direction, begin, on_error)
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
            begin = _record_begin(op, begin_stop)
        elif _has_hooks(op, stage):
            begin = hook_begin(op, stage, guard=True)
        else:
            continue
        began = _stage_begin(stage, len(records))
        await drive(op, nodes, stage.direction, begin, on_error)
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
    for rec in collection.reached:
        if rec.loop is not loop:
            raise ServiceStateError(
                f"Cannot start {root.name}: it needs {rec.name}, which runs in another "
                f"event loop (another thread). A service belongs to one loop; give each "
                f"thread its own instance."
            )
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
            if rec in dep.holders:
                del dep.holders[rec]
                if dep.released is not None:
                    _wake_released(dep)
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
    """Release the root's hold and find what stops with it; or the op to wait for.

    A service stops when nothing holds it any more. If one that must stop is busy in
    another operation, every hold released here is restored and that operation is
    returned for the caller to wait on.
    """
    if root.root_holds == 0:
        raise ServiceStateError(f"{root.name} is not running as a root; nothing to stop.")
    if root.root_holds > 1 or root.holders:
        root.root_holds -= 1
        return []
    if root.op is not None:
        return root.op
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
            if dep.released is not None:
                _wake_released(dep)
            if not holders and not dep.root_holds and dep.state is _RUNNING:
                if dep.op is not None:
                    for undo in stopping[:i]:
                        for held in undo.deps:
                            held.holders[undo] = None
                    root.root_holds = 1
                    return dep.op
                stopping.append(dep)
    op.claim(stopping)
    return stopping


def _wake_released(rec: Record) -> None:
    waiters = rec.released
    rec.released = None
    if waiters is not None:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


async def wait_released(rec: Record) -> None:
    """Until a holder of ``rec`` lets go of it: its stop released it, or its start failed.

    The hold goes when the stop begins, before the holder's own hooks run: a caller
    that must not stop ``rec`` under a holder still stopping waits for its ``op`` too.
    A release undone (the stop had to wait for a busy dependency) also wakes the
    caller, which should check ``rec.holders`` again.
    """
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
                    run_sync_hook(op, node, stage)
                except BaseException as exc:
                    failure = exc
                    return False
                return True

            drive_sync(nodes, op, stage.direction, run)
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
                    run_sync_hook(op, node, stage)
                except BaseException as exc:
                    op.errors.append(exc)
                return True

            drive_sync(nodes, op, stage.direction, run)
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
            await drive(op, nodes, stage.direction, hook_begin(op, stage, guard=False), on_error)
            _stage_end(stage, began, len(records), op.errors[0] if op.errors else None)
    finally:
        op.release()
    if op.errors:
        primary = op.errors[0]
        for exc in op.errors[1:]:
            primary.add_note(f"tether: also raised while reloading: {type(exc).__name__}: {exc}")
        raise primary

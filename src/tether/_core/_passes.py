"""The `start` and `stop` passes: Kahn's algorithm over an operation's services.

Both passes run in the task of the code that started the operation (its *driver*):

* a service that is alone in the ready set, with nothing else in flight, runs right
  there, awaited by the driver: a chain creates no task at all;
* otherwise each ready service runs in a task of its own (started eagerly where Python
  can), whose one wrapper coroutine reports its completion to the driver;
* a class whose hook has always finished without suspending is stepped directly by the
  driver, saving a task (learned per class; on Python 3.11 the first instance of a
  class runs as a probe while its siblings wait one loop turn for its first step).

Every hook runs in a copy of the context of the code that started the graph.

A start stops at its first failure: the failure is recorded at once (so it is the one
raised), nothing new begins, work in flight is cancelled and awaited, and a blocking
start running in a worker thread is waited for, since a thread cannot be cancelled; if
it succeeded, the rollback stops it. A stop never stops early: every service stops, and
errors are collected. A stop hook gets `graceful_shutdown_timeout` seconds, watched
by one timer per operation; past it the hook is cancelled, and past `cancel_grace`
more it is abandoned. Background tasks are cancelled when the hook returns and get
what is left of the same timeout (then `cancel_grace` once cancelled again).

Longer than 600 lines because the start and stop passes mirror each other: the same
ready set, fast paths and per-operation state, each read against the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import Callable, Coroutine
from typing import Any, Final

from ._actions import (
    call_hook,
    discard_tasks,
    finish_stop,
    mark_stopping,
    note,
    set_state,
    started,
    stop_failed,
    stop_tasks,
    timeout_error,
)
from ._records import ClassInfo, Node, Record, ServiceState, check_grace, check_timeout
from ._scheduler import EAGER, SUSPENDS, SYNC, UNKNOWN, Operation, cancel_and_wait, resume
from ._stages import STOP, phase_stages

__all__ = ["count_stop_preds", "start_pass", "stop_pass"]

_STARTING: Final = ServiceState.STARTING
_STOPPING: Final = ServiceState.STOPPING
_RUNNING: Final = ServiceState.RUNNING
_FAILED: Final = ServiceState.FAILED
_INF: Final = math.inf
_copy_context: Final = contextvars.copy_context
_current_task: Final = asyncio.current_task

# What beginning a service in a batch came to.
_DONE: Final = 0  # finished synchronously (started, or stopped)
_SPAWNED: Final = 1  # runs in a task of its own, which will report
_DEFERRED: Final = 2  # set aside until its class's probe has stepped (Python 3.11)
_FAILED_NOW: Final = 3  # a start that failed synchronously


def _spawn(op: Operation, rec: Record, coro: Coroutine[Any, Any, None], eager: bool) -> None:
    """Run `coro` (which reports to the driver) in a task of its own."""
    op.inflight += 1
    loop = op.loop
    assert loop is not None
    if eager:  # pragma: no cover - Python 3.12+
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        if task.done():
            return
    elif loop.get_task_factory() is not None:
        task = loop.create_task(coro)
    else:
        task = asyncio.Task(coro, loop=loop)
    rec.task = task
    op.tasks.append(rec)


def _probe_or_defer(op: Operation, info: ClassInfo, rec: Record) -> bool:
    """True if `rec` becomes its class's probe; False if it was set aside."""
    waiting = op.probes.get(info)
    if waiting is None:
        op.probes[info] = []
        return True
    waiting.append(rec)
    return False


def _probed(op: Operation, info: ClassInfo) -> None:
    """The probe of `info` has stepped: hand the services set aside back to the driver."""
    waiting = op.probes.pop(info, None)
    if waiting:
        op.requeue.extend(waiting)
        op.wakeup()


def _failing(op: Operation) -> bool:
    return op.failure is not None


async def _sleep(op: Operation, loop: asyncio.AbstractEventLoop) -> None:
    """Until a task of the pass reports (or a probe hands back what it held)."""
    wake = op.wake = loop.create_future()
    try:
        await wake
    finally:
        op.wake = None


async def _settle(op: Operation) -> None:
    """Cancel the work in flight and wait for all of it (even if we are cancelled)."""
    tasks = [rec.task for rec in op.tasks if rec.task is not None and not rec.task.done()]
    try:
        await cancel_and_wait(tasks)
    finally:
        for rec in op.tasks:
            rec.task = None  # a task cancelled before its first step never reported
        op.tasks.clear()
        op.inflight = 0
        op.done.clear()
        for waiting in op.probes.values():
            waiting.clear()
        op.probes.clear()
        op.requeue.clear()


# -------------------------------------------------------------------------- start


def _release_start(op: Operation, node: Node, ready: list[Node]) -> None:
    """`node` has started: its successors in this operation wait for one less."""
    if type(node) is Record:
        for holder in node.holders:
            if holder.member is op:
                holder.pending -= 1
                if not holder.pending:
                    ready.append(holder)
    succ = node.gsucc
    if succ is not None:
        for s in succ:
            s.pending -= 1
            if not s.pending:
                ready.append(s)


def _advance_start(op: Operation, ready: list[Node]) -> None:
    done = op.done
    for node in done:
        op.inflight -= 1
        if type(node) is not Record or node.state is _RUNNING:
            _release_start(op, node, ready)
    done.clear()


async def start_pass(op: Operation, ready: list[Node]) -> None:
    """Start the services `op` owns, `ready` being those that wait for nothing.

    Returns when all have started or the operation failed (`op.failure`); in either
    case no task of the pass is left. A cancellation from outside propagates once the
    work in flight has been cancelled and awaited.
    """
    loop = op.loop
    assert loop is not None
    driver = _current_task()
    op.driver = driver
    eager = EAGER and loop.get_task_factory() is None
    try:
        while True:
            if op.requeue:
                ready.extend(op.requeue)
                op.requeue.clear()
            while ready and not _failing(op):
                if len(ready) == 1 and not op.inflight:
                    node = ready.pop()
                    if type(node) is Record:
                        # Alone: run it right here (a chain creates no task).
                        info = node.info
                        attr = info.start
                        if attr is None or info.blocking:
                            if not await _start_alone(op, node):
                                break
                        else:
                            if op.subs:
                                set_state(node, _STARTING)
                            else:
                                node.state = _STARTING
                                node.changed_at = 0.0
                            context = _copy_context()
                            hook = getattr(node.service, attr)()
                            try:
                                step = context.run(hook.send, None)
                            except StopIteration:
                                if info.start_mode == UNKNOWN:
                                    info.start_mode = SYNC
                                started(op, node)
                            except BaseException as exc:
                                outcome = _start_failed_inline(op, node, exc)
                                if not isinstance(outcome, int):
                                    await outcome
                                break
                            else:
                                info.start_mode = SUSPENDS
                                try:
                                    await resume(hook, step, context)
                                except BaseException as exc:
                                    await _start_rest_failed(op, node, exc)
                                    break
                                started(op, node)
                    _release_start(op, node, ready)
                    continue
                batch = ready
                ready = []
                for index, node in enumerate(batch):
                    if _failing(op):
                        break
                    if type(node) is not Record:
                        _release_start(op, node, ready)
                        continue
                    outcome = _begin_start(op, node, eager)
                    if outcome is _DONE:
                        _release_start(op, node, ready)
                    elif not isinstance(outcome, int):
                        # A class that used to finish at once suspended: finish it here.
                        ready[:0] = batch[index + 1 :]
                        if await outcome:
                            _release_start(op, node, ready)
                        break
                if op.done:
                    _advance_start(op, ready)
            if _failing(op) or (not op.inflight and not op.requeue):
                break
            if not op.done and not op.requeue:
                await _sleep(op, loop)
            _advance_start(op, ready)
        if _failing(op):
            await _settle(op)
    except BaseException:
        await _settle(op)  # cancelled from outside: leave nothing behind
        raise
    finally:
        op.driver = None
        op.tasks.clear()


def _begin_start(op: Operation, rec: Record, eager: bool) -> int | Coroutine[Any, Any, bool]:
    """Begin starting `rec` beside others: done, spawned, deferred, or a rest to await."""
    info = rec.info
    attr = info.start
    if attr is None:
        set_state(rec, _STARTING)
        started(op, rec)
        return _DONE
    if info.blocking:
        set_state(rec, _STARTING)
        _spawn(op, rec, _start_blocking_task(op, rec), eager)
        return _SPAWNED
    mode = info.start_mode
    if mode == SYNC:
        set_state(rec, _STARTING)
        context = _copy_context()
        hook = getattr(rec.service, attr)()
        try:
            step = context.run(hook.send, None)
        except StopIteration:
            started(op, rec)
            return _DONE
        except BaseException as exc:
            return _start_failed_inline(op, rec, exc)
        info.start_mode = SUSPENDS
        return _start_rest(op, rec, hook, step, context)
    if mode == UNKNOWN and not eager and not _probe_or_defer(op, info, rec):
        return _DEFERRED
    _spawn(op, rec, _start_task(op, rec, probe=mode == UNKNOWN and not eager), eager)
    return _SPAWNED


def _start_failed_inline(
    op: Operation, rec: Record, exc: BaseException
) -> int | Coroutine[Any, Any, bool]:
    """A start failed in the driver: record it first, then clean up what it spawned."""
    _record_start_failure(op, rec, exc)
    if rec.tasks:
        return _discard_then_fail(rec)
    set_state(rec, _FAILED)
    return _FAILED_NOW


def _record_start_failure(op: Operation, rec: Record, exc: BaseException) -> None:
    rec.error = exc
    note(exc, f"raised by {rec.name}.start (stage 'start')")
    op.abort(exc)


async def _discard_then_fail(rec: Record) -> bool:
    try:
        await discard_tasks(rec)
    finally:
        set_state(rec, _FAILED)
    return False


async def _start_alone(op: Operation, rec: Record) -> bool:
    """Start, in the driver, a service with no start hook or a blocking one.

    (An async hook alone is run by `start_pass` itself, without this call.)
    """
    set_state(rec, _STARTING)
    if rec.info.start is None:
        started(op, rec)
        return True
    return await _start_blocking(op, rec)


async def _start_rest(
    op: Operation,
    rec: Record,
    hook: Coroutine[Any, Any, Any],
    step: Any,
    context: contextvars.Context,
) -> bool:
    """Finish, in the driver, a start whose hook suspended after its first step."""
    try:
        await resume(hook, step, context)
    except BaseException as exc:
        await _start_rest_failed(op, rec, exc)
        return False
    started(op, rec)
    return True


async def _start_rest_failed(op: Operation, rec: Record, exc: BaseException) -> None:
    """A start run in the driver raised after suspending: record it, clean up."""
    _record_start_failure(op, rec, exc)
    if rec.tasks:
        await _discard_then_fail(rec)
    else:
        set_state(rec, _FAILED)
    if isinstance(exc, asyncio.CancelledError):
        driver = _current_task()
        if driver is not None and driver.cancelling():
            raise exc  # cancelled from outside: the start ends here


async def _start_task(op: Operation, rec: Record, probe: bool) -> None:
    """A whole start in a task of its own; reports to the driver, never raises."""
    info = rec.info
    try:
        set_state(rec, _STARTING)
        assert info.start is not None
        hook = getattr(rec.service, info.start)()
        if info.start_mode == SUSPENDS:
            await hook  # known to suspend: nothing to learn from its first step
        else:
            try:
                step = hook.send(None)
            except StopIteration:
                if info.start_mode == UNKNOWN:
                    info.start_mode = SYNC
            else:
                info.start_mode = SUSPENDS
                if probe:
                    probe = False
                    _probed(op, info)  # siblings go on concurrently while this one waits
                await resume(hook, step, None)
        started(op, rec)
    except BaseException as exc:
        if rec.state is _STARTING:
            _record_start_failure(op, rec, exc)
            if rec.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await discard_tasks(rec)
            set_state(rec, _FAILED)
    finally:
        if probe:
            _probed(op, info)
    rec.task = None
    op.report(rec)


class _ThreadCall:
    """A blocking hook for a worker thread, which skips it if asked before it began."""

    __slots__ = ("began", "func", "skip")

    def __init__(self, func: Callable[[], object]) -> None:
        self.func = func
        self.skip = False
        self.began = False

    def __call__(self) -> object:
        if self.skip:
            return None
        self.began = True
        return self.func()


async def _start_blocking(op: Operation, rec: Record) -> bool:
    """Start a blocking service in a worker thread; True if it started.

    A thread cannot be cancelled: once its hook has begun, the outcome is waited for,
    whatever happens meanwhile, and recorded as it is (a start that succeeded after the
    operation failed is rolled back like any other). A cancellation from outside is
    raised once the thread is done.
    """
    assert rec.info.start is not None
    loop = op.loop
    assert loop is not None
    call = _ThreadCall(getattr(rec.service, rec.info.start))
    fut = loop.run_in_executor(None, _copy_context().run, call)
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait((fut,))
        except asyncio.CancelledError:
            cancelled = True
            call.skip = True
    error = fut.exception()
    if not call.began:
        error = asyncio.CancelledError()
    if error is None:
        started(op, rec)
    else:
        _record_start_failure(op, rec, error)
        set_state(rec, _FAILED)
    if cancelled:
        driver = _current_task()
        if driver is not None and driver is op.driver:
            raise asyncio.CancelledError
    return error is None


async def _start_blocking_task(op: Operation, rec: Record) -> None:
    """A blocking start in a task of its own; reports to the driver, never raises."""
    with contextlib.suppress(asyncio.CancelledError):
        await _start_blocking(op, rec)
    rec.task = None
    op.report(rec)


# --------------------------------------------------------------------------- stop


def _advance_stop(op: Operation, ready: list[Node]) -> None:
    done = op.done
    for node in done:
        op.inflight -= 1
        _release_stop(op, node, ready)
    done.clear()


def count_stop_preds(op: Operation, rec: Record) -> None:
    """Make what started before `rec` and stops with it in `op` wait for it.

    A stop is the exact reverse of the start among the services that stop together.
    `rec` waited, when it started, for what its `after` lists: the services among
    those that stop in `op` now wait for it (their `pending` counts it). Through
    what does not stop here (a barrier of its group, a service that keeps running, one
    stopped already, even one that started again after `rec`) the wait passes on to
    what that one waited for; of those, the ones that started before `rec` wait for
    it: so if `a` started before `b`, `b` before `c`, and `b` stays (or ran again
    since and stopped), `c` still stops before `a`. Waits only ever point from an
    earlier start to a later one, so they make no cycle. Indirect ones go to
    `op.extra`.
    """
    seq = rec.seq
    extra: list[Node] | None = None
    for pred in rec.after:
        if pred.member is op:
            pred.pending += 1
        else:
            extra = _through(op, pred, seq, extra)
    if extra:
        op.extra[rec] = extra


def _through(op: Operation, node: Node, bound: int, extra: list[Node] | None) -> list[Node] | None:
    """The members of `op` that `node` waited for, looking through what is not one.

    Past a service that started again after the one whose predecessors these are
    (`seq >= bound`: what it waited for is of its new run), only members that started
    before that one count, so every wait still points from an earlier start to a
    later one.
    """
    stack: list[tuple[Node, bool]] = [(node, False)]
    seen: set[tuple[int, bool]] = set()  # a node, and whether it was reached late
    counted: set[int] = set()
    while stack:
        node, late = stack.pop()
        if (id(node), late) in seen:
            continue
        seen.add((id(node), late))
        if type(node) is not Record:  # a barrier: the items it stood for
            stack.extend((pred, late) for pred in node.after)
        elif node.member is op:
            if (late and node.seq >= bound) or id(node) in counted:
                continue
            counted.add(id(node))
            node.pending += 1
            if extra is None:
                extra = [node]
            else:
                extra.append(node)
        else:
            late = late or node.seq >= bound
            if node.state is _RUNNING:
                # It keeps running, and so do its dependencies: only its group's order.
                if len(node.after) > len(node.deps):
                    stack.append((node.after[-1], late))
            else:
                stack.extend((pred, late) for pred in node.after)  # stopped already
    return extra


def _release_stop(op: Operation, node: Node, ready: list[Node]) -> None:
    """`node` has stopped: what started before it waits for one less.

    It then leaves the pass (`member` cleared): a service adopted later counts only
    the successors still to stop.
    """
    for pred in node.after:
        if pred.member is op:
            pred.pending -= 1
            if not pred.pending:
                ready.append(pred)
    if op.extra:
        for pred in op.extra.get(node, ()):
            pred.pending -= 1
            if not pred.pending:
                ready.append(pred)
    node.member = None


def _adopt(op: Operation, ready: list[Node]) -> None:
    """Take in the services a stop of this pass let go of last: they stop here too.

    Such a service was held from elsewhere when the stop was planned; that holder has
    stopped since (in this operation or another), and no root holds it. The waits of
    what is still to stop are counted again with it: it stops after what started after
    it and waited for it, and before what it waited for. Called only when every stop
    that finished has been released, so the members of the pass are exactly what has
    yet to stop or is stopping.
    """
    adopted = False
    for rec in op.orphans:
        if rec.holders or rec.root_holds or rec.state is not _RUNNING or rec.op is not None:
            continue
        rec.op = op
        rec.member = op
        op.records.append(rec)
        op.adopted.add(rec)
        op.infos.add(rec.info)
        adopted = True
    op.orphans.clear()
    if not adopted:
        return
    remaining = [rec for rec in op.records if rec.member is op]
    op.extra.clear()
    for rec in remaining:
        rec.pending = 0
    for rec in remaining:
        count_stop_preds(op, rec)
    waiting = {id(node) for node in ready}
    ready.extend(
        rec
        for rec in remaining
        if not rec.pending and rec.state is _RUNNING and rec.task is None and id(rec) not in waiting
    )


async def stop_pass(op: Operation, ready: list[Node]) -> None:
    """Stop the services `op` owns, dependents first; collect errors in `op.errors`.

    Every service stops, whatever the others do. The driver is never cancelled from
    outside (the engine runs a stop shielded); only its own watchdog cancels it, to end
    a stop hook running inline past its timeout.
    """
    loop = op.loop
    assert loop is not None
    op.driver = _current_task()
    eager = EAGER and loop.get_task_factory() is None
    try:
        while True:
            if op.requeue:
                ready.extend(op.requeue)
                op.requeue.clear()
            if op.orphans and not op.done:
                _adopt(op, ready)
            while ready:
                if len(ready) == 1 and not op.inflight:
                    node = ready.pop()
                    if not _stoppable(op, node):
                        continue
                    if type(node) is Record:
                        if op.adopted and node in op.adopted:
                            _spawn(op, node, _adopted_stop_task(op, node), eager)
                            continue
                        info = node.info
                        attr = info.stop
                        if attr is None or info.blocking or node.tasks:
                            await _stop_alone(op, node)
                        else:
                            # Alone: run it right here (a chain creates no task).
                            if node.extras is None and not op.subs:
                                node.stopping = node.exit_requested = True
                                node.state = _STOPPING
                                node.changed_at = 0.0
                            else:
                                mark_stopping(node, op)
                            context = _copy_context()
                            try:
                                hook = getattr(node.service, attr)()
                                step = context.run(hook.send, None)
                            except StopIteration:
                                if info.stop_mode == UNKNOWN:
                                    info.stop_mode = SYNC
                                finish_stop(op, node)
                            except BaseException as exc:
                                stop_failed(op, node, exc)
                                finish_stop(op, node)
                            else:
                                info.stop_mode = SUSPENDS
                                limit = node.deadline = _deadline(op, node)
                                op.inline = node
                                op.inline_coro = hook
                                error: BaseException | None = None
                                try:
                                    await resume(hook, step, context)
                                except BaseException as exc:
                                    error = _inline_error(op, node, exc)
                                op.inline = op.inline_coro = None
                                node.deadline = _INF
                                if op.self_cancels:  # it finished despite our cancellation
                                    _withdraw(op, op.driver)  # type: ignore[arg-type]
                                if error is not None:
                                    stop_failed(op, node, error)
                                if node.tasks:
                                    await stop_tasks(op, node, limit, check_grace(node.service))
                                finish_stop(op, node)
                    _release_stop(op, node, ready)
                    if op.orphans and not op.done:
                        _adopt(op, ready)
                    continue
                batch = ready
                ready = []
                for index, node in enumerate(batch):
                    if not _stoppable(op, node):
                        continue
                    if type(node) is not Record:
                        _release_stop(op, node, ready)
                        continue
                    if op.adopted and node in op.adopted:
                        _spawn(op, node, _adopted_stop_task(op, node), eager)
                        continue
                    outcome = _begin_stop(op, node, eager)
                    if outcome is _DONE:
                        _release_stop(op, node, ready)
                    elif not isinstance(outcome, int):
                        ready[:0] = batch[index + 1 :]
                        await outcome
                        _release_stop(op, node, ready)
                        break
                if op.done:
                    _advance_stop(op, ready)
                if op.orphans and not op.done:
                    _adopt(op, ready)
            if not op.inflight and not op.requeue and not op.orphans:
                if not _unblock(op, ready):
                    break
                continue
            if not op.done and not op.requeue and op.inflight:
                await _sleep(op, loop)
            _advance_stop(op, ready)
    except BaseException:
        await _settle(op)  # a bug in the engine: leave nothing behind
        raise
    finally:
        op.driver = None
        op.tasks.clear()


def _unblock(op: Operation, ready: list[Node]) -> bool:
    """Nothing runs, nothing is ready, yet services wait: their waits form a cycle.

    Edges are as the order written made them; one from a run that has ended since (a
    service started again after the ones that waited for it, by a supervisor's restart
    say) can close a cycle with a dependency. The service that started last goes first:
    every edge it still waits on is such an edge, since what started after it and
    waited for it would have a later start. True if one was let go.
    """
    waiting = [rec for rec in op.records if rec.member is op and rec.state is _RUNNING]
    if not waiting:
        return False
    latest = max(waiting, key=lambda rec: rec.seq)
    latest.pending = 0
    ready.append(latest)
    return True


def _stoppable(op: Operation, node: Node) -> bool:
    """Whether `node`, taken from the ready set, is to be stopped now.

    An adopted service may have made it wait again, and a node made ready twice is
    stopped once.
    """
    if node.pending or node.member is not op:
        return False
    return type(node) is not Record or (node.state is _RUNNING and node.task is None)


def _deadline(op: Operation, rec: Record, began: float | None = None) -> float:
    """When `rec`'s stop (begun at loop time `began`, or now) must be over.

    Arms the operation's watchdog for it. Computed only once a stop turns out to take
    time (its hook suspended, or it has tasks to wait for).
    """
    info = rec.info
    timeout = info.timeout
    if timeout is None:
        timeout = check_timeout(rec.service)
    if timeout == _INF:
        return _INF
    loop = op.loop
    assert loop is not None
    deadline = (loop.time() if began is None else began) + timeout
    if deadline < op.armed:
        _arm(op, deadline)
    return deadline


def _begin_stop(op: Operation, rec: Record, eager: bool) -> int | Coroutine[Any, Any, None]:
    """Begin stopping `rec` beside others: done, spawned, deferred, or a rest to await."""
    info = rec.info
    attr = info.stop
    if rec.tasks or (attr is not None and info.blocking):
        mark_stopping(rec, op)
        _spawn(op, rec, _stop_task(op, rec, probe=False), eager)
        return _SPAWNED
    if attr is None:
        mark_stopping(rec, op)
        finish_stop(op, rec)
        return _DONE
    mode = info.stop_mode
    if mode == SYNC:
        mark_stopping(rec, op)
        context = _copy_context()
        try:
            hook = getattr(rec.service, attr)()
            step = context.run(hook.send, None)
        except StopIteration:
            finish_stop(op, rec)
            return _DONE
        except BaseException as exc:
            stop_failed(op, rec, exc)
            finish_stop(op, rec)
            return _DONE
        info.stop_mode = SUSPENDS
        rec.deadline = _deadline(op, rec)
        return _stop_rest_inline(op, rec, hook, step, context)
    if mode == UNKNOWN and not eager and not _probe_or_defer(op, info, rec):
        return _DEFERRED
    mark_stopping(rec, op)
    _spawn(op, rec, _stop_task(op, rec, probe=mode == UNKNOWN and not eager), eager)
    return _SPAWNED


async def _stop_alone(op: Operation, rec: Record) -> None:
    """Stop `rec` right here in the driver."""
    mark_stopping(rec, op)
    info = rec.info
    attr = info.stop
    if attr is None:
        if rec.tasks:
            await stop_tasks(op, rec, _deadline(op, rec), check_grace(rec.service))
        finish_stop(op, rec)
        return
    if info.blocking:
        await _stop_blocking(op, rec)
        finish_stop(op, rec)
        return
    began = op.loop.time() if op.loop is not None else 0.0
    context = _copy_context()
    try:
        hook = getattr(rec.service, attr)()
        step = context.run(hook.send, None)
    except StopIteration:
        if info.stop_mode == UNKNOWN:
            info.stop_mode = SYNC
    except BaseException as exc:
        stop_failed(op, rec, exc)
    else:
        info.stop_mode = SUSPENDS
        rec.deadline = _deadline(op, rec)
        await _stop_rest_inline(op, rec, hook, step, context)
        return
    if rec.tasks:
        await stop_tasks(op, rec, _deadline(op, rec, began), check_grace(rec.service))
    finish_stop(op, rec)


async def _stop_rest_inline(
    op: Operation,
    rec: Record,
    hook: Coroutine[Any, Any, Any],
    step: Any,
    context: contextvars.Context,
) -> None:
    """Finish, in the driver, a stop hook that suspended; the watchdog bounds it.

    `rec.deadline` is when the stop must be over.
    """
    driver = op.driver
    assert driver is not None
    limit = rec.deadline
    op.inline = rec
    op.inline_coro = hook
    error: BaseException | None = None
    try:
        await resume(hook, step, context)
    except BaseException as exc:
        error = _inline_error(op, rec, exc)
    finally:
        op.inline = None
        op.inline_coro = None
        rec.deadline = _INF
    if op.self_cancels:  # it finished despite our cancellation: withdraw it
        _withdraw(op, driver)
    if error is not None:
        stop_failed(op, rec, error)
    if rec.tasks:
        await stop_tasks(op, rec, limit, check_grace(rec.service))
    finish_stop(op, rec)


def _inline_error(op: Operation, rec: Record, exc: BaseException) -> BaseException:
    """What an inline stop hook raised means: a timeout (ours), or its own error.

    A hook the watchdog abandoned was closed: awaiting it raised at once.
    """
    if isinstance(exc, asyncio.CancelledError) or op.self_cancels:
        driver = op.driver
        assert driver is not None
        return _ours(op, driver, rec, exc)
    return exc


def _withdraw(op: Operation, driver: asyncio.Task[Any]) -> int:
    """Take back the cancellations the watchdog sent the driver; return what remains."""
    remaining = driver.cancelling()
    for _ in range(op.self_cancels):
        remaining = driver.uncancel()
    op.self_cancels = 0
    return remaining


def _ours(
    op: Operation, driver: asyncio.Task[Any], rec: Record, exc: BaseException
) -> BaseException:
    """An inline stop hook raised: because its deadline passed, or on its own."""
    if not op.self_cancels:
        return exc
    if _withdraw(op, driver) > 0:
        raise exc  # cancelled by someone else as well
    return timeout_error(rec, STOP, abandoned=op.expired.get(rec, 0) >= 2)


async def _stop_task(op: Operation, rec: Record, probe: bool) -> None:
    """A whole stop in a task of its own; errors go to `op.errors`; reports, never raises."""
    info = rec.info
    attr = info.stop
    task = _current_task()
    loop = op.loop
    assert loop is not None
    began = loop.time()
    try:
        if attr is not None and info.blocking:
            await _stop_blocking(op, rec)
        elif attr is not None:
            step: Any = _NOT_STEPPED
            try:
                hook = getattr(rec.service, attr)()
                if info.stop_mode != SUSPENDS:
                    step = hook.send(None)
                    info.stop_mode = SUSPENDS
                    if probe:
                        probe = False
                        _probed(op, info)
            except StopIteration:
                if info.stop_mode == UNKNOWN:
                    info.stop_mode = SYNC
            except BaseException as exc:
                stop_failed(op, rec, exc)
            else:
                rec.deadline = _deadline(op, rec, began)
                try:
                    if step is _NOT_STEPPED:
                        await hook  # known to suspend: nothing to learn from its first step
                    else:
                        await resume(hook, step, None)
                except asyncio.CancelledError as exc:
                    if rec.task is not task:
                        return  # abandoned: the stop went on without it
                    expired = op.expired.get(rec, 0)
                    error = timeout_error(rec, STOP, abandoned=False) if expired else exc
                    stop_failed(op, rec, error)
                except BaseException as exc:
                    if rec.task is not task:
                        return
                    stop_failed(op, rec, exc)
                finally:
                    rec.deadline = _INF
        if rec.tasks:
            await stop_tasks(op, rec, _deadline(op, rec, began), check_grace(rec.service))
    finally:
        if probe:
            _probed(op, info)
    if rec.task is not task and op.expired.get(rec, 0) >= 2:
        return  # abandoned by the watchdog, which reported it
    rec.task = None
    finish_stop(op, rec)
    op.report(rec)


_NOT_STEPPED: Final = object()


async def _adopted_stop_task(op: Operation, rec: Record) -> None:
    """Stop an orphan taken in late: the stop phase's stages before `stop` first."""
    info = rec.info
    for stage in phase_stages(STOP._phase, info.custom_stages):
        if stage is STOP:
            break
        attr = info.hooks.get(stage)
        if attr is not None:
            try:
                await call_hook(rec, stage, attr, guard=True)
            except BaseException as exc:
                op.errors.append(exc)
    mark_stopping(rec, op)
    await _stop_task(op, rec, probe=False)


async def _stop_blocking(op: Operation, rec: Record) -> None:
    """Run a blocking stop hook in a worker thread, bounded by the service's timeout.

    Past the timeout it is reported and left to finish on its own: a thread cannot be
    interrupted.
    """
    assert rec.info.stop is not None
    loop = op.loop
    assert loop is not None
    timeout = check_timeout(rec.service)
    fut = loop.run_in_executor(None, _copy_context().run, getattr(rec.service, rec.info.stop))
    done, _ = await asyncio.wait((fut,), timeout=None if timeout == _INF else timeout)
    if not done:
        fut.add_done_callback(_retrieve)
        stop_failed(op, rec, timeout_error(rec, STOP, abandoned=True, thread=True))
        return
    error = fut.exception()
    if error is not None:
        stop_failed(op, rec, error)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


# ---------------------------------------------------------------------- watchdog


def _arm(op: Operation, deadline: float) -> None:
    """One timer per operation, armed for the earliest deadline of a hook in flight."""
    if op.timer is not None:
        op.timer.cancel()
    loop = op.loop
    assert loop is not None
    op.armed = deadline
    op.timer = loop.call_at(deadline, _fire, op)


def _fire(op: Operation) -> None:
    op.timer = None
    op.armed = _INF
    if op.finished:
        return
    loop = op.loop
    assert loop is not None
    now = loop.time()
    running = [rec for rec in op.tasks if rec.task is not None]
    if op.inline is not None:
        running.append(op.inline)
    upcoming = _INF
    for rec in running:
        if rec.deadline <= now:
            level = op.expired.get(rec, 0) + 1
            op.expired[rec] = level
            rec.deadline = now + check_grace(rec.service) if level == 1 else _INF
            _expire(op, rec, level)
        upcoming = min(upcoming, rec.deadline)
    if upcoming != _INF:
        _arm(op, upcoming)


def _expire(op: Operation, rec: Record, level: int) -> None:
    """`rec`'s stop hook outlived its deadline: cancel it; past the grace, abandon it."""
    task = rec.task
    if task is not None:  # in a task of its own
        if level == 1:
            task.cancel()
            return
        rec.task = None  # it ignored its cancellation: the stop goes on without it
        stop_failed(op, rec, timeout_error(rec, STOP, abandoned=True))
        finish_stop(op, rec)
        op.report(rec)
        return
    driver = op.driver
    if op.inline is rec and driver is not None:
        if level >= 2:  # abandon it: closed, the driver's await of it raises at once
            coro = op.inline_coro
            if coro is not None:
                with contextlib.suppress(RuntimeError):  # it ignored GeneratorExit too
                    coro.close()
        op.self_cancels += 1
        driver.cancel()

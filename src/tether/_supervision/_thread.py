"""ServiceThread: a service graph run by the same engine in a thread with its own event loop.

The ServiceThread is a node of the parent graph. Its `start` hook starts a thread
whose loop starts the wrapped service as a root (`start_root`: the same engine, in
that loop), and returns once that start has finished there, raising what it raised.
Its `stop` hook asks the thread's graph to stop, waits for the thread to end (the
loop closed, nothing left in it) and joins it. Between the two, a watcher task turns
the end of the thread's graph (a crash, or a stop requested inside it) into a crash or
a stop of the parent's node, and a heartbeat task reports a thread whose loop stops
answering.

Everything between the two loops goes through `call_soon_threadsafe` and futures
bridged with `asyncio.wrap_future`: nothing polls.

Longer than 600 lines because a ServiceThread is one object living in two event
loops: its start, stop, watcher, heartbeat and the calls between them read together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

from tether._core._base import ServiceBase, record
from tether._core._engine import reload, start_root, stop_root, wait
from tether._core._errors import DefinitionError, ServiceStateError, TetherError
from tether._core._events import EventKind, LifecycleEvent, Subscriber, _subscribers, publish
from tether._core._frames import stuck_at
from tether._core._records import display_name
from tether._core._service import Service

__all__ = ["LoopFactory", "ServiceThread", "ThreadStalledError", "use_loop_factory"]

logger = logging.getLogger("tether")

S = TypeVar("S", bound=ServiceBase)
R = TypeVar("R")
P = ParamSpec("P")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_current: contextvars.ContextVar[ServiceThread[Any] | None] = contextvars.ContextVar(
    "tether_service_thread", default=None
)
_loop_factory_var: contextvars.ContextVar[LoopFactory | None] = contextvars.ContextVar(
    "tether_loop_factory", default=None
)


def use_loop_factory(factory: LoopFactory | None) -> None:
    """Say, in the current context, which factory made the running loop.

    The runner calls it in its main task; a ServiceThread started from that context
    (or from one of its threads) makes its own loop with the same factory.
    """
    _loop_factory_var.set(factory)


class ThreadStalledError(TetherError):
    """The event loop of a `ServiceThread` stopped answering for `stall_timeout`.

    Raised as the crash of the ServiceThread in the parent graph; the message names the
    thread and where its code is stuck.
    """


def _running_future() -> concurrent.futures.Future[Any]:
    # A future past PENDING cannot be cancelled: a wrapper awaited (and cancelled) on
    # one side never cancels it under the other side, which sets it exactly once.
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()
    return fut


class _Run:
    """One run of a ServiceThread: its thread, its loop, and how they are going."""

    __slots__ = (
        "cancelled",
        "done",
        "ended",
        "exited",
        "halt",
        "lock",
        "loop",
        "main_task",
        "parent_context",
        "parent_current",
        "parent_loop",
        "parent_subscribers",
        "reported",
        "started",
        "stopping",
        "thread",
        "thread_subscribers",
    )

    def __init__(self, parent_loop: asyncio.AbstractEventLoop) -> None:
        self.parent_loop = parent_loop
        self.parent_context = contextvars.copy_context()
        self.parent_subscribers = _subscribers.get()
        self.parent_current = _current.get()
        self.thread_subscribers: tuple[Subscriber, ...] = (
            (self.forward,) if self.parent_subscribers else ()
        )
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The thread's loop, once it exists; None again never (closed loops say so)."""
        self.cancelled = False
        """The parent gave up on the start; the thread's main task must end at once."""
        self.started: concurrent.futures.Future[None] = _running_future()
        """Set when the thread's graph has started, or with what its start raised."""
        self.done: concurrent.futures.Future[None] = _running_future()
        """Set when the thread is about to end: its graph stopped and its loop closed."""
        self.exited: concurrent.futures.Future[BaseException | None] = _running_future()
        """Set when the thread's root stopped waiting: with its crash, or None."""
        self.ended: asyncio.Future[None] = asyncio.wrap_future(self.done, loop=parent_loop)
        """`done` on the parent's loop (one wrapper, shared by every waiter there)."""
        self.ended.add_done_callback(_retrieve)
        self.halt: asyncio.Event | None = None
        """Set in the thread's loop when the parent stops the thread's graph."""
        self.stopping = False
        """The parent asked the thread to stop; its end is no crash."""
        self.reported = False
        """The watcher raised the thread's outcome already."""
        self.thread: threading.Thread | None = None
        self.main_task: asyncio.Task[None] | None = None
        """The task running the thread's graph (only touched from the thread's loop)."""

    def publish_from_here(self) -> None:
        """Forward the thread's events from now on in the current context.

        Called where the parent asks the thread's graph for a reload or a stop, so that
        what the graph then does is published in the context of the parent's phase (a
        tracer sees the thread's stop inside the parent's stop), with the subscriptions
        of the start all the same.
        """
        context = contextvars.copy_context()
        context.run(_subscribers.set, self.parent_subscribers)
        self.parent_context = context

    def forward(self, event: LifecycleEvent) -> None:
        """Publish an event of the thread's graph to the parent's subscribers, on its loop."""
        with contextlib.suppress(RuntimeError):  # the parent's loop closed: nobody to tell
            self.parent_loop.call_soon_threadsafe(publish, event, context=self.parent_context)


class ServiceThread(Service, Generic[S]):
    """Run a service, and the graph it depends on, in a thread with its own event loop.

    A node of the parent graph like any service: starting it starts a thread whose loop
    starts `service` and its dependencies (with the same rules: order, concurrency,
    rollback), and returns once they run, raising what their start raised. Stopping it
    stops that graph in its thread, closes the loop and joins the thread; no thread is
    left afterwards, after a crash or a failed start either. A crash in the thread (a
    task or a hook raising) crashes this node in the parent graph, so the parent's
    `wait()`/`run()` raise it. Context variables and lifecycle event subscriptions
    of the code that started the parent graph are carried into the thread:

    ```python
    class App(tether.Service):
        def __init__(self) -> None:
            self.render = tether.ServiceThread(Renderer())  # runs in its own loop

        @property
        def dependencies(self) -> list[tether.Service]:
            return [self.render]

        async def handle(self, page: str) -> bytes:
            return await self.render.call(self.render.service.render, page)
    ```

    `heartbeat` (seconds, None for none): how often the parent checks that the
    thread's loop still answers; one that has not answered within `heartbeat` is
    reported with a warning naming where the thread is stuck, and a
    `EventKind.THREAD_STALLED` event. With `stall_timeout` (seconds), a loop that has
    not answered for that long crashes this node with
    [`ThreadStalledError`][tether.ThreadStalledError]. `graceful_shutdown_timeout` bounds the whole
    stop of the thread's graph.

    The thread's event loop is of the parent's kind: made by the same factory when
    [`run`][tether.run] made the parent's (`loop="uvloop"`, `loop=rloop.new_event_loop`,
    ...), else by the parent loop's class when it comes from outside asyncio, else
    asyncio's default. `loop_factory` (a callable returning a loop) chooses another,
    e.g. `asyncio.new_event_loop` under a loop that runs only in the main thread,
    such as a Qt loop; a factory that fails in the thread fails the start, saying so.
    """

    def __init__(
        self,
        service: S,
        /,
        *,
        name: str | None = None,
        heartbeat: float | None = 1.0,
        stall_timeout: float | None = None,
        graceful_shutdown_timeout: float = 10.0,
        loop_factory: LoopFactory | None = None,
    ) -> None:
        given: object = service
        if not isinstance(given, ServiceBase):
            hint = ""
            if isinstance(given, type) and issubclass(given, ServiceBase):
                hint = f" Pass an instance, ServiceThread({given.__name__}()), or build it "
                hint += f"in the thread: ServiceThread(tether.Lazy({given.__name__}))."
            raise DefinitionError(
                f"ServiceThread() takes the service to run in the thread, got {given!r} "
                f"({type(given).__name__}).{hint}"
            )
        label = name or display_name(service)
        for what, value in (
            ("heartbeat", heartbeat),
            ("stall_timeout", stall_timeout),
            ("graceful_shutdown_timeout", graceful_shutdown_timeout),
        ):
            checked: object = value
            if checked is None and what != "graceful_shutdown_timeout":
                continue
            if isinstance(checked, bool) or not isinstance(checked, int | float) or not checked > 0:
                raise DefinitionError(
                    f"ServiceThread[{label}]: {what} must be a positive number of seconds, "
                    f"got {value!r}."
                )
        if stall_timeout is not None and heartbeat is None:
            raise DefinitionError(
                f"ServiceThread[{label}]: stall_timeout needs a heartbeat to detect the "
                f"stall; give heartbeat= (seconds) too."
            )
        if stall_timeout is not None and heartbeat is not None and stall_timeout < heartbeat:
            raise DefinitionError(
                f"ServiceThread[{label}]: stall_timeout ({stall_timeout}s) must be at least "
                f"the heartbeat ({heartbeat}s)."
            )
        factory: object = loop_factory
        if factory is not None and not callable(factory):
            raise DefinitionError(
                f"ServiceThread[{label}]: loop_factory= takes a callable that returns an "
                f"event loop (e.g. asyncio.new_event_loop), got {loop_factory!r}."
            )
        self.service: S = service
        """The service run in the thread (the root of the thread's graph)."""
        self._loop_factory = loop_factory
        self.name = label
        self._heartbeat = heartbeat
        self._stall_timeout = stall_timeout
        self._timeout = float(graceful_shutdown_timeout)
        self._run: _Run | None = None

    @property
    def graceful_shutdown_timeout(self) -> float:
        """Seconds the whole stop of the thread's graph may take (given at construction)."""
        return self._timeout

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The thread's event loop while the thread runs, else None."""
        run = self._run
        if run is None or run.done.done():
            return None
        return run.loop

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the current or last run (None before the first start)."""
        run = self._run
        return None if run is None else run.thread

    @staticmethod
    def current() -> ServiceThread[Any] | None:
        """The ServiceThread whose thread runs the calling code, or None outside any.

        Code in the thread's graph uses it to reach back to the parent's loop with
        `call_parent`.
        """
        return _current.get()

    def _tether_subgraph(self) -> tuple[ServiceBase, ...]:
        """What the live status tree shows under this node: the thread's graph."""
        return (self.service,)

    # ---------------------------------------------------------- parent side

    async def on_reload(self) -> None:
        """Hook: the `reload` stage reaches the thread's graph, run in its loop."""
        if self._run is not None:
            self._run.publish_from_here()
        await self.call(reload, self.service)

    async def start(self) -> None:
        """Start the thread and its graph; return once it runs, raise what its start raised."""
        run = _Run(asyncio.get_running_loop())
        factory = _loop_factory(run.parent_loop, self._loop_factory)
        context = run.parent_context.copy()
        context.run(_subscribers.set, run.thread_subscribers)
        context.run(_current.set, self)
        context.run(_loop_factory_var.set, factory)
        thread = threading.Thread(
            target=self._thread_main,
            args=(run, context, factory),
            name=f"tether {self.name}",
            daemon=True,
        )
        run.thread = thread
        self._run = run
        thread.start()
        try:
            await asyncio.wrap_future(run.started)
        except BaseException:
            await self._end(run, cancel=True)
            raise
        self.add_task(self._watch(run), name="thread")
        if self._heartbeat is not None:
            self.add_task(self._beat(run, self._heartbeat), name="heartbeat")

    async def stop(self) -> None:
        """Stop the thread's graph in its loop, close the loop, join the thread."""
        run = self._run
        if run is None:
            return
        error = await self._end(run, cancel=False)
        if error is not None and not run.reported:
            run.reported = True
            raise error

    async def _end(self, run: _Run, *, cancel: bool) -> BaseException | None:
        """Make the thread end and wait for it; return what its graph raised.

        `cancel` (a start given up on) cancels the thread's main task: its start rolls
        back. Otherwise the thread's root is asked to stop, as `request_stop` does.
        """
        run.stopping = True
        run.publish_from_here()
        with run.lock:
            loop = run.loop
            run.cancelled = cancel
        if loop is not None and not run.done.done():
            with contextlib.suppress(RuntimeError):  # its loop closed: the thread is ending
                loop.call_soon_threadsafe(self._stop_in_thread, run)
        thread = run.thread
        assert thread is not None
        try:
            await asyncio.wait({run.ended})
        finally:
            if not run.ended.done():
                logger.warning(
                    "tether: %s: the thread %r did not end in time and is left running "
                    "(threads cannot be killed); it is at %s",
                    self.name,
                    thread.name,
                    stuck_at(thread)[0],
                )
        thread.join()  # it set `done` as its last step: this returns at once
        return run.done.exception()

    def _stop_in_thread(self, run: _Run) -> None:
        """In the thread's loop: end its main task (cancelled start) or stop its root."""
        if run.cancelled:
            if run.main_task is not None:
                run.main_task.cancel()
            return
        if run.halt is not None:
            run.halt.set()
        self.service.request_stop()

    async def _watch(self, run: _Run) -> None:
        """Turn the end of the thread's run into this node's crash, or its stop."""
        exited = asyncio.wrap_future(run.exited)
        try:
            waited: set[asyncio.Future[Any]] = {exited, run.ended}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if run.stopping:
            return
        error = run.exited.result() if run.exited.done() else run.done.exception()
        if error is None:
            # Its root was asked to stop from inside the thread: this node follows.
            self.request_stop()
            return
        run.reported = True
        raise error

    async def _beat(self, run: _Run, interval: float) -> None:
        """Check every `interval` that the thread's loop answers; report when it does not."""
        loop = run.loop
        assert loop is not None
        assert run.thread is not None
        ended = run.ended
        while await self.sleep(interval):
            answer = _running_future()
            try:
                loop.call_soon_threadsafe(answer.set_result, None)
            except RuntimeError:
                return  # its loop closed: the thread is ending
            answered = asyncio.wrap_future(answer)
            asked = time.monotonic()
            try:
                done, _ = await asyncio.wait(
                    {answered, ended}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                if ended in done:
                    return
                if done:
                    continue
                self._stalled(run.thread, interval)
                limit = self._stall_timeout
                done, _ = await asyncio.wait(
                    {answered, ended},
                    timeout=None if limit is None else limit - interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if ended in done:
                    return
                if not done:
                    assert limit is not None
                    raise ThreadStalledError(
                        f"{self.name}: the event loop of thread {run.thread.name!r} has "
                        f"not answered for {limit}s (stall_timeout); it is stuck at "
                        f"{stuck_at(run.thread)[0]}. Blocking code belongs in a "
                        f"tether.BlockingService or asyncio.to_thread()."
                    )
                logger.info(
                    "tether: %s: the thread %r answers again after %.2fs",
                    self.name,
                    run.thread.name,
                    time.monotonic() - asked,
                )
            finally:
                answered.cancel()

    def _stalled(self, thread: threading.Thread, interval: float) -> None:
        location, stack = stuck_at(thread)
        logger.warning(
            "tether: %s: the event loop of thread %r has not answered for %.2fs (heartbeat); "
            "it is stuck at %s\n%s",
            self.name,
            thread.name,
            interval,
            location,
            stack,
        )
        publish(
            LifecycleEvent(
                kind=EventKind.THREAD_STALLED,
                service=self,
                duration=interval,
                detail=location,
            )
        )

    # ---------------------------------------------------------- thread side

    def _thread_main(
        self, run: _Run, context: contextvars.Context, factory: LoopFactory | None
    ) -> None:
        error: BaseException | None = None
        try:
            with asyncio.Runner(loop_factory=self._in_thread(factory)) as runner:
                loop = runner.get_loop()
                with run.lock:
                    run.loop = loop
                    cancelled = run.cancelled
                if not cancelled:
                    runner.run(self._main(run), context=context)
                else:
                    run.started.set_exception(asyncio.CancelledError())
        except BaseException as exc:  # handed to the parent's loop, below
            error = exc
        finally:
            if not run.started.done():
                run.started.set_exception(error or asyncio.CancelledError())
            if error is None:
                run.done.set_result(None)
            else:
                run.done.set_exception(error)

    def _in_thread(self, factory: LoopFactory | None) -> LoopFactory | None:
        """`factory`, whose failure says which loop the thread wanted and how to choose."""
        if factory is None:
            return None

        def make_loop() -> asyncio.AbstractEventLoop:
            try:
                return factory()
            except Exception as exc:
                exc.add_note(
                    f"tether: ServiceThread[{self.name}] makes its event loop with "
                    f"{getattr(factory, '__qualname__', factory)!r} (the kind of the parent's "
                    f"loop), and that failed in its thread; give ServiceThread(..., "
                    f"loop_factory=asyncio.new_event_loop) or another factory that works "
                    f"outside the main thread."
                )
                raise

        return make_loop

    async def _main(self, run: _Run) -> None:
        run.main_task = asyncio.current_task()
        halt = run.halt = asyncio.Event()
        if run.cancelled:
            raise asyncio.CancelledError
        try:
            await start_root(self.service)
        except BaseException as exc:
            run.started.set_exception(exc)
            raise
        run.started.set_result(None)
        body_error: BaseException | None = None
        try:
            try:
                await wait(record(self.service))
            except BaseException as exc:
                body_error = exc
            if not isinstance(body_error, asyncio.CancelledError):
                # The parent's graph stops this one in its own order, dependents first.
                run.exited.set_result(body_error)
                if not run.stopping:
                    await halt.wait()
        finally:
            await stop_root(self.service, body_error)
        if body_error is not None:
            raise body_error

    # ------------------------------------------------------------- calls

    @overload
    async def call(self, function: Coroutine[Any, Any, R], /) -> R: ...
    @overload
    async def call(
        self, function: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...
    @overload
    async def call(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    async def call(self, function: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` in the thread's loop and return its result.

        `function` may be a coroutine function (awaited there), a plain function (called
        there: the way to touch state the thread owns) or a coroutine object. Exceptions
        propagate to the caller; cancelling the caller cancels the call in the thread.
        Context variables of the caller are visible to it. Raises
        [`ServiceStateError`][tether.ServiceStateError] if the thread is not running, or stops
        before the call finished (calls in flight are cancelled when its graph has
        stopped):

        ```python
        rows = await thread.call(thread.service.query, "select 1")
        ```
        """
        run = self._run
        loop = run.loop if run is not None else None
        if run is None or loop is None or not run.started.done() or run.done.done():
            _close(function)
            state = record(self).state.value
            raise ServiceStateError(
                f"{self.name}.call() needs a running thread, but {self.name} is {state}; "
                f"call it while the ServiceThread runs."
            )
        what = f"{self.name}.call()"
        _check_callable(function, args, kwargs, what)
        invoke = _invoke(function, args, kwargs, run.thread_subscribers, self)
        return await _submit(run, loop, invoke, what)

    @overload
    async def call_parent(self, function: Coroutine[Any, Any, R], /) -> R: ...
    @overload
    async def call_parent(
        self, function: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...
    @overload
    async def call_parent(
        self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...
    async def call_parent(self, function: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` in the parent's loop, from the thread.

        The reverse of `call`, with the same rules; code in the thread's graph finds
        its ServiceThread with `ServiceThread.current`:

        ```python
        here = tether.ServiceThread.current()
        await here.call_parent(api.publish, result)
        ```
        """
        run = self._run
        if run is None or run.done.done():
            _close(function)
            raise ServiceStateError(
                f"{self.name}.call_parent() needs a running thread; {self.name} has none."
            )
        what = f"{self.name}.call_parent()"
        _check_callable(function, args, kwargs, what)
        invoke = _invoke(function, args, kwargs, run.parent_subscribers, run.parent_current)
        return await _submit(run, run.parent_loop, invoke, what)


def _loop_factory(
    parent: asyncio.AbstractEventLoop, chosen: LoopFactory | None
) -> LoopFactory | None:
    """The factory of the thread's loop: chosen, else the parent's kind (None: asyncio's)."""
    if chosen is not None:
        return chosen
    inherited = _loop_factory_var.get()
    if inherited is not None:
        return inherited
    kind = type(parent)
    # asyncio's own loops and tether's virtual clock: the thread gets asyncio's default.
    if kind.__module__.partition(".")[0] in ("asyncio", "tether"):
        return None
    return kind


def _close(function: object) -> None:
    if asyncio.iscoroutine(function):
        function.close()


async def _invoke(
    function: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    subscribers: tuple[Subscriber, ...],
    current: ServiceThread[Any] | None,
) -> Any:
    """The call, run in the target loop with that loop's subscribers and ServiceThread."""
    _subscribers.set(subscribers)
    _current.set(current)
    if asyncio.iscoroutine(function):
        return await function
    result = function(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _check_callable(
    function: Any, args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> None:
    if asyncio.iscoroutine(function):
        if args or kwargs:
            function.close()
            raise TypeError(f"{what} takes arguments only with a function, not a coroutine.")
    elif not callable(function):
        raise TypeError(
            f"{what} takes a function or a coroutine, got {function!r} ({type(function).__name__})."
        )


async def _submit(
    run: _Run, loop: asyncio.AbstractEventLoop, invoke: Coroutine[Any, Any, Any], what: str
) -> Any:
    """Run `invoke` in `loop` and wait for it from the calling loop."""
    try:
        future = asyncio.run_coroutine_threadsafe(invoke, loop)
    except RuntimeError:
        invoke.close()
        raise ServiceStateError(f"{what}: the target event loop is closed.") from None
    result = asyncio.wrap_future(future)
    guard: asyncio.Future[None] | None = None

    def stop_waiting(_: object) -> None:
        result.cancel()

    if asyncio.get_running_loop() is run.parent_loop and loop is not run.parent_loop:
        guard = run.ended  # a thread that ends first never answers: stop waiting then
        guard.add_done_callback(stop_waiting)
    try:
        return await result
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if result.cancelled() and task is not None and not task.cancelling():
            raise ServiceStateError(
                f"{what}: the thread ended before the call finished; it was cancelled."
            ) from None
        raise
    finally:
        if guard is not None:
            guard.remove_done_callback(stop_waiting)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()

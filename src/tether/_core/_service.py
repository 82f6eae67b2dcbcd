"""Service and BlockingService: the facet contract, and `status`, a snapshot of one service."""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Self

from . import _engine
from ._base import ServiceBase, add_implicit_dependencies, default_hook, record
from ._errors import ServiceStateError
from ._records import Record, ServiceState, display_name
from ._servicelog import ServiceLogProperty
from ._tasks import sleep_until

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import TypeVar

    _S = TypeVar("_S", bound="ServiceBase")

__all__ = ["BlockingService", "Service", "ServiceStatus", "status"]


class Service(ServiceBase):
    """An asyncio component: how it starts, how it stops, what it needs.

    A mixin with facet's contract: override `start` and `stop`, list what it needs
    in `dependencies`, spawn background work with `add_task`, then `await
    service.run()` or use `async with service:`. Starting a service starts its
    dependencies first (concurrently where independent); stopping runs in exact
    reverse, dependents first. Any exception stops the whole stack and propagates:

    ```python
    class Api(tether.Service):
        def __init__(self, db: Database) -> None:
            self.db = db

        @property
        def dependencies(self) -> list[tether.Service]:
            return [self.db]

        async def start(self) -> None:
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", 8080)

        async def stop(self) -> None:
            self.server.close()
            await self.server.wait_closed()

    asyncio.run(Api(Database()).run())
    ```
    """

    @default_hook
    async def start(self) -> None:
        """Hook: bring the component up. Its dependencies are running already."""

    @default_hook
    async def stop(self) -> None:
        """Hook: take the component down. Its dependents have stopped already.

        Runs at most `graceful_shutdown_timeout` seconds. The service's background
        tasks are cancelled and awaited after it returns.
        """

    def add_task(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run `coro` as a background task owned by this service.

        If the task raises, the stack crashes: `wait()` and `run()` of every
        service depending on this one raise the exception, and everything stops. On
        stop the task is cancelled and awaited before the service's stop completes.
        Allowed while the service is starting, running or stopping.
        """
        return _engine.add_task(record(self), coro, name)

    async def wait(self) -> None:
        """Wait until a stop is requested or something this service depends on crashed.

        Raises the crash's exception. Returns at once if the service has already
        stopped. Raises [`ServiceStateError`][tether.ServiceStateError] if it never started.
        """
        await _engine.wait(record(self))

    async def run(self) -> None:
        """Start the graph, wait until a stop is requested or a crash, stop the graph."""
        async with self:
            await self.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return early when this service begins to stop.

        Returns True if the full time elapsed, False if it was cut short by a stop, so
        a loop reads `while await self.sleep(5): ...`.
        """
        loop = asyncio.get_running_loop()
        return await sleep_until(record(self), loop.time() + seconds)

    async def __aenter__(self) -> Self:
        await _engine.start_root(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await _engine.stop_root(self, exc)

    # ------------------------------------------------------------------------------
    # mode's names, for programs ported from mode (docs/migration/mode.md).

    # Typed Any on purpose: a subclass that has its own `log` (a list, its own logger)
    # type-checks as before; at runtime its attribute shadows this one.
    log: Any = ServiceLogProperty()
    """A logger that names this service in every line (mode's `self.log`).

    The logger of the service's module, as a `logging.LoggerAdapter`: each message
    starts with `[Name]` (the service's name as tether shows it) and each record
    carries a `service` field, so the plain, console and JSON log formats all show
    which service spoke. A service that sets `self.log` itself keeps its own.
    """

    @property
    def should_stop(self) -> bool:
        """Whether this service is not running or has been asked to stop (mode's name).

        True before the first start, once a stop was requested (`request_stop`, a signal,
        a crash of something it depends on) and from the moment its stop begins. A loop
        reads `while not self.should_stop: ...`; `await self.sleep(...)` returns early
        at the same moment.
        """
        rec: Record | None = self.__dict__.get("_tether")
        if rec is None or rec.stopping or rec.exit_requested:
            return True
        return rec.state is not ServiceState.RUNNING and rec.state is not ServiceState.STARTING

    def add_future(self, awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run `awaitable` as a background task of this service (mode's `add_future`).

        `add_task` for any awaitable (a coroutine, a future, a task): the same
        supervision, so an exception crashes the stack and a stop cancels and awaits it.
        """
        if asyncio.iscoroutine(awaitable):
            return self.add_task(awaitable)

        async def wait_for(awaited: Awaitable[Any]) -> Any:
            return await awaited

        return self.add_task(wait_for(awaitable), name=repr(awaitable))

    def add_dependency(self, service: _S) -> _S:
        """Make `service` a dependency of this one from its next start on (mode's name).

        For a service added in `__init__` (mode's `on_init`): it starts before this one
        and stops after it, as if listed in `dependencies`, and is returned. Raises
        [ServiceStateError][tether.ServiceStateError] while this service is starting,
        running or stopping: the graph of a run is fixed when it starts (start what
        you need at runtime with `async with service:` in a task instead).
        """
        rec: Record | None = self.__dict__.get("_tether")
        if rec is not None and rec.state in (
            ServiceState.STARTING,
            ServiceState.RUNNING,
            ServiceState.STOPPING,
        ):
            raise ServiceStateError(
                f"{display_name(self)}.add_dependency({display_name(service)}) while "
                f"{rec.state.value}: dependencies are fixed when a run starts. Add it "
                f"before starting (in __init__), or start it from a task with "
                f"`async with service:`."
            )
        add_implicit_dependencies(self, [service])
        return service


class BlockingService(ServiceBase):
    """The same contract for blocking code: plain `def` hooks and `with`.

    Used on its own, a graph of blocking services starts and stops in the calling
    thread, in dependency order (one at a time). Inside an async graph (a dependency
    of a [`Service`][tether.Service]) its hooks run in a worker thread so the event loop never
    blocks. A stop hook cannot be interrupted in a thread: past the timeout it is
    reported and left to finish on its own:

    ```python
    class Store(tether.BlockingService):
        def start(self) -> None:
            self.db = sqlite3.connect("app.db")

        def stop(self) -> None:
            self.db.close()

    with Store() as store:
        ...
    ```
    """

    _tether_blocking = True

    @default_hook
    def start(self) -> None:
        """Hook: bring the component up. Its dependencies are running already."""

    @default_hook
    def stop(self) -> None:
        """Hook: take the component down. Its dependents have stopped already."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested; True if it was, False on `timeout`."""
        rec = record(self)
        event = rec.thread_exit
        if event is None:
            raise ServiceStateError(
                f"{display_name(self)}.wait() needs a started service; "
                f"use `with service:` or service.run()."
            )
        return event.wait(timeout)

    def run(self) -> None:
        """Start the graph, block until `request_stop()` (or Ctrl-C), stop the graph."""
        with self:
            self.wait()

    def __enter__(self) -> Self:
        _engine.start_root_sync(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        _engine.stop_root_sync(self, exc)


# --------------------------------------------------------------------------- status


class ServiceStatus:
    """A snapshot of one service, as `status` returns it (read-only).

    `name`: how tether names it; `state`; `uptime`: seconds since it started
    running (None unless running); `restarts`; `tasks`: its background tasks not yet
    finished; `dependencies`: what it depended on in its current or last run;
    `error`: what ended its last run badly, if anything; `skipped_ticks`: timer ticks
    skipped because a tick overran its interval; `loop_blocks`: how many times its
    code kept the event loop from turning for longer than the runner's
    `blocking_timeout` in this run, and `longest_block` the longest of those, in
    seconds (0 and 0.0 unless the blocked-loop detector is on).
    """

    # A plain slotted class rather than a dataclass: `import tether` stays cheap.
    __slots__ = (
        "dependencies",
        "error",
        "longest_block",
        "loop_blocks",
        "name",
        "restarts",
        "service",
        "skipped_ticks",
        "state",
        "tasks",
        "uptime",
    )

    service: ServiceBase
    name: str
    state: ServiceState
    uptime: float | None
    restarts: int
    tasks: tuple[asyncio.Task[Any], ...]
    dependencies: tuple[ServiceBase, ...]
    error: BaseException | None
    skipped_ticks: int
    loop_blocks: int
    longest_block: float

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, fields.pop(name))
        if fields:
            raise TypeError(f"ServiceStatus has no field(s) {sorted(fields)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ServiceStatus is read-only; cannot set {name!r}")

    def __repr__(self) -> str:
        uptime = "" if self.uptime is None else f" uptime={self.uptime:.1f}s"
        return (
            f"<ServiceStatus {self.name} {self.state.value}{uptime} "
            f"restarts={self.restarts} tasks={len(self.tasks)}>"
        )


def status(service: ServiceBase) -> ServiceStatus:
    """A snapshot of `service`'s state, uptime, restarts and running tasks."""
    rec = record(service)
    uptime = None
    if rec.state is ServiceState.RUNNING and rec.started_at is not None:
        uptime = time.monotonic() - rec.started_at
    return ServiceStatus(
        service=service,
        name=display_name(service),
        state=rec.state,
        uptime=uptime,
        restarts=rec.restarts,
        # tuple() first: copying a set is one step for the GIL, so a status read from
        # another thread (a ServiceThread's services) never sees the set change size.
        tasks=tuple(t for t in tuple(rec.tasks or ()) if not t.done()),
        dependencies=tuple(d.service for d in rec.deps),
        error=rec.error or rec.crash,
        skipped_ticks=rec.skipped_ticks,
        loop_blocks=rec.loop_blocks,
        longest_block=rec.longest_block,
    )

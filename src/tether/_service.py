"""Service and BlockingService: the facet contract, hooks, state and per-service records."""

from __future__ import annotations

import asyncio
import enum
import inspect
import math
import threading
import time
import types
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, Self, TypeAlias

from ._errors import DefinitionError, HookError, ServiceStateError
from ._hooknames import problems as hook_name_problems
from ._servicelog import ServiceLogProperty
from ._stages import BUILTIN_STAGES, START, STOP, Stage
from ._tasks import TaskSpec, sleep_until

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import TypeVar

    from ._scheduler import Operation

    _S = TypeVar("_S", bound="ServiceBase")

__all__ = [
    "BlockingService",
    "Service",
    "ServiceBase",
    "ServiceState",
    "ServiceStatus",
    "status",
]


class ServiceState(enum.StrEnum):
    """Where a service is in its lifecycle."""

    CREATED = "created"
    """Never started."""
    STARTING = "starting"
    """Its `start` hook is running."""
    RUNNING = "running"
    """Started; its tasks and timers run."""
    STOPPING = "stopping"
    """Its `stop` hook is running, or its tasks are being cancelled."""
    STOPPED = "stopped"
    """Stopped cleanly; it can be started again."""
    FAILED = "failed"
    """Its last run ended badly (failed start, crashed task, failed or late stop); it
    can be started again."""


# --------------------------------------------------------------------------- records


class Node:
    """A vertex the engine schedules: a service's record or an ordering barrier.

    `after` lists the nodes that must have started before this one: its
    dependencies, and the gate of the group it was brought up in (what the items
    written before it needed). Stopping follows the same edges in reverse. `gsucc`
    lists the nodes that have this one in their `after` for ordering rather than as
    a dependency (its dependents are found through `holders`). `member`,
    `pending` and `next` are scratch space of the operation that owns the node.
    """

    __slots__ = ("after", "gsucc", "member", "next", "pending")

    after: Sequence[Node]
    gsucc: list[Node] | None
    member: object
    pending: int
    next: list[Node] | None

    def __init__(self) -> None:
        self.after = _EMPTY
        self.gsucc = None
        self.member = None
        self.pending = 0
        self.next = None


class Barrier(Node):
    """Stands for "every item written before this point has started" (facet's groups).

    `owner` is the service whose `dependencies` wrote the items, `item` the index
    of the first item that waits for it; both only name it in messages.
    """

    __slots__ = ("item", "owner")

    owner: Record
    item: int

    def __init__(self, owner: Record, item: int, after: list[Node]) -> None:
        super().__init__()
        self.owner = owner
        self.item = item
        self.after = after

    def __repr__(self) -> str:
        return f"<Barrier before {self.owner.name}.dependencies[{self.item}]>"


class Supervising(Protocol):
    """What the engine asks of whoever supervises a service (see `Record.supervisor`).

    The engine never imports supervision: a supervisor registers itself on the records
    of its children, and the engine tells it about their exits through these methods.
    """

    def child_exited(self, rec: Record, exc: BaseException | None) -> Iterable[Record]:
        """`rec` exited (`exc` None: it asked to stop); return who else hears of it."""
        ...

    def child_cancelled(self, rec: Record, task: asyncio.Task[Any]) -> None:
        """A background task of `rec` ended cancelled while `rec` ran."""
        ...


class RunExtras:
    """The per-run state most services never need, kept apart to keep records small."""

    __slots__ = (
        "crash_raised",
        "exit_event",
        "prune_at",
        "skipped_ticks",
        "sleepers",
        "thread_exit",
    )

    def __init__(self) -> None:
        self.crash_raised = False
        self.exit_event: asyncio.Event | None = None
        self.thread_exit: threading.Event | None = None
        self.sleepers: set[asyncio.Future[bool]] | None = None
        self.prune_at = 64
        self.skipped_ticks = 0


class Record(Node):
    """Everything the engine knows about one service; lives in the service's __dict__.

    Containers that most services never need (tasks, events, the per-run extras) are
    created on first use: a graph of 100,000 services should not cost 500,000
    allocations, and a running service should keep little memory.
    """

    __slots__ = (
        "changed_at",
        "crash",
        "deadline",
        "deps",
        "error",
        "exit_requested",
        "extras",
        "holders",
        "implicit",
        "info",
        "loop",
        "mark",
        "op",
        "released",
        "restarts",
        "root_holds",
        "seq",
        "service",
        "started_at",
        "state",
        "stopping",
        "supervisor",
        "task",
        "tasks",
    )

    service: ServiceBase
    info: ClassInfo
    state: ServiceState
    op: Operation | None
    """The operation that owns the service right now (starting, stopping, reloading)."""
    mark: object
    """Scratch of the synchronous walks (collecting a graph, planning a stop)."""
    deps: tuple[Record, ...]
    holders: tuple[()] | list[Record] | dict[Record, None]
    """The dependents that hold this service: from the moment their start is planned
    until their stop has finished. A service stops when nothing holds it any more. A
    list while short, a dict past that (see `hold` and `unhold`)."""
    implicit: tuple[ServiceBase, ...]
    """Dependencies added by tether itself (the injector), besides `dependencies`."""
    root_holds: int
    tasks: set[asyncio.Task[Any]] | None
    exit_requested: bool
    crash: BaseException | None
    extras: RunExtras | None
    stopping: bool
    loop: asyncio.AbstractEventLoop | None
    started_at: float | None
    released: list[asyncio.Future[None]] | None
    """Resolved, then cleared, when a holder lets go of this service (`wait_released`)."""
    restarts: int
    error: BaseException | None
    supervisor: Supervising | None
    """The supervisor this service is a child of, while that supervisor runs."""
    seq: int
    """When it last reached RUNNING, as a process-wide sequence number."""
    changed_at: float
    """perf_counter() of the last state change while events were published, else 0."""
    task: asyncio.Task[Any] | None
    """The task running this service's start or stop in a task of its own, if any."""
    deadline: float
    """Loop time by which the running stop hook must have returned (inf otherwise)."""

    def __init__(self, service: ServiceBase) -> None:
        self.after = self.deps = _EMPTY
        self.gsucc = None
        self.seq = 0
        self.changed_at = 0.0
        self.member = None
        self.pending = 0
        self.next = None
        self.service = service
        self.info = class_info(type(service))
        self.state = ServiceState.CREATED
        self.op = None
        self.mark = None
        self.holders = _EMPTY
        self.implicit = ()
        self.root_holds = 0
        self.tasks = None
        self.exit_requested = False
        self.crash = None
        self.extras = None
        self.stopping = False
        self.loop = None
        self.started_at = None
        self.restarts = 0
        self.error = None
        self.supervisor = None
        self.released = None
        self.task = None
        self.deadline = math.inf

    def reset_for_run(self) -> None:
        """Fresh per-run state: each run begins with new tasks, flags and events."""
        self.tasks = None
        self.exit_requested = False
        self.crash = None
        self.extras = None
        if self.info.blocking:
            self.more().thread_exit = threading.Event()
        self.stopping = False
        self.started_at = None
        self.error = None

    def more(self) -> RunExtras:
        """This run's extras, created on first use."""
        extras = self.extras
        if extras is None:
            extras = self.extras = RunExtras()
        return extras

    # The extras read as attributes of the record (None, False or 0 until set).

    @property
    def exit_event(self) -> asyncio.Event | None:
        return None if self.extras is None else self.extras.exit_event

    @exit_event.setter
    def exit_event(self, value: asyncio.Event | None) -> None:
        self.more().exit_event = value

    @property
    def thread_exit(self) -> threading.Event | None:
        return None if self.extras is None else self.extras.thread_exit

    @property
    def sleepers(self) -> set[asyncio.Future[bool]] | None:
        return None if self.extras is None else self.extras.sleepers

    @sleepers.setter
    def sleepers(self, value: set[asyncio.Future[bool]] | None) -> None:
        self.more().sleepers = value

    @property
    def crash_raised(self) -> bool:
        return False if self.extras is None else self.extras.crash_raised

    @crash_raised.setter
    def crash_raised(self, value: bool) -> None:
        self.more().crash_raised = value

    @property
    def prune_at(self) -> int:
        return 64 if self.extras is None else self.extras.prune_at

    @prune_at.setter
    def prune_at(self, value: int) -> None:
        self.more().prune_at = value

    @property
    def skipped_ticks(self) -> int:
        return 0 if self.extras is None else self.extras.skipped_ticks

    @skipped_ticks.setter
    def skipped_ticks(self, value: int) -> None:
        self.more().skipped_ticks = value

    @property
    def name(self) -> str:
        return display_name(self.service)

    def __repr__(self) -> str:
        return f"<Record {self.name} {self.state.value}>"


_HOLDERS_AS_LIST: Final = 8
"""Up to this many holders are a list (small); past it, a dict (fast to remove from)."""


def hold(dep: Record, rec: Record) -> None:
    """`rec` holds `dep` (it depends on it and has not finished stopping)."""
    holders = dep.holders
    if isinstance(holders, tuple):
        dep.holders = [rec]
        return
    if isinstance(holders, list):
        if len(holders) < _HOLDERS_AS_LIST:
            holders.append(rec)
            return
        holders = dep.holders = dict.fromkeys(holders)
    holders[rec] = None


def unhold(dep: Record, rec: Record) -> bool:
    """`rec` lets go of `dep`; False if it did not hold it."""
    holders = dep.holders
    if isinstance(holders, tuple):
        return False
    if isinstance(holders, list):
        try:
            holders.remove(rec)
        except ValueError:
            return False
        return True
    if rec in holders:
        del holders[rec]
        return True
    return False


_EMPTY: tuple[Any, ...] = ()  # the edges of records that have no dependencies


def record(service: ServiceBase) -> Record:
    """The engine's record of `service`, created on first use (mixins have no __init__)."""
    d = service.__dict__
    rec: Record | None = d.get("_tether")
    if rec is None:
        rec = d["_tether"] = Record(service)
    return rec


def add_implicit_dependencies(service: ServiceBase, services: Iterable[ServiceBase]) -> None:
    """Make `services` dependencies of `service` on top of its `dependencies`.

    This is how the injector wires the lifecycle: what was injected into a service
    starts before it and stops after it. Implicit dependencies that `dependencies`
    does not list start concurrently, before the listed ones; those it lists keep the
    order written there.
    """
    rec = record(service)
    added = [s for s in services if s is not service]
    rec.implicit = tuple(dict.fromkeys((*rec.implicit, *added)))


def display_name(service: object) -> str:
    """How errors and logs name a service: its class, and its `name` if it has one."""
    label = class_label(type(service))
    try:
        own = service.__dict__.get("name")
    except AttributeError:
        own = None
    if isinstance(own, str) and own:
        short = own if len(own) <= 40 else own[:37] + "..."
        return f"{label}[{short}]"
    return label


def class_label(cls: type) -> str:
    """A class's qualified name without the `<locals>` of a defining function."""
    return cls.__qualname__.rsplit("<locals>.", 1)[-1]


# ----------------------------------------------------------------------- class info


class ClassInfo:
    """What a service class brings: its hooks per stage, its tasks, and any mistake in them.

    Built once per class and cached on it. Validation errors are kept and raised when
    the class is first used in a graph, before anything starts.
    """

    __slots__ = (
        "blocking",
        "custom_stages",
        "error",
        "hooks",
        "spawns",
        "start",
        "start_mode",
        "stop",
        "stop_mode",
        "timeout",
    )

    blocking: bool
    hooks: dict[Stage, str]
    custom_stages: frozenset[Stage]
    spawns: tuple[tuple[str, TaskSpec], ...]
    start: str | None
    stop: str | None
    error: HookError | None
    start_mode: int
    """Whether the start hook has ever suspended (see the scheduler); learned at run time."""
    stop_mode: int
    timeout: float | None
    """`graceful_shutdown_timeout` when the class keeps the default (None: ask each one)."""


def class_info(cls: type[ServiceBase]) -> ClassInfo:
    """The cached `ClassInfo` of `cls`."""
    info = cls.__dict__.get("_tether_class_info")
    if info is None:
        info = _build_class_info(cls)
        type.__setattr__(cls, "_tether_class_info", info)
    return info


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def _build_class_info(cls: type[ServiceBase]) -> ClassInfo:
    info = ClassInfo()
    blocking = issubclass(cls, BlockingService)
    base: type[ServiceBase] = BlockingService if blocking else Service
    problems: list[str] = []
    hooks: dict[Stage, str] = {}
    owner = class_label(cls)

    def check(stage: Stage, attr_name: str) -> None:
        attr = inspect.getattr_static(cls, attr_name)
        func = attr.__func__ if isinstance(attr, staticmethod | classmethod) else attr
        where = f"{owner}.{attr_name}"
        if not callable(func):
            problems.append(
                f"{where} is {func!r} ({type(func).__name__}), not a method; "
                f"tether calls it as the {stage.name!r} hook."
            )
            return
        if inspect.isasyncgenfunction(func):
            problems.append(
                f"{where} is an async generator; a {stage.name!r} hook must be "
                f"{'a plain function' if blocking or stage.sync_only else 'async def'} "
                f"that returns when the stage is done."
            )
        elif blocking and _is_async(func):
            problems.append(
                f"{where} is async, but BlockingService hooks are plain functions "
                f"(they run without an event loop, or in a worker thread). Write "
                f"`def {attr_name}(self)`, or subclass tether.Service for async hooks."
            )
        elif stage.sync_only and _is_async(func):
            problems.append(
                f"{where} is async, but the {stage.name!r} stage runs while no event "
                f"loop exists. Write `def {attr_name}(self)`."
            )
        elif not blocking and stage in (START, STOP) and not inspect.iscoroutinefunction(func):
            problems.append(
                f"{where} must be a coroutine function (async def), got a plain "
                f"function. Write `async def {attr_name}(self)`, or subclass "
                f"tether.BlockingService for blocking hooks."
            )

    for stage in BUILTIN_STAGES:
        assert stage.method is not None
        if not hasattr(cls, stage.method):
            continue
        default = getattr(base, stage.method, None)
        if default is not None and getattr(cls, stage.method) is default:
            continue
        hooks[stage] = stage.method
        check(stage, stage.method)

    marked: dict[str, Stage] = {}
    spawns: dict[str, TaskSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr_name, value in vars(klass).items():
            func = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            if not isinstance(func, types.FunctionType):
                continue
            marker = getattr(func, "__tether_stage__", None)
            if isinstance(marker, Stage):
                marked[attr_name] = marker
            spec = getattr(func, "__tether_task__", None)
            if isinstance(spec, TaskSpec):
                spawns[attr_name] = spec
    custom: set[Stage] = set()
    for attr_name, stage in marked.items():
        if stage in hooks:
            problems.append(
                f"{owner} has two hooks for stage {stage.name!r}: "
                f"{hooks[stage]} and {attr_name}; keep one."
            )
            continue
        hooks[stage] = attr_name
        custom.add(stage)
        check(stage, attr_name)
    for attr_name, spec in spawns.items():
        func = getattr(cls, attr_name)
        if blocking:
            problems.append(
                f"{owner}.{attr_name} is marked @{spec.kind}, but a BlockingService has no "
                f"event loop to run it on; subclass tether.Service instead."
            )
        elif not inspect.iscoroutinefunction(func):
            problems.append(
                f"{owner}.{attr_name} is marked @{spec.kind} and must be a coroutine "
                f"function (async def)."
            )

    problems.extend(hook_name_problems(cls, hooks, owner, ServiceBase))
    info.blocking = blocking
    info.hooks = hooks
    info.custom_stages = frozenset(custom)
    info.spawns = tuple(spawns.items())
    info.start = hooks.get(START)
    info.stop = hooks.get(STOP)
    info.start_mode = 0
    info.stop_mode = 0
    own_timeout = inspect.getattr_static(cls, "graceful_shutdown_timeout")
    info.timeout = 10.0 if own_timeout is _DEFAULT_TIMEOUT else None
    info.error = HookError(" ".join(problems)) if problems else None
    return info


# ------------------------------------------------------------------------- services

DependencyItem: TypeAlias = "ServiceBase | Iterable[ServiceBase]"


class Launcher(Protocol):
    """What `Service.launch` is: `tether.run` bound to a service.

    Its keywords are those of `tether.run` (the runner's `RunOptions`; a test keeps the
    two the same): the engine names them without importing the runner.
    """

    def __call__(
        self,
        *,
        loop: str = ...,
        shutdown_timeout: float = ...,
        log_level: str | int = ...,
        log_format: str = ...,
        repl: bool | Mapping[str, Any] = ...,
        container: Any = ...,
    ) -> NoReturn: ...


_launcher: list[Callable[..., NoReturn]] = []
"""`tether.run`, registered by the package when it loads (the engine never imports the
runner: a service only learns how to run itself as a process from the layer above)."""


def set_launcher(run: Callable[..., NoReturn]) -> None:
    """Register what `Service.launch` calls (`tether.run`)."""
    _launcher[:] = [run]


class _Launch:
    """`launch(**options)`: run this service as the process, as `tether.run` does.

    On an instance, `app.launch()` is `tether.run(app)`. On the class, as
    systemPY's units are launched, `App.launch()` creates `App()` first (a class
    that needs arguments must be created by you). Options are those of `tether.run`.
    """

    def __get__(self, instance: ServiceBase | None, owner: type[ServiceBase]) -> Launcher:
        def launch(**options: Any) -> NoReturn:
            run = _launcher[0]
            if instance is not None:
                run(instance, **options)
            try:
                made = owner()
            except TypeError as exc:
                name = class_label(owner)
                raise TypeError(
                    f"{name}.launch() on the class creates {name}() with no arguments, "
                    f"which failed: {exc}. Create it yourself: {name}(...).launch()."
                ) from exc
            run(made, **options)

        launch.__doc__ = _Launch.__doc__
        return launch


class ServiceBase:
    """What `Service` and `BlockingService` share; not used directly.

    Subclasses never need to call `super().__init__()`: the engine keeps its state in
    a record created on first use.
    """

    __slots__ = ()

    @property
    def dependencies(self) -> Iterable[DependencyItem]:
        """The services this one needs, started before it and stopped after it.

        Return an iterable. A top-level item is a service or a list of services:
        top-level items start one after another in the order written, the members of a
        nested list start concurrently. A service listed by several dependents is
        started once and stopped after the last of them.
        """
        return ()

    @property
    def graceful_shutdown_timeout(self) -> float:
        """Seconds the `stop` hook (and cancelling the service's tasks) may take.

        Past it the hook is cancelled, a [`StopTimeoutError`][tether.StopTimeoutError] naming the
        service is reported, and the rest of the graph still stops. Default 10.
        """
        return 10

    @property
    def cancel_grace(self) -> float:
        """Seconds a stop hook or task cancelled at its timeout has to finish (default 1).

        When `graceful_shutdown_timeout` has passed, tether cancels what is left of
        the stop (the hook, or background tasks that have not ended since they were
        cancelled). Code that handles the cancellation has this long to finish; past
        it, tether reports it with a [`StopTimeoutError`][tether.StopTimeoutError] and abandons it
        (it keeps running, unawaited), so the rest of the graph still stops.
        """
        return 1.0

    @property
    def running(self) -> bool:
        """Whether the service has started and has not begun to stop."""
        rec: Record | None = self.__dict__.get("_tether")
        return rec is not None and rec.state is ServiceState.RUNNING

    def request_stop(self) -> None:
        """Ask the service, and every running service that depends on it, to stop.

        `wait()` and `run()` of those services return; stopping follows (`run()`
        and `async with` stop the graph). Safe to call at any time, from any thread,
        more than once; a no-op when the service is not running.
        """
        rec: Record | None = self.__dict__.get("_tether")
        if rec is None:
            return
        loop = rec.loop
        if loop is not None and not loop.is_closed():
            try:
                running_loop = asyncio.get_running_loop()
            except RuntimeError:
                running_loop = None
            if running_loop is not loop:
                loop.call_soon_threadsafe(_engine.signal_exit, rec, None)
                return
        _engine.signal_exit(rec, None)

    launch = _Launch()

    def __repr__(self) -> str:
        rec: Record | None = self.__dict__.get("_tether")
        if rec is None:
            return f"<{display_name(self)} state=created>"
        parts = [f"<{display_name(self)} state={rec.state.value}"]
        if rec.started_at is not None and rec.state is ServiceState.RUNNING:
            parts.append(f"uptime={time.monotonic() - rec.started_at:.1f}s")
        if rec.tasks:
            parts.append(f"tasks={len(rec.tasks)}")
        return " ".join(parts) + ">"


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

    async def start(self) -> None:
        """Hook: bring the component up. Its dependencies are running already."""

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

    def start(self) -> None:
        """Hook: bring the component up. Its dependencies are running already."""

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
    skipped because a tick overran its interval.
    """

    # A plain slotted class rather than a dataclass: `import tether` stays cheap.
    __slots__ = (
        "dependencies",
        "error",
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
    )


_DEFAULT_TIMEOUT: Final = ServiceBase.__dict__["graceful_shutdown_timeout"]


def check_grace(service: ServiceBase) -> float:
    """`cancel_grace` validated: a number of seconds, zero or more."""
    value: object = service.cancel_grace
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise DefinitionError(
            f"{display_name(service)}.cancel_grace must be a number of seconds, zero or "
            f"more, got {value!r}."
        )
    return float(value)


def check_timeout(service: ServiceBase) -> float:
    """`graceful_shutdown_timeout` validated: a positive number of seconds."""
    value: object = service.graceful_shutdown_timeout
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DefinitionError(
            f"{display_name(service)}.graceful_shutdown_timeout must be a positive "
            f"number of seconds (math.inf for no limit), got {value!r}."
        )
    return float(value)


from . import _engine  # noqa: E402  (the engine imports this module's classes)

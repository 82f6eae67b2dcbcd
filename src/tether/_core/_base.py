"""ServiceBase, and what tether reads from a service class (its hooks, tasks, mistakes).

`ServiceBase` is what `Service` and `BlockingService` share; the engine's graph walk
checks items against it, so it lives below the engine. `ClassInfo` is built once per
class: which method is the hook of each stage, which methods are `@task`/`@timer`,
and the errors in them, raised before anything starts. The service classes mark
their do-nothing hooks (`default_hook`) and say whether they are blocking
(`_tether_blocking`), so this module needs neither of them.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, NoReturn, Protocol, TypeAlias, TypeVar

from ._actions import signal_exit
from ._errors import HookError
from ._hooknames import problems as hook_name_problems
from ._records import ClassInfo, Record, ServiceState, class_label, display_name
from ._stages import BUILTIN_STAGES, START, STOP, Stage
from ._tasks import TaskSpec

__all__ = ["ServiceBase", "class_info", "default_hook", "record", "set_launcher"]

_F = TypeVar("_F", bound=Callable[..., Any])


def record(service: ServiceBase) -> Record:
    """The engine's record of `service`, created on first use (mixins have no __init__)."""
    d = service.__dict__
    rec: Record | None = d.get("_tether")
    if rec is None:
        rec = d["_tether"] = Record(service, class_info(type(service)))
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


# ----------------------------------------------------------------------- class info

_DEFAULT_HOOK: Final = "__tether_default_hook__"


def default_hook(func: _F) -> _F:
    """Mark a base class's hook that does nothing: a class that keeps it has no such hook."""
    setattr(func, _DEFAULT_HOOK, True)
    return func


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
    blocking = cls._tether_blocking
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
        if getattr(getattr(cls, stage.method), _DEFAULT_HOOK, False) is True:
            continue  # the base class's hook that does nothing: no hook for this stage
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
        blocking_timeout: float | None = ...,
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

    _tether_blocking: ClassVar[bool] = False
    """Whether the hooks are plain functions run without a loop (`BlockingService`)."""

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
                loop.call_soon_threadsafe(signal_exit, rec, None)
                return
        signal_exit(rec, None)

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


_DEFAULT_TIMEOUT: Final = ServiceBase.__dict__["graceful_shutdown_timeout"]

"""Plugins with buvar's semantics, owned by a service in the graph.

A plugin is a module with a `prepare` function (or any callable). `prepare` has its
parameters injected by the container; it may load other plugins, register components,
and yield (or return) what runs for the application's lifetime: coroutines, async
functions and services. The [`Plugins`][tether.Plugins] service owns all of it: the services
become its dependencies, the coroutines its supervised tasks, and the teardown
callbacks run in its `stop`, in reverse order of registration.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeAlias

from tether._core._base import ServiceBase, add_implicit_dependencies
from tether._core._errors import PluginError, ServiceStateError
from tether._core._records import display_name
from tether._core._service import Service

from ._container import Container

__all__ = ["Plugins"]

PluginSpec: TypeAlias = "str | types.ModuleType | Callable[..., Any]"

_DONE = object()

logger = logging.getLogger("tether.plugins")


class _Loading(NamedTuple):
    """A plugin whose prepare is running in this context."""

    key: str
    package: str
    name: str


class _Work:
    """Something a plugin yielded to run while the plugins service runs."""

    __slots__ = ("item", "plugin", "used")

    def __init__(self, plugin: str, item: Coroutine[Any, Any, Any] | Callable[[], Any]) -> None:
        self.plugin = plugin
        self.item = item
        self.used = False


class Plugins(Service):
    """Loads plugins and runs what they yield, as one service of the graph.

    `await plugins.load("myapp.db", "myapp.api")` imports each module and calls its
    `prepare` once, with its parameters injected from the container (ask for
    `plugins: tether.Plugins` to load further plugins, `container: tether.Container`
    to register components, or any component or config section). `prepare` may be
    sync or async, and may yield or return:

    * coroutines, or async functions (called at each start): run as supervised tasks of
      this service for its lifetime; a crash stops the application;
    * services: started before this service, stopped after it.

    Each plugin loads once however often it is named; a plugin that loads itself back,
    directly or not, is a [`PluginError`][tether.PluginError]. Names starting with `.` are
    relative to the loading plugin's package. `load_entry_points()` loads every
    plugin installed under the `tether.plugins` entry-point group. When every task
    the plugins yielded has returned, the service asks to stop (buvar's stage ends when
    its tasks are done). Teardown callbacks (`add_teardown`) run in `stop`,
    last registered first:

    ```python
    async def prepare(plugins: tether.Plugins, container: tether.Container):
        await plugins.load(".db")
        container.register(make_client)
        yield serve_forever()

    plugins = tether.Plugins(container)
    await plugins.load("myapp")
    await plugins.run()
    ```

    Plugins named by `load=` (or an `entry_points=` group) load when the service
    starts instead, in its event loop: that is how a plugin app runs as a process
    (`tether run --plugin myapp`, pre-fork workers included). The services they yield
    then start in the order yielded, after this service's own dependencies, and stop
    after its tasks, in reverse order:

    ```python
    app = tether.Plugins(load=["myapp"])  # tether run mymodule:app
    ```
    """

    def __init__(
        self,
        container: Container | None = None,
        *,
        load: Iterable[PluginSpec] = (),
        entry_points: str | None = None,
    ) -> None:
        """Plugins registering into `container` (a new one if omitted).

        `load` names plugins to load when the service starts, in its event loop, and
        `entry_points` an entry-point group to load then too (after `load`).
        """
        self.container = Container() if container is None else container
        self.container.add(self, provides=Plugins)
        if isinstance(load, str):
            load = [load]
        self._at_start: list[PluginSpec] = list(load)
        self._entry_points = entry_points
        self._late: list[ServiceBase] = []
        self._late_root: _LateServices | None = None
        self._starting = False
        self._state: dict[str, object] = {}
        self._names: list[str] = []
        self._work: list[_Work] = []
        self._teardowns: list[Callable[[], Any]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._remaining = 0
        self._chain: ContextVar[tuple[_Loading, ...]] = ContextVar(
            "tether.plugins.chain", default=()
        )

    @property
    def loaded(self) -> tuple[str, ...]:
        """The plugins loaded so far, in the order their `prepare` finished."""
        return tuple(self._names)

    # ------------------------------------------------------------------- loading

    async def load(self, *plugins: PluginSpec) -> None:
        """Load each plugin, in order: an import path, `module:function`, a module or a callable.

        Raises [`PluginError`][tether.PluginError] if a plugin is not found, has no
        `prepare`, yields something that cannot run, or loads itself back. An error
        raised by a `prepare` propagates with a note naming the plugin.
        """
        for plugin in plugins:
            prepare, name = self._resolve(plugin)
            await self._load(prepare, name)

    async def load_entry_points(
        self, group: str = "tether.plugins", *, names: Iterable[str] | None = None
    ) -> None:
        """Load the plugins installed under the entry-point `group`, sorted by name.

        `names` restricts it to those entry points. An entry point's value is a module
        (`myapp.plugin`) or a callable (`myapp.plugin:prepare`). Any exception while
        importing an entry point, or one that has no `prepare`, is a
        [`PluginError`][tether.PluginError] naming the entry point and its distribution, chained
        to the cause; an exception raised by its `prepare` propagates as it is, with
        notes naming the plugin and the entry point.
        """
        from importlib.metadata import entry_points  # noqa: PLC0415  (costly; only when used)

        wanted = None if names is None else set(names)
        found = sorted(entry_points(group=group), key=lambda ep: ep.name)
        for entry_point in found:
            if wanted is not None and entry_point.name not in wanted:
                continue
            dist = entry_point.dist
            shown = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
            label = f"{entry_point.name!r} = {entry_point.value!r} of {shown} (group {group!r})"
            try:
                target = entry_point.load()
                prepare, name = self._resolve(target)
            except Exception as exc:
                what = "cannot be imported" if isinstance(exc, ImportError) else "cannot be loaded"
                detail = (
                    str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
                )
                raise PluginError(f"Entry point {label} {what}: {detail}") from exc
            try:
                await self._load(prepare, name)
            except Exception as exc:
                exc.add_note(f"tether: loaded from entry point {label}")
                raise
        if wanted:
            missing = wanted - {ep.name for ep in found}
            if missing:
                raise PluginError(
                    f"No entry point named {', '.join(sorted(missing))} in group {group!r}; "
                    f"installed: {', '.join(ep.name for ep in found) or 'none'}."
                )

    def _resolve(self, plugin: object) -> tuple[Callable[..., Any], str]:
        """The `prepare` callable of `plugin` and the name it is shown by."""
        if isinstance(plugin, str):
            path: str
            path, _, attribute = plugin.partition(":")
            if path.startswith("."):
                chain = self._chain.get()
                if not chain:
                    raise PluginError(
                        f"Relative plugin name {plugin!r} outside a plugin; give the full "
                        f"import path, or load it from another plugin's prepare."
                    )
                package = chain[-1].package
                from importlib.util import resolve_name  # noqa: PLC0415  (only when used)

                path = resolve_name(path, package)
            imported = _import(path, plugin)
            if attribute:
                target: object = imported
                for part in attribute.split("."):
                    target = getattr(target, part, None)
                    if target is None:
                        raise PluginError(f"Plugin {plugin!r}: {path} has no {attribute!r}.")
                return self._resolve(target)
            return self._resolve(imported)
        if isinstance(plugin, types.ModuleType):
            prepare = getattr(plugin, "prepare", None)
            if not callable(prepare):
                raise PluginError(
                    f"Plugin module {plugin.__name__} has no prepare() function; define "
                    f"`async def prepare(...)` in it, or load a callable as "
                    f"'{plugin.__name__}:function'."
                )
            return prepare, plugin.__name__
        if callable(plugin):
            module = getattr(plugin, "__module__", None) or "?"
            qualname = getattr(plugin, "__qualname__", None) or repr(plugin)
            if qualname == "prepare":
                return plugin, module
            return plugin, f"{module}:{qualname}"
        raise PluginError(
            f"Cannot load {plugin!r} ({type(plugin).__name__}) as a plugin: give an import "
            f"path, a module with prepare(), or a callable."
        )

    async def _load(self, prepare: Callable[..., Any], name: str) -> None:
        key = f"{getattr(prepare, '__module__', '?')}:{getattr(prepare, '__qualname__', name)}"
        chain = self._chain.get()
        for index, loading in enumerate(chain):
            if loading.key == key:
                shown = " -> ".join([*(entry.name for entry in chain[index:]), name])
                raise PluginError(f"Plugin cycle: {shown}. A plugin cannot load itself back.")
        state = self._state.get(key)
        if state is _DONE:
            return
        if isinstance(state, asyncio.Future):
            await asyncio.shield(state)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state[key] = future
        package = _package_of(prepare)
        token = self._chain.set((*chain, _Loading(key, package, name)))
        try:
            await self._prepare(prepare, name)
        except BaseException as exc:
            del self._state[key]
            if isinstance(exc, Exception) and not isinstance(exc, PluginError):
                exc.add_note(f"tether: raised while preparing plugin {name}")
            future.cancel()
            raise
        finally:
            self._chain.reset(token)
        self._state[key] = _DONE
        self._names.append(name)
        future.set_result(None)

    async def _prepare(self, prepare: Callable[..., Any], name: str) -> None:
        result, injected = await self.container._current()._call(prepare, {})
        if injected:
            self._depend_on(injected)
        if inspect.isasyncgen(result):
            async for item in result:
                self._accept(name, item)
        elif inspect.isgenerator(result) or (
            isinstance(result, Iterable) and not isinstance(result, str | bytes)
        ):
            for item in result:
                self._accept(name, item)
        elif result is not None:
            self._accept(name, result)

    def _accept(self, plugin: str, item: object) -> None:
        if isinstance(item, ServiceBase):
            self._depend_on([item])
        elif asyncio.iscoroutine(item) or inspect.iscoroutinefunction(item):
            self._work.append(_Work(plugin, item))
        else:
            raise PluginError(
                f"Plugin {plugin} yielded {item!r} ({type(item).__name__}); a plugin yields "
                f"coroutines, async functions or services to run for the application's "
                f"lifetime."
            )

    def _tether_subgraph(self) -> tuple[ServiceBase, ...]:
        """What pictures and the live status show under this service.

        The services yielded by the plugins loaded at start (a root of their own).
        """
        return tuple(self._late)

    def _depend_on(self, services: Iterable[ServiceBase]) -> None:
        """Services a plugin yielded or was given: dependencies, or started late."""
        if self._starting:  # loading in start: the graph of this run is fixed already
            self._late.extend(s for s in services if s not in self._late and s is not self)
        else:
            add_implicit_dependencies(self, services)

    def add_teardown(self, callback: Callable[[], Awaitable[Any] | None]) -> None:
        """Run `callback` (sync or async) when this service stops, last added first.

        Teardowns run after the plugins' tasks have been cancelled and awaited. Every
        callback runs even if one raises; the first error is raised afterwards.
        """
        self._teardowns.append(callback)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the plugins named for the start, then run what every plugin yielded.

        The plugins given as `load=` (and the `entry_points=` group) are loaded here,
        in the running loop, once. The services they yield start now, one after
        another in the order yielded, and stop after this service's tasks, in reverse
        order. Then one supervised task starts per coroutine the plugins yielded.
        """
        self._tasks = []
        self._remaining = 0
        try:
            await self._load_at_start()
        except BaseException:
            await self._stop_late()
            await self._run_teardowns(BaseException)
            raise
        for work in self._work:
            item = work.item
            if asyncio.iscoroutine(item):
                if work.used:
                    raise ServiceStateError(
                        f"Plugin {work.plugin} yielded a coroutine object, which can run "
                        f"only once; yield the async function instead so it can start again."
                    )
                coroutine = item
            else:
                coroutine = item()
            work.used = True
            self._remaining += 1
            self._tasks.append(self.add_task(self._supervise(coroutine), name=work.plugin))

    async def _supervise(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        await coroutine
        self._remaining -= 1
        if self._remaining == 0:
            self.request_stop()

    async def _load_at_start(self) -> None:
        self._starting = True
        try:
            if self._at_start:
                await self.load(*self._at_start)
            if self._entry_points is not None:
                await self.load_entry_points(self._entry_points)
        finally:
            self._starting = False
        if self._late:
            late = self._late_root = _LateServices(self, self._late)
            await late.__aenter__()
            # What the late services' wait() raises (a crash) crashes this service too.
            self._tasks.append(self.add_task(late.wait(), name="plugin services"))

    async def _stop_late(self) -> None:
        late, self._late_root = self._late_root, None
        if late is not None and late.running:
            await late.__aexit__(None, None, None)

    async def stop(self) -> None:
        """Cancel and await the tasks, stop the late services, run the teardowns.

        The services yielded by plugins loaded at start stop in reverse order, then the
        teardowns run, last registered first.
        """
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._stop_late()
        finally:
            await self._run_teardowns(None)

    async def _run_teardowns(self, during: type[BaseException] | None) -> None:
        """Run every teardown, last added first; raise the first error (unless `during`)."""
        errors: list[BaseException] = []
        for callback in reversed(self._teardowns):
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                exc.add_note(f"tether: raised by the plugin teardown {callback!r}")
                errors.append(exc)
        if errors and during is None:
            first = errors[0]
            for other in errors[1:]:
                first.add_note(f"tether: another teardown raised too: {other!r}")
            raise first
        for error in errors:
            logger.error("a plugin teardown failed while a start was undone", exc_info=error)

    def __del__(self) -> None:
        for work in getattr(self, "_work", ()):
            if asyncio.iscoroutine(work.item) and not work.used:
                work.item.close()


class _LateServices(Service):
    """The services plugins loaded at start yielded: started in order as one more root."""

    def __init__(self, owner: Plugins, services: list[ServiceBase]) -> None:
        self.name = display_name(owner)
        self._services = list(services)

    @property
    def dependencies(self) -> list[ServiceBase]:
        """The services, started one after another in the order the plugins gave them."""
        return self._services


def plugin_app(
    plugins: Iterable[str], *, overrides: Iterable[str] = (), entry_points: str | None = None
) -> Plugins:
    """The root service of `tether run --plugin NAME`: the plugins loaded when it starts.

    `overrides` are `section.key=value` configuration overrides (`-c`), added to the
    new container's configuration.
    """
    container = Container()
    extra = list(overrides)
    if extra:
        from ._config import Config  # noqa: PLC0415 - only when overrides are given

        container.get(Config).add_overrides(extra)
    return Plugins(container, load=list(plugins), entry_points=entry_points)


def _package_of(prepare: Callable[..., Any]) -> str:
    module_name = getattr(prepare, "__module__", None) or ""
    module = sys.modules.get(module_name)
    package = getattr(module, "__package__", None)
    if package is None:
        return module_name.rpartition(".")[0]
    return str(package)


def _import(path: str, asked: str) -> types.ModuleType:
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (path == exc.name or path.startswith(exc.name + ".")):
            raise PluginError(
                f"Plugin {asked!r} not found: no module named {exc.name!r}."
            ) from None
        raise

"""Start and stop of N trivial services as a chain, a fan and a binary tree.

One measurement per process: ``measure(impl, shape, n, hooks)`` builds the graph
(untimed), times its start and its stop, then checks (untimed) that every service
started and stopped exactly once and in dependency order, so that no implementation can
look fast by doing less than the others. ``memory(impl, shape, n)`` measures what an
implementation keeps allocated per running service (its bookkeeping: the services
themselves are built before counting begins).

Every implementation's services do the same trivial thing in async hooks: ``start``
and ``stop`` each take the next value of one shared counter, and keep it, which is
also what the order check reads afterwards. With ``hooks="suspend"`` every hook then
suspends once (``await asyncio.sleep(0)``), as a hook doing real I/O would; with
``hooks="sync"`` no hook ever suspends.

Shapes, over services numbered 0 .. N-1, service 0 the root:

- chain: service i depends on service i+1.
- fan: the root depends on services 1 .. N-1, as one nested list (concurrently).
- tree: service i depends on services 2i+1 and 2i+2 (those below N), as one nested list.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import itertools
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

SHAPES = ("chain", "fan", "tree")
HOOKS = ("suspend", "sync")
FLOORS = ("raw-generic", "raw-bare")
PEERS = ("facet", "mode", "aiomisc")
IMPLS = (*FLOORS, "tether", *PEERS)

# Which module each peer needs, for "is it installed" (mode comes from mode-streaming).
PEER_MODULES = {"facet": "facet", "mode": "mode", "aiomisc": "aiomisc"}

_ticks: Iterator[int] = itertools.count()


def installed(impl: str) -> bool:
    """Whether ``impl`` can run here: floors and tether always, peers when installed."""
    module = PEER_MODULES.get(impl)
    return module is None or importlib.util.find_spec(module) is not None


def children(shape: str, n: int) -> list[list[int]]:
    """For each service, the indices of the services it depends on."""
    if shape == "chain":
        return [[i + 1] if i + 1 < n else [] for i in range(n)]
    if shape == "fan":
        return [list(range(1, n))] + [[] for _ in range(1, n)]
    if shape == "tree":
        return [[c for c in (2 * i + 1, 2 * i + 2) if c < n] for i in range(n)]
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def tree_levels(n: int) -> list[list[int]]:
    """The indices of a binary tree of ``n`` services, level by level from the root."""
    levels: list[list[int]] = []
    first = 0
    width = 1
    while first < n:
        levels.append(list(range(first, min(first + width, n))))
        first += width
        width *= 2
    return levels


class Recorded:
    """What the order check reads: when each service started and stopped."""

    up: int
    down: int


# ------------------------------------------------------------------ raw asyncio


class RawService(Recorded):
    """A hand-written service: two async hooks and the list of what it depends on."""

    __slots__ = ("deps", "down", "up")

    def __init__(self) -> None:
        self.deps: list[RawService] = []

    async def start(self) -> None:
        self.up = next(_ticks)

    async def stop(self) -> None:
        self.down = next(_ticks)


class RawSuspending(RawService):
    """The same, each hook suspending once."""

    __slots__ = ()

    async def start(self) -> None:
        self.up = next(_ticks)
        await asyncio.sleep(0)

    async def stop(self) -> None:
        self.down = next(_ticks)
        await asyncio.sleep(0)


async def _start_after(service: RawService, dependencies: list[asyncio.Task[None]]) -> None:
    for task in dependencies:
        await task
    await service.start()


async def _stop_after(service: RawService, dependents: list[asyncio.Task[None]]) -> None:
    for task in dependents:
        await task
    await service.stop()


def _walk(root: RawService) -> tuple[list[RawService], dict[RawService, list[RawService]]]:
    """Every service reachable from ``root``, dependencies first, and who depends on each.

    An iterative depth-first walk, as anyone who read about deep graphs would write it.
    """
    order: list[RawService] = []
    dependents: dict[RawService, list[RawService]] = {root: []}
    stack: list[tuple[RawService, Iterator[RawService]]] = [(root, iter(root.deps))]
    while stack:
        service, pending = stack[-1]
        for dep in pending:
            seen = dependents.get(dep)
            if seen is None:
                dependents[dep] = [service]
                stack.append((dep, iter(dep.deps)))
                break
            seen.append(service)
        else:
            stack.pop()
            order.append(service)
    return order, dependents


class RawGeneric:
    """The floor the targets refer to: "the same work" written by hand in asyncio.

    Like tether, it knows nothing of the shape: it walks the graph from the root, runs
    every service's start in a task of its own that first awaits the start tasks of its
    dependencies (so independent services start concurrently), and stops the same way in
    reverse, each stop task awaiting the stop tasks of its dependents.
    """

    def __init__(self, root: RawService) -> None:
        self.root = root
        self.order: list[RawService] = []
        self.dependents: dict[RawService, list[RawService]] = {}

    async def start(self) -> None:
        self.order, self.dependents = _walk(self.root)
        loop = asyncio.get_running_loop()
        started: dict[RawService, asyncio.Task[None]] = {}
        for service in self.order:
            waits = [started[dep] for dep in service.deps]
            started[service] = loop.create_task(_start_after(service, waits))
        await started[self.root]

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        stopped: dict[RawService, asyncio.Task[None]] = {}
        for service in reversed(self.order):
            waits = [stopped[parent] for parent in self.dependents[service]]
            stopped[service] = loop.create_task(_stop_after(service, waits))
        # Everything stops before some service without dependencies does.
        for service in self.order:
            if not service.deps:
                await stopped[service]


class RawBare:
    """The least work possible, knowing the shape: shown for reference, not a target.

    chain: sequential awaits in a loop; fan: the leaves in one gather, then the root;
    tree: one gather per level, deepest level first.
    """

    def __init__(self, shape: str, services: list[RawService]) -> None:
        self.shape = shape
        self.services = services
        self.levels = [[services[i] for i in level] for level in tree_levels(len(services))]

    async def start(self) -> None:
        services = self.services
        if self.shape == "chain":
            for service in reversed(services):
                await service.start()
        elif self.shape == "fan":
            await asyncio.gather(*(s.start() for s in services[1:]))
            await services[0].start()
        else:
            for level in reversed(self.levels):
                await asyncio.gather(*(s.start() for s in level))

    async def stop(self) -> None:
        services = self.services
        if self.shape == "chain":
            for service in services:
                await service.stop()
        elif self.shape == "fan":
            await services[0].stop()
            await asyncio.gather(*(s.stop() for s in services[1:]))
        else:
            for level in self.levels:
                await asyncio.gather(*(s.stop() for s in level))


def _build_raw(shape: str, n: int, suspend: bool) -> list[RawService]:
    cls = RawSuspending if suspend else RawService
    services = [cls() for _ in range(n)]
    for service, deps in zip(services, children(shape, n), strict=True):
        service.deps = [services[i] for i in deps]
    return services


# ------------------------------------------------------------------ tether and peers


def _nested(services: list[Any], deps: list[int], shape: str) -> list[Any]:
    """``dependencies`` as facet's rule reads it: a chain's one item, else one nested list."""
    if not deps:
        return []
    if shape == "chain":
        return [services[deps[0]]]
    return [[services[i] for i in deps]]


Lifecycle = tuple[
    list[Any],
    Callable[[], Coroutine[Any, Any, Any]],
    Callable[[], Coroutine[Any, Any, Any]],
]


def _tether(shape: str, n: int, suspend: bool) -> Lifecycle:
    import tether

    class TrivialService(tether.Service, Recorded):
        def __init__(self) -> None:
            self.deps: list[Any] = []

        @property
        def dependencies(self) -> list[Any]:
            return self.deps

        async def start(self) -> None:
            self.up = next(_ticks)

        async def stop(self) -> None:
            self.down = next(_ticks)

    class SuspendingService(TrivialService):
        async def start(self) -> None:
            self.up = next(_ticks)
            await asyncio.sleep(0)

        async def stop(self) -> None:
            self.down = next(_ticks)
            await asyncio.sleep(0)

    cls = SuspendingService if suspend else TrivialService
    services = [cls() for _ in range(n)]
    for service, deps in zip(services, children(shape, n), strict=True):
        service.deps = _nested(services, deps, shape)
    root = services[0]
    return services, root.__aenter__, lambda: root.__aexit__(None, None, None)


def _facet(shape: str, n: int, suspend: bool) -> Lifecycle:
    from facet import ServiceMixin

    class TrivialService(ServiceMixin, Recorded):
        def __init__(self) -> None:
            self.deps: list[Any] = []

        @property
        def dependencies(self) -> list[Any]:
            return self.deps

        async def start(self) -> None:
            self.up = next(_ticks)
            if suspend:
                await asyncio.sleep(0)

        async def stop(self) -> None:
            self.down = next(_ticks)
            if suspend:
                await asyncio.sleep(0)

    services = [TrivialService() for _ in range(n)]
    for service, deps in zip(services, children(shape, n), strict=True):
        service.deps = _nested(services, deps, shape)
    root = services[0]
    return services, root.__aenter__, lambda: root.__aexit__(None, None, None)


def _mode(shape: str, n: int, suspend: bool) -> Lifecycle:
    import mode

    class TrivialService(mode.Service, Recorded):
        # mode starts a service's children after its own on_start, so the hook that runs
        # once the dependencies are up is on_started; on_stop runs before the children stop.
        def __init__(self) -> None:
            self.deps: list[Any] = []
            super().__init__()

        def on_init_dependencies(self) -> list[Any]:
            return self.deps

        async def on_started(self) -> None:
            self.up = next(_ticks)
            if suspend:
                await asyncio.sleep(0)

        async def on_stop(self) -> None:
            self.down = next(_ticks)
            if suspend:
                await asyncio.sleep(0)

    services = [TrivialService() for _ in range(n)]
    for service, deps in zip(services, children(shape, n), strict=True):
        service.deps = [services[i] for i in deps]
    root = services[0]
    return services, root.start, root.stop


def _aiomisc(shape: str, n: int, suspend: bool) -> Lifecycle:
    import aiomisc

    class TrivialService(aiomisc.Service, Recorded):
        async def start(self) -> None:
            self.up = next(_ticks)
            if suspend:
                await asyncio.sleep(0)

        async def stop(self, exception: Exception | None = None) -> None:  # noqa: ARG002 - aiomisc passes the exception
            self.down = next(_ticks)
            if suspend:
                await asyncio.sleep(0)

    del shape  # aiomisc has no dependencies between services: it starts them all at once
    services = [TrivialService() for _ in range(n)]
    entrypoint = aiomisc.entrypoint(*services, log_config=False)
    return services, entrypoint.__aenter__, lambda: entrypoint.__aexit__(None, None, None)


def _raw(impl: str, shape: str, n: int, suspend: bool) -> Lifecycle:
    services = _build_raw(shape, n, suspend)
    runner = RawGeneric(services[0]) if impl == "raw-generic" else RawBare(shape, services)
    return services, runner.start, runner.stop


_BUILDERS: dict[str, Callable[[str, int, bool], Lifecycle]] = {
    "tether": _tether,
    "facet": _facet,
    "mode": _mode,
    "aiomisc": _aiomisc,
}


# ------------------------------------------------------------------ measuring


def check_order(services: list[Any], shape: str, ordered: bool) -> None:
    """Raise unless every service started and stopped once, in dependency order."""
    n = len(services)
    total = next(_ticks)
    if total != 2 * n:
        raise AssertionError(f"{total} hook calls for {n} services; expected {2 * n}")
    if not ordered:
        return
    for service, deps in zip(services, children(shape, n), strict=True):
        for i in deps:
            dep = services[i]
            if not dep.up < service.up or not service.down < dep.down:
                raise AssertionError("a service started before its dependency or stopped after")


def _build(impl: str, shape: str, n: int, suspend: bool) -> Lifecycle:
    if impl in FLOORS:
        return _raw(impl, shape, n, suspend)
    return _BUILDERS[impl](shape, n, suspend)


async def _run(impl: str, shape: str, n: int, suspend: bool) -> dict[str, float]:
    build_began = time.perf_counter()
    services, start, stop = _build(impl, shape, n, suspend)
    built = time.perf_counter() - build_began
    gc.collect()
    began = time.perf_counter()
    await start()
    started = time.perf_counter()
    await stop()
    stopped = time.perf_counter()
    check_order(services, shape, ordered=impl != "aiomisc")
    return {"build": built, "start": started - began, "stop": stopped - started}


def measure(impl: str, shape: str, n: int, hooks: str = "sync") -> dict[str, float]:
    """Seconds to build (untimed by the table), start and stop one graph, in a new loop."""
    global _ticks  # noqa: PLW0603 - one measurement per process; reset for the order check
    _ticks = itertools.count()
    if hooks not in HOOKS:
        raise ValueError(f"hooks must be one of {', '.join(HOOKS)}, got {hooks!r}")
    return asyncio.run(_run(impl, shape, n, hooks == "suspend"))


async def _kept(impl: str, shape: str, n: int) -> dict[str, float]:
    services, start, stop = _build(impl, shape, n, suspend=False)
    for service in services:  # the services' own fields are not the engine's bookkeeping
        service.up = service.down = -1
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await start()
    gc.collect()
    running = tracemalloc.get_traced_memory()[0]
    await stop()
    tracemalloc.stop()
    check_order(services, shape, ordered=True)
    return {"bytes": (running - before) / n}


def memory(impl: str, shape: str, n: int) -> dict[str, float]:
    """Bytes an implementation keeps allocated per running service, after starting N.

    The services are built before counting begins: what is counted is the bookkeeping
    that starting them added and keeps while they run.
    """
    global _ticks  # noqa: PLW0603 - one measurement per process
    _ticks = itertools.count()
    return asyncio.run(_kept(impl, shape, n))

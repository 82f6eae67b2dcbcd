"""Collecting dependencies into a graph: validation, cycles and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tests.conftest import Log, Node


class Api(Node):
    pass


class Cache(Node):
    pass


async def test_cycle_is_rejected_before_anything_starts(log: Log) -> None:
    """A cycle is an error naming it as `Api -> Cache -> Api`; nothing starts."""
    leaf = Node("leaf", log)
    api = Api("api", log, [leaf])
    cache = Cache("cache", log, [api])
    api.deps.append(cache)
    with pytest.raises(tether.DependencyCycleError) as info:
        async with Node("root", log, [api]):
            pass  # pragma: no cover
    assert "Api -> Cache -> Api" in str(info.value)
    assert info.value.cycle == (api, cache, api)
    assert log == []
    assert not leaf.running


async def test_self_dependency_is_a_cycle(log: Log) -> None:
    """A service listing itself is the shortest cycle."""
    api = Api("api", log)
    api.deps.append(api)
    with pytest.raises(tether.DependencyCycleError, match="Api -> Api"):
        await api.run()


async def test_cycle_through_a_nested_group(log: Log) -> None:
    """Cycles are found through concurrent groups too."""
    api = Api("api", log)
    cache = Cache("cache", log, [[Node("x", log), api]])
    api.deps.append([cache])
    with pytest.raises(tether.DependencyCycleError, match="Api -> Cache -> Api"):
        await api.run()
    assert log == []


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        (["db"], r"Api\.dependencies\[0\] is 'db' \(str\), not a service"),
        ([None], r"Api\.dependencies\[0\] is None \(NoneType\), not a service"),
        ([[Node("ok", Log()), 3]], r"Api\.dependencies\[0\]\[1\] is 3 \(int\), not a service"),
        ([[[Node("deep", Log())]]], r"Api\.dependencies\[0\]\[0\] is a nested list; only one"),
        ([Cache], r"the class Cache, not an instance; did you mean Cache\(\)\?"),
    ],
)
async def test_a_dependency_that_is_not_a_service_names_parent_and_position(
    deps: list[Any], message: str
) -> None:
    """The error names the parent, the position and what was found instead."""
    ok = Node("ok", Log())
    api = Api("api", Log(), [ok, *deps])
    message = message.replace(r"dependencies\[0\]", r"dependencies\[1\]")
    with pytest.raises(tether.DependencyError, match=message):
        await api.run()
    assert not ok.running


async def test_dependencies_as_a_method_gets_a_hint() -> None:
    """Forgetting @property on dependencies is spotted and the fix named."""

    class Forgot(tether.Service):
        def dependencies(self) -> list[Any]:  # type: ignore[override]
            return []  # pragma: no cover

    with pytest.raises(tether.DependencyError, match="decorate it with @property"):
        await Forgot().run()


async def test_dependencies_returning_a_single_service() -> None:
    """Returning a service instead of a list of one is named, with the fix."""

    class Single(tether.Service):
        @property
        def dependencies(self) -> Any:
            return Cache("c", Log())

    with pytest.raises(tether.DependencyError, match=r"return an iterable such as \[Cache\]"):
        await Single().run()


async def test_dependencies_that_raise_get_a_note() -> None:
    """An exception inside the dependencies property says where it came from."""

    class Raises(tether.Service):
        @property
        def dependencies(self) -> list[Any]:
            raise LookupError("config missing")

    with pytest.raises(LookupError) as info:
        await Raises().run()
    assert any("Raises.dependencies" in note for note in info.value.__notes__)


async def test_dependencies_may_be_any_iterable() -> None:
    """A tuple or a generator works as well as a list."""
    log = Log()
    b, c = Node("b", log), Node("c", log)

    class Gen(tether.Service):
        @property
        def dependencies(self) -> Any:
            return (d for d in (b, (c,)))

    async with Gen():
        assert b.running
        assert c.running
    assert log.of("start") == ["b", "c"]


async def test_duplicate_dependency_is_held_once() -> None:
    """Listing the same dependency twice starts and stops it once."""
    log = Log()
    b = Node("b", log)
    async with Node("a", log, [b, [b], b]):
        pass
    assert log == ["start:b", "start:a", "stop:a", "stop:b"]


async def test_sync_start_hook_on_async_service_is_an_error() -> None:
    """A plain def start on a Service names class and method, and the fix."""

    class Sync(tether.Service):
        def start(self) -> None:  # type: ignore[override]
            pass  # pragma: no cover

    with pytest.raises(tether.HookError, match=r"Sync\.start must be a coroutine function"):
        await Sync().run()


async def test_async_hook_on_blocking_service_is_an_error() -> None:
    """An async def stop on a BlockingService is refused with the fix."""

    class Blocking(tether.BlockingService):
        async def stop(self) -> None:  # type: ignore[override]
            pass  # pragma: no cover

    with pytest.raises(tether.HookError, match=r"Blocking\.stop is async, but BlockingService"):
        with Blocking():
            pass  # pragma: no cover


async def test_async_init_hook_is_an_error() -> None:
    """on_init runs before any event loop exists, so it must be a plain function."""

    class EarlyAsync(tether.Service):
        async def on_init(self) -> None:
            pass  # pragma: no cover

    with pytest.raises(tether.HookError, match=r"EarlyAsync\.on_init is async"):
        await EarlyAsync().run()


async def test_hook_that_is_not_callable_is_an_error() -> None:
    """A class attribute shadowing a hook name with a non-callable is named."""

    class Shadow(tether.Service):
        on_started = True

    with pytest.raises(tether.HookError, match=r"Shadow\.on_started is True"):
        await Shadow().run()


async def test_invalid_dependency_leaves_nothing_started(log: Log) -> None:
    """A bad class deep in the graph is found before any service starts."""

    class Bad(tether.Service):
        def start(self) -> None:  # type: ignore[override]
            pass  # pragma: no cover

    first = Node("first", log)
    with pytest.raises(tether.HookError):
        await Node("root", log, [first, Node("mid", log, [Bad()])]).run()
    assert log == []


def test_facet_style_attribute_named_like_a_stage_is_not_a_hook() -> None:
    """facet programs keep `self.started = True` attributes; only methods are hooks."""

    class Flags(tether.BlockingService):
        def __init__(self) -> None:
            self.started = False
            self.stopping = False

        def start(self) -> None:
            self.started = True

    with Flags() as flags:
        assert flags.started


async def test_implicit_dependencies_start_first_and_concurrently(log: Log) -> None:
    """Dependencies added by tether (the injector) start before the service, concurrently."""
    from tether._core._base import add_implicit_dependencies

    db, cache, listed = Node("db", log), Node("cache", log), Node("listed", log)
    api = Node("api", log, [listed, db])
    add_implicit_dependencies(api, [db, cache])
    async with api:
        assert db.running
        assert cache.running
    # cache is implicit only: first; listed and db keep the order written.
    assert log.of("start") == ["cache", "listed", "db", "api"]
    assert log.of("stop") == ["api", "db", "listed", "cache"]


# ------------------------------------------------- validating without starting


def test_check_accepts_a_valid_graph_and_starts_nothing(log: Log) -> None:
    """check() walks and validates the graph without calling a single hook."""
    db = Node("db", log)
    root = Node("root", log, [db, [Node("cache", log, [db])]])
    tether.check(root)
    assert log == []
    assert tether.status(root).state is tether.ServiceState.CREATED


def test_check_raises_the_cycle(log: Log) -> None:
    """check() raises the same DependencyCycleError starting would."""
    a = Node("a", log)
    b = Node("b", log, [a])
    a.deps.append(b)
    with pytest.raises(tether.DependencyCycleError, match=r"Node -> Node -> Node"):
        tether.check(a)


def test_check_validates_graceful_shutdown_timeouts(log: Log) -> None:
    """A graceful_shutdown_timeout that is not a positive number fails the check."""

    class Bad(tether.Service):
        graceful_shutdown_timeout = 0

    with pytest.raises(tether.DefinitionError, match=r"Bad.graceful_shutdown_timeout must be"):
        tether.check(Node("root", log, [Bad()]))


def test_check_refuses_a_class_with_the_fix() -> None:
    """Handing check() a class instead of an instance says how to fix it."""
    with pytest.raises(tether.DependencyError, match=r"did you mean Node\(\)\?"):
        tether.check(Node)  # type: ignore[arg-type]

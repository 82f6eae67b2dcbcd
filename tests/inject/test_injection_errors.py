"""Injection errors as a user reads them: the chain, the cycle, the conflict, the fix."""

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

import tether


@dataclasses.dataclass
class DbConfig:
    url: str


class Database(tether.Service):
    def __init__(self, config: DbConfig) -> None:
        self.config = config


class Api(tether.Service):
    def __init__(self, db: Database) -> None:
        self.db = db


class Cache:
    def __init__(self, api: "Loop") -> None:
        self.api = api


class Loop:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache


class Left(tether.Service):
    def __init__(self, right: "Right") -> None:
        self.right = right


class Right(tether.Service):
    def __init__(self, left: Left) -> None:
        self.left = left


def test_missing_provider_names_the_chain_that_asked_for_it() -> None:
    """The type, the parameter and every provider on the way are named, with the fix."""
    container = tether.Container()
    with pytest.raises(tether.InjectionError) as caught:
        container.get(Api)
    assert str(caught.value) == (
        "Api(db: Database) -> Database(config: DbConfig) -> DbConfig: no provider. "
        "Register one: container.register(DbConfig) or container.add(<a DbConfig>), "
        "or give the parameter a default, or declare DbConfig a config section with "
        "@tether.section('name')."
    )
    assert caught.value.chain == (
        "Api(db: Database)",
        "Database(config: DbConfig)",
        "DbConfig",
    )


def test_missing_provider_asked_for_directly() -> None:
    """Asking for an unregistered plain type says so in one step."""
    with pytest.raises(tether.InjectionError, match=r"^Cache: no provider\. Register one"):
        tether.Container().get(Cache)


def test_a_named_lookup_names_the_name() -> None:
    """get(T, name) that finds nothing shows the name it looked for."""
    container = tether.Container()
    container.register(Loop)
    with pytest.raises(tether.InjectionError, match=r"^Loop \(name='replica'\): no provider"):
        container.get(Loop, "replica")


def test_circular_injection_shows_the_cycle() -> None:
    """Two providers that need each other: the error shows the loop, nothing is built."""
    container = tether.Container()
    container.register(Cache)
    container.register(Loop)
    with pytest.raises(tether.InjectionCycleError) as caught:
        container.get(Loop)
    assert str(caught.value).startswith(
        "Circular injection: Loop(cache: Cache) -> Cache(api: Loop) -> Loop. Break the cycle"
    )
    assert caught.value.cycle == (Loop, Cache, Loop)


def test_conflicting_registration_fails_when_registered() -> None:
    """Registering a second provider of the same type is refused at once, naming both."""
    container = tether.Container()
    container.add(DbConfig("sqlite://"))

    def load_config() -> DbConfig:
        return DbConfig("postgres://")

    with pytest.raises(tether.RegistrationError) as caught:
        container.register(load_config)
    message = str(caught.value)
    assert message.startswith(
        "DbConfig already has a provider in this container: the instance "
        "DbConfig(url='sqlite://') (registered at test_injection_errors.py:"
    )
    assert "Registering the function load_config (registered at test_injection_errors.py:" in (
        message
    )
    assert "Give one a name (name=...), or override it in a scope" in message


def test_a_function_without_return_annotation_is_refused() -> None:
    """tether cannot tell what an unannotated function provides, and says how to fix it."""

    def make_pool():  # type: ignore[no-untyped-def]
        return object()

    with pytest.raises(tether.RegistrationError, match=r"make_pool has no return annotation"):
        tether.Container().register(make_pool)


def test_an_unannotated_parameter_is_refused() -> None:
    """A parameter with neither annotation nor default could never be injected."""

    class Client:
        def __init__(self, url) -> None:  # type: ignore[no-untyped-def]
            self.url = url

    with pytest.raises(tether.RegistrationError) as caught:
        tether.Container().register(Client)
    assert str(caught.value) == (
        "Client(url) has no type annotation and no default, so tether cannot inject it. "
        "Annotate it (url: SomeType) or give it a default."
    )


def test_a_generator_must_say_what_it_yields() -> None:
    """A generator annotated with the value instead of Iterator[value] is explained."""

    def session() -> DbConfig:  # type: ignore[misc]
        yield DbConfig("x")

    with pytest.raises(tether.RegistrationError, match=r"annotate what it yields"):
        tether.Container().register(session)


def test_a_value_is_not_a_provider() -> None:
    """register() takes a class or a function; a value belongs in add()."""
    with pytest.raises(tether.RegistrationError, match=r"use container.add\(value\)"):
        tether.Container().register(DbConfig("x"))  # type: ignore[type-var]


def test_an_abstract_service_is_not_built_implicitly() -> None:
    """Only concrete service classes are built without registration."""
    import abc

    class Port(tether.Service, abc.ABC):
        @abc.abstractmethod
        def send(self) -> None: ...

    with pytest.raises(tether.InjectionError, match=r"^Port: no provider"):
        tether.Container().get(Port)  # type: ignore[type-abstract]


def test_generator_yielding_twice_is_reported_on_close() -> None:
    """A provider generator yields exactly one value; a second yield is an error at close."""

    def twice() -> Iterator[DbConfig]:
        yield DbConfig("a")
        yield DbConfig("b")

    container = tether.Container()
    container.register(twice)
    container.get(DbConfig)
    with pytest.raises(tether.TetherError, match=r"yielded more than once"):
        container.close()


async def test_aget_on_a_cycle_raises_instead_of_hanging() -> None:
    """aget() names the cycle as get() does; it used to wait for itself forever."""
    container = tether.Container()
    container.register(Cache)
    container.register(Loop)
    with pytest.raises(tether.InjectionCycleError) as caught:
        await asyncio.wait_for(container.aget(Loop), 5)
    assert str(caught.value).startswith(
        "Circular injection: Loop(cache: Cache) -> Cache(api: Loop) -> Loop. Break the cycle"
    )
    assert caught.value.cycle == (Loop, Cache, Loop)


async def test_started_on_a_cycle_raises_instead_of_hanging() -> None:
    """started() on services that inject each other raises, nothing started."""
    container = tether.Container()

    async def enter() -> None:
        async with container.started(Left):
            pass

    with pytest.raises(tether.InjectionCycleError) as caught:
        await asyncio.wait_for(enter(), 5)
    assert caught.value.cycle == (Left, Right, Left)


async def test_a_cycle_through_an_async_factory_raises() -> None:
    """An async factory on the cycle: same error, with the factory in the chain."""

    class Pool:
        def __init__(self, cache: Cache) -> None:
            self.cache = cache

    async def make_loop(pool: Pool) -> Loop:
        return Loop(pool.cache)

    container = tether.Container()
    container.register(Cache)
    container.register(Pool)
    container.register(make_loop)
    with pytest.raises(tether.InjectionCycleError, match=r"Circular injection: make_loop"):
        await asyncio.wait_for(container.aget(Loop), 5)


async def test_concurrent_resolutions_meeting_on_a_cycle_both_raise() -> None:
    """Two tasks entering a cycle from either end each get the cycle error, no deadlock.

    Each provider first waits (through a ``Gate`` parameter) until both tasks are inside
    the graph, so each task then finds the other's build in progress and would wait for
    it forever: the one that closes the circle of waits raises, and so does the other.
    """
    arrived = 0
    both = asyncio.Event()

    class Gate:
        pass

    async def gate() -> Gate:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await both.wait()
        return Gate()

    async def make_loop(gate: Gate, cache: Cache) -> Loop:
        return Loop(cache)

    async def make_cache(gate: Gate, loop: Loop) -> Cache:
        return Cache(loop)

    container = tether.Container()
    container.register(gate, transient=True)
    container.register(make_loop)
    container.register(make_cache)
    results = await asyncio.wait_for(
        asyncio.gather(container.aget(Loop), container.aget(Cache), return_exceptions=True), 5
    )
    assert [type(r) for r in results] == [tether.InjectionCycleError] * 2, results
    assert "make_loop(cache: Cache) -> make_cache(loop: Loop)" in str(results[1]) or (
        "make_cache(loop: Loop) -> make_loop(cache: Cache)" in str(results[1])
    )

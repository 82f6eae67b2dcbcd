"""The container: every kind of provider, overrides, defaults, lifetimes and cleanup."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

import pytest

import tether
from tests.conftest import bounded

T = TypeVar("T")


class Settings:
    def __init__(self, url: str = "sqlite://") -> None:
        self.url = url


class Pool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class Bar:
    pass


class Foo:
    """buvar's README example: an adapter classmethod and an optional dependency."""

    def __init__(self, bar: Bar | None = None, baz: str = "") -> None:
        self.bar = bar
        self.baz = baz

    @classmethod
    def adapt(cls, baz: str, bar: Bar | None = None) -> "Foo":
        return cls(bar, baz)


class Repository(Generic[T]):
    def __init__(self, model: type[T], pool: Pool) -> None:
        self.model = model
        self.pool = pool


class User:
    pass


class Order:
    pass


def make_repository(model: type[T], pool: Pool) -> Repository[T]:
    return Repository(model, pool)


@pytest.fixture
def container() -> tether.Container:
    container = tether.Container()
    container.add(Settings())
    return container


def test_class_is_built_from_its_init_annotations(container: tether.Container) -> None:
    """A registered class provides itself; its parameters are resolved by annotation."""
    container.register(Pool)
    pool = container.get(Pool)
    assert isinstance(pool, Pool)
    assert pool.settings is container.get(Settings)


def test_function_provides_its_return_type(container: tether.Container) -> None:
    """A function provides the type of its return annotation."""

    def make_pool(settings: Settings) -> Pool:
        pool = Pool(settings)
        pool.made_by = "make_pool"  # type: ignore[attr-defined]
        return pool

    container.register(make_pool)
    assert container.get(Pool).made_by == "make_pool"  # type: ignore[attr-defined]


async def test_async_factory_is_awaited(container: tether.Container) -> None:
    """An async function's result is awaited by aget()."""

    async def make_pool(settings: Settings) -> Pool:
        await asyncio.sleep(0)
        return Pool(settings)

    container.register(make_pool)
    pool = await container.aget(Pool)
    assert isinstance(pool, Pool)
    assert await container.aget(Pool) is pool


def test_get_refuses_an_async_factory_and_names_aget(container: tether.Container) -> None:
    """get() cannot await: it says which provider is async and what to call instead."""

    async def make_pool(settings: Settings) -> Pool:
        return Pool(settings)

    container.register(make_pool)
    with pytest.raises(tether.InjectionError) as caught:
        container.get(Pool)
    assert str(caught.value) == (
        "Pool: provided by the async function make_pool, which container.get() cannot "
        "await. Use `await container.aget(...)`."
    )


async def test_classmethod_adapter_with_per_call_override() -> None:
    """buvar's ``di.nject(Foo, baz="baz")``: a classmethod provider, a keyword override."""
    container = tether.Container()
    container.register(Foo.adapt)
    foo = await container.aget(Foo, baz="baz")
    assert foo.baz == "baz"
    assert foo.bar is None  # nothing provides Bar: the default is left alone
    bar = container.add(Bar())
    assert (await container.aget(Foo, baz="again")).bar is bar


def test_overrides_build_anew_and_are_not_cached(container: tether.Container) -> None:
    """A call with overrides gets a fresh value; the cached singleton is unaffected."""
    container.register(Pool)
    shared = container.get(Pool)
    other = Settings("postgres://")
    special = container.get(Pool, settings=other)
    assert special is not shared
    assert special.settings is other
    assert container.get(Pool) is shared


def test_override_of_an_unknown_parameter_is_an_error(container: tether.Container) -> None:
    """A misspelt override names the provider and lists its parameters."""
    container.register(Pool)
    with pytest.raises(tether.InjectionError, match=r"Pool has no parameter 'setings'"):
        container.get(Pool, setings=Settings())


def test_generic_factory_binds_the_type_variable(container: tether.Container) -> None:
    """A factory returning ``Repository[T]`` provides ``Repository[X]`` for every X."""
    container.register(Pool)
    container.register(make_repository)
    users = container.get(Repository[User])
    orders = container.get(Repository[Order])
    assert users.model is User
    assert orders.model is Order
    assert users.pool is orders.pool
    assert container.get(Repository[User]) is users


def test_generic_class_provides_each_parametrization(container: tether.Container) -> None:
    """A generic class registered once provides ``Repository[User]``, ``Repository[Order]``."""
    container.register(Pool)
    container.register(Repository)
    assert container.get(Repository[User]).model is User
    assert container.get(Repository[Order]).model is Order


def test_added_instance_is_the_context_registry() -> None:
    """buvar's ``context.add``/``context.get``: add returns the object, get finds it by type."""
    container = tether.Container()
    bar = container.add(Bar())
    assert container.get(Bar) is bar


def test_add_can_provide_a_base_type() -> None:
    """``provides=`` registers a value (or provider) for another type, e.g. its base."""

    class Special(Bar):
        pass

    container = tether.Container()
    special = container.add(Special(), provides=Bar)
    assert container.get(Bar) is special


def test_named_provider_is_chosen_by_parameter_name(container: tether.Container) -> None:
    """A provider registered under a name fills parameters of that name; others get the default."""

    class Reports:
        def __init__(self, replica: Pool, primary: Pool) -> None:
            self.replica = replica
            self.primary = primary

    container.register(Pool)
    replica = container.add(Pool(Settings("replica://")), name="replica")
    container.register(Reports)
    reports = container.get(Reports)
    assert reports.replica is replica
    assert reports.primary is container.get(Pool)
    assert container.get(Pool, "replica") is replica


def test_parameter_with_default_is_left_alone() -> None:
    """Nothing provides ``url: str``: Settings gets its own default."""
    container = tether.Container()
    container.register(Settings)
    assert container.get(Settings).url == "sqlite://"


def test_optional_parameter_without_provider_gets_none() -> None:
    """``bar: Bar | None`` without default and without provider is given None."""

    class NeedsBar:
        def __init__(self, bar: Bar | None) -> None:
            self.bar = bar

    container = tether.Container()
    container.register(NeedsBar)
    assert container.get(NeedsBar).bar is None


def test_singleton_by_default_transient_on_request(container: tether.Container) -> None:
    """The same value each time, unless registered with transient=True."""
    container.register(Pool)
    container.register(Bar, transient=True)
    assert container.get(Pool) is container.get(Pool)
    assert container.get(Bar) is not container.get(Bar)


async def test_concurrent_resolutions_build_a_singleton_once(container: tether.Container) -> None:
    """Two tasks asking for the same async singleton at once share one build."""
    builds = 0
    release = asyncio.Event()

    async def make_pool(settings: Settings) -> Pool:
        nonlocal builds
        builds += 1
        await release.wait()
        return Pool(settings)

    container.register(make_pool)
    first = asyncio.ensure_future(container.aget(Pool))
    second = asyncio.ensure_future(container.aget(Pool))
    await asyncio.sleep(0)
    release.set()
    a, b = await bounded(asyncio.gather(first, second))
    assert a is b
    assert builds == 1


def test_container_injects_itself(container: tether.Container) -> None:
    """A parameter annotated ``tether.Container`` receives the resolving container."""

    class Locator:
        def __init__(self, container: tether.Container) -> None:
            self.container = container

    container.register(Locator)
    assert container.get(Locator).container is container


def test_generator_cleanup_runs_on_close(container: tether.Container) -> None:
    """What follows ``yield`` in a generator provider runs when the container closes."""
    events: list[str] = []

    def session(settings: Settings) -> Iterator[Bar]:
        events.append("open")
        yield Bar()
        events.append("close")

    container.register(session)
    container.get(Bar)
    assert events == ["open"]
    container.close()
    assert events == ["open", "close"]


async def test_async_generator_cleanup_runs_on_aclose(container: tether.Container) -> None:
    """An async generator provider is entered by aget() and finished by aclose()."""
    events: list[str] = []

    async def session() -> AsyncIterator[Bar]:
        events.append("open")
        yield Bar()
        events.append("close")

    container.register(session)
    async with container:
        await container.aget(Bar)
    assert events == ["open", "close"]


async def test_close_refuses_async_cleanups(container: tether.Container) -> None:
    """close() will not skip an async cleanup: it says to use aclose()."""

    async def session() -> AsyncIterator[Bar]:
        yield Bar()

    container.register(session)
    await container.aget(Bar)
    with pytest.raises(tether.TetherError, match=r"await container.aclose\(\)"):
        container.close()
    await container.aclose()


def test_factory_errors_propagate_unwrapped_with_the_chain(container: tether.Container) -> None:
    """An exception raised by your factory is yours, with a note naming what was built."""

    def make_pool(settings: Settings) -> Pool:
        raise ConnectionError("refused")

    class Api:
        def __init__(self, pool: Pool) -> None:
            self.pool = pool

    container.register(make_pool)
    container.register(Api)
    with pytest.raises(ConnectionError) as caught:
        container.get(Api)
    assert "tether: raised while building Api(pool: Pool) -> make_pool()" in (
        caught.value.__notes__
    )


def test_register_works_as_a_decorator(container: tether.Container) -> None:
    """@container.register returns the function unchanged."""

    @container.register
    def make_pool(settings: Settings) -> Pool:
        return Pool(settings)

    assert make_pool.__name__ == "make_pool"
    assert isinstance(container.get(Pool), Pool)


async def test_call_injects_a_function(container: tether.Container) -> None:
    """call() runs any function with its parameters injected and keywords filled by name."""

    async def handler(settings: Settings, greeting: str) -> str:
        return f"{greeting} {settings.url}"

    assert await container.call(handler, greeting="hello") == "hello sqlite://"


async def test_call_builds_a_class_anew_each_time_reading_its_signature_once(
    container: tether.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """call(Class) is a new instance per call, its signature read once; functions each time."""
    import inspect

    first = await container.call(Pool)
    reads: list[object] = []
    real = inspect.signature

    def signature(function: Any, **options: Any) -> inspect.Signature:
        reads.append(function)
        return real(function, **options)

    monkeypatch.setattr(inspect, "signature", signature)
    second = await container.call(Pool)
    assert first is not second
    assert first.settings is second.settings
    assert reads == []

    async def made_per_call(settings: Settings) -> str:
        return settings.url

    assert await container.call(made_per_call) == "sqlite://"
    assert reads
    assert all(read is made_per_call for read in reads)  # made per call, maybe: not kept


async def test_resolution_is_typed(container: tether.Container) -> None:
    """The type checker sees what was asked for (mypy --strict checks these lines)."""
    from typing import assert_type

    container.register(Pool)
    container.register(make_repository)
    assert_type(container.get(Pool), Pool)
    assert_type(await container.aget(Pool), Pool)
    assert_type(container.get(Repository[User]), Repository[User])
    async with container.started(Pool) as pool:
        assert_type(pool, Pool)


def test_transients_rebuilt_from_cached_values_follow_new_registrations() -> None:
    """A transient rebuilt from cached values (the fast path) sees later registrations."""

    class Job:
        def __init__(self, settings: Settings | None = None) -> None:
            self.settings = settings

    container = tether.Container()
    container.register(Job, transient=True)
    assert container.get(Job).settings is None  # nothing provides Settings yet
    assert container.get(Job) is not container.get(Job)
    settings = container.add(Settings("postgres://"))
    assert container.get(Job).settings is settings

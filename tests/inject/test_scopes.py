"""Scopes: children see and override their parent, through contextvars; leaving disposes."""

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import tether
from tests.conftest import bounded


class Database:
    pass


class Request:
    def __init__(self, path: str = "/") -> None:
        self.path = path


class Handler:
    def __init__(self, request: Request, db: Database) -> None:
        self.request = request
        self.db = db


@pytest.fixture
def container() -> tether.Container:
    container = tether.Container()
    container.register(Database)
    container.register(Handler)
    return container


async def test_a_scope_sees_its_parent(container: tether.Container) -> None:
    """What the parent provides is visible, and shared, inside a scope."""
    db = container.get(Database)
    async with container.scope() as scope:
        assert scope.get(Database) is db


async def test_a_scope_overrides_without_touching_the_parent(container: tether.Container) -> None:
    """An override added in a scope wins there; the parent keeps its own."""
    db = container.get(Database)
    async with container.scope() as scope:
        fake = scope.add(Database())
        assert scope.get(Database) is fake
    assert container.get(Database) is db


async def test_singletons_depending_on_an_override_live_in_the_scope(
    container: tether.Container,
) -> None:
    """Handler needs the scope's Request: it is built per scope; Database stays shared."""
    handlers = []
    for path in ("/a", "/b"):
        async with container.scope() as scope:
            scope.add(Request(path))
            handler = scope.get(Handler)
            assert scope.get(Handler) is handler
            handlers.append(handler)
    assert [h.request.path for h in handlers] == ["/a", "/b"]
    assert handlers[0].db is handlers[1].db is container.get(Database)


async def test_overriding_a_dependency_in_a_scope_rebuilds_its_dependents() -> None:
    """A fake Database in a test scope reaches the Handler built there, not the root's."""
    container = tether.Container()
    container.register(Database)
    container.register(Handler)
    container.add(Request())
    real = container.get(Handler)
    async with container.scope() as scope:
        fake = scope.add(Database())
        assert scope.get(Handler).db is fake
    assert container.get(Handler) is real


async def test_the_container_resolves_in_the_current_scope(container: tether.Container) -> None:
    """Code holding the root container resolves in the scope entered by its caller."""

    async def handle() -> Handler:
        return await container.aget(Handler)

    async with container.scope() as scope:
        request = scope.add(Request("/x"))
        handler = await handle()
    assert handler.request is request


async def test_concurrent_tasks_each_see_their_own_scope(container: tether.Container) -> None:
    """Scopes live in contextvars: two requests served at once never see each other's."""
    both_inside = asyncio.Barrier(2)

    async def serve(path: str) -> str:
        async with container.scope() as scope:
            scope.add(Request(path))
            await both_inside.wait()
            handler = await container.aget(Handler)
            return handler.request.path

    assert list(await bounded(asyncio.gather(serve("/a"), serve("/b")))) == ["/a", "/b"]


async def test_nested_scopes_see_every_ancestor(container: tether.Container) -> None:
    """A scope inside a scope sees the outer scope's overrides and the root's providers."""
    async with container.scope() as outer:
        request = outer.add(Request("/outer"))
        async with container.scope() as inner:
            handler = inner.get(Handler)
            assert handler.request is request
            assert handler.db is container.get(Database)


async def test_leaving_a_scope_disposes_what_it_created_in_reverse_order() -> None:
    """Cleanups of the scope's generators run on exit, last created first."""
    events: list[str] = []

    class Session:
        pass

    def open_request() -> Iterator[Request]:
        events.append("open request")
        yield Request()
        events.append("close request")

    async def open_session(request: Request) -> AsyncIterator[Session]:
        events.append("open session")
        yield Session()
        events.append("close session")

    container = tether.Container()
    container.register(open_request, transient=True)
    container.register(open_session, transient=True)
    async with container.scope():
        await container.aget(Session)
        assert events == ["open request", "open session"]
    assert events == ["open request", "open session", "close session", "close request"]


async def test_a_scope_disposes_only_what_it_created() -> None:
    """Root singletons used in a scope survive it; the scope's own are cleaned up."""
    events: list[str] = []

    def connect() -> Iterator[Database]:
        yield Database()
        events.append("close database")

    root = tether.Container()
    root.register(connect)
    root.register(Handler)
    db = root.get(Database)
    async with root.scope() as scope:
        scope.add(Request())
        assert scope.get(Handler).db is db
    assert events == []
    root.close()
    assert events == ["close database"]


async def test_cleanup_errors_are_raised_after_every_cleanup_ran() -> None:
    """A failing cleanup does not stop the others; the first error is raised at the end."""
    events: list[str] = []

    class A:
        pass

    class B:
        pass

    def make_a() -> Iterator[A]:
        yield A()
        events.append("close a")

    def make_b() -> Iterator[B]:
        yield B()
        raise RuntimeError("b failed to close")

    container = tether.Container()
    container.register(make_a)
    container.register(make_b)
    container.get(A)
    container.get(B)
    with pytest.raises(RuntimeError, match="b failed to close"):
        await container.aclose()
    assert events == ["close a"]


async def test_an_override_in_an_outer_scope_reaches_inner_scopes(
    container: tether.Container,
) -> None:
    """An inner scope that used the root's value sees an override added later outside it."""
    async with container.scope() as outer:
        async with container.scope() as inner:
            assert inner.get(Database) is container.get(Database)
            fake = outer.add(Database())
            assert inner.get(Database) is fake

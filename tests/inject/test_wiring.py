"""The injector wires the lifecycle: what is injected into a service starts before it."""

import pytest

import tether
from tests.conftest import Log, SlowNode


class Database(tether.Service):
    log: Log

    async def start(self) -> None:
        self.log.append("start:db")

    async def stop(self) -> None:
        self.log.append("stop:db")


class Client(tether.Service):
    log: Log

    async def start(self) -> None:
        self.log.append("start:client")

    async def stop(self) -> None:
        self.log.append("stop:client")


class Repository:
    """Not a service: it carries the database it was built with to whoever needs it."""

    def __init__(self, db: Database) -> None:
        self.db = db


class Api(tether.Service):
    def __init__(self, repo: Repository, client: Client, log: Log) -> None:
        self.repo = repo
        self.client = client
        self.log = log

    async def start(self) -> None:
        self.log.append("start:api")

    async def stop(self) -> None:
        self.log.append("stop:api")


@pytest.fixture
def container(log: Log) -> tether.Container:
    Database.log = log
    Client.log = log
    container = tether.Container()
    container.add(log)
    container.register(Repository)
    return container


async def test_injected_services_start_first_and_stop_last(
    container: tether.Container, log: Log
) -> None:
    """Api names nobody in ``dependencies``, yet its database and client start before it."""
    api = container.get(Api)
    async with api:
        assert api.repo.db.running
        assert api.client.running
    assert log[0] in ("start:db", "start:client")
    assert log.index("start:api") == 2
    assert log.index("stop:api") == 3
    assert sorted(log[4:]) == ["stop:client", "stop:db"]


async def test_injected_services_start_concurrently(log: Log) -> None:
    """Services injected side by side start at the same time, not one after the other."""

    class A(SlowNode):
        def __init__(self, log: Log) -> None:
            super().__init__("a", log)

    class B(SlowNode):
        def __init__(self, log: Log) -> None:
            super().__init__("b", log)

    class Top(tether.Service):
        def __init__(self, a: A, b: B) -> None:
            self.a = a
            self.b = b

    container = tether.Container()
    container.add(log)
    async with container.get(Top):
        pass
    assert log[:2] == ["start-begin:a", "start-begin:b"]


async def test_explicit_dependencies_keep_their_order(log: Log) -> None:
    """Listing injected services in ``dependencies`` orders them as written."""

    class A(SlowNode):
        def __init__(self, log: Log) -> None:
            super().__init__("a", log)

    class B(SlowNode):
        def __init__(self, log: Log) -> None:
            super().__init__("b", log)

    class Top(tether.Service):
        def __init__(self, a: A, b: B) -> None:
            self.a = a
            self.b = b

        @property
        def dependencies(self) -> list[tether.ServiceBase]:
            return [self.b, self.a]

    container = tether.Container()
    container.add(log)
    async with container.get(Top):
        pass
    assert log.of("start") == ["b", "a"]
    assert log.index("start:b") < log.index("start-begin:a")


async def test_a_script_starts_only_what_it_uses(container: tether.Container, log: Log) -> None:
    """``started(Repository)`` brings up the database alone, and stops it when done."""
    async with container.started(Repository) as repo:
        assert repo.db.running
        assert log == ["start:db"]
    assert log == ["start:db", "stop:db"]
    assert not repo.db.running


async def test_a_script_can_start_a_service_with_its_graph(
    container: tether.Container, log: Log
) -> None:
    """``started(Api)`` is the whole graph Api needs, stopped in reverse when the block ends."""
    async with container.started(Api) as api:
        assert api.running
        assert set(log) == {"start:db", "start:client", "start:api"}
    assert log[3] == "stop:api"
    assert not api.running


async def test_a_script_shares_services_another_root_runs(
    container: tether.Container, log: Log
) -> None:
    """While the application runs, a script's block reuses its database and leaves it up."""
    api = container.get(Api)
    async with api:
        async with container.started(Repository) as repo:
            assert repo.db is api.repo.db
        assert api.repo.db.running
    assert log.of("start").count("db") == 1
    assert log.of("stop").count("db") == 1


async def test_root_returns_the_resolved_service(container: tether.Container) -> None:
    """``root(Api)`` is what ``tether run module:Api`` runs: Api, wired."""
    root = container.root(Api)
    assert isinstance(root, Api)
    async with root:
        assert root.client.running


async def test_root_of_a_factory_wraps_what_it_needs(container: tether.Container) -> None:
    """A factory whose result is not a service gets a root that runs its services."""

    def make_report(repo: Repository) -> dict[str, Repository]:
        return {"repo": repo}

    root = container.root(make_report)
    assert isinstance(root, tether.Service)
    async with root:
        assert container.get(Database).running
    assert not container.get(Database).running
    assert repr(root).startswith("<Uses[make_report]")


def test_root_refuses_a_value(container: tether.Container) -> None:
    """A root must be something to resolve or call."""
    with pytest.raises(tether.InjectionError, match=r"Cannot make a root of 42"):
        container.root(42)


async def test_overrides_that_are_services_become_dependencies(
    container: tether.Container, log: Log
) -> None:
    """A service passed as an override is wired like an injected one."""
    db = Database()
    async with container.started(Repository, db=db) as repo:
        assert repo.db is db
        assert db.running
    assert container.get(Database) is not db


async def test_started_starts_a_service_resolved_before(container: tether.Container) -> None:
    """``started(T)`` after ``get(T)`` starts T with its graph: the cache is no shortcut."""
    api = container.get(Api)
    assert not api.running
    async with container.started(Api) as started:
        assert started is api
        assert api.running
        assert api.repo.db.running
    assert not api.running
    assert not api.repo.db.running


async def test_started_twice_starts_the_service_each_time(
    container: tether.Container, log: Log
) -> None:
    """A second ``started`` block of the same service starts it again."""
    for _ in range(2):
        async with container.started(Database) as db:
            assert db.running
    assert log == ["start:db", "stop:db", "start:db", "stop:db"]


async def test_started_in_a_scope_starts_a_service_the_parent_resolved(
    container: tether.Container,
) -> None:
    """A service the parent container built is started from a scope too."""
    db = container.get(Database)
    async with container.scope():
        async with container.started(Database) as again:
            assert again is db
            assert db.running
    assert not db.running

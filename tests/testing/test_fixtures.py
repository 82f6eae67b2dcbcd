"""The graph fixtures and markers of tether's pytest plugin.

The first tests use the fixtures directly (the plugin is active in this suite); the
others run pytest on generated modules, to see what a project sees: its own container,
errors at setup and teardown, pytest-asyncio's strict mode, and no pytest-asyncio.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import tether
from tests.conftest import Log, Node
from tests.testing.testing_support import run, setup
from tether.testing import Starter


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str = "sqlite:///prod.db"
    pool_size: int = 10


class Mailer:
    def send(self, to: str) -> None:
        raise AssertionError("the real mailer was used in a test")  # pragma: no cover


class FakeMailer(Mailer):
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, to: str) -> None:
        self.sent.append(to)


class Database(tether.Service):
    def __init__(self, config: DbConfig) -> None:
        self.config = config


class Api(tether.Service):
    def __init__(self, db: Database, mailer: Mailer) -> None:
        self.db = db
        self.mailer = mailer


@pytest.fixture
def tether_container() -> tether.Container:
    """This module's application container: Mailer is registered, as an app would."""
    container = tether.Container()
    container.register(Mailer)
    return container


async def test_tether_start_resolves_a_type_and_starts_what_it_needs(
    tether_start: Starter,
) -> None:
    """await tether_start(Database) resolves it in the test's scope and starts it."""
    db = await tether_start(Database)
    assert db.running
    assert db.config.url == "sqlite:///prod.db"


async def test_tether_start_starts_a_service_instance(tether_start: Starter, log: Log) -> None:
    """A service given as it is starts with its graph, dependencies first."""
    below = Node("below", log)
    root = await tether_start(Node("root", log, [below]))
    assert root.running
    assert log == ["start:below", "start:root"]


async def test_graphs_stop_after_the_test_last_started_first(log: Log) -> None:
    """Starter.stop() (what the fixture does after the test) stops in reverse order."""
    starter = Starter(tether.Container(), "a test")
    await starter(Node("first", log))
    await starter(Database)
    assert repr(starter) == "<Starter for a test: Node, Database started>"
    await starter.stop()
    assert log.of("stop") == ["first"]
    assert repr(starter) == "<Starter for a test: nothing started>"


async def test_tether_start_runs_blocking_services_too(tether_start: Starter) -> None:
    """A BlockingService instance starts inside the test's async graph."""

    class Store(tether.BlockingService):
        def start(self) -> None:
            self.opened = True

    store = await tether_start(Store())
    assert store.running
    assert store.opened


async def test_tether_start_refuses_overrides_for_an_instance(tether_start: Starter) -> None:
    """Overrides apply to a type being resolved; with an instance they are a mistake."""
    with pytest.raises(TypeError, match=r"only apply when resolving a type, as in tether_start"):
        await tether_start(Database(DbConfig()), db="x")  # type: ignore[call-overload]


@pytest.mark.tether_override(Mailer, FakeMailer)
async def test_override_marker_provides_a_fake_for_this_test(tether_start: Starter) -> None:
    """tether_override(Mailer, FakeMailer): the scope builds the fake in its place."""
    api = await tether_start(Api)
    assert isinstance(api.mailer, FakeMailer)


async def test_the_scope_takes_overrides_before_resolving(
    tether_scope: tether.Container, tether_start: Starter
) -> None:
    """tether_scope.add(fake, provides=Real) in a test or fixture, then start."""
    fake = tether_scope.add(FakeMailer(), provides=Mailer)
    api = await tether_start(Api)
    api.mailer.send("ada@example.org")
    assert fake.sent == ["ada@example.org"]


@pytest.mark.tether_config({"db": {"url": "sqlite:///:memory:", "pool_size": 2}})
class TestConfigMarkers:
    """Config markers layer values over the container's config, the closest winning."""

    async def test_class_marker_sets_the_section(self, tether_start: Starter) -> None:
        """The class's marker applies to its tests."""
        db = await tether_start(Database)
        assert (db.config.url, db.config.pool_size) == ("sqlite:///:memory:", 2)

    @pytest.mark.tether_config(db={"pool_size": 7})
    async def test_closest_marker_wins_key_by_key(self, tether_start: Starter) -> None:
        """The test's marker overrides one key; the others keep the class's values."""
        db = await tether_start(Database)
        assert (db.config.url, db.config.pool_size) == ("sqlite:///:memory:", 7)


@pytest.mark.tether_config(db={"pool_size": "many"})
async def test_config_errors_name_the_marker_as_the_source(
    tether_scope: tether.Container,
) -> None:
    """A bad value from a marker is reported with the marker as its source."""
    with pytest.raises(tether.ConfigError, match="expected int, got 'many' from tether_config"):
        tether_scope.get(DbConfig)


@pytest.mark.tether_config({"db": {"url": "sqlite:///marked.db"}})
async def test_code_holding_the_container_resolves_in_the_test_scope(
    tether_container: tether.Container,
) -> None:
    """The scope is entered for the test: the application's own container sees it."""
    assert tether_container.get(DbConfig).url == "sqlite:///marked.db"


async def prepare(container: tether.Container) -> None:
    """A plugin of this module: registers a greeting."""
    container.add("hello from the plugin")


@pytest.mark.tether_plugins(f"{__name__}:prepare")
async def test_plugins_marker_loads_plugins_into_the_scope(
    tether_container: tether.Container, tether_plugins: tether.Plugins
) -> None:
    """tether_plugins(...) runs the plugins' prepare; what they register is visible."""
    assert tether_container.get(str) == "hello from the plugin"
    assert tether_plugins.loaded == (__name__,)


async def test_tether_plugins_runs_what_plugins_yield(
    tether_plugins: tether.Plugins, tether_start: Starter
) -> None:
    """Plugins loaded in the test run their tasks once the Plugins service starts."""
    ran: list[str] = []

    async def plugin() -> object:
        async def work() -> None:
            ran.append("work")

        return work

    await tether_plugins.load(plugin)
    await tether_start(tether_plugins)
    await tether_plugins.wait()  # the only task returned: the plugins service stops
    assert ran == ["work"]


# --------------------------------------------------------------- generated projects

APP = """
import asyncio
import dataclasses
from pathlib import Path

import tether


def note(text):
    with Path("events.log").open("a") as file:
        file.write(text + "\\n")


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str = "sqlite:///prod.db"
    pool_size: int = 10


class Mailer:
    def send(self, to):
        raise RuntimeError("the real mailer was used")


class Database(tether.Service):
    def __init__(self, config: DbConfig):
        self.config = config

    async def start(self):
        note(f"start db {self.config.url} pool={self.config.pool_size}")

    async def stop(self):
        note("stop db")


class Api(tether.Service):
    def __init__(self, db: Database, mailer: Mailer):
        self.db = db
        self.mailer = mailer

    async def start(self):
        note("start api")

    async def stop(self):
        note("stop api")


class Unreachable(tether.Service):
    async def start(self):
        raise ConnectionError("db.example:5432 refused the connection")


class Stubborn(tether.Service):
    async def stop(self):
        raise RuntimeError("could not flush the journal")


class Crashing(tether.Service):
    async def start(self):
        self.crashed = asyncio.Event()
        self.add_task(self.work())

    async def work(self):
        self.crashed.set()
        raise ValueError("the worker crashed")


def make_container():
    config = tether.Config().add_dict({"db": {"pool_size": 5}}, source="app defaults")
    container = tether.Container(config=config)
    container.register(Mailer)
    return container
"""

CONFTEST = """
import pytest

import app


@pytest.fixture
def tether_container():
    return app.make_container()
"""


def events(pytester: pytest.Pytester) -> list[str]:
    path = Path(pytester.path, "events.log")
    return path.read_text().splitlines() if path.exists() else []


def test_a_project_starts_its_graph_with_fakes_and_config(pytester: pytest.Pytester) -> None:
    """Its container, a fixture built on tether_start, an override and config, per test."""
    setup(pytester, conftest=CONFTEST)
    pytester.makepyfile(app=APP)
    pytester.makepyfile(
        test_api="""
        import pytest
        import app

        class FakeMailer:
            def __init__(self):
                self.sent = []

            def send(self, to):
                self.sent.append(to)

        @pytest.fixture
        async def api(tether_start):
            return await tether_start(app.Api)

        @pytest.mark.tether_override(app.Mailer, FakeMailer)
        @pytest.mark.tether_config(db={"url": "sqlite:///:memory:"})
        async def test_welcome(api):
            assert api.running and api.db.running
            api.mailer.send("ada@example.org")
            assert api.mailer.sent == ["ada@example.org"]

        async def test_defaults(api):
            assert isinstance(api.mailer, app.Mailer)
        """
    )
    run(pytester).assert_outcomes(passed=2)
    assert events(pytester) == [
        "start db sqlite:///:memory: pool=5",
        "start api",
        "stop api",
        "stop db",
        "start db sqlite:///prod.db pool=5",
        "start api",
        "stop api",
        "stop db",
    ]


def test_fakes_config_and_plugins_stay_in_their_test(pytester: pytest.Pytester) -> None:
    """With one container shared by every test, what a test's markers add ends with it."""
    setup(pytester)
    pytester.makepyfile(app=APP)
    pytester.makeconftest(
        CONFTEST.replace("return app.make_container()", "return SHARED")
        + "\nSHARED = app.make_container()\n"
    )
    pytester.makepyfile(
        plugin="""
        import tether

        def prepare(container: tether.Container):
            container.add("registered by the plugin")
        """,
        test_isolation="""
        import pytest
        import tether
        import app

        class FakeMailer:
            pass

        @pytest.mark.tether_override(app.Mailer, FakeMailer)
        @pytest.mark.tether_config(db={"url": "sqlite:///:memory:"})
        @pytest.mark.tether_plugins("plugin")
        async def test_marked(tether_container):
            assert isinstance(tether_container.get(app.Mailer), FakeMailer)
            assert tether_container.get(app.DbConfig).url == "sqlite:///:memory:"
            assert tether_container.get(str) == "registered by the plugin"

        async def test_unmarked(tether_container):
            assert type(tether_container.get(app.Mailer)) is app.Mailer
            assert tether_container.get(app.DbConfig).url == "sqlite:///prod.db"
            with pytest.raises(tether.InjectionError, match="str: no provider"):
                tether_container.get(str)
        """,
    )
    run(pytester).assert_outcomes(passed=2)


def test_tests_sharing_the_applications_container_each_start_its_graph(
    pytester: pytest.Pytester,
) -> None:
    """tether_start(Api) in every test of a shared container starts Api each time."""
    setup(pytester)
    pytester.makepyfile(app=APP)
    pytester.makeconftest(
        CONFTEST.replace("return app.make_container()", "return SHARED")
        + "\nSHARED = app.make_container()\n"
    )
    pytester.makepyfile(
        test_shared="""
        import app

        async def test_first(tether_start):
            api = await tether_start(app.Api)
            assert api.running and api.db.running

        async def test_second(tether_start):
            api = await tether_start(app.Api)
            assert api.running and api.db.running

        async def test_after_a_get(tether_start, tether_container):
            api = tether_container.get(app.Api)
            assert await tether_start(app.Api) is api
            assert api.running
        """,
    )
    run(pytester).assert_outcomes(passed=3)
    assert (
        events(pytester)
        == ["start db sqlite:///prod.db pool=5", "start api", "stop api", "stop db"] * 3
    )


def test_a_graph_that_fails_to_start_is_a_setup_error(pytester: pytest.Pytester) -> None:
    """The engine's error, its note naming the hook, and which test it was for."""
    setup(pytester, conftest=CONFTEST)
    pytester.makepyfile(app=APP)
    pytester.makepyfile(
        test_start="""
        import pytest
        import app

        @pytest.fixture
        async def database(tether_start):
            return await tether_start(app.Unreachable)

        async def test_queries(database):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_queries*",
            "E *ConnectionError: db.example:5432 refused the connection",
            "E *tether: raised by Unreachable.start (stage 'start')",
            "E *tether.testing: raised while starting Unreachable for test_start.py::test_queries",
        ]
    )
    result.stdout.no_fnmatch_line("*left * behind*")


def test_a_stop_that_fails_is_a_teardown_error(pytester: pytest.Pytester) -> None:
    """The test passes; its teardown errors with the engine's message for the stop hook."""
    setup(pytester, conftest=CONFTEST)
    pytester.makepyfile(app=APP)
    pytester.makepyfile(
        test_stop="""
        import app

        async def test_uses_it(tether_start):
            await tether_start(app.Stubborn)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_uses_it*",
            "E *RuntimeError: could not flush the journal",
            "E *tether: raised by Stubborn.stop (stage 'stop')",
        ]
    )


def test_a_task_crash_during_the_test_is_a_teardown_error(pytester: pytest.Pytester) -> None:
    """A background task that crashed while the test ran is raised when its graph stops."""
    setup(pytester, conftest=CONFTEST)
    pytester.makepyfile(app=APP)
    pytester.makepyfile(
        test_crash="""
        import asyncio
        import app

        async def test_runs_it(tether_start):
            service = await tether_start(app.Crashing)
            await asyncio.wait_for(service.crashed.wait(), 5)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["E *ValueError: the worker crashed", "E *tether: raised by background task *"]
    )


def test_the_fixtures_work_in_strict_mode(pytester: pytest.Pytester) -> None:
    """pytest-asyncio's strict mode: marked tests and pytest_asyncio fixtures use them."""
    setup(pytester, conftest=CONFTEST, mode="strict")
    pytester.makepyfile(app=APP)
    pytester.makepyfile(
        test_strict="""
        import pytest
        import pytest_asyncio
        import app

        @pytest_asyncio.fixture
        async def db(tether_start):
            return await tether_start(app.Database)

        @pytest.mark.asyncio
        @pytest.mark.tether_config(db={"pool_size": 3})
        async def test_strict(db):
            assert db.running and db.config.pool_size == 3
        """
    )
    run(pytester).assert_outcomes(passed=1)
    assert events(pytester) == ["start db sqlite:///prod.db pool=3", "stop db"]


def test_markers_are_declared_for_strict_markers(pytester: pytest.Pytester) -> None:
    """--strict-markers accepts every tether marker; --markers describes each."""
    setup(pytester)
    pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.tether_allow_leaks("threads")
        @pytest.mark.tether_config(db={"url": "sqlite://"})
        @pytest.mark.tether_override(str, "fake")
        @pytest.mark.tether_plugins()
        async def test_marked(tether_scope):
            assert tether_scope.get(str) == "fake"
        """
    )
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
    listed = run(pytester, "--markers")
    listed.stdout.fnmatch_lines(
        [
            "@pytest.mark.tether_allow_leaks(*kinds): do not fail this test for leaving*",
            "@pytest.mark.tether_config(mapping=None, /, **values): config values for this*",
            "@pytest.mark.tether_override(provides, fake, *, name=None): provide fake for*",
            "@pytest.mark.tether_plugins(*plugins): load these plugins*",
        ]
    )


def test_markers_without_pytest_asyncio_say_what_is_missing(pytester: pytest.Pytester) -> None:
    """The scope markers act through an async fixture; without pytest-asyncio, say so."""
    setup(pytester)
    pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.tether_config(db={"url": "sqlite://"})
        def test_marked():
            pass
        """
    )
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            (
                "*@pytest.mark.tether_config acts through the async fixture tether_scope, "
                "which needs pytest-asyncio: pip install pytest-asyncio*"
            )
        ]
    )


def test_a_malformed_override_marker_is_explained(pytester: pytest.Pytester) -> None:
    """tether_override with three arguments: the error shows the expected form."""
    setup(pytester)
    pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.tether_override(str, "fake", "another fake")
        async def test_marked():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*tether_override takes the type to override and its fake, and optionally name=*"]
    )

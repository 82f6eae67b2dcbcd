"""Lazy: the application defined at import, built by the container when it first starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import tether
from tests.conftest import Log, Node, bounded

ROOT = Path(__file__).resolve().parents[2]


class Database(tether.Service):
    built = 0

    def __init__(self) -> None:
        Database.built += 1
        self.up = False

    async def start(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.up = False


class Api(tether.Service):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self) -> None:
        assert self.db.up, "injected services start first"


async def test_nothing_is_built_until_the_first_start() -> None:
    """The factory runs when the graph is first walked, once; the target is its dependency."""
    made: list[int] = []

    def make(db: Database) -> Api:
        made.append(1)
        return Api(db)

    app = tether.Lazy(make)
    assert not app.built
    assert made == []
    async with app:
        assert app.built
        assert app.target.running
        assert app.target.db.running  # injected, and wired as a dependency
    async with app:  # started again: the same service, not built again
        pass
    assert made == [1]
    assert not app.target.running


async def test_a_class_is_resolved_through_the_given_container() -> None:
    """With a container, the target is what that container resolves (and shares)."""
    container = tether.Container()
    db = container.get(Database)
    app = tether.Lazy(Api, container=container)
    async with app:
        assert app.target.db is db
        assert db.running
    assert tether.status(app).name == "Lazy[Api]"


async def test_a_crash_of_the_target_reaches_the_proxy() -> None:
    """The proxy's wait()/run() raise a crash of the service it built."""

    class Crashes(tether.Service):
        async def start(self) -> None:
            self.add_task(self.boom())

        async def boom(self) -> None:
            raise RuntimeError("built and broken")

    with pytest.raises(RuntimeError, match="built and broken"):
        await bounded(tether.Lazy(Crashes).run())


async def test_lazy_builds_in_the_thread_of_a_service_thread(log: Log) -> None:
    """ServiceThread(Lazy(...)): the service is built in the thread that runs it."""
    built_in: list[int] = []

    def make() -> Node:
        built_in.append(threading.get_ident())
        return Node("inner", log)

    worker = tether.ServiceThread(tether.Lazy(make))
    async with worker:
        assert worker.thread is not None
        assert built_in == [worker.thread.ident]
        assert worker.service.target.running


def test_bad_factories_are_clear_errors() -> None:
    """An instance, a non-callable, or a factory that makes no service is refused clearly."""
    with pytest.raises(tether.DefinitionError, match=r"built already; .*Lazy\(Database\)"):
        tether.Lazy(Database())  # type: ignore[arg-type]
    with pytest.raises(tether.DefinitionError, match="got 42"):
        tether.Lazy(42)  # type: ignore[arg-type]

    def settings() -> dict[str, int]:
        return {"port": 8000}

    not_a_service = tether.Lazy(settings)  # type: ignore[type-var]
    with pytest.raises(tether.DefinitionError, match="not a service"):
        _ = not_a_service.target


def test_a_factory_error_names_what_failed_before_anything_starts() -> None:
    """check() walks the graph, so it builds the target: its errors come out there."""

    def make() -> tether.Service:
        raise LookupError("no settings")

    with pytest.raises(LookupError, match="no settings"):
        tether.check(tether.Lazy(make))


IMPORT_PROBE = textwrap.dedent(
    """
    import asyncio, asyncio.events, os, sys, threading
    import tether

    def fds():
        return set(os.listdir("/proc/self/fd"))

    before = fds()
    threads = threading.active_count()
    sys.path.insert(0, sys.argv[1])
    import threads as example

    assert isinstance(example.app, tether.Lazy), example.app
    assert not example.app.built, "the application was built at import"
    assert threading.active_count() == threads, threading.enumerate()
    policy = asyncio.events._event_loop_policy
    loop = None if policy is None else policy._local._loop
    assert loop is None, f"an event loop was created at import: {loop!r}"
    extra = fds() - before
    assert not extra, f"descriptors opened at import: {extra}"
    print("clean")
    """
)


def test_importing_a_module_that_defines_the_application_creates_nothing() -> None:
    """Importing docs/examples/threads.py makes no loop, thread or descriptor (a subprocess)."""
    done = subprocess.run(  # noqa: S603 - the running interpreter, a fixed probe
        [sys.executable, "-c", IMPORT_PROBE, str(ROOT / "docs" / "examples")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


def test_the_example_runs_its_thread_and_stops_by_itself() -> None:
    """docs/examples/threads.py run as a program: the renderer answers, then all stops."""
    done = subprocess.run(  # noqa: S603 - the running interpreter, a fixed example
        [sys.executable, str(ROOT / "docs" / "examples" / "threads.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "renderer up in 'tether Renderer'",
        "rendered 'hello'",
        "main loop got <h1>hello</h1>",
        "renderer down after 1 page(s)",
    ]


class Port(tether.Service):
    def __init__(self, port: int, bind: str = "127.0.0.1") -> None:
        self.port = port
        self.bind = bind


async def test_lazy_passes_its_arguments_to_the_factory() -> None:
    """mode's `App(web_port=6066)`: the arguments reach the factory when it builds."""
    app = tether.Lazy(Port, 6066, bind="0.0.0.0", name="web")  # noqa: S104 - not bound
    assert not app.built
    async with app:
        assert (app.target.port, app.target.bind) == (6066, "0.0.0.0")  # noqa: S104
    assert repr(app).startswith("<Lazy[web] ")


def test_a_lambda_is_named_by_where_it_is_defined_then_by_what_it_built() -> None:
    """No `Lazy[<lambda>]` in logs: the place first, the built service's name after."""
    app = tether.Lazy(lambda: Port(1))
    assert app.name.startswith("lambda at test_lazy.py:")
    app.target  # noqa: B018 - builds it
    assert app.name == "Port"


def test_arguments_and_a_container_together_are_an_error() -> None:
    """With arguments the container would be ignored: say so instead."""
    with pytest.raises(tether.DefinitionError, match="one or the other"):
        tether.Lazy(Port, 1, container=tether.Container())


def test_a_factory_returning_something_else_is_an_error() -> None:
    """The message names the proxy and what was built."""
    app: tether.Lazy[tether.Service] = tether.Lazy(lambda n: n, 42, name="odd")
    with pytest.raises(tether.DefinitionError, match=r"Lazy\[odd\] built 42 \(int\)"):
        app.target  # noqa: B018

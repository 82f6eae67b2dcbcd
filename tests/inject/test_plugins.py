"""Plugins: loading order and dependencies, tasks owned by the graph, teardown, discovery."""

import asyncio
import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tether
from tests.conftest import Log, bounded

Write = Callable[[str, str], None]

PREAMBLE = """\
import asyncio
import tether
from tests.conftest import Log
"""


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Write]:
    """Write real modules of the package ``myapp`` under a temporary sys.path entry."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")

    def write_module(name: str, source: str) -> None:
        path = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        path.write_text(PREAMBLE + textwrap.dedent(source))

    importlib.invalidate_caches()
    yield write_module
    for name in [n for n in sys.modules if n == "myapp" or n.startswith(("myapp.", "myplug"))]:
        del sys.modules[name]


@pytest.fixture
def plugins(log: Log) -> tether.Plugins:
    container = tether.Container()
    container.add(log)
    return tether.Plugins(container)


async def test_plugins_load_their_dependencies_first_and_once(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """a loads b and c, b loads c: c is prepared once, before those that need it."""
    write(
        "myapp.a",
        """
        async def prepare(plugins: tether.Plugins, log: Log):
            log.append("prepare:a")
            await plugins.load("myapp.b", "myapp.c")
        """,
    )
    write(
        "myapp.b",
        """
        async def prepare(plugins: tether.Plugins, log: Log):
            log.append("prepare:b")
            await plugins.load("myapp.c")
        """,
    )
    write("myapp.c", 'def prepare(log: Log):\n    log.append("prepare:c")\n')
    await plugins.load("myapp.a", "myapp.c")
    assert log == ["prepare:a", "prepare:b", "prepare:c"]
    assert plugins.loaded == ("myapp.c", "myapp.b", "myapp.a")


async def test_relative_names_resolve_against_the_loading_plugin(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """``.db`` loaded from myapp.api is myapp.db (buvar's ``load('.another.plugin')``)."""
    write(
        "myapp.api",
        "async def prepare(plugins: tether.Plugins):\n    await plugins.load('.db')\n",
    )
    write("myapp.db", 'def prepare(log: Log):\n    log.append("prepare:db")\n')
    await plugins.load("myapp.api")
    assert plugins.loaded == ("myapp.db", "myapp.api")


async def test_a_plugin_cycle_is_an_error(write: Write, plugins: tether.Plugins) -> None:
    """a loads b, b loads a: the error shows the cycle."""
    write("myapp.a", "async def prepare(plugins: tether.Plugins):\n    await plugins.load('.b')\n")
    write("myapp.b", "async def prepare(plugins: tether.Plugins):\n    await plugins.load('.a')\n")
    with pytest.raises(tether.PluginError) as caught:
        await plugins.load("myapp.a")
    assert str(caught.value) == (
        "Plugin cycle: myapp.a -> myapp.b -> myapp.a. A plugin cannot load itself back."
    )


async def test_yielded_coroutines_are_tasks_of_the_plugins_service(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """What prepare yields runs as supervised tasks of the service, cancelled on stop."""
    write(
        "myapp.server",
        """
        async def serve(log: Log, started: asyncio.Event) -> None:
            log.append("serving")
            started.set()
            try:
                await asyncio.Future()
            finally:
                log.append("cancelled")

        async def prepare(log: Log, started: asyncio.Event):
            yield serve(log, started)
        """,
    )
    started = plugins.container.add(asyncio.Event())
    await plugins.load("myapp.server")
    assert log == []  # nothing runs before the service starts
    async with plugins:
        await bounded(started.wait())
        assert [t.get_name() for t in tether.status(plugins).tasks] == ["myapp.server"]
    assert log == ["serving", "cancelled"]


async def test_a_crashing_plugin_task_stops_the_application(
    write: Write, plugins: tether.Plugins
) -> None:
    """A plugin's task that raises crashes the stack, like any service task."""
    write(
        "myapp.broken",
        """
        async def boom() -> None:
            raise LookupError("plugin task failed")

        def prepare():
            return [boom()]
        """,
    )
    await plugins.load("myapp.broken")
    with pytest.raises(LookupError, match="plugin task failed"):
        await bounded(plugins.run())


async def test_the_plugins_stop_when_every_task_has_returned(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """buvar's stage ends when its tasks are done: run() returns by itself."""
    write(
        "myapp.jobs",
        """
        async def job(log: Log, name: str) -> None:
            await asyncio.sleep(0)
            log.append(f"done:{name}")

        def prepare(log: Log):
            yield job(log, "one")
            yield job(log, "two")
        """,
    )
    await plugins.load("myapp.jobs")
    await bounded(plugins.run())
    assert sorted(log) == ["done:one", "done:two"]


async def test_injected_and_yielded_services_start_before_the_tasks(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """Services a plugin asks for, or yields, are dependencies of the plugins service."""
    write(
        "myapp.services",
        """
        class Database(tether.Service):
            def __init__(self, log: Log) -> None:
                self.log = log

            async def start(self) -> None:
                self.log.append("start:db")

            async def stop(self) -> None:
                self.log.append("stop:db")

        class Worker(tether.Service):
            def __init__(self, log: Log) -> None:
                self.log = log

            async def start(self) -> None:
                self.log.append("start:worker")

            async def stop(self) -> None:
                self.log.append("stop:worker")

        async def check(log: Log, db: Database) -> None:
            log.append(f"task sees db running={db.running}")

        def prepare(db: Database, log: Log):
            yield Worker(log)
            yield check(log, db)
        """,
    )
    await plugins.load("myapp.services")
    await bounded(plugins.run())
    assert sorted(log[:2]) == ["start:db", "start:worker"]
    assert log[2] == "task sees db running=True"
    assert sorted(log[3:]) == ["stop:db", "stop:worker"]


async def test_teardowns_run_in_reverse_order_after_the_tasks(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """Teardown callbacks, sync or async, run last-registered first, once tasks are gone."""
    write(
        "myapp.first",
        """
        async def forever(log: Log) -> None:
            try:
                await asyncio.Future()
            finally:
                log.append("task cancelled")

        async def close_first(log: Log) -> None:
            log.append("teardown:first")

        def prepare(plugins: tether.Plugins, log: Log):
            plugins.add_teardown(lambda: close_first(log))
            yield forever(log)
        """,
    )
    write(
        "myapp.second",
        """
        async def prepare(plugins: tether.Plugins, log: Log):
            await plugins.load(".first")
            plugins.add_teardown(lambda: log.append("teardown:second"))
        """,
    )
    await plugins.load("myapp.second")
    async with plugins:
        await asyncio.sleep(0)
    assert log == ["task cancelled", "teardown:second", "teardown:first"]


async def test_plugins_register_components(write: Write, plugins: tether.Plugins) -> None:
    """prepare registers providers in the shared container (buvar's ``context.add``)."""
    write(
        "myapp.components",
        """
        class Greeter:
            def greet(self) -> str:
                return "hello"

        def prepare(container: tether.Container):
            container.register(Greeter)
        """,
    )
    await plugins.load("myapp.components")
    greeter_type = sys.modules["myapp.components"].Greeter
    assert plugins.container.get(greeter_type).greet() == "hello"


async def test_a_callable_is_a_plugin(plugins: tether.Plugins, log: Log) -> None:
    """Any callable is a plugin, loaded once however often it is named."""

    def prepare_inline(log: Log) -> None:
        log.append("inline")

    await plugins.load(prepare_inline, prepare_inline)
    assert log == ["inline"]
    assert plugins.loaded == (f"{__name__}:{prepare_inline.__qualname__}",)


async def test_entry_points_are_discovered(
    write: Write, tmp_path: Path, plugins: tether.Plugins, log: Log
) -> None:
    """An installed distribution's ``tether.plugins`` entry points load, found by importlib."""
    (tmp_path / "myplug.py").write_text(
        PREAMBLE + 'def prepare(log: Log):\n    log.append("entry point loaded")\n'
    )
    (tmp_path / "myplug_extra.py").write_text(
        PREAMBLE + 'def setup(log: Log):\n    log.append("extra loaded")\n'
    )
    dist = tmp_path / "myplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[tether.plugins]\nhello = myplug\nextra = myplug_extra:setup\n"
    )
    importlib.invalidate_caches()
    await plugins.load_entry_points(names=["hello"])
    assert log == ["entry point loaded"]
    await plugins.load_entry_points()
    assert log == ["entry point loaded", "extra loaded"]
    assert plugins.loaded == ("myplug", "myplug_extra:setup")
    with pytest.raises(tether.PluginError, match=r"No entry point named nope in group"):
        await plugins.load_entry_points(names=["nope"])


async def test_a_missing_plugin_is_named(write: Write, plugins: tether.Plugins) -> None:
    """A plugin that cannot be found, or lacks prepare, is a PluginError saying so."""
    with pytest.raises(tether.PluginError, match=r"Plugin 'myapp.nope' not found"):
        await plugins.load("myapp.nope")
    write("myapp.empty", "")
    with pytest.raises(tether.PluginError, match=r"myapp.empty has no prepare\(\) function"):
        await plugins.load("myapp.empty")
    with pytest.raises(tether.PluginError, match=r"Relative plugin name '.x' outside a plugin"):
        await plugins.load(".x")


async def test_errors_in_prepare_name_the_plugin(write: Write, plugins: tether.Plugins) -> None:
    """An exception raised by prepare propagates as is, with a note naming the plugin."""
    write("myapp.fails", "def prepare():\n    raise KeyError('no such table')\n")
    with pytest.raises(KeyError) as caught:
        await plugins.load("myapp.fails")
    assert "tether: raised while preparing plugin myapp.fails" in caught.value.__notes__
    assert "myapp.fails" not in plugins.loaded


async def test_a_bad_yield_is_explained(write: Write, plugins: tether.Plugins) -> None:
    """Yielding something that cannot run names the plugin and the value."""
    write("myapp.odd", "def prepare():\n    yield 42\n")
    with pytest.raises(tether.PluginError, match=r"Plugin myapp.odd yielded 42 \(int\)"):
        await plugins.load("myapp.odd")


async def test_async_functions_run_again_on_restart(
    write: Write, plugins: tether.Plugins, log: Log
) -> None:
    """A yielded async function is called at each start; a coroutine object runs once."""
    write(
        "myapp.again",
        """
        def prepare(log: Log):
            async def job() -> None:
                log.append("job")
            yield job
        """,
    )
    await plugins.load("myapp.again")
    await bounded(plugins.run())
    await bounded(plugins.run())
    assert log == ["job", "job"]


async def test_a_coroutine_object_cannot_run_twice(write: Write, plugins: tether.Plugins) -> None:
    """Restarting plugins that yielded a coroutine object says to yield the function."""
    write(
        "myapp.once",
        "async def job() -> None:\n    pass\n\ndef prepare():\n    yield job()\n",
    )
    await plugins.load("myapp.once")
    await bounded(plugins.run())
    with pytest.raises(tether.ServiceStateError, match=r"yield the async function instead"):
        await bounded(plugins.run())


def _install(tmp_path: Path, entry_points: str, **modules: str) -> None:
    """An installed distribution ``brokenplug`` with these entry points and modules."""
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(PREAMBLE + textwrap.dedent(source))
    dist = tmp_path / "brokenplug-2.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 2.1\n")
    (dist / "entry_points.txt").write_text(f"[tether.plugins]\n{entry_points}\n")
    importlib.invalidate_caches()


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("raise RuntimeError('DATABASE_URL is not set')\n", RuntimeError),
        ("def prepare(:\n", SyntaxError),
        ("import os\nPORT = int(os.environ.get('NO_SUCH_PORT_VARIABLE', 'x'))\n", ValueError),
    ],
    ids=["runtime-error", "syntax-error", "value-error"],
)
async def test_an_entry_point_that_fails_to_import_names_itself_and_its_distribution(
    write: Write,
    tmp_path: Path,
    plugins: tether.Plugins,
    source: str,
    cause: type[Exception],
) -> None:
    """Anything raised while importing an entry point: PluginError naming it, chained."""
    _install(tmp_path, "db = myplug_broken", myplug_broken=source)
    with pytest.raises(tether.PluginError) as caught:
        await plugins.load_entry_points()
    message = str(caught.value)
    assert "Entry point 'db' = 'myplug_broken' of brokenplug 2.1" in message
    assert "(group 'tether.plugins')" in message
    assert cause.__name__ in message
    assert isinstance(caught.value.__cause__, cause)


async def test_an_entry_point_without_prepare_names_itself_and_its_distribution(
    write: Write, tmp_path: Path, plugins: tether.Plugins
) -> None:
    """A module with no prepare, or an attribute that is missing: the entry point is named."""
    _install(tmp_path, "empty = myplug_empty", myplug_empty="X = 1\n")
    with pytest.raises(tether.PluginError) as caught:
        await plugins.load_entry_points()
    assert "Entry point 'empty' = 'myplug_empty' of brokenplug 2.1" in str(caught.value)
    assert "has no prepare() function" in str(caught.value)


async def test_an_entry_point_naming_a_missing_attribute_names_itself(
    write: Write, tmp_path: Path, plugins: tether.Plugins
) -> None:
    """``module:missing`` fails in importlib with AttributeError: named as well."""
    _install(tmp_path, "gone = myplug_gone:setup", myplug_gone="X = 1\n")
    with pytest.raises(tether.PluginError) as caught:
        await plugins.load_entry_points()
    assert "Entry point 'gone' = 'myplug_gone:setup' of brokenplug 2.1" in str(caught.value)
    assert isinstance(caught.value.__cause__, AttributeError)


async def test_an_entry_points_prepare_error_names_the_entry_point(
    write: Write, tmp_path: Path, plugins: tether.Plugins
) -> None:
    """prepare raising propagates as it is, with notes naming the plugin and entry point."""
    _install(
        tmp_path,
        "fails = myplug_fails",
        myplug_fails="def prepare():\n    raise KeyError('no such table')\n",
    )
    with pytest.raises(KeyError) as caught:
        await plugins.load_entry_points()
    notes = caught.value.__notes__
    assert "tether: raised while preparing plugin myplug_fails" in notes
    assert (
        "tether: loaded from entry point 'fails' = 'myplug_fails' of brokenplug 2.1 "
        "(group 'tether.plugins')"
    ) in notes


SERVICES = """
class Step(tether.Service):
    def __init__(self, name: str, log: Log) -> None:
        self.label = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start:{self.label}")

    async def stop(self) -> None:
        self.log.append(f"stop:{self.label}")
"""


async def test_plugins_named_for_the_start_load_in_the_running_loop(write: Write, log: Log) -> None:
    """`Plugins(load=...)` prepares in start, in the real loop; yielded services start
    in order before the tasks and stop after them, in reverse; teardowns run last."""
    write("myapp.steps", SERVICES)
    write(
        "myapp.web",
        """
        from myapp.steps import Step

        async def serve(log: Log, loop: asyncio.AbstractEventLoop) -> None:
            log.append(f"serve, same loop={loop is asyncio.get_running_loop()}")
            try:
                await asyncio.Future()
            finally:
                log.append("serve cancelled")

        async def prepare(plugins: tether.Plugins, log: Log):
            await plugins.load(".db")
            plugins.add_teardown(lambda: log.append("teardown:web"))
            yield Step("web", log)
            yield serve(log, asyncio.get_running_loop())
        """,
    )
    write(
        "myapp.db",
        """
        from myapp.steps import Step

        async def prepare(log: Log):
            log.append("prepare:db")
            yield Step("db", log)
        """,
    )
    container = tether.Container()
    container.add(log)
    plugins = tether.Plugins(container, load=["myapp.web"])
    assert not plugins.loaded  # nothing happens before the start
    async with plugins:
        assert plugins.loaded == ("myapp.db", "myapp.web")
        while "serve, same loop=True" not in log:
            await bounded(asyncio.sleep(0))
        tree = tether.status_tree(plugins)  # the late services show under the plugins
        assert "Step" in tree, tree
        plugins.request_stop()
    assert log == [
        "prepare:db",
        "start:db",
        "start:web",
        "serve, same loop=True",
        "serve cancelled",
        "stop:web",
        "stop:db",
        "teardown:web",
    ]


async def test_a_crash_in_a_service_loaded_at_start_crashes_the_plugins(
    write: Write, log: Log
) -> None:
    """A service a plugin yielded at start is supervised like a dependency."""
    write(
        "myapp.crashy",
        """
        class Crashy(tether.Service):
            async def start(self) -> None:
                self.add_task(self.fail())

            async def fail(self) -> None:
                await asyncio.sleep(0)
                raise LookupError("late service crashed")

        def prepare():
            yield Crashy()
        """,
    )
    plugins = tether.Plugins(load="myapp.crashy")
    with pytest.raises(LookupError, match="late service crashed"):
        await bounded(plugins.run())
    assert not plugins.running


async def test_a_failed_start_undoes_what_the_plugins_loaded(write: Write, log: Log) -> None:
    """A plugin failing at start: the services started before it stop, teardowns run."""
    write("myapp.steps", SERVICES)
    write(
        "myapp.good",
        """
        from myapp.steps import Step

        def prepare(plugins: tether.Plugins, log: Log):
            plugins.add_teardown(lambda: log.append("teardown:good"))
            yield Step("good", log)
        """,
    )
    write(
        "myapp.bad",
        """
        class Bad(tether.Service):
            async def start(self) -> None:
                raise OSError("port in use")

        def prepare():
            yield Bad()
        """,
    )
    container = tether.Container()
    container.add(log)
    plugins = tether.Plugins(container, load=["myapp.good", "myapp.bad"])
    with pytest.raises(OSError, match="port in use"):
        async with plugins:
            pass
    assert log == ["start:good", "stop:good", "teardown:good"]


async def test_plugins_loaded_at_start_run_again_after_a_stop(write: Write, log: Log) -> None:
    """Started again, the plugins are not prepared again; their services start again."""
    write("myapp.steps", SERVICES)
    write(
        "myapp.once",
        """
        from myapp.steps import Step

        def prepare(log: Log):
            log.append("prepare")
            yield Step("svc", log)
        """,
    )
    container = tether.Container()
    container.add(log)
    plugins = tether.Plugins(container, load=["myapp.once"])
    for _ in range(2):
        async with plugins:
            pass
    assert log == ["prepare", "start:svc", "stop:svc", "start:svc", "stop:svc"]

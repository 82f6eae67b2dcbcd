"""Hook names tether does not know: other libraries' habits and typos are errors.

A method named like mode's, systemPY's or aiomisc's hooks (``on_start``,
``on_init_dependencies``, ``on_startup``...) or one letter away from a tether hook
(``strat``, ``stpo``, ``on_stoping``, ``dependancies``) would never be called; tether
refuses the class before anything starts, naming the class, the method and the hook it
should be. ``tether.not_a_hook`` says a method really means something else.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.conftest import Log, Node

ROOT = Path(__file__).parents[2]


class ModeStyle(tether.Service):
    """A service written with mode's habits: none of these is a tether hook."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_start(self) -> None:
        self.log.append("on_start")


@pytest.mark.parametrize(
    ("method", "hook"),
    [
        ("on_start", "start"),
        ("on_first_start", "start"),
        ("on_stop", "stop"),
        ("on_shutdown", "stop"),
        ("on_restart", "start"),
        ("on_startup", "start"),
        ("pre_startup", "start"),
        ("post_startup", "on_started"),
        ("pre_shutdown", "on_stopping"),
        ("post_shutdown", "stop"),
    ],
)
def test_another_librarys_hook_name_is_an_error_naming_the_tether_hook(
    method: str, hook: str
) -> None:
    """Each foreign lifecycle method is refused with the tether hook it should be."""

    async def body(self: Any) -> None:
        pass

    cls = type("Foreign", (tether.Service,), {method: body})
    with pytest.raises(tether.HookError) as caught:
        tether.check(cls())
    message = str(caught.value)
    assert f"Foreign.{method}" in message
    assert f"`{hook}`" in message
    assert "tether.not_a_hook" in message


def test_on_init_dependencies_is_an_error_naming_dependencies() -> None:
    """mode's on_init_dependencies would lose the dependencies: it must be `dependencies`."""

    class Api(tether.Service):
        def on_init_dependencies(self) -> list[tether.Service]:
            return [tether.Service()]

    with pytest.raises(tether.HookError, match=r"Api\.on_init_dependencies .*`dependencies`"):
        tether.check(Api())


@pytest.mark.parametrize(
    ("method", "hook"),
    [
        ("strat", "start"),
        ("stpo", "stop"),
        ("on_stoping", "on_stopping"),
        ("on_startd", "on_started"),
        ("on_relaod", "on_reload"),
        ("dependancies", "dependencies"),
        ("graceful_shutdown_timout", "graceful_shutdown_timeout"),
    ],
)
def test_a_near_miss_of_a_hook_name_is_an_error_naming_the_hook(method: str, hook: str) -> None:
    """A typo of a tether hook or property is refused: did you mean the hook?"""

    def body(self: Any) -> None:
        pass

    attribute: object = property(body) if hook == "dependencies" else body
    cls = type("Typo", (tether.Service,), {method: attribute})
    with pytest.raises(tether.HookError) as caught:
        tether.check(cls())
    assert f"Typo.{method}" in str(caught.value)
    assert f"`{hook}`" in str(caught.value)


async def test_a_misnamed_hook_fails_the_start_before_anything_runs(log: Log) -> None:
    """Starting a graph with a misnamed hook raises before any hook runs."""
    dep = Node("dep", log)

    class Api(tether.Service):
        @property
        def dependencies(self) -> list[tether.Service]:
            return [dep]

        async def on_stop(self) -> None:
            log.append("on_stop")

    with pytest.raises(tether.HookError, match=r"Api\.on_stop"):
        async with Api():
            pass
    assert log == []
    assert dep.running is False


def test_a_blocking_service_is_checked_too() -> None:
    """BlockingService hooks follow the same names."""

    class Store(tether.BlockingService):
        def on_start(self) -> None:
            pass

    with pytest.raises(tether.HookError, match=r"Store\.on_start .*`start`"):
        with Store():
            pass


def test_every_problem_of_a_class_is_reported_at_once() -> None:
    """Two misnamed methods: both are named in one error."""

    class Both(tether.Service):
        async def on_start(self) -> None:
            pass

        async def stpo(self) -> None:
            pass

    with pytest.raises(tether.HookError) as caught:
        tether.check(Both())
    assert "Both.on_start" in str(caught.value)
    assert "Both.stpo" in str(caught.value)


def test_an_inherited_misnamed_hook_is_reported_on_the_subclass_too() -> None:
    """A base class written with mode's names taints every subclass used in a graph."""

    class Base(tether.Service):
        async def on_start(self) -> None:
            pass

    class Child(Base):
        pass

    with pytest.raises(tether.HookError, match=r"Base\.on_start"):
        tether.check(Child())


async def test_not_a_hook_lets_a_method_mean_something_else(log: Log) -> None:
    """A method marked tether.not_a_hook keeps its name and is never called by tether."""

    class Button(tether.Service):
        @tether.not_a_hook
        def on_start(self) -> None:  # called by a UI toolkit, not by tether
            log.append("clicked")

        @property
        @tether.not_a_hook
        def dependancies(self) -> str:  # a spelling of the domain's own
            return "ours"

        @staticmethod
        @tether.not_a_hook
        def strat() -> str:
            return "strategy"

        @functools.cached_property
        @tether.not_a_hook
        def stpo(self) -> str:
            return "stpo"

    button = Button()
    tether.check(button)
    async with button:
        pass
    assert log == []
    button.on_start()
    assert (log, button.dependancies, Button.strat(), button.stpo) == (
        ["clicked"],
        "ours",
        "strategy",
        "stpo",
    )


def test_not_a_hook_refuses_what_is_not_a_method() -> None:
    """not_a_hook on something that is not a function or descriptor says so."""
    with pytest.raises(TypeError, match="not_a_hook marks a method"):
        tether.not_a_hook(property(lambda self: 1))  # type: ignore[type-var]


def test_names_that_only_look_alike_are_left_alone() -> None:
    """Ordinary names near no hook, private helpers and data attributes are fine."""

    class Worker(tether.Service):
        strat = "round robin"  # a data attribute, not a method
        on_start_count = 0

        def step(self) -> None:
            pass

        def stat(self) -> None:
            pass

        def _on_start(self) -> None:
            pass

        def start_server(self) -> None:
            pass

        def dependents(self) -> None:
            pass

        async def on_error(self) -> None:
            pass

    tether.check(Worker())


def test_methods_bound_to_a_custom_stage_or_marked_as_tasks_are_fine() -> None:
    """A method decorated with a stage or @task says what it is, whatever its name."""
    warm_up = tether.Stage("warm_up", after=tether.STARTED)

    class Cache(tether.Service):
        @warm_up
        async def on_start(self) -> None:
            pass

        @tether.task
        async def on_restart(self) -> None:
            pass

    tether.check(Cache())


def test_tethers_own_services_pass_the_check() -> None:
    """Supervisor, Plugins, ServiceThread and friends use tether's names only."""
    tether.check(tether.Supervisor([tether.Service()]))
    tether.check(tether.Plugins())
    tether.check(tether.ServiceThread(tether.Service()))


def test_tether_check_command_refuses_a_misnamed_hook(tmp_path: Path) -> None:
    """`tether check` on a service with mode's names fails with code 3, naming the fix."""
    (tmp_path / "modeapp.py").write_text(
        textwrap.dedent(
            """
            import tether

            class Api(tether.Service):
                async def on_start(self):
                    print("never")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "tether", "check", "modeapp:Api"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
    )
    assert result.returncode == 3, result.stderr
    assert "Api.on_start" in result.stderr
    assert "`start`" in result.stderr
    assert "the graph is valid" not in result.stdout


def test_a_hook_that_requires_arguments_is_an_error() -> None:
    """aiomisc's stop(self, exception) without a default: tether calls hooks bare."""

    class Echo(tether.Service):
        async def stop(self, exception: BaseException | None) -> None:  # type: ignore[override]
            pass

    with pytest.raises(tether.HookError, match=r"Echo\.stop requires 'exception'"):
        tether.check(Echo())


def test_a_hook_whose_arguments_have_defaults_is_fine() -> None:
    """aiomisc's stop(self, exception=None) is called as stop(): allowed."""

    class Echo(tether.Service):
        async def stop(self, exception: BaseException | None = None) -> None:
            pass

    tether.check(Echo())


def test_a_mixin_of_another_library_keeps_its_own_names() -> None:
    """Names from a base that is not a tether service are that library's business."""

    class ToolkitWidget:  # stands for a UI toolkit's base class
        def on_start(self) -> None:
            pass

    class Panel(tether.Service, ToolkitWidget):
        pass

    tether.check(Panel())

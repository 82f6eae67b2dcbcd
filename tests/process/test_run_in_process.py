"""tether.run in this process: options checked up front, phases in order, state restored.

Signals, exit codes and forced exits are held by real processes in tests/process/.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys

import pytest

import tether
from tether._process._runner import RunOptions, loop_factory


class SelfStopping(tether.Service):
    """Records the phases it sees, and asks to stop as soon as it has started."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_init(self) -> None:
        self.seen.append(f"init loop={_has_loop()}")

    async def start(self) -> None:
        self.seen.append("start")

    async def on_started(self) -> None:
        self.seen.append("started")
        self.request_stop()

    async def stop(self) -> None:
        self.seen.append("stop")

    def on_exit(self) -> None:
        self.seen.append(f"exit loop={_has_loop()}")


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_run_goes_through_every_phase_and_exits_0() -> None:
    """init before the loop, start, started, stop, exit after it; SystemExit(0)."""
    service = SelfStopping()
    with pytest.raises(SystemExit) as caught:
        tether.run(service, loop="asyncio", log_level="warning")
    assert caught.value.code == 0
    assert service.seen == ["init loop=False", "start", "started", "stop", "exit loop=False"]


def test_run_restores_signal_handlers_and_logging() -> None:
    """After run(), the signal handlers and the root logger are as they were."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    handlers = logging.getLogger().handlers[:]
    with pytest.raises(SystemExit):
        tether.run(SelfStopping(), loop="asyncio")
    assert {s: signal.getsignal(s) for s in before} == before
    assert logging.getLogger().handlers == handlers


def test_launch_on_an_instance_runs_it() -> None:
    """`service.launch()` is `tether.run(service)`."""
    service = SelfStopping()
    with pytest.raises(SystemExit) as caught:
        service.launch(loop="asyncio")
    assert caught.value.code == 0
    assert "exit loop=False" in service.seen


def test_launch_on_the_class_creates_the_service_first() -> None:
    """systemPY style: `App.launch()` creates `App()` and runs it."""
    with pytest.raises(SystemExit) as caught:
        SelfStopping.launch(loop="asyncio")
    assert caught.value.code == 0


def test_launch_on_a_class_that_needs_arguments_says_so() -> None:
    """A class that cannot be created without arguments gets a message with the fix."""

    class NeedsUrl(tether.Service):
        def __init__(self, url: str) -> None:
            self.url = url

    with pytest.raises(TypeError, match=r"Create it yourself: NeedsUrl\(\.\.\.\)\.launch\(\)"):
        NeedsUrl.launch()


def test_launch_takes_exactly_the_options_of_run() -> None:
    """RunOptions (for launch) and run()'s keyword parameters are the same set."""
    keywords = {
        name
        for name, p in inspect.signature(tether.run).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert set(RunOptions.__annotations__) == keywords


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (SelfStopping, r"got the class SelfStopping; did you mean tether.run\(SelfStopping\(\)\)"),
        (42, r"takes a service, got 42 \(int\)"),
    ],
)
def test_run_refuses_what_is_not_a_service(target: object, message: str) -> None:
    """A class or a value instead of a service instance: a TypeError with the fix."""
    with pytest.raises(TypeError, match=message):
        tether.run(target)  # type: ignore[arg-type]


def test_run_refuses_a_coroutine_and_closes_it() -> None:
    """A coroutine is closed (no 'never awaited' warning) and pointed at asyncio.run."""

    async def main() -> None: ...

    coro = main()
    with pytest.raises(TypeError, match=r"got a coroutine; to run a coroutine use asyncio.run"):
        tether.run(coro)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shutdown_timeout": 0}, "shutdown_timeout must be a positive number"),
        ({"shutdown_timeout": float("inf")}, "shutdown_timeout must be finite"),
        ({"loop": "trio"}, "loop must be one of auto, asyncio, uvloop, a module:attr naming"),
        ({"loop": "tests.process.apps:number"}, "names 42 .int., which is not callable"),
        ({"log_format": "xml"}, "log_format must be one of auto, plain, console, json"),
        ({"log_level": "loud"}, "log level must be one of debug, info"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: RunOptions, message: str) -> None:
    """Each bad option is named before a single hook runs."""
    service = SelfStopping()
    with pytest.raises(ValueError, match=message):
        tether.run(service, **options)
    assert service.seen == []


async def test_run_refuses_to_nest_inside_a_running_loop() -> None:
    """From async code, run() explains what to use instead."""
    with pytest.raises(RuntimeError, match=r"use `await service.run\(\)` or `async with service:`"):
        tether.run(SelfStopping())


def test_auto_loop_is_uvloop_when_installed_and_asyncio_is_the_default_loop() -> None:
    """`auto` picks uvloop's factory if importable; `asyncio` means asyncio's default."""
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None


def test_a_loop_factory_is_checked_to_return_a_loop() -> None:
    """A callable or `module:attr` is a factory; what it returns must be an event loop."""
    factory = loop_factory(asyncio.new_event_loop)
    assert factory is not None
    loop = factory()
    loop.close()
    named = loop_factory("tests.process.loops:not_a_loop")
    assert named is not None
    with pytest.raises(TypeError, match=r"loops:not_a_loop returned 'a string, not a loop'"):
        named()


def test_a_loop_instance_is_not_a_factory() -> None:
    """Handing over a loop says to pass what makes one instead: tether closes its loop."""
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="pass its class or a function that creates one"):
            tether.run(SelfStopping(), loop=loop)  # type: ignore[arg-type]
    finally:
        loop.close()


# rloop 0.5 drops its internal socket pair without closing it, each time a loop stops.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_run_uses_a_factory_of_rloop() -> None:
    """tether.run(..., loop=rloop.new_event_loop): the graph runs on rloop's loop."""
    rloop = pytest.importorskip("rloop")
    service = SelfStopping()
    with pytest.raises(SystemExit) as exited:
        tether.run(service, loop=rloop.new_event_loop, log_format="plain")
    assert exited.value.code == 0
    assert "start" in service.seen


def test_uvloop_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop, `auto` falls back quietly and `uvloop` says what to install."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert loop_factory("auto") is None
    with pytest.raises(ImportError, match=r"pip install 'tether\[uvloop\]'"):
        loop_factory("uvloop")


def test_exit_codes_are_the_documented_ones() -> None:
    """The table: 0 clean, 1 crash, 2 usage, 3 startup, 70 forced."""
    assert {code.name: int(code) for code in tether.ExitCode} == {
        "OK": 0,
        "CRASHED": 1,
        "USAGE": 2,
        "STARTUP_FAILED": 3,
        "FORCED": 70,
    }


def test_launch_takes_the_keywords_of_run() -> None:
    """`Service.launch`'s keywords, declared by the engine without importing the runner,
    are exactly `tether.run`'s options."""
    import inspect

    from tether._core._base import Launcher

    declared = set(inspect.signature(Launcher.__call__).parameters) - {"self"}
    assert declared == set(RunOptions.__annotations__)

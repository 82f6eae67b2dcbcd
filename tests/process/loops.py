"""Event loop factories and an application for the loop tests (``--loop module:attr``).

``own_loop`` is a factory of our own: asyncio's selector loop, marked so the test can
tell it made the loop. ``no_readers`` makes a loop that cannot watch descriptors
(``add_reader`` raises NotImplementedError, as a proactor loop does), so the runner's
signal wakeup must take its other road. ``not_a_loop`` returns something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import signal
import threading
from collections.abc import Callable
from typing import Any

import tether
from tests.process.apps import Root, Step, say


class OwnLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, made by a factory of ours."""


def own_loop() -> asyncio.AbstractEventLoop:
    return OwnLoop(selectors.DefaultSelector())


class NoReaders(asyncio.SelectorEventLoop):
    """A loop that cannot watch file descriptors for the user (its own I/O still works)."""

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:  # type: ignore[override]
        raise NotImplementedError

    def remove_reader(self, fd: Any) -> bool:
        raise NotImplementedError


def no_readers() -> asyncio.AbstractEventLoop:
    return NoReaders()


def not_a_loop() -> object:
    return "a string, not a loop"


def failing_factory() -> asyncio.AbstractEventLoop:
    raise RuntimeError("no display to attach the loop to")


class LoopKind(Step):
    """Says which loop and thread it runs in."""

    async def start(self) -> None:
        await super().start()
        kind = type(asyncio.get_running_loop())
        where = "main" if threading.current_thread() is threading.main_thread() else "thread"
        say(f"loop:{self.name}:{where}:{kind.__module__}.{kind.__qualname__}")


def threaded() -> Root:
    """A root on the runner's loop and a ServiceThread whose graph runs in its own loop."""
    return Root("root", LoopKind("main"), tether.ServiceThread(LoopKind("inner"), heartbeat=0.2))


class LoopSignal(Step):
    """Handles SIGUSR2 through the loop's own `add_signal_handler`."""

    async def start(self) -> None:
        await super().start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, say, "usr2 handled")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # rloop 0.5's remove_signal_handler raises
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
        await super().stop()


def loop_signal() -> Root:
    return Root("root", LoopSignal("usr2"))

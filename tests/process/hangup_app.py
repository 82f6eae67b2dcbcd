"""Programs for the SIGHUP tests: graphs that cannot reload, and one that can."""

from __future__ import annotations

import asyncio
import sys

import tether


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Step(tether.Service):
    """Starts and stops, saying so; nothing to reload."""

    def __init__(self, name: str, *deps: tether.Service) -> None:
        self.name = name
        self.deps = list(deps)

    @property
    def dependencies(self) -> list[tether.Service]:
        return self.deps

    async def start(self) -> None:
        say(f"start:{self.name}")

    async def stop(self) -> None:
        say(f"stop:{self.name}")


class Reloads(Step):
    """A dependency with a reload hook: the graph can reload."""

    def on_reload(self) -> None:
        say(f"reload:{self.name}")


class StuckStop(Step):
    """A stop hook that waits until the process is forced to end."""

    async def stop(self) -> None:
        say(f"stop-begin:{self.name}")
        await asyncio.Event().wait()


class SlowStart(Step):
    """A start hook that waits until cancelled."""

    async def start(self) -> None:
        say(f"start-begin:{self.name}")
        await asyncio.Event().wait()


def plain() -> Step:
    """Nothing in this graph has a reload hook."""
    return Step("api", Step("db"))


def reloadable() -> Step:
    """The root has no reload hook, a dependency has one."""
    return Step("api", Reloads("config"))


def stuck() -> Step:
    """Nothing reloads, and the root's stop hook never returns."""
    return StuckStop("api", Step("db"))


def slow() -> Step:
    """Nothing reloads; the start never finishes by itself."""
    return Step("api", SlowStart("db"))

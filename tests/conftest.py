"""Shared helpers: services that log what happens to them, bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import pytest

import tether

pytest_plugins = ["pytester"]  # the tests of tether.testing run pytest on generated modules

T = TypeVar("T")

WAIT = 5.0  # seconds: every wait in the tests is bounded by this


async def bounded(awaitable: Awaitable[T], seconds: float = WAIT) -> T:
    """Await with a bound, so a hang fails fast instead of eating CI time."""
    return await asyncio.wait_for(awaitable, seconds)


class Log(list[str]):
    """An ordered record of lifecycle steps, e.g. ``['start:b', 'start:a']``."""

    def of(self, kind: str) -> list[str]:
        return [entry.split(":", 1)[1] for entry in self if entry.startswith(kind + ":")]


class Node(tether.Service):
    """A service that logs its start and stop, with the dependencies it is given."""

    def __init__(self, name: str, log: Log, deps: Iterable[Any] = ()) -> None:
        self.label = name
        self.log = log
        self.deps = list(deps)

    @property
    def dependencies(self) -> list[Any]:
        return self.deps

    async def start(self) -> None:
        self.log.append(f"start:{self.label}")

    async def stop(self) -> None:
        self.log.append(f"stop:{self.label}")

    def __repr__(self) -> str:
        return f"Node({self.label})"


class SlowNode(Node):
    """Logs begin and end of start and stop, suspending in between."""

    async def start(self) -> None:
        self.log.append(f"start-begin:{self.label}")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.log.append(f"start:{self.label}")

    async def stop(self) -> None:
        self.log.append(f"stop-begin:{self.label}")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.log.append(f"stop:{self.label}")


@pytest.fixture
def log() -> Log:
    return Log()

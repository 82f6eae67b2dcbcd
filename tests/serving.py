"""A drain under load, the same for every server integration.

A real HTTP client (aiohttp's, with a keep-alive pool) sends a few hundred requests
from many concurrent workers; a "load balancer" polls ``/readyz`` and, as Kubernetes
does, stops routing new requests once it answers 503. Midway, slow requests are
parked inside their handler and the graph is asked to stop: they are still in flight
when the server's stop hook begins, and are released only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import aiohttp

import tether
from tests.conftest import bounded


class Gate:
    """Holds slow requests inside their handler until released."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.entered = 0
        self.finished = 0
        self.all_in = asyncio.Event()
        self.release = asyncio.Event()

    async def hold(self) -> str:
        self.entered += 1
        if self.entered == self.count:
            self.all_in.set()
        await self.release.wait()
        self.finished += 1
        return "slow done"


class ThreadGate:
    """Holds slow requests of a threaded server (WSGI) inside their handler, in threads."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.count = count
        self.loop = loop
        self.entered = 0
        self.finished = 0
        self.lock = threading.Lock()
        self.all_in = asyncio.Event()
        self.release = threading.Event()

    def hold(self) -> str:
        """In a handler's thread: wait (bounded) until released."""
        with self.lock:
            self.entered += 1
            if self.entered == self.count:
                self.loop.call_soon_threadsafe(self.all_in.set)
        released = self.release.wait(timeout=20)
        with self.lock:
            self.finished += 1
        return "slow done" if released else "never released"


class Gating(Protocol):
    """What the drain needs of a gate: counts, an awaitable all-in, a release."""

    count: int
    entered: int
    finished: int

    @property
    def all_in(self) -> asyncio.Event: ...

    @property
    def release(self) -> asyncio.Event | threading.Event: ...


class Served(Protocol):
    @property
    def url(self) -> str | None: ...


class Outcome:
    """What the clients saw."""

    def __init__(self) -> None:
        self.fast: list[tuple[int, int, str, str]] = []
        """(index, status, body, Connection header) of each quick request."""
        self.slow: list[tuple[int, str, str]] = []
        self.failures: list[str] = []
        self.in_flight_at_stop: int | None = None
        self.removed_at_response: int | None = None
        """How many quick responses had arrived when /readyz first answered 503."""

    @property
    def closing(self) -> int:
        return sum(1 for *_, connection in self.fast if connection == "close")


async def drain_under_load(
    root: tether.Service,
    server: tether.ServiceBase,
    gate: Gating,
    *,
    total: int = 400,
    stop_after: int = 200,
    workers: int = 20,
) -> Outcome:
    """Run ``root``, load ``server`` (which mounts /readyz), stop midway; what was seen."""
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    removed = asyncio.Event()
    enough = asyncio.Event()

    def on_event(event: tether.LifecycleEvent) -> None:
        if (
            event.kind is tether.EventKind.STATE
            and event.service is server
            and event.state is tether.ServiceState.STOPPING
        ):
            outcome.in_flight_at_stop = gate.entered - gate.finished
            loop.call_later(0.05, gate.release.set)

    with tether.subscribe(on_event):
        running = asyncio.create_task(root.run())
    try:
        url = await bounded(_started(server))
        connector = aiohttp.TCPConnector(limit=workers + gate.count + 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            indices = iter(range(total))
            balancer = asyncio.create_task(_balance(session, url, removed, outcome))
            fast = [
                asyncio.create_task(
                    _work(
                        session,
                        url,
                        indices=indices,
                        removed=removed,
                        enough=enough,
                        outcome=outcome,
                        stop_after=stop_after,
                    )
                )
                for _ in range(workers)
            ]
            await bounded(enough.wait(), 20)
            slow = [asyncio.create_task(_slow(session, url, outcome)) for _ in range(gate.count)]
            await bounded(gate.all_in.wait())
            root.request_stop()
            await bounded(asyncio.gather(*fast, *slow, balancer), 20)
        await bounded(running, 20)
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
    return outcome


async def _started(server: Any) -> str:
    while server.url is None or not server.running:
        await asyncio.sleep(0.005)
    url: str = server.url
    return url


async def _balance(
    session: aiohttp.ClientSession, url: str, removed: asyncio.Event, outcome: Outcome
) -> None:
    """The load balancer: stop routing once /readyz answers 503."""
    while True:
        try:
            async with session.get(f"{url}/readyz") as response:
                await response.read()
                status = response.status
        except Exception as exc:
            outcome.failures.append(f"/readyz: {type(exc).__name__}: {exc}")
            status = 503
        if status == 503:
            outcome.removed_at_response = len(outcome.fast)
            removed.set()
            return
        await asyncio.sleep(0.01)


async def _work(
    session: aiohttp.ClientSession,
    url: str,
    *,
    indices: Iterator[int],
    removed: asyncio.Event,
    enough: asyncio.Event,
    outcome: Outcome,
    stop_after: int,
) -> None:
    for index in indices:
        if removed.is_set():
            return
        try:
            async with session.get(f"{url}/work/{index}") as response:
                body = await response.text()
                connection = response.headers.get("Connection", "").lower()
                outcome.fast.append((index, response.status, body, connection))
        except Exception as exc:
            outcome.failures.append(f"/work/{index}: {type(exc).__name__}: {exc}")
        if len(outcome.fast) >= stop_after:
            enough.set()


async def _slow(session: aiohttp.ClientSession, url: str, outcome: Outcome) -> None:
    try:
        async with session.get(f"{url}/slow") as response:
            body = await response.text()
            outcome.slow.append((response.status, body, response.headers.get("Connection", "")))
    except Exception as exc:
        outcome.failures.append(f"/slow: {type(exc).__name__}: {exc}")


def indices_in_order(outcome: Outcome) -> bool:
    """Every quick response carried its own index back."""
    return all(body == str(index) for index, _, body, _ in outcome.fast)

"""A light load through SIGTERM, against a real process serving on loopback.

A few keep-alive clients send requests one after another; once enough have been
answered the process gets SIGTERM; a "load balancer" polls ``/readyz`` and, as
Kubernetes does, takes the instance out once it answers 503, after which the clients
send nothing new. Every request sent must be answered correctly.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from tests.conftest import bounded
from tests.process.harness import Tether


@dataclass
class Seen:
    """What the clients saw, and how the process ended."""

    answered: int = 0
    failures: list[str] = field(default_factory=list)
    code: int | None = None


async def served_url(program: Tether, needle: str) -> str:
    """The ``http://host:port`` of the first stderr line that holds ``needle``."""
    line = await program.line(needle, stream="stderr", seconds=20)
    found = re.search(r"http://[\d.]+:\d+", line)
    assert found is not None, line
    return found.group(0)


async def through_sigterm(
    program: Tether,
    url: str,
    readyz: str,
    request: Callable[[int], tuple[str, str]],
    *,
    clients: int = 4,
    before: int = 40,
) -> Seen:
    """Load ``url`` (``request(i)`` gives a path and the body expected), SIGTERM midway."""
    seen = Seen()
    removed = asyncio.Event()
    enough = asyncio.Event()
    counter = iter(range(1_000_000))

    async def client(session: aiohttp.ClientSession) -> None:
        while not removed.is_set():
            path, expected = request(next(counter))
            try:
                async with session.get(f"{url}{path}") as response:
                    body = await response.text()
                if response.status == 200 and body == expected:
                    seen.answered += 1
                else:
                    seen.failures.append(f"{path}: {response.status} {body[:60]!r}")
            except Exception as exc:
                seen.failures.append(f"{path}: {type(exc).__name__}: {exc}")
            if seen.answered >= before:
                enough.set()

    async def balancer(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with session.get(readyz) as response:
                    await response.read()
                    if response.status == 503:
                        break
            except aiohttp.ClientError:
                break
            await asyncio.sleep(0.01)
        removed.set()

    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(client(session)) for _ in range(clients)]
        await bounded(enough.wait(), 20)
        program.send(signal.SIGTERM)
        await bounded(balancer(session), 20)
        await bounded(asyncio.gather(*load), 20)
    seen.code = await program.exit_code(seconds=20)
    return seen

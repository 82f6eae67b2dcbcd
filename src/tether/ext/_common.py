"""What the server integrations share: resolving `uses`, checking injected services."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import tether
from tether.health import Health

__all__ = [
    "FIRST_REQUEST_GRACE",
    "check_health",
    "resolve_uses",
    "running",
    "started_with",
    "until_first_requests",
]

FIRST_REQUEST_GRACE = 1.0
"""Seconds a connection accepted as the server stops gets to deliver its first request."""
_POLL = 0.005

T = TypeVar("T")


def resolve_uses(
    owner: str, container: tether.Container | None, uses: Iterable[Any]
) -> tuple[tether.ServiceBase, ...]:
    """The services to start with a server, for the types its handlers use."""
    wanted = list(uses)
    if not wanted:
        return ()
    if container is None:
        raise TypeError(
            f"{owner}: uses= names types resolved through a container; pass "
            f"container= too, e.g. Server(app, container=container, uses=[Database])."
        )
    for item in wanted:
        if not isinstance(item, type) and not hasattr(item, "__origin__"):
            raise TypeError(
                f"{owner}: uses= takes types (classes) to resolve through the container, "
                f"got {item!r} ({type(item).__name__}). Register an instance with "
                f"container.add(...) and list its type."
            )
    resolved = []
    for item in wanted:
        try:
            resolved.append(container.root(item))
        except tether.InjectionError as exc:
            exc.add_note(
                f"tether: {owner} resolves uses= when it is created, with sync providers. "
                f"List the services its handlers need; a component an async factory "
                f"makes needs no listing: get it in the handler with `await aget(request, T)`."
            )
            raise
    return tuple(resolved)


def check_health(owner: str, health: object) -> None:
    """`health=` of a server: a `Health` or None (a clear error otherwise)."""
    if health is not None and not isinstance(health, Health):
        raise TypeError(f"{owner}: health= takes a tether.health.Health, got {health!r}.")


def started_with(
    uses: Iterable[tether.ServiceBase], health: Health | None
) -> list[list[tether.ServiceBase]]:
    """A server's `dependencies`: what `uses` resolved to and its mounted health, together."""
    group = list(uses)
    if health is not None:
        group.append(health)
    return [group] if group else []


def running(value: T, key: Any, where: str) -> T:
    """`value`, unless it is a service that is not running (a clear error then)."""
    if isinstance(value, tether.ServiceBase) and not value.running:
        snap = tether.status(value)
        raise tether.ServiceStateError(
            f"{snap.name} is {snap.state.value}, so {where} cannot use it: handlers get "
            f"the services their server was started with. List it in "
            f"Server(..., uses=[{getattr(key, '__name__', key)}]) or inject it into the server."
        )
    return value


async def until_first_requests(
    connections: Callable[[], Iterable[Any]], fresh: Callable[[Any], bool], seconds: float
) -> None:
    """Wait until no connection is `fresh` (accepted, no request read yet), or `seconds`.

    A connection accepted just before the listening socket closed may not have
    delivered its request yet (its client runs in another process, maybe not scheduled
    yet). The servers close idle connections when they shut down, and such a client
    would see its connection closed without an answer: it gets this long to send.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    # Polled: the connections' state is the server library's, with no event to wait on.
    while any(fresh(conn) for conn in connections()) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(_POLL)

"""Listening sockets for the HTTP services: checking what was given, binding, naming.

A server takes either `host`/`port` or `sock`, a socket someone else bound (a
pre-fork master, systemd socket activation, a test). A given socket stays its owner's:
the server listens on a duplicate and closes only that, so the service can be started
again and the owner decides when the address goes away.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["DEFAULT_HOST", "bind", "check_address", "check_seconds", "completed", "url_of"]

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"


def check_address(owner: str, host: object, port: object, sock: object) -> None:
    """Raise a clear error unless `host`/`port` or `sock` (not both) are usable."""
    if sock is not None:
        if host is not None or port is not None:
            raise TypeError(
                f"{owner} takes either sock= (a socket bound by someone else) or "
                f"host=/port=, not both; got sock={sock!r} with host={host!r}, port={port!r}."
            )
        if not isinstance(sock, socket.socket):
            raise TypeError(
                f"{owner}: sock= must be a bound socket.socket, got {sock!r} "
                f"({type(sock).__name__}). For a file descriptor, wrap it first: "
                f"socket.socket(fileno=fd)."
            )
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"{owner}: sock= must be a stream socket (TCP or Unix), got {sock!r}.")
        return
    if host is not None and not isinstance(host, str):
        raise TypeError(f"{owner}: host= must be a string such as '127.0.0.1', got {host!r}.")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
    ):
        raise ValueError(
            f"{owner}: port= must be an integer from 0 to 65535 (0 picks a free port), "
            f"got {port!r}."
        )


def check_seconds(owner: str, name: str, value: object, *, positive: bool = False) -> float:
    """`value` as finite seconds, >= 0 (> 0 if `positive`); else a ValueError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value > 0 if positive else value >= 0)
        or math.isinf(value)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{owner}: {name}= must be a finite number of seconds {bound}, got {value!r}."
        )
    return float(value)


def bind(host: str, port: int, backlog: int = 128) -> list[socket.socket]:
    """Listening TCP sockets for every address of `host` (as asyncio would bind them).

    With `port=0` the first address picks a free port and the others reuse it. On
    failure the sockets bound so far are closed and the OSError says what was bound.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, found in infos:
            if (family, found) in seen:
                continue
            seen.add((family, found))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            address: tuple[Any, ...] = found
            if port == 0 and len(sockets) > 1:
                address = (found[0], sockets[0].getsockname()[1], *found[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)  # noqa: FBT003 - the socket API
    except OSError as exc:
        for sock in sockets:
            sock.close()
        exc.add_note(f"tether: while binding {host}:{port}")
        raise
    return sockets


def url_of(sock: socket.socket) -> str:
    """`http://127.0.0.1:8080`, `http://[::1]:8080` or `unix:/run/app.sock`."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address.decode() if isinstance(address, bytes) else address}"
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        return f"http://[{host}]:{port}"
    return f"http://{host}:{port}"


async def completed(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` to its end even if the caller is cancelled meanwhile, then re-raise.

    Starting a server is a few steps, some of them awaits (`create_server` skips a
    loop iteration after it registered its sockets). Cancelled in between, the server
    object would be lost with its sockets still registered in the loop. Finishing the
    step first leaves a state the caller's cleanup can undo.
    """
    task = asyncio.ensure_future(coro)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                cancelled = True
                continue
            if task.cancelled():
                raise
            result = task.result()
        break
    if cancelled:
        raise asyncio.CancelledError
    return result

"""A small HTTP service for the pre-fork tests: plain asyncio, served on tether.listeners().

``GET /`` answers with the worker's pid; ``/slow`` takes 200 ms first (a request
in flight during a stop); ``/block`` blocks the worker's event loop (its heartbeat
stops); ``/env`` answers 500 if systemd's ``LISTEN_*`` variables are still set or fd 3
is inheritable; ``/hang`` waits 30 s (a request that outlives the graceful timeout);
``/busy`` blocks the worker in synchronous work (see :func:`busy`).
While the file named by ``PREFORK_CRASH`` exists, the service fails to start; while the
file named by ``PREFORK_SLOW_START`` exists, its start waits (a worker still booting).
It stops as the documentation says a server on ``tether.listeners()`` should:
``await tether.stop_serving(server)``.
If the file named by ``PREFORK_BROKEN`` exists when the module is imported, the import
fails: new code that cannot boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import tether

_broken = os.environ.get("PREFORK_BROKEN")
if _broken and Path(_broken).exists():
    raise RuntimeError("this version of the application is broken (PREFORK_BROKEN exists)")


def busy() -> None:
    """Block this process, as synchronous work does, until the test releases it.

    Writes ``busy-<pid>`` into the directory ``PREFORK_BUSY_DIR`` names, then waits
    (bounded) until ``release`` appears there.
    """
    directory = Path(os.environ["PREFORK_BUSY_DIR"])
    (directory / f"busy-{os.getpid()}").touch()
    end = time.monotonic() + 20
    while not (directory / "release").exists() and time.monotonic() < end:
        time.sleep(0.01)


async def slow_start() -> None:
    """Wait while the file ``PREFORK_SLOW_START`` names exists (bounded)."""
    flag = os.environ.get("PREFORK_SLOW_START")
    end = time.monotonic() + 20
    while flag and os.path.exists(flag) and time.monotonic() < end:  # noqa: PTH110, ASYNC240
        await asyncio.sleep(0.01)


def _activation_left() -> bool:
    return any(key in os.environ for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"))


class PidServer(tether.Service):
    """Answers every request with this process's pid; drains in-flight requests on stop."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        crash = os.environ.get("PREFORK_CRASH")
        if crash and os.path.exists(crash):  # noqa: PTH110, ASYNC240 - one stat, in a test app
            raise RuntimeError("PREFORK_CRASH exists: this worker fails to start")
        await slow_start()
        for sock in tether.listeners():
            server = await asyncio.start_server(self._connected, sock=sock.dup())
            self.servers.append(server)

    def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Registered as the connection is made, so that stop() waits for it.
        task = asyncio.ensure_future(self._handle(reader, writer))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            if path == "/slow":
                await asyncio.sleep(0.2)
            elif path == "/hang":
                await asyncio.sleep(30)
            elif path == "/busy":
                busy()
            elif path == "/block":
                time.sleep(60)  # noqa: ASYNC251 - blocking the loop is the point
            body = str(os.getpid()).encode()
            status = b"200 OK"
            if path == "/env" and (_activation_left() or os.get_inheritable(3)):
                status = b"500 Internal Server Error"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nConnection: close\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            await tether.stop_serving(server)
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5)


app = PidServer

"""Pre-fork with your own asyncio server: SIGTERM while the only worker is busy.

Run as ``python prefork_asyncio.py``: it starts a master with one worker (``python
prefork_asyncio.py serve PORT``), keeps the worker busy in synchronous work, queues
three more requests behind it, and sends SIGTERM to the master while they wait. Every
request is answered: the worker keeps accepting until the queue is empty.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import tether


class Hello(tether.Service):
    """Answers ``hello``; ``/slow`` answers after half a second of blocking work."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for sock in tether.listeners():  # the sockets the master bound
            self.servers.append(await asyncio.start_server(self.connected, sock=sock.dup()))

    def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Each connection's task is known from the moment it is made: stop() waits for it.
        task = asyncio.ensure_future(self.handle(reader, writer))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        await writer.drain()
        if request.startswith(b"GET /slow"):
            time.sleep(0.5)  # noqa: ASYNC251 - synchronous work: the worker is busy
        writer.write(b"hello\n")
        writer.close()

    async def stop(self) -> None:
        for server in self.servers:
            # Not server.close(): stop_serving takes the connections still queued in
            # the kernel first, and loses none accepted in the same loop iteration.
            await tether.stop_serving(server)
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=10)


def serve(port: int) -> None:
    """The master: binds the port, forks one worker, stops it gracefully on SIGTERM."""
    tether.prefork(Hello, workers=1, bind=[f"tcp://127.0.0.1:{port}"], graceful_timeout=10)


async def send(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def answer(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> str:
    """``<status line>, <body>`` of the response (after its status line, if read already)."""
    reader, writer = connection
    data = (await asyncio.wait_for(reader.read(), 15)).decode()
    writer.close()
    head, _, body = data.partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0] if head.startswith("HTTP/") else "HTTP/1.1 200 OK"
    return f"{status}, {body.strip()}"


async def client(port: int, master: subprocess.Popen[bytes]) -> None:
    for _ in range(500):  # until the worker answers (at most 10 s)
        try:
            await answer(await send(port, "/"))
            break
        except OSError:
            await asyncio.sleep(0.02)
    slow = await send(port, "/slow")
    await slow[0].readline()  # the status line: the worker is now busy
    queued = [await send(port, "/") for _ in range(3)]  # wait in the kernel's queue
    master.send_signal(signal.SIGTERM)
    print("SIGTERM sent while the worker is busy and 3 connections wait")
    print("slow request:", await answer(slow))
    for number, connection in enumerate(queued, 1):
        print(f"queued request {number}:", await answer(connection))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    master = subprocess.Popen([sys.executable, __file__, "serve", str(port)])  # noqa: S603
    try:
        asyncio.run(client(port, master))
    finally:
        code = master.wait(timeout=30)
    print("master exit code:", code)
    return code


if __name__ == "__main__":
    sys.exit(main())

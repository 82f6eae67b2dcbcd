"""Real processes and a fake systemd for the process tests.

``FakeSystemd`` is a real AF_UNIX datagram socket (bound to a path, or to an abstract
``@name``) that records every notify message in arrival order. ``Tether`` runs the
``tether`` command in a subprocess and collects its stdout and stderr lines as they
come, so a test can wait for a line, send a real signal and check the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Self

from tests.conftest import bounded

ROOT = Path(__file__).parents[2]


class Message:
    """One notify datagram: its fields in order and when it arrived."""

    def __init__(self, data: bytes) -> None:
        self.arrived = time.monotonic()
        self.text = data.decode()
        self.fields = [line.split("=", 1) for line in self.text.split("\n") if line]
        self.keys = [field[0] for field in self.fields]

    def get(self, key: str) -> str | None:
        for field in self.fields:
            if field[0] == key:
                return field[1] if len(field) > 1 else ""
        return None

    def __repr__(self) -> str:
        return f"Message({self.text!r})"


class FakeSystemd:
    """Receives notify datagrams like systemd does; ``address`` goes in NOTIFY_SOCKET."""

    def __init__(self, directory: Path, *, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"tether-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.setblocking(False)  # noqa: FBT003 - the socket API
        self.messages: list[Message] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.sock.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            self.messages.append(Message(data))
            self._arrived.set()

    def texts(self) -> list[str]:
        """Every field received, in order, e.g. ``["STATUS=...", "READY=1"]``."""
        return [line for m in self.messages for line in m.text.split("\n") if line]

    def index(self, field: str) -> int:
        """Position of the first message that has ``field`` (``KEY=value`` or ``KEY``)."""
        for i, message in enumerate(self.messages):
            if field in message.text.split("\n") or field in message.keys:
                return i
        raise AssertionError(f"{field!r} never arrived; got {self.texts()}")

    async def wait_for(self, field: str, count: int = 1, seconds: float = 10) -> Message:
        """Wait until ``count`` messages carry ``field``; return the last of them."""

        async def arrived() -> Message:
            while True:
                found = [m for m in self.messages if field in m.text.split("\n") or field in m.keys]
                if len(found) >= count:
                    return found[count - 1]
                self._arrived.clear()
                await self._arrived.wait()

        try:
            return await bounded(arrived(), seconds)
        except TimeoutError:
            raise AssertionError(f"{field!r} x{count} never arrived; got {self.texts()}") from None


def _default_sigint() -> None:
    """In the child: SIGINT as an interactive shell gives it, even if we ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tether:
    """``python -m tether ARGS`` as a real subprocess, its output collected by line.

    ``program`` replaces ``-m tether`` (e.g. a script's path), for programs that call
    ``tether.run`` themselves.
    """

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, program: tuple[str, ...] = ()
    ) -> None:
        self.args = args
        self.program = program or ("-m", "tether")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            if env is None or key not in env:
                self.env.pop(key, None)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self.exited_at: float | None = None
        self.pass_fds: tuple[int, ...] = ()
        """Descriptors the child inherits (as numbered here)."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def start(self, stdin: int | None = asyncio.subprocess.DEVNULL) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.program,
            *self.args,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=self.env,
            preexec_fn=_default_sigint,
            pass_fds=self.pass_fds,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        loop = asyncio.get_running_loop()
        self._readers = [
            loop.create_task(self._collect(self.proc.stdout, self.stdout)),
            loop.create_task(self._collect(self.proc.stderr, self.stderr)),
        ]

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.wait(self._readers)

    async def _collect(self, stream: asyncio.StreamReader, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(["--- stdout", *self.stdout, "--- stderr", *self.stderr])

    async def until(self, check: Callable[[], bool], what: str, seconds: float = 10) -> None:
        async def satisfied() -> None:
            while not check():
                self._changed.clear()
                await self._changed.wait()

        try:
            await bounded(satisfied(), seconds)
        except TimeoutError:
            raise AssertionError(f"never saw {what}\n{self.output}") from None

    async def line(self, needle: str, *, stream: str = "stdout", seconds: float = 10) -> str:
        """Wait for a line containing ``needle`` on ``stream``; return it."""
        lines = self.stdout if stream == "stdout" else self.stderr

        def found() -> bool:
            return any(needle in line for line in lines)

        await self.until(found, f"{needle!r} on {stream}", seconds)
        return next(line for line in lines if needle in line)

    def send(self, sig: signal.Signals) -> float:
        """Send ``sig``; return when (monotonic) it was sent."""
        assert self.proc is not None
        sent = time.monotonic()
        self.proc.send_signal(sig)
        return sent

    async def exit_code(self, seconds: float = 10) -> int:
        assert self.proc is not None
        try:
            code = await bounded(self.proc.wait(), seconds)
        except TimeoutError:
            raise AssertionError(f"still running after {seconds}s\n{self.output}") from None
        self.exited_at = time.monotonic()
        await bounded(asyncio.wait(self._readers))
        return code

"""The tutorial's systemd unit, run as systemd would run it, with a fake systemd.

The command is exactly the unit's ``ExecStart=`` (the venv's ``tether`` in place of
``/opt/notes/venv/bin/tether``), in its ``WorkingDirectory=`` (``docs/examples``) with its
``Environment=`` (``NOTES_DB`` in a temporary directory, as ``StateDirectory=`` would
give). Like systemd, a launcher puts the socket unit's listening socket on fd 3, sets
``LISTEN_FDS``, ``LISTEN_FDNAMES`` and ``LISTEN_PID``/``WATCHDOG_PID`` to its own pid,
and execs the command (so the pids match); ``NOTIFY_SOCKET`` names a recorder. The
socket stays open here between two runs, as systemd keeps it across a restart.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import pytest

from tests.conftest import bounded
from tests.httpclient import fetch
from tests.process.harness import ROOT, FakeSystemd, Tether
from tests.test_docs_examples import unit

EXAMPLES = ROOT / "docs" / "examples"

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd is Linux only"),
]

# What systemd does between fork and exec: the socket on fd 3, this pid in LISTEN_PID.
LAUNCHER = """\
import os, sys
fd, directory, *command = sys.argv[1:]
os.dup2(int(fd), 3)
os.close(int(fd))
os.chdir(directory)
os.environ.update(LISTEN_PID=str(os.getpid()), WATCHDOG_PID=str(os.getpid()))
os.execv(command[0], command)
"""


def exec_start(sock: socket.socket, notify: str, db: Path, *extra: str) -> Tether:
    """The unit's ExecStart (and ``extra`` arguments) under the launcher, with its environment."""
    service = unit(EXAMPLES / "tether-notes.service")["Service"]
    socket_unit = unit(EXAMPLES / "tether-notes.socket")
    command = [*shlex.split(service["ExecStart"]), *extra]
    assert command[0] == "/opt/notes/venv/bin/tether", command
    command[0] = str(Path(sys.executable).with_name("tether"))
    assert Path(command[0]).exists(), command[0]
    directory = service["WorkingDirectory"]
    assert directory == "/opt/notes/app", directory  # where the tutorial's files go
    env = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))
    env["NOTES_DB"] = str(db)  # /var/lib/tether-notes, StateDirectory=, is systemd's
    env.update(
        LISTEN_FDS="1",
        LISTEN_FDNAMES="tether-notes.socket",  # systemd's name: the socket unit's
        NOTIFY_SOCKET=notify,
        # WatchdogSec=10 would ping every 5 s; 2 s pings every second, as systemd
        # would with WatchdogSec=2.
        WATCHDOG_USEC="2000000",
    )
    assert int(service["WatchdogSec"]) > 0
    assert socket_unit["Socket"]["ListenStream"] == "8080"  # the test's port stands in
    proc = Tether(str(sock.fileno()), str(EXAMPLES), *command, env=env, program=("-c", LAUNCHER))
    proc.pass_fds = (sock.fileno(),)
    return proc


class Load:
    """Clients calling ``GET /notes`` in a loop; every answer and failure, timed."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.clients = clients
        self.answered: list[float] = []
        self.failures: list[str] = []
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self.tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.running = False
        await bounded(asyncio.gather(*self.tasks), 15)

    async def _client(self) -> None:
        for _ in range(100_000):
            if not self.running:
                return
            try:
                response = await fetch(f"{self.url}/notes")
            except (OSError, TimeoutError, ValueError, IndexError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status == 200 and response.json() == {"notes": 1}:
                self.answered.append(time.monotonic())
            else:
                self.failures.append(repr(response))


async def test_the_units_exec_start_serves_reloads_stops_and_restarts_on_the_socket(
    tmp_path: Path,
) -> None:
    """READY=1, a note stored, SIGHUP under load drops nothing, SIGTERM exits 0, restart serves."""
    pytest.importorskip("aiohttp")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    db = tmp_path / "notes.db"
    try:
        (tmp_path / "first").mkdir()
        async with FakeSystemd(tmp_path / "first") as systemd:
            async with exec_start(sock, systemd.address, db) as proc:
                await systemd.wait_for("READY=1", seconds=30)
                assert (await fetch(f"{url}/notes", method="POST", body=b"milk")).status == 201
                assert (await fetch(f"{url}/notes")).json() == {"notes": 1}
                await systemd.wait_for("WATCHDOG=1", seconds=5)

                async with Load(url) as load:
                    await bounded(_until(lambda: len(load.answered) >= 20), 10)
                    proc.send(signal.SIGHUP)
                    reloading = await systemd.wait_for("RELOADING=1")
                    assert reloading.get("MONOTONIC_USEC") is not None, reloading
                    reloaded = await systemd.wait_for("READY=1", count=2, seconds=40)
                    after = len(load.answered)  # the new workers serve too
                    await bounded(_until(lambda: len(load.answered) >= after + 20), 10)
                assert load.failures == [], load.failures[:5]
                during = [t for t in load.answered if reloading.arrived <= t <= reloaded.arrived]
                assert during, "no request was served while the workers were replaced"
                assert "reload complete: 4 worker(s)" in proc.output

                proc.send(signal.SIGTERM)
                assert await proc.exit_code(seconds=30) == 0, proc.output
            assert "STOPPING=1" in systemd.texts()

        # systemd kept the socket open: the restarted service serves on it.
        (tmp_path / "second").mkdir()
        async with FakeSystemd(tmp_path / "second") as systemd:
            async with exec_start(sock, systemd.address, db) as proc:
                await systemd.wait_for("READY=1", seconds=30)
                assert (await fetch(f"{url}/notes")).json() == {"notes": 1}  # stored
                proc.send(signal.SIGTERM)
                assert await proc.exit_code(seconds=30) == 0, proc.output
    finally:
        sock.close()


async def test_a_preloaded_application_shares_the_socket_systemd_passed(tmp_path: Path) -> None:
    """With --preload the master imports the app, which asks for tether.listeners() at
    import: the master's sockets and the application's are one adoption, so it serves."""
    pytest.importorskip("aiohttp")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with FakeSystemd(tmp_path) as systemd:
            async with exec_start(sock, systemd.address, tmp_path / "n.db", "--preload") as proc:
                await systemd.wait_for("READY=1", seconds=30)
                assert "(preloaded)" in proc.output
                assert (await fetch(f"{url}/notes")).json() == {"notes": 0}
                proc.send(signal.SIGTERM)
                assert await proc.exit_code(seconds=30) == 0, proc.output
    finally:
        sock.close()


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.01)

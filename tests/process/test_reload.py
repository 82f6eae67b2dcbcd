"""`tether run --reload`: real file changes restart the application in a real child process.

The application lives in a temporary directory (on PYTHONPATH, without bytecode files,
so that a rewrite within the same second is never read from a stale cache); each test
rewrites it and follows what the reloader and its children say.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

pytest.importorskip("watchfiles")

from tests.conftest import bounded
from tests.prefork.test_prefork import RefusedError, request
from tests.process.harness import Tether

PLAIN = ("--log-format", "plain")

APP = '''
import asyncio
import tether

VERSION = {version}


class Api(tether.Service):
    """Says when it starts and stops; serves its version on the sockets handed to it."""

    def __init__(self) -> None:
        self.servers = []

    async def start(self) -> None:
        for sock in tether.listeners():
            self.servers.append(await asyncio.start_server(self.answer, sock=sock.dup()))
        print(f"version {{VERSION}} up", flush=True)

    async def answer(self, reader, writer) -> None:
        await reader.readline()
        body = str(VERSION).encode()
        writer.write(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    def on_reload(self) -> None:
        print(f"version {{VERSION}} reloaded", flush=True)

    async def stop(self) -> None:
        for server in self.servers:
            await tether.stop_serving(server)
        print(f"version {{VERSION}} down", flush=True)


api = Api()
'''


def write_app(directory: Path, version: int | str, *, module: str = "reloadable") -> Path:
    path = directory / f"{module}.py"
    path.write_text(APP.format(version=version))
    return path


def reloading(directory: Path, *extra: str, program: tuple[str, ...] = ()) -> Tether:
    env = {"PYTHONPATH": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
    args = ("run", "--reload", "--reload-dir", str(directory), "reloadable:api", *PLAIN, *extra)
    return Tether(*args, env=env, program=program)


async def test_a_change_stops_the_old_graph_gracefully_then_starts_the_new_code(
    tmp_path: Path,
) -> None:
    """Rewriting the module: the running graph stops as on SIGTERM, a new process runs
    the new code, and the reloader says so in one line. SIGHUP reaches the application's
    reload stage; SIGTERM stops both, exit 0."""
    app = write_app(tmp_path, 1)
    async with reloading(tmp_path) as proc:
        await proc.line("version 1 up")
        app.write_text(APP.format(version=2))
        await proc.line("version 2 up")
        await proc.until(
            lambda: sum("Api running" in line for line in proc.stderr) == 2, "the second run"
        )
        proc.send(signal.SIGHUP)
        await proc.line("version 2 reloaded")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert proc.stdout == [
        "version 1 up",
        "version 1 down",
        "version 2 up",
        "version 2 reloaded",
        "version 2 down",
    ]
    reloads = [line for line in proc.stderr if re.search(r"tether\.reload: reload \d+:", line)]
    assert len(reloads) == 1, proc.output
    assert re.search(
        r"reload 1: reloadable\.py changed; stopping pid \d+ gracefully, then starting again",
        reloads[0],
    )
    pids = [int(m.group(1)) for line in proc.stderr if (m := re.search(r"started pid (\d+)", line))]
    assert len(set(pids)) == 2, proc.output
    assert proc.proc is not None
    assert proc.proc.pid not in pids
    assert "stopped cleanly" in proc.output


async def test_a_change_that_breaks_the_start_waits_for_the_fix(tmp_path: Path) -> None:
    """New code that fails to import: that child exits with code 3, the reloader says it
    waits, and the next change starts the fixed code."""
    app = write_app(tmp_path, 1)
    async with reloading(tmp_path) as proc:
        await proc.line("version 1 up")
        app.write_text("raise RuntimeError('half-written')\n")
        await proc.line("exited with code 3; it starts again at the next change", stream="stderr")
        app.write_text(APP.format(version=3))
        await proc.line("version 3 up")
        proc.send(signal.SIGINT)
        assert await proc.exit_code() == 0, proc.output
    assert "half-written" in proc.output
    assert proc.stdout == ["version 1 up", "version 1 down", "version 3 up", "version 3 down"]


def _activated_reloader(directory: Path, sock: socket.socket) -> Tether:
    """The reloader exec'd by a launcher that puts `sock` on fd 3, as systemd does."""
    launcher = (
        "import os, sys\n"
        "fd = int(sys.argv[1])\n"
        "os.dup2(fd, 3)\n"
        "os.close(fd)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='web')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'tether', *sys.argv[2:]])\n"
    )
    proc = reloading(directory, program=("-c", launcher, str(sock.fileno())))
    proc.pass_fds = (sock.fileno(),)
    return proc


async def _answers_without_refusal(port: int, version: str, app: Path) -> int:
    """Ask until `version` answers, rewriting `app` first; count the requests made.

    Any refused connection fails: the socket must stay open across the restart.
    """
    made = 0

    async def until_new() -> None:
        nonlocal made
        while True:
            made += 1
            try:
                answer = await _get(port)
            except RefusedError:
                raise AssertionError(f"a connection was refused after {made} requests") from None
            if answer == version:
                return
            await asyncio.sleep(0.02)

    await asyncio.to_thread(app.write_text, APP.format(version=version))
    await bounded(until_new(), 20)
    return made


async def _get(port: int) -> str:
    try:
        reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
    except ConnectionRefusedError:
        raise RefusedError from None
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await bounded(reader.read(), 10)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return data.split(b"\r\n\r\n", 1)[1].decode()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")
async def test_prefork_workers_restart_on_the_sockets_the_reloader_bound(tmp_path: Path) -> None:
    """`--reload --workers 1 --bind`: the reloader binds the port once; each new master
    and its worker serve on it, and no connection is refused across the restart."""
    app = write_app(tmp_path, 1)
    proc = reloading(tmp_path, "--workers", "1", "--bind", "tcp://127.0.0.1:0")
    async with proc:
        line = await proc.line("tether.sockets: listening on tcp://127.0.0.1:", stream="stderr")
        found = re.search(r"tcp://127\.0\.0\.1:(\d+)", line)
        assert found is not None
        port = int(found.group(1))
        await proc.line("version 1 up")
        assert await _get(port) == "1"
        await _answers_without_refusal(port, "2", app)
        assert "adopted 1 socket(s) from the reloader" in proc.output
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    with pytest.raises(RefusedError):
        await _get(port)


async def test_socket_activation_is_handed_to_every_new_process(tmp_path: Path) -> None:
    """Started by systemd socket activation: the reloader adopts fd 3 and hands it to each
    child; requests during the restart wait in its backlog instead of being refused."""
    app = write_app(tmp_path, 1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    async with _activated_reloader(tmp_path, sock) as proc:
        sock.close()
        await proc.line("version 1 up")
        assert await _get(port) == "1"
        await _answers_without_refusal(port, "2", app)
        assert "adopted 1 socket(s) from systemd: web=" in proc.output
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    with pytest.raises(RefusedError):
        await request(port)


async def test_reload_without_watchfiles_is_a_usage_error_naming_the_extra() -> None:
    """Where watchfiles cannot be imported, `--reload` says which extra to install."""
    code = (
        "import sys; sys.modules['watchfiles'] = None\n"
        "from tether._cli import main\n"
        "sys.exit(main(['run', '--reload', 'tests.process.apps:quick']))\n"
    )
    async with Tether(program=("-c", code)) as proc:
        assert await proc.exit_code() == 2
    assert "pip install 'tether[reload]'" in proc.output


async def test_a_reload_dir_without_reload_is_refused() -> None:
    """`--reload-dir` alone would do nothing: a usage error says to add `--reload`."""
    async with Tether("run", "--reload-dir", ".", "tests.process.apps:quick") as proc:
        assert await proc.exit_code() == 2
    assert "--reload-dir goes with --reload" in proc.output


PATIENT = '''
import asyncio
import os
import pathlib

import tether

MARKERS = pathlib.Path({markers!r})


class Api(tether.Service):
    """Stops only once its parent, the reloader, is gone entirely."""

    async def start(self) -> None:
        self.parent = os.getppid()
        (MARKERS / "up").touch()
        print("up", flush=True)

    async def stop(self) -> None:
        (MARKERS / "stopping").touch()
        while os.getppid() == self.parent:
            await asyncio.sleep(0.01)
        print("down", flush=True)


api = Api()
'''

# A reloader whose threads end one after the other: the thread that started the child
# first, then the rest of the process. Each end hands the child to what remains of the
# process, and Linux sends it the parent-death signal each time.
DYING_RELOADER = """
import os, pathlib, subprocess, sys, threading, time

markers = pathlib.Path(sys.argv[1])
env = {**os.environ, "TETHER_RELOADER": str(os.getpid()), "TETHER_RELOAD_SOCKETS": "[]"}
command = [sys.executable, "-m", "tether", "run", "--reload", "patient:api", "--log-format=plain"]


def until(name):
    deadline = time.monotonic() + 10
    while not (markers / name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def start():
    subprocess.Popen(command, env=env)
    until("up")


thread = threading.Thread(target=start)
thread.start()
thread.join()
until("stopping")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_dying_reloader_stops_its_child_gracefully_once(tmp_path: Path) -> None:
    """The reloader's threads end one by one (as when it is killed): the child gets one
    SIGTERM, not one per thread, and so stops gracefully instead of being forced."""
    (tmp_path / "patient.py").write_text(PATIENT.format(markers=str(tmp_path)))
    env = {"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = Tether(env=env, program=("-c", DYING_RELOADER, str(tmp_path)))
    async with proc:
        assert await proc.exit_code() == 0, proc.output
        await proc.line("down")
    assert "second SIGTERM" not in proc.output
    assert "exit code 0 (OK)" in proc.output


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_reloader_killed_with_sigkill_leaves_no_child_running(tmp_path: Path) -> None:
    """SIGKILL to the reloader: its child stops gracefully and exits; nothing is left."""
    write_app(tmp_path, 1)
    async with reloading(tmp_path) as proc:
        await proc.line("version 1 up")
        found = re.search(r"started pid (\d+)", proc.output)
        assert found is not None
        child = int(found.group(1))
        proc.send(signal.SIGKILL)
        assert await proc.exit_code() == -signal.SIGKILL
        await proc.line("version 1 down")
    assert "second SIGTERM" not in proc.output
    await bounded(_gone(child))


async def _gone(pid: int) -> None:
    """Return once `pid` has exited (gone, or a zombie nobody reaped)."""
    while _running(pid):
        await asyncio.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_python_files_of_a_virtual_environment_do_not_restart(tmp_path: Path) -> None:
    """A virtual environment inside the watched directory, whatever its name (`venv`,
    not only `.venv`): installing into it restarts nothing; the next change of the
    application's own module is the one reload."""
    app = write_app(tmp_path, 1)
    environment = tmp_path / "venv"
    (environment / "lib" / "site-packages").mkdir(parents=True)
    (environment / "pyvenv.cfg").write_text("home = /usr/bin\n")
    async with reloading(tmp_path) as proc:
        await proc.line("version 1 up")
        (environment / "lib" / "site-packages" / "installed.py").write_text("x = 1\n")
        app.write_text(APP.format(version=2))
        await proc.line("version 2 up")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    reloads = [line for line in proc.stderr if re.search(r"tether\.reload: reload \d+:", line)]
    assert len(reloads) == 1, proc.output
    assert "reload 1: reloadable.py changed;" in reloads[0]

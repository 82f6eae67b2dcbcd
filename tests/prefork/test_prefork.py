"""Pre-fork workers as real processes: real signals, real sockets on loopback, real load.

The master is ``tether run tests.prefork.prefork_app:app --workers N --bind ...``; the
load is a small asyncio client (one request per connection) that tells apart a
connection refused (fine once the server is gone) from one accepted and then failed
(never fine). Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import pytest

from tests.conftest import bounded
from tests.process.harness import ROOT, FakeSystemd, Tether

APP = "tests.prefork.prefork_app:app"
AIOHTTP_APP = "tests.prefork.prefork_aiohttp:app"
PLAIN = ("--log-format", "plain")
LOOPS = ["asyncio", "uvloop"]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")


def master(workers: int, *extra: str, env: dict[str, str] | None = None, app: str = APP) -> Tether:
    if app == AIOHTTP_APP:
        pytest.importorskip("aiohttp")
    if "uvloop" in extra:
        pytest.importorskip("uvloop")
    if any(e.startswith("rloop:") for e in extra):
        pytest.importorskip("rloop")
    args = ["run", app, *PLAIN, "--workers", str(workers), "--graceful-timeout", "3"]
    if not any(arg.startswith("--bind") for arg in extra) and "--no-bind" not in extra:
        args += ["--bind", "tcp://127.0.0.1:0"]
    return Tether(*args, *(e for e in extra if e != "--no-bind"), env=env)


async def port_of(proc: Tether) -> int:
    line = await proc.line("listening on tcp://127.0.0.1:", stream="stderr")
    found = re.search(r"tcp://127\.0\.0\.1:(\d+)", line)
    assert found is not None
    return int(found.group(1))


async def ready_count(proc: Tether, count: int, seconds: float = 10) -> None:
    await proc.until(
        lambda: sum(" ready in " in line for line in proc.stderr) >= count,
        f"{count} workers ready",
        seconds,
    )


def forked_pids(proc: Tether) -> list[int]:
    return [
        int(m.group(1))
        for line in proc.stderr
        if (m := re.search(r"forked worker \d+ \(pid (\d+)", line))
    ]


def count_lines(proc: Tether, needle: str) -> int:
    return sum(needle in line for line in proc.stderr)


class RefusedError(Exception):
    """The connection was refused: nobody listens."""


async def request(port: int, path: str = "/", seconds: float = 5.0) -> int:
    """GET ``path``; the pid that answered. RefusedError when refused, any other failure raises."""

    async def go() -> int:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            raise RefusedError from None
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"bad response {data[:80]!r}")
        return int(body)

    return await bounded(go(), seconds)


class Load:
    """Clients requesting in a loop until stopped; counts answers, refusals and failures."""

    def __init__(
        self, port: int, clients: int = 4, paths: tuple[str, ...] = ("/", "/slow")
    ) -> None:
        self.port = port
        self.clients = clients
        self.paths = paths
        self.ok = 0
        self.refused = 0
        self.errors: list[str] = []
        self.pids: list[int] = []
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self.tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.running = False
        await bounded(asyncio.gather(*self.tasks), 15)

    async def _client(self, index: int) -> None:
        path = self.paths[index % len(self.paths)]
        for _ in range(100_000):
            if not self.running:
                return
            try:
                self.pids.append(await request(self.port, path))
                self.ok += 1
            except RefusedError:
                self.refused += 1
                await asyncio.sleep(0.01)
            except (OSError, TimeoutError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    async def answered(self, count: int, seconds: float = 10) -> None:
        goal = self.ok + count

        async def reached() -> None:
            while self.ok < goal:
                await asyncio.sleep(0.01)

        await bounded(reached(), seconds)


def gone(pid: int) -> bool:
    """The process does not exist any more (or is a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def all_gone(pids: list[int], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(gone(pid) for pid in pids):
            return True
        await asyncio.sleep(0.02)
    return all(gone(pid) for pid in pids)


# ------------------------------------------------------------------ tests


async def test_workers_share_the_bound_socket_and_stop_on_sigterm() -> None:
    """Two workers serve one bound port; SIGTERM stops them and the master with code 0."""
    async with master(2) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        pids = set(forked_pids(proc))
        seen = {await request(port) for _ in range(40)}
        assert seen <= pids
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "master stopped" in proc.output
    assert await all_gone(list(pids), 2)


async def test_killed_worker_is_replaced_and_serving_within_a_second() -> None:
    """SIGKILL a worker: the master respawns it at once and the new one answers within 1 s."""
    async with master(1) as proc:
        port = await port_of(proc)
        await ready_count(proc, 1)
        [first] = forked_pids(proc)
        assert await request(port) == first
        killed = time.monotonic()
        os.kill(first, signal.SIGKILL)
        answer = None
        for _ in range(500):
            with contextlib.suppress(RefusedError, OSError, TimeoutError):
                answer = await request(port, seconds=1)
                if answer != first:
                    break
            await asyncio.sleep(0.005)
        took = time.monotonic() - killed
        assert answer is not None, proc.output
        assert answer != first, proc.output
        assert took < 1.0, f"the replacement served after {took:.3f}s\n{proc.output}"
        assert "killed by SIGKILL); respawning it" in proc.output
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_sigterm_under_load_fails_no_accepted_request_and_then_refuses() -> None:
    """Under load, SIGTERM: every accepted request is answered; then connections are refused."""
    async with master(2) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        async with Load(port, clients=6) as load:
            await load.answered(50)
            proc.send(signal.SIGTERM)
            assert await proc.exit_code(15) == 0, proc.output
            answered_at_exit = load.ok
            refused_at_exit = load.refused

            # The load goes on after the master is gone: it must only meet refusals.
            async def refused_more() -> None:
                while load.refused < refused_at_exit + 20:
                    await asyncio.sleep(0.01)

            await bounded(refused_more(), 10)
        assert load.errors == [], f"{load.errors[:5]}\n{proc.output}"
        assert load.ok == answered_at_exit
        assert answered_at_exit >= 50
    with pytest.raises(RefusedError):
        await request(port)


@pytest.mark.parametrize("app", [APP, AIOHTTP_APP])
@pytest.mark.parametrize("loop", LOOPS)
async def test_ten_hup_reloads_under_load_drop_nothing_and_leave_no_old_worker(
    loop: str, app: str
) -> None:
    """Ten SIGHUPs under load, on either loop: no connection error; after each reload
    only new workers serve."""
    async with master(2, "--loop", loop, app=app) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        async with Load(port, clients=8) as load:
            await load.answered(20)
            for round_ in range(1, 11):
                before = set(forked_pids(proc))
                proc.send(signal.SIGHUP)
                await proc.until(
                    lambda goal=round_: count_lines(proc, "reload complete") >= goal,  # type: ignore[misc]
                    f"reload {round_} complete",
                    15,
                )
                await load.answered(10)
                # Old workers got SIGTERM; within the graceful timeout (3 s) they are gone.
                assert await all_gone(sorted(before), 3.5), proc.output
                now = set(forked_pids(proc)) - before
                assert len(now) == 2, proc.output
                mark = len(load.pids)
                await load.answered(10)
                # Each client may have had a request in flight to an old worker.
                assert set(load.pids[mark + load.clients :]) <= now
        assert load.errors == [], f"{load.errors[:5]}\n{proc.output}"
        assert load.refused == 0
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


FRAMEWORKS = "tests.prefork.prefork_frameworks"


@pytest.mark.parametrize("framework", ["tornado", "twisted", "wsgi"])
async def test_a_reload_under_keep_alive_load_moves_the_clients_to_the_new_workers(
    framework: str,
) -> None:
    """Keep-alive clients through two SIGHUPs, on Tornado's, Twisted's and the WSGI
    server: each old worker tells its clients to reconnect (Connection: close) and
    exits by itself, nothing fails, and the new workers serve them."""
    pytest.importorskip({"wsgi": "a2wsgi"}.get(framework, framework))
    pytest.importorskip("aiohttp")
    import aiohttp

    async with master(2, app=f"{FRAMEWORKS}:{framework}") as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        pids: list[str] = []
        errors: list[str] = []
        running = True

        async def client(session: aiohttp.ClientSession) -> None:
            while running:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/") as response:
                        pids.append(await response.text())
                except aiohttp.ClientError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        async def answered(count: int) -> None:
            goal = len(pids) + count
            while len(pids) < goal:
                await asyncio.sleep(0.01)

        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(client(session)) for _ in range(4)]
            await bounded(answered(20))
            for round_ in (1, 2):
                before = set(forked_pids(proc))
                proc.send(signal.SIGHUP)
                await proc.until(
                    lambda goal=round_: count_lines(proc, "reload complete") >= goal,  # type: ignore[misc]
                    f"reload {round_} complete",
                    15,
                )
                # The old workers drain while the clients keep sending; they exit by themselves.
                assert await all_gone(sorted(before), 3.5), proc.output
                mark = len(pids)
                await bounded(answered(20))
                now = {str(pid) for pid in set(forked_pids(proc)) - before}
                assert set(pids[mark + 4 :]) <= now, proc.output
            running = False
            await bounded(asyncio.gather(*clients))
        assert errors == [], f"{errors[:5]}\n{proc.output}"
        assert "killed by SIGKILL" not in proc.output
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_reload_whose_new_code_fails_to_import_keeps_the_old_workers(tmp_path: Path) -> None:
    """SIGHUP with broken code: the new worker fails, the old ones serve on, the master lives."""
    broken = tmp_path / "broken"
    async with master(2, env={"PREFORK_BROKEN": str(broken)}) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        old = set(forked_pids(proc))
        broken.touch()
        async with Load(port, clients=3, paths=("/",)) as load:
            proc.send(signal.SIGHUP)
            await proc.line("reload failed", stream="stderr")
            await load.answered(30)
        assert load.errors == []
        assert set(load.pids) <= old
        assert "this version of the application is broken" in proc.output
        assert proc.proc is not None
        assert proc.proc.returncode is None
        # Fixed code: the next SIGHUP replaces them.
        broken.unlink()
        proc.send(signal.SIGHUP)
        await proc.line("reload complete", stream="stderr")
        assert await all_gone(sorted(old), 5), proc.output  # told to stop, they drain first
        assert {await request(port) for _ in range(10)}.isdisjoint(old)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_workers_exit_when_the_master_is_killed() -> None:
    """SIGKILL the master: every worker is gone within 2 s."""
    async with master(2) as proc:
        await ready_count(proc, 2)
        pids = forked_pids(proc)
        proc.send(signal.SIGKILL)
        await proc.exit_code()
        assert await all_gone(pids, 2.0), proc.output


async def test_ttin_adds_and_ttou_removes_a_worker_but_never_the_last() -> None:
    """SIGTTIN forks one more worker; SIGTTOU stops one, down to one and no fewer."""
    async with master(1) as proc:
        await ready_count(proc, 1)
        proc.send(signal.SIGTTIN)
        await ready_count(proc, 2)
        assert "SIGTTIN received: 2 worker(s) wanted" in proc.output
        proc.send(signal.SIGTTOU)
        await proc.line("SIGTTOU received: 1 worker(s) wanted", stream="stderr")
        await proc.until(
            lambda: count_lines(proc, "exited (exit code 0)") == 1, "one worker stopped"
        )
        proc.send(signal.SIGTTOU)
        await proc.line("keeping the last worker", stream="stderr")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert count_lines(proc, "forked worker") == 2


async def test_worker_with_a_blocked_event_loop_is_killed_and_replaced() -> None:
    """A worker whose loop blocks stops its heartbeat: killed after the timeout, replaced."""
    async with master(1, "--heartbeat-timeout", "1") as proc:
        port = await port_of(proc)
        await ready_count(proc, 1)
        [first] = forked_pids(proc)
        blocked = asyncio.create_task(request(port, "/block", seconds=8))
        await proc.line("sent no heartbeat", stream="stderr", seconds=8)
        with contextlib.suppress(OSError, ValueError, TimeoutError):
            await blocked
        await ready_count(proc, 2)
        assert await request(port) != first
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_master_notifies_ready_once_every_worker_is_ready(tmp_path: Path) -> None:
    """Only the master talks to systemd: READY=1 after all workers are ready, STOPPING=1."""
    async with FakeSystemd(tmp_path) as systemd:
        async with master(2, env={"NOTIFY_SOCKET": systemd.address}) as proc:
            await systemd.wait_for("READY=1")
            assert count_lines(proc, " ready in ") == 2
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
        texts = systemd.texts()
    assert texts.count("READY=1") == 1, texts
    assert "STOPPING=1" in texts
    assert "STATUS=2 workers ready" in texts


async def test_bad_bind_is_a_usage_error_naming_it() -> None:
    """A bind spec that is not tcp:// or unix: fails before anything starts, naming it."""
    async with master(1, "--bind", "udp://1.2.3.4:5") as proc:
        assert await proc.exit_code() == 2
    assert "udp://1.2.3.4:5" in proc.output


# ------------------------------------------------------------ socket activation


def _activated(*args: str, sock: socket.socket) -> Tether:
    """``tether ARGS`` exec'd by a launcher that puts ``sock`` on fd 3 and sets LISTEN_PID."""
    launcher = (
        "import os, sys\n"
        "fd = int(sys.argv[1])\n"
        "os.dup2(fd, 3)\n"
        "os.close(fd)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='web')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'tether', *sys.argv[2:]])\n"
    )
    proc = Tether(str(sock.fileno()), *args, program=("-c", launcher))
    proc.pass_fds = (sock.fileno(),)
    return proc


@pytest.mark.parametrize("workers", [None, 2])
async def test_socket_activation_adopts_fd_3(workers: int | None) -> None:
    """A socket on fd 3 with LISTEN_PID = our pid is served, with or without pre-fork."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    extra = ("--workers", str(workers)) if workers else ()
    proc = _activated("run", APP, *PLAIN, *extra, sock=sock)
    async with proc:
        sock.close()
        if workers:
            await ready_count(proc, workers)
        else:
            await proc.line("running", stream="stderr")
        await proc.until(
            lambda: "adopted 1 socket(s) from systemd: web=" in proc.output, "adoption"
        )
        env = await request(port, "/env")
        assert env  # the pid of whoever answered
        assert proc.proc is not None
        if workers:
            assert set({await request(port) for _ in range(10)}) <= set(forked_pids(proc))
        else:
            assert await request(port) == proc.proc.pid
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    with pytest.raises(RefusedError):
        await request(port)


# ------------------------------------------------------------ the ext servers


async def test_aiohttp_server_without_address_serves_every_bound_socket(tmp_path: Path) -> None:
    """tether.ext.aiohttp.Server given no address serves the master's TCP and Unix sockets."""
    pytest.importorskip("aiohttp")
    path = tmp_path / "app.sock"
    args = ["--bind", "tcp://127.0.0.1:0", "--bind", f"unix:{path}"]
    async with Tether(
        "run", "tests.prefork.prefork_aiohttp:app", *PLAIN, "--workers", "2", *args
    ) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        pids = set(forked_pids(proc))
        assert {await request(port) for _ in range(10)} <= pids
        reader, writer = await bounded(asyncio.open_unix_connection(str(path)))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await bounded(reader.read())
        writer.close()
        assert data.startswith(b"HTTP/1.1 200")
        assert int(data.rpartition(b"\r\n\r\n")[2]) in pids
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert not path.exists()


async def test_a_crash_loop_is_respawned_with_growing_backoff(tmp_path: Path) -> None:
    """A worker that keeps failing is respawned after 0, 0.1, 0.2, 0.4 s...: no fork storm."""
    crash = tmp_path / "crash"
    async with master(1, env={"PREFORK_CRASH": str(crash)}) as proc:
        await ready_count(proc, 1)
        [first] = forked_pids(proc)
        crash.touch()
        os.kill(first, signal.SIGKILL)
        await proc.line("respawning in 0.4s", stream="stderr")
        delays = re.findall(r"failures in a row: respawning in ([\d.]+)s", proc.output)
        assert delays[:3] == ["0.1", "0.2", "0.4"], proc.output
        crash.unlink()
        await ready_count(proc, 2, seconds=15)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert count_lines(proc, "forked worker") <= 8


async def test_a_second_sigterm_makes_the_workers_stop_at_once() -> None:
    """SIGTERM, then SIGTERM again while a request hangs: the worker is forced out (code 70)."""
    async with master(1, "--graceful-timeout", "30") as proc:
        port = await port_of(proc)
        await ready_count(proc, 1)
        hanging = asyncio.create_task(request(port, "/hang", seconds=20))
        await asyncio.sleep(0.2)  # let the request reach the worker (no event to wait on)
        proc.send(signal.SIGTERM)
        await proc.line("stopping gracefully", stream="stderr")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
        with contextlib.suppress(OSError, ValueError, TimeoutError):
            await hanging
    assert "received again: the workers stop at once" in proc.output
    assert "exited (exit code 70)" in proc.output


async def test_a_worker_outliving_the_graceful_timeout_is_killed() -> None:
    """A request that does not finish: the worker is ended once the graceful timeout passed."""
    async with master(1, "--graceful-timeout", "1") as proc:
        port = await port_of(proc)
        await ready_count(proc, 1)
        hanging = asyncio.create_task(request(port, "/hang", seconds=20))
        await asyncio.sleep(0.2)  # let the request reach the worker (no event to wait on)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
        with contextlib.suppress(OSError, ValueError, TimeoutError):
            await hanging
    # The worker's own shutdown deadline (the same timeout) or the master's kill ends it.
    assert "(exit code 70)" in proc.output or "killed by SIGKILL" in proc.output, proc.output


async def test_the_readme_example_serves_from_two_workers_and_stops(tmp_path: Path) -> None:
    """The README's hello.py forks two workers that answer; SIGTERM stops it with code 0."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- prefork-example -->\n```python\n(.*?)```", readme, re.DOTALL)
    assert found is not None
    program = tmp_path / "hello.py"
    program.write_text(found.group(1))
    async with Tether(program=(str(program),), env={"PORT": "0"}) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        data = await bounded(reader.read())
        writer.close()
        assert b"hello from worker" in data
        assert int(data.split()[-1]) in forked_pids(proc)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_sigusr1_prints_the_workers_and_their_status_trees() -> None:
    """SIGUSR1 to the master: a line per worker, and each worker's own status tree."""
    async with master(2) as proc:
        await ready_count(proc, 2)
        proc.send(signal.SIGUSR1)
        await proc.line("2 of 2 worker(s) serving", stream="stderr")
        await proc.until(
            lambda: count_lines(proc, "tether status: PidServer is running") == 2,
            "two status trees",
        )
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_workers_that_cannot_boot_at_start_stop_the_master_with_code_3(
    tmp_path: Path,
) -> None:
    """The first workers fail to import the application: nothing serves, exit code 3."""
    broken = tmp_path / "broken"
    broken.touch()
    async with master(2, env={"PREFORK_BROKEN": str(broken)}) as proc:
        port = await port_of(proc)
        assert await proc.exit_code() == 3, proc.output
    assert "a worker exited before it was ready" in proc.output
    assert "this version of the application is broken" in proc.output
    with pytest.raises(RefusedError):
        await request(port)


async def test_preloaded_application_is_imported_once_and_reused_on_reload(
    tmp_path: Path,
) -> None:
    """--preload imports in the master: a SIGHUP replaces the workers with the same code."""
    broken = tmp_path / "broken"
    async with master(2, "--preload", env={"PREFORK_BROKEN": str(broken)}) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        old = set(forked_pids(proc))
        broken.touch()  # would break an import; the preloaded code is not imported again
        proc.send(signal.SIGHUP)
        await proc.line("reload complete", stream="stderr")
        assert await all_gone(sorted(old), 5), proc.output
        assert {await request(port) for _ in range(10)}.isdisjoint(old)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "(preloaded)" in proc.output


# ------------------------------------------------------------ drain with busy workers


async def until_file(directory: Path, pattern: str, seconds: float = 10) -> None:
    async def appeared() -> None:
        while not any(directory.glob(pattern)):  # noqa: ASYNC240 - a stat per poll
            await asyncio.sleep(0.01)

    await bounded(appeared(), seconds)


class Queued:
    """A connection made and its request sent; read the answer later."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def send(cls, port: int, path: str = "/") -> Queued:
        reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return cls(reader, writer)

    async def answer(self, seconds: float = 15) -> str:
        """``200 <pid>``, or what went wrong (an error, no answer)."""
        try:
            data = await bounded(self.reader.read(), seconds)
        except (OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return f"no answer: {data[:60]!r}"
        return f"200 {body.decode()}"


@pytest.mark.parametrize(
    ("loop", "app"),
    [
        *((loop, app) for loop in LOOPS for app in (APP, AIOHTTP_APP)),
        # aiohttp on rloop 0.5 closes the connections accepted during its stop unanswered
        # (the frameworks page says so); tether's own asyncio servers serve them.
        ("rloop:new_event_loop", APP),
    ],
)
async def test_sigterm_serves_the_connections_queued_behind_a_busy_worker(
    loop: str, app: str, tmp_path: Path
) -> None:
    """The only worker is busy in synchronous work, five connections wait in the kernel's
    queue, SIGTERM arrives: every one of them is answered before the master exits."""
    await _serves_the_connections_queued_behind_a_busy_worker(loop, app, tmp_path)


@pytest.mark.parametrize("framework", ["tornado", "twisted", "wsgi"])
async def test_sigterm_serves_the_queued_connections_on_the_other_frameworks_servers(
    framework: str, tmp_path: Path
) -> None:
    """The same for Tornado's HTTPServer, a Twisted Site and a WSGI application: a
    connection queued behind a busy worker at SIGTERM is answered."""
    pytest.importorskip({"wsgi": "a2wsgi"}.get(framework, framework))
    await _serves_the_connections_queued_behind_a_busy_worker(
        "asyncio", f"tests.prefork.prefork_frameworks:{framework}", tmp_path
    )


async def _serves_the_connections_queued_behind_a_busy_worker(
    loop: str, app: str, tmp_path: Path
) -> None:
    """Run ``app`` under one worker, busy at SIGTERM with five connections queued."""
    env = {"PREFORK_BUSY_DIR": str(tmp_path)}
    async with master(1, "--loop", loop, app=app, env=env) as proc:
        port = await port_of(proc)
        await ready_count(proc, 1)
        [worker] = forked_pids(proc)
        busy = await Queued.send(port, "/busy")
        await until_file(tmp_path, f"busy-{worker}")
        queued = [await Queued.send(port) for _ in range(5)]
        proc.send(signal.SIGTERM)
        await proc.line("SIGTERM sent to 1 worker(s)", stream="stderr")
        (tmp_path / "release").touch()
        answers = [await busy.answer(), *[await q.answer() for q in queued]]
        assert answers == [f"200 {worker}"] * 6, f"{answers}\n{proc.output}"
        assert await proc.exit_code() == 0, proc.output
    with pytest.raises(RefusedError):
        await request(port)


@pytest.mark.parametrize("app", [APP, AIOHTTP_APP])
async def test_sigterm_while_the_workers_boot_sends_no_ready(app: str, tmp_path: Path) -> None:
    """SIGTERM before any worker is ready: no READY=1, no "worker(s) ready", a clean stop."""
    slow = tmp_path / "slow"
    slow.touch()
    async with FakeSystemd(tmp_path) as systemd:
        env = {"NOTIFY_SOCKET": systemd.address, "PREFORK_SLOW_START": str(slow)}
        async with master(2, app=app, env=env) as proc:
            await proc.until(lambda: len(forked_pids(proc)) == 2, "two workers forked")
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
        texts = systemd.texts()
    assert "READY=1" not in texts, texts
    assert "STOPPING=1" in texts, texts
    assert "worker(s) ready" not in proc.output
    assert "stopped before every worker was ready" in proc.output


def listen_backlog(port: int) -> int:
    """The listening socket's accept queue limit as the kernel reports it (ss's Send-Q)."""
    ss = shutil.which("ss")
    assert ss is not None
    shown = subprocess.run(  # noqa: S603 - our own arguments
        [ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown, f"nothing listens on {port}"
    return int(shown[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
@pytest.mark.parametrize("app", [APP, AIOHTTP_APP])
async def test_the_documented_listen_backlog_survives_the_servers_own_listen(app: str) -> None:
    """The master listens with a backlog of 2048; the servers in the workers call
    listen() again (aiohttp 128, asyncio 100): the kernel still reports 2048."""
    async with master(2, app=app) as proc:
        port = await port_of(proc)
        await ready_count(proc, 2)
        assert await request(port)
        assert listen_backlog(port) == 2048, proc.output
        proc.send(signal.SIGHUP)
        await proc.line("reload complete", stream="stderr")
        assert listen_backlog(port) == 2048, proc.output
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


# ------------------------------------------------------------ logs you can attribute


async def test_plain_log_lines_say_which_worker_and_pid_wrote_them() -> None:
    """With workers, every plain log line names its process: the master or worker N, pid P."""
    async with master(2) as proc:
        await ready_count(proc, 2)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    pids = forked_pids(proc)
    assert proc.proc is not None
    head = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \w+ +\[(master|worker \d+) pid (\d+)\] "
    )
    tags = [head.match(line) for line in proc.stderr]
    assert all(tags), proc.output
    by_process = {(m.group(1), int(m.group(2))) for m in tags if m}
    assert by_process == {("master", proc.proc.pid), ("worker 1", pids[0]), ("worker 2", pids[1])}
    stopping = [line for line in proc.stderr if "SIGTERM received: stopping gracefully" in line]
    assert len(stopping) == 2
    assert len({m.group(1) for line in stopping if (m := head.match(line))}) == 2


async def test_json_log_lines_carry_pid_and_worker_and_so_does_the_status_dump() -> None:
    """--log-format json: every line is one object with pid (and worker, from a worker);
    the SIGUSR1 status of the master and of each worker is such a line too."""
    args = ["run", APP, "--log-format", "json", "--workers", "2", "--bind", "tcp://127.0.0.1:0"]
    async with Tether(*args) as proc:
        await proc.until(lambda: proc.output.count(" ready in ") >= 2, "two workers ready")
        proc.send(signal.SIGUSR1)
        await proc.until(
            lambda: proc.output.count("tether status: PidServer is running") == 2,
            "two status trees",
        )
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    records = [json.loads(line) for line in proc.stderr]  # every line is JSON
    assert proc.proc is not None
    assert all(isinstance(r["pid"], int) for r in records), records
    from_workers = [r for r in records if r["pid"] != proc.proc.pid]
    assert from_workers
    assert all(r["worker"] in (1, 2) for r in from_workers)
    assert all("worker" not in r for r in records if r["pid"] == proc.proc.pid)
    statuses = [r for r in records if "tether status" in r["event"]]
    assert len(statuses) == 3, statuses  # the master's, then one per worker
    assert {r.get("worker") for r in statuses} == {None, 1, 2}


async def test_boot_timeout_on_the_command_line_ends_a_start_that_hangs(tmp_path: Path) -> None:
    """--boot-timeout 1: a worker still booting after a second is killed; exit code 3."""
    slow = tmp_path / "slow"
    slow.touch()
    async with master(1, "--boot-timeout", "1", env={"PREFORK_SLOW_START": str(slow)}) as proc:
        assert await proc.exit_code() == 3, proc.output
    assert "not ready after boot_timeout=1s" in proc.output

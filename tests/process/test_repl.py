"""`tether repl`: driven through stdin and through a pseudo-terminal, as a person would."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys

from tests.conftest import bounded
from tests.process.harness import ROOT, Tether

APP = "tests.process.apps:repl_app"


async def _repl(proc: Tether) -> None:
    await proc.start(stdin=asyncio.subprocess.PIPE)
    await proc.line("bound: root, shell, counter", stream="stderr")


def _type(proc: Tether, text: str) -> None:
    assert proc.proc is not None
    assert proc.proc.stdin is not None
    proc.proc.stdin.write(text.encode())


def _printed(proc: Tether) -> list[str]:
    """Stdout without the prompts (which have no newline of their own, and come from
    the console's thread: one may land after the stop hooks' lines)."""
    return [text for line in proc.stdout if (text := line.replace(">>> ", "").strip())]


def _leave(proc: Tether) -> None:
    assert proc.proc is not None
    assert proc.proc.stdin is not None
    proc.proc.stdin.close()


async def test_repl_awaits_at_top_level_with_services_bound_by_name() -> None:
    """Top-level await works; root and each service are bound; EOF stops gracefully."""
    proc = Tether("repl", APP)
    try:
        await _repl(proc)
        _type(proc, "await counter.bump()\nawait counter.bump()\n")
        _type(proc, "print('count', counter.count, root is shell, counter.running)\n")
        await proc.line("count 2 True True")
        _leave(proc)
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    assert _printed(proc)[-2:] == ["stop:shell", "stop:counter:2"]
    assert "leaving: stopping the graph" in proc.output


async def test_repl_exit_call_leaves_and_stops_gracefully() -> None:
    """`exit()` at the prompt leaves the REPL like Ctrl-D: the graph stops, code 0."""
    proc = Tether("repl", APP)
    try:
        await _repl(proc)
        _type(proc, "await counter.bump()\nexit()\n")
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    assert _printed(proc)[-2:] == ["stop:shell", "stop:counter:1"]


async def test_repl_sigint_cancels_the_running_command_not_the_graph() -> None:
    """Ctrl-C (SIGINT) cancels a command that awaits; the REPL and the graph go on."""
    proc = Tether("repl", APP)
    try:
        await _repl(proc)
        _type(proc, "print('sleeping'); await asyncio.sleep(3600)\n")
        await proc.line("sleeping")
        proc.send(signal.SIGINT)
        await proc.line("KeyboardInterrupt", stream="stderr")
        _type(proc, "print('still here', counter.running)\n")
        await proc.line("still here True")
        _leave(proc)
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()


async def test_repl_sigterm_stops_the_graph_while_the_prompt_waits() -> None:
    """SIGTERM stops the graph gracefully even though the prompt still waits for input."""
    proc = Tether("repl", APP)
    try:
        await _repl(proc)
        _type(proc, "await counter.bump()\n")
        await proc.line("1")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    assert _printed(proc)[-2:] == ["stop:shell", "stop:counter:1"]


async def test_repl_on_a_terminal_leaves_on_ctrl_d() -> None:
    """On a real (pseudo-)terminal: prompt, top-level await, Ctrl-D stops the graph."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    env.pop("NOTIFY_SOCKET", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tether",
        "repl",
        APP,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        env=env,
    )
    os.close(terminal)
    loop = asyncio.get_running_loop()
    seen = bytearray()
    changed = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            loop.remove_reader(controller)
        seen.extend(data)
        changed.set()

    async def expect(needle: bytes) -> None:
        while needle not in seen:
            changed.clear()
            await changed.wait()

    loop.add_reader(controller, readable)
    try:
        await bounded(expect(b">>> "), 10)
        os.write(controller, b"await counter.bump() + 41\n")
        await bounded(expect(b"42"), 10)
        os.write(controller, b"\x04")  # Ctrl-D on an empty line: end of input
        assert await bounded(proc.wait(), 10) == 0, seen.decode(errors="replace")
        await bounded(expect(b"stop:counter:1"), 10)
    finally:
        loop.remove_reader(controller)
        os.close(controller)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"stop:shell" in seen


MODULE_APP = "tests.process.repl_module:api"


async def _module_repl(proc: Tether) -> None:
    await proc.start(stdin=asyncio.subprocess.PIPE)
    await proc.line("bound: root, api, database, worker", stream="stderr")


async def test_repl_binds_the_names_of_the_targets_module() -> None:
    """`db`, `worker`, `GREETING` as the module defines them, beside the service names."""
    proc = Tether("repl", MODULE_APP)
    try:
        await _module_repl(proc)
        _type(proc, "print(GREETING, await db.ping(), api is root, database is db)\n")
        await proc.line("hello pong True True")
        _leave(proc)
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    assert "NameError" not in proc.output


async def test_repl_tracebacks_start_in_the_users_input() -> None:
    """An exception at the prompt shows the input line and the user's frames, no plumbing."""
    proc = Tether("repl", MODULE_APP)
    try:
        await _module_repl(proc)
        _type(proc, "await database.lookup('users')\n")
        await proc.line("KeyError: 'users'", stream="stderr")
        _type(proc, "print('still', database.running)\n")
        await proc.line("still True")
        _leave(proc)
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    start = next(i for i, line in enumerate(proc.stderr) if line.startswith("Traceback"))
    end = next(i for i, line in enumerate(proc.stderr) if line.startswith("KeyError"))
    traceback = proc.stderr[start : end + 1]
    assert traceback[1] == '  File "<tether repl>", line 1, in <module>', traceback
    assert any("repl_module.py" in line and "in lookup" in line for line in traceback)
    shown = "\n".join(traceback)
    assert "concurrent" not in shown
    assert "_repl.py" not in shown
    assert "asyncio" not in shown


async def test_repl_says_why_it_leaves_when_a_service_stops_the_graph() -> None:
    """A service asking for its stop ends the REPL with a line saying so; code 0."""
    proc = Tether("repl", MODULE_APP)
    try:
        await _module_repl(proc)
        _type(proc, "worker.quit()\n")
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    assert "tether repl: leaving: Api stopped (a stop was requested)" in proc.stderr, proc.output


async def test_repl_says_why_it_leaves_on_sigterm() -> None:
    """SIGTERM stops the graph under the prompt: the REPL says it leaves and why."""
    proc = Tether("repl", MODULE_APP)
    try:
        await _module_repl(proc)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()
    assert "tether repl: leaving: Api stopped (SIGTERM received)" in proc.stderr, proc.output


async def test_repl_says_why_it_leaves_when_the_graph_crashes() -> None:
    """A background task crashing stops the graph: the REPL names the crash; code 1."""
    proc = Tether("repl", MODULE_APP)
    try:
        await _module_repl(proc)
        _type(proc, "worker.crash()\n")
        assert await proc.exit_code() == 1, proc.output
    finally:
        await proc.__aexit__()
    assert "tether repl: leaving: Api crashed: RuntimeError: the worker crashed" in proc.stderr, (
        proc.output
    )

"""Any event loop: by name, by ``module:attr``, or a factory; signals and threads follow.

Real processes and real signals, on asyncio's loop, uvloop, rloop (a third-party loop
written in Rust, from the registry) and loops made by factories of our own.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.process.harness import FakeSystemd, Tether

APPS = "tests.process.apps"
LOOPS = "tests.process.loops"
PLAIN = ("--log-format", "plain")

KINDS = {
    "asyncio": ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop"),
    "uvloop": ("uvloop", "uvloop.Loop"),
    "rloop": ("rloop:new_event_loop", "rloop.loop.RLoop"),
    "own": (f"{LOOPS}:own_loop", f"{LOOPS}.OwnLoop"),
    "no-readers": (f"{LOOPS}:no_readers", f"{LOOPS}.NoReaders"),
}
"""Each loop tested: its --loop value, and the class of the loop it makes."""


def _needs(kind: str) -> str:
    if kind in ("uvloop", "rloop"):
        pytest.importorskip(kind)
    return KINDS[kind][0]


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_signal_another_thread_receives_stops_the_idle_loop_of_any_kind(
    kind: str,
) -> None:
    """SIGTERM delivered to a thread that is not the main one wakes the idle loop, of
    every kind (rloop's, and one that cannot watch descriptors too): code 0."""
    loop = _needs(kind)
    proc = Tether("run", f"{APPS}:off_thread", *PLAIN, "--loop", loop)
    await proc.start(stdin=asyncio.subprocess.PIPE)
    try:
        await proc.line("started-hook")
        assert proc.proc is not None
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(b"go\n")
        await proc.proc.stdin.drain()
        await proc.line("off-thread-sigterm")
        assert await proc.exit_code() == 0, proc.output
        assert "stop:sender" in proc.stdout
    finally:
        await proc.__aexit__()


@pytest.mark.parametrize("kind", ["rloop", "own", "no-readers"])
async def test_a_service_thread_runs_on_a_loop_of_the_parents_kind(kind: str) -> None:
    """The runner's loop comes from the factory, and so does the ServiceThread's, in its
    own thread; SIGTERM stops both graphs in order, code 0."""
    loop = _needs(kind)
    async with Tether("run", f"{LOOPS}:threaded", *PLAIN, "--loop", loop) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    made = KINDS[kind][1]
    assert f"loop:main:main:{made}" in proc.stdout
    assert f"loop:inner:thread:{made}" in proc.stdout
    stops = [line for line in proc.stdout if line.startswith("stop:")]
    assert stops[0] == "stop:root"
    assert sorted(stops[1:]) == ["stop:inner", "stop:main"]


@pytest.mark.parametrize("kind", ["rloop", "own"])
async def test_watchdog_pings_and_readiness_on_any_loop(kind: str, tmp_path: Path) -> None:
    """Under systemd, READY=1, the watchdog pings (a task of the loop) and STOPPING=1."""
    loop = _needs(kind)
    async with FakeSystemd(tmp_path) as systemd:
        env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
        async with Tether("run", f"{APPS}:idle", *PLAIN, "--loop", loop, env=env) as proc:
            await systemd.wait_for("READY=1")
            await systemd.wait_for("WATCHDOG=1", count=3)
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
    assert systemd.index("READY=1") < systemd.index("STOPPING=1")


@pytest.mark.parametrize("kind", ["asyncio", "uvloop", "rloop"])
async def test_the_loops_own_signal_handlers_still_run(kind: str) -> None:
    """A handler the application added with loop.add_signal_handler runs (tether passes
    on what arrives on its wakeup descriptor to a loop that set its own)."""
    loop = _needs(kind)
    async with Tether("run", f"{LOOPS}:loop_signal", *PLAIN, "--loop", loop) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGUSR2)
        await proc.line("usr2 handled")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_the_log_names_the_loop_a_factory_made() -> None:
    """The start line says which loop runs: its module and class for a factory's."""
    async with Tether("run", f"{APPS}:idle", *PLAIN, "--loop", f"{LOOPS}:own_loop") as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert f"{LOOPS}.OwnLoop event loop" in proc.output


@pytest.mark.parametrize(
    ("loop", "code", "message"),
    [
        ("trio", 2, "loop must be one of auto, asyncio, uvloop, a module:attr"),
        ("nosuchmodule:loop", 2, "No module named 'nosuchmodule'"),
        (f"{LOOPS}:nosuch", 2, "has no attribute 'nosuch'"),
        (f"{APPS}:number", 2, "which is not callable"),
        (f"{LOOPS}:not_a_loop", 3, "returned 'a string, not a loop' (str), not an asyncio"),
        (f"{LOOPS}:failing_factory", 3, "creating the event loop failed"),
    ],
)
async def test_a_loop_that_cannot_be_had_is_named_with_what_to_do(
    loop: str, code: int, message: str
) -> None:
    """A bad --loop is a usage error before anything loads (2); a factory that fails
    or returns no loop fails the startup (3) after init, and the exit stage still runs."""
    async with Tether("run", f"{APPS}:idle", *PLAIN, "--loop", loop) as proc:
        assert await proc.exit_code() == code, proc.output
    assert message in proc.output
    assert "start:" not in proc.output
    if code == 3:
        assert proc.stdout[-1] == "exit-hook: no event loop"

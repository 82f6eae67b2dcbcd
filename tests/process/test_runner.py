"""The runner as a process: real subprocesses, real signals, a real notify socket.

Every exit code of the table in the README is produced here by the situation it
documents, and every signal the runner handles is sent for real.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.process.harness import FakeSystemd, Tether

APPS = "tests.process.apps"
PLAIN = ("--log-format", "plain")


def run_args(app: str, *extra: str) -> tuple[str, ...]:
    return ("run", f"{APPS}:{app}", *PLAIN, *extra)


# ------------------------------------------------------------ clean stops: 0


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_signal_another_thread_receives_still_stops_an_idle_loop(loop: str) -> None:
    """SIGTERM delivered to a thread that is not the main one (the kernel may pick any
    thread that does not block it) wakes the idle loop: graceful stop, code 0."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    proc = Tether(*run_args("off_thread", "--loop", loop))
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_stops_gracefully_with_exit_code_0(sig: signal.Signals) -> None:
    """SIGTERM or SIGINT: stopping, then stop in reverse order, the exit stage, code 0."""
    async with Tether(*run_args("idle")) as proc:
        await proc.line("started-hook")
        proc.send(sig)
        assert await proc.exit_code() == 0, proc.output
    stops = [line for line in proc.stdout if line.startswith("stop:")]
    assert stops[0] == "stop:root"
    assert stops[-1] == "stop:db"
    assert set(stops[1:3]) == {"stop:cache", "stop:queue"}
    assert proc.stdout[-1] == "exit-hook: no event loop"
    assert f"{sig.name} received: stopping gracefully" in proc.output


async def test_stop_signal_during_start_interrupts_it_with_exit_code_0(tmp_path: Path) -> None:
    """A stop signal while a start hook is still running cancels the start: code 0."""
    async with (
        FakeSystemd(tmp_path) as systemd,
        Tether(*run_args("slow_start"), env={"NOTIFY_SOCKET": systemd.address}) as proc,
    ):
        await proc.line("start-begin:slow")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "stop:db" in proc.stdout  # what had started was stopped again
    assert "start interrupted by SIGTERM" in proc.output
    assert "READY=1" not in systemd.texts()
    assert "STOPPING=1" in systemd.texts()


# --------------------------------------------------------------- crashes: 1


async def test_crash_while_running_exits_with_code_1() -> None:
    """A background task that raises while running stops the graph; exit code 1."""
    async with Tether(*run_args("crash")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGUSR2)
        assert await proc.exit_code() == 1, proc.output
    assert "stop:crasher" in proc.stdout
    assert "stop:db" in proc.stdout
    assert "RuntimeError: the task blew up" in proc.output
    assert "Crasher[crasher] crashed; stopping the graph" in proc.output


# ------------------------------------------------------ startup failures: 3


async def test_failing_start_exits_with_code_3_after_rolling_back() -> None:
    """A start hook that raises: what had started is stopped again, exit code 3."""
    async with Tether(*run_args("failing_start")) as proc:
        assert await proc.exit_code() == 3, proc.output
    assert proc.stdout[:2] == ["start:db", "stop:db"]
    assert "ConnectionError: database unreachable" in proc.output
    assert "failed to start" in proc.output


async def test_failing_init_exits_with_code_3_and_starts_nothing() -> None:
    """An init hook that raises: no event loop, no start hook, exit code 3."""
    async with Tether(*run_args("failing_init")) as proc:
        assert await proc.exit_code() == 3, proc.output
    assert proc.stdout == ["init:failing"]
    assert "ValueError: bad configuration" in proc.output
    assert "the init stage failed" in proc.output


async def test_invalid_graph_exits_with_code_3_naming_the_cycle() -> None:
    """A dependency cycle is a startup failure: exit code 3, the cycle in the log."""
    async with Tether(*run_args("cycle")) as proc:
        assert await proc.exit_code() == 3, proc.output
    assert "Dependency cycle: Loop -> Loop -> Loop" in proc.output


# ------------------------------------------------------- forced exits: 70


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_second_stop_signal_forces_exit_70_naming_the_stuck_hook(
    sig: signal.Signals,
) -> None:
    """A stop hook that hangs: the second signal ends the process at once, code 70."""
    async with Tether(*run_args("slow_stop")) as proc:
        await proc.line("started-hook")
        proc.send(sig)
        await proc.line("stop-begin:slow")
        sent = proc.send(sig)
        assert await proc.exit_code() == 70, proc.output
        assert proc.exited_at is not None
        assert proc.exited_at - sent < 2.0
    assert f"second {sig.name} received: forcing exit with code 70" in proc.output
    assert "SlowStop[slow] is stopping" in proc.output
    # (in `say` if the signal caught the hook just before it suspended)
    assert re.search(
        r"its stop hook is (blocking the event loop )?at \S*apps.py:\d+ in (stop|say)", proc.output
    )


async def test_deadline_ends_a_task_that_swallows_cancellation() -> None:
    """A task that swallows CancelledError cannot keep the process: 70 by the deadline."""
    async with Tether(*run_args("swallow", "--shutdown-timeout", "1.5")) as proc:
        await proc.line("started-hook")
        sent = proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 70, proc.output
        assert proc.exited_at is not None
        assert 1.4 < proc.exited_at - sent < 5.0
    assert "shutdown deadline of 1.5s passed (SIGTERM received)" in proc.output
    assert "'Swallower[swallower].stubborn'" in proc.output
    assert "apps.py" in proc.output  # where it is suspended
    assert "in stubborn" in proc.output


async def test_deadline_ends_a_stop_hook_that_blocks_the_loop() -> None:
    """A stop hook that blocks the event loop: the deadline still fires and names it."""
    async with Tether(*run_args("block_stop", "--shutdown-timeout", "1")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 70, proc.output
    assert "shutdown deadline of 1s passed" in proc.output
    blocking = r"its stop hook is blocking the event loop at \S*apps.py:\d+ in stop"
    assert re.search(blocking, proc.output)
    assert "Blocker[blocker] is stopping" in proc.output


async def test_second_signal_forces_exit_even_while_the_loop_is_blocked() -> None:
    """The handlers run outside the loop: a blocked loop cannot swallow the second one."""
    async with Tether(*run_args("block_stop")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        await proc.line("stop-begin:blocker")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 70, proc.output
    assert "second SIGTERM received: forcing exit" in proc.output


# ------------------------------------------------------------------ reload


async def test_sighup_reloads_with_reloading_then_ready(tmp_path: Path) -> None:
    """SIGHUP runs the reload stage, wrapped in RELOADING=1 (+ MONOTONIC_USEC), READY=1."""
    async with (
        FakeSystemd(tmp_path) as systemd,
        Tether(*run_args("reloading"), env={"NOTIFY_SOCKET": systemd.address}) as proc,
    ):
        await systemd.wait_for("READY=1")
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send(signal.SIGHUP)
        await systemd.wait_for("READY=1", count=2)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    reloading = systemd.messages[systemd.index("RELOADING=1")]
    usec = reloading.get("MONOTONIC_USEC")
    assert usec is not None
    assert before <= int(usec) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    order = [m.keys[0] for m in systemd.messages if m.keys[0] in ("RELOADING", "READY")]
    assert order == ["READY", "RELOADING", "READY"]
    assert systemd.index("RELOADING=1") < systemd.index("X-RELOAD-HOOK=1")
    assert "reload:config:1" in proc.stdout
    assert "reload:root" in proc.stdout


async def test_failing_reload_is_logged_and_the_process_keeps_running(tmp_path: Path) -> None:
    """A reload hook that raises is logged; services keep running; SIGTERM still gives 0."""
    async with (
        FakeSystemd(tmp_path) as systemd,
        Tether(*run_args("reloading"), env={"NOTIFY_SOCKET": systemd.address}) as proc,
    ):
        await systemd.wait_for("READY=1")
        proc.send(signal.SIGHUP)
        await systemd.wait_for("READY=1", count=2)
        proc.send(signal.SIGHUP)
        await systemd.wait_for("READY=1", count=3)
        await proc.line("reload failed; the services keep running", stream="stderr")
        proc.send(signal.SIGHUP)
        await proc.line("reload:config:3")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "RuntimeError: the new configuration is invalid" in proc.output
    assert "stop:config" in proc.stdout


# ------------------------------------------------------------------ status


async def test_sigusr1_prints_the_live_status_tree() -> None:
    """SIGUSR1 prints every service with state, uptime, restarts and suspended tasks."""
    async with Tether(*run_args("status_app")) as proc:
        await proc.line("services started in", stream="stderr")
        proc.send(signal.SIGUSR1)
        await proc.line("tether status: Root[root] is running", stream="stderr")
        await proc.line("task 'Worker[worker].consume'", stream="stderr")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    tree = proc.stderr[next(i for i, x in enumerate(proc.stderr) if "tether status" in x) :]
    assert re.match(r"Root\[root\]  running  up \d+\.\ds  restarts 0", tree[1])
    assert re.search(r"├── Worker\[worker\]  running  up \d+\.\ds  restarts 0", tree[2])
    assert re.search(
        r"│   └── task 'Worker\[worker\].consume' at \S*apps.py:\d+ in consume", tree[3]
    )
    assert re.search(r"└── Step\[db\]  running", tree[4])


# ----------------------------------------------------------- systemd notify


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_notify_ready_only_after_started_and_stopping_before_stop_hooks(
    tmp_path: Path, abstract: bool
) -> None:
    """READY=1 follows the started stage; STOPPING=1 precedes the first stop hook."""
    async with FakeSystemd(tmp_path, abstract=abstract) as systemd:
        env = {"NOTIFY_SOCKET": systemd.address}
        async with Tether(*run_args("idle"), env=env) as proc:
            await systemd.wait_for("READY=1")
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
    assert systemd.index("X-STARTED-HOOK=1") < systemd.index("READY=1")
    first_stop_hook = min(i for i, m in enumerate(systemd.messages) if m.keys[0] == "X-STOP-HOOK")
    assert systemd.index("READY=1") < systemd.index("STOPPING=1") < first_stop_hook
    statuses = [m.get("STATUS") for m in systemd.messages if m.get("STATUS")]
    assert any(s and s.startswith("start") for s in statuses[:3]), statuses
    assert any(s and s.startswith("stop") for s in statuses[-3:]), statuses
    assert systemd.texts().count("READY=1") == 1


async def test_nothing_is_sent_without_notify_socket() -> None:
    """Without NOTIFY_SOCKET the runner sends nothing and says nothing about systemd."""
    async with Tether(*run_args("idle")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "systemd" not in proc.output


async def test_watchdog_pings_every_half_interval(tmp_path: Path) -> None:
    """WATCHDOG_USEC=200000: a WATCHDOG=1 about every 0.1 s while running."""
    async with FakeSystemd(tmp_path) as systemd:
        env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
        async with Tether(*run_args("idle"), env=env) as proc:
            await systemd.wait_for("WATCHDOG=1", count=5)
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
    pings = [m.arrived for m in systemd.messages if m.text == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert min(gaps) > 0.05, gaps
    assert sorted(gaps)[len(gaps) // 2] < 0.2, gaps


async def test_watchdog_is_not_ours_when_watchdog_pid_names_another_process(
    tmp_path: Path,
) -> None:
    """WATCHDOG_PID of another process: no pings (the watchdog belongs to it)."""
    async with FakeSystemd(tmp_path) as systemd:
        env = {
            "NOTIFY_SOCKET": systemd.address,
            "WATCHDOG_USEC": "100000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        async with Tether(*run_args("idle"), env=env) as proc:
            await systemd.wait_for("READY=1")
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
    assert "WATCHDOG=1" not in systemd.texts()


async def test_blocked_event_loop_stops_watchdog_pings(tmp_path: Path) -> None:
    """Pings come from the loop: while it is blocked for a second, none are sent."""
    async with FakeSystemd(tmp_path) as systemd:
        env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "100000"}
        async with Tether(*run_args("loop_blocker"), env=env) as proc:
            await systemd.wait_for("WATCHDOG=1", count=3)
            proc.send(signal.SIGUSR2)
            await systemd.wait_for("X-BLOCK=end")
            after = len(systemd.messages)
            pings = systemd.texts().count("WATCHDOG=1")
            await systemd.wait_for("WATCHDOG=1", count=pings + 2)
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
    begin, end = systemd.index("X-BLOCK=begin"), systemd.index("X-BLOCK=end")
    assert end == begin + 1  # nothing at all between: the loop was blocked
    blocked = systemd.messages[end].arrived - systemd.messages[begin].arrived
    assert blocked > 0.9
    assert any(m.text == "WATCHDOG=1" for m in systemd.messages[after:])  # pings resume


# ----------------------------------------------------------- loop, logging


async def test_uvloop_is_the_default_and_asyncio_can_be_chosen() -> None:
    """`auto` picks uvloop when installed; --loop asyncio picks the standard loop."""
    pytest.importorskip("uvloop")
    for choice, expected in (("auto", "uvloop"), ("asyncio", "asyncio")):
        async with Tether(*run_args("idle", "--loop", choice)) as proc:
            await proc.line("started-hook")
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
        assert f"{expected} event loop" in proc.output


async def test_plain_log_lines_carry_service_and_duration() -> None:
    """The plain format: one line per event, with the service name and a duration."""
    async with Tether(*run_args("idle")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    pattern = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO +tether\.lifecycle: "
    assert any(re.match(pattern + r"Step\[db\] started in \d+\.\d\d ms$", x) for x in proc.stderr)
    assert any(re.match(pattern + r"Step\[db\] stopped in \d+\.\d\d ms$", x) for x in proc.stderr)


async def test_json_logs_are_one_object_per_line_with_fields() -> None:
    """--log-format json: every stderr line is a JSON object; events carry fields."""
    async with Tether("run", f"{APPS}:idle", "--log-format", "json") as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    records = [json.loads(line) for line in proc.stderr]
    started = [r for r in records if r.get("state") == "running"]
    assert {r["service"] for r in started} >= {"Step[db]", "Root[root]"}
    assert all(isinstance(r["duration_ms"], float) for r in started)
    assert all(r["level"] == "info" and r["logger"] == "tether.lifecycle" for r in started)


async def test_log_level_debug_shows_the_beginnings_too() -> None:
    """--log-level debug adds the transitions that INFO leaves out (starting, stages)."""
    async with Tether(*run_args("idle", "--log-level", "debug")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "DEBUG   tether.lifecycle: Step[db] starting" in proc.output
    assert "DEBUG   tether.lifecycle: stage start: 4 services" in proc.output


async def test_unhandled_loop_exceptions_are_logged() -> None:
    """An exception nobody handles in a loop callback is logged with its traceback."""
    async with Tether(*run_args("loop_error")) as proc:
        await proc.line("started-hook")
        await proc.line("ZeroDivisionError: nobody handles this", stream="stderr")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "ERROR   tether.loop: Exception in callback" in proc.output

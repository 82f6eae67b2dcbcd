"""SIGHUP to a process that has nothing to reload: a graceful stop, as a hang-up should be.

The default disposition of SIGHUP ends a process; tether takes it over to run the
``reload`` stage. When no service in the graph has a reload hook there is nothing to
run, and closing the terminal must not leave ``tether run`` holding its port: the
hang-up stops the graph gracefully (exit code 0), and a second signal forces the exit.
"""

from __future__ import annotations

import signal

from tests.process.harness import Tether

APP = "tests.process.hangup_app"
PLAIN = ("--log-format", "plain")


async def test_sighup_stops_gracefully_when_nothing_reloads() -> None:
    """No reload hook anywhere: SIGHUP stops every service in reverse order, code 0."""
    async with Tether("run", f"{APP}:plain", *PLAIN) as proc:
        await proc.line("services started in", stream="stderr")
        proc.send(signal.SIGHUP)
        assert await proc.exit_code() == 0, proc.output
    assert proc.stdout == ["start:db", "start:api", "stop:api", "stop:db"], proc.output
    assert "SIGHUP received and no service in the graph reloads" in proc.output
    assert "reloaded" not in proc.output


async def test_sighup_still_reloads_when_a_service_has_a_reload_hook() -> None:
    """A dependency with on_reload: SIGHUP reloads and the process keeps running."""
    async with Tether("run", f"{APP}:reloadable", *PLAIN) as proc:
        await proc.line("services started in", stream="stderr")
        proc.send(signal.SIGHUP)
        await proc.line("reload:config")
        await proc.line("reloaded in", stream="stderr")
        assert proc.proc is not None
        assert proc.proc.returncode is None
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert proc.stdout[-2:] == ["stop:api", "stop:config"]


async def test_a_second_signal_after_a_hangup_stop_forces_the_exit() -> None:
    """The hang-up began the graceful stop; a SIGTERM then forces it, code 70."""
    async with Tether("run", f"{APP}:stuck", *PLAIN) as proc:
        await proc.line("services started in", stream="stderr")
        proc.send(signal.SIGHUP)
        await proc.line("stop-begin:api")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 70, proc.output
    assert "second SIGTERM received: forcing exit" in proc.output


async def test_a_second_hangup_forces_the_exit_too() -> None:
    """Two hang-ups, as two Ctrl-C: the second forces."""
    async with Tether("run", f"{APP}:stuck", *PLAIN) as proc:
        await proc.line("services started in", stream="stderr")
        proc.send(signal.SIGHUP)
        await proc.line("stop-begin:api")
        proc.send(signal.SIGHUP)
        assert await proc.exit_code() == 70, proc.output


async def test_sighup_during_a_start_that_cannot_reload_stops_it() -> None:
    """A hang-up while starting a graph with nothing to reload interrupts the start."""
    async with Tether("run", f"{APP}:slow", *PLAIN) as proc:
        await proc.line("start-begin:db")
        proc.send(signal.SIGHUP)
        assert await proc.exit_code() == 0, proc.output
    assert "start:api" not in proc.stdout
    assert "start interrupted by SIGHUP" in proc.output

"""systemPY's programs and their tether ports: the same stages in the same order.

The peer is systemPY 0.1.7 (the `peers` extra; the seed describes 0.0.2). The daemon
runs under both, stopped by a real signal; the REPL port runs under `tether repl`.
"""

from __future__ import annotations

import asyncio
import signal

from tests.process.harness import Tether

from .programs import MIGRATION, needs, run

HERE = MIGRATION / "systempy"
STARTED = [
    "ON INIT",
    "\tPRE STARTUP",
    "\t\tON STARTUP",
    "\t\t\tCUSTOM BEFORE POST STARTUP",
    "\t\t\tPOST STARTUP",
]
STOPPED = [
    "\t\t\tCUSTOM BEFORE PRE SHUTDOWN",
    "\t\t\tPRE SHUTDOWN",
    "\t\tON SHUTDOWN",
    "\tPOST SHUTDOWN",
    "\tALSO AFTER POST SHUTDOWN",
    "\tAFTER ALSO AFTER POST SHUTDOWN",
    "ON EXIT",
]


def stages(lines: list[str]) -> list[str]:
    """The hooks' lines: without the PID line and the main loop's `MAIN`."""
    return [line for line in lines if not line.startswith("PID") and line != "MAIN"]


async def test_ctrl_c_runs_every_stage_in_systempys_order() -> None:
    """Custom stages before and after built-in ones, forward, gather and backward."""
    port = await run(HERE / "tether_daemon.py", ready="MAIN", sig=signal.SIGINT)
    assert stages(port.stdout) == [*STARTED, *STOPPED], port.output
    assert port.code == 0
    needs("systempy")
    original = await run(HERE / "original_daemon.py", ready="MAIN", sig=signal.SIGINT)
    assert stages(original.stdout) == stages(port.stdout), original.output
    assert original.code == port.code


async def test_sigterm_stops_the_port_gracefully_where_systempy_dies() -> None:
    """systemPY handles SIGINT only: SIGTERM kills it before any stop hook (-15).
    The tether port runs the same stop stages as on Ctrl-C and exits 0."""
    port = await run(HERE / "tether_daemon.py", ready="MAIN", sig=signal.SIGTERM)
    assert stages(port.stdout) == [*STARTED, *STOPPED], port.output
    assert port.code == 0
    needs("systempy")
    original = await run(HERE / "original_daemon.py", ready="MAIN", sig=signal.SIGTERM)
    assert stages(original.stdout) == STARTED, original.output
    assert original.code == -signal.SIGTERM


async def test_the_repl_port_starts_the_units_and_stops_them_on_exit() -> None:
    """`tether repl tether_repl:unit`: config, database and root bound; EOF stops all."""
    proc = Tether("repl", "tether_repl:unit", env={"PYTHONPATH": str(HERE)})
    try:
        await proc.start(stdin=asyncio.subprocess.PIPE)
        await proc.line("bound: root, app_repl, database", stream="stderr")
        assert proc.proc is not None
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(b"print(root.config.app_name, database.users(), database.running)\n")
        await proc.line("MyProjectRepl ['ada'] True")
        proc.proc.stdin.close()
        assert await proc.exit_code() == 0, proc.output
    finally:
        await proc.__aexit__()

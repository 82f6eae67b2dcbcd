"""examples/stages.py, systemPY's example daemon in tether, run as a real process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.conftest import bounded

EXAMPLE = Path(__file__).parents[2] / "examples" / "stages.py"


async def test_stages_example_prints_every_stage_in_order() -> None:
    """From init to exit, custom stages in their places; SIGTERM stops it with code 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while "POST STARTUP" not in lines:
            line = await bounded(proc.stdout.readline())
            assert line, f"ended early: {lines}"
            lines.append(line.decode().strip())
        proc.send_signal(signal.SIGTERM)
        out, err = await bounded(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines += [line.strip() for line in out.decode().splitlines()]
    assert proc.returncode == 0, err.decode()
    assert lines[1:] == [
        "ON INIT",
        "ON STARTUP",
        "CUSTOM BEFORE POST STARTUP",
        "POST STARTUP",
        "CUSTOM BEFORE PRE SHUTDOWN",
        "PRE SHUTDOWN",
        "ON SHUTDOWN",
        "POST SHUTDOWN",
        "ALSO AFTER POST SHUTDOWN",
        "AFTER ALSO AFTER POST SHUTDOWN",
        "ON EXIT",
    ]

"""The demo, run as a user runs it: a real process, a real socket, a real Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

from tests.conftest import bounded

DEMO = Path(__file__).parents[2] / "examples" / "demo.py"


async def _line(stream: asyncio.StreamReader) -> str:
    return (await bounded(stream.readline())).decode().rstrip("\n")


async def _read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> str:
    while True:
        line = await _line(stream)
        seen.append(line)
        if needle in line:
            return line
        if not line and stream.at_eof():
            raise AssertionError(f"{needle!r} never printed; output was {seen}")


async def test_demo_serves_and_stops_gracefully_on_ctrl_c(tmp_path: Path) -> None:
    """Start the demo, SET/GET over TCP, send SIGINT: it stops in reverse order, exit 0."""
    db = tmp_path / "demo.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DEMO),
        "--port",
        "0",
        "--db",
        str(db),
        "--stats-every",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        listening = await _read_until(proc.stdout, "listening on", output)
        port = int(listening.split()[2].rsplit(":", 1)[1])
        await _read_until(proc.stdout, "LineServer  running", output)

        reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
        for command, reply in [
            ("SET greeting hello tether", "OK"),
            ("GET greeting", "VALUE hello tether"),
            ("GET missing", "NOTFOUND"),
            ("KEYS", "KEYS greeting"),
            ("STATS", "STATS connections=1 commands=5 keys=1"),
            ("NOPE", "ERR commands: SET key value | GET key | DEL key | KEYS | STATS | QUIT"),
        ]:
            writer.write(command.encode() + b"\n")
            assert await _line(reader) == reply

        proc.send_signal(signal.SIGINT)
        # The connected client is told, then closed; the process exits cleanly.
        assert await _line(reader) == "BYE server stopping"
        writer.close()
        await bounded(proc.wait(), 10)
        output += (await bounded(proc.stdout.read())).decode().splitlines()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0, output
    stops = [line.split()[0] for line in output if line.split()[1:2] == ["stopped"]]
    assert stops == ["LineServer", "Stats", "Store"]
    assert output[-1] == "stopped cleanly"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT value FROM kv").fetchall() == [("hello tether",)]


async def test_demo_stops_on_sigterm_too(tmp_path: Path) -> None:
    """SIGTERM, as systemd or Kubernetes send it, stops the demo gracefully."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DEMO),
        "--port",
        "0",
        "--db",
        str(tmp_path / "d.sqlite3"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        await _read_until(proc.stdout, "LineServer  running", output)
        proc.send_signal(signal.SIGTERM)
        await bounded(proc.wait(), 10)
        output += (await bounded(proc.stdout.read())).decode().splitlines()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert output[-1] == "stopped cleanly"

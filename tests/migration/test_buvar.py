"""buvar's plugin app and its tether port, both forked into two workers on one socket.

The peer is buvar 0.44.18 (the `peers` extra). The original runs `fork.stage(prepare,
forks=2, sockets=[BIND])`; the port runs as `tether run --plugin tether_web --workers 2
--bind BIND`. Each test calls the shared socket, sends a real signal to the master, and
compares what the workers printed and the master's exit code.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import bounded
from tests.process.harness import Tether

from .programs import MIGRATION, needs

HERE = MIGRATION / "buvar"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def serve_and_signal(original: bool, sig: signal.Signals) -> tuple[list[str], str, int]:
    """Start the app, call it once, signal the master; (its lines, the answer, exit code)."""
    port = free_port()
    bind = f"tcp://127.0.0.1:{port}"
    env = {"BIND": bind, "APP_GREETING_TEXT": "howdy", "PYTHONPATH": str(HERE)}
    if original:
        proc = Tether(env=env, program=(str(HERE / "original_web.py"),))
    else:
        args = ("run", "--plugin", "tether_web", "--workers", "2", "--bind", bind)
        proc = Tether(*args, "--log-format", "json", env=env)
    await proc.start()
    try:
        await proc.until(
            # Two workers print to one pipe: their lines may interleave mid-line.
            lambda: len(re.findall(r"serving \d+", "".join(proc.stdout))) == 2,
            "two workers serving",
            30,
        )
        reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
        writer.write(b"hello\n")
        answer = (await bounded(reader.readline())).decode().strip()
        writer.close()
        await writer.wait_closed()
        proc.send(sig)
        code = await proc.exit_code(60)
    finally:
        await proc.__aexit__()
    # Per worker, with the pid taken out: what it printed, in its order. The workers
    # share the pipe, so one's line may be cut by another's: find each "what pid".
    workers: dict[str, list[str]] = {}
    for match in re.finditer(r"(serving|server closed|teardown) (\d+)", "\n".join(proc.stdout)):
        workers.setdefault(match.group(2), []).append(match.group(1))
    lines = sorted(" / ".join(steps) for steps in workers.values())
    return lines, answer, code


GRACEFUL = ["serving / server closed / teardown"] * 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
async def test_the_plugin_app_serves_on_the_shared_socket_and_stops(sig: signal.Signals) -> None:
    """Config from TOML and APP_*, an adapter given baz, the socket the master bound; on
    a stop signal each worker closes its server, then the teardown runs; exit code 0."""
    lines, answer, code = await serve_and_signal(original=False, sig=sig)
    assert answer == "howdy baz"
    assert lines == GRACEFUL
    assert code == 0
    needs("buvar")
    lines, original_answer, original_code = await serve_and_signal(original=True, sig=sig)
    assert original_answer == answer
    assert original_code == code
    if sig is signal.SIGINT:
        assert lines == GRACEFUL  # buvar's cancel event, then its teardown
    else:
        # buvar forwards SIGTERM to workers that have no handler for it: they die at
        # once, without closing the server or running the teardown.
        assert lines == ["serving"] * 2


def test_the_pytest_example_runs_on_tethers_plugin() -> None:
    """buvar's `buvar_plugins` marker and `buvar_load` fixture, as tether's
    `tether_plugins` marker and fixture: both tests of the port pass.

    buvar's original is not run: its pytest plugin needs pytest-mock (undeclared) and
    async fixtures that pytest-asyncio 1.x (which the suite uses) no longer runs.
    """
    result = subprocess.run(  # noqa: S603 - our interpreter, the port's own file
        [
            sys.executable,
            *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:buvar"),
            *("-c", os.devnull, "--rootdir", str(HERE)),
            *("-o", "asyncio_default_fixture_loop_scope=function", "-W", "error"),
            "tether_test_plugins.py",
        ],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

"""Run a peer's program and its tether port the same way, and report what each did.

A program runs as a real subprocess of this interpreter (the peers are installed in
the same environment, pinned in the `peers` extra), from its own directory. A test
waits for a line, sends a real signal if the behaviour is about signals, and compares
the two runs: what they printed (the hooks' order), and the exit code.
"""

from __future__ import annotations

import importlib.util
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.process.harness import Tether

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = ROOT / "docs" / "examples" / "migration"


def needs(module: str) -> None:
    """Skip the test when the peer is not installed (`pip install -e '.[peers]'`)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed; the `peers` extra pins it")


@dataclass
class Outcome:
    """What a program did: its output lines and how it exited."""

    stdout: list[str]
    stderr: list[str]
    code: int
    output: str


async def run(
    path: Path,
    *args: str,
    ready: str | None = None,
    stream: str = "stdout",
    sig: signal.Signals | None = None,
    env: dict[str, str] | None = None,
    seconds: float = 20,
) -> Outcome:
    """Run `path`; once `ready` shows on `stream`, send `sig`; wait for it to exit."""
    proc = Tether(*args, program=(str(path),), env=env)
    await proc.start()
    try:
        if ready is not None:
            await proc.line(ready, stream=stream, seconds=seconds)
        if sig is not None:
            proc.send(sig)
        code = await proc.exit_code(seconds)
    finally:
        await proc.__aexit__()
    return Outcome(proc.stdout, proc.stderr, code, proc.output)

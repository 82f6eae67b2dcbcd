"""tether as PID 1 of a PID namespace, as in a container without ``--init``.

``unshare --pid --fork --mount-proc`` makes the command PID 1 of a new namespace (with
its own /proc, so the application reads its namespace's processes). Skipped where the
tool is missing or the machine does not allow new namespaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process.harness import Tether

APPS = "tests.process.apps"


def _unshare_works() -> str | None:
    """None when a PID namespace can be made here, else why not."""
    if not sys.platform.startswith("linux"):
        return "PID namespaces are Linux only"
    tool = shutil.which("unshare")
    if tool is None:
        return "unshare (util-linux) is not installed"
    tried = subprocess.run(  # noqa: S603 - a fixed command
        [tool, "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if tried.returncode != 0:
        return f"unshare --pid --fork is not permitted here: {tried.stderr.strip()}"
    return None


REASON = _unshare_works()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

# Runs the rest of the command line as PID 1 of a new PID namespace.
AS_PID1 = (
    "-c",
    (
        "import os, shutil, sys\n"
        "tool = shutil.which('unshare')\n"
        "os.execv(tool, [tool, '--pid', '--fork', '--mount-proc', sys.executable, "
        "*sys.argv[1:]])\n"
    ),
)


def init_pid(launcher: int) -> int:
    """The host pid of the namespace's PID 1: the child of ``unshare``."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.parametrize("workers", [None, 2])
async def test_as_pid1_orphans_are_reaped_and_children_keep_their_statuses(
    workers: int | None,
) -> None:
    """Orphans reparented to PID 1 are reaped; the application's own children's exit
    statuses still reach it; SIGTERM to PID 1 stops the application gracefully, code 0."""
    args = ["-m", "tether", "run", f"{APPS}:orphans", "--log-format", "plain"]
    if workers:
        args += ["--workers", str(workers), "--bind", "tcp://127.0.0.1:0"]
    async with Tether(*args, program=AS_PID1) as proc:
        await proc.line("orphan reaped")
        await proc.line("statuses 7 5")
        line = await proc.line("orphan ")
        if not workers:
            assert "my pid 2, parent 1" in line, proc.output
        assert proc.proc is not None
        os.kill(init_pid(proc.proc.pid), signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "orphan left as" not in proc.output
    assert "stopped cleanly" in proc.output


async def test_as_pid1_the_exit_code_passes_through() -> None:
    """PID 1 exits with the application's code: a failed start is still 3."""
    args = ["-m", "tether", "run", f"{APPS}:failing_start", "--log-format", "plain"]
    async with Tether(*args, program=AS_PID1) as proc:
        assert await proc.exit_code() == 3, proc.output

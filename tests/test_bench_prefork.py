"""The pre-fork benchmark keeps working: its smoke run serves, kills, stops and reloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def test_prefork_smoke_run_prints_throughput_respawn_and_failed_requests() -> None:
    """`run.py --smoke --workloads prefork` measures tether (and gunicorn if installed)."""
    pytest.importorskip("aiohttp")
    done = subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, str(RUN), "--smoke", "--workloads", "prefork"],
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for line in (
        "Pre-fork serving",
        "requests/s, 1 worker(s)",
        "requests/s, 2 worker(s)",
        "respawn after SIGKILL",
        "tether --preload",
        "SIGTERM under load",
        "SIGHUP reloads under load",
    ):
        assert line in table, table

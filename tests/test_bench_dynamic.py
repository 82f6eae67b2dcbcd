"""The dynamic supervision benchmark runs end to end in its smoke mode."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_dynamic.py"


def test_smoke_run_reports_each_workload_and_memory_per_child() -> None:
    """`bench_dynamic.py --smoke` finishes with a row per workload and the memory line."""
    done = subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, str(BENCH), "--smoke"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "us per child" in done.stdout
    for workload in ("add", "add (container)", "remove", "exit", "stop", "floor add"):
        assert f"\n{workload} " in done.stdout
    assert "bytes per running child" in done.stdout

"""The restart benchmark runs end to end in its smoke mode and prints median and p99."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_restart.py"


def test_smoke_run_reports_median_and_p99_per_strategy() -> None:
    """`bench_restart.py --smoke` finishes with a row per strategy."""
    done = subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, str(BENCH), "--smoke"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "median us" in done.stdout
    assert "p99 us" in done.stdout
    for strategy in ("one_for_one", "rest_for_one", "one_for_all"):
        assert strategy in done.stdout

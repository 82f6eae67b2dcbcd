"""The observation benchmark runs end to end in its smoke mode."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_observe.py"


def test_smoke_run_reports_the_scrape_and_the_cost_of_tracing() -> None:
    """`bench_observe.py --smoke` prints the scrape's size and a row per way of watching."""
    pytest.importorskip("prometheus_client")
    pytest.importorskip("opentelemetry.sdk")
    done = subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, str(BENCH), "--smoke"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "/metrics for 10 services" in done.stdout
    for case in ("nothing subscribed", "recorder (the runner's)", "tracer, SDK in memory"):
        assert case in done.stdout

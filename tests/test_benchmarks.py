"""The benchmark script keeps working: its smoke mode runs every workload end to end."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RUN = BENCHMARKS / "run.py"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, str(RUN), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_smoke_run_prints_the_table_of_every_workload_with_its_targets() -> None:
    """`run.py --smoke` finishes and prints start/stop per shape, import, add_task and timers."""
    done = bench()
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for line in (
        "Start + stop of N trivial services, every hook suspending once",
        "Start + stop of N trivial services, hooks that never suspend",
        "raw bare    = THE FLOOR OF THE TARGETS",
        "Memory kept per running service",
        "import tether (over asyncio)",
        "add_task spawn + completion",
        "timer @10 ms: mean lateness",
    ):
        assert line in table
    rows = [line.split() for line in table.splitlines()]
    assert [r[0] for r in rows if r[1:2] == ["50"]] == ["chain", "fan", "tree"] * 3
    assert "<= 2.0x" in table
    assert "<= 1.5x" in table
    assert "<= 5.00 us/svc" in table
    assert "<= 700 B" in table
    assert "< 15 ms" in table


def test_json_output_records_medians_ratios_and_a_stdlib_only_import() -> None:
    """`--json` gives tether's median start/stop with ratios to both floors, and that
    `import tether` brought in no third-party module."""
    done = bench(
        "--json", "--impls", "tether", "--shapes", "tree", "--workloads", "startstop,import"
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    ours_both = [row for row in results["startstop"] if row["impl"] == "tether"]
    assert sorted(row["hooks"] for row in ours_both) == ["suspend", "sync"]
    ours = ours_both[0]
    assert "error" not in ours
    assert ours["total"] == ours["runs"][0]["start"] + ours["runs"][0]["stop"]
    assert ours["x_raw-generic"] > 0
    assert ours["x_raw-bare"] > 0
    assert results["import"]["third_party"] == []
    assert results["import"]["tether"] > 0


def test_import_check_names_the_third_party_modules_an_import_brings_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The "no third-party module" check is real: importing pytest is caught pulling in pluggy."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    micro = importlib.import_module("micro")
    result = micro.import_once("pytest", dict(os.environ), 30)
    assert "pluggy" in result["third_party"]
    assert not any(m.startswith(("pytest", "asyncio", "json")) for m in result["third_party"])

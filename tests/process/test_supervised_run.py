"""Supervision through `tether run` in a real process: restarts logged, exhaustion exits 1."""

from __future__ import annotations

from tests.process.harness import Tether


async def test_intensity_exhausted_at_the_root_exits_1_after_logging_each_restart() -> None:
    """Two restarts are logged with cause and count; the third crash gives up: code 1."""
    async with Tether("run", "tests.process.supervised_app:app", "--log-format", "plain") as proc:
        assert await proc.exit_code() == 1, proc.output
    assert [line for line in proc.stdout if line.startswith("start:flaky")] == [
        "start:flaky:1",
        "start:flaky:2",
        "start:flaky:3",
    ]
    output = proc.output
    for count in (1, 2):
        assert (
            f"Flaky[flaky] restarted by Supervisor[root] (restart {count}): "
            f"RuntimeError: flaky broke on run {count}" in output
        ), output
    assert "Supervisor[root] gave up: 3 restarts within 60s exceed max_restarts=2" in output
    assert "RestartIntensityError" in output
    # Every child stopped, last started first, before the process ended.
    stops = [line for line in proc.stdout if line.startswith("stop:")]
    assert stops[-2:] == ["stop:flaky", "stop:steady"]

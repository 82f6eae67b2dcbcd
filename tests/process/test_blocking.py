"""The blocked-loop detector in a real process: `tether run --blocking-timeout`.

A service's background task blocks the event loop with a real `time.sleep(1.0)` on
SIGUSR2; the detector names it while it blocks, the fake systemd sees no watchdog ping
meanwhile, and SIGUSR1 shows the count afterwards.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.process.harness import FakeSystemd, Tether

APPS = "tests.process.apps"
PLAIN = ("--log-format", "plain")


def run_args(app: str, *extra: str) -> tuple[str, ...]:
    return ("run", f"{APPS}:{app}", *PLAIN, *extra)


async def test_a_blocking_call_is_named_with_its_stack_service_and_task() -> None:
    """The warning names the service, its task and the line, with the stack inwards."""
    async with Tether(*run_args("stalling", "--blocking-timeout", "0.2")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGUSR2)
        await proc.line("unblocked")
        await proc.line("the event loop turned again", stream="stderr")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    warning = next(i for i, line in enumerate(proc.stderr) if "has not turned for" in line)
    head = proc.stderr[warning]
    assert "WARNING" in head
    assert "(blocking_timeout 0.2s)" in head
    assert re.search(
        r"Stalling\[cache\] \(its task 'Stalling\[cache\]\.crunch'\) at \S*apps\.py:\d+ in lookup",
        head,
    ), head
    stack = "\n".join(proc.stderr[warning + 1 : warning + 8])
    assert re.search(r'apps\.py", line \d+, in crunch\n\s+self\.lookup\(\)', stack), stack
    assert re.search(r'apps\.py", line \d+, in lookup\n\s+time\.sleep\(1\.0\)', stack), stack
    turned = next(line for line in proc.stderr if "the event loop turned again" in line)
    seconds = float(re.search(r"after (\d+\.\d+)s", turned).group(1))  # type: ignore[union-attr]
    assert 0.2 <= seconds < 5
    assert "the event loop was blocked 1 time(s) past 0.2s" in proc.output


async def test_sigusr1_counts_the_blocks_for_the_process_and_the_service() -> None:
    """The status header counts them; the service's line says how often and how long."""
    async with Tether(*run_args("stalling", "--blocking-timeout", "0.2")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGUSR2)
        await proc.line("the event loop turned again", stream="stderr")
        proc.send(signal.SIGUSR1)
        await proc.line("tether status: Root[root] is running", stream="stderr")
        await proc.line("blocked the event loop", stream="stderr")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    header = proc.stderr.index(next(x for x in proc.stderr if "tether status:" in x))
    assert re.match(
        r"event loop: blocked 1 time\(s\) past 0\.2s, longest \d+\.\d\ds, last: "
        r"Stalling\[cache\] .* in lookup",
        proc.stderr[header + 1],
    ), proc.stderr[header + 1]
    line = next(x for x in proc.stderr if "Stalling[cache]  running" in x)
    assert re.search(r"blocked the event loop 1x \(longest \d+\.\d\ds\)", line), line


async def test_the_watchdog_gets_no_ping_while_the_loop_is_blocked(tmp_path: Path) -> None:
    """The detector's thread never pings: systemd hears nothing but the STATUS saying why."""
    async with FakeSystemd(tmp_path) as systemd:
        env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
        args = run_args("stalling", "--blocking-timeout", "0.2")
        async with Tether(*args, env=env) as proc:
            await systemd.wait_for("WATCHDOG=1", count=3)
            proc.send(signal.SIGUSR2)
            await systemd.wait_for("X-BLOCK=end")
            pings = systemd.texts().count("WATCHDOG=1")
            await systemd.wait_for("WATCHDOG=1", count=pings + 2)  # they resume
            proc.send(signal.SIGTERM)
            assert await proc.exit_code() == 0, proc.output
    begin, end = systemd.index("X-BLOCK=begin"), systemd.index("X-BLOCK=end")
    during = systemd.messages[begin + 1 : end]
    assert [m.text for m in during if "WATCHDOG" in m.text] == []
    assert len(during) == 1, during  # what the detector's thread says, and nothing else
    status = during[0].get("STATUS") or ""
    assert status.startswith("running; the event loop is blocked: Stalling[cache]"), status
    after = [m.get("STATUS") or "" for m in systemd.messages[end:]]
    assert any("the event loop was blocked 1 time(s)" in text for text in after), after


async def test_the_detector_is_off_by_default() -> None:
    """Without the option a blocked loop is not reported (and no thread watches it)."""
    async with Tether(*run_args("stalling")) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGUSR2)
        await proc.line("unblocked")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "tether.blocking" not in proc.output
    assert "blocked" not in "\n".join(proc.stderr)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
async def test_a_blocking_timeout_that_is_not_a_positive_number_is_a_usage_error(
    value: str,
) -> None:
    """Exit code 2 and the reason, before anything is imported or started."""
    async with Tether(*run_args("stalling", "--blocking-timeout", value)) as proc:
        assert await proc.exit_code() == 2, proc.output
    assert "blocking_timeout must be a positive, finite number of seconds" in proc.output
    assert "start:" not in proc.output

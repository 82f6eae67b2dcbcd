"""mode's programs and their tether ports: the same hooks, signals and exit codes.

The peer is mode-streaming 0.7.1 (the `peers` extra; the seed describes mode 1.10,
whose API it continues). Each test runs mode's program under `mode.Worker` and the
port under `tether.run`, sends the same real signal, and compares what happened. The
one documented difference is held here too: mode starts a service before its children
(`on_start`, then each child, then `on_started`), tether starts dependencies first.
"""

from __future__ import annotations

import re
import signal

import pytest

from .programs import MIGRATION, Outcome, needs, run

HERE = MIGRATION / "mode"
SIGNALS = [signal.SIGINT, signal.SIGTERM]
CHILDREN_STARTED = ["STARTING WEBSOCKET SERVER", "SERVING"]
STOPPED = ["APP STOPPING", "STOPPING WEBSERVER", "STOPPING WEBSOCKET SERVER"]


def printed(outcome: Outcome, *, redirected: bool = False) -> list[str]:
    """The program's own lines, in order; mode's Worker logs print() as WARNING lines."""
    if not redirected:
        return outcome.stdout
    return [
        match.group(1)
        for line in outcome.stderr
        if (match := re.search(r"\[WARNING\] (.*?)\s*$", line))
    ]


@pytest.mark.parametrize("sig", SIGNALS, ids=["INT", "TERM"])
async def test_the_tutorial_app_starts_serves_and_stops_as_under_mode(sig: signal.Signals) -> None:
    """Children in the order listed, the thread serving, the timer; stop in reverse; 0."""
    port = await run(HERE / "tether_app.py", ready="REMOVING EXPIRED USERS", sig=sig)
    lines = [line for line in printed(port) if line != "REMOVING EXPIRED USERS"]
    assert lines == [*CHILDREN_STARTED, "APP STARTING", *STOPPED], port.output
    assert port.code == 0
    served = [line for line in port.stderr if "Serving on port" in line]
    assert served, port.output
    assert "[Webserver] Serving on port 0" in served[0]  # self.log names the service
    needs("mode")
    original = await run(
        HERE / "original_app.py", ready="REMOVING EXPIRED USERS", sig=sig, stream="stderr"
    )
    lines = [line for line in printed(original, redirected=True) if "EXPIRED" not in line]
    # mode: the app's on_start runs before its children start; tether: after.
    assert lines == ["APP STARTING", *CHILDREN_STARTED, *STOPPED], original.output
    assert original.code == port.code


MODE_STARTED = ["my: on_start", "other: on_start", "a: on_start", "b: on_start"]
TETHER_STARTED = ["other: on_start", "a: on_start", "b: on_start", "my: on_start"]
THEN = ["my: on_started", "my: executing coroutine"]
STOPPED_SERVICE = ["my: on_stop", "b: on_stop", "a: on_stop", "other: on_stop"]


@pytest.mark.parametrize("sig", SIGNALS, ids=["INT", "TERM"])
async def test_the_graph_snippets_run_as_under_mode(sig: signal.Signals) -> None:
    """add_dependency, on_init_dependencies, add_future, a should_stop loop: same order."""
    port = await run(HERE / "tether_service.py", ready="waking up", sig=sig)
    lines = [line for line in port.stdout if "waking up" not in line]
    assert lines == [*TETHER_STARTED, *THEN, *STOPPED_SERVICE], port.output
    assert port.code == 0
    needs("mode")
    original = await run(HERE / "original_service.py", ready="waking up", sig=sig)
    lines = [line for line in original.stdout if "waking up" not in line]
    assert lines == [*MODE_STARTED, *THEN, *STOPPED_SERVICE], original.output
    assert original.code == port.code

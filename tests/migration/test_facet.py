"""facet's programs and their tether ports (only the import changed) behave the same.

The peer is facet 0.10.1 (the `peers` extra). Each test runs facet's program and the
port, with the same signal where the behaviour is about signals, and compares the
order of the hooks' lines and the exit code.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from .programs import MIGRATION, Outcome, needs, run

HERE = MIGRATION / "facet"


def test_the_ports_differ_from_facets_programs_by_the_import_only() -> None:
    """Side by side on the page, the port is facet's program with one import changed."""
    for name in ("usage", "tree", "blocking"):
        original = (HERE / f"original_{name}.py").read_text().splitlines()[1:]
        port = (HERE / f"tether_{name}.py").read_text().splitlines()[1:]
        changed = [(a, b) for a, b in zip(original, port, strict=True) if a != b]
        assert len(changed) == 1, changed
        assert changed[0][1].startswith("from tether import ")


async def usage(program: str) -> Outcome:
    # logging.basicConfig writes to stderr; Ctrl-C is SIGINT.
    return await run(HERE / program, ready="a started", stream="stderr", sig=signal.SIGINT)


async def test_ctrl_c_stops_the_usage_example_in_reverse_order_as_facet_does() -> None:
    """Start b then a; Ctrl-C: a then b stop, KeyboardInterrupt ends the process."""
    port = await usage("tether_usage.py")
    hooks = [line for line in port.stderr if line.startswith("INFO:root:")]
    assert hooks == [
        "INFO:root:b started",
        "INFO:root:a started",
        "INFO:root:a stopped",
        "INFO:root:b stopped",
    ], port.output
    assert port.stderr[-1] == "KeyboardInterrupt", port.output
    needs("facet")
    original = await usage("original_usage.py")
    assert [line for line in original.stderr if line.startswith("INFO:root:")] == hooks
    assert original.stderr[-1] == "KeyboardInterrupt"
    assert port.code == original.code == -signal.SIGINT


STOPPED = ["a stopped", "d stopped", "b stopped", "c stopped"]


@pytest.mark.parametrize(
    ("sig", "stopped"), [(signal.SIGINT, STOPPED), (signal.SIGTERM, [])], ids=["INT", "TERM"]
)
async def test_a_task_and_mixed_order_run_as_with_facet(
    sig: signal.Signals, stopped: list[str]
) -> None:
    """b and c start together, then d, then a and its task; Ctrl-C stops in reverse.

    Under `asyncio.run`, SIGTERM kills both programs before any stop hook (asyncio
    handles SIGINT only); `tether.run(A())` would stop gracefully on it.
    """
    for program in ("tether_tree.py", "original_tree.py"):
        if program.startswith("original"):
            needs("facet")
        done = await run(HERE / program, ready="task done", sig=sig)
        lines = done.stdout
        assert sorted(lines[:2]) == ["b started", "c started"], done.output  # together
        assert lines[2:5] == ["d started", "start done", "task done"], done.output
        assert lines[5:7] == stopped[:2], done.output  # a, then d
        assert sorted(lines[7:]) == sorted(stopped[2:]), done.output  # b and c together
        assert done.code == -sig


def test_the_blocking_example_prints_the_same() -> None:
    """`with A() as a:` starts b then a and stops a then b, as facet 0.10 does."""
    expected = ["b started", "a started", "a stopped", "b stopped"]
    assert _lines("tether_blocking.py") == expected
    needs("facet")
    assert _lines("original_blocking.py") == expected


def _lines(program: str) -> list[str]:
    result = subprocess.run(  # noqa: S603 - our interpreter, our file
        [sys.executable, str(HERE / program)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=HERE,
    )
    return result.stdout.splitlines()

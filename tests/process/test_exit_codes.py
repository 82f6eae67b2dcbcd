"""The exit-code table, walked row by row with the real command in a subprocess.

Every user error of the command is one line on stderr, ``tether: ...`` naming what was
wrong, and the code the table gives; never a traceback. The other rows are produced by
the situation the table names.
"""

from __future__ import annotations

import signal

import pytest

from tests.process.harness import Tether

APPS = "tests.process.apps"
PLAIN = ("--log-format", "plain")

# Runs the command as if structlog and uvloop were not installed.
WITHOUT_EXTRAS = (
    "-c",
    (
        "import sys\n"
        "sys.modules['structlog'] = None\n"
        "sys.modules['uvloop'] = None\n"
        "from tether._cli import main\n"
        "sys.exit(main())\n"
    ),
)


async def one_line_error(proc: Tether, code: int) -> str:
    """The process exits with ``code`` and says why in one ``tether:`` line; that line."""
    async with proc:
        assert await proc.exit_code() == code, proc.output
    assert proc.stdout == [], proc.output
    assert len(proc.stderr) == 1, proc.output
    assert proc.stderr[0].startswith("tether: "), proc.output
    return proc.stderr[0]


# ------------------------------------------------------------------ 2: usage errors

USAGE_ERRORS = [
    (("run", f"{APPS}:idle", "--nope"), (), "unrecognized arguments: --nope"),
    (
        ("run", f"{APPS}:idle", "--loop", "trio"),
        (),
        "loop must be one of auto, asyncio, uvloop, a module:attr naming",
    ),
    (("frobnicate", f"{APPS}:idle"), (), "invalid choice: 'frobnicate'"),
    (("run",), (), "name what to run: module:attr"),
    (("check", APPS), (), "is not of the form module:attr"),
    (("check", "no_such_module:app"), (), "No module named 'no_such_module'"),
    (("check", f"{APPS}:nothing_here"), (), "has no attribute 'nothing_here'"),
    (("check", f"{APPS}:number"), (), "is 42 (int), not a service"),
    (("check", f"{APPS}:needs_arguments"), (), "needs_arguments(url) has no type annotation"),
    (("run", f"{APPS}:idle", "--shutdown-timeout", "0"), (), "shutdown_timeout must be"),
    (("run", f"{APPS}:idle", "--shutdown-timeout", "soon"), (), "invalid float value: 'soon'"),
    (("run", f"{APPS}:idle", "--workers", "0"), (), "workers= must be an integer >= 1"),
    (("run", f"{APPS}:idle", "--bind", "udp://1.2.3.4:5"), (), "udp://1.2.3.4:5"),
    (("run", f"{APPS}:idle", "--workers", "2", "--boot-timeout", "-1"), (), "boot_timeout="),
    (("run", f"{APPS}:idle", "--log-format", "console"), WITHOUT_EXTRAS, "needs structlog"),
    (("run", f"{APPS}:idle", "--loop", "uvloop"), WITHOUT_EXTRAS, "needs uvloop"),
    (("repl", f"{APPS}:repl_app", "--loop", "uvloop"), WITHOUT_EXTRAS, "needs uvloop"),
    (
        ("run", f"{APPS}:idle", "--workers", "2", "--log-format", "console"),
        WITHOUT_EXTRAS,
        "needs structlog",
    ),
]


@pytest.mark.parametrize(("args", "program", "says"), USAGE_ERRORS)
async def test_a_usage_error_is_one_line_and_exit_code_2(
    args: tuple[str, ...], program: tuple[str, ...], says: str
) -> None:
    """Row 2: a wrong option, a target that is not a runnable service, a missing extra."""
    line = await one_line_error(Tether(*args, program=program), 2)
    assert says in line


# ---------------------------------------------------------- 3: startup failures


STARTUP_ERRORS = [
    (("check", f"{APPS}:cycle"), "Dependency cycle: Loop -> Loop"),
    (("graph", f"{APPS}:cycle"), "Dependency cycle: Loop -> Loop"),
    (
        ("check", f"{APPS}:broken_dependencies"),
        "RuntimeError: the dependencies could not be computed",
    ),
    (
        ("graph", f"{APPS}:broken_dependencies"),
        "RuntimeError: the dependencies could not be computed",
    ),
]


@pytest.mark.parametrize(("args", "says"), STARTUP_ERRORS)
async def test_an_invalid_graph_is_one_line_and_exit_code_3(
    args: tuple[str, ...], says: str
) -> None:
    """Row 3, from `check` and `graph`: a graph that is invalid or cannot be read."""
    line = await one_line_error(Tether(*args), 3)
    assert says in line


async def test_a_graph_that_cannot_be_read_names_where(tmp_path: object) -> None:
    """The one line says which code raised (file, line, function)."""
    line = await one_line_error(Tether("check", f"{APPS}:broken_dependencies"), 3)
    assert "apps.py" in line
    assert "in dependencies" in line


async def test_a_failing_start_exits_with_code_3() -> None:
    """Row 3, from `run`: a start hook raised; what had started was stopped again."""
    async with Tether("run", f"{APPS}:failing_start", *PLAIN) as proc:
        assert await proc.exit_code() == 3, proc.output
    assert "failed to start" in proc.output


# --------------------------------------------------------- 0, 1 and 70 at run time


async def test_a_clean_stop_exits_with_code_0() -> None:
    """Row 0: SIGTERM, a graceful stop."""
    async with Tether("run", f"{APPS}:idle", *PLAIN) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output


async def test_a_crash_while_running_exits_with_code_1() -> None:
    """Row 1: a background task raised."""
    async with Tether("run", f"{APPS}:crash", *PLAIN) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGUSR2)
        assert await proc.exit_code() == 1, proc.output


async def test_a_forced_exit_exits_with_code_70() -> None:
    """Row 70: a second SIGTERM while a stop hook still runs."""
    async with Tether("run", f"{APPS}:slow_stop", *PLAIN) as proc:
        await proc.line("started-hook")
        proc.send(signal.SIGTERM)
        await proc.line("stop-begin", seconds=10)
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 70, proc.output


# ------------------------------------------------------------------ the help


async def test_run_help_documents_every_option() -> None:
    """`tether run --help` gives every option of `run` with a line of help."""
    async with Tether("run", "--help") as proc:
        assert await proc.exit_code() == 0, proc.output
    text = "\n".join(proc.stdout)
    for option in (
        "--config",
        "--loop",
        "--shutdown-timeout",
        "--log-format",
        "--log-level",
        "--workers",
        "--bind",
        "--preload",
        "--graceful-timeout",
        "--heartbeat-timeout",
        "--boot-timeout",
    ):
        assert option in text, text
    assert "JSON lines only when" in text  # what auto means
    assert "T/4" in text  # the heartbeat interval

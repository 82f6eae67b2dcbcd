"""No secret reaches a log line tether writes, in any format, revealed or not.

The password is read into a ``tether.Secret``, revealed by the application and held in
a local variable of the frame that raises. tether's formatters never render frame
locals; its event-loop error handler never renders a callback's arguments.
"""

from __future__ import annotations

import pytest

from tests.process.harness import Tether

APP = "tests.process.secret_app:Database"
PASSWORD = "hunter2-do-not-log-me"  # noqa: S105 - the secret the test looks for

# (format, whether structlog is hidden from the process)
FORMATS = [
    ("plain", False),
    ("console", False),
    ("json", False),
    ("json", True),  # tether's own JSON formatter, without structlog
    ("auto", False),  # structlog installed, not a terminal: JSON
]


def _env(hide_structlog: bool, **extra: str) -> dict[str, str]:
    env = {"APP_DB_PASSWORD": PASSWORD, "NO_COLOR": "1", **extra}
    if hide_structlog:
        # A path entry whose `structlog` cannot be imported: tether falls back.
        env["PYTHONPATH"] = "tests/process/no_structlog"
    return env


@pytest.mark.parametrize(
    ("log_format", "hide"), FORMATS, ids=[f"{f}{'-bare' if h else ''}" for f, h in FORMATS]
)
async def test_a_failed_start_logs_no_revealed_secret(log_format: str, hide: bool) -> None:
    """The traceback of a failed start is logged; the password in its frames is not."""
    async with Tether("run", APP, "--log-format", log_format, env=_env(hide)) as proc:
        assert await proc.exit_code() == 3, proc.output
    assert "ConnectionError: could not connect to postgres://db.example/app" in proc.output
    assert PASSWORD not in proc.output


@pytest.mark.parametrize(
    ("log_format", "hide"), FORMATS, ids=[f"{f}{'-bare' if h else ''}" for f, h in FORMATS]
)
async def test_a_failing_loop_callback_logs_no_secret_argument(log_format: str, hide: bool) -> None:
    """An exception in a callback given the password: logged without the arguments.

    On asyncio's loop, whose own message for it shows the arguments' values.
    """
    env = _env(hide, FAIL_IN="callback")
    args = ("run", APP, "--log-format", log_format, "--loop", "asyncio")
    async with Tether(*args, env=env) as proc:
        assert await proc.exit_code() == 0, proc.output
    assert "ConnectionError" in proc.output
    assert "Exception in callback connect() at " in proc.output
    assert PASSWORD not in proc.output

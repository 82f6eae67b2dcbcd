# A test that leaves a task behind fails at its teardown; this file runs pytest on itself
# and shows the report.
import asyncio
import subprocess
import sys

import pytest


async def flush_forever() -> None:
    while True:
        await asyncio.sleep(5)


async def test_enqueue() -> None:
    asyncio.get_running_loop().create_task(flush_forever(), name="flush")  # never stopped


@pytest.mark.tether_allow_leaks("tasks")  # opted out: this one passes
async def test_enqueue_allowed() -> None:
    asyncio.get_running_loop().create_task(flush_forever(), name="flush")


if __name__ == "__main__":
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    # These tests use no tether fixture: the project opts in to the check on every test
    # (tether_leak_check = true in its pytest configuration; here, on the command line).
    options = ["-o", "asyncio_mode=auto", "-o", "tether_leak_check=true"]
    result = subprocess.run(  # noqa: S603
        [*command, *options], capture_output=True, text=True, check=False
    )
    report = [line for line in result.stdout.splitlines() if line.startswith(("tether:", "  - "))]
    print("\n".join(report))
    assert result.returncode == 1, result.stdout  # the test's teardown is an error
    assert "2 passed, 1 error" in result.stdout, result.stdout

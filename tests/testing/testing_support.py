"""Running pytest on generated test modules, for the tests of the pytest plugin.

Runs are in-process (fast). Generated tests that leak on purpose register how to release
what they leaked in ``leaky.RELEASE``; the generated conftest releases it all when the
inner session finishes, after the inner leak check has run and before the outer one does.
"""

from __future__ import annotations

import pytest

INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
{extra}
"""


def _ini(extra: str, mode: str) -> str:
    # A short grace keeps the runs of leaking tests fast; ``extra`` may set its own. The
    # generated tests mostly do not use tether's fixtures: they opt in to the check on
    # every test (tests/testing/test_optin.py holds the default, `auto`).
    grace = "" if "tether_leak_grace" in extra else "tether_leak_grace = 0.05"
    check = "" if "tether_leak_check" in extra else "tether_leak_check = true"
    return INI.format(mode=mode, extra=f"{grace}\n{check}\n{extra}")


LEAKY = """
import asyncio
import socket
import subprocess
import sys
import threading

RELEASE = []


async def forever():
    await asyncio.sleep(3600)


def thread(name):
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name=name)
    worker.start()
    RELEASE.append(lambda: (stop.set(), worker.join()))
    return worker


def child():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    RELEASE.append(lambda: (process.kill(), process.wait()))
    return process


def listening_socket():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    RELEASE.append(server.close)
    return server
"""

CONFTEST = """
import leaky


def pytest_sessionfinish(session):
    while leaky.RELEASE:
        leaky.RELEASE.pop()()
"""


def setup(
    pytester: pytest.Pytester, *, ini: str = "", conftest: str = "", mode: str = "auto"
) -> None:
    """Write the ini file (pytest-asyncio in ``mode``), the leaky helpers and a conftest."""
    pytester.makeini(_ini(ini, mode))
    pytester.makepyfile(leaky=LEAKY)
    pytester.makeconftest(CONFTEST + conftest)
    pytester.syspathinsert()


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in-process on the generated files, without a cache directory.

    Without the plugins of other packages installed for the suite either: hypothesis's,
    and buvar's (a peer the migration tests run), whose autouse fixtures need its own.
    """
    return pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:buvar", *args
    )


def readme_example(name: str) -> str:
    """The code block of README.md marked ``<!-- testing-example: name -->``."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = readme.split(f"<!-- testing-example: {name} -->\n```python\n", 1)[1]
    return after.split("```", 1)[0]

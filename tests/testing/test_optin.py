"""The pytest plugin leaves alone a suite that does not use tether.

tether's plugin loads wherever tether is installed (a dependency of a dependency is
enough). Its leak check applies to the tests that use tether's fixtures or markers, or
to every test when the project opts in with ``tether_leak_check = true``; anything else
runs exactly as it would without tether. These run real pytest subprocesses, as a
project would, with tether installed in the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A suite that never mentions tether: a module-level thread pool whose worker thread
# outlives the first test that submits to it, and a session-scoped client whose
# keep-alive connection opens during the first test that uses it.
UNRELATED = """
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

EXECUTOR = ThreadPoolExecutor(max_workers=1)


class Client:
    def __init__(self, address):
        self.address = address
        self.connection = None

    def get(self):
        if self.connection is None:  # kept alive for the next requests
            self.connection = socket.create_connection(self.address)
        return "ok"


@pytest.fixture(scope="session")
def server():
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


@pytest.fixture(scope="session")
def client(server):
    client = Client(server.getsockname())
    yield client
    if client.connection is not None:
        client.connection.close()


def test_uses_the_pool():
    assert EXECUTOR.submit(pow, 2, 5).result() == 32


def test_uses_the_client(client):
    assert client.get() == "ok"


def test_uses_the_client_again(client):
    assert client.get() == "ok"
"""

CONFTEST = """
import leaky


def pytest_sessionfinish(session):
    leaky.EXECUTOR.shutdown()
"""

TETHER_USER = """
import leaky


def test_uses_the_pool_in_a_tether_test(tether_container):
    assert leaky.EXECUTOR.submit(pow, 2, 5).result() == 32
"""

MARKED = """
import pytest

import leaky


@pytest.mark.tether_allow_leaks("sockets")
def test_uses_the_pool_under_a_tether_marker():
    assert leaky.EXECUTOR.submit(pow, 2, 5).result() == 32
"""

LEAKY = """
from concurrent.futures import ThreadPoolExecutor

EXECUTOR = ThreadPoolExecutor(max_workers=1)
"""


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``directory`` as a project would: tether's plugin autoloads."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "PYTHONPATH"))
    }
    return subprocess.run(  # noqa: S603 - our interpreter running pytest
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-p",
            "no:buvar",
            *args,
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _project(tmp_path: Path, ini: str = "") -> Path:
    settings = f"asyncio_default_fixture_loop_scope = function\n{textwrap.dedent(ini)}"
    (tmp_path / "pytest.ini").write_text(f"[pytest]\n{settings}\n")
    return tmp_path


def test_the_plugin_is_loaded_where_tether_is_installed(tmp_path: Path) -> None:
    """The premise: the suite below runs with tether's plugin active."""
    project = _project(tmp_path)
    (project / "test_plugins.py").write_text("def test_nothing():\n    pass\n")
    result = _pytest(project, "--trace-config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tether.testing" in result.stdout


def test_a_suite_that_never_mentions_tether_passes_with_tether_installed(tmp_path: Path) -> None:
    """A module-level thread pool and a session client's connection: the suite is green."""
    project = _project(tmp_path)
    (project / "test_unrelated.py").write_text(UNRELATED)
    result = _pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "tether:" not in result.stdout + result.stderr  # no report of the leak check


def test_the_same_leak_fails_a_test_that_uses_tethers_fixtures(tmp_path: Path) -> None:
    """A test asking for a tether fixture gets the full check: the pool's thread is named."""
    project = _project(tmp_path)
    (project / "leaky.py").write_text(LEAKY)
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_tether_user.py").write_text(TETHER_USER)
    result = _pytest(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert "test_uses_the_pool_in_a_tether_test left 1 thread behind" in result.stdout
    assert "ThreadPoolExecutor" in result.stdout


def test_the_same_leak_fails_a_test_that_uses_a_tether_marker(tmp_path: Path) -> None:
    """A tether marker on a test is a use of tether: the kinds it does not allow are checked."""
    project = _project(tmp_path)
    (project / "leaky.py").write_text(LEAKY)
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_marked.py").write_text(MARKED)
    result = _pytest(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "left 1 thread behind" in result.stdout


@pytest.mark.parametrize("value", ["true", "all"])
def test_a_project_that_opts_in_gets_the_check_on_every_test(tmp_path: Path, value: str) -> None:
    """tether_leak_check = true in the pytest configuration: the unrelated suite is checked."""
    project = _project(tmp_path, f"tether_leak_check = {value}")
    (project / "test_unrelated.py").write_text(UNRELATED)
    result = _pytest(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 passed, 2 errors" in result.stdout
    assert "test_uses_the_pool left 1 thread behind" in result.stdout
    assert "test_uses_the_client left 1 socket behind" in result.stdout


def test_opting_out_turns_the_check_off_even_for_tether_tests(tmp_path: Path) -> None:
    """tether_leak_check = false: no test is checked, tether's or not."""
    project = _project(tmp_path, "tether_leak_check = false")
    (project / "leaky.py").write_text(LEAKY)
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_tether_user.py").write_text(TETHER_USER)
    result = _pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_unknown_leak_check_value_is_a_usage_error(tmp_path: Path) -> None:
    """A value that is none of auto, true, false names the choices."""
    project = _project(tmp_path, "tether_leak_check = sometimes")
    (project / "test_plugins.py").write_text("def test_nothing():\n    pass\n")
    result = _pytest(project)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "tether_leak_check = 'sometimes'" in result.stderr
    assert "auto" in result.stderr

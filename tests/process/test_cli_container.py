"""`tether run/check` find the application's container, or are told it, or say they cannot.

A module that builds its container in a function (reading a TOML file and the
environment) used to run under `tether run module:Api` with an empty container, its
sections silently at their defaults. Now `--container module:factory` names the
factory, a module attribute `container` may be the factory itself, and a run whose
sections load from their defaults only, with no config source, says so on stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process.harness import ROOT, Tether

APP = """
import dataclasses
from pathlib import Path

import tether


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str = "sqlite://default"
    pool_size: int = 1


class Api(tether.Service):
    def __init__(self, config: DbConfig) -> None:
        self.config = config

    async def start(self) -> None:
        print(f"url={self.config.url} pool={self.config.pool_size}", flush=True)


def make_container() -> tether.Container:
    config = tether.Config().add_toml(Path(__file__).with_name("app.toml")).add_env("APP")
    return tether.Container(config=config)


if __name__ == "__main__":
    container = make_container()
    tether.run(container.root(Api), container=container)
"""

TOML = """
[db]
url = "postgres://from-toml"
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "factory_app.py").write_text(APP)
    (tmp_path / "app.toml").write_text(TOML)
    return tmp_path


def _tether(directory: Path, *args: str, env: dict[str, str] | None = None) -> Tether:
    return Tether(
        *args, env={"PYTHONPATH": f"{directory}{os.pathsep}{ROOT / 'src'}", **(env or {})}
    )


def _command(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{directory}{os.pathsep}{ROOT / 'src'}"}
    env.pop("APP_DB_POOL_SIZE", None)
    return subprocess.run(  # noqa: S603 - our interpreter, our module
        [sys.executable, "-m", "tether", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_run_with_container_option_reads_the_toml_file_and_environment(
    app_dir: Path,
) -> None:
    """--container module:factory: the TOML file and APP_* variables, as `python app.py`."""
    async with _tether(
        app_dir,
        "run",
        "factory_app:Api",
        "--container",
        "factory_app:make_container",
        "--log-format",
        "plain",
        env={"APP_DB_POOL_SIZE": "7"},
    ) as proc:
        await proc.line("url=postgres://from-toml pool=7")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "defaults only" not in proc.output


def test_check_with_container_option_shows_the_values_and_their_sources(app_dir: Path) -> None:
    """`tether check --container ...` validates with the application's own config."""
    result = _command(
        app_dir,
        "check",
        "factory_app:Api",
        "--container",
        "factory_app:make_container",
        "-c",
        "db.pool_size=3",
    )
    assert result.returncode == 0, result.stderr
    assert 'url = "postgres://from-toml"' in result.stdout
    assert "pool_size = 3" in result.stdout
    assert "warning" not in result.stderr


def test_a_run_without_the_container_warns_that_sections_load_from_defaults(
    app_dir: Path,
) -> None:
    """No container found: a loud warning naming the sections and the factory to name."""
    result = _command(app_dir, "check", "factory_app:Api")
    assert result.returncode == 0, result.stderr
    assert "tether: warning:" in result.stderr
    assert "factory_app defines no `container`" in result.stderr
    assert "DbConfig [db]" in result.stderr
    assert "defaults only" in result.stderr
    assert "--container factory_app:make_container" in result.stderr


def test_a_container_attribute_may_be_the_factory(app_dir: Path) -> None:
    """The convention: a module attribute `container` that is a function is called."""
    (app_dir / "factory_app.py").write_text(APP + "\ncontainer = make_container\n")
    result = _command(app_dir, "check", "factory_app:Api")
    assert result.returncode == 0, result.stderr
    assert 'url = "postgres://from-toml"' in result.stdout
    assert "warning" not in result.stderr


def test_a_container_without_sources_warns_too(app_dir: Path) -> None:
    """The module's container has a Config with no source: its sections are defaults."""
    (app_dir / "factory_app.py").write_text(APP + "\ncontainer = tether.Container()\n")
    result = _command(app_dir, "check", "factory_app:Api")
    assert result.returncode == 0, result.stderr
    assert "tether: warning:" in result.stderr
    assert "has a Config with no sources" in result.stderr
    assert "DbConfig [db]" in result.stderr


def test_defaults_with_a_config_source_are_no_warning(app_dir: Path) -> None:
    """Sections at their defaults under a container that reads a file are what was meant."""
    (app_dir / "app.toml").write_text("[other]\nkey = 1\n")
    result = _command(
        app_dir, "check", "factory_app:Api", "--container", "factory_app:make_container"
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nowhere_at_all:make", "No module named 'nowhere_at_all'"),
        ("factory_app:make_containr", "Did you mean 'make_container'"),
        ("factory_app:Api", "is not a tether.Container"),
        ("factory_app", "is not of the form module:attr"),
    ],
)
def test_a_container_option_that_leads_nowhere_is_a_usage_error(
    app_dir: Path, value: str, message: str
) -> None:
    """A wrong --container is exit code 2 with what was wrong, as for the target."""
    result = _command(app_dir, "check", "factory_app:Api", "--container", value)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "--container" in result.stderr


async def test_container_option_reaches_every_pre_fork_worker(app_dir: Path) -> None:
    """--container with --workers: each worker builds the app through the named factory."""
    async with _tether(
        app_dir,
        "run",
        "factory_app:Api",
        "--workers",
        "2",
        "--bind",
        "tcp://127.0.0.1:0",
        "--container",
        "factory_app:make_container",
        "--log-format",
        "plain",
        env={"APP_DB_POOL_SIZE": "5"},
    ) as proc:
        await proc.until(
            lambda: "".join(proc.stdout).count("url=postgres://from-toml pool=5") == 2,
            "two workers built through the named container",
            30,
        )
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert "defaults only" not in proc.output


def test_a_container_factory_that_needs_arguments_is_a_usage_error(app_dir: Path) -> None:
    """The factory is called with no arguments: one that needs some is refused, named."""
    (app_dir / "factory_app.py").write_text(APP + "\ndef make_with(path):\n    return None\n")
    result = _command(app_dir, "check", "factory_app:Api", "--container", "factory_app:make_with")
    assert result.returncode == 2, result.stderr
    assert "--container factory_app:make_with is a function that needs arguments" in result.stderr


def test_container_option_with_a_plugin_app_is_a_usage_error(app_dir: Path) -> None:
    """--plugin apps make their own container: naming one as well is refused, said why."""
    result = _command(app_dir, "run", "--plugin", "factory_app", "--container", "x:y")
    assert result.returncode == 2, result.stderr
    assert "give one or the other" in result.stderr

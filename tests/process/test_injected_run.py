"""`tether run module:Api` builds the graph from type annotations, as a user runs it."""

from __future__ import annotations

import signal

import pytest

from tests.process.harness import Tether
from tether._cli import main

APP = "tests.process.injected_app"


async def test_run_builds_the_graph_by_type_and_releases_resources_last() -> None:
    """Api needs Database needs Connections: started in order; resources closed last."""
    async with Tether("run", f"{APP}:Api", "--log-format", "plain", "-c", "db.pool_size=9") as p:
        await p.line("start:api")
        p.send(signal.SIGTERM)
        assert await p.exit_code() == 0, p.output
    lines = [line for line in p.stdout if not line.startswith("[")]
    assert lines == [
        "connections open: 9",
        "start:db sqlite://app pool=9",
        "start:api",
        "stop:api",
        "stop:db",
        "connections closed",
    ], p.output


def test_check_shows_the_effective_configuration_with_sources(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tether check -c ...` validates without starting and prints each value's source."""
    assert main(["check", f"{APP}:Api", "-c", "db.pool_size=9"]) == 0
    out = capsys.readouterr().out
    assert "the graph is valid; nothing was started" in out
    assert "connections closed" in out  # what building the graph opened is released
    assert "pool_size = 9" in out
    assert "-c db.pool_size" in out
    assert 'url = "sqlite://app"' in out


def test_graph_shows_injected_dependencies(capsys: pytest.CaptureFixture[str]) -> None:
    """The services injected into Api appear as its dependencies in the picture."""
    assert main(["graph", f"{APP}:Api"]) == 0
    out = capsys.readouterr().out
    assert "Api" in out
    assert "Database" in out


def test_a_malformed_override_fails_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    """A `-c` without `=` is a startup failure naming the item."""
    with pytest.raises(SystemExit) as exit_info:
        main(["check", f"{APP}:Api", "-c", "db.pool_size"])
    assert exit_info.value.code == 3
    assert "db.pool_size" in capsys.readouterr().err

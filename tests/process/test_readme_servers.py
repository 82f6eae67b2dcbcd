"""The README's server examples run as written: real processes, real requests, Ctrl-C."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.httpclient import fetch
from tests.process.harness import ROOT, Tether


def _example(marker: str, tmp_path: Path) -> Path:
    """The code block after ``<!-- marker -->`` in the README, saved as a program."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", readme, re.DOTALL)
    assert found is not None, f"README has no {marker} block"
    path = tmp_path / f"{marker}.py"
    path.write_text(found.group(1))
    return path


async def _served(program: Tether, what: str) -> str:
    line = await program.line(f"{what} on http://", stream="stderr")
    found = re.search(r"http://[\d.]+:\d+", line)
    assert found is not None, line
    return found.group(0)


async def test_the_aiohttp_example_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """app.py answers / with the Counter it got by type, /readyz is 200, Ctrl-C exits 0."""
    pytest.importorskip("aiohttp")
    path = _example("aiohttp-example", tmp_path)
    async with Tether(program=(str(path),), env={"PORT": "0", "DRAIN_DELAY": "0.1"}) as program:
        url = await _served(program, "Server serving")
        first = (await fetch(f"{url}/")).json()
        second = (await fetch(f"{url}/")).json()
        ready = await fetch(f"{url}/readyz")
        program.send(signal.SIGINT)
        code = await program.exit_code(seconds=15)
    assert (first, second) == ({"hello": "world", "hits": 1}, {"hello": "world", "hits": 2})
    assert ready.status == 200
    assert code == 0, program.output


async def test_the_asgi_example_runs_its_lifespan_inside_the_graph(tmp_path: Path) -> None:
    """asgi_app.py serves via uvicorn, health on its own port, lifespan around serving."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    path = _example("asgi-example", tmp_path)
    env = {"PORT": "0", "HEALTH_PORT": "0", "DRAIN_DELAY": "0.1"}
    async with Tether(program=(str(path),), env=env) as program:
        url = await _served(program, "Server serving")
        health = await _served(program, "health endpoints")
        greeting = (await fetch(f"{url}/")).json()
        ready = await fetch(f"{health}/readyz")
        program.send(signal.SIGINT)
        code = await program.exit_code(seconds=15)
    assert greeting == {"greeting": "hello"}
    assert ready.status == 200
    assert code == 0, program.output
    assert program.stdout == [
        "lifespan startup: the database is already running",
        "lifespan shutdown: the last request was answered",
    ]

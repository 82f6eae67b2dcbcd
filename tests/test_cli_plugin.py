"""`tether run --plugin NAME`: a plugin app run by the command, and its usage errors."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.process.harness import Tether

PLUGIN = """\
import asyncio
import tether


class Store(tether.Service):
    async def start(self) -> None:
        print("store started", flush=True)

    async def stop(self) -> None:
        print("store stopped", flush=True)


async def serve(store: Store) -> None:
    print(f"serving in the runner's loop, store running={store.running}", flush=True)
    await asyncio.Event().wait()


def prepare(plugins: tether.Plugins, store: Store):
    plugins.add_teardown(lambda: print("teardown", flush=True))
    yield serve(store)
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    return tmp_path


async def test_run_plugin_starts_the_plugins_and_stops_them_on_sigterm(plugin_dir: Path) -> None:
    """The plugin loads at start; what it asked for starts first; SIGTERM stops it all."""
    args = ("run", "--plugin", "myplugin", "--log-format", "plain")
    async with Tether(*args, env={"PYTHONPATH": str(plugin_dir)}) as proc:
        await proc.line("serving in the runner's loop, store running=True")
        proc.send(signal.SIGTERM)
        assert await proc.exit_code() == 0, proc.output
    assert proc.stdout == [
        "store started",
        "serving in the runner's loop, store running=True",
        "store stopped",
        "teardown",
    ], proc.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "myplugin:app", "--plugin", "myplugin"), "not both"),
        (("graph", "--plugin", "myplugin"), "--plugin is for run and repl"),
        (("run",), "name what to run"),
    ],
    ids=["both", "graph", "neither"],
)
async def test_plugin_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    """Exactly one of module:attr and --plugin; --plugin only where plugins can start."""
    async with Tether(*args) as proc:
        assert await proc.exit_code() == 2, proc.output
    assert any(message in line for line in proc.stderr), proc.output

"""The examples of the frameworks page as real processes: a light load through SIGTERM.

Each program of ``docs/examples/frameworks_*.py`` runs with ``tether run``, serves on
loopback, and is stopped by SIGTERM while clients send requests: not one fails, and
the process exits 0.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.process.harness import Tether
from tests.process.light_load import served_url, through_sigterm

pytest.importorskip("aiohttp")  # the clients

EXAMPLES = "docs.examples"
ENV = {"PORT": "0", "HEALTH_PORT": "0", "DRAIN_DELAY": "0.3"}


def program(module: str, root: str, *extra: str) -> Tether:
    return Tether("run", f"{EXAMPLES}.{module}:{root}", "--log-format", "plain", *extra, env=ENV)


@pytest.mark.parametrize(
    ("module", "needs"),
    [
        ("frameworks_flask", ("flask", "/items/apples", '{"apples":3}\n')),
        ("frameworks_django", ("django", "/items/pears", '{"pears": 5}')),
    ],
)
async def test_a_wsgi_application_stops_under_load_failing_nothing(
    module: str, needs: tuple[str, str, str]
) -> None:
    """Flask's and Django's examples, served by tether.ext.wsgi."""
    framework, path, body = needs
    pytest.importorskip(framework)
    pytest.importorskip("a2wsgi")
    async with program(module, "server") as proc:
        url = await served_url(proc, "Server serving on")
        seen = await through_sigterm(proc, url, f"{url}/readyz", lambda i: (path, body))
    assert seen.failures == [], proc.output
    assert seen.code == 0, proc.output


@pytest.mark.parametrize(
    ("module", "root", "ready", "needs"),
    [
        ("frameworks_flask", "server", "Server serving on", ("a2wsgi", "/items/apples")),
        ("frameworks_tornado", "server", "Server serving on", ("tornado", "/items/plums")),
        ("frameworks_twisted", "app", "Listener[web] serving on", ("twisted", "/items/figs")),
    ],
)
async def test_the_framework_servers_run_on_rloop_under_load_failing_nothing(
    module: str, root: str, ready: str, needs: tuple[str, str]
) -> None:
    """The WSGI, Tornado and Twisted examples on rloop (the page's third-party loop):
    they start, serve and stop by SIGTERM under load as on asyncio's loop."""
    framework, path = needs
    pytest.importorskip("rloop")
    pytest.importorskip(framework)
    async with program(module, root, "--loop", "rloop:new_event_loop") as proc:
        url = await served_url(proc, ready)
        health = url
        if module == "frameworks_twisted":  # its probes are on a port of their own
            health = await served_url(proc, "health endpoints on")
        async with aiohttp.ClientSession() as session, session.get(f"{url}{path}") as response:
            expected = await response.text()
        seen = await through_sigterm(proc, url, f"{health}/readyz", lambda i: (path, expected))
    assert "rloop.loop.RLoop event loop" in proc.output
    assert seen.failures == [], proc.output
    assert seen.code == 0, proc.output


async def test_tornado_stops_under_load_failing_nothing() -> None:
    """Tornado's example, its HTTPServer run by tether.ext.tornado."""
    pytest.importorskip("tornado")
    async with program("frameworks_tornado", "server") as proc:
        url = await served_url(proc, "Server serving on")
        seen = await through_sigterm(
            proc, url, f"{url}/readyz", lambda i: ("/items/plums", '{"plums": 7}')
        )
    assert seen.failures == [], proc.output
    assert seen.code == 0, proc.output


async def test_twisted_stops_under_load_failing_nothing_and_in_order() -> None:
    """Twisted's example: a Site and a line protocol on the asyncio reactor."""
    pytest.importorskip("twisted")
    async with program("frameworks_twisted", "app") as proc:
        url = await served_url(proc, "Listener[web] serving on")
        health = await served_url(proc, "health endpoints on")
        seen = await through_sigterm(proc, url, f"{health}/readyz", lambda i: ("/items/figs", "2"))
    assert seen.failures == [], proc.output
    assert seen.code == 0, proc.output
    stopped = [
        line.split("tether.lifecycle: ")[1] for line in proc.stderr if " stopped in " in line
    ]
    order = [entry.split(" stopped")[0] for entry in stopped]
    assert order.index("Listener[web]") < order.index("Inventory") < order.index("Reactor")
    assert order.index("Listener[shout]") < order.index("Reactor")


async def test_blocking_code_in_threads_stops_under_load_failing_nothing() -> None:
    """The thread-based path offered instead of gevent or eventlet."""
    async with program("frameworks_threads", "app") as proc:
        url = await served_url(proc, "LegacyServer serving on")
        health = await served_url(proc, "health endpoints on")
        seen = await through_sigterm(
            proc, url, f"{health}/readyz", lambda i: (f"/hello{i}", f"/hello{i}")
        )
    assert seen.failures == [], proc.output
    assert seen.code == 0, proc.output


@pytest.mark.parametrize(
    "loop", ["rloop:new_event_loop", f"{EXAMPLES}.frameworks_loops:tuned_loop"]
)
async def test_a_server_on_any_loop_stops_under_load_failing_nothing(loop: str) -> None:
    """The loops example on rloop (from the registry) and on a factory of its own."""
    if loop.startswith("rloop"):
        pytest.importorskip("rloop")
    expected = "served on RLoop" if loop.startswith("rloop") else "served on _UnixSelectorEventLoop"
    async with program("frameworks_loops", "server", "--loop", loop) as proc:
        url = await served_url(proc, "Server serving on")
        seen = await through_sigterm(proc, url, f"{url}/readyz", lambda i: ("/", expected))
    assert seen.failures == [], proc.output
    assert seen.code == 0, proc.output

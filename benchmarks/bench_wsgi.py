"""How to serve a WSGI app in a tether graph: measured, requests/s and failures through SIGTERM.

    python benchmarks/bench_wsgi.py [--seconds 3] [--rounds 2]

Two ways, the same Flask application, the same graph (a Health service on its own port
with a drain delay, the server depending on it), each run as a real process by
``tether.run``:

* ``adapter``: ``tether.ext.wsgi.Server``, a2wsgi's WSGI-to-ASGI adapter under the ASGI
  integration (uvicorn, the drain and readiness of ``tether.ext.asgi``);
* ``cheroot``: cheroot's threaded WSGI server (CherryPy's, maintained, with a graceful
  ``stop``) in a ``BlockingService``, readiness and ``Connection: close`` added by a WSGI
  middleware during the drain.

The load: 16 keep-alive clients (aiohttp) send quick requests for ``--seconds``
(requests/s is measured there); then slow requests (0.3 s in their handler) are parked
and the process gets SIGTERM. Two client behaviours follow, each its own run: ``balanced``
clients stop once ``/readyz`` answers 503, as behind a load balancer; ``unbalanced``
clients keep sending until the server is gone (a refused connection is not counted as a
failure: nothing was lost; a request accepted and not answered is). Loopback only;
every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

import tether
from tether.health import DRAIN, Health

SLOW = 0.3
CLIENTS = 16
PARKED = 8


def make_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/work/<int:index>")
    def work(index: int) -> str:
        return str(index)

    @app.get("/slow")
    def slow() -> str:
        time.sleep(SLOW)
        return "slow done"

    return app


class Cheroot(tether.BlockingService):
    """cheroot's WSGI server in a thread, stopped gracefully by its own ``stop``."""

    def __init__(self, app: Any, port: int, health: Health) -> None:
        self.app = app
        self.port = port
        self.health = health
        self.draining = False
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def dependencies(self) -> list[tether.ServiceBase]:
        return [self.health]

    def start(self) -> None:
        from cheroot import wsgi

        self.draining = False
        self.server = wsgi.Server(
            ("127.0.0.1", self.port),
            self._wsgi,
            numthreads=10,
            shutdown_timeout=10,
            request_queue_size=128,  # its default of 5 drops connections under this load
        )
        self.server.prepare()
        self.thread = threading.Thread(target=self.server.serve, name="cheroot")
        self.thread.start()

    @DRAIN
    def drain(self) -> None:
        self.draining = True

    def stop(self) -> None:
        self.server.stop()
        assert self.thread is not None
        self.thread.join()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def starting(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            if self.draining:
                headers = [*headers, ("Connection", "close")]
            return start_response(status, headers, *exc)

        result: Iterable[bytes] = self.app(environ, starting)
        return result


def serve(way: str, port_file: Path) -> None:
    """The served process: the graph, then the ports written for the load generator."""
    health = Health(port=0, drain_delay=0.5)
    app = make_app()
    server: tether.ServiceBase
    if way == "adapter":
        from tether.ext.wsgi import Server

        server = Server(app, port=0, health=health)
    else:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = Cheroot(app, port, health)

    class Announce(tether.Service):
        @property
        def dependencies(self) -> list[tether.ServiceBase]:
            return [server]

        def on_started(self) -> None:
            port = getattr(server, "port", None)
            port_file.write_text(f"{port} {health.port}")

    # uvloop, and uvicorn with httptools, where installed: how the adapter runs in production.
    tether.run(Announce(), loop="auto", log_level="warning", log_format="plain")


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.failed: list[str] = []
        self.refused = 0
        self.removed = False
        self.gone = False


async def _quick(session: aiohttp.ClientSession, url: str, tally: Tally, balanced: bool) -> None:
    index = 0
    while not (balanced and tally.removed) and not tally.gone:
        index += 1
        try:
            async with session.get(f"{url}/work/{index}") as response:
                body = await response.text()
            if response.status == 200 and body == str(index):
                tally.ok += 1
            else:
                tally.failed.append(f"{response.status} {body[:40]!r}")
        except aiohttp.ClientConnectorError:
            tally.refused += 1
            tally.gone = True
        except Exception as exc:
            tally.failed.append(f"{type(exc).__name__}: {exc}")


async def _slow(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    try:
        async with session.get(f"{url}/slow") as response:
            body = await response.text()
        if response.status == 200 and body == "slow done":
            tally.ok += 1
        else:
            tally.failed.append(f"slow {response.status}")
    except Exception as exc:
        tally.failed.append(f"slow {type(exc).__name__}: {exc}")


async def _balancer(session: aiohttp.ClientSession, health: str, tally: Tally) -> None:
    while not tally.removed:
        try:
            async with session.get(f"{health}/readyz") as response:
                tally.removed = response.status == 503
        except aiohttp.ClientError:
            tally.removed = True
        await asyncio.sleep(0.01)


async def measure(way: str, seconds: float, *, balanced: bool, tmp: Path) -> dict[str, Any]:
    port_file = tmp / f"{way}.port"
    port_file.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", way, str(port_file)
    )
    try:
        async with asyncio.timeout(20):
            while not port_file.exists() or not port_file.read_text():  # noqa: ASYNC110 - a file
                await asyncio.sleep(0.02)
        port, health_port = port_file.read_text().split()
        url, health = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health_port}"
        tally = Tally()
        connector = aiohttp.TCPConnector(limit=CLIENTS + PARKED + 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            clients = [
                asyncio.create_task(_quick(session, url, tally, balanced)) for _ in range(CLIENTS)
            ]
            began = time.perf_counter()
            await asyncio.sleep(seconds)
            rate = tally.ok / (time.perf_counter() - began)
            parked = [asyncio.create_task(_slow(session, url, tally)) for _ in range(PARKED)]
            await asyncio.sleep(0.05)
            balancer = asyncio.create_task(_balancer(session, health, tally))
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await asyncio.gather(*clients, *parked)
                code = await proc.wait()
                tally.removed = True
                await balancer
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return {
        "rate": rate,
        "failed": len(tally.failed),
        "refused": tally.refused,
        "code": code,
        "examples": tally.failed[:3],
    }


async def main(seconds: float, rounds: int) -> None:
    tmp = Path(tempfile.gettempdir())
    results: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for way in ("adapter", "cheroot"):
            for balanced in (True, False):
                result = await measure(way, seconds, balanced=balanced, tmp=tmp)
                results.setdefault((way, balanced), []).append(result)
                print(way, "balanced" if balanced else "unbalanced", result, file=sys.stderr)
    print("| way | clients | requests/s (median) | failed through SIGTERM | exit codes |")
    print("|---|---|---|---|---|")
    for (way, balanced), runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        failed = sum(r["failed"] for r in runs)
        codes = sorted({r["code"] for r in runs})
        who = "follow /readyz" if balanced else "keep sending"
        print(f"| {way} | {who} | {rate:.0f} | {failed} in {len(runs)} runs | {codes} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], Path(sys.argv[3]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(options.seconds, options.rounds))

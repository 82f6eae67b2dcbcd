"""Pre-fork: one master, two worker processes serving the same aiohttp application.

Run as ``python prefork.py``: it starts the master (``python prefork.py serve PORT``)
as a child process, asks a few times who answers, then stops it with SIGTERM, as
systemd or Kubernetes would, and exits with the master's exit code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from aiohttp import web

import tether
from tether.ext.aiohttp import Server


async def hello(request: web.Request) -> web.Response:
    del request
    return web.Response(text=f"hello from worker pid {os.getpid()}\n")


def app() -> Server:
    """Called in each worker after the fork: every worker builds its own application."""
    application = web.Application()
    application.router.add_get("/", hello)
    # No host or port: the server serves the sockets the master bound (tether.listeners()).
    return Server(application, options={"access_log": None})


def serve(port: int) -> None:
    """The master: binds the port, forks two workers, supervises them until SIGTERM."""
    tether.prefork(app, workers=2, bind=[f"tcp://127.0.0.1:{port}"], graceful_timeout=5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ask(url: str) -> str:
    """GET ``url``, retrying for up to 10 s while the master starts."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
                body: bytes = response.read()
                return body.decode().strip()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> int:
    port = free_port()
    master = subprocess.Popen([sys.executable, __file__, "serve", str(port)])  # noqa: S603
    try:
        for _ in range(4):
            print(ask(f"http://127.0.0.1:{port}/"))
    finally:
        master.send_signal(signal.SIGTERM)  # graceful: the workers drain, then exit
        code = master.wait(timeout=30)
    print(f"master exited with code {code}")
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    sys.exit(main())

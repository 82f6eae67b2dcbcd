"""An aiohttp application for the pre-fork tests: a Server given no address.

In a pre-fork worker it serves on every socket the master bound (tether.listeners()).
``GET /`` answers the worker's pid, ``/slow`` after 200 ms, ``/busy`` once the test
releases the worker from synchronous work (see ``prefork_app.busy``).
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from tests.prefork.prefork_app import busy, slow_start
from tether.ext.aiohttp import Server


async def pid(request: web.Request) -> web.Response:
    """The worker's pid, so a test sees which worker answered."""
    if request.path == "/slow":
        await asyncio.sleep(0.2)
    elif request.path == "/busy":
        busy()
    return web.Response(text=str(os.getpid()))


async def on_startup(app: web.Application) -> None:
    """A worker still booting while ``PREFORK_SLOW_START`` exists."""
    del app
    await slow_start()


def app() -> Server:
    """A factory: each worker builds its own application and server."""
    application = web.Application()
    application.on_startup.append(on_startup)
    for path in ("/", "/slow", "/busy"):
        application.router.add_get(path, pid)
    return Server(application, options={"access_log": None})

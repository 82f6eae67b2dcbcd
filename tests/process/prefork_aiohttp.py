"""An aiohttp application for the pre-fork tests: a Server given no address.

In a pre-fork worker it serves on every socket the master bound (tether.listeners()).
"""

from __future__ import annotations

import os

from aiohttp import web

from tether.ext.aiohttp import Server


async def pid(request: web.Request) -> web.Response:
    """The worker's pid, so a test sees which worker answered."""
    del request
    return web.Response(text=str(os.getpid()))


def app() -> Server:
    """A factory: each worker builds its own application and server."""
    application = web.Application()
    application.router.add_get("/", pid)
    return Server(application, options={"access_log": None})

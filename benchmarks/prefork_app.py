"""The application of the pre-fork benchmark, served by tether and by gunicorn alike.

``GET /`` answers ``hello from <pid>`` (the pid tells which worker answered).
"""

from __future__ import annotations

import os

from aiohttp import web

from tether.ext.aiohttp import Server


async def hello(request: web.Request) -> web.Response:
    del request
    return web.Response(text=f"hello from {os.getpid()}")


def application() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


def tether_app() -> Server:
    """For ``tether run prefork_app:tether_app --workers N --bind ...``."""
    return Server(application(), options={"access_log": None}, drain_timeout=5)


async def gunicorn_app() -> web.Application:
    """For ``gunicorn prefork_app:gunicorn_app --worker-class aiohttp.GunicornWebWorker``."""
    return application()

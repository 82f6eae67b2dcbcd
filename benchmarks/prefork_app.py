"""The application of the pre-fork benchmark, served by tether and by gunicorn alike.

``GET /`` answers ``hello from <pid>`` (the pid tells which worker answered); ``GET
/work`` does 2 ms of synchronous work first (the event loop blocked, as CPU work would),
so that a load of many connections keeps every worker busy and the accept queue full.
"""

from __future__ import annotations

import os
import time

from aiohttp import web

from tether.ext.aiohttp import Server


async def hello(request: web.Request) -> web.Response:
    del request
    return web.Response(text=f"hello from {os.getpid()}")


async def work(request: web.Request) -> web.Response:
    del request
    time.sleep(0.002)  # noqa: ASYNC251 - synchronous work: the worker is busy
    return web.Response(text=f"hello from {os.getpid()}")


def application() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/work", work)
    return app


def tether_app() -> Server:
    """For ``tether run prefork_app:tether_app --workers N --bind ...``."""
    return Server(application(), options={"access_log": None}, drain_timeout=5)


async def gunicorn_app() -> web.Application:
    """For ``gunicorn prefork_app:gunicorn_app --worker-class aiohttp.GunicornWebWorker``."""
    return application()

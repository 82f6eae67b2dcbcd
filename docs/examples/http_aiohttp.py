import asyncio
import os

import aiohttp
from aiohttp import web

import tether
from tether.ext.aiohttp import Server, get
from tether.health import Health


class Counter(tether.Service):
    """A component the handlers use: started before the server, stopped after it."""

    async def start(self) -> None:
        self.hits = 0


async def hello(request: web.Request) -> web.Response:
    counter = get(request, Counter)  # the running Counter of the graph, by type
    counter.hits += 1
    return web.json_response({"hello": "world", "hits": counter.hits})


app = web.Application()
app.router.add_get("/", hello)
container = tether.Container()
server = Server(
    app,
    port=int(os.environ.get("PORT", "0")),  # 0: a free port, then server.url says which
    container=container,
    uses=[Counter],  # resolved through the container, started before the server
    # /livez, /readyz and /status on the same port; readiness 503 for a while before stopping
    health=Health(drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1"))),
)


async def try_it() -> None:
    """Start the graph, call it as a client would, stop it."""
    async with server, aiohttp.ClientSession() as client:
        for path in ("/", "/", "/readyz"):
            async with client.get(f"{server.url}{path}") as response:
                print(path, response.status, (await response.text()).strip())


if __name__ == "__main__":
    asyncio.run(try_it())  # in production: tether.run(server, container=container)

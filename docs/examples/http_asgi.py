import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import tether
from tether.ext.asgi import Server, get
from tether.health import Health


class Database(tether.Service):
    async def start(self) -> None:
        self.rows = {"greeting": "hello"}


async def greeting(request: Request) -> JSONResponse:
    return JSONResponse({"greeting": get(request, Database).rows["greeting"]})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    print("lifespan startup: the database is already running")
    yield
    print("lifespan shutdown: the last request was answered")


app = Starlette(routes=[Route("/", greeting)], lifespan=lifespan)
container = tether.Container()
health = Health(port=0, drain_delay=0.1)  # on its own port, and on the application's
server = Server(app, port=0, container=container, uses=[Database], health=health)


async def try_it() -> None:
    async with server, aiohttp.ClientSession() as client:
        async with client.get(f"{server.url}/") as response:
            print("/", response.status, await response.json())
        async with client.get(f"{health.url}/readyz") as response:
            print("health /readyz", response.status, (await response.text()).strip())


if __name__ == "__main__":
    asyncio.run(try_it())  # in production: tether.run(server, container=container)

import asyncio
import os

import aiohttp
from flask import Flask, request

import tether
from tether.ext.wsgi import Server, get
from tether.health import Health


class Inventory(tether.Service):
    """A component the views use: started before the server, stopped after it."""

    async def start(self) -> None:
        self.items = {"apples": 3}

    async def stop(self) -> None:
        self.items = {}


app = Flask(__name__)


@app.get("/items/<name>")
def item(name: str) -> dict[str, int]:
    inventory = get(request, Inventory)  # the running Inventory of the graph, by type
    return {name: inventory.items.get(name, 0)}


container = tether.Container()
server = Server(
    app,  # any WSGI application: Flask's, Django's get_wsgi_application(), ...
    port=int(os.environ.get("PORT", "0")),
    threads=10,  # requests handled at once, each in a thread of the server's pool
    container=container,
    uses=[Inventory],
    health=Health(drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1"))),
)


async def try_it() -> None:
    async with server, aiohttp.ClientSession() as client:
        async with client.get(f"{server.url}/items/apples") as response:
            print(response.status, await response.json())
        async with client.get(f"{server.url}/readyz") as response:
            print("/readyz", response.status)


if __name__ == "__main__":
    asyncio.run(try_it())  # as a process: tether.run(server, container=container)

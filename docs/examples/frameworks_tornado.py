import asyncio
import os

import aiohttp
import tornado.web

import tether
from tether.ext.tornado import Server, get
from tether.health import Health


class Inventory(tether.Service):
    async def start(self) -> None:
        self.items = {"plums": 7}


class Item(tornado.web.RequestHandler):
    def get(self, name: str) -> None:
        inventory = get(self, Inventory)  # the running Inventory of the graph, by type
        self.write({name: inventory.items.get(name, 0)})


app = tornado.web.Application([(r"/items/(\w+)", Item)])
container = tether.Container()
server = Server(
    app,
    port=int(os.environ.get("PORT", "0")),
    container=container,
    uses=[Inventory],
    health=Health(drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1"))),
)


async def try_it() -> None:
    async with (
        server,
        aiohttp.ClientSession() as client,
        client.get(f"{server.url}/items/plums") as response,
    ):
        print(response.status, await response.json())


if __name__ == "__main__":
    asyncio.run(try_it())  # as a process: tether.run(server, container=container)

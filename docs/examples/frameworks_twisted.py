import asyncio
import os
from typing import Any

import aiohttp
from twisted.internet import protocol
from twisted.protocols import basic
from twisted.web import resource, server

import tether
from tether.ext.twisted import Listener, Reactor
from tether.health import Health


class Inventory(tether.Service):
    async def start(self) -> None:
        self.items = {b"figs": 2}


inventory = Inventory()
health = Health(  # Twisted's ports have no mount point: the probes get a port of their own
    port=int(os.environ.get("HEALTH_PORT", "0")),
    drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1")),
)


class Items(resource.Resource):
    isLeaf = True  # noqa: N815 - Twisted's name

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted's name
        name = request.path.rsplit(b"/", 1)[-1]
        return b"%d" % inventory.items.get(name, 0)


class Shout(basic.LineReceiver):
    """A Twisted protocol of your own: each line back in capitals."""

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted's name
        self.sendLine(line.upper())


reactor = Reactor()  # Twisted's asyncio reactor, on the graph's event loop
web = Listener(
    server.Site(Items()),
    reactor=reactor,
    port=int(os.environ.get("PORT", "0")),
    uses=[inventory, health],
    name="web",
)
shout = Listener(
    protocol.Factory.forProtocol(Shout),
    reactor=reactor,
    port=0,
    idle=lambda connection: True,  # between two lines a connection can be closed
    name="shout",
)


class App(tether.Service):
    @property
    def dependencies(self) -> list[list[tether.ServiceBase]]:
        return [[web, shout]]  # the two listeners start together


app = App()


async def try_it() -> None:
    async with app, aiohttp.ClientSession() as client:
        async with client.get(f"{web.url}/items/figs") as response:
            print(response.status, await response.text())
        reader, writer = await asyncio.open_connection("127.0.0.1", shout.port)
        writer.write(b"hello\r\n")
        print((await reader.readline()).decode().strip())
        writer.close()


if __name__ == "__main__":
    asyncio.run(try_it())  # as a process: tether.run(app)

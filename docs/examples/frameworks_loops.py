import asyncio
import os
import selectors

import aiohttp
from aiohttp import web

from tether.ext.aiohttp import Server
from tether.health import Health


def tuned_loop() -> asyncio.AbstractEventLoop:
    """A loop factory of your own: asyncio's selector loop, warning on slow callbacks."""
    loop = asyncio.SelectorEventLoop(selectors.DefaultSelector())
    loop.slow_callback_duration = 0.05
    return loop


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"served on {type(asyncio.get_running_loop()).__name__}")


def make_server() -> Server:
    app = web.Application()  # an aiohttp application belongs to one loop: one per run
    app.router.add_get("/", hello)
    return Server(
        app,
        port=int(os.environ.get("PORT", "0")),
        health=Health(drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1"))),
    )


server = make_server()


async def try_it() -> None:
    server = make_server()
    async with (
        server,
        aiohttp.ClientSession() as client,
        client.get(f"{server.url}/") as response,
    ):
        print(await response.text())


if __name__ == "__main__":
    import rloop

    # As a process: tether.run(server, loop=rloop.new_event_loop), or on the command
    # line `tether run frameworks_loops:server --loop rloop:new_event_loop`
    # (`--loop frameworks_loops:tuned_loop` for the factory above). Here, in-process:
    for factory in (rloop.new_event_loop, tuned_loop):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(try_it())

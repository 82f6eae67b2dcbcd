import asyncio
import os

import aiohttp
from aiohttp import web
from tutorial_script import Notes

import tether
from tether.ext.aiohttp import Server, get
from tether.health import Health


async def list_notes(request: web.Request) -> web.Response:
    return web.json_response({"notes": get(request, Notes).count()})


async def add_note(request: web.Request) -> web.Response:
    get(request, Notes).add(await request.text())
    return web.json_response({"added": True}, status=201)


app = web.Application()
app.router.add_get("/notes", list_notes)
app.router.add_post("/notes", add_note)

container = tether.Container()
container.add(Notes(os.environ.get("NOTES_DB", ":memory:")))
# /livez, /readyz and /status for the probes, on the application's port and, given
# HEALTH_PORT, on a port of their own.
health_port = os.environ.get("HEALTH_PORT")
health = Health(
    host=os.environ.get("HEALTH_HOST", "127.0.0.1") if health_port else None,
    port=int(health_port) if health_port else None,
    drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1")),
)
# The sockets this process was handed: by a pre-fork master (--bind) or by systemd
# (socket activation). The server serves those; without any, it binds HOST:PORT.
handed = tether.listeners()
server = Server(
    app,
    host=None if handed else os.environ.get("HOST", "127.0.0.1"),
    port=None if handed else int(os.environ.get("PORT", "0")),  # 0: any free port
    container=container,
    uses=[Notes],
    health=health,
)


async def try_it() -> None:
    """Start the graph, call it as a client would, stop it."""
    async with server, aiohttp.ClientSession() as client:
        async with client.post(f"{server.url}/notes", data="buy milk") as response:
            print("POST /notes", response.status)
        async with client.get(f"{server.url}/notes") as response:
            print("GET /notes", await response.json())
        async with client.get(f"{server.url}/readyz") as response:
            print("GET /readyz", response.status, (await response.text()).strip())


if __name__ == "__main__":
    asyncio.run(try_it())  # as a process: tether run tutorial_http:server
